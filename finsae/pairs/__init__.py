"""Cointegration pairs trading per company grouping (issues 9 and 17).

* `coint`: batched Engle-Granger (equal to statsmodels' `coint`); `johansen` (equal to
  `coint_johansen`); `spread_stats`: GGR distance, half-life, Hurst, mean crossings,
  Ornstein-Uhlenbeck fit.
* `select`: candidate pairs (from a `finsae.methods` grouping or `Neighbours`),
  formation-window selection rules ("eg", "johansen", "distance") and the pair filters
  (p-value, Benjamini-Hochberg, hedge sign, half-life, Hurst, mean crossings), each counted.
* `hedge`: rolling-OLS and Kalman hedge ratios, each day's from prices up to that day.
* `strategy`: z-score bands on the formation spread, dollar-neutral legs, costs.
* `backtest`: walk-forward periods, vectorbt portfolio, metrics.
* `tearsheet`: equity, drawdown, rolling Sharpe and trade statistics per strategy (PNG).
* `inference`: Sharpe differences (Jobson-Korkie-Memmel), stationary block-bootstrap
  intervals, the random baseline averaged over seeds.
* `settings`: `BacktestSettings` (flags of `finsae backtest`, [backtest] of `finsae run`).
* `compare`: `backtest_methods` (every method on one universe, seeds of the random baseline
  averaged) and its `BacktestReport` (`to_dict`, `save`).
* `report`: the files of a backtest (CSV, JSON, PNG, report.html).

Nothing fitted on a trading window is used to trade it: hedge ratio, intercept, spread mean and
standard deviation, the pair list and the return-correlation clusters all come from the
formation window, and dynamic hedges from prices up to each day (tests in
tests/test_pairs_backtest.py, tests/test_pairs_filters.py, tests/test_pairs_models.py).
"""

from .backtest import (BacktestConfig, BacktestResult, bootstrap_sharpe, combine_seeds,
                       run_backtest, sharpe_difference)
from .coint import engle_granger, engle_granger_both
from .compare import BacktestReport, backtest_methods
from .johansen import johansen
from .select import (Neighbours, SelectionConfig, benjamini_hochberg, filter_pairs, partition_at,
                     select_pairs)
from .settings import BacktestSettings
from .spread_stats import half_life, hurst_exponent, mean_crossings, ou_fit, ssd_distance
from .strategy import StrategyConfig, pair_positions

__all__ = ["BacktestConfig", "BacktestReport", "BacktestResult", "BacktestSettings",
           "Neighbours", "SelectionConfig", "backtest_methods", "partition_at",
           "StrategyConfig", "benjamini_hochberg", "bootstrap_sharpe", "combine_seeds",
           "engle_granger", "engle_granger_both", "filter_pairs", "half_life", "hurst_exponent",
           "johansen", "mean_crossings", "ou_fit", "pair_positions", "run_backtest", "select_pairs", "sharpe_difference",
           "ssd_distance"]
