"""What a walk-forward backtest of several methods is set to do: `BacktestSettings` (the flags
of `finsae backtest` and the [backtest] table of `finsae run`; defaults from `BacktestConfig`,
`SelectionConfig` and `StrategyConfig`), and the checks made before any data is read."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.errors import DataError
from ..features.store import METHODS as FEATURE_SET_VECTORS
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
            if not is_known(m, FEATURE_SET_VECTORS):
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
