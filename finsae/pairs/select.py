"""Candidate pairs from a grouping method, and their formation-window selection.

Candidates come from a grouping method of the one registry (`finsae.methods.resolve`): a
`Method`, whose ``partition_at(start, end)`` is the grouping in force for a formation window
(built from data up to its end only), a plain ``pd.Series`` ticker -> cluster label, a callable
``(formation_start, formation_end) -> pd.Series``, or a `Neighbours` object (candidates = each
company's top-k most similar companies by cosine similarity, among the eligible tickers: the
``*_knn`` methods).

Selection, per formation window (`select_pairs`): candidates = pairs of tickers in the same
cluster (or neighbours) among the eligible tickers; each pair gets the statistics of the
*selection rule* (`SelectionConfig.rule`):

* ``"eg"`` (default): Engle-Granger in both orderings (the stronger kept), ranked by p-value
  (ties by the more negative ADF statistic);
* ``"johansen"``: Johansen trace test (rank 0 rejected at `johansen_level`), hedge ratio from
  the first cointegrating vector, ranked by the trace statistic;
* ``"distance"``: Gatev-Goetzmann-Rouwenhorst, ranked by the sum of squared deviations of the
  prices normalised to 1 on the first formation day; hedge ratio = the ratio of those first
  prices (so the spread is the normalised price difference times y's first price), no test.
  Two departures from GGR: the trading rule is the shared one (z-score against the formation
  mean and standard deviation of that spread, exit at the formation mean, not at the crossing
  of prices renormalised at the start of trading), and the filters below apply unless
  disabled (GGR use none: ``half_life_range=None, hurst_max=None, min_crossings=None,
  min_beta=None``).

Then the filters (`filter_pairs`, in this order, each counted): valid spread, the rule's test
(p < `pvalue_max` / Johansen trace), Benjamini-Hochberg FDR over the method's candidates
(`fdr`, EG only), positive hedge ratio, half-life within `half_life_range`, Hurst below
`hurst_max`, at least `min_crossings` mean crossings a year; the top N survivors are kept.
Everything here sees only the formation window.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..similarity import Neighbours
from .coint import engle_granger_both
from .johansen import johansen
from .spread_stats import (half_life, hurst_exponent, mean_crossings, ou_fit, ssd_distance)

Partition = pd.Series | Callable[[pd.Timestamp, pd.Timestamp], pd.Series]


def partition_at(partition, start, end):
    """The ticker -> label Series (or `Neighbours`) in force for the formation window."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if hasattr(partition, "partition_at"):  # a resolved `finsae.methods.Method`
        part = partition.partition_at(start, end)
    elif callable(partition) and not isinstance(partition, (pd.Series, Neighbours)):
        part = partition(start, end)
    else:
        part = partition
    if isinstance(part, Neighbours):
        return part
    if not isinstance(part, pd.Series):
        raise TypeError(f"a partition must be a pd.Series ticker -> label, got {type(part)}")
    return part.dropna()


def candidate_pairs(partition, tickers=None) -> list[tuple[str, str]]:
    """Every pair (a, b), a < b, of tickers with the same label (restricted to `tickers`); for
    a `Neighbours` object, its neighbour pairs among `tickers`."""
    if isinstance(partition, Neighbours):
        return partition.pairs(tickers)
    part = partition.dropna()
    if tickers is not None:
        part = part[part.index.isin(set(tickers))]
    out = []
    for _, members in part.groupby(part.astype(str), sort=True):
        out.extend(itertools.combinations(sorted(members.index), 2))
    return out


RULES = ("eg", "johansen", "distance")


