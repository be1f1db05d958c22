"""Method name -> partition: the registry behind `finsae cluster` and `finsae evaluate`.

Two small registries that other modules extend (e.g. the SAE features of issue 7):

- ``PARTITIONS[name] = fn(ctx) -> partition``: a Series ticker -> label, or a dict
  year -> Series for partitions that change over time.
- ``VECTORS[name] = fn(ctx) -> DataFrame`` ticker x dimension, on ``ctx.universe``.

A vector method ``NAME`` is clustered by average-linkage agglomerative clustering on cosine
distance into ``ctx.k`` clusters (default: the number of GICS sub-industries in the universe);
``NAME_kmeans`` uses k-means; ``NAME@LEVEL`` / ``NAME@K`` sets the cluster count (e.g.
``tfidf@gics_sector``: as many clusters as GICS sectors); ``NAME_mst`` the paper's MST threshold with theta fixed on the
in-sample years; ``NAME_mst_rolling`` theta chosen each year on the previous 5 years. ``random``
is the GICS sub-industry sizes shuffled (``ctx.n_seeds`` seeds, averaged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from . import cluster as cl
from .data.errors import DataError
from .evaluate import IN_SAMPLE, YEARS, ReturnPanel, select_fixed, select_rolling, \
    threshold_scores

#: thresholds tried by the MST method: these quantiles of the representation's own MST edge
#: z-scores (a fixed grid in z units does not fit every representation: TF-IDF's MST edges lie
#: 1-14 standard deviations below the mean distance, MiniLM's 1.6-5.5)
THETA_QUANTILES = tuple(np.linspace(0.0, 1.0, 41))
#: lookback years tried for the past-return clusters (chosen on the in-sample years)
RETURN_LOOKBACKS = (1, 2, 3)


@dataclass
class EvalContext:
    """Inputs shared by every method of one comparison: one universe, one return panel."""

    companies: pd.DataFrame
    prices: pd.DataFrame
    universe: list[str] | None = None
    years: tuple = YEARS
    fit_years: tuple = IN_SAMPLE
    freq: str = "M"
    k: int | None = None
    n_seeds: int = 100
    seed: int = 0
    theta_grid: tuple | None = None  # None: quantiles of the MST edge z-scores
    min_coverage: float = 0.0
    max_cluster_share: float = 1.0
    #: linkage of the agglomerative clustering of vector methods (cosine distance)
    linkage: str = "average"
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.universe is None:
            from .data.universe import evaluation_universe
            self.universe = evaluation_universe(self.companies, self.prices)
        self.universe = list(self.universe)
        unknown = pd.Index(self.universe).difference(self.companies.index)
        if len(unknown):
            raise DataError(f"universe ticker(s) not in the companies table: "
                            f"{', '.join(unknown[:5])}")
        if self.k is None:
            self.k = cl.matched_k(self.label("gics_sub_industry"))

    @cached_property
    def table(self) -> pd.DataFrame:
        """The companies of the universe."""
        return self.companies.loc[self.universe]

    @cached_property
    def panel(self) -> ReturnPanel:
        return ReturnPanel.from_prices(self.prices, self.universe,
                                       self._panel_years, self.freq)

    @cached_property
    def _panel_years(self) -> list[int]:
        # the years before the first scored one feed the rolling selections
        first = int(self.prices.index.min().year) + 1
        return list(range(min(first, min(self.years)), max(self.years) + 1))

    @cached_property
    def peer_panel(self):
        """Daily returns per scored year for the every-firm peer metrics."""
        from .evaluate.peers import PeerPanel
        return PeerPanel(self.daily_returns, self.universe, self.years)

    @cached_property
    def daily_returns(self) -> pd.DataFrame:
        from .evaluate import screened_returns
        return screened_returns(self.prices, self.universe, "D")

    def label(self, level: str) -> pd.Series:
        from .data.classifications import partition
        return partition(self.table, level)

    def vectors(self, name: str) -> pd.DataFrame:
        if name not in self.cache:
            if name not in VECTORS:
                raise DataError(f"unknown vectors {name!r}; known: {', '.join(VECTORS)}")
            v = VECTORS[name](self)
            source = v.attrs.get("source")
            v = v.loc[self.universe]
            if source:
                v.attrs["source"] = source
            self.cache[name] = v
        return self.cache[name]


@dataclass
class Method:
    """A resolved method: its partition(s) and how they were chosen."""

    name: str
    partition: object  # Series, dict year -> Series, or list of them (random seeds)
    notes: dict = field(default_factory=dict)
    #: vector methods: the name of their vectors in the context (kNN peer sets by cosine)
    vectors: str | None = None
    #: classifications: the levels from this one to the coarsest (kNN-equivalent peer sets)
    levels: tuple[str, ...] | None = None


def _level(level: str) -> Callable[[EvalContext], pd.Series]:
    return lambda ctx: ctx.label(level)


def _returns(ctx: EvalContext) -> dict:
    """Past-return clusters at K = ctx.k; the lookback is chosen on the in-sample years."""
    key = ("returns", ctx.k)
    if key not in ctx.cache:
        best, scores = None, {}
        parts = {}
        for lb in RETURN_LOOKBACKS:
            parts[lb] = cl.return_clusters(ctx.daily_returns, ctx.years, ctx.k, lookback=lb)
            scores[lb] = ctx.panel.score(parts[lb], years=list(ctx.fit_years)).mean_corr()
        best = max(scores, key=lambda lb: (scores[lb], -lb))
        ctx.cache[key] = Method("returns", parts[best],
                                {"lookback_years": best, "k": ctx.k,
                                 "fit_scores": {str(k): round(v, 4) for k, v in scores.items()}})
    return ctx.cache[key]


CLASSIFICATIONS = ("sic4", "sic3", "sic2", "sic_division", "gics_sector", "gics_industry_group",
                   "gics_industry", "gics_sub_industry")

PARTITIONS: dict[str, Callable[[EvalContext], object]] = {
    "one_cluster": lambda ctx: cl.one_cluster(ctx.universe),
    **{level: _level(level) for level in CLASSIFICATIONS},
    "returns": _returns,
}


def _tfidf(ctx: EvalContext) -> pd.DataFrame:
    from .features.baselines import tfidf_vectors
    return tfidf_vectors(ctx.table["description"])


def _minilm(ctx: EvalContext) -> pd.DataFrame:
    from .features.baselines import minilm_embeddings
    return minilm_embeddings(ctx.table["description"])


def _sae(ctx: EvalContext) -> pd.DataFrame:
    from .features.bundled import company_sae_vectors
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
        from .features.supervised import CoMovementWeights, select_penalty
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

DEFAULT_METHODS = ("one_cluster", "random", "sic4", "sic3", "sic2", "sic_division",
                   "gics_sector", "gics_industry_group", "gics_industry", "gics_sub_industry",
                   "returns", "tfidf", "minilm", "sae")
SUFFIXES = ("_mst_rolling", "_mst", "_kmeans")


def known_methods() -> list[str]:
    return ["random", *PARTITIONS, *VECTORS,
            *(f"{v}{s}" for v in VECTORS for s in SUFFIXES[::-1])]


def resolve(name: str, ctx: EvalContext) -> Method:
    """The partition(s) of method `name` on ctx's universe.

    A vector method may name its cluster count after ``@``: ``tfidf@gics_sector`` (as many
    clusters as GICS sectors in the universe), ``minilm_kmeans@50``."""
    if "@" in name and not name.startswith("random"):
        base, _, spec = name.partition("@")
        from .data.classifications import LEVELS
        if spec in LEVELS:
            k = cl.matched_k(ctx.label(spec))
        elif spec.isdigit():
            k = int(spec)
        else:
            raise DataError(f"{name!r}: after @ give a cluster count or one of "
                            f"{', '.join(LEVELS)}")
        if base in PARTITIONS or base.endswith(("_mst", "_mst_rolling")):
            raise DataError(f"{name!r}: only clustered vector methods take a cluster count")
        old_k, ctx.k = ctx.k, k
        try:
            m = resolve(base, ctx)
        finally:
            ctx.k = old_k
        return Method(name, m.partition, m.notes, vectors=m.vectors)
    if name == "random":
        ref = ctx.label("gics_sub_industry")
        return Method(name, cl.random_partitions(ref, ctx.n_seeds, ctx.seed),
                      {"sizes_of": "gics_sub_industry", "n_seeds": ctx.n_seeds})
    if name in PARTITIONS:
        p = PARTITIONS[name](ctx)
        if not isinstance(p, Method):
            from .evaluate.peers import hierarchy_of
            levels = hierarchy_of(name) if name in CLASSIFICATIONS else None
            p = Method(name, p, levels=levels)
        return p
    if name in VECTORS or name in ctx.cache:  # ctx.cache: vectors a caller supplied
        V = ctx.vectors(name)
        return Method(name, cl.agglomerative(V, ctx.k, linkage=ctx.linkage),
                      {"algorithm": "agglomerative", "linkage": ctx.linkage,
                       "metric": "cosine", "k": ctx.k,
                       **({"vectors": V.attrs["source"]} if V.attrs.get("source") else {})},
                      vectors=name)
    for suffix in SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and (base in VECTORS or base in ctx.cache):
            if suffix == "_kmeans":
                return Method(name, cl.kmeans(ctx.vectors(base), ctx.k, seed=ctx.seed),
                              {"algorithm": "kmeans", "k": ctx.k, "seed": ctx.seed},
                              vectors=base)
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
            D = cl._cosine_distance_matrix(ctx.vectors(base).to_numpy(dtype=float))
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


def score(method: Method, ctx: EvalContext, years=None, within=None, name: str | None = None):
    """MeanCorr result of a resolved method (random partitions averaged over seeds).
    within: count only these companies (list, or dict year -> list) as clustered."""
    from .evaluate import average_results
    years = list(ctx.years if years is None else years)
    kw = dict(years=years, in_sample=ctx.fit_years, within=within,
              out_of_sample=tuple(y for y in ctx.years if y not in ctx.fit_years))
    if name is not None:
        method = Method(name, method.partition, method.notes)
    if isinstance(method.partition, list):
        res = average_results([ctx.panel.score(p, method.name, **kw) for p in method.partition],
                              method.name)
    else:
        res = ctx.panel.score(method.partition, method.name, **kw)
    res.notes = {**method.notes, **res.notes}
    return res


def peer_score(method: Method, ctx: EvalContext):
    """Every-firm peer metrics (`finsae.evaluate.peers`) of a resolved method: cluster peer
    sets from its partition; kNN-10 peer sets from its vectors (vector methods), from its
    classification hierarchy (SIC, GICS), else from its clusters."""
    kw = dict(years=ctx.years, in_sample=ctx.fit_years,
              out_of_sample=tuple(y for y in ctx.years if y not in ctx.fit_years))
    vectors = ctx.vectors(method.vectors) if method.vectors else None
    levels = [ctx.label(lv) for lv in method.levels] if method.levels else None
    return ctx.peer_panel.evaluate(method.name, partition=method.partition, vectors=vectors,
                                   levels=levels, **kw)


BASELINE = "gics_sub_industry"


@dataclass
class Evaluation:
    """Every method of one comparison: MeanCorr and peer results, how each was resolved, and
    (for MST methods) the other methods restricted to the companies it covers."""

    results: dict
    peers: dict
    resolved: dict
    restricted: dict
    baseline: str = BASELINE

    def table(self) -> pd.DataFrame:
        """One row per method: the peer metrics first, then MeanCorr and its companions."""
        from .evaluate import compare
        mc = compare(self.results.values())
        pr = pd.DataFrame([p.summary() for p in self.peers.values()])
        return pr.join(mc, how="outer").loc[list(self.results)]

    def method_dicts(self, ci_by: str = "year", n_boot: int = 2000) -> dict:
        base = self.peers.get(self.baseline)
        return {n: {**self.peers[n].to_dict(base), **r.to_dict(ci_by, n_boot)}
                for n, r in self.results.items()}


def evaluate_methods(ctx: EvalContext, names, log=None) -> Evaluation:
    """Resolve and score every method on ctx's universe (MeanCorr and peer metrics); the
    baseline (GICS sub-industry) is scored too for the paired comparisons."""
    import time
    results, peers, resolved = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        m = resolve(name, ctx)
        resolved[name] = m
        results[name] = score(m, ctx)
        peers[name] = peer_score(m, ctx)
        if log:
            log(f"{name}: {time.perf_counter() - t0:.1f}s")
    if BASELINE not in peers:  # scored for the paired comparisons even when not listed
        peers[BASELINE] = peer_score(resolve(BASELINE, ctx), ctx)
    restricted = {}
    for name, m in resolved.items():
        if m.notes.get("algorithm") != "mst_threshold":
            continue
        cover = cl.covered(m.partition)
        restricted[name] = {}
        for other, o in resolved.items():
            if o.notes.get("algorithm") == "mst_threshold" and other != name:
                continue
            restricted[name][other] = score(o, ctx, within=cover, name=f"{other} within {name}")
    return Evaluation(results, peers, resolved, restricted)
