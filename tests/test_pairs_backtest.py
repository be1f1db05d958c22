import dataclasses

import numpy as np
import pandas as pd
import pytest
from synthetic_markets import cointegrated_market, write_market_files

from finsae.data.errors import DataError
from finsae.methods import EvalContext, resolve
from finsae.pairs.backtest import (BacktestConfig, run_backtest, sharpe_difference,
                                   walk_forward_periods)
from finsae.pairs.select import SelectionConfig, candidate_pairs, select_pairs
from finsae.pairs.strategy import StrategyConfig


def MethodContext(companies, prices, universe, seed=0):
    """The methods' context of a backtest on synthetic data (per-window methods)."""
    return EvalContext(companies, prices, universe=universe, seed=seed, n_seeds=1,
                       windows_only=True)


def resolve_partition(name, ctx):
    m = resolve(name, ctx)
    return m.seed(0) if isinstance(m.partition, list) else m


F, TR = 120, 60  # short windows keep the tests fast
SEL = SelectionConfig(top_n=2, lags=1, half_life_range=None, hurst_max=None)


def _config(**strategy):
    return BacktestConfig(formation_days=F, trading_days=TR, step_days=TR,
                          sp500_membership=False, selection=SEL,
                          strategy=StrategyConfig(**strategy))


def _market(T=F + 2 * TR, n=3, seed=0):
    return cointegrated_market(T, n, seed, phi=0.5)


def _one_pair_market(k=20, dev=3.0, seed=1):
    """x walks; y = 1.5 x + 2 + AR(1) noise in formation; in trading the noise is -0.3 sd
    except days k..k+4 of the first trading window where it is +dev sd (an injected
    deviation that then vanishes)."""
    rng = np.random.default_rng(seed)
    T = F + TR
    idx = pd.bdate_range("2012-01-02", periods=T)
    x = 40 + np.cumsum(np.r_[rng.normal(scale=0.5, size=F), rng.normal(scale=0.02, size=TR)])
    e = np.zeros(T)
    for t in range(1, F):
        e[t] = 0.3 * e[t - 1] + rng.normal()
    sd = e[:F].std()
    e[F:] = -0.3 * sd
    e[F + k:F + k + 5] = dev * sd
    return pd.DataFrame({"X": x, "Y": 1.5 * x + 2 + e}, index=idx)


def test_periods_roll_without_overlap():
    idx = pd.bdate_range("2000-01-03", periods=1000)
    ps = walk_forward_periods(idx, BacktestConfig())
    assert len(ps) == 6  # 748 = 5 * 126 + 118 trading days: five full windows, one truncated
    assert ps[-1].t1 - ps[-1].t0 == 118 and ps[-1].t1 == 1000
    assert len(walk_forward_periods(idx[:252 + 126 + 20], BacktestConfig())) == 1
    for a, b in zip(ps, ps[1:]):
        assert a.t1 == b.t0 and b.f0 - a.f0 == 126
    assert all(p.f1 - p.f0 == 252 and p.t0 == p.f1 for p in ps)
    assert all(p.t1 - p.t0 == 126 for p in ps[:-1])


def test_synthetic_pair_trades_on_expected_days_with_expected_sign():
    k = 20
    prices = _one_pair_market(k=k)
    part = pd.Series({"X": "g", "Y": "g"})
    res = run_backtest(prices, {"m": part}, ["X", "Y"], _config())
    sel = res.selections
    assert len(sel) == 1 and sel.loc[0, "beta"] == pytest.approx(1.5, abs=0.05)
    assert sel.loc[0, "alpha"] == pytest.approx(2.0, abs=3.0)
    trades = res.trades
    assert len(trades) == 1
    t = trades.iloc[0]
    # signal on the close of day k, executed at the next close; exit signal when the deviation
    # is gone (day k + 5), executed at day k + 6
    assert t["entry_date"] == prices.index[F + k + 1]
    assert t["exit_date"] == prices.index[F + k + 6]
    assert t["pnl"] > 0  # short y when it is rich, it comes back: a profit
    assert res.metrics.loc["m", "n_trades"] == 1
    # a deviation of the other sign is a long-spread trade, also profitable
    neg = run_backtest(_one_pair_market(k=k, dev=-3.0), {"m": part}, ["X", "Y"], _config())
    assert len(neg.trades) == 1 and neg.trades["pnl"].iloc[0] > 0
    orders = neg.portfolio.orders.records.sort_values(["idx", "col"])
    entry = orders[orders["idx"] == orders["idx"].min()]
    assert list(entry["col"]) == [0, 1]  # column 0 is the y leg, 1 the x leg
    assert list(entry["side"]) == [0, 1]  # buy y (0 = Buy), sell x short (1 = Sell)


