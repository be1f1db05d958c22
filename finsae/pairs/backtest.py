"""Walk-forward pairs backtest per grouping method, simulated with vectorbt (the statistics of
its returns: `finsae.pairs.inference`).

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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from .hedge import dynamic_spread

# the statistics of backtest returns live in `inference`; importable from here as before
from .inference import (  # noqa: F401
    YEAR,
    SharpeDifference,
    SharpeIntervals,
    bootstrap_sharpe,
    combine_seeds,
    sharpe_difference,
    stationary_bootstrap_indices,
)
from .select import (Partition, SelectionConfig, candidate_pairs, partition_at, rank_pairs,
                     test_pairs)
from .strategy import StrategyConfig, leg_orders, pair_positions, spread_zscore


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
    periods: the walk-forward windows; filters: method x (candidates, pairs removed by each
    filter, passed, selected), summed over periods.

    With several selection rules, "method" is ``name:rule`` (e.g. ``sae:distance``)."""

    selections: pd.DataFrame
    equity: pd.DataFrame
    returns: pd.DataFrame
    metrics: pd.DataFrame
    trades: pd.DataFrame
    portfolio: object
    periods: list
    filters: pd.DataFrame | None = None


def run_backtest(prices: pd.DataFrame, partitions: dict[str, Partition], universe,
                 config: BacktestConfig = BacktestConfig(),
                 members: Callable | None = None, progress: Callable[[str], None] | None = None,
                 rules: list[str] | None = None) -> BacktestResult:
    """Walk-forward backtest of every method in `partitions` (name -> Series, callable or
    `Neighbours`).

    prices: screened daily prices (date x ticker), the prices traded. universe: the tickers
    every method may use. members: date, universe -> S&P 500 tickers (default
    `finsae.data.membership.sp500_members` when ``config.sp500_membership``).
    rules: selection rules to run (default: ``[config.selection.rule]``); with more than one,
    each (method, rule) is a strategy named ``method:rule``.
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
    st = config.strategy
    rules = list(rules or [config.selection.rule])
    cfgs = {r: dataclasses.replace(config.selection, rule=r) for r in rules}
    names = list(partitions)
    methods = [(n, r, n if len(rules) == 1 else f"{n}:{r}") for r in rules for n in names]
    labels = [lab for _, _, lab in methods]
    N = config.selection.top_n
    n0, n1 = periods[0].t0, periods[-1].t1
    dates = prices.index[n0:n1]
    ncol = len(methods) * N * 2
    close = np.full((n1 - n0, ncol), np.nan)
    size = np.full((n1 - n0, ncol), np.nan)
    rows = []
    counts: dict[str, dict[str, int]] = {lab: {} for lab in labels}
    for per in periods:
        window = prices.iloc[per.f0:per.f1]
        elig = eligible_tickers(prices, universe, per.formation_start, per.formation_end, members)
        cands = {n: candidate_pairs(partition_at(partitions[n], per.formation_start,
                                                 per.formation_end), elig) for n in names}
        union = sorted(set().union(*cands.values()))
        trade = prices.iloc[per.t0:per.t1]
        for rule in rules:
            sel_cfg = cfgs[rule]
            tested = test_pairs(window, union, sel_cfg)
            key = {tuple(sorted(k)): i for i, k in enumerate(zip(tested["y"], tested["x"]))}
            for n, r, lab in methods:
                if r != rule:
                    continue
                mi = labels.index(lab)
                chosen = rank_pairs(tested.iloc[[key[p] for p in cands[n]]], sel_cfg)
                for f, c in chosen.attrs["filters"].items():
                    counts[lab][f] = counts[lab].get(f, 0) + c
                if progress:
                    progress(f"period {per.number} {per.trade_start.date()} {lab}: "
                             f"{len(cands[n])} candidates, {len(chosen)} traded")
                if chosen.empty:
                    continue
                py = trade[chosen["y"]].to_numpy()
                px = trade[chosen["x"]].to_numpy()
                alive = np.isfinite(py) & np.isfinite(px)
                last = np.where(alive.any(0), len(alive) - 1 - np.argmax(alive[::-1], axis=0), 0)
                py = pd.DataFrame(py).ffill().to_numpy()
                px = pd.DataFrame(px).ffill().to_numpy()
                z, hedge_end = trading_zscore(window[chosen["y"]].to_numpy(dtype=float),
                                              window[chosen["x"]].to_numpy(dtype=float),
                                              py, px, chosen, st)
                pos = pair_positions(z, st, last_day=last)
                oy, ox = leg_orders(pos.position, st.leg_fraction)
                for k in range(len(chosen)):
                    cy = (mi * N + k) * 2
                    sl = slice(per.t0 - n0, per.t1 - n0)
                    close[sl, cy], close[sl, cy + 1] = py[:, k], px[:, k]
                    size[sl, cy], size[sl, cy + 1] = oy[:, k], ox[:, k]
                info = chosen.assign(method=lab, rule=r, period=per.number,
                                     formation_start=per.formation_start,
                                     formation_end=per.formation_end,
                                     trade_start=per.trade_start,
                                     trade_end=per.trade_end, n_candidates=len(cands[n]),
                                     n_eligible=len(elig), n_entries=pos.entries.sum(0),
                                     hedge_end=hedge_end, last_day=trade.index[last])
                rows.append(info)
    methods = labels
    selections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    cols = pd.MultiIndex.from_tuples([(m, k, leg) for m in methods for k in range(N)
                                      for leg in ("y", "x")], names=["method", "slot", "leg"])
    close_df = pd.DataFrame(close, index=dates, columns=cols).ffill().bfill().fillna(1.0)
    size_df = pd.DataFrame(size, index=dates, columns=cols)
    pf, equity, trades = _simulate(close_df, size_df, methods, periods, n0, config)
    returns = equity / equity.shift(1).fillna(N * config.init_cash) - 1.0
    metrics = performance_table(returns, equity, trades, pf, periods, n0, config)
    # pairs removed by each filter, summed over periods; NaN = the filter was not applied
    filters = pd.DataFrame(counts).T.reindex(methods)
    order = ["candidates", "valid", "pvalue", "fdr", "johansen_trace", "min_beta", "half_life",
             "hurst", "crossings", "passed", "selected"]
    filters = filters[[c for c in order if c in filters.columns]].rename_axis("method")
    return BacktestResult(selections, equity, returns, metrics, trades, pf, periods, filters)


def trading_zscore(fy, fx, ty, tx, chosen: pd.DataFrame, st: StrategyConfig):
    """z-scores (T_trade, P) of the chosen pairs over the trading window, and the hedge ratio
    in force on the formation's last day (P,).

    fy, fx: formation prices (F, P) of the y and x legs; ty, tx: trading prices (forward
    filled). Formation hedge: the rule's beta/alpha with formation moments (or OU mean and
    stationary sd with ``st.bands == "ou"``). Dynamic hedges run over formation + trading days,
    each day's hedge from prices up to that day (`finsae.pairs.hedge`)."""
    beta, alpha = chosen["beta"].to_numpy(), chosen["alpha"].to_numpy()
    if st.hedge == "formation":
        if st.bands == "ou":
            mean, sd = chosen["ou_mu"].to_numpy(), chosen["ou_sigma_eq"].to_numpy()
        else:
            mean, sd = chosen["spread_mean"].to_numpy(), chosen["spread_std"].to_numpy()
        return spread_zscore(ty, tx, beta, alpha, mean, sd), beta
    F = len(fy)
    y, x = np.vstack([fy, ty]), np.vstack([fx, tx])
    s, mean, sd, b, _ = dynamic_spread(y, x, F, st.hedge, st.hedge_window, st.kalman_delta,
                                       st.kalman_obs_var)
    return (s[F:] - mean) / sd, b[F - 1]


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
