import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from finsae import cluster as cl
from finsae import methods as M
from finsae.data.errors import DataError
from finsae.evaluate import (ReturnPanel, average_results, compare, select_fixed, select_rolling,
                             threshold_scores)

# two centred, orthogonal 12-month patterns: exact correlations 1 (same pattern) and 0
F1 = np.tile([1.0, -1.0], 6)
F2 = np.tile([1.0, 1.0, -1.0, -1.0], 3)


def _block_returns(years=(2001, 2002)):
    """A1..A3 follow F1, B1..B3 follow F2 (positive scale, any shift): corr 1 within, 0 across."""
    idx = pd.date_range(f"{years[0]}-01-31", periods=12 * len(years), freq="ME")
    cols = {}
    for i, t in enumerate(["A1", "A2", "A3"]):
        cols[t] = np.tile((i + 1) * 0.01 * F1 + 0.002 * i, len(years))
    for i, t in enumerate(["B1", "B2", "B3"]):
        cols[t] = np.tile((i + 1) * 0.02 * F2 - 0.001 * i, len(years))
    return pd.DataFrame(cols, index=idx)


def test_known_answer_blocks():
    P = ReturnPanel(_block_returns(), years=[2001, 2002])
    blocks = pd.Series(list("AAABBB"), index=list(P.tickers))
    r = P.score(blocks, "blocks")
    assert r.mean_corr() == pytest.approx(1.0)
    assert r.mean_corr(weighting="pairs") == pytest.approx(1.0)
    one = P.score(cl.one_cluster(P.tickers))
    assert one.mean_corr() == pytest.approx(6 / 15)  # 6 of 15 pairs correlated 1, others 0
    assert one.coverage == 1.0 and one.n_clusters == 1
    rand = average_results([P.score(p) for p in cl.random_partitions(blocks, 50)], "random")
    assert rand.mean_corr() < 0.7
    assert rand.notes["n_seeds"] == 50


def test_unweighted_vs_pair_weighted():
    P = ReturnPanel(_block_returns(), years=[2001, 2002])
    part = pd.Series([0, 0, 1, 1, 1, 1], index=["A1", "A2", "A3", "B1", "B2", "B3"])
    r = P.score(part)
    # cluster 0: one pair at 1; cluster 1: A3-B* three pairs at 0, B-B three pairs at 1
    assert r.mean_corr() == pytest.approx((1.0 + 0.5) / 2)
    assert r.mean_corr(weighting="pairs") == pytest.approx(4 / 7)
    assert r.by_year["n_pairs"].tolist() == [7, 7]
    assert r.by_year["k"].tolist() == [2, 2]


def _brute_force(R: pd.DataFrame, part: pd.Series, years) -> tuple[list, list]:
    unw, pw = [], []
    for y in years:
        block = R[R.index.year == y]
        ok = [t for t in R.columns if block[t].notna().all() and block[t].max() > block[t].min()]
        lab = part.reindex(ok).dropna()
        means, total, n = [], 0.0, 0
        for _, members in lab.groupby(lab):
            if len(members) < 2:
                continue
            cs = [np.corrcoef(block[a], block[b])[0, 1]
                  for a, b in combinations(members.index, 2)]
            means.append(np.mean(cs))
            total += np.sum(cs)
            n += len(cs)
        unw.append(np.mean(means))
        pw.append(total / n)
    return unw, pw


def test_vectorised_metric_matches_pair_loop_with_gaps():
    rng = np.random.default_rng(0)
    years = [2001, 2002, 2003]
    idx = pd.date_range("2001-01-31", periods=36, freq="ME")
    R = pd.DataFrame(rng.normal(size=(36, 40)) + rng.normal(size=(36, 1)), index=idx,
                     columns=[f"T{i}" for i in range(40)])
    R.iloc[3, 5] = np.nan          # T5 incomplete in 2001
    R.iloc[14:20, 7] = np.nan      # T7 incomplete in 2002
    R.iloc[24:, 9] = 0.01          # T9 flat in 2003: no variance
    part = pd.Series(rng.integers(0, 8, size=40), index=R.columns).iloc[:-3]
    r = ReturnPanel(R, years=years).score(part)
    unw, pw = _brute_force(R, part, years)
    assert np.allclose(r.by_year["mean_corr"], unw)
    assert np.allclose(r.by_year["pair_weighted"], pw)
    assert r.by_year["n_companies"].tolist() == [39, 39, 39]
    assert r.by_year["coverage"].max() <= 37 / 39  # the last three companies are unclustered


