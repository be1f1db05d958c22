"""`finsae backtest`: walk-forward cointegration pairs trading per grouping method."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from finsae.data.errors import DataError

DEFAULT_METHODS = ("sae,sae_knn,embedding,embedding_knn,tfidf_knn,gics,gics_industry,sic,sic2,"
                   "returns,random")


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
    p.add_argument("--rules", default="eg",
                   help="selection rules, comma-separated from eg (Engle-Granger p-value), "
                        "johansen (trace test), distance (GGR sum of squared deviations); "
                        "with several, each strategy is METHOD:RULE (default: %(default)s)")
    p.add_argument("--pvalue", type=float, default=0.05, help="Engle-Granger p-value cut")
    p.add_argument("--fdr", type=float, default=0.0,
                   help="Benjamini-Hochberg FDR level over each method's candidates per "
                        "formation (rule eg); 0 disables (default)")
    p.add_argument("--half-life", type=_range, default=(1.0, 63.0), metavar="LO,HI",
                   help="keep spreads whose half-life (days) is in LO..HI; 'none' disables "
                        "(default 1,63)")
    p.add_argument("--hurst-max", type=float, default=0.5,
                   help="keep spreads with a Hurst exponent below this; <= 0 disables")
    p.add_argument("--min-crossings", type=float, default=12.0,
                   help="keep spreads crossing their formation mean at least this often a "
                        "year; <= 0 disables")
    p.add_argument("--hedge", choices=["formation", "rolling", "kalman"], default="formation",
                   help="hedge ratio: formation OLS (fixed), rolling OLS, or Kalman filter")
    p.add_argument("--hedge-window", type=int, default=63, help="rolling OLS window (days)")
    p.add_argument("--bands", choices=["formation", "ou"], default="formation",
                   help="z-score reference: formation mean/sd or the fitted OU mean and "
                        "stationary sd")
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
    p.add_argument("--seed", type=int, default=0, help="first seed of the random partition")
    p.add_argument("--random-seeds", type=_positive, default=20,
                   help="random partitions averaged for the random baseline (seeds SEED, "
                        "SEED+1, ...)")
    p.add_argument("--n-boot", type=_positive, default=2000,
                   help="stationary block-bootstrap draws for the Sharpe intervals")
    p.add_argument("--block", type=float, default=21.0,
                   help="mean block length (days) of the stationary bootstrap")
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


def _range(v: str):
    if v.lower() == "none":
        return None
    try:
        lo, hi = (float(t) for t in v.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI or none, got {v!r}") from None
    if not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"need 0 <= LO < HI, got {v!r}")
    return lo, hi


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
        selection=SelectionConfig(
            pvalue_max=args.pvalue, top_n=args.top_n, lags=lags,
            half_life_range=args.half_life,
            hurst_max=args.hurst_max if args.hurst_max > 0 else None,
            min_crossings=args.min_crossings if args.min_crossings > 0 else None,
            fdr=args.fdr if args.fdr > 0 else None),
        strategy=StrategyConfig(entry_z=args.entry_z, exit_z=args.exit_z,
                                stop_z=args.stop_z if args.stop_z > 0 else None,
                                execution_lag=args.execution_lag,
                                fees=args.fees_bps / 1e4, borrow_rate=args.borrow_bps / 1e4,
                                hedge=args.hedge, hedge_window=args.hedge_window,
                                bands=args.bands))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def expand_random(methods: list[str], n_seeds: int, seed: int = 0) -> tuple[list[str], dict]:
    """Replace "random" by its seeds random_s{SEED}.. ; returns (names, {name: seed})."""
    names, seeds = [], {}
    for m in methods:
        if m == "random" and n_seeds > 1:
            for k in range(seed, seed + n_seeds):
                names.append(f"random_s{k}")
                seeds[f"random_s{k}"] = k
        else:
            names.append(m)
            if m == "random":
                seeds[m] = seed
    return names, seeds


def summarise(res, methods: list[str], rules: list[str], config, baseline: str = "gics",
              seed_groups: dict[str, list[str]] | None = None, n_boot: int = 2000,
              block: float = 21.0) -> tuple[dict, dict, object]:
    """Per strategy: Sharpe after costs with its stationary block-bootstrap interval, the
    difference to the baseline method under the same rule with its interval, trades,
    turnover, filters applied and the pairs each removed; the random seeds collapsed into
    "random" (mean of the seeds' metrics). Returns (per-strategy dict, Memmel and bootstrap
    tests against the baseline, (returns, equity, metrics, trades) after collapsing seeds)."""
    from .backtest import bootstrap_sharpe, combine_seeds, sharpe_difference
    multi = len(rules) > 1

    def lab(m, r):
        return f"{m}:{r}" if multi else m

    groups = {lab(g, r): [lab(c, r) for c in cols] for g, cols in (seed_groups or {}).items()
              for r in rules}
    R, E, M, T = combine_seeds(res, groups, config) if groups else \
        (res.returns, res.equity, res.metrics, res.trades)
    out, tests = {}, {}
    base = baseline if baseline in methods else methods[0]
    for r in rules:
        cols = [c for c in res.returns.columns if not multi or c.endswith(f":{r}")]
        grp = {k: g for k, g in groups.items() if not multi or k.endswith(f":{r}")}
        boot = bootstrap_sharpe(res.returns[cols], lab(base, r), grp, block=block, n_boot=n_boot)
        tab = boot.table
        filt = res.filters
        for m in methods:
            name = lab(m, r)
            row = {"method": m, "rule": r}
            row.update({k: _clean(float(v)) for k, v in M.loc[name].items()
                        if name in groups or k not in ("n_seeds", "sharpe_seed_sd")})
            if float(row["n_trades"]).is_integer():
                row["n_trades"] = int(row["n_trades"])
            b = tab.loc[name]
            row["sharpe_bootstrap_point"] = _clean(float(b["sharpe"]))
            row["sharpe_ci"] = [_clean(float(b["sharpe_lo"])), _clean(float(b["sharpe_hi"]))]
            row["p_sharpe_le_0"] = _clean(float(b["p_sharpe_le_0"]))
            if "diff" in b.index and name != lab(base, r) and np.isfinite(b.get("diff", np.nan)):
                row["baseline"] = lab(base, r)
                row["diff_to_baseline"] = _clean(float(b["diff"]))
                row["diff_ci"] = [_clean(float(b["diff_lo"])), _clean(float(b["diff_hi"]))]
                row["diff_pvalue"] = _clean(float(b["diff_pvalue"]))
            fl = filt.loc[groups.get(name, [name])].sum(min_count=1)
            applied = [f for f in fl.index if f not in ("candidates", "passed", "selected")
                       and not np.isnan(fl[f])]
            nseeds = len(groups.get(name, [name]))
            row["filters"] = {"applied": applied,
                              "removed": {f: float(fl[f]) / nseeds for f in applied},
                              **{k: float(fl[k]) / nseeds for k in
                                 ("candidates", "passed", "selected")}}
            if name in groups:
                seed_sr = res.metrics.loc[groups[name], "sharpe"].astype(float)
                row["seeds"] = {"n": nseeds, "sharpe_mean": float(seed_sr.mean()),
                                "sharpe_sd": float(seed_sr.std(ddof=1)),
                                "sharpe_min": float(seed_sr.min()),
                                "sharpe_max": float(seed_sr.max())}
            out[name] = row
            if name != lab(base, r):
                # Memmel's test compares two return series: for a seed group, the returns of
                # the seed-average portfolio (whose Sharpe exceeds the average seed Sharpe)
                t = sharpe_difference(R[name], R[lab(base, r)], "memmel")
                tests[name] = {"baseline": lab(base, r),
                               "sharpe_difference": row.get("diff_to_baseline"),
                               "sharpe_difference_memmel": t.difference,
                               "z_memmel": t.statistic, "pvalue_memmel": t.pvalue,
                               "memmel_on": "seed-average returns" if name in groups
                               else "returns",
                               "diff_ci_block_bootstrap": row.get("diff_ci"),
                               "pvalue_block_bootstrap": row.get("diff_pvalue")}
    return out, tests, (R, E, M, T)


def run(args) -> int:
    from finsae.data.companies import load_companies
    from finsae.data.prices import load_prices
    from finsae.data.returns import clean_prices
    from finsae.data.universe import evaluation_universe

    from .backtest import method_context, run_backtest
    from .select import METHODS, RULES, resolve_partition

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
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        print(f"finsae: error: unknown rule(s) {', '.join(bad)}; available: {', '.join(RULES)}",
              file=sys.stderr)
        return 2
    config = build_config(args)
    say = (lambda *_: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    companies = load_companies(args.companies)
    raw = load_prices(args.prices)
    check_history(raw, config, str(raw.attrs.get("source", args.prices)))
    prices = clean_prices(raw)
    universe = evaluation_universe(companies, raw)
    say(f"universe: {len(universe)} tickers; prices {prices.index[0].date()} .. "
        f"{prices.index[-1].date()} ({raw.attrs.get('source', '?')})")
    names, seeds = expand_random(methods, args.random_seeds, args.seed)
    partitions = {}
    for n in names:
        ctx = method_context(companies, prices, universe, seeds.get(n, args.seed), config)
        partitions[n] = resolve_partition("random" if n in seeds else n, ctx)
    res = run_backtest(prices, partitions, universe, config, progress=say, rules=rules)
    groups = {"random": [n for n in names if n.startswith("random_s")]} \
        if "random" in methods and args.random_seeds > 1 else {}
    base = args.baseline or ("gics" if "gics" in methods else methods[0])
    per, tests, (R, E, M, T) = summarise(res, methods, rules, config, base, groups,
                                         args.n_boot, args.block)
    span = f"{res.returns.index[0].date()} .. {res.returns.index[-1].date()}"
    out = {
        "methods": per,
        "sharpe_tests": tests,
        "baseline": base, "rules": rules,
        "bootstrap": {"kind": "stationary (Politis-Romano 1994), joint over strategies, "
                              "percentile intervals", "level": 0.95, "n_boot": args.n_boot,
                      "mean_block_days": args.block},
        "random_baseline": (f"mean over {args.random_seeds} seeded random partitions with the "
                            f"GICS sub-industry sizes (seeds {args.seed}.."
                            f"{args.seed + args.random_seeds - 1}): metrics are the seed "
                            f"average, the Sharpe interval that of the seed-average Sharpe")
        if groups else None,
        "period": span, "n_periods": len(res.periods), "universe": len(universe),
        "prices": str(raw.attrs.get("source", "?")),
        "notes": [SURVIVORSHIP_NOTE] if args.prices is None else [],
        "config": {"formation_days": config.formation_days,
                   "trading_days": config.trading_days, "step_days": config.step_days,
                   "top_n": config.selection.top_n, "lags": config.selection.lags,
                   "pvalue_max": config.selection.pvalue_max,
                   "fdr": config.selection.fdr,
                   "half_life_range": config.selection.half_life_range,
                   "hurst_max": config.selection.hurst_max,
                   "min_crossings": config.selection.min_crossings,
                   "min_beta": config.selection.min_beta,
                   "hedge": config.strategy.hedge, "bands": config.strategy.bands,
                   "entry_z": config.strategy.entry_z, "exit_z": config.strategy.exit_z,
                   "stop_z": config.strategy.stop_z, "fees": config.strategy.fees,
                   "borrow_rate": config.strategy.borrow_rate,
                   "leg_fraction": config.strategy.leg_fraction,
                   "execution_lag": config.strategy.execution_lag,
                   "sp500_membership": config.sp500_membership},
    }
    if args.out:
        write_outputs(Path(args.out), res, out, tests, combined=(R, E, M, T), intervals=per)
    if args.json:
        print(json.dumps(out, indent=2, default=_clean))
    else:
        cols = ["sharpe", "sortino", "annual_return", "volatility", "max_drawdown", "n_trades",
                "win_rate", "turnover", "period_return_committed", "period_return_employed"]
        show = M[cols].astype(float).copy()
        show.insert(1, "sharpe_lo", [per[m]["sharpe_ci"][0] for m in show.index])
        show.insert(2, "sharpe_hi", [per[m]["sharpe_ci"][1] for m in show.index])
        print(f"Walk-forward pairs backtest after costs, {span}, {len(res.periods)} periods, "
              f"top {config.selection.top_n} pairs per method, "
              f"{config.strategy.fees * 1e4:g} bps per side; 95% stationary block-bootstrap "
              f"intervals")
        print(show.to_string(float_format=lambda v: f"{v:.3f}"))
        for m, t in tests.items():
            nan = float("nan")
            ci = [nan if v is None else v for v in (t["diff_ci_block_bootstrap"] or [nan, nan])]
            d, pb = t["sharpe_difference"], t["pvalue_block_bootstrap"]
            print(f"Sharpe {m} - {t['baseline']}: {nan if d is None else d:+.3f} "
                  f"[{ci[0]:+.3f}, {ci[1]:+.3f}]  p = {t['pvalue_memmel']:.3f} "
                  f"(Jobson-Korkie-Memmel), {nan if pb is None else pb:.3f} (block bootstrap)")
        print("filters (pairs removed, summed over periods):")
        print(res.filters.to_string())
        if args.prices is None:
            print(f"note: {SURVIVORSHIP_NOTE}")
        if args.out:
            print(f"wrote {args.out}/")
    return 0


def write_outputs(folder: Path, res, summary: dict, tests: dict, combined=None,
                  intervals: dict | None = None, tearsheets: bool = True) -> None:
    """metrics.csv, selections.csv, trades.csv, equity.csv, sharpe_tests.csv, filters.csv,
    backtest.json, equity.png and one tearsheet_<strategy>.png per strategy in `folder`.
    combined: (returns, equity, metrics, trades) with seed groups collapsed (default: `res`'s
    own); intervals: per strategy dicts with "sharpe_ci" (shown on the tear sheets)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .tearsheet import tear_sheet

    R, E, M, T = combined if combined is not None else \
        (res.returns, res.equity, res.metrics, res.trades)
    folder.mkdir(parents=True, exist_ok=True)
    M.to_csv(folder / "metrics.csv")
    res.selections.to_csv(folder / "selections.csv", index=False)
    res.trades.to_csv(folder / "trades.csv", index=False)
    E.to_csv(folder / "equity.csv")
    if getattr(res, "filters", None) is not None:
        res.filters.to_csv(folder / "filters.csv")
    pd.DataFrame(tests).T.rename_axis("method").to_csv(folder / "sharpe_tests.csv")
    (folder / "backtest.json").write_text(json.dumps(summary, indent=2, default=_clean))
    fig, ax = plt.subplots(figsize=(10, 5))
    growth = E / E.iloc[0]
    for m in growth.columns:
        ax.plot(growth.index, growth[m], label=f"{m} (Sharpe {float(M.loc[m, 'sharpe']):.2f})",
                lw=1.2)
    ax.set_title("Pairs trading equity per grouping method (after costs, committed capital)")
    ax.set_ylabel("growth of 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "equity.png", dpi=120)
    plt.close(fig)
    if not tearsheets:
        return
    for m in R.columns:
        ci = (intervals or {}).get(m, {}).get("sharpe_ci")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(m))
        tear_sheet(R[m], T[T["method"] == m], folder / f"tearsheet_{safe}.png", str(m),
                   interval=tuple(ci) if ci and None not in ci else None)
    write_html(folder, summary, M, getattr(res, "filters", None))


