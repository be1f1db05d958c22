"""Backtest several grouping methods side by side: the settings (`BacktestSettings`, the flags
of `finsae backtest` and the [backtest] table of `finsae run`), the run (`backtest_methods`) and
its report (`BacktestReport`: Sharpe intervals, differences to the baseline, `to_dict`,
`save`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..jsonable import jsonable
from .backtest import BacktestConfig
from .select import RULES, SelectionConfig
from .strategy import StrategyConfig

#: the methods `finsae backtest` trades when none are named
DEFAULT_METHODS = ["sae", "sae_knn", "embedding", "embedding_knn", "tfidf_knn", "gics",
                   "gics_industry", "sic", "sic2", "returns", "random"]

SURVIVORSHIP_NOTE = ("the bundled prices cover the tickers of the 2021 table only: companies that "
                     "left the S&P 500 before then are missing, a survivorship bias of the data "
                     "(membership as of each formation date is applied to the tickers present)")

_B, _S, _T = BacktestConfig, SelectionConfig, StrategyConfig


@dataclass
class BacktestSettings:
    """A walk-forward pairs backtest of several methods (defaults: those of `BacktestConfig`,
    `SelectionConfig` and `StrategyConfig`)."""

    #: grouping methods to trade (any name of `finsae.methods`, e.g. sae, sae_knn, gics)
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    #: selection rules: eg (Engle-Granger p-value), johansen (trace test), distance (GGR sum of
    #: squared deviations); with several, each strategy is METHOD:RULE
    rules: list[str] = field(default_factory=lambda: [_S.rule])
    #: pairs traded per method and period (the same for every method)
    top_n: int = _S.top_n
    #: trading days in each formation window
    formation_days: int = _B.formation_days
    #: trading days in each trading window
    trading_days: int = _B.trading_days
    #: days between formation starts (none: the trading days, back-to-back windows)
    step_days: int | None = None
    #: first formation start date (none: the first price date)
    start: str | None = None
    #: last date used (none: the last price date)
    end: str | None = None
    #: ADF lag: an int, or aic/bic selection as statsmodels does
    lags: str = str(_S.lags)
    #: Engle-Granger p-value cut
    pvalue: float = _S.pvalue_max
    #: Benjamini-Hochberg FDR level over each method's candidates per formation (rule eg);
    #: none or 0 disables
    fdr: float | None = _S.fdr
    #: keep spreads whose half-life (days) is in LO,HI; none disables
    half_life: tuple[float, float] | None = _S.half_life_range
    #: keep spreads with a Hurst exponent below this; none or 0 disables
    hurst_max: float | None = _S.hurst_max
    #: keep spreads crossing their formation mean at least this often a year; none or 0
    #: disables
    min_crossings: float | None = _S.min_crossings
    #: hedge ratio: formation (OLS, fixed), rolling (OLS), kalman
    hedge: str = _T.hedge
    #: rolling OLS window (days)
    hedge_window: int = _T.hedge_window
    #: z-score reference: formation (mean and sd) or ou (fitted OU mean and stationary sd)
    bands: str = _T.bands
    #: open when |z| reaches this
    entry_z: float = _T.entry_z
    #: close when z crosses back to this
    exit_z: float = _T.exit_z
    #: stop-loss |z|; none or 0 disables
    stop_z: float | None = _T.stop_z
    #: days from the signal's close to the executing close (0 = the same close)
    execution_lag: int = _T.execution_lag
    #: cost per side, basis points
    fees_bps: float = _T.fees * 1e4
    #: annual borrow cost of the short leg, basis points
    borrow_bps: float = _T.borrow_rate * 1e4
    #: restrict each formation to S&P 500 members as of its last day
    membership: bool = _B.sp500_membership
    #: method the others' Sharpe ratios are tested against (none: gics when traded, else the
    #: first method)
    baseline: str | None = None
    #: first seed of the random partitions
    seed: int = 0
    #: random partitions traded and averaged for the random baseline
    random_seeds: int = 20
    #: stationary block-bootstrap draws for the Sharpe intervals
    n_boot: int = 2000
    #: mean block length (days) of the stationary bootstrap
    block: float = 21.0

    def __post_init__(self):
        # "0 disables", as the flags always said
        for name in ("fdr", "hurst_max", "min_crossings", "stop_z"):
            v = getattr(self, name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                setattr(self, name, None)

    def check(self, where=lambda name: name, path=None) -> "BacktestSettings":
        """Every setting's type and range, before any data is read: one DataError naming it."""
        from .. import config_check as cc
        from ..methods import is_known
        cc.str_list(self.methods, where("methods"), path=path)
        for m in self.methods:
            if not is_known(m, ("hidden",)):
                from ..methods import known_methods
                raise DataError(f"{where('methods')}: unknown method {m!r}; known: "
                                f"{', '.join(known_methods())}", path=path)
        for m in self.methods:
            if not_walk_forward(m):
                raise DataError(f"{where('methods')}: {m} is chosen on the evaluation's "
                                f"in-sample years, which a walk-forward backtest would trade "
                                f"through (look-ahead); use it with `finsae evaluate`",
                                path=path)
        cc.str_list(self.rules, where("rules"), path=path)
        for r in self.rules:
            cc.choice(r, where("rules"), RULES, path=path)
        cc.integer(self.top_n, where("top_n"), minimum=1, path=path)
        cc.integer(self.formation_days, where("formation_days"), minimum=20, path=path)
        cc.integer(self.trading_days, where("trading_days"), minimum=_B.min_trading_days,
                   path=path)
        if self.step_days is not None:
            cc.integer(self.step_days, where("step_days"), minimum=1, path=path)
        cc.date_range(self.start, self.end, where("start"), where("end"), path=path)
        if str(self.lags).lower() not in ("aic", "bic") and not (
                str(self.lags).isdigit()):
            raise DataError(f"{where('lags')} must be aic, bic or a lag >= 0, got "
                            f"{self.lags!r}", path=path)
        cc.number(self.pvalue, where("pvalue"), minimum=0, maximum=1, strict_min=True,
                  path=path)
        if self.fdr is not None:
            cc.number(self.fdr, where("fdr"), minimum=0, maximum=1, strict_min=True,
                      path=path)
        if self.half_life is not None:
            lo, hi = self.half_life
            if not 0 <= lo < hi:
                raise DataError(f"{where('half_life')} needs 0 <= LO < HI, got {lo:g},{hi:g}",
                                path=path)
        cc.choice(self.hedge, where("hedge"), ("formation", "rolling", "kalman"), path=path)
        cc.integer(self.hedge_window, where("hedge_window"), minimum=2, path=path)
        cc.choice(self.bands, where("bands"), ("formation", "ou"), path=path)
        cc.number(self.entry_z, where("entry_z"), minimum=0, strict_min=True, path=path)
        cc.number(self.exit_z, where("exit_z"), path=path)
        if self.exit_z >= self.entry_z:
            raise DataError(f"{where('exit_z')} ({self.exit_z:g}) must be below "
                            f"{where('entry_z')} ({self.entry_z:g})", path=path)
        if self.stop_z is not None and self.stop_z <= self.entry_z:
            raise DataError(f"{where('stop_z')} ({self.stop_z:g}) must be above "
                            f"{where('entry_z')} ({self.entry_z:g}), or none", path=path)
        cc.integer(self.execution_lag, where("execution_lag"), minimum=0, path=path)
        cc.number(self.fees_bps, where("fees_bps"), minimum=0, path=path)
        cc.number(self.borrow_bps, where("borrow_bps"), minimum=0, path=path)
        if self.baseline is not None and self.baseline not in self.methods:
            raise DataError(f"{where('baseline')} {self.baseline!r} is not among "
                            f"{where('methods')} ({', '.join(self.methods)})", path=path)
        cc.integer(self.seed, where("seed"), minimum=0, path=path)
        cc.integer(self.random_seeds, where("random_seeds"), minimum=1, path=path)
        cc.integer(self.n_boot, where("n_boot"), minimum=1, path=path)
        cc.number(self.block, where("block"), minimum=1, path=path)
        return self

    def to_config(self) -> BacktestConfig:
        lags = str(self.lags).lower()
        return BacktestConfig(
            formation_days=self.formation_days, trading_days=self.trading_days,
            step_days=self.step_days or self.trading_days, start=self.start, end=self.end,
            sp500_membership=self.membership,
            selection=SelectionConfig(
                pvalue_max=self.pvalue, top_n=self.top_n,
                lags=lags if lags in ("aic", "bic") else int(lags),
                half_life_range=tuple(self.half_life) if self.half_life else None,
                hurst_max=self.hurst_max, min_crossings=self.min_crossings, fdr=self.fdr),
            strategy=StrategyConfig(entry_z=self.entry_z, exit_z=self.exit_z,
                                    stop_z=self.stop_z, execution_lag=self.execution_lag,
                                    fees=self.fees_bps / 1e4,
                                    borrow_rate=self.borrow_bps / 1e4, hedge=self.hedge,
                                    hedge_window=self.hedge_window, bands=self.bands))


def not_walk_forward(name: str) -> bool:
    """Methods fitted on the evaluation's in-sample years (MST thresholds, co-movement
    weights): usable in `finsae evaluate`, not in a walk-forward backtest."""
    from ..methods import canonical
    base = canonical(name).partition("@")[0]
    return base.endswith(("_mst", "_mst_rolling")) or base.endswith("_supervised")


def check_history(prices, config: BacktestConfig, source: str) -> None:
    """Enough trading days in [start, end] for one formation + trading window, else one
    error naming the price file and its date range."""
    from .backtest import walk_forward_periods
    if walk_forward_periods(prices.index, config):
        return
    span = (f"{len(prices)} days, {prices.index[0].date()} .. {prices.index[-1].date()}"
            if len(prices) else "no days")
    window = ""
    if config.start is not None or config.end is not None:
        n = len(prices.loc[config.start:config.end])
        window = f"; {n} of them within start {config.start or '(first)'} .. end " \
                 f"{config.end or '(last)'}"
    raise DataError(f"prices cover {span}{window}: too few for one formation window "
                    f"({config.formation_days} days) and trading window (at least "
                    f"{config.min_trading_days} days)", path=source)


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
