import warnings

import numpy as np
import pytest
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import coint

from finsae.pairs.coint import (default_maxlag, engle_granger, engle_granger_both,
                                mackinnon_pvalue)
from finsae.pairs.spread_stats import half_life, hurst_exponent


def _pairs(T=252, P=24, seed=0):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(T, P)), 0) + 60
    coint_part = 1.5 * x + 2 + rng.normal(size=(T, P))
    walk = np.cumsum(rng.normal(size=(T, P)), 0) + 40
    y = np.where(np.arange(P) % 2 == 0, coint_part, walk)  # half cointegrated, half not
    return y, x


def _coint(y, x, lags):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(lags, str):
            return coint(y, x, trend="c", autolag=lags)
        return coint(y, x, trend="c", maxlag=lags, autolag=None)


@pytest.mark.parametrize("lags", [0, 1, 4, "aic", "bic"])
def test_equals_statsmodels_coint_random(lags):
    y, x = _pairs()
    r = engle_granger(y, x, lags=lags)
    for p in range(y.shape[1]):
        stat, pval, crit = _coint(y[:, p], x[:, p], lags)
        assert r.statistic[p] == pytest.approx(stat, abs=1e-6)
        assert r.pvalue[p] == pytest.approx(pval, abs=1e-6)
        np.testing.assert_allclose(r.critical_values, crit, atol=1e-9)
    if isinstance(lags, int):
        assert (r.lags == lags).all() and (r.nobs == 251 - lags).all()
    # cointegrated columns are detected, the random walks mostly not
    assert (r.pvalue[::2] < 0.01).all()
    assert np.median(r.pvalue[1::2]) > 0.05


def test_equals_statsmodels_coint_real_prices():
    import pandas as pd

    from finsae.data.prices import bundled_prices_path
    # the six columns straight from the bundled file (parsing all 504 would be slow here)
    prices = pd.read_csv(bundled_prices_path(), usecols=["date", "KO", "PEP", "XOM", "CVX",
                                                         "JPM", "BAC"],
                         index_col="date", parse_dates=True).loc["2015"].dropna()
    assert len(prices) > 240
    pairs = [("KO", "PEP"), ("XOM", "CVX"), ("JPM", "BAC"), ("PEP", "KO"), ("CVX", "JPM")]
    y = prices[[a for a, _ in pairs]].to_numpy()
    x = prices[[b for _, b in pairs]].to_numpy()
    for lags in (1, "aic"):
        r = engle_granger(y, x, lags=lags)
        for p in range(len(pairs)):
            stat, pval, _ = _coint(y[:, p], x[:, p], lags)
            assert r.statistic[p] == pytest.approx(stat, abs=1e-6)
            assert r.pvalue[p] == pytest.approx(pval, abs=1e-6)


def test_hedge_ratio_recovered_and_both_orderings():
    y, x = _pairs(T=500, P=4, seed=3)
    r = engle_granger(y, x, lags=1)
    np.testing.assert_allclose(r.beta[::2], 1.5, atol=0.05)
    both = engle_granger_both(y, x, lags=1)
    rev = engle_granger(x, y, lags=1)
    best = np.minimum(r.pvalue, rev.pvalue)
    np.testing.assert_allclose(both.result.pvalue, best)
    # where x-on-y won, the hedge ratio is that regression's
    np.testing.assert_allclose(both.result.beta, np.where(both.y_first, r.beta, rev.beta))


def test_mackinnon_vectorised_matches_statsmodels():
    s = np.concatenate([np.linspace(-25, 5, 3001), [-np.inf, np.nan]])
    v = mackinnon_pvalue(s, "c", 2)
    ref = [mackinnonp(t, regression="c", N=2) for t in s[:-2]]
    np.testing.assert_allclose(v[:-2], ref, atol=1e-15)
    assert v[-2] == 0.0 and np.isnan(v[-1])


def test_collinear_and_bad_input():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=100)) + 50
    r = engle_granger(2 * x + 1, x, lags=1)
    assert r.statistic[0] == -np.inf and r.pvalue[0] == 0.0
    with pytest.raises(ValueError, match="no NaN"):
        engle_granger(np.r_[np.nan, x[1:]], x, lags=1)
    with pytest.raises(ValueError, match="ADF lag"):
        engle_granger(x, x[::-1].copy(), lags=60)
    assert default_maxlag(252) == 16


