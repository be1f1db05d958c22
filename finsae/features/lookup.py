"""`finsae similar TICKER`: nearest companies from the cached features, optionally explained.

Reads only the feature cache (numpy + json; pandas for the tables): no LM, no SAE, no sklearn,
so a lookup answers in well under a second once `finsae features build` has run.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "similar", help="nearest companies by cosine similarity of their features",
        description="Nearest companies by cosine similarity. With --explain, the SAE features "
                    "contributing most to each match: feature j's share of the cosine of the two "
                    "companies' SAE vectors (u_j v_j / |u||v|; all shares sum to that cosine).")
    p.add_argument("ticker")
    p.add_argument("--top", type=int, default=10, help="number of neighbours (default 10)")
    p.add_argument("--method", choices=("sae", "embedding", "hidden", "tfidf"), default="sae",
                   help="sae: SAE features (default); embedding: MiniLM sentence embeddings; "
                        "hidden: the LM's mean-pooled hidden state; tfidf: TF-IDF of the text")
    p.add_argument("--explain", action="store_true",
                   help="list the SAE features behind each match, with their labels")
    p.add_argument("--n-features", type=int, default=5, metavar="N",
                   help="features per match with --explain (default 5)")
    p.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="with --explain, show first the features whose label's detection score "
                        "(held-out AUROC) is at least S (default 0.7)")
    p.add_argument("--generic", type=float, default=None, metavar="F",
                   help="with --explain, fold features firing in more than this share of "
                        "companies into one 'generic' line (default 0.5)")
    feature_inputs(p)
    p.set_defaults(func=run)


def similar(fs, ticker: str, top: int = 10, method: str = "sae", explain: bool = False,
            n_features: int = 5, min_score: float | None = None,
            generic: float | None = None) -> list[dict]:
    """The lookup as records: [{ticker, name, score[, features, explained]}].

    With explain: "features" [{id, label, contribution, score, doc_freq, checked, n_features,
    ids}] (see `finsae.similarity.explain_match`: labels passing the detection-score bar
    `min_score` first, generic latents firing in more than `generic` of the companies left out) and
    "explained" {cosine, shown, shown_share, generic, n_generic, rest} of the SAE cosine."""
    from ..similarity import GENERIC, MIN_SCORE, explain_match, neighbours
    from ..data.errors import DataError
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}")
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
                                for k in ("cosine", "shown", "shown_share", "generic",
                                          "n_generic", "rest")}
        out.append(rec)
    return out


def _num(x, digits: int = 4):
    """A rounded float, or None for a missing value (JSON has no NaN)."""
    return None if x is None or x != x else round(float(x), digits)


def feature_inputs(p: argparse.ArgumentParser) -> None:
    """--features DIR and the common inputs, for every command reading a feature build."""
    from ..cli import common_inputs
    common_inputs(p)
    p.add_argument("--features", "--features-dir", dest="features", metavar="DIR", default=None,
                   help="the feature folder `finsae features build` printed (default: the "
                        "bundled SAE features, for the bundled companies only)")


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


def run(args: argparse.Namespace) -> int:
    fs = load_features(args.companies, args.features,
                       [args.method] + (["sae"] if args.explain else []), args.explain)
    from ..data.tickers import check_ticker
    ticker = check_ticker(args.ticker)  # BRK-B, BRK/B and brk.b all mean BRK.B
    recs = similar(fs, ticker, args.top, args.method, args.explain, args.n_features,
                   args.min_score, args.generic)
    if args.json:
        print(json.dumps(recs, indent=1))
        return 0
    name = fs.names.get(ticker, "")
    what = {"sae": "SAE features", "embedding": "MiniLM embeddings",
            "hidden": "LM hidden state", "tfidf": "TF-IDF"}[args.method]
    print(f"{ticker} {name}: nearest companies by cosine similarity of {what}")
    if args.explain and args.method != "sae":
        print("(features: shares of the SAE-feature cosine of each pair)")
    w = max(len(r["ticker"]) for r in recs) if recs else 4
    for i, r in enumerate(recs, 1):
        print(f"{i:3d}. {r['ticker']:<{w}}  {r['score']:.3f}  {r['name']}")
        for f in r.get("features", []):
            how = []
            if f.get("score") is not None:
                how.append(f"score {f['score']:.2f}" + ("" if f["checked"] else ", below the bar"))
            if f.get("doc_freq") is not None:
                how.append(f"in {f['doc_freq']:.0%} of companies")
            if f.get("n_features", 1) > 1:
                how.insert(0, f"{f['n_features']} features")
            note = f"   ({'; '.join(how)})" if how else ""
            print(f"        {f['contribution']:+.3f}  #{f['id']:<6d} {f['label']}{note}")
        e = r.get("explained")
        if e:
            if e["n_generic"]:
                print(f"        {e['generic']:+.3f}  other: {e['n_generic']} generic features "
                      "(firing in most companies)")
            print(f"        {e['rest']:+.3f}  the remaining features")
            share = "n/a" if e["shown_share"] is None else f"{e['shown_share']:.0%}"
            print(f"        shown features carry {share} of the SAE cosine "
                  f"{e['cosine']:.3f}")
    return 0
