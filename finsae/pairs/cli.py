"""`finsae backtest`: walk-forward cointegration pairs trading per grouping method."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from finsae.data.errors import DataError

DEFAULT_METHODS = "sae,embedding,gics,gics_industry,sic,sic2,returns,random"


def register(subparsers) -> None:
    from finsae.cli import common_inputs

    from .select import METHODS
    p = subparsers.add_parser(
        "backtest", help="cointegration pairs backtest per grouping method",
        description="Walk-forward Engle-Granger pairs trading (formation-only hedge ratios, "
                    "costs on) for each grouping method; prints a metrics table.")
    common_inputs(p)
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated, from: {', '.join(METHODS)} (default: %(default)s)")
    p.add_argument("--top-n", type=_positive, default=20,
                   help="pairs traded per method and period (the same for every method)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write metrics.csv, selections.csv, trades.csv, equity.csv, "
                        "sharpe_tests.csv, equity.png and backtest.json here")
    p.add_argument("--formation-days", type=int, default=252)
    p.add_argument("--trading-days", type=int, default=126)
    p.add_argument("--step-days", type=int, default=None, help="default: --trading-days")
    p.add_argument("--start", default=None, help="first formation start date")
    p.add_argument("--end", default=None, help="last date used")
    p.add_argument("--lags", type=_lags, default="aic",
                   help="ADF lag: an int, or aic/bic selection as statsmodels (default aic)")
    p.add_argument("--pvalue", type=float, default=0.05, help="Engle-Granger p-value cut")
    p.add_argument("--entry-z", type=float, default=2.0)
    p.add_argument("--exit-z", type=float, default=0.0)
    p.add_argument("--stop-z", type=float, default=4.0, help="<= 0 disables the stop")
    p.add_argument("--execution-lag", type=int, default=1,
                   help="days from the signal's close to the executing close (0 = same close)")
    p.add_argument("--fees-bps", type=float, default=10.0, help="cost per side, basis points")
    p.add_argument("--borrow-bps", type=float, default=0.0,
                   help="annual borrow cost of the short leg, basis points")
    p.add_argument("--no-membership", action="store_true",
                   help="do not restrict formations to S&P 500 members as of their last day")
    p.add_argument("--baseline", default=None,
                   help="method the others' Sharpe ratios are tested against (default: gics "
                        "when it is among --methods, else the first method)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random partition")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return n


def _lags(v: str):
    if v.lower() in ("aic", "bic"):
        return v.lower()
    try:
        n = int(v)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected aic, bic or a lag >= 0, got {v!r}")
    return n


SURVIVORSHIP_NOTE = ("the bundled prices cover the tickers of the 2021 table only: companies that "
                     "left the S&P 500 before then are missing, a survivorship bias of the data "
                     "(membership as of each formation date is applied to the tickers present)")


def check_args(args) -> None:
    """Every option's type and range, before any data is read: one DataError naming it."""
    from finsae import config_check as cc

    from .backtest import BacktestConfig
    cc.integer(args.top_n, "--top-n", minimum=1)
    cc.integer(args.formation_days, "--formation-days", minimum=20)
    cc.integer(args.trading_days, "--trading-days", minimum=BacktestConfig.min_trading_days)
    if args.step_days is not None:
        cc.integer(args.step_days, "--step-days", minimum=1)
    cc.date_range(args.start, args.end, "--start", "--end")
    cc.number(args.pvalue, "--pvalue", minimum=0, maximum=1, strict_min=True)
    cc.number(args.entry_z, "--entry-z", minimum=0, strict_min=True)
    cc.number(args.exit_z, "--exit-z")
    if args.exit_z >= args.entry_z:
        raise DataError(f"--exit-z ({args.exit_z:g}) must be below --entry-z ({args.entry_z:g})")
    cc.number(args.stop_z, "--stop-z")
    if 0 < args.stop_z <= args.entry_z:
        raise DataError(f"--stop-z ({args.stop_z:g}) must be above --entry-z "
                        f"({args.entry_z:g}), or <= 0 to disable the stop")
    cc.integer(args.execution_lag, "--execution-lag", minimum=0)
    cc.number(args.fees_bps, "--fees-bps", minimum=0)
    cc.number(args.borrow_bps, "--borrow-bps", minimum=0)
    cc.integer(args.seed, "--seed", minimum=0)


def check_history(prices, config, source: str) -> None:
    """Enough trading days in [--start, --end] for one formation + trading window, else one
    error naming the price file and its date range."""
    from .backtest import walk_forward_periods
    if walk_forward_periods(prices.index, config):
        return
    span = (f"{len(prices)} days, {prices.index[0].date()} .. {prices.index[-1].date()}"
            if len(prices) else "no days")
    window = ""
    if config.start is not None or config.end is not None:
        n = len(prices.loc[config.start:config.end])
        window = f"; {n} of them within --start {config.start or '(first)'} .. --end " \
                 f"{config.end or '(last)'}"
    raise DataError(f"prices cover {span}{window}: too few for one formation window "
                    f"({config.formation_days} days) and trading window (at least "
                    f"{config.min_trading_days} days)", path=source)


