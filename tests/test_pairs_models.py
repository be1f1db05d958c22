"""Formation models against known answers: OU, Johansen (statsmodels), GGR distance, and the
dynamic hedge ratios (no look-ahead)."""

import numpy as np
import pytest
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from finsae.pairs.hedge import dynamic_spread, kalman, rolling_ols
from finsae.pairs.johansen import johansen
from finsae.pairs.spread_stats import mean_crossings, ou_fit, ssd_distance


def _ou(T, theta, mu, sigma, P=1, seed=0, x0=None):
    """Exact discretisation of dX = theta (mu - X) dt + sigma dW, dt = 1."""
    rng = np.random.default_rng(seed)
    b = np.exp(-theta)
    sd = sigma * np.sqrt((1 - b ** 2) / (2 * theta))
    x = np.empty((T, P))
    x[0] = mu if x0 is None else x0
    for t in range(1, T):
        x[t] = mu + b * (x[t - 1] - mu) + sd * rng.normal(size=P)
    return x


def test_ou_fit_recovers_known_half_life():
    hl = 10.0
    theta = np.log(2) / hl
    x = _ou(20000, theta, mu=3.0, sigma=0.5, P=3, seed=1)
    f = ou_fit(x)
    np.testing.assert_allclose(f.half_life, hl, rtol=0.1)
    np.testing.assert_allclose(f.theta, theta, rtol=0.1)
    np.testing.assert_allclose(f.mu, 3.0, atol=0.2)  # 4 standard errors
    np.testing.assert_allclose(f.sigma, 0.5, rtol=0.05)
    np.testing.assert_allclose(f.sigma_eq, 0.5 / np.sqrt(2 * theta), rtol=0.1)
    # a random walk has no finite half-life
    walk = np.cumsum(np.random.default_rng(2).normal(size=(3000, 1)), 0)
    assert ou_fit(walk).half_life[0] > 200 or not np.isfinite(ou_fit(walk).half_life[0])


def test_mean_crossings_known_counts():
    s = np.array([1.0, -1, 1, -1, 1, -1])  # mean 0: 5 crossings in 5 steps
    assert mean_crossings(s, per_year=None)[0] == 5
    assert mean_crossings(s, per_year=5)[0] == pytest.approx(5.0)
    # touching the mean is not a crossing; coming back to the same side is not either
    t = np.array([1.0, 0.0, 1.0, 0.0, -2.0])  # mean 0: one crossing (from + to -)
    assert mean_crossings(t, per_year=None)[0] == 1
    slow = np.r_[np.ones(126), -np.ones(126)]  # one crossing in a year
    assert mean_crossings(slow)[0] == pytest.approx(252 / 251)