def test_costs_reduce_pnl_by_the_fees():
    prices = _one_pair_market()
    part = pd.Series({"X": "g", "Y": "g"})
    free = run_backtest(prices, {"m": part}, ["X", "Y"], _config(fees=0.0))
    paid = run_backtest(prices, {"m": part}, ["X", "Y"], _config(fees=0.001))
    orders = paid.portfolio.orders.records
    notional = np.abs(orders["size"] * orders["price"])
    np.testing.assert_allclose(orders["fees"], 0.001 * notional)
    # entry legs are each leg_fraction (0.5) of the slot's 100: 50 + 50 traded at entry
    entry = orders[orders["idx"] == orders["idx"].min()]
    np.testing.assert_allclose(np.abs(entry["size"] * entry["price"]), 50.0, rtol=1e-9)
    lost = free.equity["m"].iloc[-1] - paid.equity["m"].iloc[-1]
    assert lost == pytest.approx(orders["fees"].sum(), rel=1e-9)
    assert lost == pytest.approx(0.001 * notional.sum(), rel=1e-9)
    years = len(paid.returns) / 252
    assert paid.metrics.loc["m", "turnover"] == pytest.approx(
        notional.sum() / paid.equity["m"].mean() / years, rel=1e-9)
    assert paid.metrics.loc["m", "turnover"] > 0
    # the borrow cost is charged on the short leg while it is held
    borrow = run_backtest(prices, {"m": part}, ["X", "Y"], _config(fees=0.0, borrow_rate=0.05))
    t = borrow.trades.iloc[0]
    expected = 0.05 / 252 * 50.0 * t["days"]
    assert t["borrow"] == pytest.approx(expected, rel=0.05)
    assert free.equity["m"].iloc[-1] - borrow.equity["m"].iloc[-1] == pytest.approx(
        t["borrow"], rel=1e-9)


def test_no_look_ahead_selection_ignores_later_prices():
    prices = _market()
    part = pd.Series({c: c[1] for c in prices.columns})  # clusters {A0,B0,C0}, ...
    universe = list(prices.columns)
    ctx = MethodContext(pd.DataFrame({"gics_sub_industry": ["x"] * prices.shape[1]},
                                     index=prices.columns),
                        prices, universe)
    base = run_backtest(prices, {"m": part, "ret": resolve_partition("returns", ctx)},
                        universe, _config())
    shocked = prices.copy()
    rng = np.random.default_rng(9)
    walk = np.cumsum(rng.normal(0, 0.05, (2 * TR, prices.shape[1])), 0)
    shocked.iloc[F:] = shocked.iloc[F:] * np.exp(walk)  # everything after formation 0 changes
    ctx2 = dataclasses.replace(ctx, prices=shocked)
    other = run_backtest(shocked, {"m": part, "ret": resolve_partition("returns", ctx2)},
                         universe, _config())
    cols = ["method", "rank", "y", "x", "beta", "alpha", "spread_mean", "spread_std", "pvalue"]
    a = base.selections.query("period == 0")[cols].reset_index(drop=True)
    b = other.selections.query("period == 0")[cols].reset_index(drop=True)
    assert len(a) > 0
    assert a.query("method == 'm'")["pvalue"].is_monotonic_increasing
    assert (a["pvalue"] < 0.05).all()
    pd.testing.assert_frame_equal(a, b)
    # the later period does see the shock (the test can fail)
    assert not base.selections.query("period == 1")[cols].reset_index(drop=True).equals(
        other.selections.query("period == 1")[cols].reset_index(drop=True))
    # the cointegrated pairs are the ones found
    found = set(map(frozenset, zip(a.query("method == 'm'")["y"], a.query("method == 'm'")["x"])))
    assert found <= {frozenset((f"A{i}", f"B{i}")) for i in range(3)} and len(found) == 2