def test_universe_logic_company_year_needs_complete_returns():
    R = _block_returns()
    R.loc["2002-03-31", "A2"] = np.nan
    P = ReturnPanel(R, years=[2001, 2002])
    assert "A2" in P.companies(2001) and "A2" not in P.companies(2002)
    part = pd.Series([0, 0, 1, 1, 2, 2], index=["A1", "A2", "A3", "B1", "B2", "B3"])
    by = P.score(part).by_year
    # 2002: cluster 0 keeps only A1 (not scored), A1 counts as uncovered
    assert by.loc[2002, "n_clusters"] == 2 and by.loc[2002, "n_companies"] == 5
    assert by.loc[2002, "coverage"] == pytest.approx(4 / 5)
    assert by.loc[2001, "n_clusters"] == 3 and by.loc[2001, "coverage"] == 1.0
    # restricting to a subset of the universe: same panel, fewer companies scored
    sub = P.score(cl.restrict(part, ["B2", "B3"])).by_year
    assert sub.loc[2001, "coverage"] == pytest.approx(2 / 6)


def test_bad_inputs_raise_data_error():
    R = _block_returns()
    with pytest.raises(DataError, match="without returns"):
        ReturnPanel(R, universe=["A1", "ZZZ"], years=[2001])
    with pytest.raises(DataError, match="12"):
        ReturnPanel(R.iloc[:11], years=[2001])
    with pytest.raises(DataError, match="not in the return panel"):
        ReturnPanel(R, years=[2001]).score(cl.one_cluster(R.columns), years=[1999])
    with pytest.raises(DataError, match="duplicate"):
        ReturnPanel(R, years=[2001]).score(pd.Series([0, 0], index=["A1", "A1"]))
    with pytest.raises(DataError, match="no clusters for 2002"):
        ReturnPanel(R, years=[2001, 2002]).score({2001: cl.one_cluster(R.columns)})


def test_daily_variant_and_per_year_partitions():
    rng = np.random.default_rng(1)
    days = pd.bdate_range("2001-01-01", "2002-12-31")
    f = rng.normal(size=(len(days), 1))
    R = pd.DataFrame(np.hstack([f + 0.3 * rng.normal(size=(len(days), 3)),
                                rng.normal(size=(len(days), 3))]),
                     index=days, columns=list("abcdef"))
    R.iloc[300, 0] = np.nan  # 'a' misses one day of 2002
    P = ReturnPanel(R, years=[2001, 2002], freq="D")
    assert "a" not in P.companies(2002)
    good = pd.Series([0, 0, 0, 1, 1, 1], index=list("abcdef"))
    bad = pd.Series([0, 1, 2, 0, 1, 2], index=list("abcdef"))
    r = P.score({2001: good, 2002: bad})
    assert r.by_year.loc[2001, "mean_corr"] > 0.4 > r.by_year.loc[2002, "mean_corr"]
    assert P.score(good).mean_corr() > P.score(bad).mean_corr() + 0.3


