"""MeanCorr: how well a grouping of companies captures return co-movement.

For each year y, the Pearson correlation of two companies' log returns within that year (12
monthly returns by default, or the daily returns) is averaged over the pairs inside each cluster,
then over clusters (unweighted, as in Molinari et al. 2025); the pair-weighted variant averages
over all within-cluster pairs at once (large clusters weigh more). Years are then averaged.

Conventions (kept identical for every method so the numbers are comparable):

- One universe for every method (`ReturnPanel.tickers`); a company-year counts only when the
  company has complete returns that year (all 12 months, or every trading day for daily) with
  non-zero variance. A cluster is scored in year y when it has >= 2 such members.
- coverage = share of the year's scored companies that sit in a scored cluster; n_clusters =
  number of scored clusters. Both are reported per year and averaged over years.
- In-sample years (default 2001-2010) choose any parameter (threshold, K, lookback); the
  out-of-sample years (default 2011-2020) are only reported.

The per-year correlation matrix is computed once (`ReturnPanel`); each partition is then scored
with a one-hot matrix product, so a method over 20 years takes a few milliseconds.

The results (`MeanCorrResult`, `average_results`, `compare`) live in
`finsae.evaluate.meancorr_results`, the years and the threshold selection in
`finsae.evaluate.protocol`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..data.errors import DataError
from .meancorr_results import MeanCorrResult
from .protocol import IN_SAMPLE, OUT_OF_SAMPLE, YEARS



# ----------------------------------------------------------------------------- returns panel

def universe_of(returns: pd.DataFrame, universe: Iterable[str] | None) -> pd.Index:
    """The tickers to score: `universe` (default: every column of `returns`), each with a
    return column, no duplicates; `returns` must be indexed by date."""
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise DataError("returns must have a DatetimeIndex")
    tickers = pd.Index(returns.columns if universe is None else list(universe))
    if tickers.has_duplicates:
        raise DataError(f"duplicate ticker {tickers[tickers.duplicated()][0]} in the universe")
    missing = tickers.difference(returns.columns)
    if len(missing):
        raise DataError(f"{len(missing)} universe ticker(s) without returns, e.g. "
                        f"{', '.join(missing[:5])}")
    return tickers


def partition_codes(partition: pd.Series, tickers: pd.Index) -> np.ndarray:
    """Integer cluster codes of `partition` (a Series ticker -> label) over `tickers`
    (-1 = unclustered / not in the partition)."""
    if not isinstance(partition, pd.Series):
        raise DataError(f"a partition must be a pandas Series ticker -> label, "
                        f"got {type(partition).__name__}")
    if partition.index.has_duplicates:
        raise DataError(f"duplicate ticker {partition.index[partition.index.duplicated()][0]}"
                        " in the partition")
    codes, _ = pd.factorize(partition.reindex(tickers), use_na_sentinel=True)
    return codes


class ReturnPanel:
    """Per-year return correlation matrices of a fixed universe.

    returns: log returns, DatetimeIndex x ticker (monthly or daily; see `freq`).
    universe: the tickers every method is evaluated on (default: all columns). A ticker of the
        universe without a return column is an error.
    years: the years to prepare (a year without any complete company is an error).
    freq: "M" (a company-year needs 12 returns) or "D" (a return on every row of that year).
    """

    def __init__(self, returns: pd.DataFrame, universe: Iterable[str] | None = None,
                 years: Iterable[int] = YEARS, freq: str = "M"):
        if freq not in ("M", "D"):
            raise ValueError(f"freq must be 'M' or 'D', not {freq!r}")
        tickers = self.tickers = universe_of(returns, universe)
        self.freq = freq
        self.years: list[int] = []
        self._pos: dict[int, np.ndarray] = {}
        self._corr: dict[int, np.ndarray] = {}
        self._upper: dict[int, np.ndarray] = {}  # upper triangle of each year's matrix
        self._triu_cache: dict[int, tuple] = {}
        R = returns[tickers]
        yr = R.index.year
        for y in sorted(set(int(v) for v in years)):
            block = R.loc[yr == y]
            X = block.to_numpy(dtype=float)
            if freq == "M" and len(X) != 12:
                raise DataError(f"monthly returns for {y}: {len(X)} rows, need one per month (12)")
            if len(X) < 3:
                raise DataError(f"daily returns for {y}: {len(X)} rows, need at least 3")
            ok = np.isfinite(X).all(axis=0)
            ok[ok] = np.ptp(X[:, ok], axis=0) > 0  # constant series: no correlation
            pos = np.flatnonzero(ok)
            if len(pos) < 2:
                raise DataError(f"returns for {y}: fewer than 2 companies with complete returns")
            self.years.append(y)
            self._pos[y] = pos
            self._corr[y] = np.corrcoef(X[:, pos], rowvar=False)
            self._upper[y] = self._corr[y][self._triu(len(pos))]

    @classmethod
    def from_prices(cls, prices: pd.DataFrame, universe: Iterable[str] | None = None,
                    years: Iterable[int] = YEARS, freq: str = "M", **kw) -> ReturnPanel:
        """Screened log returns (`finsae.data.returns.log_returns`) of `prices`."""
        cols = list(prices.columns if universe is None else universe)
        return cls(screened_returns(prices, cols, freq, **kw), cols, years, freq)

    def companies(self, year: int) -> pd.Index:
        """Tickers with complete returns in `year`."""
        return self.tickers[self._pos[year]]

    def corr(self, year: int) -> pd.DataFrame:
        t = self.companies(year)
        return pd.DataFrame(self._corr[year], index=t, columns=t)

    def codes(self, partition: pd.Series) -> np.ndarray:
        """Integer cluster codes over `tickers` (-1 = unclustered / not in the partition)."""
        return partition_codes(partition, self.tickers)

    def cluster_stats(self, partition, years: Iterable[int] | None = None) -> pd.DataFrame:
        """Per year and scored cluster: size, pairs, sum and mean of within-cluster correlation.

        partition: a Series ticker -> label, or a dict year -> Series.
        """
        return self._stats_and_k(partition, self.years if years is None else years)[0]

    def _mask(self, tickers) -> np.ndarray:
        """Boolean mask over `tickers` (a dict lookup: Index.isin on arrow strings is slow)."""
        if not hasattr(self, "_where"):
            self._where = {t: i for i, t in enumerate(self.tickers)}
        m = np.zeros(len(self.tickers), dtype=bool)
        m[[self._where[t] for t in tickers if t in self._where]] = True
        return m

    def _stats_and_k(self, partition, years, within=None) -> tuple[pd.DataFrame, list[int]]:
        cols = {k: [] for k in ("year", "cluster", "size", "pairs", "sum_corr", "n_companies")}
        # (id(partition), id(within)) -> (codes, k, the objects, kept alive so ids stay unique)
        memo: dict[tuple, tuple] = {}
        ks = []
        for y in years:
            part = for_year(partition, y)
            only = None if within is None else for_year(within, y)
            key = (id(part), id(only))
            if key not in memo:
                full = self.codes(part)
                if only is not None:
                    full = np.where(self._mask(only), full, -1)
                memo[key] = (full, int(len(np.unique(full[full >= 0]))), part, only)
            full, k = memo[key][:2]
            ks.append(k)
            codes = full[self._pos[y]]
            if not (codes >= 0).any():
                continue
            iu, ju = self._triu(len(codes))
            ci = codes[iu]
            same = (ci == codes[ju]) & (ci >= 0)
            K = int(codes.max()) + 1
            s = np.bincount(ci[same], weights=self._upper[y][same], minlength=K)
            n = np.bincount(codes[codes >= 0], minlength=K).astype(float)
            scored = np.flatnonzero(n >= 2)
            cols["year"].append(np.full(len(scored), y))
            cols["cluster"].append(scored)
            cols["size"].append(n[scored])
            cols["pairs"].append(n[scored] * (n[scored] - 1) / 2)
            cols["sum_corr"].append(s[scored])
            cols["n_companies"].append(np.full(len(scored), len(codes)))
        out = pd.DataFrame({k: (np.concatenate(v) if v else np.array([], dtype=float))
                            for k, v in cols.items()})
        out["mean_corr"] = out["sum_corr"] / out["pairs"]
        return (out[["year", "cluster", "size", "pairs", "sum_corr", "mean_corr",
                     "n_companies"]], ks)

    def _triu(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n not in self._triu_cache:
            self._triu_cache[n] = np.triu_indices(n, 1)
        return self._triu_cache[n]

    def score(self, partition, method: str = "", years: Iterable[int] | None = None,
              in_sample: Iterable[int] = IN_SAMPLE,
              out_of_sample: Iterable[int] = OUT_OF_SAMPLE, within=None) -> MeanCorrResult:
        """MeanCorr of a partition (Series or dict year -> Series) on every prepared year.

        within: only these tickers (a list, or a dict year -> list) count as clustered, e.g.
            the companies another method covers; the others count as unclustered."""
        years = [y for y in (self.years if years is None else years)]
        unknown = set(years) - set(self.years)
        if unknown:
            raise DataError(f"year(s) {sorted(unknown)} not in the return panel "
                            f"({self.years[0]}-{self.years[-1]})")
        stats, ks = self._stats_and_k(partition, years, within)
        by_year = _by_year(stats, {y: len(self._pos[y]) for y in years})
        by_year["k"] = ks  # clusters of the partition in the universe, singletons included
        return MeanCorrResult(method=method, by_year=by_year, clusters=stats,
                              in_sample=tuple(in_sample), out_of_sample=tuple(out_of_sample),
                              freq=self.freq, universe_size=len(self.tickers))


def screened_returns(prices: pd.DataFrame, tickers: Iterable[str] | None = None,
                     freq: str = "M", **kw) -> pd.DataFrame:
    """`finsae.data.returns.log_returns` of the `tickers` columns of `prices` (screened).

    For the bundled prices the raw close used by the screen is read through the price cache
    (parquet), which takes a fraction of a second instead of parsing the CSV each time."""
    from ..data.prices import bundled_prices_path, known_price_fixes, load_prices
    from ..data.returns import log_returns
    cols = list(prices.columns if tickers is None else tickers)
    missing = pd.Index(cols).difference(prices.columns)
    if len(missing):
        raise DataError(f"{len(missing)} ticker(s) without prices, e.g. "
                        f"{', '.join(missing[:5])}")
    sub = prices[cols]
    sub.attrs = dict(prices.attrs)
    if (kw.get("screen", True) and "raw_close" not in kw and "fixes" not in kw
            and str(prices.attrs.get("source", "")).startswith("bundled")):
        kw["raw_close"] = load_prices(bundled_prices_path("raw"), source="file")
        kw["fixes"] = known_price_fixes()
    return log_returns(sub, freq, **kw)


def for_year(partition, year: int):
    """The partition of `year` (a dict year -> partition), or the partition itself."""
    if isinstance(partition, Mapping):
        if year not in partition:
            raise DataError(f"the partition has no clusters for {year}")
        return partition[year]
    return partition


def _by_year(stats: pd.DataFrame, n_companies: dict[int, int]) -> pd.DataFrame:
    g = stats.groupby("year")[["mean_corr", "sum_corr", "pairs", "size"]]
    sums, means, counts = g.sum(), g.mean(), g.count()
    out = pd.DataFrame({
        "mean_corr": means["mean_corr"],
        "pair_weighted": sums["sum_corr"] / sums["pairs"],
        "n_clusters": counts["size"],
        "n_covered": sums["size"],
        "n_pairs": sums["pairs"],
    }).reindex(list(n_companies))
    out["n_clusters"] = out["n_clusters"].fillna(0).astype(int)
    out["n_covered"] = out["n_covered"].fillna(0).astype(int)
    out["n_companies"] = pd.Series(n_companies)
    out["coverage"] = out["n_covered"] / out["n_companies"]
    out.index.name = "year"
    return out
