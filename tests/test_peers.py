"""Every-firm peer metrics (finsae.evaluate.peers): known answers, statsmodels OLS as the
reference for R² and ΔR², the fallback rules, and the reference values of docs/evaluation.md."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from finsae import cluster as cl
from finsae.data.errors import DataError
from finsae.evaluate import PeerPanel, hierarchy_of
from finsae.features.company import CompanyFeatures
from finsae.features.supervised import CoMovementWeights


def _factor_returns(n_per=4, groups=3, years=(2001, 2002), seed=0):
    """Daily returns: market + group factor + noise. Tickers G{g}_{i}."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range(f"{years[0]}-01-01", f"{years[-1]}-12-31")
    T = len(idx)
    m = rng.normal(0, 0.01, T)
    cols = {}
    for g in range(groups):
        f = rng.normal(0, 0.01, T)
        for i in range(n_per):
            cols[f"G{g}_{i}"] = 0.8 * m + 1.0 * f + rng.normal(0, 0.008, T)
    return pd.DataFrame(cols, index=idx)


def _truth(R):
    return pd.Series([c.split("_")[0] for c in R.columns], index=R.columns)


def test_peer_r2_matches_statsmodels_ols():
    R = _factor_returns()
    P = PeerPanel(R, years=[2001, 2002])
    part = _truth(R)
    f = P.firm_scores(P.partition_peers(part, 2001), 2001)
    X = R.loc["2001"]
    for t in ("G0_0", "G2_3"):
        peers = [c for c in X.columns if c != t and part[c] == part[t]]
        others = [c for c in X.columns if c != t]
        peer = X[peers].mean(axis=1)
        mkt = X[others].mean(axis=1)
        r2 = sm.OLS(X[t], sm.add_constant(peer)).fit().rsquared
        r2m = sm.OLS(X[t], sm.add_constant(mkt)).fit().rsquared
        r2b = sm.OLS(X[t], sm.add_constant(pd.concat([mkt, peer], axis=1))).fit().rsquared
        assert f.at[t, "peer_r2"] == pytest.approx(r2, abs=1e-10)
        assert f.at[t, "market_r2"] == pytest.approx(r2m, abs=1e-10)
        assert f.at[t, "excess_r2"] == pytest.approx(r2 - r2m, abs=1e-10)
        assert f.at[t, "delta_r2"] == pytest.approx(r2b - r2m, abs=1e-9)
        corr = np.mean([np.corrcoef(X[t], X[p])[0, 1] for p in peers])
        assert f.at[t, "peer_corr"] == pytest.approx(corr, abs=1e-10)
        monthly = X.groupby(X.index.month).sum()
        r2mo = np.corrcoef(monthly[t], monthly[peers].mean(axis=1))[0, 1] ** 2
        assert f.at[t, "peer_r2_monthly"] == pytest.approx(r2mo, abs=1e-10)


def test_true_groups_beat_random_and_market():
    R = _factor_returns()
    P = PeerPanel(R, years=[2001, 2002])
    true = P.evaluate("true", partition=_truth(R), years=[2001, 2002], in_sample=[2001],
                      out_of_sample=[2002])
    one = P.evaluate("one", partition=cl.one_cluster(R.columns), years=[2001, 2002])
    rand = P.evaluate("random", partition=cl.random_partitions(_truth(R), 10, seed=1),
                      years=[2001, 2002])
    assert true.mean("peer_r2") > one.mean("peer_r2") > rand.mean("peer_r2")
    assert one.mean("excess_r2") == pytest.approx(0, abs=1e-12)
    assert one.mean("delta_r2") == pytest.approx(0, abs=1e-12)
    assert true.mean("delta_r2") > 0.1
    d = true.paired(one, "peer_r2", "out_of_sample")
    assert d["years_won"] == 1 and d["years"] == 1 and d["mean_diff"] > 0


def test_singletons_score_the_market_and_cannot_raise_delta_r2():
    R = _factor_returns()
    P = PeerPanel(R, years=[2001])
    part = _truth(R)
    full = P.firm_scores(P.partition_peers(part, 2001), 2001)
    # leave group 2 out (singletons): they fall back to the market
    left = part[~part.eq("G2")]
    f = P.firm_scores(P.partition_peers(left, 2001), 2001)
    g2 = [c for c in R.columns if c.startswith("G2")]
    assert (~f.loc[g2, "has_peers"]).all()
    assert np.allclose(f.loc[g2, "peer_r2"], f.loc[g2, "market_r2"])
    assert np.allclose(f.loc[g2, "delta_r2"], 0)
    assert f["delta_r2"].mean() < full["delta_r2"].mean()


def test_knn_and_hierarchy_peers():
    R = _factor_returns(n_per=3, groups=2)
    P = PeerPanel(R, years=[2001])
    # vectors: one-hot of the group, plus a small jitter: the 2 nearest are the group-mates
    V = pd.get_dummies(_truth(R)).astype(float) + 0.01 * np.arange(6)[:, None]
    A = P.knn_peers(V, 2001, k=2)
    tick = list(P.participants(2001))
    for i, t in enumerate(tick):
        mates = {tick[j] for j in np.flatnonzero(A[i])}
        assert mates == {c for c in tick if c != t and c[:2] == t[:2]}
    # hierarchy: fine level has a singleton G0_0 -> it takes its coarse-level peers
    fine = pd.Series({t: t if t == "G0_0" else t[:2] for t in tick})
    coarse = _truth(R)
    H = P.hierarchy_peers([fine, coarse], 2001)
    assert set(np.array(tick)[H[0]]) == {"G0_1", "G0_2"}
    assert hierarchy_of("sic3") == ("sic3", "sic2", "sic_division")
    with pytest.raises(DataError, match="no vector"):
        P.knn_peers(V.iloc[1:], 2001)


