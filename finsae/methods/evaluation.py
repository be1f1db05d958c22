"""Scoring resolved methods: MeanCorr and the every-firm peer metrics of each, collected in an
`Evaluation` that describes (`to_dict`) and saves (`save`) itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import cluster as cl
from ..data.errors import DataError
from .context import EvalContext
from .registry import Method, canonical, resolve

BASELINE = "gics_sub_industry"


def score(method: Method, ctx: EvalContext, years=None, within=None, name: str | None = None):
    """MeanCorr result of a resolved method (random partitions averaged over seeds).
    within: count only these companies (list, or dict year -> list) as clustered."""
    from ..evaluate import average_results
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


@dataclass
class Evaluation:
    """Every method of one comparison: MeanCorr and peer results, how each was resolved, and
    (for MST methods) the other methods restricted to the companies it covers."""

    results: dict
    peers: dict
    resolved: dict
    restricted: dict
    ctx: EvalContext
    baseline: str = BASELINE

    def table(self) -> pd.DataFrame:
        """One row per method: the peer metrics first, then MeanCorr and its companions."""
        from ..evaluate import compare
        mc = compare(self.results.values())
        pr = pd.DataFrame([p.summary() for p in self.peers.values()])
        return pr.join(mc, how="outer").loc[list(self.results)]

    def method_dicts(self, ci_by: str = "year", n_boot: int = 2000) -> dict:
        base = self.peers.get(self.baseline)
        return {n: {**self.peers[n].to_dict(base), **r.to_dict(ci_by, n_boot),
                    "choice": self.resolved[n].notes}
                for n, r in self.results.items()}

    def to_dict(self, ci_by: str = "year", n_boot: int = 2000) -> dict:
        """The universe, the protocol and every method's figures (results.json)."""
        from ..evaluate.peers import KNN
        from ..jsonable import jsonable
        ctx = self.ctx
        out = {
            "universe": {"n_companies": len(ctx.universe),
                         "companies": ctx.companies.attrs.get("source"),
                         "description_vintage": ctx.companies.attrs.get("vintage"),
                         "prices": ctx.prices.attrs.get("source")},
            "protocol": {"freq": ctx.freq, "years": [min(ctx.years), max(ctx.years)],
                         "in_sample": [min(ctx.fit_years), max(ctx.fit_years)],
                         "out_of_sample": sorted(set(ctx.years) - set(ctx.fit_years)),
                         "k": ctx.k, "n_seeds_random": ctx.n_seeds,
                         "mst_min_coverage": ctx.min_coverage,
                         "mst_max_cluster_share": ctx.max_cluster_share,
                         "linkage": ctx.linkage, "knn": KNN, "baseline": self.baseline,
                         "metric": "mean over years of the unweighted mean over clusters of "
                                   "the mean within-cluster pairwise Pearson correlation",
                         "peer_metrics": "firm means per year of daily-return R² on the "
                                         "equal-weighted peer mean (docs/evaluation.md), then "
                                         "years"},
            "methods": self.method_dicts(ci_by, n_boot),
        }
        if self.restricted:
            out["restricted_to_mst_coverage"] = {
                n: {o: {k: v for k, v in r.to_dict(ci_by, n_boot).items() if k != "by_year"}
                    for o, r in d.items()} for n, d in self.restricted.items()}
        return jsonable(out)

    def save(self, folder: str | Path, ci_by: str = "year", n_boot: int = 2000) -> Path:
        """results.json, meancorr.csv, by_year.csv, peers_by_year.csv (and
        meancorr_restricted.csv) and the PNG plots in `folder`."""
        from ..evaluate.report import write_evaluation
        return write_evaluation(Path(folder), self, self.to_dict(ci_by, n_boot))


def evaluate_methods(ctx: EvalContext, names, log=None) -> Evaluation:
    """Resolve and score every method on ctx's universe (MeanCorr and peer metrics); the
    baseline (GICS sub-industry) is scored too for the paired comparisons."""
    for name in names:  # refused before any method is computed
        if canonical(name).partition("@")[0].endswith("_knn"):
            raise DataError(f"{name} gives candidate pairs (each company's nearest companies), "
                            f"not clusters: use it with `finsae backtest`")
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
    return Evaluation(results, peers, resolved, restricted, ctx)
