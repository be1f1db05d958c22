"""Every-firm peer metrics: how well a firm's peers explain its returns (docs/evaluation.md).

MeanCorr (`finsae.evaluate.meancorr`) ignores firms in singletons and weighs a 100-firm
catch-all cluster like a pair, so it can be raised by leaving firms out or by dumping them
together. The metrics here score every participating firm in every year:

- a company takes part in year y only with a daily log return on every trading day of y (a
  price on every day of y and on the last day of y-1), after the price screen;
- each participant i gets a peer set S(i) drawn from the participants without i: its
  cluster-mates (partitions), its k nearest neighbours by cosine (vectors), or the first level
  of a classification hierarchy where it has a peer (the kNN-equivalent of SIC and GICS);
  a firm whose peer set is empty uses the market (every other participant);
- **peer R²**: R² of the OLS of i's daily log returns on the equal-weighted mean daily log
  return of S(i) (the squared correlation; Bhojraj, Lee and Oler 2003);
- **excess R²**: peer R² minus the firm's R² on the market (all participants without i);
- **ΔR²**: R² of i on [market, peer mean] minus R² on the market alone; never negative and 0 on
  the fallback, so removing clusters can never raise it;
- **peer corr**: mean daily-return correlation of i with the members of S(i) (with kNN peer
  sets: "kNN-10 corr");
- **monthly peer R²**: peer R² on the 12 monthly log returns (sums of the daily ones).

Firm values are averaged over the year's participants, then over years. `PeerPanel` prepares
each year's returns once; scoring a peer structure is a few dense matrix products per year.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.errors import DataError
from .meancorr import for_year, partition_codes, universe_of
from .protocol import IN_SAMPLE, OUT_OF_SAMPLE, YEARS

#: neighbours in a kNN peer set (evaluation.md: kNN-10)
KNN = 10
#: classification hierarchies for the kNN-equivalent peer sets (finest level first)
HIERARCHIES = {
    "gics": ("gics_sub_industry", "gics_industry", "gics_industry_group", "gics_sector"),
    "sic": ("sic4", "sic3", "sic2", "sic_division"),
}
FIRM_COLUMNS = ("peer_r2", "market_r2", "excess_r2", "delta_r2", "peer_corr",
                "peer_r2_monthly", "has_peers", "n_peers")


def hierarchy_of(level: str) -> tuple[str, ...]:
    """The coarser levels after `level` in its classification (e.g. sic3 -> sic3, sic2, ...)."""
    for levels in HIERARCHIES.values():
        if level in levels:
            return levels[levels.index(level):]
    return (level,)


class PeerPanel:
    """Daily log returns of a fixed universe, split by year, ready to score peer sets.

    daily_returns: screened daily log returns, DatetimeIndex x ticker (e.g.
        `finsae.evaluate.screened_returns(prices, universe, "D")`).
    universe: the tickers every method is scored on (default: all columns).
    years: the years to prepare; a year with fewer than 3 participants is an error.
    """

    def __init__(self, daily_returns: pd.DataFrame, universe: Iterable[str] | None = None,
                 years: Iterable[int] = YEARS):
        tickers = self.tickers = universe_of(daily_returns, universe)
        self.years: list[int] = []
        self._pos: dict[int, np.ndarray] = {}
        self._R: dict[int, np.ndarray] = {}    # demeaned daily returns, T x n
        self._Rm: dict[int, np.ndarray] = {}   # demeaned monthly returns, 12 x n
        self._C: dict[int, np.ndarray] = {}    # daily correlation matrix, n x n
        R = daily_returns[tickers]
        yr = R.index.year
        for y in sorted(set(int(v) for v in years)):
            block = R.loc[yr == y]
            X = block.to_numpy(dtype=float)
            if len(X) < 20:
                raise DataError(f"daily returns for {y}: {len(X)} trading days, need at least "
                                f"20 (returns cover {R.index.min().date()} to "
                                f"{R.index.max().date()})")
            ok = np.isfinite(X).all(axis=0)
            ok[ok] = np.ptp(X[:, ok], axis=0) > 0
            pos = np.flatnonzero(ok)
            if len(pos) < 3:
                raise DataError(f"daily returns for {y}: fewer than 3 companies with a return "
                                "on every trading day")
            X = X[:, pos]
            M = pd.DataFrame(X, index=block.index).groupby(block.index.month).sum().to_numpy()
            self.years.append(y)
            self._pos[y] = pos
            self._R[y] = X - X.mean(axis=0)
            self._Rm[y] = M - M.mean(axis=0)
            Z = self._R[y] / np.linalg.norm(self._R[y], axis=0)
            self._C[y] = Z.T @ Z

    @classmethod
    def from_prices(cls, prices: pd.DataFrame, universe: Iterable[str] | None = None,
                    years: Iterable[int] = YEARS, **kw) -> PeerPanel:
        """Screened daily log returns (`finsae.evaluate.screened_returns`) of `prices`."""
        from .meancorr import screened_returns
        cols = list(prices.columns if universe is None else universe)
        return cls(screened_returns(prices, cols, "D", **kw), cols, years)

    def participants(self, year: int) -> pd.Index:
        """Tickers with a daily return on every trading day of `year`."""
        return self.tickers[self._pos[year]]

    def mean_corr_matrix(self, years: Iterable[int]) -> pd.DataFrame:
        """Daily-return correlation averaged over `years` for each pair (NaN where the two
        never took part in the same year): the co-movement a supervised weighting may fit."""
        n = len(self.tickers)
        S, N = np.zeros((n, n)), np.zeros((n, n))
        for y in self._years(years):
            p = self._pos[y]
            S[np.ix_(p, p)] += self._C[y]
            N[np.ix_(p, p)] += 1
        with np.errstate(invalid="ignore"):
            M = S / N
        np.fill_diagonal(M, np.nan)
        return pd.DataFrame(M, index=self.tickers, columns=self.tickers)

    # ---- peer sets as row-stochastic weight matrices over the year's participants ---------
    def _codes(self, labels: pd.Series, year: int) -> np.ndarray:
        return partition_codes(labels, self.tickers)[self._pos[year]]

    @staticmethod
    def _same(codes: np.ndarray) -> np.ndarray:
        A = (codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)
        np.fill_diagonal(A, False)
        return A

    def partition_peers(self, partition, year: int) -> np.ndarray:
        """Boolean n x n peer matrix: i's cluster-mates among the year's participants."""
        return self._same(self._codes(for_year(partition, year), year))

    def hierarchy_peers(self, levels: Sequence[pd.Series], year: int) -> np.ndarray:
        """Peers at the finest level (of `levels`, finest first) where a firm has any."""
        A = np.zeros((len(self._pos[year]),) * 2, dtype=bool)
        todo = np.ones(len(A), dtype=bool)
        for labels in levels:
            B = self._same(self._codes(for_year(labels, year), year))
            take = todo & B.any(axis=1)
            A[take] = B[take]
            todo &= ~take
        return A

    def knn_peers(self, vectors: pd.DataFrame, year: int, k: int = KNN) -> np.ndarray:
        """Boolean n x n peer matrix: the k participants with the highest cosine similarity."""
        tick = self.participants(year)
        missing = tick.difference(vectors.index)
        if len(missing):
            raise DataError(f"no vector for {len(missing)} participant(s) of {year}, e.g. "
                            f"{', '.join(missing[:5])}")
        V = vectors.loc[tick].to_numpy(dtype=float)
        norms = np.linalg.norm(V, axis=1)
        if (norms == 0).any():
            raise DataError("a company vector is all zeros: cosine similarity is undefined",
                            ticker=str(tick[int(np.flatnonzero(norms == 0)[0])]))
        V = V / norms[:, None]
        S = V @ V.T
        np.fill_diagonal(S, -np.inf)
        kk = min(k, len(S) - 1)
        # ties broken by position (stable), so results do not depend on the sort algorithm
        idx = np.argsort(-S, axis=1, kind="stable")[:, :kk]
        A = np.zeros(S.shape, dtype=bool)
        A[np.arange(len(S))[:, None], idx] = True
        return A

    # ---- scoring ---------------------------------------------------------------------------
    def firm_scores(self, peers: np.ndarray, year: int) -> pd.DataFrame:
        """Per participant of `year`: peer R², market R², excess R², ΔR², peer corr, monthly
        peer R², whether it had peers (else the market stood in) and its peer count."""
        R, Rm, C = self._R[year], self._Rm[year], self._C[year]
        n = R.shape[1]
        A = np.asarray(peers, dtype=bool)
        if A.shape != (n, n):
            raise ValueError(f"peer matrix for {year} must be {n} x {n}, got {A.shape}")
        A = A.copy()
        np.fill_diagonal(A, False)
        n_peers = A.sum(axis=1)
        has = n_peers > 0
        mkt = ~np.eye(n, dtype=bool)
        W = np.where(has[:, None], A, mkt).astype(float)
        W /= W.sum(axis=1, keepdims=True)
        Wm = mkt / (n - 1.0)
        r2 = _r2(R, R @ W.T)
        r2_mkt = _r2(R, R @ Wm.T)
        r2_m = _r2(Rm, Rm @ W.T)
        delta = _delta_r2(R, R @ Wm.T, R @ W.T)
        delta[~has] = 0.0
        corr = (W * C).sum(axis=1)
        return pd.DataFrame({"peer_r2": r2, "market_r2": r2_mkt, "excess_r2": r2 - r2_mkt,
                             "delta_r2": delta, "peer_corr": corr, "peer_r2_monthly": r2_m,
                             "has_peers": has, "n_peers": n_peers},
                            index=self.participants(year))

    def score(self, peer_fn, method: str = "", years: Iterable[int] | None = None) -> pd.DataFrame:
        """Year x metric table (firm means) for `peer_fn(year) -> n x n peer matrix`."""
        rows = {}
        for y in self._years(years):
            f = self.firm_scores(peer_fn(y), y)
            rows[y] = {**f[list(FIRM_COLUMNS[:6])].mean().to_dict(),
                       "coverage": float(f["has_peers"].mean()),
                       "mean_peers": float(f["n_peers"].mean()),
                       "n_firms": len(f)}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "year"
        return out

    def _years(self, years) -> list[int]:
        ys = list(self.years if years is None else years)
        unknown = set(ys) - set(self.years)
        if unknown:
            raise DataError(f"year(s) {sorted(unknown)} not in the peer panel "
                            f"({self.years[0]}-{self.years[-1]})")
        return ys

    def evaluate(self, method: str, *, partition=None, vectors: pd.DataFrame | None = None,
                 levels: Sequence[pd.Series] | None = None, k: int = KNN,
                 years: Iterable[int] | None = None, in_sample: Iterable[int] = IN_SAMPLE,
                 out_of_sample: Iterable[int] = OUT_OF_SAMPLE) -> PeerResult:
        """Peer metrics of one method.

        partition: its clusters (Series, or dict year -> Series); the cluster metrics.
        vectors: its company vectors; the kNN-k metrics use the k nearest by cosine.
        levels: for a classification, the label Series from the method's level to the coarsest
            (`hierarchy_of`); the kNN metrics then use the kNN-equivalent peer sets.
        A method with only a partition (e.g. past-return clusters) gets kNN metrics from its
        clusters. Random partitions (a list) are averaged over seeds.
        """
        years = self._years(years)
        if isinstance(partition, list):
            parts = [self.evaluate(method, partition=p, vectors=vectors, levels=levels, k=k,
                                   years=years, in_sample=in_sample,
                                   out_of_sample=out_of_sample) for p in partition]
            by_year = sum(r.by_year for r in parts) / len(parts)
            return PeerResult(method, by_year, tuple(in_sample), tuple(out_of_sample),
                              {"n_seeds": len(parts), "knn": parts[0].notes.get("knn")})
        clus = (self.score(lambda y: self.partition_peers(partition, y), method, years)
                if partition is not None else None)
        if vectors is not None:
            knn = self.score(lambda y: self.knn_peers(vectors, y, k), method, years)
            how = f"{k} nearest by cosine"
        elif levels is not None:
            knn = self.score(lambda y: self.hierarchy_peers(levels, y), method, years)
            how = "classification hierarchy (finest level with a peer)"
        else:
            knn, how = clus, "cluster-mates"
        if clus is None:
            clus, how_c = knn, "kNN peers"
        else:
            how_c = "cluster-mates"
        by_year = clus.copy()
        by_year["knn_r2"] = knn["peer_r2"]
        by_year["knn_corr"] = knn["peer_corr"]
        by_year["knn_delta_r2"] = knn["delta_r2"]
        return PeerResult(method, by_year, tuple(in_sample), tuple(out_of_sample),
                          {"knn": how, "peer_sets": how_c, "k": k})


def _r2(Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Column-wise squared correlation of demeaned Y and X (the R² of a one-regressor OLS)."""
    X = X - X.mean(axis=0)
    num = (Y * X).sum(axis=0)
    den = np.sqrt((Y * Y).sum(axis=0) * (X * X).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / den, 0.0)
    return r * r


