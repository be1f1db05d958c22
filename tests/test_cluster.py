import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from finsae import cluster as cl
from finsae.data.errors import DataError


def _blobs(sizes=(5, 4, 3), dim=8, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[: len(sizes)] * 3 + 0.2
    rows, truth = [], []
    for k, n in enumerate(sizes):
        rows.append(centers[k] + noise * rng.normal(size=(n, dim)))
        truth += [k] * n
    X = np.vstack(rows)
    idx = [f"C{i:02d}" for i in range(len(X))]
    return pd.DataFrame(X, index=idx), pd.Series(truth, index=idx)


def _same_partition(a: pd.Series, b: pd.Series) -> bool:
    a, b = a.sort_index(), b.sort_index()
    if not a.index.equals(b.index):
        return False
    return (pd.crosstab(a, b) > 0).sum(axis=1).eq(1).all() and \
        (pd.crosstab(a, b) > 0).sum(axis=0).eq(1).all()


def test_mst_toy_distance_matrix_known_components():
    # points on a line: {0,1,2} close, {3,4} close, 5 far away
    x = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 20.0])
    D = np.abs(x[:, None] - x[None, :])
    idx = pd.Index(list("abcdef"))
    vec = pd.DataFrame(index=idx)
    iu = np.triu_indices(6, 1)
    mu, sd = D[iu].mean(), D[iu].std()
    i, j, z, mu2, sd2 = cl.mst_edges(D)
    assert len(z) == 5 and np.isclose(mu, mu2) and np.isclose(sd, sd2)
    # MST edge lengths of points on a line are the gaps: 0.1, 0.1, 4.8, 0.1, 14.9
    assert np.allclose(np.sort(z * sd + mu), np.sort([0.1, 0.1, 4.8, 0.1, 14.9]))
    theta = ((1.0 - mu) / sd)  # cut every gap longer than 1
    p = cl.mst_threshold(vec, theta, distances=D)
    assert _same_partition(p, pd.Series([0, 0, 0, 1, 1], index=list("abcde")))
    assert "f" not in p.index  # singleton left out
    # a threshold above every edge: one component; below every edge: nothing clustered
    assert cl.mst_threshold(vec, 100.0, distances=D).nunique() == 1
    assert len(cl.mst_threshold(vec, -100.0, distances=D)) == 0
    theta2 = (10.0 - mu) / sd  # keeps the 4.8 gap: a,b,c,d,e together, f alone
    assert set(cl.mst_threshold(vec, theta2, distances=D).index) == set("abcde")


def test_mst_path_matches_single_threshold_and_estimator():
    X, truth = _blobs()
    thetas = [-2.0, -1.0, 0.0]
    path = cl.mst_threshold_path(X, thetas)
    for t in thetas:
        single = cl.mst_threshold(X, t)
        assert single.equals(path[t])
        est = cl.MSTThreshold(t).fit(X)
        assert (est.labels_ >= 0).sum() == len(single)
        assert est.n_clusters_ == single.nunique()
    # well separated blobs are recovered at a threshold between within- and between-blob edges
    est = cl.MSTThreshold(-1.0).fit(X)
    assert _same_partition(est.partition_, truth)
    assert len(est.edges_) == len(X) - 1


def test_mst_handles_duplicate_vectors():
    X, _ = _blobs()
    X.iloc[1] = X.iloc[0]  # distance 0 must still be an MST edge, not "no edge"
    p = cl.mst_threshold(X, -1.0)
    assert p[X.index[0]] == p[X.index[1]]


def test_agglomerative_matches_scipy_average_linkage():
    X, truth = _blobs(sizes=(6, 5, 4, 3), noise=0.3, seed=1)
    ours = cl.agglomerative(X, 4)
    D = squareform(cl.cosine_distance_matrix(X.to_numpy()), checks=False)
    ref = pd.Series(fcluster(linkage(D, "average"), 4, "maxclust"), index=X.index)
    assert _same_partition(ours, ref)
    assert _same_partition(ours, truth)


def test_kmeans_recovers_blobs_and_is_deterministic():
    X, truth = _blobs(noise=0.1)
    a = cl.kmeans(X, 3, seed=3)
    assert _same_partition(a, truth)
    assert a.equals(cl.kmeans(X, 3, seed=3))


