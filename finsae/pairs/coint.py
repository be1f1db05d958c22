"""Engle-Granger cointegration for many pairs at once (Johansen: `johansen`; half-life, Hurst,
mean crossings, OU fit and GGR distance of a spread: `spread_stats`). About 430 lines: the
blocked regression sums, their Cholesky solve and the statsmodels-equal conventions are one
algorithm, kept together.

`engle_granger(y, x)` tests every column pair ``(y[:, p], x[:, p])`` in one batch and returns
the same numbers as ``statsmodels.tsa.stattools.coint(y[:, p], x[:, p], trend="c", ...)``:

1. Cointegrating regression, OLS with a constant: ``y = alpha + beta * x + e`` (closed form,
   vectorised over pairs).
2. ADF regression on the residual without deterministic terms (statsmodels' ``regression="n"``,
   as in MacKinnon 2010 and Stata's ``egranger``)::

       de_t = rho * e_t + g_1 de_{t-1} + ... + g_L de_{t-L} + u_t,    de_t = e_{t+1} - e_t

   solved by the normal equations, in blocks of `chunk` pairs copied pairs-major so that a
   block stays in cache: the Gram matrix of every lag and sample window comes from one pass
   of lagged products (totals by one BLAS product, minus the few products outside the
   window, see `_lag_sums`), and a batched Cholesky factor gives the SSR of every nested lag
   at once and the t-value of ``rho``, the statistic. A block whose factorisation fails (a
   constant or exactly collinear pair) is solved by the plain normal equations instead,
   where a singular system gives NaN for that pair only.
3. p-value: MacKinnon (1994, 2010) response surface for cointegration tests with N = 2 series
   and a constant (``mackinnonp(stat, regression="c", N=2)``), evaluated vectorised from
   statsmodels' own coefficient tables (tested equal to ``mackinnonp``); critical values from
   ``mackinnoncrit(N=2, regression="c", nobs=T - 1)`` exactly as ``coint`` does.

Lag selection (the ``lags`` argument):

* an int ``L``: a fixed lag, equal to ``coint(..., maxlag=L, autolag=None)``;
* ``"aic"`` or ``"bic"``: statsmodels' rule. Every lag 0..``maxlag`` is fitted on the same
  sample (the last ``T - 1 - maxlag`` differences), the lag with the smallest criterion wins
  (ties go to the shorter lag), and the statistic is then recomputed at that lag on its own,
  longer sample. Equal to ``coint(..., maxlag=maxlag, autolag="aic")``.
  ``maxlag=None`` uses statsmodels' default ``ceil(12 (T/100)^(1/4))`` (Schwert), capped at
  ``T // 2 - 1``.

As in ``coint``, a pair whose regression R^2 is within ``100 * sqrt(eps)`` of 1 (collinear
series) gets statistic ``-inf`` and p-value 0.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import norm
from statsmodels.tsa import adfvalues
from statsmodels.tsa.adfvalues import mackinnoncrit

SQRTEPS = np.sqrt(np.finfo(np.float64).eps)


class EngleGrangerResult(NamedTuple):
    """Batched Engle-Granger results, one entry per pair (y regressed on x).

    statistic: ADF t-statistic of the residual's lagged level (more negative = stronger).
    pvalue: MacKinnon asymptotic p-value (H0: no cointegration).
    lags: number of lagged differences used in the ADF regression.
    nobs: observations in the ADF regression (T - 1 - lags).
    beta, alpha: hedge ratio and intercept of the OLS ``y = alpha + beta x``.
    rsquared: R^2 of that regression.
    critical_values: 1%, 5%, 10% critical values (shape (3,)), same for every pair.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    lags: np.ndarray
    nobs: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray
    rsquared: np.ndarray
    critical_values: np.ndarray


