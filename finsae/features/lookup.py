"""`finsae similar TICKER`: nearest companies from the cached features, optionally explained.

Reads only the feature cache (numpy + json; pandas for the tables): no LM, no SAE, no sklearn,
so a lookup answers in well under a second once `finsae features build` has run.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    from ..cli import common_inputs
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
    p.add_argument("--features-dir", metavar="DIR", default=None,
                   help="a feature cache folder (default: the latest `finsae features build` "
                        "for these companies)")
    common_inputs(p)
    p.set_defaults(func=run)


def similar(fs, ticker: str, top: int = 10, method: str = "sae", explain: bool = False,
            n_features: int = 5) -> list[dict]:
    """The lookup as records: [{ticker, name, score[, features: [{id, label, contribution}]]}]."""
    from ..similarity import explain_pair, neighbours
    from ..data.errors import DataError
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}")
    V = fs.method(method)
    nb = neighbours(V, ticker, top)
    out = []
    sae = fs.method("sae") if explain else None
    labels = fs.label_map() if explain else None
    if explain and any(str(c).startswith("pc") for c in sae.columns[:1]):
        raise DataError("these SAE vectors are PCA components, which have no feature labels; "
                        "build features without PCA to explain matches")
    for t, s in zip(nb["ticker"], nb["score"]):
        rec = {"ticker": str(t), "name": str(fs.names.get(t, "")), "score": round(float(s), 6)}
        if explain:
            ex = explain_pair(sae, ticker, t, top=n_features, labels=labels)
            rec["features"] = [{"id": int(i), "label": str(lab), "contribution": round(float(c), 6)}
                               for i, lab, c in zip(ex["id"], ex["label"], ex["contribution"])]
        out.append(rec)
    return out


def load_features(args, methods, labels: bool):
    """The feature set for a command: --features-dir, else the latest build for these
    companies, else (bundled companies, SAE only) the compact bundled copy."""
    import sys
    from pathlib import Path
    from ..data.errors import DataError
    from .store import FeatureSet, find_cache
    methods = list(dict.fromkeys(methods))
    if args.features_dir:
        return FeatureSet.load(Path(args.features_dir), methods=methods, labels=labels)
    try:
        folder = find_cache(None, args.companies)
    except DataError:
        if args.companies is not None or set(methods) != {"sae"}:
            raise
        from .bundled import bundled_feature_set
        print("finsae: no `finsae features build` yet: using the bundled SAE features "
              "(the default run's vectors, data/features/meta.json)", file=sys.stderr)
        return bundled_feature_set()
    return FeatureSet.load(folder, methods=methods, labels=labels)


def run(args: argparse.Namespace) -> int:
    fs = load_features(args, [args.method] + (["sae"] if args.explain else []), args.explain)
    from ..data.tickers import check_ticker
    ticker = check_ticker(args.ticker)  # BRK-B, BRK/B and brk.b all mean BRK.B
    recs = similar(fs, ticker, args.top, args.method, args.explain, args.n_features)
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
            print(f"        {f['contribution']:+.3f}  #{f['id']:<6d} {f['label']}")
    return 0
