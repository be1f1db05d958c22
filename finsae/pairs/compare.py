"""Backtest several grouping methods side by side on one universe (`backtest_methods`, with the
settings of `finsae.pairs.settings`) and report it (`BacktestReport`: Sharpe intervals,
differences to the baseline, `to_dict`, `save`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..jsonable import jsonable
from .backtest import BacktestConfig
from .settings import (SURVIVORSHIP_NOTE, BacktestSettings, check_history, not_walk_forward)


def backtest_context(companies, prices, universe, config: BacktestConfig, *, seed: int = 0,
                     n_seeds: int = 1, features=None):
    """The methods' `EvalContext` for a backtest on `prices` (the prices traded): its
    `eligible` applies the backtest's own eligibility rule, and methods are built per window."""
    from ..methods import EvalContext
    from .backtest import eligible_tickers
    members = None
    if config.sp500_membership:
        from ..data.membership import sp500_members as members
    ctx = EvalContext(companies, prices, universe=list(universe), seed=seed, n_seeds=n_seeds,
                      features=features, windows_only=True)
    ctx.eligible = lambda s, e: eligible_tickers(prices, ctx.universe, s, e, members)
    return ctx


def resolve_for_backtest(names, ctx) -> tuple[dict, dict[str, list[str]]]:
    """name -> resolved method, with each seed of a seeded method (random) a strategy of its
    own (``random_s0`` ...); and the seed groups (``{"random": ["random_s0", ...]}``)."""
    from ..methods import resolve
    parts, groups = {}, {}
    for n in names:
        if not_walk_forward(n):
            raise DataError(f"{n} is chosen on the evaluation's in-sample years: a walk-forward "
                            f"backtest cannot trade it without look-ahead")
        m = resolve(n, ctx)
        if m.n_seeds > 1 or isinstance(m.partition, list):
            if m.n_seeds == 1:
                parts[n] = m.seed(0)
                continue
            groups[n] = [f"{n}_s{i}" for i in range(m.n_seeds)]
            for i, s in zip(range(m.n_seeds), groups[n]):
                parts[s] = m.seed(i)
        else:
            parts[n] = m
    return parts, groups


@dataclass
class BacktestReport:
    """The backtest of several methods and what it says: per strategy the Sharpe ratio after
    costs with its interval, the difference to the baseline, trades and filters; `to_dict()` is
    backtest.json, `save(folder)` writes every file."""

    result: object  # BacktestResult
    settings: BacktestSettings
    per_strategy: dict
    tests: dict
    combined: tuple  # (returns, equity, metrics, trades) with seed groups collapsed
    groups: dict
    baseline: str
    universe: int
    prices: str
    notes: list

    def to_dict(self) -> dict:
        s, config = self.settings, self.settings.to_config()
        res = self.result
        span = f"{res.returns.index[0].date()} .. {res.returns.index[-1].date()}"
        return jsonable({
            "methods": self.per_strategy,
            "sharpe_tests": self.tests,
            "baseline": self.baseline, "rules": list(s.rules),
            "bootstrap": {"kind": "stationary (Politis-Romano 1994), joint over strategies, "
                                  "percentile intervals", "level": 0.95, "n_boot": s.n_boot,
                          "mean_block_days": s.block},
            "random_baseline": (
                f"mean over {s.random_seeds} seeded random partitions with the GICS "
                f"sub-industry sizes (first seed {s.seed}): metrics are the seed average, the "
                f"Sharpe interval that of the seed-average Sharpe") if self.groups else None,
            "period": span, "n_periods": len(res.periods), "universe": self.universe,
            "prices": self.prices, "notes": list(self.notes),
            "config": {"formation_days": config.formation_days,
                       "trading_days": config.trading_days, "step_days": config.step_days,
                       **{f: getattr(config.selection, f) for f in (
                           "top_n", "lags", "pvalue_max", "fdr", "half_life_range",
                           "hurst_max", "min_crossings", "min_beta")},
                       **{f: getattr(config.strategy, f) for f in (
                           "hedge", "bands", "entry_z", "exit_z", "stop_z", "fees",
                           "borrow_rate", "leg_fraction", "execution_lag")},
                       "sp500_membership": config.sp500_membership},
        })

    def summary(self) -> dict:
        """The short form `finsae run` keeps in metrics.json: each method's performance
        metrics (seed groups averaged), the traded period and the universe size."""
        res, M = self.result, self.combined[2]
        return jsonable({
            "methods": {m: {k: float(v) for k, v in M.loc[m].items()}
                        for m in self.settings_labels()},
            "period": [str(res.returns.index[0].date()), str(res.returns.index[-1].date())],
            "n_periods": len(res.periods), "universe": self.universe})

    def settings_labels(self) -> list[str]:
        rules = list(self.settings.rules)
        return [m if len(rules) == 1 else f"{m}:{r}" for r in rules
                for m in self.settings.methods]

    def save(self, folder: str | Path, tearsheets: bool = True) -> Path:
        from .report import write_outputs
        write_outputs(Path(folder), self.result, self.to_dict(), self.tests,
                      combined=self.combined, intervals=self.per_strategy,
                      tearsheets=tearsheets)
        return Path(folder)


