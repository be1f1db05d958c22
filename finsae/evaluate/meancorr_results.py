"""MeanCorr results: one method's figures and bootstrap CIs, seed averages, comparison table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .protocol import IN_SAMPLE, OUT_OF_SAMPLE

# ----------------------------------------------------------------------------- results

@dataclass
class MeanCorrResult:
    """MeanCorr of one method, statsmodels-style: ``summary()``, ``conf_int()``, ``to_dict()``.

    by_year: DataFrame indexed by year (mean_corr, pair_weighted, n_clusters = clusters scored
        that year (>= 2 members with complete returns), n_covered, n_pairs, n_companies,
        coverage, k = clusters of the partition in the universe, singletons included). clusters: one row per scored cluster and year.
    """

    method: str
    by_year: pd.DataFrame
    clusters: pd.DataFrame
    in_sample: tuple = IN_SAMPLE
    out_of_sample: tuple = OUT_OF_SAMPLE
    freq: str = "M"
    universe_size: int = 0
    notes: dict = field(default_factory=dict)
    seed_std: pd.DataFrame | None = None  # random partitions: spread over seeds, by year

    def _years(self, years) -> list[int]:
        if years is None:
            return list(self.by_year.index)
        if isinstance(years, str):
            years = {"all": self.by_year.index, "in_sample": self.in_sample,
                     "out_of_sample": self.out_of_sample}[years]
        return [y for y in years if y in self.by_year.index]

    def mean_corr(self, years=None, weighting: str = "unweighted") -> float:
        """Average over `years` (None/"all", "in_sample", "out_of_sample" or a list) of the
        per-year MeanCorr ("unweighted") or the pair-weighted figure ("pairs")."""
        col = {"unweighted": "mean_corr", "pairs": "pair_weighted"}[weighting]
        return float(self.by_year.loc[self._years(years), col].mean())

    @property
    def coverage(self) -> float:
        return float(self.by_year["coverage"].mean())

    @property
    def n_clusters(self) -> float:
        return float(self.by_year["n_clusters"].mean())

    def conf_int(self, alpha: float = 0.05, years=None, weighting: str = "unweighted",
                 by: str = "year", n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Percentile bootstrap interval of `mean_corr(years, weighting)`.

        by="year": resample years (the year-to-year variation of co-movement);
        by="cluster": resample the scored clusters within each year (stratified), which holds
        the years fixed and asks how much the figure depends on which clusters were formed.
        """
        ys = self._years(years)
        rng = np.random.default_rng(seed)
        if by == "year":
            col = "mean_corr" if weighting == "unweighted" else "pair_weighted"
            v = self.by_year.loc[ys, col].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                return (np.nan, np.nan)
            boots = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
        elif by == "cluster":
            if not len(self.clusters):
                return (np.nan, np.nan)
            per_year = []
            for y in ys:
                cs = self.clusters[self.clusters["year"] == y]
                if not len(cs):
                    continue
                idx = rng.integers(0, len(cs), size=(n_boot, len(cs)))
                if weighting == "unweighted":
                    per_year.append(cs["mean_corr"].to_numpy()[idx].mean(axis=1))
                else:
                    per_year.append(cs["sum_corr"].to_numpy()[idx].sum(axis=1)
                                    / cs["pairs"].to_numpy()[idx].sum(axis=1))
            if not per_year:
                return (np.nan, np.nan)
            boots = np.mean(per_year, axis=0)
        else:
            raise ValueError(f"by must be 'year' or 'cluster', not {by!r}")
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    def summary(self) -> pd.Series:
        """One row of the comparison table."""
        lo, hi = self.conf_int()
        return pd.Series({
            "mean_corr": self.mean_corr(),
            "ci_low": lo, "ci_high": hi,
            "in_sample": self.mean_corr("in_sample"),
            "out_of_sample": self.mean_corr("out_of_sample"),
            "pair_weighted": self.mean_corr(weighting="pairs"),
            "pair_weighted_out_of_sample": self.mean_corr("out_of_sample", "pairs"),
            "coverage": self.coverage,
            "n_clusters": self.n_clusters,
            "k": float(self.by_year["k"].mean()) if "k" in self.by_year else np.nan,
            "n_companies": float(self.by_year["n_companies"].mean()),
        }, name=self.method)

    def to_dict(self, ci_by: str = "year", n_boot: int = 2000) -> dict:
        """The JSON record of `finsae evaluate --json`."""
        def ci(years, weighting="unweighted"):
            return list(self.conf_int(years=years, weighting=weighting, by=ci_by, n_boot=n_boot))
        by_year = {int(y): {k: (None if pd.isna(v) else float(v) if isinstance(v, float)
                                else int(v)) for k, v in r.items()}
                   for y, r in self.by_year.iterrows()}
        out = {
            "mean_corr": _f(self.mean_corr()),
            "mean_corr_ci": ci(None),
            "mean_corr_in_sample": _f(self.mean_corr("in_sample")),
            "mean_corr_in_sample_ci": ci("in_sample"),
            "mean_corr_out_of_sample": _f(self.mean_corr("out_of_sample")),
            "mean_corr_out_of_sample_ci": ci("out_of_sample"),
            "pair_weighted": _f(self.mean_corr(weighting="pairs")),
            "pair_weighted_ci": ci(None, "pairs"),
            "pair_weighted_in_sample": _f(self.mean_corr("in_sample", "pairs")),
            "pair_weighted_out_of_sample": _f(self.mean_corr("out_of_sample", "pairs")),
            "coverage": _f(self.coverage),
            "n_clusters": _f(self.n_clusters),
            "k": _f(float(self.by_year["k"].mean())) if "k" in self.by_year else None,
            "ci": {"level": 0.95, "bootstrap": ci_by, "n_boot": n_boot},
            "by_year": by_year,
        }
        if self.notes:
            out["notes"] = self.notes
        return out

    def __repr__(self) -> str:
        s = self.summary()
        return (f"MeanCorrResult({self.method!r}: {s.mean_corr:.3f} [{s.ci_low:.3f}, "
                f"{s.ci_high:.3f}], in {s.in_sample:.3f} / out {s.out_of_sample:.3f}, "
                f"pair-weighted {s.pair_weighted:.3f}, coverage {s.coverage:.2f}, "
                f"K {s.n_clusters:.1f})")


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def average_results(results: list[MeanCorrResult], method: str) -> MeanCorrResult:
    """Mean over seeds (e.g. random partitions) of the per-year figures; the cluster table of
    the first seed is kept for the cluster bootstrap, and the spread over seeds in seed_std."""
    if not results:
        raise ValueError("no results to average")
    cols = [c for c in results[0].by_year.columns if c in (
        "mean_corr", "pair_weighted", "n_clusters", "n_covered", "n_pairs", "n_companies",
        "coverage", "k")]
    stack = pd.concat([r.by_year[cols] for r in results], keys=range(len(results)))
    by_year = stack.groupby(level="year").mean()
    r0 = results[0]
    return MeanCorrResult(method=method, by_year=by_year, clusters=r0.clusters,
                          in_sample=r0.in_sample, out_of_sample=r0.out_of_sample,
                          freq=r0.freq, universe_size=r0.universe_size,
                          notes={"n_seeds": len(results)},
                          seed_std=stack.groupby(level="year").std())


def compare(results: Iterable[MeanCorrResult]) -> pd.DataFrame:
    """The comparison table: one row per method (see `MeanCorrResult.summary`)."""
    return pd.DataFrame([r.summary() for r in results])