def test_membership_and_missing_prices_exclude_tickers():
    prices = _market()
    part = pd.Series({c: c[1] for c in prices.columns})
    cfg = dataclasses.replace(_config(), sp500_membership=True)
    res = run_backtest(prices, {"m": part}, list(prices.columns), cfg,
                       members=lambda date, universe: [t for t in universe if t != "A0"])
    assert "A0" not in set(res.selections["y"]) | set(res.selections["x"])
    holes = prices.copy()
    holes.iloc[5, holes.columns.get_loc("B1")] = np.nan
    sel = select_pairs(holes.iloc[:F], part, config=SEL)
    assert "B1" not in set(sel["y"]) | set(sel["x"])


def test_partitions_and_candidates():
    comp = pd.DataFrame({"gics_sub_industry": ["a", "a", "a", "b", "b", "c"],
                         "sic": pd.array([1000, 1000, 2000, 2000, 2000, 3000], dtype="Int64")},
                        index=list("PQRSTU"))
    ctx = MethodContext(comp, pd.DataFrame(), list("PQRSTU"), seed=1)
    g = resolve_partition("gics", ctx)
    assert candidate_pairs(g.partition) == [("P", "Q"), ("P", "R"), ("Q", "R"), ("S", "T")]
    r = resolve_partition("random", ctx).partition
    assert sorted(r.value_counts()) == sorted(g.partition.value_counts())
    assert len(candidate_pairs(resolve_partition("sic", ctx).partition)) == 1 + 3
    assert resolve_partition("gics_sub_industry", ctx).name == "gics_sub_industry"
    with pytest.raises(DataError, match="unknown method"):
        resolve_partition("nope", ctx)


def test_sharpe_difference():
    rng = np.random.default_rng(0)
    common = rng.normal(0, 0.01, 3000)
    a = common + rng.normal(0.001, 0.005, 3000)
    b = common + rng.normal(0.0, 0.005, 3000)
    for method in ("memmel", "bootstrap"):
        r = sharpe_difference(a, b, method=method, n_boot=500)
        assert r.difference > 0 and r.pvalue < 0.01
        same = sharpe_difference(a, a + rng.normal(0, 1e-4, 3000), method=method, n_boot=500)
        assert same.pvalue > 0.05
    assert sharpe_difference(a, b).sharpe_a == pytest.approx(a.mean() / a.std(ddof=1) * 252 ** .5)


def test_cli_backtest_json_and_files(tmp_path, capsys):
    import json

    from finsae.cli import main
    prices = _market(T=F + 2 * TR, n=4, seed=4)
    write_market_files(prices, tmp_path)
    out = tmp_path / "out"
    rc = main(["backtest", "--companies", str(tmp_path / "companies.csv"),
               "--prices", str(tmp_path / "prices.csv"), "--methods", "gics,random,returns",
               "--top-n", "2", "--formation-days", str(F), "--trading-days", str(TR),
               "--no-membership", "--lags", "1", "--json", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["methods"]) == {"gics", "random", "returns"}
    for m in doc["methods"].values():
        assert {"sharpe", "annual_return", "max_drawdown", "n_trades"} <= set(m)
    assert doc["methods"]["gics"]["n_trades"] > 0
    assert set(doc["sharpe_tests"]) == {"random", "returns"}
    for f in ("metrics.csv", "selections.csv", "trades.csv", "equity.csv", "equity.png",
              "backtest.json", "sharpe_tests.csv"):
        assert (out / f).stat().st_size > 0
    assert main(["backtest", "--methods", "nope", "--quiet"]) == 2


def test_rank_pairs_filters_and_order():
    from finsae.pairs.select import rank_pairs
    t = pd.DataFrame({"y": list("abcdef"), "x": list("uvwxyz"),
                      "statistic": [-5, -6, -4, -7, -3, -5.5],
                      "pvalue": [0.01, 0.01, 0.04, 0.001, 0.2, 0.02],
                      "beta": [1.0, 0.8, 1.2, -0.5, 1.0, 0.9],
                      "spread_std": [1.0] * 6, "half_life": [5, 5, 80, 5, 5, 5],
                      "hurst": [0.3, 0.3, 0.3, 0.3, 0.3, 0.6]})
    r = rank_pairs(t, SelectionConfig(top_n=5))
    # d: negative beta; e: p >= 0.05; c: half-life > 63; f: Hurst >= 0.5; b before a (tie on p,
    # more negative statistic)
    assert list(r["y"]) == ["b", "a"] and list(r["rank"]) == [1, 2]
    loose = rank_pairs(t, SelectionConfig(top_n=3, half_life_range=None, hurst_max=None,
                                          min_beta=None))
    assert list(loose["y"]) == ["d", "b", "a"]