def test_half_life_and_hurst():
    rng = np.random.default_rng(2)
    T, phi = 4000, 0.9
    e = rng.normal(size=(T, 1))
    ar = np.zeros((T, 1))
    for t in range(1, T):
        ar[t] = phi * ar[t - 1] + e[t]
    assert half_life(ar)[0] == pytest.approx(np.log(0.5) / np.log(phi), rel=0.15)
    walk = np.cumsum(e, 0)
    assert half_life(walk)[0] > 100
    h = hurst_exponent(np.hstack([ar, walk]), max_lag=20)
    assert h[0] < 0.4 and 0.4 < h[1] < 0.6


def _many_pairs(T=252, P=240, seed=7):
    """Cointegrated pairs with AR(p) spreads (so the lag search has something to find),
    independent random walks, and near-collinear pairs, shuffled."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(T, P)), 0) + 80
    u = rng.normal(size=(T, P))
    ar = np.zeros((T, P))
    phi = rng.uniform(-0.5, 0.9, size=(3, P)) * [[1], [0.4], [0.2]]
    for t in range(3, T):
        ar[t] = phi[0] * ar[t - 1] + phi[1] * ar[t - 2] + phi[2] * ar[t - 3] + u[t]
    kind = rng.integers(0, 3, P)
    y = np.where(kind == 0, 0.8 * x + 3 + ar * rng.uniform(0.5, 4, P),
                 np.where(kind == 1, np.cumsum(rng.normal(size=(T, P)), 0) + 50,
                          2 * x + 0.05 * rng.normal(size=(T, P))))
    return y, x


@pytest.mark.parametrize("lags", ["aic", "bic", 2])
def test_blocked_path_equals_statsmodels_many_pairs(lags):
    # several blocks (chunk=64) of lag-product Gram matrices against coint pair by pair
    y, x = _many_pairs()
    r = engle_granger(y, x, lags=lags, chunk=64)
    ref = np.array([_coint(y[:, p], x[:, p], lags)[:2] for p in range(y.shape[1])])
    np.testing.assert_allclose(r.statistic, ref[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.pvalue, ref[:, 1], rtol=0, atol=1e-6)
    if isinstance(lags, str):
        from statsmodels.tsa.stattools import adfuller
        assert len(np.unique(r.lags)) > 3  # the search really picks different lags
        for p in np.flatnonzero(r.lags != np.bincount(r.lags).argmax())[:10]:
            e = y[:, p] - r.alpha[p] - r.beta[p] * x[:, p]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                used = adfuller(e, regression="n", autolag=lags, maxlag=default_maxlag(len(e)))[2]
            assert used == r.lags[p]
    # the result does not depend on the block size
    r1 = engle_granger(y, x, lags=lags, chunk=7)
    np.testing.assert_allclose(r1.statistic, r.statistic, rtol=0, atol=1e-9)
    assert (r1.lags == r.lags).all()


def test_degenerate_pair_in_a_block_leaves_the_others_exact(monkeypatch):
    # a constant series makes a block's factorisation fail: that block falls back to the
    # pair-by-pair solver, the other pairs keep statsmodels' numbers
    from finsae.pairs import coint as mod
    calls = []
    solve = mod._eg_block_solve
    monkeypatch.setattr(mod, "_eg_block_solve", lambda *a: calls.append(1) or solve(*a))
    y, x = _many_pairs(P=40, seed=11)
    y[:, 5] = 4.0
    x[:, 17] = y[:, 17]
    r = engle_granger(y, x, lags="aic", chunk=16)
    assert len(calls) >= 1 and np.isnan(r.statistic[5])
    for p in range(40):
        if p in (5, 17):
            continue
        stat, pval, _ = _coint(y[:, p], x[:, p], "aic")
        assert r.statistic[p] == pytest.approx(stat, abs=1e-6)
        assert r.pvalue[p] == pytest.approx(pval, abs=1e-6)