@dataclass(frozen=True)
class SelectionConfig:
    """How formation-window pairs are tested, filtered and ranked."""

    #: selection rule: "eg" (Engle-Granger p-value), "johansen" (trace statistic) or
    #: "distance" (GGR sum of squared deviations of normalised prices); see the module docstring
    rule: str = "eg"
    #: keep pairs whose Engle-Granger p-value (stronger of the two orderings) is below this
    #: (rule "eg" only)
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
    #: converge within it ((1, 252) is the looser common choice).
    half_life_range: tuple[float, float] | None = (1.0, 63.0)
    #: keep pairs whose formation-spread Hurst exponent is below this (mean-reverting); None
    #: disables
    hurst_max: float | None = 0.5
    #: keep pairs whose hedge ratio exceeds this: a long-short pair (long one leg, short the
    #: other) needs beta > 0; None disables
    min_beta: float | None = 0.0
    #: keep pairs whose formation spread crosses its mean at least this many times a year
    #: (252 days); None disables. A spread that rarely crosses cannot close its trades.
    min_crossings: float | None = 12.0
    #: Benjamini-Hochberg false discovery rate across the candidates a method screens in one
    #: formation window (rule "eg"): keep pairs whose p-value, doubled for the choice of the
    #: better of two orderings (Bonferroni, capped at 1), passes BH at this level. None disables
    #: (then only `pvalue_max` applies, with no multiple-testing control).
    fdr: float | None = None
    #: Johansen: lagged differences in the VECM, and the level (0.90, 0.95 or 0.99) at which the
    #: trace test must reject rank 0 (rule "johansen")
    johansen_lags: int = 1
    johansen_level: float = 0.95
    #: lags k used by the Hurst estimate (std of k-day spread changes ~ k^H)
    hurst_lags: tuple[int, int] = (2, 20)
    #: pairs tested per batch (memory: batch * T * (maxlag + 1) floats)
    batch: int = 4096

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, not {self.rule!r}")
        if self.johansen_level not in (0.90, 0.95, 0.99):
            raise ValueError("johansen_level must be 0.90, 0.95 or 0.99")
        if self.fdr is not None and not 0 < self.fdr < 1:
            raise ValueError("fdr must be in (0, 1)")

    def filters(self) -> list[str]:
        """Names of the filters this configuration applies, in order (see `filter_pairs`)."""
        out = ["valid"]
        out += {"eg": ["pvalue"] + (["fdr"] if self.fdr is not None else []),
                "johansen": ["johansen_trace"], "distance": []}[self.rule]
        if self.min_beta is not None:
            out.append("min_beta")
        if self.half_life_range is not None:
            out.append("half_life")
        if self.hurst_max is not None:
            out.append("hurst")
        if self.min_crossings is not None:
            out.append("crossings")
        return out


SELECTION_COLUMNS = ["y", "x", "statistic", "pvalue", "lags", "beta", "alpha", "spread_mean",
                     "spread_std", "half_life", "hurst", "crossings", "ou_mu", "ou_sigma_eq",
                     "score", "score2"]


def test_pairs(window: pd.DataFrame, pairs: list[tuple[str, str]],
               config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """The selection rule's statistics, hedge ratio, spread moments, half-life, Hurst, mean
    crossings a year and OU fit for each pair, on the prices in `window` (a formation window;
    no NaN allowed in the tested columns).

    Returns one row per pair with SELECTION_COLUMNS: `y` is the dependent leg (EG: of the
    stronger ordering; Johansen and distance: the first ticker), spread = y - beta * x - alpha,
    `spread_mean`/`spread_std` (ddof = 1) its formation moments; `score` then `score2`
    (ascending) rank the pairs. Rule "eg": statistic = ADF t, score = p-value. "johansen":
    statistic = trace statistic for rank 0, pvalue = NaN (kept when statistic > critical value,
    column `critical`), score = -statistic. "distance": statistic = SSD, pvalue = NaN,
    score = SSD.
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
    names = window.columns.to_numpy()
    for s in range(0, len(pairs), config.batch):
        ja, jb = ia[s:s + config.batch], ib[s:s + config.batch]
        a, b = values[:, ja], values[:, jb]
        extra = {}
        if config.rule == "eg":
            both = engle_granger_both(a, b, config.lags, config.maxlag)
            r, first = both.result, both.y_first
            y, x = np.where(first, a, b), np.where(first, b, a)
            ny, nx = np.where(first, names[ja], names[jb]), np.where(first, names[jb], names[ja])
            beta, alpha, stat, pval, lags = r.beta, r.alpha, r.statistic, r.pvalue, r.lags
            score, score2 = pval, stat
        elif config.rule == "johansen":
            y, x, ny, nx = a, b, names[ja], names[jb]
            jo = johansen(y, x, det_order=0, k_ar_diff=config.johansen_lags)
            beta = jo.beta
            with np.errstate(invalid="ignore"):
                alpha = (y - beta * x).mean(0)
            stat, pval = jo.trace[:, 0], np.full(len(ja), np.nan)
            lags = np.full(len(ja), config.johansen_lags)
            level = {0.90: 0, 0.95: 1, 0.99: 2}[config.johansen_level]
            extra["critical"] = np.full(len(ja), jo.crit[0, level])
            score, score2 = -stat, -jo.trace[:, 1]
        else:  # distance
            y, x, ny, nx = a, b, names[ja], names[jb]
            beta, alpha = y[0] / x[0], np.zeros(len(ja))
            stat = ssd_distance(y, x)
            pval, lags = np.full(len(ja), np.nan), np.zeros(len(ja), dtype=int)
            score, score2 = stat, np.zeros(len(ja))
        spread = y - beta * x - alpha
        lo, hi = config.hurst_lags
        ou = ou_fit(spread)
        parts.append(pd.DataFrame({
            "y": ny, "x": nx, "statistic": stat, "pvalue": pval, "lags": lags,
            "beta": beta, "alpha": alpha,
            "spread_mean": spread.mean(0), "spread_std": spread.std(0, ddof=1),
            "half_life": half_life(spread), "hurst": hurst_exponent(spread, hi, lo),
            "crossings": mean_crossings(spread), "ou_mu": ou.mu, "ou_sigma_eq": ou.sigma_eq,
            "score": score, "score2": score2, **extra}))
    return pd.concat(parts, ignore_index=True)


def benjamini_hochberg(pvalues, q: float) -> np.ndarray:
    """Benjamini-Hochberg (1995) step-up: a boolean mask of the discoveries at FDR level `q`
    among `pvalues` (NaN = not rejected, but counted in the family size m)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool)
    filled = np.where(np.isnan(p), np.inf, p)
    order = np.argsort(filled, kind="stable")
    ok = filled[order] <= q * np.arange(1, m + 1) / m
    keep = np.zeros(m, dtype=bool)
    if ok.any():
        keep[order[:np.flatnonzero(ok)[-1] + 1]] = True
    return keep


