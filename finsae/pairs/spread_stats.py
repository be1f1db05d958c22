"""Statistics of a pair's spread, batched over pairs: half-life, Hurst exponent, mean
crossings a year, Ornstein-Uhlenbeck fit, and the GGR sum of squared deviations."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .coint import as_2d


def half_life(spread) -> np.ndarray:
    """Mean-reversion half-life in days from the AR(1) fit ``ds_t = a + b s_{t-1} + u_t``:
    ``-ln 2 / ln(1 + b)``; ``inf`` where b >= 0 (no reversion), 0 where b <= -1 (overshoot)."""
    s = as_2d(spread, "spread")
    lag, ds = s[:-1], np.diff(s, axis=0)
    lc = lag - lag.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.einsum("tp,tp->p", lc, ds - ds.mean(0)) / np.einsum("tp,tp->p", lc, lc)
        hl = -np.log(2.0) / np.log1p(np.clip(b, -1 + 1e-300, None))
    return np.where(b >= 0, np.inf, np.where(b <= -1, 0.0, hl))


def hurst_exponent(series, max_lag: int = 20, min_lag: int = 2) -> np.ndarray:
    """Hurst exponent from the scaling of lagged differences: the slope of
    ``log std(s_{t+k} - s_t)`` on ``log k`` for k = min_lag..max_lag. About 0.5 for a random
    walk, below 0.5 for a mean-reverting series, above for a trending one."""
    s = as_2d(series, "series")
    if not 1 <= min_lag < max_lag < s.shape[0] - 1:
        raise ValueError(f"need 1 <= min_lag < max_lag < T - 1, got {min_lag}, {max_lag}, "
                         f"T = {s.shape[0]}")
    ks = np.arange(min_lag, max_lag + 1)
    with np.errstate(divide="ignore"):
        logsd = np.stack([np.log(np.std(s[k:] - s[:-k], axis=0)) for k in ks])  # (K, P)
    lk = np.log(ks) - np.log(ks).mean()
    return np.einsum("k,kp->p", lk, logsd - logsd.mean(0)) / (lk @ lk)


def mean_crossings(spread, per_year: int | None = 252) -> np.ndarray:
    """How often each spread column crosses its own (formation) mean: the number of sign
    changes of ``s - mean(s)`` (zeros carry the previous sign), scaled to crossings per year of
    `per_year` days (None: the raw count). A spread that crosses its mean rarely cannot close
    its trades in time, whatever its test statistic (arbitragelab's 12-a-year rule)."""
    s = as_2d(spread, "spread")
    d = s - s.mean(0)
    sign = np.sign(d)
    # a zero keeps the sign before it, so touching the mean is not a crossing
    for t in range(1, len(sign)):
        sign[t] = np.where(sign[t] == 0, sign[t - 1], sign[t])
    n = ((sign[1:] * sign[:-1]) < 0).sum(0).astype(float)
    return n if per_year is None else n * per_year / max(len(s) - 1, 1)


class OUFit(NamedTuple):
    """Ornstein-Uhlenbeck ``ds = theta (mu - s) dt + sigma dW`` fitted per column (dt = 1 day).

    theta: speed of mean reversion per day; mu: long-run mean; sigma: diffusion per sqrt(day);
    sigma_eq: stationary standard deviation ``sigma / sqrt(2 theta)``; half_life: ``ln 2 /
    theta`` days (inf where the AR(1) coefficient is >= 1: no reversion). Entry and exit levels
    of an OU strategy are multiples of sigma_eq around mu."""

    theta: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    sigma_eq: np.ndarray
    half_life: np.ndarray


def ou_fit(spread, dt: float = 1.0) -> OUFit:
    """Exact maximum likelihood of a discretely sampled OU process (the AR(1) ``s_t = a + b
    s_{t-1} + e_t`` by OLS, then ``theta = -ln b / dt``, ``mu = a / (1 - b)``, ``sigma^2 =
    var(e) 2 theta / (1 - b^2)``), vectorised over columns."""
    s = as_2d(spread, "spread")
    lag, cur = s[:-1], s[1:]
    lm, cm = lag.mean(0), cur.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.einsum("tp,tp->p", lag - lm, cur - cm) / np.einsum("tp,tp->p", lag - lm, lag - lm)
        a = cm - b * lm
        e = cur - a - b * lag
        var_e = np.einsum("tp,tp->p", e, e) / len(e)
        ok = (b > 0) & (b < 1)
        theta = np.where(ok, -np.log(np.where(ok, b, 0.5)) / dt, 0.0)
        mu = np.where(ok, a / (1 - b), np.nan)
        sigma = np.where(ok, np.sqrt(var_e * 2 * theta / (1 - b ** 2)), np.nan)
        sigma_eq = np.where(ok, np.sqrt(var_e / (1 - b ** 2)), np.nan)
        hl = np.where(ok, np.log(2.0) / theta, np.where(b <= 0, 0.0, np.inf))
    return OUFit(theta, mu, sigma, sigma_eq, hl)


def ssd_distance(a, b) -> np.ndarray:
    """Gatev-Goetzmann-Rouwenhorst (2006) distance: the sum over the window of squared
    differences of the two prices normalised to 1 on its first day, ``sum_t (a_t/a_0 -
    b_t/b_0)^2``, per column pair. Smaller = closer co-movement."""
    a, b = as_2d(a, "a"), as_2d(b, "b")
    d = a / a[0] - b / b[0]
    return np.einsum("tp,tp->p", d, d)