def backtest_methods(companies, prices, settings: BacktestSettings, *, universe=None,
                     features=None, progress=None) -> BacktestReport:
    """Trade every method of `settings` on one universe (default: the evaluation universe)
    over the screened prices (`clean_prices` of `prices`), and summarise."""
    from ..data.returns import clean_prices
    from ..data.universe import evaluation_universe
    from .backtest import run_backtest
    config = settings.to_config()
    check_history(prices, config, str(prices.attrs.get("source", "prices")))
    traded = clean_prices(prices)
    if universe is None:
        universe = evaluation_universe(companies, prices)
    universe = list(universe)
    if progress:
        progress(f"universe: {len(universe)} tickers; prices {traded.index[0].date()} .. "
                 f"{traded.index[-1].date()} ({prices.attrs.get('source', '?')})")
    ctx = backtest_context(companies, traded, universe, config, seed=settings.seed,
                           n_seeds=settings.random_seeds, features=features)
    parts, groups = resolve_for_backtest(settings.methods, ctx)
    res = run_backtest(traded, parts, universe, config, progress=progress,
                       rules=list(settings.rules))
    base = settings.baseline or ("gics" if "gics" in settings.methods else settings.methods[0])
    per, tests, combined = summarise(res, list(settings.methods), list(settings.rules), config,
                                     base, groups, settings.n_boot, settings.block)
    source = str(prices.attrs.get("source", "?"))
    notes = [SURVIVORSHIP_NOTE] if source.startswith("bundled") else []
    return BacktestReport(res, settings, per, tests, combined, groups, base, len(universe),
                          source, notes)


def _finite(v):
    v = float(v)
    return v if np.isfinite(v) else None


def summarise(res, methods: list[str], rules: list[str], config, baseline: str = "gics",
              seed_groups: dict[str, list[str]] | None = None, n_boot: int = 2000,
              block: float = 21.0) -> tuple[dict, dict, tuple]:
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
        tab = bootstrap_sharpe(res.returns[cols], lab(base, r), grp, block=block,
                               n_boot=n_boot).table
        for m in methods:
            name = lab(m, r)
            row = {"method": m, "rule": r}
            row.update({k: _finite(v) for k, v in M.loc[name].items()
                        if name in groups or k not in ("n_seeds", "sharpe_seed_sd")})
            if row["n_trades"] is not None and float(row["n_trades"]).is_integer():
                row["n_trades"] = int(row["n_trades"])
            b = tab.loc[name]
            row["sharpe_bootstrap_point"] = _finite(b["sharpe"])
            row["sharpe_ci"] = [_finite(b["sharpe_lo"]), _finite(b["sharpe_hi"])]
            row["p_sharpe_le_0"] = _finite(b["p_sharpe_le_0"])
            if "diff" in b.index and name != lab(base, r) and np.isfinite(b.get("diff", np.nan)):
                row["baseline"] = lab(base, r)
                row["diff_to_baseline"] = _finite(b["diff"])
                row["diff_ci"] = [_finite(b["diff_lo"]), _finite(b["diff_hi"])]
                row["diff_pvalue"] = _finite(b["diff_pvalue"])
            fl = res.filters.loc[groups.get(name, [name])].sum(min_count=1)
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
