"""Company vectors from SAE latents: pool each description's token latents, then weight them.

Two steps, kept apart so each can be tested and swapped:

1. `pool_latents`: token latents (a TopK SAE's ``indices``/``values`` per token, or a dense or
   sparse token x latent matrix) -> one row per company, by ``sum``, ``mean`` or ``max`` over the
   description's tokens, optionally over a subset of them (`content_token_mask`: words, not
   punctuation, stop words or the company's own name). Sum and mean differ only by a per-row
   factor, so under cosine similarity they give the same neighbours and clusters.
2. `CompanyFeatures`: an sklearn-style transformer on the pooled DataFrame (ticker x latent):
   drop latents that fire in more than ``max_df`` of the companies (generic latents such as
   boilerplate and "the company provides" dominate cosine similarity otherwise), optional
   ``sublinear`` tf (1 + log of the pooled activation), a per-latent weight (``idf``: how
   specific the latent is to few companies; ``standardize``: z-scores as in the paper), optional
   PCA, and L2-normalised rows. Fitted statistics (document frequency, idf, scaler, PCA) come from
   `fit`'s companies only, so a transform of other companies or years leaks nothing.

The default (`DEFAULT_FEATURES`) is what `experiments/search/search.py` chose on 2001-2010 by
the every-firm peer metrics; see ``experiments/results/search.md`` for the alternatives' scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.errors import DataError

POOLINGS = ("sum", "mean", "max")
WEIGHTINGS = (None, "idf", "standardize")
TFS = (None, "sublinear", "binary", "bm25")


# ----------------------------------------------------------------------------- token latents

@dataclass
class TokenLatents:
    """The SAE latents of every token of a set of documents, in TopK form.

    tickers: one per document. offsets: document i's tokens are rows offsets[i]:offsets[i+1].
    indices, values: [n_tokens, k] active latent ids and their activations (a dense latent
    matrix is converted with `from_dense`). d_sae: number of latents.
    token_ids: [n_tokens] LM token ids (for labels and content masks), optional.
    """

    tickers: list
    offsets: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    d_sae: int
    token_ids: np.ndarray | None = None

    def __post_init__(self):
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.indices = np.asarray(self.indices)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.indices.ndim == 1:
            self.indices, self.values = self.indices[:, None], self.values[:, None]
        if self.indices.shape != self.values.shape:
            raise DataError(f"indices {self.indices.shape} and values {self.values.shape} differ")
        if len(self.offsets) != len(self.tickers) + 1 or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.indices) or (np.diff(self.offsets) < 0).any():
            raise DataError("offsets must run from 0 to n_tokens, one step per document")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.d_sae):
            raise DataError(f"latent ids must be in 0..{self.d_sae - 1}")
        if pd.Index(self.tickers).has_duplicates:
            raise DataError("duplicate ticker in the token latents")

    @classmethod
    def from_dense(cls, tickers, offsets, latents, token_ids=None) -> "TokenLatents":
        """From a dense [n_tokens, d_sae] matrix: every non-zero entry is kept."""
        A = np.asarray(latents, dtype=np.float32)
        k = max(1, int((A != 0).sum(axis=1).max())) if len(A) else 1
        idx = np.argsort(-np.abs(A), axis=1, kind="stable")[:, :k]
        val = np.take_along_axis(A, idx, axis=1)
        return cls(list(tickers), offsets, idx, val, A.shape[1], token_ids)

    @property
    def n_tokens(self) -> int:
        return len(self.indices)

    def doc_of_token(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.tickers)), np.diff(self.offsets))

    def csr(self, mask: np.ndarray | None = None):
        """Token x latent scipy CSR matrix (rows of masked-out tokens are empty)."""
        from scipy import (
            sparse,  # lazy: the lookup path imports this module but never pools
        )
        n, k = self.indices.shape
        vals = self.values
        if mask is not None:
            vals = vals * np.asarray(mask, dtype=bool)[:, None]
        # copies: scipy keeps the arrays it is given, and eliminate_zeros() compacts them in
        # place, which would scramble self.indices for every later call
        M = sparse.csr_matrix((vals.ravel().copy(), self.indices.ravel().copy(),
                               np.arange(0, n * k + 1, k)), shape=(n, self.d_sae))
        M.eliminate_zeros()
        return M


def pool_latents(tl: TokenLatents, how: str = "sum", mask: np.ndarray | None = None,
                 tickers: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per document: the token latents pooled by ``sum``, ``mean`` or ``max``.

    mask: boolean [n_tokens]; only the True tokens are pooled (``mean`` divides by their
    number). A document without any kept token gets a zero row. tickers: the subset (and order)
    of documents to return (default: all). Returns a dense DataFrame ticker x latent id.
    """
    if how not in POOLINGS:
        raise DataError(f"pooling must be one of {', '.join(POOLINGS)}, got {how!r}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (tl.n_tokens,):
            raise DataError(f"mask must have one entry per token ({tl.n_tokens}), "
                            f"got shape {mask.shape}")
    doc = tl.doc_of_token()
    n_docs = len(tl.tickers)
    if how == "max":
        out = np.zeros((n_docs, tl.d_sae), dtype=np.float64)
        rows = np.repeat(doc, tl.indices.shape[1])
        vals = tl.values.ravel().astype(np.float64)
        keep = np.ones_like(vals, dtype=bool) if mask is None else np.repeat(mask, tl.indices.shape[1])
        # max over tokens of non-negative activations; an absent latent counts as 0
        np.maximum.at(out, (rows[keep], tl.indices.ravel()[keep]), vals[keep])
    else:
        from scipy import sparse
        M = tl.csr(mask)
        D = sparse.csr_matrix((np.ones(tl.n_tokens), (doc, np.arange(tl.n_tokens))),
                              shape=(n_docs, tl.n_tokens))
        out = (D @ M).toarray().astype(np.float64)
        if how == "mean":
            n = np.bincount(doc[mask] if mask is not None else doc, minlength=n_docs)
            out /= np.maximum(n, 1)[:, None]
    frame = pd.DataFrame(out, index=pd.Index(tl.tickers, name="ticker"))
    if tickers is not None:
        missing = pd.Index(tickers).difference(frame.index)
        if len(missing):
            raise DataError(f"{len(missing)} ticker(s) without token latents, e.g.",
                            ticker=str(missing[0]))
        frame = frame.loc[list(tickers)]
    return frame


# ----------------------------------------------------------------------------- token masks

_WORD = re.compile(r"[A-Za-z]")


def content_token_mask(token_strings: Sequence[str], offsets: np.ndarray,
                       names: Sequence[str] | None = None, *, min_chars: int = 3,
                       stop_words: frozenset | None = None) -> np.ndarray:
    """True for the tokens worth pooling: alphabetic word pieces that are not English stop words
    and not part of the company's own name.

    token_strings: decoded text of each token (a leading space marks a word start, as in
    byte-level BPE). A word split into several tokens is judged as a whole word, so the pieces
    of "semiconductors" all count. names: one company name per document (its words, lower-cased,
    are masked out: name tokens fire company-specific but meaningless latents).
    """
    if stop_words is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
        stop_words = ENGLISH_STOP_WORDS
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(token_strings)
    if offsets[-1] != n:
        raise DataError(f"offsets end at {offsets[-1]} but there are {n} tokens")
    keep = np.zeros(n, dtype=bool)
    for d in range(len(offsets) - 1):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        name_words = set()
        if names is not None and isinstance(names[d], str):
            name_words = {w for w in re.findall(r"[a-z0-9]+", names[d].lower()) if len(w) > 1}
        starts = [i for i in range(lo, hi) if starts_word(token_strings, i, lo)] + [hi]
        for s0, s1 in zip(starts[:-1], starts[1:]):
            word = "".join(token_strings[s0:s1]).strip().lower()
            keep[s0:s1] = (len(word) >= min_chars and word.isalpha()
                           and word not in stop_words and word not in name_words)
    return keep


def token_words(token_strings: Sequence[str], offsets: np.ndarray) -> list[str]:
    """For each token, the whole word it belongs to (lower-cased, stripped): the pieces
    " semi", "conduct", "ors" all map to "semiconductors". Used for readable labels."""
    out = [""] * len(token_strings)
    offsets = np.asarray(offsets, dtype=np.int64)
    for d in range(len(offsets) - 1):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        starts = [i for i in range(lo, hi) if starts_word(token_strings, i, lo)] + [hi]
        for s0, s1 in zip(starts[:-1], starts[1:]):
            w = "".join(token_strings[s0:s1]).strip().lower()
            out[s0:s1] = [w] * (s1 - s0)
    return out


def starts_word(toks: Sequence[str], i: int, lo: int) -> bool:
    """Token i begins a new word: first of its document, leading whitespace, or either side of
    the boundary is not a letter/digit (so punctuation is its own "word")."""
    if i == lo or toks[i][:1].isspace() or not toks[i]:
        return True
    prev = toks[i - 1]
    return not (toks[i][:1].isalnum() and prev[-1:].isalnum())


# ----------------------------------------------------------------------------- weighting

class CompanyFeatures:
    """Pooled latents (DataFrame ticker x latent) -> company vectors (DataFrame ticker x kept
    latent, or x PCA component).

    max_df: drop latents active (pooled value > 0) in more than this share of the fitted
        companies (None: keep all). min_df: drop latents active in fewer companies (an int).
    sublinear: replace a pooled value x by 1 + log(x / scale) where x > 0 (scale = the
        latent's median non-zero value), damping latents that fire on every token of a long
        text, as TF-IDF's sublinear tf does (the same as tf="sublinear").
    tf: how a pooled value becomes a term frequency, latents read as a vocabulary: None (the
        pooled value), "sublinear" (above), "binary" (1 where the latent fires) or "bm25"
        (x / scale saturated as x (k1 + 1) / (x + k1 (1 - b + b len / mean len)), k1 = 1.2,
        b = 0.75, len = the company's total pooled mass over scale; Robertson and Zaragoza).
    top_n: keep only each company's top_n latents after weighting (sparse company vectors;
        None keeps all).
    weighting: None, "idf" (multiply latent j by log((1 + n) / (1 + df_j)) + 1, sklearn's smooth
        idf: latents specific to few companies weigh more) or "standardize" (z-score each latent
        over the fitted companies, the paper's StandardScaler).
    pca: number of PCA components (None: none), fitted on the fitted companies only.
    normalize: L2-normalise the output rows (cosine similarity = dot product).
    """

    def __init__(self, max_df: float | None = None, min_df: int = 1, sublinear: bool = False,
                 weighting: str | None = None, pca: int | None = None, normalize: bool = True,
                 tf: str | None = None, top_n: int | None = None):
        self.max_df = max_df
        self.min_df = min_df
        self.sublinear = sublinear
        self.weighting = weighting
        self.pca = pca
        self.normalize = normalize
        self.tf = tf
        self.top_n = top_n

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in
                ("max_df", "min_df", "sublinear", "weighting", "pca", "normalize", "tf",
                 "top_n")}

    @property
    def _tf(self) -> str | None:
        return self.tf if self.tf is not None else ("sublinear" if self.sublinear else None)

    def set_params(self, **params) -> "CompanyFeatures":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"CompanyFeatures({args})"

    def _check(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError("CompanyFeatures expects a DataFrame indexed by ticker")
        if X.index.has_duplicates:
            raise DataError(f"duplicate ticker {X.index[X.index.duplicated()][0]}")
        V = X.to_numpy(dtype=float)
        if not np.isfinite(V).all():
            raise DataError("non-finite pooled latent value")
        if (V < 0).any():
            raise DataError("pooled latents must be non-negative (SAE activations after ReLU/TopK)")
        return X

    def fit(self, X: pd.DataFrame, y=None) -> "CompanyFeatures":
        X = self._check(X)
        if self.weighting not in WEIGHTINGS:
            raise DataError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.max_df is not None and not 0 < self.max_df <= 1:
            raise DataError(f"max_df must be in (0, 1], got {self.max_df!r}")
        if self.tf not in TFS:
            raise DataError(f"tf must be one of {TFS}, got {self.tf!r}")
        if self.top_n is not None and int(self.top_n) < 1:
            raise DataError(f"top_n must be a positive count, got {self.top_n!r}")
        V = X.to_numpy(dtype=float)
        n = len(V)
        df = (V > 0).sum(axis=0)
        keep = df >= self.min_df
        if self.max_df is not None:
            keep &= df <= self.max_df * n
        if not keep.any():
            raise DataError("no latent left after the max_df / min_df filter")
        self.columns_in_ = X.columns
        self.doc_freq_ = pd.Series(df / n, index=X.columns, name="doc_freq")
        self.keep_ = keep
        self.columns_ = X.columns[keep]
        V = V[:, keep]
        if self._tf in ("sublinear", "bm25"):
            nz = np.where(V > 0, V, np.nan)
            with np.errstate(all="ignore"):
                med = np.nanmedian(nz, axis=0) if n else np.ones(V.shape[1])
            self.scale_ = np.nan_to_num(med, nan=1.0)
        if self._tf == "bm25":
            self.mean_len_ = float((V / self.scale_).sum(axis=1).mean()) or 1.0
        V = self._term_freq(V)
        self.weights_ = np.ones(V.shape[1])
        self.mean_ = np.zeros(V.shape[1])
        if self.weighting == "idf":
            self.weights_ = np.log((1 + n) / (1 + df[keep])) + 1
        elif self.weighting == "standardize":
            self.mean_ = V.mean(axis=0)
            sd = V.std(axis=0)
            self.weights_ = 1 / np.where(sd > 0, sd, 1.0)
        V = self._top((V - self.mean_) * self.weights_)
        if self.pca:
            from sklearn.decomposition import PCA
            nc = min(int(self.pca), n, V.shape[1])
            self.pca_ = PCA(n_components=nc, random_state=0).fit(V)
        else:
            self.pca_ = None
        return self

    def _sublinear(self, V: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(V > 0, 1 + np.log(np.maximum(V / self.scale_, 1e-12)).clip(min=-0.999), 0.0)

    def _term_freq(self, V: np.ndarray) -> np.ndarray:
        tf = self._tf
        if tf == "sublinear":
            return self._sublinear(V)
        if tf == "binary":
            return (V > 0).astype(float)
        if tf == "bm25":
            k1, b = 1.2, 0.75
            X = V / self.scale_
            length = X.sum(axis=1, keepdims=True) / self.mean_len_
            return X * (k1 + 1) / (X + k1 * (1 - b + b * length))
        return V

    def _top(self, V: np.ndarray) -> np.ndarray:
        return V if self.top_n is None else keep_top_n(V, int(self.top_n))

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "keep_"):
            raise DataError("CompanyFeatures is not fitted: call fit first")
        X = self._check(X)
        if not X.columns.equals(self.columns_in_):
            raise DataError(f"the latents differ from the fitted ones ({X.shape[1]} columns vs "
                            f"{len(self.columns_in_)})")
        V = X.to_numpy(dtype=float)[:, self.keep_]
        V = self._top((self._term_freq(V) - self.mean_) * self.weights_)
        cols = self.columns_
        if self.pca_ is not None:
            V = self.pca_.transform(V)
            cols = pd.Index([f"pc{i}" for i in range(V.shape[1])])
        if self.normalize:
            norms = np.linalg.norm(V, axis=1, keepdims=True)
            V = V / np.where(norms == 0, 1.0, norms)
        return pd.DataFrame(V, index=X.index, columns=cols)

    def fit_transform(self, X: pd.DataFrame, y=None) -> pd.DataFrame:
        return self.fit(X).transform(X)


def keep_top_n(V: np.ndarray, n: int) -> np.ndarray:
    """Each row's n largest values, the rest set to 0 (ties at the cut are kept; a row with
    fewer than n positive values keeps them all). Rows are not renormalised: the top n of a
    row are the same before and after scaling it."""
    if V.shape[1] <= n:
        return V
    cut = -np.partition(-V, n - 1, axis=1)[:, n - 1:n]
    return np.where(V >= cut, V, 0.0)


#: chosen on 2001-2010 by experiments/search/search.py (see experiments/results/search.md)
DEFAULT_POOLING = "sum"
DEFAULT_CONTENT_ONLY = True
# Sum over content words, sublinear tf, idf weighting, no max_df cut: the best 2001-2010 peer
# R² + kNN-10 R² among the variants tried (BM25, binary, max_df 0.5 / 0.2 and the raw sum were
# all below it, at every layer). top_n = 1024 (issue 14): on the chosen 16384-latent SAE, each
# company's 1024 strongest latents (of ~2,470 non-zero) score as the full vector on 2001-2010
# (peer R² + kNN-10 R²: 0.3856 vs 0.3853; kNN-10 0.399 vs 0.397) and put the similarity on few
# enough latents that `similar --explain`'s 8 concept lines carry 39% of the cosine instead of
# 23% (experiments/labels/sparse_vectors.py; 512 and fewer score lower in-sample).
DEFAULT_FEATURES = dict(max_df=None, sublinear=True, weighting="idf", pca=None, normalize=True,
                        top_n=1024)
