"""Candidate pairs from a grouping method, and their formation-window selection.

A *method* is a way to group companies: a name in `METHODS` mapped to a factory that, given a
`MethodContext` (companies, prices, universe), returns a *partition*: either a ``pd.Series``
ticker -> cluster label (static), or a callable ``(formation_start, formation_end) -> pd.Series``
(time-varying; it must use nothing after ``formation_end``). Register new methods (embeddings,
SAE features) with `register_method`.

Selection, per formation window (`select_pairs`): candidates = pairs of tickers in the same
cluster among the eligible tickers; each pair is tested with Engle-Granger in both orderings
(the stronger kept); pairs with p < `pvalue_max` that also pass the half-life, Hurst and
positive-hedge-ratio filters are ranked by p-value (ties by the more negative ADF statistic)
and the top N are kept.
Everything here sees only the formation window.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .coint import engle_granger_both, half_life, hurst_exponent

Partition = pd.Series | Callable[[pd.Timestamp, pd.Timestamp], pd.Series]


@dataclass
class MethodContext:
    """What a method factory may use. `prices` are the (screened) prices the backtest trades;
    `eligible(start, end)` lists the tickers a formation window may use (set by the backtest)."""

    companies: pd.DataFrame
    prices: pd.DataFrame
    universe: list[str]
    seed: int = 0
    eligible: Callable[[pd.Timestamp, pd.Timestamp], list[str]] | None = None


#: method name -> (factory(ctx) -> Partition, one-line description)
METHODS: dict[str, tuple[Callable[[MethodContext], Partition], str]] = {}


def register_method(name: str, description: str = ""):
    """Decorator: ``@register_method("sae") def f(ctx) -> Partition``."""
    def deco(factory):
        METHODS[name] = (factory, description or (factory.__doc__ or "").strip().split("\n")[0])
        return factory
    return deco


def resolve_partition(name: str, ctx: MethodContext) -> Partition:
    """The partition of method `name` (a Series or a callable, see the module docstring)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name][0](ctx)


def partition_at(partition: Partition, start, end) -> pd.Series:
    """The ticker -> label Series in force for the formation window [start, end]."""
    part = partition(pd.Timestamp(start), pd.Timestamp(end)) if callable(partition) else partition
    if not isinstance(part, pd.Series):
        raise TypeError(f"a partition must be a pd.Series ticker -> label, got {type(part)}")
    return part.dropna()


def _classification(level: str):
    def factory(ctx: MethodContext) -> pd.Series:
        from finsae.data.classifications import partition
        p = partition(ctx.companies, level)
        return p[p.index.isin(ctx.universe)]
    return factory


for _name, _level, _desc in [
        ("gics", "gics_sub_industry", "GICS sub-industry"),
        ("gics_industry", "gics_industry", "GICS industry"),
        ("sic", "sic4", "SIC 4-digit"),
        ("sic2", "sic2", "SIC 2-digit")]:
    register_method(_name, _desc)(_classification(_level))


@register_method("random", "random partition with the GICS sub-industry cluster sizes (seeded)")
def random_partition(ctx: MethodContext) -> pd.Series:
    """GICS sub-industry labels shuffled over the universe: same cluster sizes, no information."""
    gics = _classification("gics_sub_industry")(ctx)
    rng = np.random.default_rng(ctx.seed)
    return pd.Series(rng.permutation(gics.to_numpy()), index=gics.index, name="random")


