"""Bootstrap intervals of Sharpe ratios, the random baseline over seeds, tear sheets and the
`finsae backtest --json` fields."""

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_markets import cointegrated_market, write_market_files

from finsae.methods import EvalContext, resolve
from finsae.pairs.backtest import (BacktestConfig, bootstrap_sharpe, combine_seeds, run_backtest,
                                   stationary_bootstrap_indices)
from finsae.pairs.select import SelectionConfig
from finsae.pairs.tearsheet import rolling_sharpe, tear_sheet, trade_stats

F, TR = 120, 60


def _market(T=F + 2 * TR, n=4, seed=4):
    return cointegrated_market(T, n, seed, phi=0.7)


def test_stationary_bootstrap_indices():
    rng = np.random.default_rng(0)
    idx = stationary_bootstrap_indices(1000, 200, 20.0, rng)
    assert idx.shape == (200, 1000) and idx.min() >= 0 and idx.max() < 1000
    # consecutive days continue a block (mod T) except at block starts: mean length ~ 20
    cont = (np.diff(idx, axis=1) % 1000) == 1
    assert 1 / (1 - cont.mean()) == pytest.approx(20.0, rel=0.1)
    # every day is drawn about equally often (no edge effect: blocks wrap around)
    counts = np.bincount(idx.ravel(), minlength=1000)
    assert counts.min() > 0.6 * counts.mean()


def test_bootstrap_sharpe_known_answer():
    rng = np.random.default_rng(1)
    T = 2520  # ten years
    sr_daily = 1.0 / np.sqrt(252)  # annual Sharpe 1
    common = rng.normal(size=T)
    a = 0.01 * (sr_daily + 0.6 * common + 0.8 * rng.normal(size=T))
    b = 0.01 * (0.6 * common + 0.8 * rng.normal(size=T))
    R = pd.DataFrame({"a": a, "b": b, "c1": b[::-1].copy(), "c2": np.roll(b, 7)})
    out = bootstrap_sharpe(R, baseline="b", groups={"c": ["c1", "c2"]}, block=10, n_boot=1000)
    t = out.table
    assert set(t.index) == {"a", "b", "c"}
    sr = lambda x: x.mean() / x.std(ddof=1) * np.sqrt(252)  # noqa: E731
    assert t.loc["a", "sharpe"] == pytest.approx(sr(a))
    assert t.loc["c", "sharpe"] == pytest.approx((sr(R["c1"]) + sr(R["c2"])) / 2)
    # i.i.d. returns: the standard error of an annual Sharpe over 10 years is ~ sqrt(1/10)
    width = t.loc["a", "sharpe_hi"] - t.loc["a", "sharpe_lo"]
    assert width == pytest.approx(2 * 1.96 * np.sqrt((1 + sr(a) ** 2 / 504) * 252 / T), rel=0.2)
    assert t.loc["a", "sharpe_lo"] < 1.0 < t.loc["a", "sharpe_hi"]
    assert t.loc["b", "sharpe_lo"] < 0 < t.loc["b", "sharpe_hi"]
    # the difference is paired (common component cancels): narrower than either interval
    assert t.loc["a", "diff"] == pytest.approx(sr(a) - sr(b))
    assert t.loc["a", "diff_hi"] - t.loc["a", "diff_lo"] < width * 1.3
    assert t.loc["a", "diff_lo"] > 0 and t.loc["a", "diff_pvalue"] < 0.05
    assert np.isnan(t.loc["b", "diff"])
    assert out.draws.shape == (1000, 3)
    # reproducible
    again = bootstrap_sharpe(R, baseline="b", groups={"c": ["c1", "c2"]}, block=10, n_boot=1000)
    pd.testing.assert_frame_equal(out.table, again.table)


def test_random_baseline_over_seeds():
    prices = _market()
    universe = list(prices.columns)
    comp = pd.DataFrame({"gics_sub_industry": [c[1] for c in universe]}, index=universe)
    parts = {}
    for s in range(3):
        ctx = EvalContext(comp, prices, universe=universe, seed=s, n_seeds=1)
        parts[f"random_s{s}"] = resolve("random", ctx).seed(0).partition
    parts["gics"] = resolve("gics", EvalContext(comp, prices, universe=universe)).partition
    cfg = BacktestConfig(formation_days=F, trading_days=TR, step_days=TR,
                         sp500_membership=False,
                         selection=SelectionConfig(top_n=2, lags=1, half_life_range=None))
    res = run_backtest(prices, parts, universe, cfg)
    seeds = [f"random_s{s}" for s in range(3)]
    assert len({tuple(sorted(parts[s].items())) for s in seeds}) == 3  # different partitions
    R, E, M, T = combine_seeds(res, {"random": seeds}, cfg)
    assert list(R.columns) == ["random", "gics"]
    np.testing.assert_allclose(R["random"], res.returns[seeds].mean(axis=1))
    assert M.loc["random", "sharpe"] == pytest.approx(res.metrics.loc[seeds, "sharpe"].mean())
    assert M.loc["random", "n_seeds"] == 3
    assert len(T[T["method"] == "random"]) == len(res.trades[res.trades["method"].isin(seeds)])


