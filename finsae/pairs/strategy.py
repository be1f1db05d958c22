"""The pairs-trading rule: formation-fitted spread, z-score bands, dollar-neutral legs.

For a pair selected on a formation window (hedge ratio ``beta``, intercept ``alpha``, spread
mean ``mu`` and standard deviation ``sd``, all from the formation window only), each trading day

    spread_t = y_t - beta * x_t - alpha,        z_t = (spread_t - mu) / sd

* flat and ``entry_z <= |z_t| < stop_z``: open. ``z_t > 0`` (y rich): short the spread (short y,
  long x), position -1; ``z_t < 0``: long the spread, +1.
* long and ``z_t >= -exit_z`` or short and ``z_t <= exit_z``: close (``exit_z = 0``: the spread
  crossed its formation mean).
* long and ``z_t <= -stop_z`` or short and ``z_t >= stop_z``: stop out; no new entry until
  ``|z|`` has come back inside ``entry_z`` (otherwise it would re-open on the next day).
* on the last day of the trading window, or the last day both legs have a price (a delisting),
  any position is closed.

Signals use the close of day t and are executed at the close of day ``t + execution_lag``
(1 by default: no same-close execution on the price that made the signal). Each leg is worth
``leg_fraction`` of the pair's capital at entry (long y and short x for +1): dollar-neutral.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class StrategyConfig:
    """Trading rule and costs."""

    #: open when |z| reaches this many formation standard deviations (Gatev et al.: 2)
    entry_z: float = 2.0
    #: close when z crosses back to this level on the far side of the mean (0 = the mean)
    exit_z: float = 0.0
    #: stop-loss when |z| reaches this; None disables
    stop_z: float | None = 4.0
    #: days between the close that produced a signal and the close it is executed at
    execution_lag: int = 1
    #: value of each leg as a fraction of the pair's capital at entry (0.5: $0.50 long and
    #: $0.50 short per $1, no leverage; Gatev et al.'s $1 long + $1 short per $1 is 1.0)
    leg_fraction: float = 0.5
    #: proportional cost per side on the traded value of each order (0.001 = 10 bps)
    fees: float = 0.001
    #: proportional slippage on the execution price
    slippage: float = 0.0
    #: annual cost of borrowing the short leg, charged daily on its value (0.005 = 50 bps/yr)
    borrow_rate: float = 0.0
    #: hedge ratio of the traded spread: "formation" (OLS/rule fit on the formation window,
    #: fixed), "rolling" (OLS on the last `hedge_window` days up to each day) or "kalman"
    #: (random-walk beta and alpha, filtered; see `finsae.pairs.hedge`). Dynamic hedges are
    #: z-scored with the formation moments of the same dynamic spread.
    hedge: str = "formation"
    #: window (days) of the rolling OLS hedge
    hedge_window: int = 63
    #: Kalman state noise delta and observation variance (prices normalised to 1 on the first
    #: formation day)
    kalman_delta: float = 1e-4
    kalman_obs_var: float = 1e-3
    #: z-score reference: "formation" (spread mean and standard deviation of the formation
    #: window) or "ou" (Ornstein-Uhlenbeck long-run mean and stationary standard deviation
    #: fitted on the formation spread; formation hedge only)
    bands: str = "formation"

    def __post_init__(self):
        if not 0 <= self.exit_z < self.entry_z:
            raise ValueError(f"need 0 <= exit_z < entry_z, got {self.exit_z}, {self.entry_z}")
        if self.stop_z is not None and self.stop_z <= self.entry_z:
            raise ValueError(f"stop_z ({self.stop_z}) must exceed entry_z ({self.entry_z})")
        if self.execution_lag < 0:
            raise ValueError("execution_lag must be >= 0")
        if not 0 < self.leg_fraction <= 1:
            raise ValueError("leg_fraction must be in (0, 1]")
        if self.fees < 0 or self.borrow_rate < 0 or self.slippage < 0:
            raise ValueError("fees, slippage and borrow_rate must be >= 0")
        if self.hedge not in ("formation", "rolling", "kalman"):
            raise ValueError(f"hedge must be formation, rolling or kalman, not {self.hedge!r}")
        if self.bands not in ("formation", "ou"):
            raise ValueError(f"bands must be formation or ou, not {self.bands!r}")
        if self.bands == "ou" and self.hedge != "formation":
            raise ValueError("OU bands need the formation hedge")


def spread_zscore(y, x, beta, alpha, mean, std) -> np.ndarray:
    """z-score of ``y - beta x - alpha`` with formation moments; y, x (T, P) or (T,)."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    return (y - beta * x - alpha - mean) / std


class Positions(NamedTuple):
    """signal: the position decided at each close; position: the position held after each
    close (signal shifted by the execution lag, flat from the close-out day); entries: days an
    entry order executes (bool)."""

    signal: np.ndarray
    position: np.ndarray
    entries: np.ndarray


def pair_positions(z, config: StrategyConfig = StrategyConfig(), last_day=None) -> Positions:
    """Run the rule of the module docstring on z-scores ``z`` (T,) or (T, P) of one trading
    window. last_day: per pair, the index of the last day both legs have a price (default
    T - 1); positions are closed on it. NaN z gives no signal."""
    z = np.asarray(z, dtype=float)
    one = z.ndim == 1
    z = z[:, None] if one else z
    T, P = z.shape
    close_day = np.full(P, T - 1) if last_day is None else \
        np.minimum(np.broadcast_to(np.asarray(last_day, dtype=int), (P,)), T - 1)
    lag = config.execution_lag
    stop = np.inf if config.stop_z is None else config.stop_z
    pos = np.zeros(P)
    armed = np.ones(P, dtype=bool)
    sig = np.zeros((T, P))
    for t in range(T):
        zt = z[t]
        ok = np.isfinite(zt)
        zt = np.where(ok, zt, 0.0)
        flat = pos == 0
        long, short = (pos > 0) & ok, (pos < 0) & ok
        stopped = (long & (zt <= -stop)) | (short & (zt >= stop))
        done = (long & (zt >= -config.exit_z)) | (short & (zt <= config.exit_z)) | stopped
        pos[done] = 0.0
        armed &= ~stopped
        armed |= ok & (np.abs(zt) < config.entry_z)
        enter = flat & ok & armed & (np.abs(zt) >= config.entry_z) & (np.abs(zt) < stop) & \
            (t + lag < close_day)
        pos[enter] = -np.sign(zt[enter])
        pos[t >= close_day] = 0.0
        sig[t] = pos
    held = np.zeros_like(sig)
    held[lag:] = sig[:T - lag] if lag else sig
    held[np.arange(T)[:, None] >= close_day[None, :]] = 0.0
    prev = np.vstack([np.zeros((1, P)), held[:-1]])
    entries = (held != 0) & (prev == 0)
    if one:
        return Positions(sig[:, 0], held[:, 0], entries[:, 0])
    return Positions(sig, held, entries)


def leg_orders(position, leg_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Target-percent orders (NaN = no order) for the y and x legs from held positions:
    where the position changes, y targets ``position * leg_fraction`` of the pair's value and x
    the opposite (dollar-neutral); 0 closes both."""
    h = np.asarray(position, dtype=float)
    prev = np.concatenate([np.zeros_like(h[:1]), h[:-1]])
    change = h != prev
    y = np.where(change, h * leg_fraction, np.nan)
    x = np.where(change, -h * leg_fraction, np.nan)
    return y, x
