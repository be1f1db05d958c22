"""Log returns (daily, monthly) with a screen for bad moves in the price series.

The screen, applied to daily log returns in this order (each change is logged in
``attrs["screen_events"]``, a DataFrame ticker, date, rule, before, after):

1. ``known_fix``: the hand-checked ``zero`` rows of ``data/prices/known_price_fixes.csv``
   (spin-offs the adjusted close does not reflect) set that day's return to 0.
2. ``spike``: a one-day bad print that reverts the next day (|r_t| > `jump`, the next return has
   the opposite sign and |r_t + r_t+1| < `revert` |r_t|, i.e. it comes back almost exactly;
   real crash-and-rebound days such as STT 2008-09-29 revert far less): r_t becomes 0 and r_t+1 becomes
   r_t + r_t+1, so the two-day move is kept.
3. ``adjustment``: an adjusted-close move above `jump` in absolute value while the raw close
   moved less than `raw_flat` is a split adjustment that did not happen (no dividend is 30%):
   the day's return is replaced by the raw close's return (needs `raw_close`).

Prices with at most `max_gap` missing days inside a ticker's history are carried forward
(the move across the gap lands on the day after it); longer gaps stay missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .prices import bundled_prices_path, known_price_fixes, read_cached


def _daily(prices: pd.DataFrame, max_gap: int) -> pd.DataFrame:
    filled = prices.ffill(limit=max_gap, limit_area="inside")
    return np.log(filled).diff().iloc[1:]


def screen_returns(ret: pd.DataFrame, *, raw_close: pd.DataFrame | None = None,
                   fixes: pd.DataFrame | None = None, jump: float = 0.3, raw_flat: float = 0.05,
                   revert: float = 0.125, max_gap: int = 5) -> pd.DataFrame:
    """Apply the screen described in the module docstring to daily log returns (a copy)."""
    out = ret.copy()
    events: list[tuple] = []
    values = out.to_numpy(copy=True)
    col = {t: j for j, t in enumerate(out.columns)}
    row = {d: i for i, d in enumerate(out.index)}

    def change(i, j, new, rule):
        events.append((out.columns[j], out.index[i], rule, values[i, j], new))
        values[i, j] = new

    if fixes is not None:
        for f in fixes[fixes["action"] == "zero"].itertuples():
            if f.ticker in col and f.date in row and np.isfinite(values[row[f.date], col[f.ticker]]):
                change(row[f.date], col[f.ticker], 0.0, "known_fix")
    r, nxt = values[:-1], values[1:]
    with np.errstate(invalid="ignore"):
        spike = (np.abs(r) > jump) & (np.sign(nxt) == -np.sign(r)) & \
            (np.abs(r + nxt) < revert * np.abs(r))
    for i, j in np.argwhere(spike):
        total = values[i, j] + values[i + 1, j]
        change(i, j, 0.0, "spike")
        change(i + 1, j, total, "spike")
    if raw_close is not None:
        raw = _daily(raw_close.reindex(index=ret.index.union(raw_close.index), columns=ret.columns),
                     max_gap).reindex(index=out.index).to_numpy()
        big = np.abs(values) > jump
        flat = np.abs(raw) < raw_flat
        for i, j in np.argwhere(big & flat):
            change(i, j, raw[i, j], "adjustment")
    res = pd.DataFrame(values, index=out.index, columns=out.columns)
    res.attrs = dict(ret.attrs)
    res.attrs["screen_events"] = pd.DataFrame(
        events, columns=["ticker", "date", "rule", "before", "after"])
    return res


def _bundled_screen_inputs(prices: pd.DataFrame):
    if str(prices.attrs.get("source", "")).startswith("bundled"):
        return read_cached(bundled_prices_path("raw"), cache=True), known_price_fixes()
    return None, None


def log_returns(prices: pd.DataFrame, freq: str = "D", *, screen: bool = True,
                raw_close: pd.DataFrame | None = None, fixes: pd.DataFrame | None = None,
                max_gap: int = 5, **screen_kw) -> pd.DataFrame:
    """Log returns of a wide price frame.

    freq: "D" daily, or "M" monthly (last trading day of a month to the next; NaN when the
        ticker has no price on either month end, or a gap longer than `max_gap` days inside).
    screen: apply `screen_returns`. For the bundled prices (``attrs["source"]`` starts with
        "bundled") the raw close and the known fixes are used by default.
    """
    if screen and raw_close is None and fixes is None:
        raw_close, fixes = _bundled_screen_inputs(prices)
    daily = _daily(prices, max_gap)
    daily.attrs = dict(prices.attrs)
    if screen:
        daily = screen_returns(daily, raw_close=raw_close, fixes=fixes, max_gap=max_gap,
                               **screen_kw)
    if freq == "D":
        return daily
    if freq != "M":
        raise ValueError(f"freq must be 'D' or 'M', not {freq!r}")
    # cumulative log price from the screened returns, sampled on each month's last trading day
    alive = prices.ffill(limit=max_gap, limit_area="inside").iloc[1:].notna()
    logp = daily.fillna(0).cumsum().where(alive)
    month_end = logp.index.to_series().groupby(logp.index.to_period("M")).max()
    monthly = logp.loc[month_end.values].diff()
    # a month counts only if every day of it (and the previous month end) had a price
    complete = alive.groupby(alive.index.to_period("M")).all()
    monthly = monthly.where(complete.to_numpy())
    monthly.index = month_end.index.to_timestamp(how="end").normalize()
    monthly.index.name = "month"
    monthly.attrs = dict(daily.attrs)
    return monthly.iloc[1:]


def clean_prices(prices: pd.DataFrame, **kw) -> pd.DataFrame:
    """Prices consistent with the screened daily returns (first price kept, then compounded).

    Trade on these: a backtest that trades into a bad print shows a fake profit."""
    daily = log_returns(prices, "D", **kw)
    first = prices.apply(lambda s: s.first_valid_index())
    logp = daily.fillna(0).cumsum()
    base = pd.Series({t: np.log(prices.at[d, t]) - (logp.at[d, t] if d in logp.index else 0.0)
                      for t, d in first.items() if d is not None})
    out = np.exp(logp + base.reindex(logp.columns))
    out = pd.concat([prices.iloc[:1], out]).where(prices.notna())
    out.attrs = dict(daily.attrs)
    return out
