"""Latent weights learned from past return co-movement, each weight a named SAE feature.

`CoMovementWeights` reweights company vectors (ticker x latent, non-negative, e.g. the output of
`CompanyFeatures`) so that cosine similarity follows past return correlation: the similarity of
i and j becomes sum_f w_f x_if x_jf with one non-negative weight w_f per latent.
The weights fit, by non-negative ridge least squares over company pairs, that similarity to
the pairs' mean daily-return correlation in the fitting years, with the penalty pulling them
towards equal weights (the unsupervised vectors). Only relative weights matter (the vectors
are re-normalised); a large weight says "firms sharing this feature move
together", and the feature's label says what it is.

Fit on in-sample years only (`finsae.evaluate.PeerPanel.mean_corr_matrix(fit_years)`); the
penalty is chosen by `select_penalty` on a split of the fitting years, never on the years the
result is reported for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.errors import DataError


class CoMovementWeights:
    """sklearn-style: ``fit(vectors, corr)``, ``transform(vectors)``, ``weights_`` (a Series).

    The fit is a non-negative ridge regression over company pairs: the pair similarity
    s_ij = sum_f w_f x_if x_jf (plus an intercept) fitted to the pairs' past correlation by
    least squares, w >= 0, with the penalty penalty * mean(diag Q) * ||w - c||^2 pulling w towards
    c (the best single scale of the unsupervised similarity). Everything is computed from two
    latent x latent Gram matrices, so the fit costs a few dense products whatever the number of
    pairs; pairs that never traded in the same year take the mean correlation.

    penalty: relative ridge strength (larger: closer to the unsupervised vectors).
    steps: accelerated projected-gradient iterations.
    """

    def __init__(self, penalty: float = 1.0, steps: int = 500):
        self.penalty = penalty
        self.steps = steps

    def fit(self, vectors: pd.DataFrame, corr: pd.DataFrame) -> "CoMovementWeights":
        tick = vectors.index.intersection(corr.index)
        if len(tick) < 3:
            raise DataError("need at least 3 companies with both vectors and correlations")
        X = vectors.loc[tick].to_numpy(dtype=np.float64)
        if (X < 0).any():
            raise DataError("CoMovementWeights needs non-negative company vectors")
        T = corr.loc[tick, tick].to_numpy(dtype=np.float64).copy()
        n = len(tick)
        off = ~np.eye(n, dtype=bool)
        ok = np.isfinite(T) & off
        if ok.sum() < 20:
            raise DataError("fewer than 10 company pairs with a past correlation")
        T[off & ~ok] = T[ok].mean()
        T = (T - T[ok].mean()) / T[ok].std()
        np.fill_diagonal(T, 0.0)
        # sums over ordered pairs i != j of z_ij = x_i * x_j (elementwise)
        n_pairs = n * (n - 1)
        G = X.T @ X
        X2 = X * X
        Q = G * G - X2.T @ X2                      # sum_ij z_ij z_ij^T
        mu = (X.sum(axis=0) ** 2 - X2.sum(axis=0)) / n_pairs
        Q -= n_pairs * np.outer(mu, mu)            # centred: the intercept is free
        b = ((T @ X) * X).sum(axis=0)              # sum_ij z_ij t_ij (t centred)
        d = len(b)
        ones = np.ones(d)
        c = max(float(ones @ b) / max(float(ones @ Q @ ones), 1e-300), 0.0)
        lam = self.penalty * float(np.trace(Q)) / d
        A = Q + lam * np.eye(d)
        rhs = b + lam * c * ones
        L = _largest_eigenvalue(A)
        w = np.full(d, c)
        y, t_k = w.copy(), 1.0
        for _ in range(self.steps):  # FISTA on 0.5 w'Aw - rhs'w, w >= 0
            w_new = np.maximum(y - (A @ y - rhs) / L, 0.0)
            t_new = (1 + np.sqrt(1 + 4 * t_k * t_k)) / 2
            y = w_new + (t_k - 1) / t_new * (w_new - w)
            w, t_k = w_new, t_new
        scale = c if c > 0 else (w.mean() or 1.0)
        self.weights_ = pd.Series(w / scale, index=vectors.columns, name="weight")
        self.fit_corr_ = float(np.corrcoef(_pair_sims(X, w)[ok], T[ok])[0, 1]) \
            if w.any() else float("nan")
        return self

    def transform(self, vectors: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "weights_"):
            raise DataError("CoMovementWeights is not fitted: call fit first")
        if not vectors.columns.equals(self.weights_.index):
            raise DataError("the vectors' latents differ from the fitted ones")
        V = vectors.to_numpy(dtype=float) * np.sqrt(self.weights_.to_numpy())
        norms = np.linalg.norm(V, axis=1, keepdims=True)
        return pd.DataFrame(V / np.where(norms == 0, 1.0, norms), index=vectors.index,
                            columns=vectors.columns)


def _pair_sims(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (X * w) @ X.T


def _largest_eigenvalue(A: np.ndarray, iters: int = 50) -> float:
    v = np.random.default_rng(0).normal(size=len(A))
    lam = 1.0
    for _ in range(iters):
        v = A @ v
        lam = float(np.linalg.norm(v))
        v /= lam
    return lam * 1.01


def select_penalty(vectors: pd.DataFrame, panel, fit_years, penalties=(0.1, 1.0, 10.0),
                   **kw) -> tuple[float, dict]:
    """The penalty with the best kNN-10 peer R² on the second half of `fit_years` when the
    weights are fitted on the first half (all inside the fitting years). Returns (penalty,
    {penalty: score})."""
    fit_years = sorted(fit_years)
    h = len(fit_years) // 2
    first, second = fit_years[:h], fit_years[h:]
    if not first or not second:
        raise DataError("select_penalty needs at least 2 fitting years")
    C = panel.mean_corr_matrix(first)
    scores = {}
    for p in penalties:
        W = CoMovementWeights(penalty=p, **kw).fit(vectors, C).transform(vectors)
        r = panel.score(lambda y: panel.knn_peers(W, y), years=second)
        scores[p] = float(r["peer_r2"].mean())
    return max(scores, key=scores.get), scores