def test_random_partition_keeps_sizes_and_companies():
    labels = pd.Series(list("aaaabbbcc") + ["d"], index=[f"T{i}" for i in range(10)])
    parts = cl.random_partitions(labels, n_seeds=20, seed=1)
    assert len(parts) == 20
    for p in parts:
        assert sorted(p.value_counts()) == sorted(labels.value_counts())
        assert set(p.index) == set(labels.index)
    assert not all(p.equals(labels) for p in parts)
    assert cl.random_partitions(labels, 3, seed=1)[0].equals(parts[0])
    yearly = cl.random_partitions({2001: labels, 2002: labels[:5]}, 2)
    assert set(yearly[0]) == {2001, 2002} and len(yearly[0][2002]) == 5


def test_matched_k_and_one_cluster():
    labels = pd.Series(["x", "y", "y", None], index=list("abcd"))
    assert cl.matched_k(labels) == 2
    assert cl.matched_k(labels, ["a", "d"]) == 1
    assert cl.one_cluster(list("abc")).nunique() == 1


def test_pairwise_corr_matches_pandas():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 30))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:190, 4] = np.nan  # too few rows left
    ours = cl.pairwise_corr(X, min_periods=20)
    ref = pd.DataFrame(X).corr(min_periods=20).to_numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    assert np.nanmax(np.abs(ours - ref)) < 1e-12


def _two_block_daily(seed=0, years=range(2000, 2004), n=(4, 4)):
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(f"{min(years)}-01-01", f"{max(years)}-12-31")
    cols, data = [], []
    for b, m in enumerate(n):
        f = rng.normal(size=len(days))
        for i in range(m):
            cols.append(f"B{b}_{i}")
            data.append(f + 0.5 * rng.normal(size=len(days)))
    return pd.DataFrame(np.array(data).T, index=days, columns=cols)


def test_return_clusters_find_blocks_from_past_years_only():
    R = _two_block_daily()
    parts = cl.return_clusters(R, [2002, 2003], 2, lookback=2)
    truth = pd.Series([c[:2] for c in R.columns], index=R.columns)
    assert _same_partition(parts[2002], truth)
    # changing the target year's own returns does not change its clusters
    R2 = R.copy()
    R2.loc[R2.index.year == 2002] = np.random.default_rng(9).normal(
        size=((R2.index.year == 2002).sum(), R2.shape[1]))
    assert cl.return_clusters(R2, [2002], 2, lookback=2)[2002].equals(parts[2002])
    # a company with too little history that year is left unclustered
    R3 = R.copy()
    R3.loc[R3.index.year < 2002, "B0_0"] = np.nan
    assert "B0_0" not in cl.return_clusters(R3, [2002], 2)[2002].index
    with pytest.raises(DataError):
        cl.return_clusters(R, [2000], 2)


def test_restrict_static_and_per_year():
    p = pd.Series([0, 0, 1, 1], index=list("abcd"))
    assert list(cl.restrict(p, ["a", "c", "z"]).index) == ["a", "c"]
    r = cl.restrict(p, {2001: ["a"], 2002: ["b", "d"]})
    assert list(r[2001].index) == ["a"] and list(r[2002].index) == ["b", "d"]


def test_bad_vectors_raise_one_clear_error():
    X, _ = _blobs()
    bad = X.copy()
    bad.iloc[2, 0] = np.nan
    with pytest.raises(DataError, match="C02: non-finite"):
        cl.agglomerative(bad, 2)
    zero = X.copy()
    zero.iloc[0] = 0.0
    with pytest.raises(DataError, match="all zeros"):
        cl.mst_threshold(zero, -1.0)
    with pytest.raises(DataError, match="number of clusters"):
        cl.kmeans(X, 0)
    with pytest.raises(DataError, match="at least 2"):
        cl.agglomerative(X.iloc[:1], 1)


def test_ward_on_normalised_vectors_finds_the_blocks():
    import numpy as np
    import pandas as pd

    from finsae import cluster as cl
    rng = np.random.default_rng(0)
    base = np.eye(3) * 5
    X = np.vstack([base[i] + rng.random((4, 3)) * 0.3 for i in range(3)])
    V = pd.DataFrame(X * rng.uniform(0.5, 3, (12, 1)), index=[f"T{i}" for i in range(12)])
    part = cl.agglomerative(V, 3, linkage="ward")  # scale-free: rows are L2-normalised first
    assert part.groupby(part).size().tolist() == [4, 4, 4]
    assert all(part.iloc[4 * g:4 * g + 4].nunique() == 1 for g in range(3))