def build_config(args):
    from .backtest import BacktestConfig
    from .select import SelectionConfig
    from .strategy import StrategyConfig
    lags = args.lags
    return BacktestConfig(
        formation_days=args.formation_days, trading_days=args.trading_days,
        step_days=args.step_days or args.trading_days, start=args.start, end=args.end,
        sp500_membership=not args.no_membership,
        selection=SelectionConfig(pvalue_max=args.pvalue, top_n=args.top_n, lags=lags),
        strategy=StrategyConfig(entry_z=args.entry_z, exit_z=args.exit_z,
                                stop_z=args.stop_z if args.stop_z > 0 else None,
                                execution_lag=args.execution_lag,
                                fees=args.fees_bps / 1e4, borrow_rate=args.borrow_bps / 1e4))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run(args) -> int:
    from finsae.data.companies import load_companies
    from finsae.data.prices import load_prices
    from finsae.data.returns import clean_prices
    from finsae.data.universe import evaluation_universe

    from .backtest import method_context, run_backtest, sharpe_difference
    from .select import METHODS, resolve_partition

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        print(f"finsae: error: unknown method(s) {', '.join(unknown) or '(none given)'}; "
              f"available: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    check_args(args)
    if args.baseline is not None and args.baseline not in methods:
        raise DataError(f"--baseline {args.baseline!r} is not among --methods "
                        f"({', '.join(methods)})")
    config = build_config(args)
    say = (lambda *_: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    companies = load_companies(args.companies)
    raw = load_prices(args.prices)
    check_history(raw, config, str(raw.attrs.get("source", args.prices)))
    prices = clean_prices(raw)
    universe = evaluation_universe(companies, raw)
    say(f"universe: {len(universe)} tickers; prices {prices.index[0].date()} .. "
        f"{prices.index[-1].date()} ({raw.attrs.get('source', '?')})")
    ctx = method_context(companies, prices, universe, args.seed, config)
    partitions = {m: resolve_partition(m, ctx) for m in methods}
    res = run_backtest(prices, partitions, universe, config, progress=say)
    metrics = res.metrics
    base = args.baseline or ("gics" if "gics" in methods else methods[0])
    tests = {}
    for m in methods:
        if m != base:
            t = sharpe_difference(res.returns[m], res.returns[base], "memmel")
            b = sharpe_difference(res.returns[m], res.returns[base], "bootstrap")
            tests[m] = {"baseline": base, "sharpe_difference": t.difference,
                        "z_memmel": t.statistic, "pvalue_memmel": t.pvalue,
                        "pvalue_block_bootstrap": b.pvalue}
    span = f"{res.returns.index[0].date()} .. {res.returns.index[-1].date()}"
    out = {
        "methods": {m: {k: _clean(float(v)) if k != "n_trades" else int(v)
                        for k, v in metrics.loc[m].items()} for m in methods},
        "sharpe_tests": tests,
        "period": span, "n_periods": len(res.periods), "universe": len(universe),
        "prices": str(raw.attrs.get("source", "?")),
        "notes": [SURVIVORSHIP_NOTE] if args.prices is None else [],
        "config": {"formation_days": config.formation_days,
                   "trading_days": config.trading_days, "step_days": config.step_days,
                   "top_n": config.selection.top_n, "lags": config.selection.lags,
                   "pvalue_max": config.selection.pvalue_max,
                   "entry_z": config.strategy.entry_z, "exit_z": config.strategy.exit_z,
                   "stop_z": config.strategy.stop_z, "fees": config.strategy.fees,
                   "borrow_rate": config.strategy.borrow_rate,
                   "leg_fraction": config.strategy.leg_fraction,
                   "execution_lag": config.strategy.execution_lag,
                   "sp500_membership": config.sp500_membership},
    }
    if args.out:
        write_outputs(Path(args.out), res, out, tests)
    if args.json:
        print(json.dumps(out, indent=2, default=_clean))
    else:
        show = metrics[["sharpe", "sortino", "annual_return", "volatility", "max_drawdown",
                        "n_trades", "win_rate", "turnover", "period_return_committed",
                        "period_return_employed"]].copy()
        print(f"Walk-forward pairs backtest after costs, {span}, {len(res.periods)} periods, "
              f"top {config.selection.top_n} pairs per method, "
              f"{config.strategy.fees * 1e4:g} bps per side")
        print(show.to_string(float_format=lambda v: f"{v:.3f}"))
        for m, t in tests.items():
            print(f"Sharpe {m} - {t['baseline']}: {t['sharpe_difference']:+.3f}  "
                  f"p = {t['pvalue_memmel']:.3f} (Jobson-Korkie-Memmel), "
                  f"{t['pvalue_block_bootstrap']:.3f} (block bootstrap)")
        if args.prices is None:
            print(f"note: {SURVIVORSHIP_NOTE}")
        if args.out:
            print(f"wrote {args.out}/")
    return 0


def write_outputs(folder: Path, res, summary: dict, tests: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    res.metrics.to_csv(folder / "metrics.csv")
    res.selections.to_csv(folder / "selections.csv", index=False)
    res.trades.to_csv(folder / "trades.csv", index=False)
    res.equity.to_csv(folder / "equity.csv")
    pd.DataFrame(tests).T.rename_axis("method").to_csv(folder / "sharpe_tests.csv")
    (folder / "backtest.json").write_text(json.dumps(summary, indent=2, default=_clean))
    fig, ax = plt.subplots(figsize=(10, 5))
    growth = res.equity / res.equity.iloc[0]
    for m in growth.columns:
        ax.plot(growth.index, growth[m], label=f"{m} (Sharpe {res.metrics.loc[m, 'sharpe']:.2f})",
                lw=1.2)
    ax.set_title("Pairs trading equity per grouping method (after costs, committed capital)")
    ax.set_ylabel("growth of 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "equity.png", dpi=120)
    plt.close(fig)