def test_participation_needs_every_trading_day():
    R = _factor_returns()
    R.loc["2001-03-05", "G1_1"] = np.nan
    P = PeerPanel(R, years=[2001, 2002])
    assert "G1_1" not in P.participants(2001) and "G1_1" in P.participants(2002)
    with pytest.raises(DataError, match="trading days"):
        PeerPanel(R.loc[:"2001-01-10"], years=[2001])


def test_bm25_binary_and_top_n():
    X = pd.DataFrame([[4.0, 1.0, 0.0, 2.0], [0.0, 3.0, 1.0, 0.0], [1.0, 0.0, 5.0, 2.0]],
                     index=list("abc"))
    b = CompanyFeatures(tf="binary", normalize=False).fit_transform(X)
    assert b.to_numpy().tolist() == (X.to_numpy() > 0).astype(float).tolist()
    bm = CompanyFeatures(tf="bm25", normalize=False).fit_transform(X).to_numpy()
    assert (bm[X.to_numpy() == 0] == 0).all() and (bm < 2.2 + 1e-9).all()  # saturates at k1+1
    top = CompanyFeatures(weighting="idf", top_n=2).fit_transform(X)
    assert ((top.to_numpy() > 0).sum(axis=1) <= 2).all()
    assert np.allclose(np.linalg.norm(top.to_numpy(), axis=1), 1)
    with pytest.raises(DataError, match="tf must be"):
        CompanyFeatures(tf="log").fit(X)


def test_comovement_weights_find_the_latent_that_matters():
    rng = np.random.default_rng(0)
    n = 40
    group = rng.integers(0, 4, n)
    tick = [f"T{i}" for i in range(n)]
    # latents 0-3: the group (what drives returns); latents 4-11: noise topics
    V = np.zeros((n, 12))
    V[np.arange(n), group] = 1.0
    V[:, 4:] = rng.random((n, 8)) * (rng.random((n, 8)) < 0.4) * 2
    V = pd.DataFrame(V / np.linalg.norm(V, axis=1, keepdims=True), index=tick)
    C = pd.DataFrame(np.where(group[:, None] == group[None, :], 0.6, 0.1)
                     + rng.normal(0, 0.02, (n, n)), index=tick, columns=tick)
    cw = CoMovementWeights(penalty=0.1).fit(V, C)
    w = cw.weights_
    assert w.iloc[:4].min() > w.iloc[4:].max()
    W = cw.transform(V)
    assert np.allclose(np.linalg.norm(W.to_numpy(), axis=1), 1)


@pytest.fixture(scope="module")
def bundled():
    from finsae.data import evaluation_universe, load_companies, load_prices, partition
    companies, prices = load_companies(), load_prices()
    u = evaluation_universe(companies, prices)
    return companies.loc[u], PeerPanel.from_prices(prices, u), partition


def test_reference_values_of_evaluation_md(bundled):
    """docs/evaluation.md: the classification rows, reproduced within 0.002."""
    tab, P, partition = bundled
    ref = {"gics_sub_industry": (0.387, 0.054, 0.387, 0.486, 0.103, 0.473, 0.109, 0.473,
                                 0.563, 0.149),
           "sic4": (0.374, 0.041, 0.363, 0.470, 0.090, 0.440, 0.077, 0.434, 0.534, 0.123)}
    for lv, want in ref.items():
        r = P.evaluate(lv, partition=partition(tab, lv),
                       levels=[partition(tab, x) for x in hierarchy_of(lv)])
        got = [r.mean(m, p) for p in ("in_sample", "out_of_sample")
               for m in ("peer_r2", "excess_r2", "knn_r2", "knn_corr", "delta_r2")]
        assert np.allclose(got, want, atol=0.002), (lv, np.round(got, 3))
    one = P.evaluate("one", partition=pd.Series(0, index=tab.index))
    assert one.mean("market_r2", "in_sample") == pytest.approx(0.333, abs=0.002)
    assert one.mean("market_r2", "out_of_sample") == pytest.approx(0.364, abs=0.002)


def test_join_layers_averages_the_blocks_cosines():
    from finsae.features.build import join_layers
    rng = np.random.default_rng(1)
    A = pd.DataFrame(rng.random((5, 4)), index=list("abcde"))
    B = pd.DataFrame(rng.random((5, 3)), index=list("abcde"), columns=[10, 11, 12])
    J = join_layers([A, B]).to_numpy()

    def cos(X):
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        return X @ X.T
    assert np.allclose(J @ J.T, (cos(A.to_numpy()) + cos(B.to_numpy())) / 2)


def test_keep_top_n_keeps_each_rows_largest_and_ties():
    from finsae.features.company import keep_top_n
    V = np.array([[5.0, 1.0, 3.0, 3.0, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0]])
    out = keep_top_n(V, 2)
    assert out[0].tolist() == [5.0, 0.0, 3.0, 3.0, 0.0]   # a tie at the cut is kept
    assert out[1].tolist() == [0.0, 2.0, 0.0, 0.0, 0.0]   # fewer positives than n: all kept
    assert keep_top_n(V, 5) is V
    # CompanyFeatures(top_n=) is keep_top_n before the row normalisation
    X = pd.DataFrame(np.random.default_rng(0).random((6, 30)))
    full = CompanyFeatures(weighting="idf").fit_transform(X).to_numpy()
    top = CompanyFeatures(weighting="idf", top_n=4).fit_transform(X).to_numpy()
    want = keep_top_n(full, 4)
    assert np.allclose(top, want / np.linalg.norm(want, axis=1, keepdims=True))