def _delta_r2(Y: np.ndarray, M: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Column-wise R²(Y ~ M + P) - R²(Y ~ M), by the two-regressor formula on correlations."""
    def corr(a, b):
        a = a - a.mean(axis=0)
        b = b - b.mean(axis=0)
        den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b).sum(axis=0) / den, 0.0)
    r1, r2, r12 = corr(Y, M), corr(Y, P), corr(M, P)
    den = 1.0 - r12 * r12
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.where(den > 1e-12, (r1 * r1 + r2 * r2 - 2 * r1 * r2 * r12) / den, r1 * r1)
    return np.maximum(full - r1 * r1, 0.0)


METRICS = ("peer_r2", "excess_r2", "delta_r2", "knn_r2", "knn_corr")


@dataclass
class PeerResult:
    """Every-firm peer metrics of one method, by year (firm means), statsmodels-style.

    by_year columns: peer_r2, market_r2, excess_r2, delta_r2, peer_corr, peer_r2_monthly
    (with the method's cluster peer sets), coverage (share of firms with cluster peers),
    mean_peers, n_firms, knn_r2, knn_corr, knn_delta_r2 (with its kNN peer sets).
    """

    method: str
    by_year: pd.DataFrame
    in_sample: tuple = IN_SAMPLE
    out_of_sample: tuple = OUT_OF_SAMPLE
    notes: dict = field(default_factory=dict)

    def _years(self, years) -> list[int]:
        if years is None or years == "all":
            return list(self.by_year.index)
        if isinstance(years, str):
            years = {"in_sample": self.in_sample, "out_of_sample": self.out_of_sample}[years]
        return [y for y in years if y in self.by_year.index]

    def mean(self, metric: str, years=None) -> float:
        return float(self.by_year.loc[self._years(years), metric].mean())

    def paired(self, other: PeerResult, metric: str, years=None) -> dict:
        """Year-by-year difference self - other on `metric`: mean, years won / scored."""
        ys = [y for y in self._years(years) if y in other.by_year.index]
        d = (self.by_year.loc[ys, metric] - other.by_year.loc[ys, metric]).astype(float)
        return {"mean_diff": _f(d.mean()), "years_won": int((d > 0).sum()),
                "years": len(ys), "by_year": {int(y): _f(v) for y, v in d.items()}}

    def to_dict(self, baseline: PeerResult | None = None) -> dict:
        """The JSON record: each metric over all years, in-sample and out-of-sample."""
        out = {}
        for m in (*METRICS, "market_r2", "peer_corr", "peer_r2_monthly", "knn_delta_r2"):
            out[m] = _f(self.mean(m))
            out[f"{m}_in_sample"] = _f(self.mean(m, "in_sample"))
            out[f"{m}_out_of_sample"] = _f(self.mean(m, "out_of_sample"))
        out["peer_coverage"] = _f(self.mean("coverage"))
        out["mean_peers"] = _f(self.mean("mean_peers"))
        out["peer_notes"] = dict(self.notes)
        if baseline is not None and baseline is not self:
            out["vs_baseline"] = {
                "baseline": baseline.method,
                **{m: {p: self.paired(baseline, m, p if p != "all" else None)
                       for p in ("in_sample", "out_of_sample")} for m in METRICS}}
        out["peer_by_year"] = {int(y): {k: _f(v) for k, v in r.items()}
                               for y, r in self.by_year.iterrows()}
        return out

    def summary(self) -> pd.Series:
        s = {}
        for m in ("peer_r2", "knn_r2", "excess_r2", "delta_r2", "knn_corr"):
            s[f"{m}_in"] = self.mean(m, "in_sample")
            s[f"{m}_out"] = self.mean(m, "out_of_sample")
        s["peer_coverage"] = self.mean("coverage")
        return pd.Series(s, name=self.method)


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