def default_maxlag(nobs: int) -> int:
    """statsmodels' default maximum ADF lag for a series of `nobs` points (Schwert 1989)."""
    return int(min(nobs // 2 - 1, np.ceil(12.0 * np.power(nobs / 100.0, 0.25))))


def mackinnon_pvalue(stat, regression: str = "c", N: int = 2) -> np.ndarray:
    """Vectorised ``statsmodels.tsa.adfvalues.mackinnonp`` (same tables, same branches)."""
    stat = np.asarray(stat, dtype=float)
    maxstat = adfvalues._tau_maxs[regression][N - 1]
    minstat = adfvalues._tau_mins[regression][N - 1]
    starstat = adfvalues._tau_stars[regression][N - 1]
    small = np.asarray(adfvalues._tau_smallps[regression][N - 1], dtype=float)
    large = np.asarray(adfvalues._tau_largeps[regression][N - 1], dtype=float)
    s = np.where(np.isfinite(stat), stat, 0.0)
    p_small = norm.cdf(np.polynomial.polynomial.polyval(s, small))
    p_large = norm.cdf(np.polynomial.polynomial.polyval(s, large))
    p = np.where(s <= starstat, p_small, p_large)
    p = np.where(stat > maxstat, 1.0, np.where(stat < minstat, 0.0, p))
    return np.where(np.isnan(stat), np.nan, p)


def as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (T,) or 2-D (T, pairs), got shape {a.shape}")
    return a


def ols_hedge(y, x):
    """OLS ``y = alpha + beta x + e`` column by column. Returns (beta, alpha, resid, rsquared)."""
    y, x = as_2d(y, "y"), as_2d(x, "x")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    sxx = np.einsum("tp,tp->p", xc, xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.einsum("tp,tp->p", xc, yc) / sxx
        resid = yc - beta * xc
        r2 = 1.0 - np.einsum("tp,tp->p", resid, resid) / np.einsum("tp,tp->p", yc, yc)
    return beta, ym - beta * xm, resid, r2


def _design(e: np.ndarray, de: np.ndarray, start: int, lags: int):
    """ADF regressors for differences de[start:] : (P, n, lags+1) and target (P, n)."""
    T1 = de.shape[0]
    cols = [e[start:T1]] + [de[start - j:T1 - j] for j in range(1, lags + 1)]
    Z = np.stack(cols, axis=-1).transpose(1, 0, 2)  # (P, n, K)
    return Z, de[start:].T


def _solve(G: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched solve; a singular system gives NaN for that pair only."""
    try:
        return np.linalg.solve(G, rhs)
    except np.linalg.LinAlgError:
        sol = np.full(rhs.shape, np.nan)
        for i in range(len(G)):
            try:
                sol[i] = np.linalg.solve(G[i], rhs[i])
            except np.linalg.LinAlgError:
                pass
        return sol


def _ols_batch(Z: np.ndarray, d: np.ndarray):
    """Batched OLS without constant: coefficients, SSR and the t-value of the first column."""
    G = np.matmul(Z.transpose(0, 2, 1), Z)
    b = np.matmul(Z.transpose(0, 2, 1), d[..., None])
    K = Z.shape[-1]
    e0 = np.zeros((1, K, 1))
    e0[0, 0, 0] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        sol = _solve(G, np.concatenate([b, np.broadcast_to(e0, b.shape)], axis=-1))
        coef, g00 = sol[..., 0], sol[:, 0, 1]
        resid = d - np.matmul(Z, coef[..., None])[..., 0]
        ssr = np.einsum("pn,pn->p", resid, resid)
        n = Z.shape[1]
        tval = coef[:, 0] / np.sqrt(ssr / (n - K) * g00)
    return coef, ssr, tval


def _adf_fixed(e, de, lags_per_pair: np.ndarray, chunk: int) -> np.ndarray:
    stat = np.full(e.shape[1], np.nan)
    for L in np.unique(lags_per_pair):
        idx = np.flatnonzero(lags_per_pair == L)
        for s in range(0, len(idx), chunk):
            j = idx[s:s + chunk]
            Z, d = _design(e[:, j], de[:, j], int(L), int(L))
            stat[j] = _ols_batch(Z, d)[2]
    return stat


def _adf_select(e, de, maxlag: int, ic: str, chunk: int) -> np.ndarray:
    """Lag with the smallest information criterion, all lags on the common sample."""
    P = e.shape[1]
    best = np.zeros(P, dtype=int)
    for s in range(0, P, chunk):
        Z, d = _design(e[:, s:s + chunk], de[:, s:s + chunk], maxlag, maxlag)
        n = Z.shape[1]
        Zt = Z.transpose(0, 2, 1)
        G = np.matmul(Zt, Z)
        b = np.matmul(Zt, d[..., None])[..., 0]
        dd = np.einsum("pn,pn->p", d, d)
        crit = np.empty((Z.shape[0], maxlag + 1))
        for L in range(maxlag + 1):
            # nested models share the sample: slice the Gram matrix; SSR = d'd - b'coef
            with np.errstate(invalid="ignore", divide="ignore"):
                coef = _solve(G[:, :L + 1, :L + 1], b[:, :L + 1, None])[..., 0]
                ssr = dd - np.einsum("pk,pk->p", b[:, :L + 1], coef)
                llf = -n / 2.0 * (np.log(2 * np.pi) + np.log(ssr / n) + 1.0)
            k = L + 1
            crit[:, L] = -2.0 * llf + (2.0 * k if ic == "aic" else np.log(n) * k)
        crit = np.where(np.isnan(crit), np.inf, crit)
        best[s:s + chunk] = np.argmin(crit, axis=1)  # first minimum = shortest lag on ties
    return best


def _hedge_rows(y: np.ndarray, x: np.ndarray):
    """`ols_hedge` on a block stored pairs-major, y and x of shape (B, T)."""
    xm, ym = x.mean(1), y.mean(1)
    xc, yc = x - xm[:, None], y - ym[:, None]
    sxx, syy = np.einsum("pt,pt->p", xc, xc), np.einsum("pt,pt->p", yc, yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.einsum("pt,pt->p", xc, yc) / sxx
        yc -= beta[:, None] * xc  # yc is now the residual
        r2 = 1.0 - np.einsum("pt,pt->p", yc, yc) / syy
    return beta, ym - beta * xm, yc, r2


# Windowed ADF Gram matrices from lag-product sums
# ------------------------------------------------
# With ``p_k[u] = de[u] de[u-k]`` and ``q_j[t] = e[t] de[t-j]`` (zero where a lag runs before
# the start), every entry of the Gram matrix of ``[e_t, de_t, de_{t-1}, ..., de_{t-K}]`` over
# a window ``t = s..T1-1`` is a total minus a head sum (the products before the window) minus
# a tail sum (de-de products that run past its end):
#
#     sum_t de[t-a] de[t-c] = P_k - head_p[k, s-a] - tail_p[k, a],   k = c - a >= 0
#     sum_t e[t] de[t-j]   = Q_j - head_q[j, s]
#     sum_t e[t]^2         = E   - head_e[s]
#
# so one pass of O(K) products per observation (one BLAS product for the totals) gives the
# Gram matrix of every lag 0..K on every window s = 0..K, instead of O(K^2) per window. The
# sums of a block are laid out flat per pair (`_lag_sums`) and `_GramPlan` holds, per window,
# the three flat indices each Gram entry is made of.


class _GramPlan(NamedTuple):
    select: np.ndarray  # (3, (K+2)^2): order [e, de_{t-1..t-K}, de_t], window s = K
    fixed: np.ndarray   # (K+1, 3, (K+2)^2): order [de_{t-1..t-L}, pad, e, de_t], window s = L


@lru_cache(maxsize=32)
def _gram_plan(K: int) -> _GramPlan:
    n = K + 1
    o_tp, o_tq, o_te = 0, n, 2 * n
    o_hp = o_te + 1
    o_tl = o_hp + n * n
    o_hq = o_tl + n * n
    o_he = o_hq + n * n
    zero, one = o_he + n, o_he + n + 1

    def entry(u, v, s):
        if u == "e" and v == "e":
            return o_te, o_he + s, zero
        if u == "e" or v == "e":
            j = v if u == "e" else u
            return o_tq + j, o_hq + j * n + s, zero
        k, lo = abs(u - v), min(u, v)
        return o_tp + k, o_hp + k * n + (s - lo), o_tl + k * n + lo

    def table(cols, s, used):
        out = np.empty((3, len(cols), len(cols)), dtype=np.intp)
        for i, u in enumerate(cols):
            for j, v in enumerate(cols):
                pad = [c for c in (u, v) if c != "e" and c > used]
                out[:, i, j] = ((one if u == v else zero), zero, zero) if pad else \
                    entry(u, v, s)
        return out.reshape(3, -1)

    select = table(["e", *range(1, n), 0], K, K)
    fixed = np.stack([table([*range(1, n), "e", 0], L, L) for L in range(n)])
    return _GramPlan(select, fixed)


def _lag_sums(e: np.ndarray, de: np.ndarray, K: int) -> np.ndarray:
    """The flat per-pair sums (B, N) of `_gram_plan(K)` for a block stored pairs-major."""
    B, T1 = de.shape
    dp = np.zeros((B, T1 + K))
    dp[:, K:] = de
    # Z[b, r, u] = de[u - (K - r)]: the lags as contiguous rows, so the totals are one BLAS
    # product; only the first K and last K products are formed one by one
    Z = np.ascontiguousarray(sliding_window_view(dp, T1, axis=1))  # (B, K+1, T1)
    tot = np.matmul(Z, np.stack([de, e[:, :T1]], 2))[:, ::-1]       # (B, K+1, 2): lag k
    ee = e[:, :T1] * e[:, :T1]
    run = np.triu(np.ones((K, K + 1)), 1)  # x @ run: running sums 0..K of x's first K
    head = Z[:, ::-1, :K]  # de[u - k] for u < K
    tail = Z[:, ::-1, T1 - K:][..., ::-1] * de[:, None, T1 - K:][..., ::-1]
    return np.concatenate([
        tot[..., 0], tot[..., 1], ee.sum(1)[:, None],
        np.matmul(head * de[:, None, :K], run).reshape(B, -1),
        np.matmul(tail, run).reshape(B, -1),
        np.matmul(head * e[:, None, :K], run).reshape(B, -1),
        ee[:, :K] @ run, np.zeros((B, 1)), np.ones((B, 1))], axis=1)


def _gather_gram(sums: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Gram matrices (B, M, M) from the flat sums and a (3, M*M) or per-pair (B, 3, M*M)
    index table (lags a pair does not use become identity rows and columns)."""
    B, N = sums.shape
    if table.ndim == 2:
        t, h, tl = np.take(sums, table, axis=1).transpose(1, 0, 2)
    else:
        t, h, tl = np.take(sums, table + (np.arange(B) * N)[:, None, None]).transpose(1, 0, 2)
    G = t - h - tl
    m = math.isqrt(G.shape[1])
    return G.reshape(len(G), m, m)


def _cholesky(G: np.ndarray) -> np.ndarray | None:
    try:
        return np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return None


def _eg_block(y: np.ndarray, x: np.ndarray, maxlag: int, ic: str | None):
    """Engle-Granger on a block of pairs stored pairs-major (B, T); returns
    (beta, alpha, r2, e, statistic, lags), or None where a Cholesky factorisation fails."""
    beta, alpha, e, r2 = _hedge_rows(y, x)
    de = np.diff(e, axis=1)
    B, T1 = de.shape
    K = maxlag
    plan = _gram_plan(K)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        sums = _lag_sums(e, de, K)
        if ic is None:
            used = np.full(B, K)
            G = _gather_gram(sums, plan.fixed[K])
        else:
            # all lags on the common sample t = K..T1-1: the models are nested leading blocks
            # of [e, de_{t-1}, ..., de_{t-K}], so one Cholesky factor L of the Gram matrix
            # with the target last gives every SSR: the full model's plus the squared
            # projections L[-1, j] on the lags left out
            L = _cholesky(_gather_gram(sums, plan.select))
            if L is None:
                return None
            n = T1 - K
            later = np.cumsum(L[:, -1, -2:0:-1] ** 2, 1)[:, ::-1]  # sum_{j > l}, l < K
            ssr = L[:, -1, -1:] ** 2 + np.concatenate([later, np.zeros((B, 1))], 1)
            k = np.arange(1, K + 2)
            llf = -n / 2.0 * (np.log(2 * np.pi) + np.log(ssr / n) + 1.0)
            crit = -2.0 * llf + (2.0 * k if ic == "aic" else np.log(n) * k)
            crit = np.where(np.isnan(crit), np.inf, crit)
            used = np.argmin(crit, axis=1)  # first minimum = shortest lag on ties
            G = _gather_gram(sums, plan.fixed[used])
        # the statistic at the chosen lag on its own sample t = L..T1-1, e as the last
        # regressor: its t-value is L[-1, -2] / sqrt(SSR / df) with SSR = L[-1, -1]^2
        L = _cholesky(G)
        if L is None:
            return None
        stat = L[:, -1, -2] / np.sqrt(L[:, -1, -1] ** 2 / ((T1 - used) - (used + 1)))
    return beta, alpha, r2, e, stat, used


def engle_granger(y, x, lags: int | str = "aic", maxlag: int | None = None,
                  chunk: int | None = None) -> EngleGrangerResult:
    """Engle-Granger test of every pair of columns ``(y[:, p], x[:, p])`` (y on x).

    y, x: arrays (T,) or (T, P) of prices (levels, usually not logs), no NaN.
    lags: an int for a fixed ADF lag, or "aic" / "bic" to select 0..maxlag as statsmodels does
        (see the module docstring).
    maxlag: the largest lag searched when `lags` is a criterion; None = statsmodels' default.
    chunk: pairs per block; each block is copied pairs-major and tested while it stays in
        cache (memory: about chunk * T * (maxlag + 3) floats). None: 128 to 256, about 4 MB
        of lagged differences a block. Throughput does not fall with the number of pairs:
        pass any batch at once.

    Swap y and x for the other ordering; `engle_granger_both` does both.
    """
    y, x = as_2d(y, "y"), as_2d(x, "x")
    if y.shape != x.shape:
        raise ValueError(f"y and x must have the same shape, got {y.shape} and {x.shape}")
    if not (np.isfinite(y).all() and np.isfinite(x).all()):
        raise ValueError("y and x must be finite (no NaN): select windows with full prices")
    T, P = y.shape
    top = T // 2 - 1
    if isinstance(lags, str):
        ic = lags.lower()
        if ic not in ("aic", "bic"):
            raise ValueError(f"lags must be an int, 'aic' or 'bic', not {lags!r}")
        maxlag = default_maxlag(T) if maxlag is None else int(maxlag)
    else:
        ic, maxlag = None, int(lags)
    if maxlag < 0 or maxlag > top:
        raise ValueError(f"ADF lag {maxlag} must be between 0 and T // 2 - 1 = {top} (T = {T})")
    beta, alpha, r2, stat = (np.empty(P) for _ in range(4))
    used, ptp = np.empty(P, dtype=int), np.empty(P)
    if chunk is None:
        chunk = int(np.clip(2 ** 19 // (T * (maxlag + 1)), 128, 256))
    chunk = max(int(chunk), 1)
    for s in range(0, P, chunk):
        sl = slice(s, s + chunk)
        yb, xb = np.ascontiguousarray(y[:, sl].T), np.ascontiguousarray(x[:, sl].T)
        out = _eg_block(yb, xb, maxlag, ic)
        if out is None:  # a singular regression in this block: the per-pair solver
            out = _eg_block_solve(yb.T, xb.T, maxlag, ic)
        beta[sl], alpha[sl], r2[sl], e, stat[sl], used[sl] = out
        ptp[sl] = np.ptp(e, axis=1)
    collinear = r2 >= 1 - 100 * SQRTEPS
    stat = np.where(collinear, -np.inf, stat)
    const = ~np.isfinite(beta) | (ptp == 0) & ~collinear
    stat = np.where(const, np.nan, stat)
    pval = mackinnon_pvalue(stat, "c", 2)
    crit = np.asarray(mackinnoncrit(N=2, regression="c", nobs=T - 1), dtype=float)
    return EngleGrangerResult(stat, pval, used, T - 1 - used, beta, alpha, r2, crit)


def _eg_block_solve(y: np.ndarray, x: np.ndarray, maxlag: int, ic: str | None):
    """The plain normal-equation path on a time-major (T, B) block, used where a Cholesky
    factorisation fails; a singular system gives NaN for that pair only."""
    beta, alpha, e, r2 = ols_hedge(y, x)
    de = np.diff(e, axis=0)
    P = e.shape[1]
    used = np.full(P, maxlag, dtype=int) if ic is None else _adf_select(e, de, maxlag, ic, P)
    return beta, alpha, r2, e.T, _adf_fixed(e, de, used, P), used


class BothOrderings(NamedTuple):
    """The stronger of the two orderings per pair. `y_first` is True where ``y`` on ``x`` won
    (the fields then describe that regression), False where ``x`` on ``y`` won."""

    y_first: np.ndarray
    result: EngleGrangerResult
    yx: EngleGrangerResult
    xy: EngleGrangerResult


def engle_granger_both(a, b, lags: int | str = "aic", maxlag: int | None = None,
                       chunk: int | None = None) -> BothOrderings:
    """Test ``a`` on ``b`` and ``b`` on ``a``; keep the ordering with the lower p-value (ties:
    the more negative statistic). The result depends on the ordering (Engle-Granger is not
    symmetric), so both are tried, as practice recommends; note this is a choice of two tests."""
    ab = engle_granger(a, b, lags, maxlag, chunk)
    ba = engle_granger(b, a, lags, maxlag, chunk)
    pa, pb = np.nan_to_num(ab.pvalue, nan=2.0), np.nan_to_num(ba.pvalue, nan=2.0)
    sa = np.nan_to_num(ab.statistic, nan=np.inf)
    sb = np.nan_to_num(ba.statistic, nan=np.inf)
    first = (pa < pb) | ((pa == pb) & (sa <= sb))
    merged = EngleGrangerResult(*(np.where(first, f1, f2) for f1, f2 in zip(ab[:-1], ba[:-1])),
                                critical_values=ab.critical_values)
    return BothOrderings(first, merged, ab, ba)