def test_tear_sheet_and_trade_stats(tmp_path):
    trades = pd.DataFrame({"pnl": [2.0, -1.0, 3.0, -1.0], "days": [5, 10, 3, 2],
                           "fees": [0.1] * 4})
    st = trade_stats(trades, init_cash=100.0)
    assert st["trades"] == 4 and st["win_rate"] == 0.5
    assert st["mean_pnl"] == pytest.approx(0.0075) and st["profit_factor"] == pytest.approx(2.5)
    assert st["mean_days"] == 5 and trade_stats(trades.iloc[:0])["trades"] == 0
    r = pd.Series(np.random.default_rng(0).normal(0.0005, 0.01, 600),
                  index=pd.bdate_range("2010-01-01", periods=600))
    rs = rolling_sharpe(r)
    assert rs.iloc[:251].isna().all()
    w = r.iloc[-252:]
    assert rs.iloc[-1] == pytest.approx(w.mean() / w.std() * np.sqrt(252))
    png = tear_sheet(r, trades, tmp_path / "t.png", "x", interval=(-0.1, 1.2))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_json_intervals_filters_seeds_tearsheets(tmp_path, capsys):
    from finsae.cli import main
    prices = _market()
    write_market_files(prices, tmp_path)
    out = tmp_path / "out"
    common = ["backtest", "--companies", str(tmp_path / "companies.csv"),
              "--prices", str(tmp_path / "prices.csv"), "--top-n", "2",
              "--formation-days", str(F), "--trading-days", str(TR), "--no-membership",
              "--lags", "1", "--half-life", "none", "--n-boot", "200", "--json", "--quiet"]
    rc = main(common + ["--methods", "gics,random,returns", "--random-seeds", "3",
                        "--fdr", "0.2", "--out", str(out)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["methods"]) == {"gics", "random", "returns"}
    g, r = doc["methods"]["gics"], doc["methods"]["random"]
    for m in doc["methods"].values():
        lo, hi = m["sharpe_ci"]
        assert lo <= m["sharpe"] <= hi
        assert {"n_trades", "turnover", "period_return_committed",
                "period_return_employed"} <= set(m)
        assert m["filters"]["applied"] == ["valid", "pvalue", "fdr", "min_beta", "hurst",
                                           "crossings"]
        f = m["filters"]
        assert f["candidates"] - sum(f["removed"].values()) == pytest.approx(f["passed"])
    assert g["n_trades"] > 0 and "diff_to_baseline" not in g
    assert r["diff_to_baseline"] == pytest.approx(r["sharpe"] - g["sharpe"])
    assert r["diff_ci"][0] <= r["diff_to_baseline"] <= r["diff_ci"][1]
    assert r["seeds"]["n"] == 3 and r["sharpe"] == pytest.approx(r["seeds"]["sharpe_mean"])
    assert doc["config"]["fdr"] == 0.2 and doc["config"]["half_life_range"] is None
    for f in ("tearsheet_gics.png", "tearsheet_random.png", "filters.csv", "equity.png",
              "report.html"):
        assert (out / f).stat().st_size > 0
    # several rules: strategies METHOD:RULE, each compared with GICS under the same rule
    rc = main(common + ["--methods", "gics,returns", "--rules", "eg,distance",
                        "--random-seeds", "1", "--hedge", "rolling", "--hedge-window", "20"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["methods"]) == {"gics:eg", "returns:eg", "gics:distance", "returns:distance"}
    assert doc["methods"]["returns:distance"]["baseline"] == "gics:distance"
    assert doc["methods"]["gics:distance"]["filters"]["applied"][:2] == ["valid", "min_beta"]
    assert main(common + ["--methods", "gics", "--rules", "nope"]) == 2
    capsys.readouterr()
    # the table on stdout: Sharpe with interval, differences, filter counts
    text = [a for a in common if a != "--json"]
    assert main(text + ["--methods", "gics,random", "--random-seeds", "2", "--bands", "ou"]) == 0
    shown = capsys.readouterr().out
    assert "sharpe_lo" in shown and "Sharpe random - gics" in shown and "crossings" in shown
