import numpy as np
import pytest

from finsae.pairs.strategy import StrategyConfig, leg_orders, pair_positions


def test_entry_exit_stop_and_lag():
    z = np.array([0, 1, 2.5, 1.5, 0.5, -0.1, 0, -2.2, -3, -4.5, -3, -2.5, -1, -2.1, 0.3, 0, 0])
    cfg = StrategyConfig(execution_lag=0)
    p = pair_positions(z, cfg)
    # short the spread at 2.5, hold until z <= 0, long at -2.2, stop at -4.5, re-arm only once
    # |z| < 2 (at -1), long again at -2.1, exit at 0.3
    expected = [0, 0, -1, -1, -1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    np.testing.assert_array_equal(p.position, expected)
    lagged = pair_positions(z, StrategyConfig(execution_lag=1))
    np.testing.assert_array_equal(lagged.position, np.r_[0, expected[:-1]])
    assert lagged.entries.sum() == 3


def test_forced_close_at_window_end_and_delisting():
    z = np.array([0, 2.5, 3, 3, 3, 3])
    p = pair_positions(z, StrategyConfig(execution_lag=1))
    np.testing.assert_array_equal(p.position, [0, 0, -1, -1, -1, 0])
    q = pair_positions(z, StrategyConfig(execution_lag=1), last_day=3)
    np.testing.assert_array_equal(q.position, [0, 0, -1, 0, 0, 0])
    # no entry whose execution would fall on or after the close-out day
    late = pair_positions(np.array([0, 0, 0, 0, 2.5, 2.5]), StrategyConfig(execution_lag=1))
    assert not late.position.any()


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(0)
    z = np.cumsum(rng.normal(scale=0.7, size=(126, 30)), 0) / 3
    cfg = StrategyConfig()
    allp = pair_positions(z, cfg)
    for j in range(z.shape[1]):
        np.testing.assert_array_equal(allp.position[:, j], pair_positions(z[:, j], cfg).position)
    assert allp.entries.sum() > 0


def test_leg_orders_dollar_neutral():
    y, x = leg_orders(np.array([0, 1, 1, 0, -1, 0]), 0.5)
    np.testing.assert_array_equal(y, [np.nan, 0.5, np.nan, 0, -0.5, 0])
    np.testing.assert_array_equal(x, [np.nan, -0.5, np.nan, 0, 0.5, 0])


def test_config_validation():
    with pytest.raises(ValueError):
        StrategyConfig(entry_z=2, stop_z=1.5)
    with pytest.raises(ValueError):
        StrategyConfig(exit_z=2.5)
