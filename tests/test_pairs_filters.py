"""Pair filters (Hurst, half-life, mean crossings, Benjamini-Hochberg), selection rules
(Engle-Granger, Johansen, distance), neighbour candidates; look-ahead tests of each."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from synthetic_markets import cointegrated_market

from finsae.pairs.backtest import BacktestConfig, run_backtest
from finsae.pairs.select import (Neighbours, SelectionConfig, benjamini_hochberg, candidate_pairs,
                                 filter_pairs, rank_pairs, select_pairs)
from finsae.pairs.strategy import StrategyConfig

F, TR = 120, 60


def _market(T=F + 2 * TR, n=3, seed=0):
    return cointegrated_market(T, n, seed, phi=0.5)


def test_benjamini_hochberg_known_answer_and_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    # sorted 0.005 0.01 0.03 0.04 0.2 vs 0.05 k / 5 = 0.01 0.02 0.03 0.04 0.05: the 4 smallest
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True, True, True, False])
    # step-up: 0.021 > 0.02 (k = 2) but 0.025 <= 0.03 (k = 3) pulls it in
    np.testing.assert_array_equal(benjamini_hochberg([0.005, 0.025, 0.021, 0.2, 0.5], 0.05),
                                  [True, True, True, False, False])
    np.testing.assert_array_equal(benjamini_hochberg([0.005, 0.01, 0.031, 0.041, 0.2], 0.05),
                                  [True, True, False, False, False])
    rng = np.random.default_rng(0)
    q = np.r_[rng.uniform(size=500), rng.uniform(0, 1e-3, size=30)]
    np.testing.assert_array_equal(benjamini_hochberg(q, 0.1),
                                  multipletests(q, 0.1, method="fdr_bh")[0])
    assert not benjamini_hochberg([np.nan, 0.5], 0.05).any()


def test_filter_counts_in_order():
    t = pd.DataFrame({"y": list("abcdefg"), "x": list("tuvwxyz"),
                      "statistic": [-5, -6, -4, -7, -3, -5.5, -5],
                      "pvalue": [0.01, 0.01, 0.04, 0.001, 0.2, 0.02, 0.001],
                      "beta": [1.0, 0.8, 1.2, -0.5, 1.0, 0.9, 1.0],
                      "spread_std": [1.0] * 7, "half_life": [5, 5, 80, 5, 5, 5, 5],
                      "hurst": [0.3, 0.3, 0.3, 0.3, 0.3, 0.6, 0.3],
                      "crossings": [20, 20, 20, 20, 20, 20, 4]})
    t["score"], t["score2"] = t["pvalue"], t["statistic"]
    kept, removed = filter_pairs(t, SelectionConfig())
    assert removed == {"valid": 0, "pvalue": 1, "min_beta": 1, "half_life": 1, "hurst": 1,
                       "crossings": 1}
    assert list(kept["y"]) == ["a", "b"]
    r = rank_pairs(t, SelectionConfig(top_n=1))
    assert list(r["y"]) == ["b"]
    assert r.attrs["filters"] == {"candidates": 7, **removed, "passed": 2, "selected": 1}
    # BH over the 7: doubled p sorted d .002, g .002, a .02, b .02, f .04, c .08, e .4 against
    # .05 k / 7 = .007 .014 .021 .029 .036 .043 .05: the 4 smallest are discoveries; after the
    # p-value cut has removed e, BH removes f and c
    kept, removed = filter_pairs(t, SelectionConfig(fdr=0.05, min_crossings=None))
    assert removed["pvalue"] == 1 and removed["fdr"] == 2
    assert "crossings" not in removed and list(kept["y"]) == ["a", "b", "g"]
    assert SelectionConfig(rule="distance").filters() == [
        "valid", "min_beta", "half_life", "hurst", "crossings"]
    with pytest.raises(ValueError, match="rule"):
        SelectionConfig(rule="nope")


def test_crossings_filter_removes_a_slow_spread():
    T = 252
    rng = np.random.default_rng(1)
    x = 50 + np.cumsum(rng.normal(scale=0.5, size=T))
    fast = np.zeros(T)
    for t in range(1, T):
        fast[t] = 0.3 * fast[t - 1] + rng.normal(scale=0.3)
    slow = 1.5 * np.sin(np.linspace(0, np.pi, T)) + rng.normal(scale=0.05, size=T)  # ~1 cross
    w = pd.DataFrame({"X": x, "Y": 1.5 * x + fast, "Z": 1.5 * x + slow},
                     index=pd.bdate_range("2015-01-01", periods=T))
    cfg = SelectionConfig(lags=1, half_life_range=None, hurst_max=None)
    tested = select_pairs(w, pd.Series({"X": "g", "Y": "g", "Z": "g"}), config=dataclasses.replace(
        cfg, min_crossings=None, pvalue_max=1.0))
    cross = dict(zip(map(frozenset, zip(tested["y"], tested["x"])), tested["crossings"]))
    assert cross[frozenset("XY")] > 50 and cross[frozenset("XZ")] < 12
    kept = select_pairs(w, pd.Series({"X": "g", "Y": "g", "Z": "g"}),
                        config=dataclasses.replace(cfg, pvalue_max=1.0))
    assert frozenset("XZ") not in set(map(frozenset, zip(kept["y"], kept["x"])))
    assert kept.attrs["filters"]["crossings"] >= 1


@pytest.mark.parametrize("rule", ["eg", "johansen", "distance"])
def test_rules_find_the_cointegrated_pairs(rule):
    prices = _market(T=250, n=3, seed=2)
    part = pd.Series("g", index=prices.columns)  # every pair is a candidate (36)
    cfg = SelectionConfig(rule=rule, top_n=3, lags=1, half_life_range=None, hurst_max=None,
                          min_crossings=None)
    sel = select_pairs(prices, part, config=cfg)
    assert sel.attrs["filters"]["candidates"] == 36
    found = set(map(frozenset, zip(sel["y"], sel["x"])))
    assert found == {frozenset((f"A{i}", f"B{i}")) for i in range(3)}
    if rule == "johansen":
        assert (sel["statistic"] > sel["critical"]).all()
        np.testing.assert_allclose(sel["beta"].where(sel["y"].str.startswith("B"),
                                                     1 / sel["beta"]), 1.5, atol=0.1)
    if rule == "distance":
        assert sel["statistic"].is_monotonic_increasing and (sel["pvalue"].isna()).all()
        row = sel.iloc[0]
        assert row["beta"] == pytest.approx(prices[row["y"]].iloc[0] / prices[row["x"]].iloc[0])


def test_neighbour_candidates():
    V = pd.DataFrame({"f1": [1.0, 0.9, 0.0, 0.0, 0.5], "f2": [0.0, 0.1, 1.0, 0.9, 0.5]},
                     index=list("PQRST"))
    nb = Neighbours(V, k=1)
    assert nb.pairs() == [("P", "Q"), ("Q", "T"), ("R", "S")]  # T is nearest to Q (0.78)
    # restricted to eligible tickers, the neighbours are found among them
    assert nb.pairs(["P", "R", "T"]) == [("P", "T"), ("R", "T")]
    assert candidate_pairs(nb, list("PQ")) == [("P", "Q")]
    assert len(Neighbours(V, k=10).pairs()) == 10  # every pair


def test_no_look_ahead_for_every_rule_filter_and_neighbours():
    prices = _market(T=F + 2 * TR, n=3, seed=0)
    universe = list(prices.columns)
    part = pd.Series({c: c[1] for c in universe})
    rng = np.random.default_rng(3)
    V = pd.DataFrame(rng.normal(size=(len(universe), 4)), index=universe)
    parts = {"m": part, "knn": Neighbours(V, k=3)}
    sel = SelectionConfig(top_n=2, lags=1, half_life_range=(0.5, 252), fdr=0.2)
    cfg = BacktestConfig(formation_days=F, trading_days=TR, step_days=TR,
                         sp500_membership=False, selection=sel,
                         strategy=StrategyConfig(hedge="kalman"))
    rules = ["eg", "johansen", "distance"]
    base = run_backtest(prices, parts, universe, cfg, rules=rules)
    shocked = prices.copy()
    walk = np.cumsum(rng.normal(0, 0.05, (2 * TR, prices.shape[1])), 0)
    shocked.iloc[F:] = shocked.iloc[F:] * np.exp(walk)
    other = run_backtest(shocked, parts, universe, cfg, rules=rules)
    cols = ["method", "rule", "rank", "y", "x", "statistic", "pvalue", "beta", "alpha",
            "spread_mean", "spread_std", "half_life", "hurst", "crossings", "ou_mu",
            "ou_sigma_eq", "hedge_end"]
    a = base.selections.query("period == 0")[cols].reset_index(drop=True)
    b = other.selections.query("period == 0")[cols].reset_index(drop=True)
    assert set(a["rule"]) == set(rules) and {"m:eg", "knn:distance"} <= set(a["method"])
    pd.testing.assert_frame_equal(a, b)
    assert not base.selections.query("period == 1")[cols].reset_index(drop=True).equals(
        other.selections.query("period == 1")[cols].reset_index(drop=True))
    # the filter table adds up: candidates - removed = passed; filters not applied are NaN
    f = base.filters
    removed = f.drop(columns=["candidates", "passed", "selected"]).fillna(0).sum(axis=1)
    pd.testing.assert_series_equal(f["candidates"] - removed, f["passed"], check_names=False,
                                   check_dtype=False)
    assert np.isnan(f.loc["m:distance", "pvalue"]) and f.loc["m:eg", "fdr"] >= 0
    assert (f["selected"] == base.selections.groupby("method").size().reindex(f.index)
            .fillna(0)).all()


def test_trading_zscore_bands_and_dynamic_hedge():
    from finsae.pairs.backtest import trading_zscore
    from finsae.pairs.hedge import rolling_ols
    from finsae.pairs.select import test_pairs
    prices = _market(T=F + TR, n=1, seed=5)
    form, trade = prices.iloc[:F], prices.iloc[F:]
    chosen = test_pairs(form, [("A0", "B0")], SelectionConfig(lags=1)).iloc[:1]
    fy, fx = form[chosen["y"]].to_numpy(), form[chosen["x"]].to_numpy()
    ty, tx = trade[chosen["y"]].to_numpy(), trade[chosen["x"]].to_numpy()
    c = chosen.iloc[0]
    spread = ty[:, 0] - c["beta"] * tx[:, 0] - c["alpha"]
    z, h = trading_zscore(fy, fx, ty, tx, chosen, StrategyConfig())
    np.testing.assert_allclose(z[:, 0], (spread - c["spread_mean"]) / c["spread_std"])
    z, _ = trading_zscore(fy, fx, ty, tx, chosen, StrategyConfig(bands="ou"))
    np.testing.assert_allclose(z[:, 0], (spread - c["ou_mu"]) / c["ou_sigma_eq"])
    # OU and formation moments nearly agree on a fast AR(1) spread
    assert c["ou_mu"] == pytest.approx(c["spread_mean"], abs=0.2 * c["spread_std"])
    z, h = trading_zscore(fy, fx, ty, tx, chosen, StrategyConfig(hedge="rolling",
                                                                 hedge_window=30))
    b, a = rolling_ols(np.r_[fy, ty], np.r_[fx, tx], 30)
    s = np.r_[fy, ty][:, 0] - b[:, 0] * np.r_[fx, tx][:, 0] - a[:, 0]
    f = s[29:F]
    np.testing.assert_allclose(z[:, 0], (s[F:] - f.mean()) / f.std(ddof=1))
    assert h[0] == b[F - 1, 0]
    with pytest.raises(ValueError, match="OU bands"):
        StrategyConfig(bands="ou", hedge="kalman")
