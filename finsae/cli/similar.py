"""`finsae similar TICKER`: nearest companies from a feature set, optionally explained."""

from __future__ import annotations

import json

from ..data.errors import DataError
from ..features.lookup import LookupConfig, load_features, similar
from ..features.store import METHODS
from .common import feature_inputs
from .options import add_dataclass_flags


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "similar", help="nearest companies by cosine similarity of their features",
        description="Nearest companies by cosine similarity. With --explain, the SAE features "
                    "contributing most to each match: feature j's share of the cosine of the two "
                    "companies' SAE vectors (u_j v_j / |u||v|; all shares sum to that cosine).")
    p.add_argument("ticker")
    add_dataclass_flags(p, LookupConfig)
    feature_inputs(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.method not in METHODS:
        raise DataError(f"--method must be one of {', '.join(METHODS)}; got {args.method!r}")
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
            chk = e.get("checked_share")
            more = ("" if chk is None or e["shown_share"] is None
                    or abs(chk - e["shown_share"]) < 1e-9 else f", the checked lines {chk:.0%}")
            print(f"        shown features carry {share} of the SAE cosine "
                  f"{e['cosine']:.3f}{more}")
    return 0
