"""Walk-forward pairs backtest per grouping method, simulated with vectorbt.

Periods (`walk_forward_periods`): a formation window of `formation_days` trading days, then a
trading window of the next `trading_days`; the whole thing moves forward by `step_days`
(126 = 126: consecutive trading windows neither overlap nor leave gaps).

Per period and method: eligible tickers = the universe, in the S&P 500 at the close of the
formation window's last day, with a price on every formation day; candidates = within-cluster
pairs; selection by `select.rank_pairs`; each of the top N pairs is traded by
`strategy.pair_positions` in its own *slot* (slot k holds the rank-k pair of every period).

Portfolio: one vectorbt ``Portfolio.from_orders`` over all methods, columns (method, slot, leg),
one group with shared cash per (method, slot) starting with `init_cash`; orders are target
percentages of the group's value (dollar-neutral legs); costs through vectorbt's `fees` and
`slippage`; the optional borrow cost is charged afterwards on the short leg's value. A method's
equity is the sum of its N slots, so empty slots (fewer than N pairs passed) hold cash: returns
are on committed capital. Annualisation uses 252 trading days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import norm

from .select import (MethodContext, Partition, SelectionConfig, candidate_pairs, partition_at,
                     rank_pairs, test_pairs)
from .strategy import StrategyConfig, leg_orders, pair_positions, spread_zscore

YEAR = 252


@dataclass(frozen=True)
class BacktestConfig:
    """Walk-forward design. Pair selection and trading rule are nested configs."""

    #: trading days in each formation window (Gatev et al.: 12 months)
    formation_days: int = 252
    #: trading days in each trading window (Gatev et al.: 6 months)
    trading_days: int = 126
    #: days between consecutive formation starts (= trading_days: back-to-back trading windows)
    step_days: int = 126
    #: first formation window starts on the first price date on or after this (None: the first)
    start: str | None = None
    #: last date used (None: the last price date)
    end: str | None = None
    #: a final, truncated trading window shorter than this many days is dropped
    min_trading_days: int = 21
    #: restrict each formation to S&P 500 members as of its last day
    sp500_membership: bool = True
    #: capital of each pair slot (only the scale of the equity curves)
    init_cash: float = 100.0
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)


class Period(NamedTuple):
    """One walk-forward step: positions into the price index (end exclusive) and dates."""

    number: int
    f0: int
    f1: int
    t0: int
    t1: int
    formation_start: pd.Timestamp
    formation_end: pd.Timestamp
    trade_start: pd.Timestamp
    trade_end: pd.Timestamp


def walk_forward_periods(index: pd.DatetimeIndex, config: BacktestConfig = BacktestConfig()
                         ) -> list[Period]:
    """The formation/trading windows over `index` (trading days), see `BacktestConfig`."""
    index = pd.DatetimeIndex(index)
    lo = 0 if config.start is None else int(index.searchsorted(pd.Timestamp(config.start)))
    hi = len(index) if config.end is None else \
        int(index.searchsorted(pd.Timestamp(config.end), side="right"))
    out, i = [], lo
    while i + config.formation_days < hi:
        t0 = i + config.formation_days
        t1 = min(t0 + config.trading_days, hi)
        if t1 - t0 < config.min_trading_days:
            break
        out.append(Period(len(out), i, t0, t0, t1, index[i], index[t0 - 1], index[t0],
                          index[t1 - 1]))
        i += config.step_days
    return out


def eligible_tickers(prices: pd.DataFrame, universe, start, end, members=None) -> list[str]:
    """Universe tickers with a price on every day of [start, end] and, when `members` (a
    function date -> tickers) is given, in the index at `end`."""
    window = prices.loc[start:end, [t for t in universe if t in prices.columns]]
    full = window.columns[window.notna().all().to_numpy()]
    if members is not None:
        full = full.intersection(pd.Index(members(end, list(universe))))
    return sorted(full)


class BacktestResult(NamedTuple):
    """selections: one row per (period, method, rank) with the formation statistics and the
    trading window; equity: date x method portfolio value (sum of slots, after costs);
    returns: daily returns of `equity`; metrics: method x performance table; trades: one row
    per pair trade; portfolio: the vectorbt Portfolio (groups = (method, slot));
    periods: the walk-forward windows."""

    selections: pd.DataFrame
    equity: pd.DataFrame
    returns: pd.DataFrame
    metrics: pd.DataFrame
    trades: pd.DataFrame
    portfolio: object
    periods: list


def run_backtest(prices: pd.DataFrame, partitions: dict[str, Partition], universe,
                 config: BacktestConfig = BacktestConfig(),
                 members: Callable | None = None, progress: Callable[[str], None] | None = None
                 ) -> BacktestResult:
    """Walk-forward backtest of every method in `partitions` (name -> Series or callable).

    prices: screened daily prices (date x ticker), the prices traded. universe: the tickers
    every method may use. members: date, universe -> S&P 500 tickers (default
    `finsae.data.membership.sp500_members` when ``config.sp500_membership``).
    """
    if not partitions:
        raise ValueError("no methods to backtest")
    if members is None and config.sp500_membership:
        from finsae.data.membership import sp500_members as members
    if not config.sp500_membership:
        members = None
    universe = [t for t in universe if t in prices.columns]
    periods = walk_forward_periods(prices.index, config)
    if not periods:
        raise ValueError(f"prices cover {len(prices)} days: too few for one formation "
                         f"({config.formation_days}) + trading window")
    sel_cfg, st = config.selection, config.strategy
    methods = list(partitions)
    N = sel_cfg.top_n
    n0, n1 = periods[0].t0, periods[-1].t1
    dates = prices.index[n0:n1]
    ncol = len(methods) * N * 2
    close = np.full((n1 - n0, ncol), np.nan)
    size = np.full((n1 - n0, ncol), np.nan)
    rows = []
    for per in periods:
        window = prices.iloc[per.f0:per.f1]
        elig = eligible_tickers(prices, universe, per.formation_start, per.formation_end, members)
        cands = {m: candidate_pairs(partition_at(partitions[m], per.formation_start,
                                                 per.formation_end), elig) for m in methods}
        union = sorted(set().union(*cands.values()))
        tested = test_pairs(window, union, sel_cfg)
        key = {tuple(sorted(k)): i for i, k in enumerate(zip(tested["y"], tested["x"]))}
        trade = prices.iloc[per.t0:per.t1]
        for mi, m in enumerate(methods):
            chosen = rank_pairs(tested.iloc[[key[p] for p in cands[m]]], sel_cfg)
            if progress:
                progress(f"period {per.number} {per.trade_start.date()} {m}: "
                         f"{len(cands[m])} candidates, {len(chosen)} traded")
            if chosen.empty:
                continue
            py = trade[chosen["y"]].to_numpy()
            px = trade[chosen["x"]].to_numpy()
            alive = np.isfinite(py) & np.isfinite(px)
            last = np.where(alive.any(0), len(alive) - 1 - np.argmax(alive[::-1], axis=0), 0)
            py = pd.DataFrame(py).ffill().to_numpy()
            px = pd.DataFrame(px).ffill().to_numpy()
            z = spread_zscore(py, px, chosen["beta"].to_numpy(), chosen["alpha"].to_numpy(),
                              chosen["spread_mean"].to_numpy(), chosen["spread_std"].to_numpy())
            pos = pair_positions(z, st, last_day=last)
            oy, ox = leg_orders(pos.position, st.leg_fraction)
            for k in range(len(chosen)):
                cy = (mi * N + k) * 2
                sl = slice(per.t0 - n0, per.t1 - n0)
                close[sl, cy], close[sl, cy + 1] = py[:, k], px[:, k]
                size[sl, cy], size[sl, cy + 1] = oy[:, k], ox[:, k]
            info = chosen.assign(method=m, period=per.number,
                                 formation_start=per.formation_start,
                                 formation_end=per.formation_end, trade_start=per.trade_start,
                                 trade_end=per.trade_end, n_candidates=len(cands[m]),
                                 n_eligible=len(elig), n_entries=pos.entries.sum(0),
                                 last_day=trade.index[last])
            rows.append(info)
    selections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    cols = pd.MultiIndex.from_tuples([(m, k, leg) for m in methods for k in range(N)
                                      for leg in ("y", "x")], names=["method", "slot", "leg"])
    close_df = pd.DataFrame(close, index=dates, columns=cols).ffill().bfill().fillna(1.0)
    size_df = pd.DataFrame(size, index=dates, columns=cols)
    pf, equity, trades = _simulate(close_df, size_df, methods, periods, n0, config)
    returns = equity / equity.shift(1).fillna(N * config.init_cash) - 1.0
    metrics = performance_table(returns, equity, trades, pf, periods, n0, config)
    return BacktestResult(selections, equity, returns, metrics, trades, pf, periods)


def _simulate(close_df, size_df, methods, periods, n0, config):
    import vectorbt as vbt
    st = config.strategy
    pf = vbt.Portfolio.from_orders(
        close=close_df, size=size_df, size_type="targetpercent", direction="both",
        fees=st.fees, slippage=st.slippage, init_cash=config.init_cash, cash_sharing=True,
        group_by=["method", "slot"], call_seq="auto", freq="1D")
    value = pf.value()  # date x (method, slot)
    borrow = pd.DataFrame(0.0, index=value.index, columns=value.columns)
    if st.borrow_rate > 0:
        short = (-pf.asset_value(group_by=False)).clip(lower=0.0)
        short = short.T.groupby(level=["method", "slot"]).sum().T.reindex(columns=value.columns)
        borrow = short.shift(1).fillna(0.0) * st.borrow_rate / YEAR
    value = value - borrow.cumsum()
    equity = value.T.groupby(level="method", sort=False).sum().T[methods]
    equity.attrs["slot_value"] = value
    rec = pf.trades.records
    col_group = close_df.columns.droplevel("leg")
    if len(rec):
        t = pd.DataFrame({"col": rec["col"], "entry_idx": rec["entry_idx"],
                          "exit_idx": rec["exit_idx"], "pnl": rec["pnl"],
                          "fees": rec["entry_fees"] + rec["exit_fees"]})
        t["method"] = [col_group[c][0] for c in t["col"]]
        t["slot"] = [col_group[c][1] for c in t["col"]]
        trades = t.groupby(["method", "slot", "entry_idx", "exit_idx"], as_index=False)[
            ["pnl", "fees"]].sum()
        cum = borrow.cumsum()
        trades["borrow"] = [cum[(m, s)].iloc[b] - cum[(m, s)].iloc[a] for m, s, a, b in
                            zip(trades["method"], trades["slot"], trades["entry_idx"],
                                trades["exit_idx"])]
        trades["pnl"] -= trades["borrow"]
        trades["entry_date"] = close_df.index[trades["entry_idx"]]
        trades["exit_date"] = close_df.index[trades["exit_idx"]]
        trades["days"] = trades["exit_idx"] - trades["entry_idx"]
    else:
        trades = pd.DataFrame(columns=["method", "slot", "entry_idx", "exit_idx", "pnl", "fees",
                                       "borrow", "entry_date", "exit_date", "days"])
    return pf, equity, trades


def performance_table(returns: pd.DataFrame, equity: pd.DataFrame, trades: pd.DataFrame, pf,
                      periods, n0: int, config: BacktestConfig) -> pd.DataFrame:
    """Per method: Sharpe, Sortino, annual return, volatility, max drawdown (fractions, 252-day
    year, daily returns on committed capital), number of pair trades, win rate (pair P&L after
    costs > 0), annual turnover (traded value / mean equity per year), mean 6-month period
    return on committed capital (all N slots) and on employed capital (slots that traded)."""
    import vectorbt as vbt  # noqa: F401  (registers the .vbt accessor)
    out = {}
    orders = pf.orders.records
    col_method = returns.columns.repeat(config.selection.top_n * 2)
    notional = np.abs(orders["size"].to_numpy() * orders["price"].to_numpy())
    traded = pd.Series(notional, index=col_method[orders["col"].to_numpy()]).groupby(level=0).sum()
    slot_value = equity.attrs.get("slot_value")
    years = len(returns) / YEAR
    for m in returns.columns:
        acc = returns[m].vbt.returns(freq="1D", year_freq=f"{YEAR}D")
        tm = trades[trades["method"] == m]
        per_c, per_e = [], []
        for p in periods:
            a, b = p.t0 - n0, p.t1 - n0 - 1
            sv = slot_value[m]
            start = sv.iloc[a - 1] if a > 0 else pd.Series(config.init_cash, index=sv.columns)
            end = sv.iloc[b]
            per_c.append(end.sum() / start.sum() - 1)
            busy = tm.loc[(tm["entry_idx"] >= a) & (tm["entry_idx"] <= b), "slot"].unique()
            if len(busy):
                per_e.append(end[busy].sum() / start[busy].sum() - 1)
        out[m] = {
            "sharpe": float(acc.sharpe_ratio()),
            "sortino": float(acc.sortino_ratio()),
            "annual_return": float(acc.annualized()),
            "volatility": float(acc.annualized_volatility()),
            "max_drawdown": float(acc.max_drawdown()),
            "n_trades": int(len(tm)),
            "win_rate": float((tm["pnl"] > 0).mean()) if len(tm) else float("nan"),
            "turnover": float(traded.get(m, 0.0) / equity[m].mean() / years),
            "period_return_committed": float(np.mean(per_c)),
            "period_return_employed": float(np.mean(per_e)) if per_e else float("nan"),
            "mean_trade_days": float(tm["days"].mean()) if len(tm) else float("nan"),
            "fees_paid": float(tm["fees"].sum() / (config.init_cash * config.selection.top_n)),
        }
    return pd.DataFrame(out).T.rename_axis("method")


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


def method_context(companies: pd.DataFrame, prices: pd.DataFrame, universe, seed: int = 0,
                   config: BacktestConfig = BacktestConfig()) -> MethodContext:
    """A `MethodContext` whose `eligible` applies the backtest's own eligibility rule."""
    members = None
    if config.sp500_membership:
        from finsae.data.membership import sp500_members as members
    ctx = MethodContext(companies, prices, list(universe), seed)
    ctx.eligible = lambda s, e: eligible_tickers(prices, ctx.universe, s, e, members)
    return ctx