def filter_pairs(tested: pd.DataFrame, config: SelectionConfig = SelectionConfig()
                 ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply `config.filters()` in order to `tested` (the candidates of one method and one
    formation window: the BH family). Returns the survivors and, per filter, how many pairs it
    removed (of those left by the filters before it). A filter whose column is absent from
    `tested` is skipped (counted as 0)."""
    removed: dict[str, int] = {}
    keep = pd.Series(True, index=tested.index)

    def apply(name, mask):
        nonlocal keep
        new = keep & mask
        removed[name] = int(keep.sum() - new.sum())
        keep = new

    has = tested.columns
    for name in config.filters():
        if name == "valid":
            ok = tested["spread_std"] > 0
            if "score" in has:
                ok &= tested["score"].notna()
            apply(name, ok)
        elif name == "pvalue":
            apply(name, tested["pvalue"] < config.pvalue_max)
        elif name == "fdr":
            p2 = np.minimum(1.0, 2.0 * tested["pvalue"].to_numpy(dtype=float))
            apply(name, pd.Series(benjamini_hochberg(p2, config.fdr), index=tested.index))
        elif name == "johansen_trace":
            apply(name, tested["statistic"] > tested["critical"])
        elif name == "min_beta":
            apply(name, tested["beta"] > config.min_beta)
        elif name == "half_life" and "half_life" in has:
            lo, hi = config.half_life_range
            apply(name, tested["half_life"].between(lo, hi))
        elif name == "hurst" and "hurst" in has:
            apply(name, tested["hurst"] < config.hurst_max)
        elif name == "crossings" and "crossings" in has:
            apply(name, tested["crossings"] >= config.min_crossings)
        else:
            removed[name] = 0
    return tested[keep], removed


def rank_pairs(tested: pd.DataFrame, config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """Filter (`filter_pairs`) and rank (by `score` then `score2`; for a table without them,
    by p-value then the more negative statistic); returns the top N with a 1-based `rank`
    column and, in ``.attrs["filters"]``, the pairs each filter removed (plus "candidates",
    "passed" and "selected")."""
    kept, removed = filter_pairs(tested, config)
    keys = ["score", "score2"] if "score" in kept.columns else ["pvalue", "statistic"]
    out = kept.sort_values(keys + ["y", "x"], kind="stable")
    out = out.head(config.top_n).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out.attrs["filters"] = {"candidates": len(tested), **removed, "passed": len(kept),
                            "selected": len(out)}
    return out


def select_pairs(window: pd.DataFrame, partition, tickers=None,
                 config: SelectionConfig = SelectionConfig()) -> pd.DataFrame:
    """Top-N within-cluster (or neighbour) pairs of one formation window by the configured
    rule (see module docstring).

    window: formation prices (date x ticker). partition: ticker -> cluster label, or
    `Neighbours`. tickers: the eligible tickers (default: the window's columns with no missing
    price).
    """
    if tickers is None:
        tickers = list(window.columns[window.notna().all().to_numpy()])
    pairs = candidate_pairs(partition, tickers)
    return rank_pairs(test_pairs(window, pairs, config), config)
