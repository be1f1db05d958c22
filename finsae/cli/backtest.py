"""`finsae backtest`: walk-forward cointegration pairs trading per grouping method."""

from __future__ import annotations

import json
import sys

from ..pairs.settings import BacktestSettings
from .common import feature_universe, load_feature_set, settings_parser
from .options import dataclass_from_args, flag_name


def register(subparsers) -> None:
    p = settings_parser(
        subparsers, "backtest", "cointegration pairs backtest per grouping method",
        "Walk-forward pairs trading (formation-only hedge ratios, costs on) for each grouping "
        "method; prints a metrics table with bootstrap intervals.", BacktestSettings)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write metrics.csv, selections.csv, trades.csv, equity.csv, "
                        "sharpe_tests.csv, filters.csv, backtest.json, PNGs and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.companies import load_companies
    from ..data.prices import load_prices
    from ..pairs.compare import backtest_methods
    settings = dataclass_from_args(BacktestSettings, args).check(flag_name)
    say = (lambda *_: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    companies = load_companies(args.companies)
    prices = load_prices(args.prices)
    fs = load_feature_set(args.features)
    report = backtest_methods(companies, prices, settings, features=fs, progress=say,
                              universe=feature_universe(companies, prices, fs, "backtest"))
    if args.out:
        report.save(args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print_report(report)
    if args.out:
        print(f"wrote {args.out}/")
    return 0


def print_report(report) -> None:
    res, per, tests = report.result, report.per_strategy, report.tests
    M = report.combined[2]
    config = report.settings.to_config()
    cols = ["sharpe", "sortino", "annual_return", "volatility", "max_drawdown", "n_trades",
            "win_rate", "turnover", "period_return_committed", "period_return_employed"]
    show = M[cols].astype(float).copy()
    show.insert(1, "sharpe_lo", [per[m]["sharpe_ci"][0] for m in show.index])
    show.insert(2, "sharpe_hi", [per[m]["sharpe_ci"][1] for m in show.index])
    span = f"{res.returns.index[0].date()} .. {res.returns.index[-1].date()}"
    print(f"Walk-forward pairs backtest after costs, {span}, {len(res.periods)} periods, "
          f"top {config.selection.top_n} pairs per method, "
          f"{config.strategy.fees * 1e4:g} bps per side; 95% stationary block-bootstrap "
          f"intervals")
    print(show.to_string(float_format=lambda v: f"{v:.3f}"))
    nan = float("nan")
    for m, t in tests.items():
        ci = [nan if v is None else v for v in (t["diff_ci_block_bootstrap"] or [nan, nan])]
        d, pb = t["sharpe_difference"], t["pvalue_block_bootstrap"]
        print(f"Sharpe {m} - {t['baseline']}: {nan if d is None else d:+.3f} "
              f"[{ci[0]:+.3f}, {ci[1]:+.3f}]  p = {t['pvalue_memmel']:.3f} "
              f"(Jobson-Korkie-Memmel), {nan if pb is None else pb:.3f} (block bootstrap)")
    print("filters (pairs removed, summed over periods):")
    print(res.filters.to_string())
    for note in report.notes:
        print(f"note: {note}")
