"""Latent weights learned from past return co-movement, each weight a named SAE feature.

`CoMovementWeights` reweights company vectors (ticker x latent, non-negative, e.g. the output of
`CompanyFeatures`) so that cosine similarity follows past return correlation: the similarity of
i and j becomes sum_f w_f x_if x_jf with one non-negative weight w_f = exp(theta_f) per latent.
The weights maximise the Pearson correlation, over company pairs, between that similarity and
the pairs' mean daily-return correlation in the fitting years, with an L2 penalty pulling
theta towards 0 (w = 1, the unsupervised vectors). The objective is invariant to the scale of
w, so only the relative weights matter; a large weight says "firms sharing this feature move
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

    penalty: L2 coefficient on theta = log w (larger: closer to the unsupervised vectors).
    steps, lr: Adam iterations and step size. min_df: latents active in fewer fitted companies
        keep weight 1 (too rare to learn from).
    """

    def __init__(self, penalty: float = 1e-3, steps: int = 200, lr: float = 0.05,
                 min_df: int = 3, seed: int = 0):
        self.penalty = penalty
        self.steps = steps
        self.lr = lr
        self.min_df = min_df
        self.seed = seed

    def fit(self, vectors: pd.DataFrame, corr: pd.DataFrame) -> "CoMovementWeights":
        import torch
        tick = vectors.index.intersection(corr.index)
        if len(tick) < 3:
            raise DataError("need at least 3 companies with both vectors and correlations")
        X = vectors.loc[tick].to_numpy(dtype=np.float64)
        if (X < 0).any():
            raise DataError("CoMovementWeights needs non-negative company vectors")
        T = corr.loc[tick, tick].to_numpy(dtype=np.float64)
        iu = np.triu_indices(len(tick), 1)
        ok = np.isfinite(T[iu])
        if ok.sum() < 10:
            raise DataError("fewer than 10 company pairs with a past correlation")
        active = (X > 0).sum(axis=0) >= self.min_df
        torch.manual_seed(self.seed)
        Xa = torch.tensor(X[:, active])
        Xr = torch.tensor(X[:, ~active])
        rest = Xr @ Xr.T  # the similarity of the latents that keep weight 1
        i, j = (torch.tensor(a[ok]) for a in iu)
        t = torch.tensor(T[iu][ok])
        t = (t - t.mean()) / t.std()
        theta = torch.zeros(Xa.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=self.lr)
        self.history_ = []
        for _ in range(self.steps):
            S = (Xa * theta.exp()) @ Xa.T + rest
            s = S[i, j]
            s = (s - s.mean()) / s.std().clamp_min(1e-12)
            fit = (s * t).mean()
            loss = -fit + self.penalty * theta.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history_.append(float(fit))
        w = np.ones(X.shape[1])
        w[active] = np.exp(theta.detach().numpy())
        self.weights_ = pd.Series(w, index=vectors.columns, name="weight")
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


def select_penalty(vectors: pd.DataFrame, panel, fit_years, penalties=(1e-4, 1e-3, 1e-2),
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
