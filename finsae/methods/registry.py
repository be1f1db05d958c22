"""Method name -> grouping: the one registry behind `finsae evaluate`, `cluster`, `backtest`
and `run`.

Names (`known_methods()`):

- classifications: ``sic4`` ... ``gics_sub_industry`` (`CLASSIFICATIONS`); baselines
  ``one_cluster`` and ``random`` (the GICS sub-industry sizes shuffled, ``ctx.n_seeds`` seeds
  from ``ctx.seed``: averaged when scored, each seed traded by the backtest);
- ``returns``: clusters of past daily-return correlations. A window's clusters use that window
  only (`Method.partition_at`); the evaluation's year-y clusters use the `lookback` years
  before y, the lookback chosen on the fitting years;
- vector methods (`VECTORS`, or the vectors of the context's feature set): ``NAME`` average-
  linkage (``ctx.linkage``) clusters on cosine distance at K = ``ctx.k`` (default: the GICS
  sub-industries of the universe); ``NAME_kmeans``; ``NAME@LEVEL`` / ``NAME@K`` set K;
  ``NAME_mst`` the paper's MST threshold with theta fixed on the fitting years,
  ``NAME_mst_rolling`` theta chosen each year on the previous 5; ``NAME_knn`` each company's
  `KNN_PAIRS` nearest companies (candidate pairs for the backtest, not a partition).

Aliases (`ALIASES`): ``gics`` = gics_sub_industry, ``sic`` = sic4, ``embedding`` = minilm. A
resolved method keeps the name it was asked by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import cluster as cl
from ..data.errors import DataError
from ..evaluate import select_fixed, select_rolling, threshold_scores
from .context import EvalContext

#: thresholds tried by the MST method: these quantiles of the representation's own MST edge
#: z-scores (a fixed grid in z units does not fit every representation: TF-IDF's MST edges lie
#: 1-14 standard deviations below the mean distance, MiniLM's 1.6-5.5)
THETA_QUANTILES = tuple(np.linspace(0.0, 1.0, 41))
#: lookback years tried for the past-return clusters (chosen on the in-sample years)
RETURN_LOOKBACKS = (1, 2, 3)
#: neighbours per company of the *_knn methods (5 nearest: about 2.5-5 candidates a company,
#: the same order as a GICS sub-industry's ~3-4 peers)
KNN_PAIRS = 5

ALIASES = {"gics": "gics_sub_industry", "sic": "sic4", "embedding": "minilm"}
CLASSIFICATIONS = ("sic4", "sic3", "sic2", "sic_division", "gics_sector", "gics_industry_group",
                   "gics_industry", "gics_sub_industry")
SUFFIXES = ("_mst_rolling", "_mst", "_kmeans", "_knn")


@dataclass
class Method:
    """A resolved method: its grouping and how it was chosen.

    partition: a Series ticker -> label; a dict year -> Series (per-year partitions, year y's
    built from data before y); a list of those (random seeds); or a `Neighbours` object
    (candidate pairs by similarity). `window`: for methods that can be rebuilt on any window
    (returns), ``window(start, end)`` -> the grouping from that window's data only."""

    name: str
    partition: object
    notes: dict = field(default_factory=dict)
    #: vector methods: the name of their vectors in the context (kNN peer sets by cosine)
    vectors: str | None = None
    #: classifications: the levels from this one to the coarsest (kNN-equivalent peer sets)
    levels: tuple[str, ...] | None = None
    window: Callable | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.partition) if isinstance(self.partition, list) else 1

    def seed(self, i: int) -> "Method":
        """Seed `i` of a seeded method (random) as a method of its own."""
        if not isinstance(self.partition, list):
            raise DataError(f"{self.name} has no seeds")
        return Method(f"{self.name}_s{i}", self.partition[i], {**self.notes, "seed_index": i},
                      self.vectors, self.levels, self.window)

    def partition_at(self, start, end):
        """The grouping in force for a window ending on `end`: it uses nothing after `end`."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if self.window is not None:
            return self.window(start, end)
        p = self.partition
        if isinstance(p, list):
            raise DataError(f"{self.name} has {len(p)} seeds: take one with .seed(i)")
        if isinstance(p, Mapping):
            # year y's partition is built from data before y: the latest one whose data ended
            # on or before `end`
            year = (end + pd.Timedelta(days=1)).year
            usable = [y for y in p if y <= year]
            if not usable:
                raise DataError(f"{self.name} has no partition built before {end.date()} "
                                f"(years {min(p)}-{max(p)})")
            return p[max(usable)]
        return p


def _level(level: str) -> Callable[[EvalContext], pd.Series]:
    return lambda ctx: ctx.label(level)


def _return_window(ctx: EvalContext):
    """window(start, end) -> clusters of the daily-return correlations of [start, end]."""
    def window(start, end) -> pd.Series:
        return cl.window_return_clusters(ctx.daily_returns, start, end, ctx.k)
    return window


def _returns(ctx: EvalContext) -> Method:
    """Past-return clusters at K = ctx.k; the lookback is chosen on the in-sample years."""
    if ctx.windows_only:  # the backtest: each formation window's own clusters
        return Method("returns", None, {"k": ctx.k, "window": "formation"},
                      window=_return_window(ctx))
    key = ("returns", ctx.k)
    if key not in ctx.cache:
        scores, parts = {}, {}
        for lb in RETURN_LOOKBACKS:
            parts[lb] = cl.return_clusters(ctx.daily_returns, ctx.years, ctx.k, lookback=lb)
            scores[lb] = ctx.panel.score(parts[lb], years=list(ctx.fit_years)).mean_corr()
        best = max(scores, key=lambda lb: (scores[lb], -lb))
        ctx.cache[key] = Method("returns", parts[best],
                                {"lookback_years": best, "k": ctx.k,
                                 "fit_scores": {str(k): round(v, 4) for k, v in scores.items()}},
                                window=_return_window(ctx))
    return ctx.cache[key]


def _random(ctx: EvalContext) -> Method:
    ref = ctx.label("gics_sub_industry")
    return Method("random", cl.random_partitions(ref, ctx.n_seeds, ctx.seed),
                  {"sizes_of": "gics_sub_industry", "n_seeds": ctx.n_seeds})


PARTITIONS: dict[str, Callable[[EvalContext], object]] = {
    "one_cluster": lambda ctx: cl.one_cluster(ctx.universe),
    "random": _random,
    **{level: _level(level) for level in CLASSIFICATIONS},
    "returns": _returns,
}


def _tfidf(ctx: EvalContext) -> pd.DataFrame:
    from ..features.baselines import tfidf_vectors
    return tfidf_vectors(ctx.table["description"])


def _minilm(ctx: EvalContext) -> pd.DataFrame:
    from ..features.baselines import minilm_embeddings
    return minilm_embeddings(ctx.table["description"])


def _sae(ctx: EvalContext) -> pd.DataFrame:
    from ..features.bundled import company_sae_vectors
    V = company_sae_vectors(ctx.companies)
    missing = pd.Index(ctx.universe).difference(V.index)
    if len(missing):
        raise DataError(f"no SAE features for {len(missing)} universe companies "
                        f"({', '.join(missing[:5])}); run `finsae features build`")
    return V


def supervised(base: str) -> Callable[[EvalContext], pd.DataFrame]:
    """`base`'s vectors reweighted by `CoMovementWeights` fitted on the fitting years' return
    co-movement only (penalty chosen on a split of the fitting years); the weights are kept in
    ``ctx.cache[("weights", base)]``."""
    def fn(ctx: EvalContext) -> pd.DataFrame:
        from ..features.supervised import CoMovementWeights, select_penalty
        V = ctx.vectors(base)
        pen, scores = select_penalty(V, ctx.peer_panel, ctx.fit_years)
        cw = CoMovementWeights(penalty=pen).fit(V, ctx.peer_panel.mean_corr_matrix(ctx.fit_years))
        ctx.cache[("weights", base)] = {"penalty": pen, "penalty_scores": scores,
                                        "weights": cw.weights_}
        return cw.transform(V)
    return fn


VECTORS: dict[str, Callable[[EvalContext], pd.DataFrame]] = {
    "tfidf": _tfidf,
    "minilm": _minilm,
    "sae": _sae,
    "sae_supervised": supervised("sae"),
}

def canonical(name: str) -> str:
    """`name` with its alias resolved (``gics`` -> ``gics_sub_industry``; suffixes and
    ``@K`` kept: ``embedding_knn`` -> ``minilm_knn``)."""
    base, at, spec = name.partition("@")
    for suffix in SUFFIXES:
        if base.endswith(suffix) and base[: -len(suffix)] in ALIASES:
            return ALIASES[base[: -len(suffix)]] + suffix + at + spec
    return ALIASES.get(base, base) + at + spec


def known_methods() -> list[str]:
    return [*PARTITIONS, *VECTORS, *(f"{v}{s}" for v in VECTORS for s in SUFFIXES[::-1]),
            *ALIASES]


def is_known(name: str, vectors=()) -> bool:
    """Whether `name` resolves (given the extra vector names `vectors`, e.g. a feature set's)."""
    name = canonical(name)
    base = name.partition("@")[0]
    if base in PARTITIONS or base in VECTORS or base in vectors:
        return True
    for s in SUFFIXES:
        if base.endswith(s) and (base[: -len(s)] in VECTORS or base[: -len(s)] in vectors):
            return True
    return False


def resolve(name: str, ctx: EvalContext) -> Method:
    """The grouping of method `name` on ctx's universe (see the module docstring)."""
    m = _resolve(canonical(name), ctx)
    if m.name != name:
        m = Method(name, m.partition, m.notes, m.vectors, m.levels, m.window)
    return m


def _resolve(name: str, ctx: EvalContext) -> Method:
    if "@" in name:
        base, _, spec = name.partition("@")
        from ..data.classifications import LEVELS
        if spec in LEVELS:
            k = cl.matched_k(ctx.label(spec))
        elif spec.isdigit():
            k = int(spec)
        else:
            raise DataError(f"{name!r}: after @ give a cluster count or one of "
                            f"{', '.join(LEVELS)}")
        if base in PARTITIONS or base.endswith(("_mst", "_mst_rolling", "_knn")):
            raise DataError(f"{name!r}: only clustered vector methods take a cluster count")
        old_k, ctx.k = ctx.k, k
        try:
            m = _resolve(base, ctx)
        finally:
            ctx.k = old_k
        return Method(name, m.partition, m.notes, vectors=m.vectors)
    if name in PARTITIONS:
        p = PARTITIONS[name](ctx)
        if not isinstance(p, Method):
            from ..evaluate.peers import hierarchy_of
            levels = hierarchy_of(name) if name in CLASSIFICATIONS else None
            p = Method(name, p, levels=levels)
        return p
    if ctx.has_vectors(name):
        V = ctx.vectors(name)
        return Method(name, cl.agglomerative(V, ctx.k, linkage=ctx.linkage),
                      {"algorithm": "agglomerative", "linkage": ctx.linkage,
                       "metric": "cosine", "k": ctx.k,
                       **({"vectors": V.attrs["source"]} if V.attrs.get("source") else {})},
                      vectors=name)
    for suffix in SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and ctx.has_vectors(base):
            if suffix == "_kmeans":
                return Method(name, cl.kmeans(ctx.vectors(base), ctx.k, seed=ctx.seed),
                              {"algorithm": "kmeans", "k": ctx.k, "seed": ctx.seed},
                              vectors=base)
            if suffix == "_knn":
                from ..similarity import Neighbours
                return Method(name, Neighbours(ctx.vectors(base), KNN_PAIRS),
                              {"algorithm": "nearest neighbours", "k": KNN_PAIRS,
                               "metric": "cosine"}, vectors=base)
            m = _mst(name, base, ctx, rolling=suffix == "_mst_rolling")
            m.vectors = base
            return m
    import difflib
    hint = difflib.get_close_matches(name, known_methods(), n=4, cutoff=0.6)
    raise DataError(f"unknown method {name!r}" + (f"; did you mean {', '.join(hint)}?" if hint
                                                  else f"; known: {', '.join(known_methods())}"))


def _mst(name: str, base: str, ctx: EvalContext, rolling: bool) -> Method:
    key = ("mst", base)
    if key not in ctx.cache:
        grid = ctx.theta_grid
        if grid is None:
            D = cl.cosine_distance_matrix(ctx.vectors(base).to_numpy(dtype=float))
            z = cl.mst_edges(D)[2]
            grid = tuple(np.unique(np.round(np.quantile(z, THETA_QUANTILES), 3)))
        path = cl.mst_threshold_path(ctx.vectors(base), grid)
        ctx.cache[key] = (path, threshold_scores(ctx.panel, path,
                                                 min_coverage=ctx.min_coverage,
                                                 max_cluster_share=ctx.max_cluster_share))
    path, scores = ctx.cache[key]
    if rolling:
        thetas = select_rolling(scores, ctx.years, window=5)
        return Method(name, {y: path[t] for y, t in thetas.items()},
                      {"algorithm": "mst_threshold", "theta_by_year": thetas, "window": 5,
                       "min_coverage": ctx.min_coverage,
                       "max_cluster_share": ctx.max_cluster_share})
    theta = select_fixed(scores, ctx.fit_years)
    return Method(name, path[theta], {"algorithm": "mst_threshold", "theta": theta,
                                      "fit_years": [min(ctx.fit_years), max(ctx.fit_years)],
                                      "min_coverage": ctx.min_coverage,
                                      "max_cluster_share": ctx.max_cluster_share})
