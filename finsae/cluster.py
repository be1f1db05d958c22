"""Clustering of company vectors, and the partitions the evaluation compares.

A *partition* is a ``pd.Series`` ticker -> cluster label. Companies left unclustered (the MST
method's singletons, a company without return history) are missing from the Series or NA. A
partition that changes from year to year (past-return clusters, a rolling MST threshold) is a
``dict`` year -> partition; `finsae.evaluate` accepts both.

Methods:

- `mst_threshold` / `MSTThreshold`: the paper's method (Molinari et al. 2025). Cosine distance
  over all pairs, z-scored over all pairs (upper triangle); minimum spanning tree of the complete
  graph (``scipy.sparse.csgraph.minimum_spanning_tree``); MST edges whose z-scored distance
  exceeds ``theta`` are deleted; clusters = connected components; singletons unclustered.
  `mst_threshold_path` gives the partitions for a whole grid of thetas from one MST.
- `agglomerative`: sklearn ``AgglomerativeClustering`` (average linkage, cosine by default).
- `kmeans`: sklearn ``KMeans`` on L2-normalised rows (so it follows cosine geometry).
- `random_partition(s)`: the labels permuted among the same companies: same cluster sizes.
- `return_clusters`: clusters of past return correlations, for each year from earlier years only.
- `matched_k`: the number of clusters of a label partition (e.g. GICS sub-industry) on a universe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.sparse import csgraph
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics.pairwise import cosine_distances

from .data.errors import DataError

Partition = pd.Series
UNCLUSTERED = -1


# ----------------------------------------------------------------------------- helpers

def as_matrix(vectors) -> tuple[np.ndarray, pd.Index]:
    """(n x d float array, ticker index) from a DataFrame indexed by ticker (or an array)."""
    if isinstance(vectors, pd.DataFrame):
        index = pd.Index(vectors.index)
        X = vectors.to_numpy(dtype=float)
    else:
        X = np.asarray(vectors, dtype=float)
        index = pd.RangeIndex(len(X))
    if X.ndim != 2:
        raise DataError(f"company vectors must be a 2-D table, got shape {X.shape}")
    if len(X) < 2:
        raise DataError(f"need at least 2 companies to cluster, got {len(X)}")
    if index.has_duplicates:
        raise DataError(f"duplicate ticker {index[index.duplicated()][0]} in the vectors")
    if not np.isfinite(X).all():
        i = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise DataError("non-finite value in the company vectors", ticker=str(index[i]))
    return X, index


def _labels_series(codes: np.ndarray, index: pd.Index) -> Partition:
    """Integer codes (-1 = unclustered) -> partition Series without the unclustered rows."""
    s = pd.Series(np.asarray(codes, dtype=int), index=index, name="cluster")
    return s[s != UNCLUSTERED]


def cluster_sizes(partition: Partition) -> pd.Series:
    """Members per cluster, largest first."""
    return partition.dropna().value_counts()


def matched_k(labels: Partition, universe: Iterable[str] | None = None) -> int:
    """Number of distinct labels (e.g. GICS sub-industries) among `universe` (default: all)."""
    s = labels if universe is None else labels.reindex(list(universe))
    return int(s.dropna().nunique())


def cosine_distance_matrix(X: np.ndarray) -> np.ndarray:
    if (np.linalg.norm(X, axis=1) == 0).any():
        raise DataError("a company vector is all zeros: cosine distance is undefined")
    D = cosine_distances(X)
    np.fill_diagonal(D, 0.0)
    return np.clip(D, 0.0, 2.0)


# ----------------------------------------------------------------------------- MST threshold

def mst_edges(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Edges (i, j, z-scored distance) of the minimum spanning tree of the complete graph on D.

    Returns (i, j, z, mean, std) where mean and std are those of the off-diagonal upper triangle
    of D (the z-scoring of the paper). The MST depends only on the order of the distances, so it
    is computed on ``D + 1`` (csgraph reads a 0 as "no edge"; identical texts have distance 0).
    """
    D = np.asarray(D, dtype=float)
    n = len(D)
    if D.shape != (n, n) or n < 2:
        raise DataError(f"distance matrix must be square with n >= 2, got shape {D.shape}")
    iu = np.triu_indices(n, 1)
    mu, sd = float(D[iu].mean()), float(D[iu].std())
    if sd == 0:
        sd = 1.0  # all distances equal: every z-score is 0
    W = D + 1.0
    np.fill_diagonal(W, 0.0)
    T = csgraph.minimum_spanning_tree(W).tocoo()
    z = (T.data - 1.0 - mu) / sd
    return T.row, T.col, z, mu, sd