@register_method("returns", "average-linkage clusters of formation-window return correlations")
def returns_partition(ctx: MethodContext) -> Callable[[pd.Timestamp, pd.Timestamp], pd.Series]:
    """Clusters of daily log-return correlations over the formation window only: average linkage
    on 1 - corr, cut at K = the number of GICS sub-industries among the clustered tickers."""
    gics = _classification("gics_sub_industry")(ctx)

    def at(start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform
        tickers = ctx.eligible(start, end) if ctx.eligible else list(ctx.universe)
        window = ctx.prices.loc[start:end, [t for t in tickers if t in ctx.prices.columns]]
        window = window.loc[:, window.notna().all()]
        r = np.log(window).diff().iloc[1:]
        r = r.loc[:, r.std() > 0]
        if r.shape[1] < 2:
            return pd.Series(dtype=object, name="returns")
        corr = np.corrcoef(r.to_numpy().T)
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        k = max(1, int(gics.reindex(r.columns).nunique()))
        labels = fcluster(linkage(squareform(dist, checks=False), "average"), k, "maxclust")
        return pd.Series(labels.astype(str), index=r.columns, name="returns")
    return at


def _vector_clusters(name: str, vectors: Callable[[MethodContext], pd.DataFrame]):
    def factory(ctx: MethodContext) -> pd.Series:
        from finsae.cluster import agglomerative
        V = vectors(ctx)
        V = V.loc[V.index.intersection(ctx.universe)]
        k = int(_classification("gics_sub_industry")(ctx).nunique())
        return agglomerative(V, k).rename(name)
    return factory


def _sae_vectors(ctx: MethodContext) -> pd.DataFrame:
    from finsae.features.bundled import company_sae_vectors
    return company_sae_vectors(ctx.companies)


def _minilm_vectors(ctx: MethodContext) -> pd.DataFrame:
    from finsae.features.baselines import minilm_embeddings
    return minilm_embeddings(ctx.companies.loc[list(ctx.universe), "description"])


# Text methods: average-linkage clusters on cosine distance at K = the number of GICS
# sub-industries, as in `finsae evaluate`. The vectors come from descriptions of one vintage
# (see the companies table), the same for every formation window.
register_method("sae", "average-linkage clusters of SAE company features (K = GICS "
                       "sub-industries)")(_vector_clusters("sae", _sae_vectors))
register_method("embedding", "average-linkage clusters of MiniLM sentence embeddings (K = "
                             "GICS sub-industries)")(_vector_clusters("embedding", _minilm_vectors))


def candidate_pairs(partition: pd.Series, tickers=None) -> list[tuple[str, str]]:
    """Every pair (a, b), a < b, of tickers with the same label (restricted to `tickers`)."""
    part = partition.dropna()
    if tickers is not None:
        part = part[part.index.isin(set(tickers))]
    out = []
    for _, members in part.groupby(part.astype(str), sort=True):
        out.extend(itertools.combinations(sorted(members.index), 2))
    return out


@dataclass(frozen=True)
class SelectionConfig:
    """How formation-window pairs are tested, filtered and ranked."""

    #: keep pairs whose Engle-Granger p-value (stronger of the two orderings) is below this
    pvalue_max: float = 0.05
    #: pairs traded per method and period (the same N for every method)
    top_n: int = 20
    #: ADF lag: an int (fixed lag) or "aic"/"bic" (statsmodels' selection over 0..maxlag on a
    #: common sample); "aic" with maxlag=None is statsmodels' `coint` default
    lags: int | str = "aic"
    #: largest lag searched by "aic"/"bic"; None = ceil(12 (T/100)^0.25) (16 for T = 252)
    maxlag: int | None = None
    #: keep pairs whose spread half-life (days, AR(1) on the formation spread) is in this range;
    #: None disables. The upper bound is half the default trading window: slower spreads rarely
    #: converge within it.
    half_life_range: tuple[float, float] | None = (1.0, 63.0)
    #: keep pairs whose formation-spread Hurst exponent is below this (mean-reverting); None
    #: disables
    hurst_max: float | None = 0.5
    #: keep pairs whose hedge ratio exceeds this: a long-short pair (long one leg, short the
    #: other) needs beta > 0; None disables
    min_beta: float | None = 0.0
    #: lags k used by the Hurst estimate (std of k-day spread changes ~ k^H)
    hurst_lags: tuple[int, int] = (2, 20)
    #: pairs tested per batch (memory: batch * T * (maxlag + 1) floats)
    batch: int = 4096


SELECTION_COLUMNS = ["y", "x", "statistic", "pvalue", "lags", "beta", "alpha", "spread_mean",
                     "spread_std", "half_life", "hurst"]


def test_pairs(window: pd.DataFrame, pairs: list[tuple[str, str]],
               config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """Engle-Granger (both orderings), hedge ratio, spread moments, half-life and Hurst for each
    pair, on the prices in `window` (a formation window; no NaN allowed in the tested columns).

    Returns one row per pair with SELECTION_COLUMNS: `y` is the dependent leg of the stronger
    ordering, spread = y - beta * x - alpha, `spread_mean`/`spread_std` (ddof = 1) its formation
    moments.
    """
    if not pairs:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    cols = {t: j for j, t in enumerate(window.columns)}
    missing = sorted({t for p in pairs for t in p} - set(cols))
    if missing:
        from finsae.data.errors import UnknownTickerError
        raise UnknownTickerError(missing[0], window.columns, what="the formation prices")
    values = window.to_numpy(dtype=float)
    ia = np.array([cols[a] for a, _ in pairs])
    ib = np.array([cols[b] for _, b in pairs])
    bad = ~np.isfinite(values[:, np.union1d(ia, ib)]).all(0)
    if bad.any():
        from finsae.data.errors import DataError
        t = window.columns[np.union1d(ia, ib)[np.flatnonzero(bad)[0]]]
        raise DataError("missing prices in the formation window", ticker=str(t))
    parts = []
    for s in range(0, len(pairs), config.batch):
        a, b = values[:, ia[s:s + config.batch]], values[:, ib[s:s + config.batch]]
        both = engle_granger_both(a, b, config.lags, config.maxlag)
        r, first = both.result, both.y_first
        y = np.where(first, a, b)
        x = np.where(first, b, a)
        spread = y - r.beta * x - r.alpha
        lo, hi = config.hurst_lags
        parts.append(pd.DataFrame({
            "y": np.where(first, window.columns[ia[s:s + config.batch]],
                          window.columns[ib[s:s + config.batch]]),
            "x": np.where(first, window.columns[ib[s:s + config.batch]],
                          window.columns[ia[s:s + config.batch]]),
            "statistic": r.statistic, "pvalue": r.pvalue, "lags": r.lags,
            "beta": r.beta, "alpha": r.alpha,
            "spread_mean": spread.mean(0), "spread_std": spread.std(0, ddof=1),
            "half_life": half_life(spread), "hurst": hurst_exponent(spread, hi, lo)}))
    return pd.concat(parts, ignore_index=True)


def rank_pairs(tested: pd.DataFrame, config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """Filter (p-value, half-life, Hurst, hedge ratio, positive spread std) and rank by p-value
    (ties: the more negative statistic); returns the top N with a 1-based `rank` column."""
    keep = (tested["pvalue"] < config.pvalue_max) & (tested["spread_std"] > 0)
    if config.half_life_range is not None:
        lo, hi = config.half_life_range
        keep &= tested["half_life"].between(lo, hi)
    if config.hurst_max is not None:
        keep &= tested["hurst"] < config.hurst_max
    if config.min_beta is not None:
        keep &= tested["beta"] > config.min_beta
    out = tested[keep].sort_values(["pvalue", "statistic", "y", "x"], kind="stable")
    out = out.head(config.top_n).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def select_pairs(window: pd.DataFrame, partition: pd.Series, tickers=None,
                 config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """Top-N cointegrated within-cluster pairs of one formation window (see module docstring).

    window: formation prices (date x ticker). partition: ticker -> cluster label.
    tickers: the eligible tickers (default: the window's columns with no missing price).
    """
    if tickers is None:
        tickers = list(window.columns[window.notna().all().to_numpy()])
    pairs = candidate_pairs(partition, tickers)
    return rank_pairs(test_pairs(window, pairs, config), config)

