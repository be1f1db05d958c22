"""Johansen trace test for many pairs at once, with statsmodels' conventions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .coint import as_2d


class JohansenResult(NamedTuple):
    """Batched Johansen trace test for pairs (two series each), statsmodels' conventions.

    trace: (P, 2) trace statistics for H0 rank <= 0 and rank <= 1; eig: (P, 2) eigenvalues,
    largest first; crit: (2, 3) 90/95/99% critical values of the trace statistic (same for
    every pair); beta: hedge ratio of the first cointegrating vector normalised on y
    (spread ``y - beta x``); vector: (P, 2) that vector as statsmodels returns it (evec[:, 0])
    up to scale."""

    trace: np.ndarray
    max_eig: np.ndarray
    eig: np.ndarray
    crit: np.ndarray
    beta: np.ndarray
    vector: np.ndarray


def johansen(y, x, det_order: int = 0, k_ar_diff: int = 1) -> JohansenResult:
    """Johansen (1991) trace test of every column pair ``(y[:, p], x[:, p])`` in one batch:
    the same numbers as ``statsmodels.tsa.vector_ar.vecm.coint_johansen(np.c_[y, x],
    det_order, k_ar_diff)`` (its sample alignment and demeaning included), tested equal.

    det_order: -1 (no deterministic terms) or 0 (a constant). k_ar_diff: lagged differences.
    """
    from statsmodels.tsa.coint_tables import c_sjt
    y, x = as_2d(y, "y"), as_2d(x, "x")
    if y.shape != x.shape:
        raise ValueError(f"y and x must have the same shape, got {y.shape} and {x.shape}")
    if det_order not in (-1, 0):
        raise ValueError("det_order must be -1 or 0")
    X = np.stack([y, x], axis=-1)  # (T, P, 2)
    T, k = X.shape[0], int(k_ar_diff)
    if det_order == 0:
        X = X - X.mean(0)

    def demean(a):
        return a if det_order < 0 else a - a.mean(0)

    dx = np.diff(X, axis=0)  # (T-1, P, 2)
    n = T - 1 - k
    z = np.concatenate([dx[k - j:T - 1 - j] for j in range(1, k + 1)], axis=-1) if k else None
    d0 = demean(dx[k:])
    lx = demean(X[1:T - k])

    def resid(a):
        if z is None:
            return a
        zz = demean(z).transpose(1, 0, 2)  # (P, n, 2k)
        aa = a.transpose(1, 0, 2)
        coef = np.linalg.lstsq(zz[0], aa[0], rcond=None)[0] if zz.shape[0] == 1 else \
            np.linalg.solve(np.matmul(zz.transpose(0, 2, 1), zz),
                            np.matmul(zz.transpose(0, 2, 1), aa))
        return (aa - np.matmul(zz, coef)).transpose(1, 0, 2)

    r0, rk = resid(d0), resid(lx)  # (n, P, 2)
    skk = np.einsum("tpi,tpj->pij", rk, rk) / n
    sk0 = np.einsum("tpi,tpj->pij", rk, r0) / n
    s00 = np.einsum("tpi,tpj->pij", r0, r0) / n
    m = np.linalg.solve(skk, np.matmul(sk0, np.linalg.solve(s00, sk0.transpose(0, 2, 1))))
    au, du = np.linalg.eig(m)
    au, du = au.real, du.real
    order = np.argsort(-au, axis=1)
    a = np.take_along_axis(au, order, 1)
    v = np.take_along_axis(du, order[:, None, :], 2)[:, :, 0]  # first vector (P, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(1.0 - a)
        trace = -n * np.stack([logs.sum(1), logs[:, 1]], axis=1)
        max_eig = -n * logs
        beta = -v[:, 1] / v[:, 0]
    crit = np.array([c_sjt(2, det_order), c_sjt(1, det_order)], dtype=float)
    return JohansenResult(trace, max_eig, a, crit, beta, v)