def _components(n: int, i: np.ndarray, j: np.ndarray, keep: np.ndarray,
                min_size: int = 2) -> np.ndarray:
    from scipy.sparse import coo_matrix
    G = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    _, comp = csgraph.connected_components(G, directed=False)
    sizes = np.bincount(comp)
    codes = comp.copy()
    codes[sizes[comp] < min_size] = UNCLUSTERED
    # relabel 0..K-1 in order of first appearance
    valid = codes != UNCLUSTERED
    _, codes[valid] = np.unique(codes[valid], return_inverse=True)
    return codes


def mst_threshold(vectors, theta: float, *, distances: np.ndarray | None = None) -> Partition:
    """The paper's clusters: MST edges with z-scored cosine distance > theta are cut.

    vectors: DataFrame indexed by ticker (rows = companies). `distances` may be given instead of
        computing cosine distances (then `vectors` only supplies the index).
    Returns the partition of the companies in components of >= 2 (singletons left out).
    """
    return mst_threshold_path(vectors, [theta], distances=distances)[theta]


def mst_threshold_path(vectors, thetas: Iterable[float], *,
                       distances: np.ndarray | None = None) -> dict[float, Partition]:
    """`mst_threshold` for every theta of a grid, from one MST."""
    if distances is None:
        X, index = as_matrix(vectors)
        D = cosine_distance_matrix(X)
    else:
        D = np.asarray(distances, dtype=float)
        index = pd.Index(vectors.index) if isinstance(vectors, (pd.DataFrame, pd.Series)) \
            else pd.RangeIndex(len(D))
    i, j, z, _, _ = mst_edges(D)
    return {float(t): _labels_series(_components(len(D), i, j, z <= t), index)
            for t in thetas}


class MSTThreshold:
    """sklearn-like wrapper of `mst_threshold`: ``MSTThreshold(theta).fit(X).labels_``.

    ``labels_`` is an int array with -1 for unclustered companies; ``partition_`` the Series;
    ``edges_`` a DataFrame of the MST edges (i, j, z, kept)."""

    def __init__(self, theta: float = -3.13):
        self.theta = theta

    def fit(self, X, y=None):
        Xm, index = as_matrix(X)
        D = cosine_distance_matrix(Xm)
        i, j, z, mu, sd = mst_edges(D)
        keep = z <= self.theta
        self.labels_ = _components(len(D), i, j, keep)
        self.partition_ = _labels_series(self.labels_, index)
        self.edges_ = pd.DataFrame({"i": i, "j": j, "z": z, "kept": keep})
        self.distance_mean_, self.distance_std_ = mu, sd
        self.n_clusters_ = int(self.labels_.max() + 1)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_


# ----------------------------------------------------------------------------- K clusters

def agglomerative(vectors, n_clusters: int, *, linkage: str = "average",
                  metric: str = "cosine") -> Partition:
    """Agglomerative clustering into `n_clusters` (sklearn; average linkage on cosine distance).

    linkage="ward" with metric="cosine" runs Ward on the L2-normalised rows (squared euclidean
    distance between unit vectors is 2 x cosine distance); Ward keeps clusters balanced where
    average linkage tends to form one catch-all cluster and many singletons."""
    X, index = as_matrix(vectors)
    _check_k(n_clusters, len(X))
    if linkage == "ward" and metric == "cosine":
        norms = np.linalg.norm(X, axis=1)
        if (norms == 0).any():
            raise DataError("a company vector is all zeros: cosine distance is undefined")
        codes = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(
            X / norms[:, None])
    elif metric == "cosine":
        model = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage,
                                        metric="precomputed")
        codes = model.fit_predict(cosine_distance_matrix(X))
    else:
        model = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage, metric=metric)
        codes = model.fit_predict(X)
    return _labels_series(codes, index)


def kmeans(vectors, n_clusters: int, *, seed: int = 0, normalize: bool = True,
           n_init: int = 4) -> Partition:
    """k-means (sklearn) on L2-normalised rows by default, so it follows cosine similarity."""
    X, index = as_matrix(vectors)
    _check_k(n_clusters, len(X))
    if normalize:
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms == 0, 1.0, norms)
    from threadpoolctl import threadpool_limits
    # a few hundred companies: one thread is faster than OpenMP's spin-up (7x on 2 busy cores)
    with threadpool_limits(1):
        if X.shape[1] > X.shape[0]:
            # wide data (TF-IDF): rotate onto the row space (X = U S V', keep U S). Distances
            # and inner products between rows are unchanged, so k-means is the same, cheaper.
            U, S, _ = np.linalg.svd(X, full_matrices=False)
            X = U * S
        codes = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit_predict(X)
    return _labels_series(codes, index)


def _check_k(k: int, n: int) -> None:
    if not 1 <= int(k) <= n:
        raise DataError(f"number of clusters must be between 1 and {n} companies, got {k}")


# ----------------------------------------------------------------------------- baselines

def one_cluster(universe: Iterable[str]) -> Partition:
    """Every company in one cluster: the market-level floor."""
    return pd.Series(0, index=pd.Index(list(universe)), name="cluster")