def test_bootstrap_ci_contains_estimate():
    rng = np.random.default_rng(3)
    idx = pd.date_range("2001-01-31", periods=120, freq="ME")
    R = pd.DataFrame(rng.normal(size=(120, 30)) + 0.7 * rng.normal(size=(120, 1)), index=idx)
    R.columns = [f"T{i}" for i in range(30)]
    r = ReturnPanel(R, years=range(2001, 2011)).score(
        pd.Series(np.arange(30) % 5, index=R.columns), in_sample=range(2001, 2006),
        out_of_sample=range(2006, 2011))
    for by in ("year", "cluster"):
        for w in ("unweighted", "pairs"):
            lo, hi = r.conf_int(by=by, weighting=w, n_boot=500)
            assert lo < r.mean_corr(weighting=w) < hi
    lo, hi = r.conf_int(years="out_of_sample")
    assert lo <= r.mean_corr("out_of_sample") <= hi
    assert r.conf_int(alpha=0.5) [1] - r.conf_int(alpha=0.5)[0] < hi - lo + 1.0
    d = r.to_dict(n_boot=200)
    assert set(d) >= {"mean_corr", "mean_corr_out_of_sample", "coverage", "n_clusters",
                      "by_year", "pair_weighted", "mean_corr_ci"}
    json.dumps(d)
    table = compare([r])
    assert table.loc["", "mean_corr"] == pytest.approx(r.mean_corr())


def test_threshold_selection_fixed_and_rolling():
    scores = pd.DataFrame({2000: [0.1, 0.5, 0.2], 2001: [0.1, 0.5, 0.2], 2002: [0.9, 0.1, 0.2],
                           2003: [0.9, 0.1, 0.2]}, index=[-3.0, -2.0, -1.0])
    assert select_fixed(scores, [2000, 2001]) == -2.0
    assert select_fixed(scores, [2000, 2001, 2002, 2003]) == -3.0
    roll = select_rolling(scores, [2001, 2002, 2003, 2004], window=2)
    assert roll == {2001: -2.0, 2002: -2.0, 2003: -3.0, 2004: -3.0}  # only earlier years
    with pytest.raises(DataError):
        select_rolling(scores, [2000])


