"""The evaluation protocol: in-sample years choose the threshold, out-of-sample ones report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pandas as pd

from ..data.errors import DataError

if TYPE_CHECKING:
    from .meancorr import ReturnPanel

IN_SAMPLE = tuple(range(2001, 2011))
OUT_OF_SAMPLE = tuple(range(2011, 2021))
YEARS = IN_SAMPLE + OUT_OF_SAMPLE


# ----------------------------------------------------------------------------- threshold protocols

def threshold_scores(panel: ReturnPanel, partitions: Mapping[float, object],
                     weighting: str = "unweighted", min_coverage: float = 0.0,
                     max_cluster_share: float = 1.0) -> pd.DataFrame:
    """theta x year table of MeanCorr for a grid of partitions (e.g. `mst_threshold_path`).

    Years where a partition covers less than `min_coverage` of the year's companies, or where
    its largest cluster holds more than `max_cluster_share` of them (a giant component), score
    NaN, so that threshold is never chosen for them."""
    col = "mean_corr" if weighting == "unweighted" else "pair_weighted"
    rows = {}
    for theta, part in partitions.items():
        res = panel.score(part)
        by = res.by_year
        ok = by["coverage"] >= min_coverage
        if max_cluster_share < 1.0:
            largest = res.clusters.groupby("year")["size"].max().reindex(by.index).fillna(0)
            ok &= largest <= max_cluster_share * by["n_companies"]
        rows[theta] = by[col].where(ok)
    return pd.DataFrame(rows).T.rename_axis(index="theta", columns="year")


def select_fixed(scores: pd.DataFrame, fit_years: Iterable[int] = IN_SAMPLE) -> float:
    """The theta with the best mean score over `fit_years` (ties: the smallest theta)."""
    ys = [y for y in fit_years if y in scores.columns]
    if not ys:
        raise DataError("no fitting year in the threshold scores")
    mean = scores[ys].mean(axis=1, skipna=False)
    if mean.isna().all():
        raise DataError("no threshold is admissible on the fitting years: each leaves coverage "
                        "below min_coverage or forms a cluster above max_cluster_share in "
                        "some year")
    return float(mean.idxmax())


def select_rolling(scores: pd.DataFrame, years: Iterable[int] = YEARS,
                   window: int = 5) -> dict[int, float]:
    """For each year t, the theta with the best mean score over the previous `window` years
    (only those present in `scores`; at least one is needed)."""
    out = {}
    for t in years:
        prev = [y for y in range(t - window, t) if y in scores.columns]
        if not prev:
            raise DataError(f"rolling threshold for {t} needs scores of an earlier year")
        out[int(t)] = select_fixed(scores, prev)
    return out