def write_html(folder: Path, summary: dict, metrics, filters) -> Path:
    """report.html in `folder`: the per-strategy table with intervals, the filter counts, the
    equity plot and every tear sheet (self-contained, opens offline)."""
    import pandas as pd

    from finsae.report.build import tear_sheets
    from finsae.report.html import figure_html, paragraph, table_html, write_report
    per = summary.get("methods", {})
    rows = {}
    for m, d in per.items():
        ci, dci = d.get("sharpe_ci") or [None, None], d.get("diff_ci") or [None, None]
        rows[m] = {"sharpe": d.get("sharpe"), "lo": ci[0], "hi": ci[1],
                   f"diff to {summary.get('baseline', 'baseline')}": d.get("diff_to_baseline"),
                   "diff lo": dci[0], "diff hi": dci[1], "trades": d.get("n_trades"),
                   "turnover": d.get("turnover"),
                   "return/period committed": d.get("period_return_committed"),
                   "return/period employed": d.get("period_return_employed")}
    table = pd.DataFrame(rows).T.astype(float).rename_axis("strategy")
    b = summary.get("bootstrap", {})
    meta = {"period": summary.get("period", ""), "periods": summary.get("n_periods", ""),
            "universe": summary.get("universe", ""), "prices": summary.get("prices", ""),
            "rules": ", ".join(summary.get("rules", [])),
            "intervals": f"{b.get('level', '')} {b.get('kind', '')}, {b.get('n_boot', '')} "
                         f"draws, mean block {b.get('mean_block_days', '')} days",
            "config": json.dumps(summary.get("config", {}), default=_clean)}
    sections = [("Sharpe after costs with bootstrap intervals", [
        paragraph("Sharpe ratios of daily returns on committed capital, annualised at 252; "
                  "differences to the baseline under the same selection rule. "
                  + (summary.get("random_baseline") or ""), "note"),
        table_html(table)])]
    if filters is not None:
        sections.append(("Pair filters: pairs removed, summed over formation windows",
                         [table_html(filters.astype(float), "{:.0f}")]))
    sections.append(("Equity", [figure_html(folder / "equity.png", "growth of 1 per strategy")]))
    sections.append(("Tear sheets", tear_sheets(folder, "tearsheet_")))
    notes = [paragraph(n, "note") for n in summary.get("notes", [])]
    if notes:
        sections.append(("Notes", notes))
    return write_report(folder / "report.html", "finsae pairs backtest", sections, meta)
