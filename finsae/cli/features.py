"""`finsae features`: build the company-feature cache; show, export and explain SAE features.

  finsae features build [--layer L] [--sae DIR] [--pooling sum|mean|max] [--all-tokens] ...
  finsae features show ID             one latent: label, detection score, contexts, companies
  finsae features export [--html F] [--json-out F] [--sort score] [--min-score S]
                                      every labelled latent, browsable and sortable
  finsae features explain T1 T2 ...   the features that set a set of companies apart

`build` prints the folder it wrote; show, export and explain read it with ``--features DIR``
(default: the bundled SAE features, for the bundled companies).
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    from .common import common_inputs, feature_inputs
    p = subparsers.add_parser("features", help="build, show, export and explain SAE features",
                              description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="compute company vectors (SAE, hidden, MiniLM, TF-IDF) "
                                     "and feature labels, and cache them")
    from ..features.build import DEFAULT_BUILD
    b.add_argument("--model", default=DEFAULT_BUILD["model"], help="LM (default %(default)s)")
    b.add_argument("--layer", type=int, default=None,
                   help="residual stream after this block (default: the block the SAE "
                        f"records, else {DEFAULT_BUILD['layer']})")
    b.add_argument("--sae", metavar="DIR", required=True,
                   help="an SAE folder trained on this model's block --layer (`finsae sae "
                        "train`, SAELens, sparsify, Gemma Scope params.npz), or a release "
                        "folder with one SAE per block (sparsify layers.N, Gemma Scope "
                        "layer_N/...): the one for --layer is used")
    b.add_argument("--pooling", choices=("sum", "mean", "max"), default=DEFAULT_BUILD["pooling"],
                   help="pooling of a description's token latents")
    b.add_argument("--all-tokens", action="store_true",
                   help="pool over every token (default: content words only)")
    b.add_argument("--weighting", choices=("idf", "standardize", "none"),
                   default=DEFAULT_BUILD["weighting"] or "none", help="per-latent weight")
    b.add_argument("--max-df", type=float, default=DEFAULT_BUILD["max_df"],
                   help="drop latents firing in more than this share of companies")
    b.add_argument("--top-n", type=int, default=DEFAULT_BUILD["top_n"], metavar="N",
                   help="keep each company's N strongest latents after weighting, 0 for all "
                        "(default %(default)s)")
    b.add_argument("--no-baselines", action="store_true",
                   help="SAE and hidden-state vectors only (skip MiniLM and TF-IDF)")
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... for the LM and SAE")
    common_inputs(b)
    b.set_defaults(func=run_build)

    s = sub.add_parser("show", help="one SAE feature: label, top activations, companies")
    s.add_argument("id", type=int)
    feature_inputs(s)
    s.set_defaults(func=run_show)

    e = sub.add_parser("export", help="write every labelled feature as HTML and/or JSON")
    e.add_argument("--html", metavar="PATH", default=None)
    e.add_argument("--json-out", metavar="PATH", default=None, dest="json_out")
    e.add_argument("--sort", choices=("id", "score", "doc_freq"), default="id",
                   help="order: latent id, detection score (best first) or firing share")
    e.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="only latents whose label's detection score is at least S")
    e.add_argument("--min-companies", type=int, default=None, metavar="N",
                   help="only latents firing in at least N companies")
    e.add_argument("--max-doc-freq", type=float, default=None, metavar="F",
                   help="only latents firing in at most this share of companies (drops "
                        "generic latents: what is left can explain clusters)")
    feature_inputs(e)
    e.set_defaults(func=run_export)

    x = sub.add_parser("explain", help="the SAE features that set a set of companies apart")
    x.add_argument("tickers", nargs="+")
    x.add_argument("--by", choices=("difference", "ablation"), default="difference",
                   help="difference: mean inside minus outside; ablation: drop in the members' "
                        "mean cosine similarity when the feature is zeroed (the paper's)")
    x.add_argument("--top", type=int, default=10, help="features listed")
    x.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="only features whose label's detection score is at least S")
    x.add_argument("--generic", type=float, default=None, metavar="F",
                   help="leave out features firing in more than this share of companies "
                        "(default 0.5)")
    feature_inputs(x)
    x.set_defaults(func=run_explain)


def _load(args, methods=("sae",), labels=True):
    from ..features.lookup import load_features
    return load_features(args.companies, args.features, methods, labels)


def run_build(args) -> int:
    from ..data import load_companies
    from ..features.build import build_feature_set
    companies = load_companies(args.companies)
    folder = build_feature_set(
        companies, model=args.model, layer=args.layer, sae=args.sae, pooling=args.pooling,
        content_only=not args.all_tokens,
        weighting=None if args.weighting == "none" else args.weighting, max_df=args.max_df,
        top_n=args.top_n or None,
        baselines=not args.no_baselines, device=args.device, companies_path=args.companies,
        progress=not args.json)
    if args.json:
        print(json.dumps({"features_dir": str(folder)}))
    else:
        print(f"features cached in {folder}\n"
              f"pass them on with --features {folder}")
    return 0


def run_show(args) -> int:
    from ..data.errors import DataError
    fs = _load(args, labels=True)
    if args.id not in fs.labels:
        raise DataError(f"feature {args.id} has no label record (it never fires on these texts, "
                        f"or is not among the {len(fs.labels)} labelled features)")
    rec = fs.labels[args.id]
    if args.json:
        print(json.dumps({"id": args.id, **rec}, indent=1))
        return 0
    score = rec.get("score")
    n = rec.get("n_companies")
    print(f"feature #{args.id}: {rec['label']}")
    print(f"  detection score {'n/a' if score is None else f'{score:.2f}'} (held-out AUROC; "
          f"0.5 = chance), fires in {rec['doc_freq']:.0%} of companies"
          + ("" if n is None else f" ({n})"))
    print("strongest companies:")
    for c in rec["companies"]:
        print(f"  {c['ticker']:<6} {c['value']:9.2f}  {c['name']}")
    if rec.get("contexts"):
        print("top contexts:")
        for x in rec["contexts"]:
            print(f"  {x['activation']:7.2f} {x['ticker']:<6} ...{x['text']}...")
    if rec.get("examples"):
        print("top activations:")
    for x in rec.get("examples", []):
        pre, tok, post = x["context"]
        print(f"  {x['activation']:7.2f} {x['ticker']:<6} ...{pre}[[{tok}]]{post}...".replace("\n", " "))
    return 0


def run_export(args) -> int:
    from ..features.labels import select_labels, to_html, to_json
    fs = _load(args, labels=True)
    labels = select_labels(fs.labels, sort=args.sort, min_score=args.min_score,
                           min_companies=args.min_companies, max_doc_freq=args.max_doc_freq)
    html_path = args.html or (None if args.json_out else "finsae_features.html")
    written = []
    if html_path:
        written.append(str(to_html(labels, html_path, meta={
            k: fs.meta.get(k) for k in ("model", "layer", "sae", "pooling", "content_only",
                                         "weighting", "max_df")}, sort=None)))
    if args.json_out:
        written.append(str(to_json(labels, args.json_out, sort=None)))
    print(json.dumps({"written": written}) if args.json else "\n".join(written))
    return 0


def run_explain(args) -> int:
    from ..similarity import GENERIC, ablation_importance, distinctive_features
    fs = _load(args, labels=True)
    V, labels = fs.method("sae"), fs.label_map()
    from ..data.tickers import check_ticker
    tickers = [check_ticker(t) for t in args.tickers]
    # the same scores as `similar --explain`: generic latents out, optionally a score bar
    generic = GENERIC if args.generic is None else args.generic
    # rank on the full vectors (the similarity is not changed), then keep the passing latents
    if args.by == "ablation":
        df = ablation_importance(V, tickers, top=V.shape[1], labels=labels)
    else:
        df = distinctive_features(V, tickers, top=V.shape[1], labels=labels)
    ok = [_passes(fs.labels.get(_int(j)), args.min_score, generic) for j in df["id"]]
    df = df[ok].reset_index(drop=True)
    # one line per concept (as `similar --explain`): passing features whose labels share a
    # phrase, found among the strongest; the line's row is its strongest feature's
    from ..features.label_groups import concept_lines, weighted_median
    col = "drop" if args.by == "ablation" else "difference"
    pool = df.head(max(args.top * 20, 200))
    pool = pool[pool[col] > 0]
    weight = dict(zip(pool["id"], pool[col].astype(float)))
    lines = concept_lines(weight, dict(zip(pool["id"], pool["label"].astype(str))), args.top)
    row = {j: i for i, j in enumerate(df["id"])}
    df = df.iloc[[row[ids[0]] for _, ids in lines]].reset_index(drop=True)
    df["label"] = [p if len(ids) > 1 else lab for (p, ids), lab in zip(lines, df["label"])]
    df["n_features"] = [len(ids) for _, ids in lines]
    df["ids"] = [[_int(j) for j in ids] for _, ids in lines]
    df["score"] = [weighted_median([(fs.labels.get(_int(j)) or {}).get("score", float("nan"))
                                    for j in ids], [weight[j] for j in ids]) for _, ids in lines]
    df["doc_freq"] = [(fs.labels.get(_int(j)) or {}).get("doc_freq") for j in df["id"]]
    if args.json:
        print(df.to_json(orient="records", indent=1))
        return 0
    print(f"features setting {', '.join(tickers)} apart ({args.by}; features firing in more "
          f"than {generic:.0%} of companies left out):")
    for r in df.itertuples():
        more = f", {r.n_features} features" if r.n_features > 1 else ""
        sc = "" if r.score is None or r.score != r.score else f"   (score {r.score:.2f}{more})"
        print(f"  #{r.id:<6d} {getattr(r, col):+.4f}  {r.label}{sc}")
    return 0


def _int(j):
    try:
        return int(j)
    except (TypeError, ValueError):
        return j


def _passes(rec, min_score, generic) -> bool:
    """A latent kept by `features explain`: not generic and (with a bar) a good enough label."""
    rec = rec or {}
    df, sc = rec.get("doc_freq"), rec.get("score")
    if df is not None and generic is not None and df > generic:
        return False
    return min_score is None or (sc is not None and sc >= min_score)