def _synthetic_inputs(n_per=4, n_groups=3, seed=0):
    """Companies with SIC/GICS/descriptions and daily prices driven by one factor per group."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2000-01-03", "2004-12-31")
    words = ["bank loans deposits", "oil gas drilling", "software cloud chips"]
    rows, series = [], {}
    for g in range(n_groups):
        f = 0.01 * rng.normal(size=len(days))
        for i in range(n_per):
            t = f"G{g}X{i}"
            rows.append({"ticker": t, "name": t, "description": f"{words[g]} company {t} "
                         f"{rng.choice(['large', 'small', 'global'])}",
                         "sic": 1000 * (g + 1) + i % 2, "gics_sector": f"S{g}",
                         "gics_industry_group": f"G{g}", "gics_industry": f"I{g}",
                         "gics_sub_industry": f"U{g}{i % 2}"})
            series[t] = 50 * np.exp(np.cumsum(f + 0.004 * rng.normal(size=len(days))))
    companies = pd.DataFrame(rows).set_index("ticker", drop=False)
    companies.index.name = None
    companies["sic"] = companies["sic"].astype("Int64")
    prices = pd.DataFrame(series, index=pd.DatetimeIndex(days, name="date"))
    prices.attrs["source"] = "synthetic"
    return companies, prices


def test_registry_protocols_on_synthetic_universe(monkeypatch):
    companies, prices = _synthetic_inputs()
    onehot = pd.get_dummies(companies["gics_industry"]).astype(float) + 0.01 \
        + 0.01 * np.random.default_rng(0).random((len(companies), 3))
    monkeypatch.setitem(M.VECTORS, "onehot", lambda ctx: onehot.loc[ctx.universe])
    ctx = M.EvalContext(companies, prices, years=(2002, 2003, 2004), fit_years=(2002, 2003),
                        n_seeds=5, theta_grid=(-2.0, -1.0, 0.0, 1.0))
    assert len(ctx.universe) == 12 and ctx.k == 6
    res = {n: M.score(M.resolve(n, ctx), ctx) for n in
           ("one_cluster", "random", "gics_sector", "sic4", "onehot", "onehot_kmeans",
            "onehot_mst", "onehot_mst_rolling", "returns")}
    assert res["gics_sector"].mean_corr() > res["one_cluster"].mean_corr() + 0.3
    assert res["gics_sector"].mean_corr() > res["random"].mean_corr()
    mst = M.resolve("onehot_mst", ctx)
    assert mst.notes["theta"] in ctx.theta_grid
    rolling = M.resolve("onehot_mst_rolling", ctx)
    assert set(rolling.partition) == {2002, 2003, 2004}
    assert res["returns"].mean_corr() > res["one_cluster"].mean_corr()
    with pytest.raises(DataError, match="did you mean"):
        M.resolve("gics_sectr", ctx)
    # cluster counts matched to a GICS level, or given
    assert M.resolve("onehot@gics_sector", ctx).partition.nunique() == 3
    assert M.resolve("onehot_kmeans@2", ctx).partition.nunique() == 2
    assert ctx.k == 6
    with pytest.raises(DataError, match="cluster count"):
        M.resolve("gics_sector@3", ctx)
    # a baseline restricted to the companies the MST method covers
    cover = cl.covered(mst.partition)
    within = M.score(M.resolve("gics_sector", ctx), ctx, within=cover)
    assert within.by_year["n_covered"].max() <= len(cover)
    # threshold_scores honours min_coverage: a grid point below it is never chosen
    path = cl.mst_threshold_path(onehot, [-5.0, 1.0])
    sc = threshold_scores(ctx.panel, path, min_coverage=0.5)
    assert sc.loc[-5.0].isna().all() and sc.loc[1.0].notna().all()
    # ... and max_cluster_share rules out a giant component (theta 1.0 joins everything)
    assert cl.mst_threshold(onehot, 1.0).nunique() == 1
    assert threshold_scores(ctx.panel, path, max_cluster_share=0.5).loc[1.0].isna().all()


def test_cli_evaluate_json_and_outputs(tmp_path, capsys, monkeypatch):
    from finsae.cli import main
    companies, prices = _synthetic_inputs()
    cfile, pfile = tmp_path / "c.csv", tmp_path / "p.csv"
    companies.to_csv(cfile, index=False)
    prices.to_csv(pfile)
    out = tmp_path / "run"
    rc = main(["evaluate", "--companies", str(cfile), "--prices", str(pfile), "--years",
               "2002-2004", "--fit-years", "2002-2003", "--seeds", "3", "--n-boot", "100",
               "--methods", "one_cluster", "random", "gics_sector", "tfidf", "tfidf_mst",
               "--json", "--out", str(out)])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["universe"]["n_companies"] == 12
    m = data["methods"]
    assert set(m) == {"one_cluster", "random", "gics_sector", "tfidf", "tfidf_mst"}
    for rec in m.values():
        assert {"mean_corr", "mean_corr_out_of_sample", "coverage", "n_clusters",
                "by_year", "pair_weighted", "mean_corr_ci"} <= set(rec)
        assert set(rec["by_year"]) == {"2002", "2003", "2004"}
        # the every-firm metrics, each over all years, in-sample and out-of-sample
        for metric in ("peer_r2", "excess_r2", "delta_r2", "knn_r2", "knn_corr"):
            for suffix in ("", "_in_sample", "_out_of_sample"):
                assert isinstance(rec[metric + suffix], float), metric + suffix
        assert rec["vs_baseline"]["baseline"] == "gics_sub_industry"
        won = rec["vs_baseline"]["knn_r2"]["out_of_sample"]
        assert won["years"] == 1 and 0 <= won["years_won"] <= 1
    assert m["one_cluster"]["excess_r2"] == pytest.approx(0, abs=1e-12)
    assert m["tfidf"]["peer_notes"]["knn"].startswith("10 nearest")
    assert m["gics_sector"]["peer_notes"]["knn"].startswith("classification")
    assert "gics_sector" in data["restricted_to_mst_coverage"]["tfidf_mst"]
    for f in ("meancorr.csv", "by_year.csv", "results.json", "meancorr_by_year.png",
              "cluster_sizes.png", "meancorr_restricted.csv", "peers_by_year.csv",
              "peer_r2_by_year.png"):
        assert (out / f).stat().st_size > 0
    assert pd.read_csv(out / "meancorr.csv", index_col=0).shape[0] == 5
    # the cluster verb and a clear error for an unknown method
    assert main(["cluster", "--companies", str(cfile), "--prices", str(pfile), "--years",
                 "2002-2004", "--fit-years", "2002-2003", "--method", "gics_industry",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_clusters"] == 3
    assert main(["evaluate", "--companies", str(cfile), "--prices", str(pfile), "--years",
                 "2002-2004", "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_bundled_data_gics_sub_industry_reference():
    """The reference measurement: 453 companies, GICS sub-industry 0.502, one cluster 0.261."""
    from finsae.data.classifications import partition
    from finsae.data.companies import load_companies
    from finsae.data.prices import load_prices
    from finsae.data.universe import evaluation_universe
    companies, prices = load_companies(), load_prices()
    universe = evaluation_universe(companies, prices)
    assert len(universe) == 453
    P = ReturnPanel.from_prices(prices, universe)
    r = P.score(partition(companies.loc[universe], "gics_sub_industry"))
    assert abs(r.mean_corr() - 0.502) < 0.015
    assert abs(P.score(cl.one_cluster(universe)).mean_corr() - 0.261) < 0.01
    assert r.by_year["k"].iloc[0] == 127


def test_cli_features_folder_limits_the_universe_for_every_method(tmp_path, capsys):
    """`--features DIR` with vectors for part of the universe: every method is scored on the
    companies the feature set covers, and the count left out is said."""
    from finsae.cli import main
    from finsae.features.store import FeatureSet
    companies, prices = _synthetic_inputs()
    cfile, pfile = tmp_path / "c.csv", tmp_path / "p.csv"
    companies.to_csv(cfile, index=False)
    prices.to_csv(pfile)
    covered = companies["ticker"].tolist()[:9]
    rng = np.random.default_rng(0)
    V = pd.DataFrame(rng.random((9, 4)), index=covered, columns=[0, 1, 2, 3])
    FeatureSet({"hidden": V}, pd.Series("", index=covered)).save(tmp_path / "fs")
    rc = main(["evaluate", "--companies", str(cfile), "--prices", str(pfile), "--years",
               "2002-2004", "--fit-years", "2002-2003", "--n-seeds", "2", "--k", "3",
               "--methods", "hidden", "gics_sector", "--features", str(tmp_path / "fs"),
               "--json"])
    assert rc == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["universe"]["n_companies"] == 9
    assert "9 of 12 companies have vectors" in out.err and "3 without are left out" in out.err


def test_registry_aliases_windows_and_refusals():
    """One registry: aliases resolve to their method; a per-year partition is used for a
    window only when it was built from data before the window's end; candidate-pair methods
    are refused by the evaluation before anything is computed."""
    from finsae.data.errors import DataError
    from finsae.methods import Method, canonical, is_known
    assert canonical("gics") == "gics_sub_industry" and canonical("sic") == "sic4"
    assert canonical("embedding_knn") == "minilm_knn" and canonical("tfidf@50") == "tfidf@50"
    assert is_known("gics") and is_known("hidden_kmeans", ("hidden",))
    assert not is_known("hidden_kmeans") and not is_known("nope")
    a, b = pd.Series({"X": 0, "Y": 0}), pd.Series({"X": 0, "Y": 1})
    m = Method("returns", {2010: a, 2011: b})
    assert m.partition_at("2009-07-01", "2010-06-30") is a      # 2010's: built before 2010
    assert m.partition_at("2010-01-01", "2010-12-31") is b      # data to Dec 31 -> 2011's
    with pytest.raises(DataError, match="no partition built before"):
        m.partition_at("2008-01-01", "2008-12-31")
    seeded = Method("random", [a, b])
    assert seeded.n_seeds == 2 and seeded.seed(1).partition is b
    with pytest.raises(DataError, match="seeds"):
        seeded.partition_at("2010-01-01", "2010-12-31")
    companies, prices = _synthetic_inputs()
    ctx = M.EvalContext(companies, prices, years=(2003, 2004),
                        fit_years=(2003,), n_seeds=2)
    with pytest.raises(DataError, match="candidate pairs"):
        M.evaluate_methods(ctx, ["gics_sector", "tfidf_knn"])
