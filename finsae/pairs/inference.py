"""Statistics of strategy returns: Sharpe-ratio differences (Jobson-Korkie-Memmel, bootstrap),
stationary block-bootstrap intervals, and the average over the seeds of a seeded baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import norm

if TYPE_CHECKING:
    from .backtest import BacktestConfig, BacktestResult

#: trading days a year (annualisation)
YEAR = 252


class SharpeDifference(NamedTuple):
    """Test of H0: equal Sharpe ratios of two daily return series (annualised figures)."""

    sharpe_a: float
    sharpe_b: float
    difference: float
    statistic: float
    pvalue: float
    method: str
    nobs: int


def sharpe_difference(a, b, method: str = "memmel", block: int = 21, n_boot: int = 2000,
                      seed: int = 0) -> SharpeDifference:
    """Is the Sharpe ratio of daily returns `a` different from that of `b` (same dates)?

    method "memmel": Jobson-Korkie z-test with Memmel's (2003) correction,
        ``theta = [2 (1 - rho) + (SR_a^2 + SR_b^2 - 2 SR_a SR_b rho^2) / 2] / T`` on daily
        Sharpe ratios; two-sided normal p-value. Assumes i.i.d. normal returns.
    method "bootstrap": circular block bootstrap of the paired daily returns (blocks of `block`
        days keep autocorrelation and the cross-correlation); p-value = share of resampled
        differences at least as far from the observed one as the observed one is from 0.
    """
    ab = pd.concat([pd.Series(a), pd.Series(b)], axis=1).dropna().to_numpy()
    T = len(ab)
    if T < 3:
        raise ValueError("need at least 3 common observations")
    mu, sd = ab.mean(0), ab.std(0, ddof=1)
    ann = np.sqrt(YEAR)
    if not (sd > 0).all():  # a series with no variation (e.g. no trade): undefined Sharpe
        sr = np.where(sd > 0, mu / np.where(sd > 0, sd, 1.0), np.nan)
        return SharpeDifference(float(sr[0] * ann), float(sr[1] * ann), float("nan"),
                                float("nan"), float("nan"), method, T)
    sr = mu / sd
    diff = sr[0] - sr[1]
    if method == "memmel":
        rho = np.corrcoef(ab.T)[0, 1]
        theta = (2 * (1 - rho) + 0.5 * (sr[0] ** 2 + sr[1] ** 2 - 2 * sr[0] * sr[1] * rho ** 2)) / T
        with np.errstate(invalid="ignore", divide="ignore"):
            z = diff / np.sqrt(theta) if theta > 0 else float("nan")
        p = 2 * norm.sf(abs(z))
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        nb = int(np.ceil(T / block))
        starts = rng.integers(0, T, size=(n_boot, nb))
        idx = ((starts[:, :, None] + np.arange(block)) % T).reshape(n_boot, -1)[:, :T]
        s = ab[idx]  # (n_boot, T, 2)
        srb = s.mean(1) / s.std(1, ddof=1)
        d = srb[:, 0] - srb[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = diff / d.std(ddof=1)
        p = float(np.mean(np.abs(d - diff) >= abs(diff)))
    else:
        raise ValueError(f"method must be 'memmel' or 'bootstrap', not {method!r}")
    return SharpeDifference(float(sr[0] * ann), float(sr[1] * ann), float(diff * ann), float(z),
                            float(p), method, T)


def stationary_bootstrap_indices(T: int, n_boot: int, block: float, rng) -> np.ndarray:
    """(n_boot, T) day indices of the Politis-Romano (1994) stationary bootstrap: blocks of
    geometric length with mean `block`, each starting at a uniform day, wrapping around."""
    new = rng.random((n_boot, T)) < 1.0 / block
    new[:, 0] = True
    starts = rng.integers(0, T, size=(n_boot, T))
    pos = np.arange(T)
    last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # start of the current block
    return (np.take_along_axis(starts, last, 1) + pos - last) % T


class SharpeIntervals(NamedTuple):
    """Per strategy: Sharpe (annualised, 252) with its bootstrap interval, and its difference
    to the baseline with interval and two-sided bootstrap p-value. `draws` holds the
    resampled Sharpe ratios (n_boot x strategy)."""

    table: pd.DataFrame
    draws: pd.DataFrame


def bootstrap_sharpe(returns: pd.DataFrame, baseline: str | None = None,
                     groups: dict[str, list[str]] | None = None, block: float = 21.0,
                     n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                     chunk: int = 100) -> SharpeIntervals:
    """Stationary block-bootstrap intervals of each strategy's Sharpe ratio and of its
    difference to `baseline`, resampling the days of all columns jointly (one set of indices
    per draw), so cross-correlation and (up to ~`block` days) autocorrelation are kept.

    returns: daily returns (date x column). groups: name -> columns whose Sharpe ratios are
    averaged (e.g. the random baseline's seeds); every other column is its own strategy.
    Percentile intervals at `level`; p-value of the difference = share of draws of the
    difference at least as far from the observed difference as it is from 0.
    """
    R = returns.dropna(how="all").fillna(0.0)
    T = len(R)
    if T < 3:
        raise ValueError("need at least 3 days of returns")
    groups = dict(groups or {})
    grouped = {c for cols in groups.values() for c in cols}
    strategies = {c: [c] for c in R.columns if c not in grouped}
    strategies.update(groups)
    X = R.to_numpy(dtype=float)
    ann = np.sqrt(YEAR)

    def sharpe(a, axis):
        sd = a.std(axis=axis, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sd > 0, a.mean(axis=axis) / sd, np.nan) * ann

    col = {c: j for j, c in enumerate(R.columns)}
    point_cols = sharpe(X, 0)
    point = {n: float(np.nanmean(point_cols[[col[c] for c in cs]])) for n, cs in
             strategies.items()}
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, X.shape[1]))
    for s in range(0, n_boot, chunk):
        idx = stationary_bootstrap_indices(T, min(chunk, n_boot - s), block, rng)
        for j in range(X.shape[1]):
            draws[s:s + len(idx), j] = sharpe(X[idx, j], 1)
    with np.errstate(invalid="ignore"):
        sd = {n: np.nanmean(draws[:, [col[c] for c in cs]], axis=1) for n, cs in
              strategies.items()}
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    rows = {}
    for n in strategies:
        d = sd[n]
        row = {"sharpe": point[n], "sharpe_lo": float(np.nanquantile(d, lo_q)),
               "sharpe_hi": float(np.nanquantile(d, hi_q)),
               "p_sharpe_le_0": float(np.mean(d <= 0))}
        if baseline is not None and n != baseline and baseline in strategies:
            diff = point[n] - point[baseline]
            dd = d - sd[baseline]
            row.update({"diff": diff, "diff_lo": float(np.nanquantile(dd, lo_q)),
                        "diff_hi": float(np.nanquantile(dd, hi_q)),
                        "diff_pvalue": float(np.mean(np.abs(dd - diff) >= abs(diff)))})
        rows[n] = row
    table = pd.DataFrame(rows).T.rename_axis("method")
    table.attrs.update({"block": block, "n_boot": n_boot, "level": level, "baseline": baseline,
                        "bootstrap": "stationary (Politis-Romano), percentile intervals"})
    return SharpeIntervals(table, pd.DataFrame(sd))


def combine_seeds(res: BacktestResult, groups: dict[str, list[str]], config: BacktestConfig
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Collapse each group of seed strategies (e.g. ``{"random": ["random_s0", ...]}``) into
    one: daily returns = the mean over seeds (an equal-weight portfolio of the seeds),
    metrics = the mean over seeds of each seed's metric (so "sharpe" is the average seed
    Sharpe, the floor a single 20-pair portfolio is compared with), trades = all seeds' trades.

    Returns (returns, equity, metrics, trades) with the seed columns replaced by the groups
    (in the position of each group's first seed)."""
    returns, metrics, trades = res.returns, res.metrics, res.trades
    out_r, out_m, order = {}, {}, []
    first = {cols[0]: g for g, cols in groups.items()}
    grouped = {c for cols in groups.values() for c in cols}
    for c in returns.columns:
        if c in first:
            g = first[c]
            out_r[g] = returns[groups[g]].mean(axis=1)
            m = metrics.loc[groups[g]].astype(float)
            row = m.mean()
            row["n_trades"] = float(m["n_trades"].mean())
            row["sharpe_seed_sd"] = float(m["sharpe"].std(ddof=1)) if len(m) > 1 else np.nan
            row["n_seeds"] = len(m)
            out_m[g] = row
            order.append(g)
        elif c not in grouped:
            out_r[c] = returns[c]
            out_m[c] = metrics.loc[c]
            order.append(c)
    R = pd.DataFrame(out_r)[order]
    M = pd.DataFrame(out_m).T.loc[order].rename_axis("method")
    start = config.selection.top_n * config.init_cash
    E = start * (1 + R).cumprod()
    tr = trades.copy()
    for g, cols in groups.items():
        tr.loc[tr["method"].isin(cols), "method"] = g
    return R, E, M, tr
