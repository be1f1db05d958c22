"""Nearest companies by cosine similarity, and which SAE features make two companies similar.

Pure functions on DataFrames indexed by ticker (rows = company vectors), so they work for every
representation (SAE features, MiniLM, hidden state, TF-IDF). Explanations need vectors whose
columns are SAE latents (no PCA): the cosine of u and v is sum_j u_j v_j / (|u| |v|), so latent
j's share is u_j v_j / (|u| |v|) and the shares sum exactly to the cosine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data.errors import DataError, UnknownTickerError
from .data.tickers import check_ticker


def normalize_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    V = X.to_numpy(dtype=float)
    n = np.linalg.norm(V, axis=1, keepdims=True)
    return pd.DataFrame(V / np.where(n == 0, 1.0, n), index=X.index, columns=X.columns)


def _row(vectors: pd.DataFrame, ticker: str, what: str) -> int:
    t = check_ticker(ticker)
    try:
        return int(vectors.index.get_loc(t))
    except KeyError:
        raise UnknownTickerError(t, vectors.index, what=what) from None


def neighbours(vectors: pd.DataFrame, ticker: str, top: int = 10, *,
               what: str = "the company features") -> pd.DataFrame:
    """The `top` companies most cosine-similar to `ticker` (itself excluded), best first.

    Returns a DataFrame with columns ticker, score. An unknown ticker raises
    `UnknownTickerError` with close matches."""
    if top < 1:
        raise DataError(f"top must be at least 1, got {top}")
    i = _row(vectors, ticker, what)
    V = normalize_rows(vectors).to_numpy()
    s = V @ V[i]
    s[i] = -np.inf
    order = np.argsort(-s, kind="stable")[:min(top, len(s) - 1)]
    return pd.DataFrame({"ticker": vectors.index[order], "score": s[order]}).reset_index(drop=True)


def similarity_matrix(vectors: pd.DataFrame) -> pd.DataFrame:
    """Cosine similarity of every pair of companies."""
    V = normalize_rows(vectors).to_numpy()
    return pd.DataFrame(V @ V.T, index=vectors.index, columns=vectors.index)


def contributions(u: pd.Series | np.ndarray, v: pd.Series | np.ndarray) -> pd.Series:
    """Each feature's share of the cosine of u and v: u_j v_j / (|u| |v|); sums to the cosine."""
    index = u.index if isinstance(u, pd.Series) else None
    a, b = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    if a.shape != b.shape:
        raise DataError(f"vectors differ in length: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise DataError("an all-zero vector has no cosine similarity")
    return pd.Series(a * b / (na * nb), index=index)


def explain_pair(vectors: pd.DataFrame, a: str, b: str, top: int = 5,
                 labels: Mapping | None = None) -> pd.DataFrame:
    """The features contributing most to the cosine similarity of companies a and b.

    Returns columns id, label, contribution (the share of the cosine; all features' shares sum
    to it), best first."""
    ia, ib = _row(vectors, a, "the company features"), _row(vectors, b, "the company features")
    c = contributions(vectors.iloc[ia], vectors.iloc[ib])
    c = c[c != 0].sort_values(ascending=False).head(top)
    return pd.DataFrame({"id": list(c.index),
                         "label": [(labels or {}).get(_key(j), "") for j in c.index],
                         "contribution": c.to_numpy()})


#: explanations: a label passes the quality bar at this detection score (see
#: `finsae.features.labels.context_labels`); latents firing in more than GENERIC of the
#: companies are folded into one "other" line
MIN_SCORE, GENERIC = 0.7, 0.5


def explain_match(vectors: pd.DataFrame, a: str, b: str, top: int = 5,
                  labels: Mapping[int, Mapping] | None = None, *, min_score: float = MIN_SCORE,
                  generic: float = GENERIC, group=True) -> dict:
    """The features behind the cosine similarity of a and b, as a person can check them.

    labels: latent id -> label record ("label", and where known "score", "doc_freq").
    Latents firing in more than `generic` of the companies (doc_freq) are not shown but summed
    into "generic"; among the others with a positive share, those whose label's detection
    score is at least `min_score` are shown first, then, if fewer than `top` lines pass, the
    largest of the rest one by one (flagged ``checked=False``).

    group: how passing latents make lines. True or "concept": by concept (see
    `finsae.features.label_groups.concept_lines`): each line is a phrase and every passing
    latent whose label has that phrase (stemmed, or a run of 2+ words inside a longer phrase),
    lines picked greedily by the share they cover, so a line sums all features of one concept;
    "phrase": latents sharing a label's head phrase (the first of "a / b"); False: one latent a
    line; a callable: concept lines with its keys (label -> {key: phrase shown}). A line's
    share is its latents' summed share, its score their share-weighted median, ``ids`` and
    ``n_features`` name them, ``id`` is the largest; ``label`` is the line's phrase (a
    one-latent line: that latent's full label).

    Returns {"cosine", "features": DataFrame id, label, contribution, score, doc_freq, checked,
    n_features, ids,
    "shown" (sum of the shown shares), "shown_share" (shown / cosine), "checked_share" (the
    checked lines' share / cosine), "generic" (share of the generic latents), "n_generic",
    "rest" (everything else)}: shown + generic + rest = cosine.
    """
    from .features.label_groups import concept_lines, weighted_median
    ia, ib = _row(vectors, a, "the company features"), _row(vectors, b, "the company features")
    c = contributions(vectors.iloc[ia], vectors.iloc[ib])
    c = c[c != 0]
    cos = float(c.sum())
    rec = {}
    for j in c.index:  # records, or a plain id -> label map
        r = (labels or {}).get(_key(j))
        rec[j] = r if isinstance(r, Mapping) else ({} if r is None else {"label": str(r)})
    dfreq = pd.Series({j: r.get("doc_freq") for j, r in rec.items()}, dtype=float)
    score = pd.Series({j: r.get("score") for j, r in rec.items()}, dtype=float)
    is_gen = (dfreq > generic).reindex(c.index, fill_value=False).to_numpy()
    cand = c[~is_gen & (c > 0).to_numpy()].sort_values(ascending=False, kind="stable")
    ok = (score.reindex(cand.index) >= min_score).to_numpy()
    text = {j: str(rec[j].get("label", "")) for j in cand.index}
    good = [j for j, g in zip(cand.index, ok) if g]
    if group in (True, "concept") or callable(group):
        kw = {"keys": group} if callable(group) else {}
        units = [(ids, phrase if len(ids) > 1 else text[ids[0]])
                 for phrase, ids in concept_lines(cand[good].to_dict(), text, top, **kw)]
    elif group == "phrase":
        heads: dict = {}
        for j in good:
            heads.setdefault(text[j].split(" / ")[0].strip() or j, []).append(j)
        units = [(ids, text[ids[0]]) for ids in heads.values()]
    elif group is False:
        units = [([j], text[j]) for j in good]
    else:
        raise DataError(f"group must be True, 'concept', 'phrase', False or a callable; "
                        f"got {group!r}")
    units = sorted(units, key=lambda u: -float(c[u[0]].sum()))[:top]
    units = [(ids, lab, True) for ids, lab in units] + [
        ([j], text[j], False) for j, g in zip(cand.index, ok) if not g][:max(0, top - len(units))]

    def wscore(ids):
        s = weighted_median([score.get(j) for j in ids], [float(c[j]) for j in ids])
        return None if s is None else round(s, 4)

    lead = [ids[0] for ids, _, _ in units]
    feats = pd.DataFrame({
        "id": lead, "label": [lab for _, lab, _ in units],
        "contribution": [float(c[ids].sum()) for ids, _, _ in units],
        "score": [wscore(ids) for ids, _, _ in units],
        "doc_freq": [None if pd.isna(dfreq.get(j)) else float(dfreq[j]) for j in lead],
        "checked": [chk for _, _, chk in units],
        "n_features": [len(ids) for ids, _, _ in units],
        "ids": [list(ids) for ids, _, _ in units]})
    s_shown, s_gen = float(feats["contribution"].sum()), float(c[is_gen].sum())
    s_chk = float(feats["contribution"][feats["checked"].astype(bool)].sum())
    return {"cosine": cos, "features": feats, "shown": s_shown,
            "shown_share": s_shown / cos if cos > 0 else float("nan"),
            "checked_share": s_chk / cos if cos > 0 else float("nan"),
            "generic": s_gen, "n_generic": int(is_gen.sum()), "rest": cos - s_shown - s_gen}


def _key(j):
    try:
        return int(j)
    except (TypeError, ValueError):
        return j


# ----------------------------------------------------------------------------- cluster explanations

def _members(vectors: pd.DataFrame, members: Iterable[str]) -> np.ndarray:
    members = [check_ticker(m) for m in members]
    for m in members:
        if m not in vectors.index:
            raise UnknownTickerError(m, vectors.index, what="the company features")
    inside = vectors.index.isin(members)
    if inside.sum() < 2:
        raise DataError("a cluster needs at least 2 companies to explain")
    return inside


def distinctive_features(vectors: pd.DataFrame, members: Iterable[str], top: int = 10,
                         labels: Mapping | None = None) -> pd.DataFrame:
    """The features that set a set of companies apart: mean value inside minus outside.

    Returns columns id, label, inside, outside, difference, share_inside (the share of members
    where the feature is non-zero), sorted by difference."""
    inside = _members(vectors, members)
    V = vectors.to_numpy(dtype=float)
    mi = V[inside].mean(axis=0)
    mo = V[~inside].mean(axis=0) if (~inside).any() else np.zeros(V.shape[1])
    share = (V[inside] != 0).mean(axis=0)
    d = mi - mo
    order = np.argsort(-d, kind="stable")[:top]
    ids = vectors.columns[order]
    return pd.DataFrame({"id": list(ids), "label": [(labels or {}).get(_key(j), "") for j in ids],
                         "inside": mi[order], "outside": mo[order], "difference": d[order],
                         "share_inside": share[order]})


def within_similarity(V: np.ndarray) -> float:
    """Mean cosine similarity over the pairs of rows of V."""
    n = np.linalg.norm(V, axis=1, keepdims=True)
    U = V / np.where(n == 0, 1.0, n)
    S = U @ U.T
    m = len(U)
    return float((S.sum() - np.trace(S)) / (m * (m - 1)))


def ablation_importance(vectors: pd.DataFrame, members: Iterable[str], top: int = 10,
                        labels: Mapping | None = None, candidates: int | None = 200) -> pd.DataFrame:
    """The paper's cluster explanation: zero one feature at a time (for the members) and measure
    the drop in their mean pairwise cosine similarity.

    candidates: only the features with the largest mean value inside the cluster are ablated
    (None: all), since a feature that is zero for every member cannot change the similarity.
    Returns columns id, label, drop (similarity without the feature minus with it, negated:
    positive = the feature holds the cluster together), sorted by drop."""
    inside = _members(vectors, members)
    V = vectors.to_numpy(dtype=float)[inside]
    base = within_similarity(V)
    mean_in = V.mean(axis=0)
    cand = np.flatnonzero(V.any(axis=0))
    if candidates is not None and len(cand) > candidates:
        cand = cand[np.argsort(-mean_in[cand], kind="stable")[:candidates]]
    # Rank-one update instead of recomputing the whole similarity: removing column j changes
    # every dot product by -V_ij V_kj and every squared norm by -V_ij^2.
    G = V @ V.T
    sq = np.diag(G).copy()
    m = len(V)
    drops = np.empty(len(cand))
    for t, j in enumerate(cand):
        x = V[:, j]
        Gj = G - np.outer(x, x)
        nj = np.sqrt(np.maximum(sq - x * x, 0))
        denom = np.outer(nj, nj)
        S = np.divide(Gj, denom, out=np.zeros_like(Gj), where=denom > 0)
        drops[t] = base - (S.sum() - np.trace(S)) / (m * (m - 1))
    order = np.argsort(-drops, kind="stable")[:top]
    ids = vectors.columns[cand[order]]
    return pd.DataFrame({"id": list(ids), "label": [(labels or {}).get(_key(j), "") for j in ids],
                         "drop": drops[order], "within_similarity": base})


@dataclass
class Neighbours:
    """Candidates from similarity instead of clusters: each eligible company with its `k`
    nearest eligible companies by cosine similarity of `vectors` (rows = tickers); the pair
    (a, b) is a candidate when either is among the other's k nearest. Neighbours are found
    among the tickers eligible in the formation window, so every company keeps k candidates."""

    vectors: pd.DataFrame
    k: int = 5

    def pairs(self, tickers=None) -> list[tuple[str, str]]:
        V = self.vectors
        if tickers is not None:
            V = V.loc[V.index.intersection(pd.Index(sorted(set(tickers))))]
        V = V.sort_index()
        n = len(V)
        if n < 2:
            return []
        X = V.to_numpy(dtype=float)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms == 0, 1.0, norms)
        sim = X @ X.T
        np.fill_diagonal(sim, -np.inf)
        k = min(self.k, n - 1)
        # stable order: similarity, then ticker order (ties broken deterministically)
        nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        names = V.index.to_numpy()
        out = {tuple(sorted((names[i], names[j]))) for i in range(n) for j in nn[i]}
        return sorted(out)
