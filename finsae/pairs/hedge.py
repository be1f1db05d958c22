"""Time-varying hedge ratios, each using only prices up to the day it is used on.

* `formation`: one OLS ``y = alpha + beta x`` on the formation window (the default; fixed for
  the trading window).
* `rolling_ols`: OLS on the last `window` days up to and including day t.
* `kalman`: ``y_t = beta_t x_t + alpha_t + e_t`` with ``(beta_t, alpha_t)`` a random walk
  (Chan 2013, ch. 3), filtered forward. The spread on day t uses the *prior* estimate (data up
  to t - 1), so the spread is the filter's one-step-ahead prediction error.

Both take price arrays covering formation + trading days, (T, P), and return (T, P) arrays of
beta and alpha (NaN until enough days exist). The spread ``y - beta x - alpha`` is then
z-scored with its mean and standard deviation over the formation days (see
`dynamic_spread`), so the trading rule in `strategy` is unchanged.
"""

from __future__ import annotations

import numpy as np


def _2d(a):
    a = np.asarray(a, dtype=float)
    return a[:, None] if a.ndim == 1 else a


def rolling_ols(y, x, window: int = 63):
    """Beta and alpha of OLS ``y = alpha + beta x`` on days (t - window, t], for each t
    (NaN for t < window - 1). Running sums, so O(T P)."""
    y, x = _2d(y), _2d(x)
    if window < 3:
        raise ValueError("window must be >= 3")

    def rsum(a):
        c = np.cumsum(np.vstack([np.zeros((1, a.shape[1])), a]), 0)
        out = np.full(a.shape, np.nan)
        out[window - 1:] = c[window:] - c[:-window]
        return out

    # centre on the first price of each column for numerical stability (no look-ahead: day 0)
    yc, xc = y - y[:1], x - x[:1]
    sx, sy = rsum(xc), rsum(yc)
    sxx, sxy = rsum(xc * xc), rsum(xc * yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / window
        beta = (sxy - sx * sy / window) / vx
        alpha_c = (sy - beta * sx) / window
    alpha = alpha_c + y[:1] - beta * x[:1]
    return beta, alpha


def kalman(y, x, delta: float = 1e-4, obs_var: float = 1e-3):
    """Kalman-filtered ``(beta_t, alpha_t)`` of ``y_t = beta_t x_t + alpha_t + e_t``.

    Prices are first divided by their value on day 0 (known then), so `obs_var` (variance of
    e on that scale, 1e-3 ~ a 3% error) and `delta` (state noise ``delta / (1 - delta)`` per
    day) are scale free; the results are returned in price units. Returns (beta, alpha) as the
    *prior* estimates for day t (data up to t - 1; day 0: beta = 1 in normalised units, i.e.
    equal dollars, alpha = 0), the numbers a trader has before day t's close.
    """
    y, x = _2d(y), _2d(x)
    T, P = y.shape
    y0, x0 = y[0].copy(), x[0].copy()
    yn, xn = y / y0, x / x0
    q = delta / (1 - delta)
    state = np.zeros((P, 2))
    state[:, 0] = 1.0
    cov = np.broadcast_to(np.eye(2), (P, 2, 2)).copy()
    beta_n = np.empty((T, P))
    alpha_n = np.empty((T, P))
    eye_q = q * np.eye(2)
    for t in range(T):
        cov = cov + eye_q  # predict (random walk)
        beta_n[t], alpha_n[t] = state[:, 0], state[:, 1]
        h = np.stack([xn[t], np.ones(P)], axis=1)  # (P, 2)
        ok = np.isfinite(xn[t]) & np.isfinite(yn[t])
        h = np.where(ok[:, None], h, 0.0)
        err = np.where(ok, yn[t] - (h * state).sum(1), 0.0)
        ph = np.einsum("pij,pj->pi", cov, h)
        s = (h * ph).sum(1) + obs_var
        gain = ph / s[:, None]
        state = state + gain * err[:, None]
        cov = cov - np.einsum("pi,pj->pij", gain, ph)
    return beta_n * y0 / x0, alpha_n * y0


def hedge_series(y, x, method: str, window: int = 63, delta: float = 1e-4,
                 obs_var: float = 1e-3):
    """(beta, alpha) arrays (T, P) of the named dynamic method ("rolling" or "kalman")."""
    if method == "rolling":
        return rolling_ols(y, x, window)
    if method == "kalman":
        return kalman(y, x, delta, obs_var)
    raise ValueError(f"hedge method must be 'formation', 'rolling' or 'kalman', not {method!r}")


def dynamic_spread(y, x, n_formation: int, method: str, window: int = 63, delta: float = 1e-4,
                   obs_var: float = 1e-3, burn: int = 21):
    """Spread ``y - beta_t x - alpha_t`` over formation + trading days with a dynamic hedge,
    and its formation mean and standard deviation (over formation days after a burn-in of
    `burn` days for the Kalman filter, after the first full window for rolling OLS).

    Returns (spread (T, P), mean (P,), std (P,), beta (T, P), alpha (T, P))."""
    y, x = _2d(y), _2d(x)
    beta, alpha = hedge_series(y, x, method, window, delta, obs_var)
    s = y - beta * x - alpha
    first = window - 1 if method == "rolling" else burn
    if first >= n_formation - 2:
        raise ValueError(f"the formation window ({n_formation} days) is too short for a "
                         f"{method} hedge starting on day {first}")
    f = s[first:n_formation]
    return s, f.mean(0), f.std(0, ddof=1), beta, alpha
