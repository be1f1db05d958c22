"""Cointegration pairs trading per company grouping (issue 9).

* `coint`: batched Engle-Granger (equal to statsmodels' `coint`), half-life, Hurst.
* `select`: method registry (name -> partition), candidate pairs, formation-window selection.
* `strategy`: z-score bands on the formation spread, dollar-neutral legs, costs.
* `backtest`: walk-forward periods, vectorbt portfolio, metrics, Sharpe-difference tests.
* `cli`: ``finsae backtest``.

Nothing fitted on a trading window is used to trade it: hedge ratio, intercept, spread mean and
standard deviation, the pair list and the return-correlation clusters all come from the
formation window (tests in tests/test_pairs_backtest.py).
"""

from .backtest import BacktestConfig, BacktestResult, run_backtest, sharpe_difference
from .coint import engle_granger, engle_granger_both, half_life, hurst_exponent
from .select import METHODS, SelectionConfig, register_method, resolve_partition, select_pairs
from .strategy import StrategyConfig, pair_positions

__all__ = ["BacktestConfig", "BacktestResult", "METHODS", "SelectionConfig", "StrategyConfig",
           "engle_granger", "engle_granger_both", "half_life", "hurst_exponent",
           "pair_positions", "register_method", "resolve_partition", "run_backtest",
           "select_pairs", "sharpe_difference"]
