"""Nearest companies from a feature set, optionally explained (`similar`), and the feature set
a lookup reads (`load_features`).

Reads only the feature cache (numpy + json; pandas for the tables): no LM, no SAE, no sklearn,
so a lookup answers in well under a second once `finsae features build` has run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LookupConfig:
    """A similarity lookup: `finsae similar` flags, `similar` arguments."""

    #: number of neighbours
    top: int = 10
    #: vectors compared: sae (SAE features), embedding (MiniLM sentence embeddings), hidden
    #: (the LM's mean-pooled hidden state), tfidf (TF-IDF of the text)
    method: str = "sae"
    #: list the SAE features behind each match, with their labels
    explain: bool = False
    #: lines per match when explaining: each line is one concept, all the checked features
    #: whose labels share a phrase (8: about a quarter of the cosine on the bundled features,
    #: experiments/results/labels.md)
    n_features: int = 8
    #: when explaining, show first the features whose label's detection score (held-out
    #: AUROC) is at least this (none: 0.7, `finsae.similarity.MIN_SCORE`)
    min_score: float | None = None
    #: when explaining, fold features firing in more than this share of companies into one
    #: 'generic' line (none: 0.5, `finsae.similarity.GENERIC`)
    generic: float | None = None


_D = LookupConfig


def similar(fs, ticker: str, top: int = _D.top, method: str = _D.method,
            explain: bool = _D.explain, n_features: int = _D.n_features,
            min_score: float | None = _D.min_score,
            generic: float | None = _D.generic) -> list[dict]:
    """The lookup as records: [{ticker, name, score[, features, explained]}].

    With explain: "features" [{id, label, contribution, score, doc_freq, checked, n_features,
    ids}] (see `finsae.similarity.explain_match`: labels passing the detection-score bar
    `min_score` first, generic latents firing in more than `generic` of the companies left out) and
    "explained" {cosine, shown, shown_share, checked_share, generic, n_generic, rest} of the SAE
    cosine."""
    from ..data.errors import DataError
    from ..similarity import GENERIC, MIN_SCORE, explain_match, neighbours
    if top < 1:
        raise DataError(f"top must be at least 1, got {top}")
    V = fs.method(method)
    nb = neighbours(V, ticker, top)
    out = []
    sae = fs.method("sae") if explain else None
    labels = fs.labels if explain else None
    if explain and any(str(c).startswith("pc") for c in sae.columns[:1]):
        raise DataError("these SAE vectors are PCA components, which have no feature labels; "
                        "build features without PCA to explain matches")
    for t, s in zip(nb["ticker"], nb["score"]):
        rec = {"ticker": str(t), "name": str(fs.names.get(t, "")), "score": round(float(s), 6)}
        if explain:
            ex = explain_match(sae, ticker, t, top=n_features, labels=labels,
                               min_score=MIN_SCORE if min_score is None else min_score,
                               generic=GENERIC if generic is None else generic)
            rec["features"] = [
                {"id": int(r.id), "label": str(r.label), "contribution": round(float(r.contribution), 6),
                 "score": _num(r.score), "doc_freq": _num(r.doc_freq), "checked": bool(r.checked),
                 "n_features": int(r.n_features), "ids": [int(i) for i in r.ids]}
                for r in ex["features"].itertuples()]
            rec["explained"] = {k: (_num(ex[k], 6) if k != "n_generic" else int(ex[k]))
                                for k in ("cosine", "shown", "shown_share", "checked_share",
                                          "generic", "n_generic", "rest")}
        out.append(rec)
    return out


def _num(x, digits: int = 4):
    """A rounded float, or None for a missing value (JSON has no NaN)."""
    return None if x is None or x != x else round(float(x), digits)


def load_features(companies, features, methods, labels: bool):
    """The feature set for a command: the build in folder `features` (only `methods`, labels
    optional), or with features None the bundled SAE features, which serve only the bundled
    companies (`companies`: the companies file, None for the bundled table) and method "sae"."""
    from .bundled import bundled_feature_set, features_needed
    from .store import FeatureSet
    methods = list(dict.fromkeys(methods))
    if features is not None:
        return FeatureSet.load(features, methods=methods, labels=labels)
    if companies is not None:
        raise features_needed(f"no features given for the companies in {companies}")
    other = [m for m in methods if m != "sae"]
    if other:
        raise features_needed(f"the bundled features hold SAE vectors only, not {other[0]!r}")
    return bundled_feature_set()