@pytest.mark.parametrize("det_order,k", [(0, 1), (0, 2), (-1, 1), (0, 0)])
def test_johansen_equals_statsmodels(det_order, k):
    rng = np.random.default_rng(3)
    T, P = 252, 6
    x = 50 + np.cumsum(rng.normal(size=(T, P)), 0)
    e = _ou(T, 0.2, 0.0, 1.0, P=P, seed=4)
    walk = 40 + np.cumsum(rng.normal(size=(T, P)), 0)
    y = np.where(np.arange(P) % 2 == 0, 1.3 * x + 5 + e, walk)
    r = johansen(y, x, det_order=det_order, k_ar_diff=k)
    for p in range(P):
        ref = coint_johansen(np.c_[y[:, p], x[:, p]], det_order, k)
        np.testing.assert_allclose(r.eig[p], ref.eig, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(r.trace[p], ref.trace_stat, rtol=1e-8)
        np.testing.assert_allclose(r.max_eig[p], ref.max_eig_stat, rtol=1e-8)
        np.testing.assert_allclose(r.crit, ref.trace_stat_crit_vals)
        v = ref.evec[:, 0]
        assert r.beta[p] == pytest.approx(-v[1] / v[0], rel=1e-6)
    # the cointegrated pairs reject rank 0 at 95% with the true hedge ratio; the walks do not
    assert (r.trace[::2, 0] > r.crit[0, 1]).all()
    if det_order == 0:
        np.testing.assert_allclose(r.beta[::2], 1.3, atol=0.3)
    assert (r.trace[1::2, 0] < r.crit[0, 1]).sum() >= 2


def test_ssd_distance_on_constructed_pairs():
    base = np.linspace(10, 20, 50)
    same = ssd_distance(base, 3 * base)  # identical after normalisation
    assert same[0] == pytest.approx(0.0, abs=1e-20)
    a = np.array([2.0, 4.0, 6.0])
    b = np.array([1.0, 1.0, 1.0])
    # normalised: [1, 2, 3] and [1, 1, 1] -> 0 + 1 + 4
    assert ssd_distance(a, b)[0] == pytest.approx(5.0)
    close = base * (1 + 0.01 * np.sin(np.arange(50)))
    far = base * (1 + 0.1 * np.sin(np.arange(50)))
    d = ssd_distance(np.c_[base, base], np.c_[close, far])
    assert d[0] < d[1]


def _pair_prices(T=300, seed=5, drift=True):
    rng = np.random.default_rng(seed)
    x = 40 + np.cumsum(rng.normal(scale=0.4, size=T))
    beta = np.linspace(1.0, 2.0, T) if drift else np.full(T, 1.5)
    y = beta * x + 3 + _ou(T, 0.3, 0.0, 0.3, seed=seed + 1)[:, 0]
    return y, x, beta


def test_rolling_ols_equals_plain_ols():
    y, x, _ = _pair_prices(drift=False)
    w = 40
    b, a = rolling_ols(y, x, w)
    assert np.isnan(b[w - 2, 0]) and np.isfinite(b[w - 1, 0])
    for t in (w - 1, 100, 299):
        ref = np.polyfit(x[t - w + 1:t + 1], y[t - w + 1:t + 1], 1)
        assert b[t, 0] == pytest.approx(ref[0], rel=1e-8)
        assert a[t, 0] == pytest.approx(ref[1], rel=1e-6)


def test_kalman_tracks_a_drifting_hedge_ratio():
    y, x, beta = _pair_prices(T=600, drift=True)
    b, a = kalman(y, x, delta=1e-4, obs_var=1e-4)
    err = np.abs(b[300:, 0] - beta[300:])
    assert np.median(err) < 0.3  # beta moves from 1 to 2; OLS on days 0-251 is 0.98 off
    # a formation OLS cannot follow it
    fixed = np.polyfit(x[:252], y[:252], 1)[0]
    assert np.median(np.abs(fixed - beta[300:])) > 3 * np.median(err)


@pytest.mark.parametrize("method", ["rolling", "kalman"])
def test_dynamic_hedge_has_no_look_ahead(method):
    """Perturb the prices after day t: the hedge ratio (and spread) up to t is unchanged."""
    y, x, _ = _pair_prices(T=300)
    F = 200
    s, mu, sd, b, a = dynamic_spread(y, x, F, method, window=40)
    for t in (60, F - 1, 250):
        y2, x2 = y.copy(), x.copy()
        rng = np.random.default_rng(t)
        y2[t + 1:] *= np.exp(rng.normal(0, 0.05, len(y) - t - 1))
        x2[t + 1:] *= np.exp(rng.normal(0, 0.05, len(y) - t - 1))
        s2, mu2, sd2, b2, a2 = dynamic_spread(y2, x2, F, method, window=40)
        np.testing.assert_array_equal(b2[:t + 1], b[:t + 1])
        np.testing.assert_array_equal(a2[:t + 1], a[:t + 1])
        np.testing.assert_array_equal(s2[:t + 1], s[:t + 1])
        if t >= F - 1:  # the formation moments used for z-scores are unchanged too
            assert (mu2, sd2) == (mu, sd)
        assert not np.array_equal(b2[t + 2:], b[t + 2:])  # the test can fail