def random_partition(partition: Partition, seed: int = 0) -> Partition:
    """The same cluster sizes on the same companies, labels shuffled (a random permutation)."""
    s = partition.dropna()
    rng = np.random.default_rng(seed)
    return pd.Series(rng.permutation(s.to_numpy()), index=s.index, name="cluster")


def random_partitions(partition, n_seeds: int = 100, seed: int = 0) -> list:
    """`n_seeds` random partitions with the sizes of `partition` (also per year for a dict)."""
    seeds = np.random.SeedSequence(seed).generate_state(n_seeds)
    if isinstance(partition, Mapping):
        return [{y: random_partition(p, int(s) + y) for y, p in partition.items()}
                for s in seeds]
    return [random_partition(partition, int(s)) for s in seeds]


def return_clusters(daily_returns: pd.DataFrame, years: Iterable[int], n_clusters: int, *,
                    lookback: int = 2, min_coverage: float = 0.8,
                    linkage: str = "average") -> dict[int, Partition]:
    """Clusters of past return correlations: for year y, average-linkage clustering on
    1 - Pearson correlation of the daily log returns of years y-lookback .. y-1 (never year y).

    A company takes part in year y's clustering only with returns on at least `min_coverage`
    of those days (others are unclustered that year). Pairwise-complete correlations.
    """
    out: dict[int, Partition] = {}
    for y in years:
        start, end = pd.Timestamp(y - lookback, 1, 1), pd.Timestamp(y - 1, 12, 31)
        if len(daily_returns.loc[start:end]) < 20:
            raise DataError(f"return clusters for {y} need daily returns of {y - lookback}-{y - 1}"
                            f", found {len(daily_returns.loc[start:end])} days")
        out[int(y)] = window_return_clusters(daily_returns, start, end, n_clusters,
                                             min_coverage=min_coverage, linkage=linkage)
    return out


def window_return_clusters(daily_returns: pd.DataFrame, start, end, n_clusters: int, *,
                           min_coverage: float = 0.8, linkage: str = "average") -> Partition:
    """Clusters of the return correlations of the window [start, end] only: agglomerative
    clustering (`linkage`) on 1 - Pearson correlation of the daily log returns, K =
    `n_clusters` (at most the companies present). A company takes part with returns on at
    least `min_coverage` of the window's days; pairwise-complete correlations."""
    window = daily_returns.loc[pd.Timestamp(start):pd.Timestamp(end)]
    ok = window.notna().mean() >= min_coverage
    w = window.loc[:, ok & (window.std() > 0)]
    if w.shape[1] < 2:
        return pd.Series(dtype=object, name="cluster")
    C = np.nan_to_num(pairwise_corr(w.to_numpy(dtype=float), min_periods=20), nan=0.0)
    D = np.clip(1.0 - C, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    k = min(n_clusters, len(D))
    codes = AgglomerativeClustering(n_clusters=k, linkage=linkage,
                                    metric="precomputed").fit_predict(D)
    return _labels_series(codes, w.columns)


def pairwise_corr(X: np.ndarray, min_periods: int = 1) -> np.ndarray:
    """Pearson correlation of the columns of X over pairwise-complete rows (NaN = missing), as
    ``pandas.DataFrame.corr`` computes it, with five matrix products instead of a pair loop.
    Pairs with fewer than `min_periods` common rows (or no variance) are NaN."""
    X = np.asarray(X, dtype=float)
    W = np.isfinite(X).astype(float)
    X0 = np.where(W > 0, X, 0.0)
    n = W.T @ W
    sx = X0.T @ W            # sx[i, j] = sum of x_i over the rows where i and j are both present
    sxx = (X0 * X0).T @ W
    sxy = X0.T @ X0
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = n * sxy - sx * sx.T
        var = (n * sxx - sx * sx) * (n * sxx - sx * sx).T
        C = cov / np.sqrt(var)
    C[(n < max(min_periods, 2)) | ~(var > 0)] = np.nan
    return np.clip(C, -1.0, 1.0)


def covered(partition) -> object:
    """The tickers a partition clusters (a dict per year for a per-year partition)."""
    if isinstance(partition, Mapping):
        return {y: covered(p) for y, p in partition.items()}
    return pd.Index(partition.dropna().index)


def restrict(partition, tickers) -> Partition | dict:
    """A partition (or a per-year dict of them, with a per-year dict of tickers) limited to
    `tickers`: e.g. a baseline limited to the companies the MST method covers."""
    if isinstance(partition, Mapping) or isinstance(tickers, Mapping):
        years = partition.keys() if isinstance(partition, Mapping) else tickers.keys()
        return {y: restrict(partition[y] if isinstance(partition, Mapping) else partition,
                            tickers[y] if isinstance(tickers, Mapping) else tickers)
                for y in years}
    keep = set(tickers)  # a set lookup: Index.isin on pyarrow strings is slow
    return partition[[t in keep for t in partition.index]].dropna()
