"""`finsae cluster`: one method's clusters of the evaluation universe.

Example: ``finsae cluster --method tfidf --k 127 --out clusters.csv``
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from ..data.errors import DataError
from ..methods import EvaluateConfig
from .common import settings_parser
from .evaluate import OLD_FLAGS, make_context
from .options import dataclass_from_args


def register(subparsers) -> None:
    c = settings_parser(
        subparsers, "cluster", "cluster the universe (MST threshold, agglomerative, k-means, "
        "labels)", "Cluster the evaluation universe with one method (any name `finsae evaluate "
        "--methods` takes) and print or write ticker -> cluster.", EvaluateConfig,
        skip=("methods", "ci_by", "n_boot"), flags=OLD_FLAGS)
    c.add_argument("--method", default="tfidf",
                   help="e.g. tfidf, minilm, tfidf_kmeans, tfidf_mst, gics_sub_industry, "
                        "returns (default: %(default)s)")
    c.add_argument("--theta", type=float, default=None,
                   help="MST methods: use this z-scored distance threshold instead of choosing "
                        "it on the in-sample years")
    c.add_argument("--year", type=int, default=None,
                   help="for per-year partitions (returns, *_mst_rolling): which year "
                        "(default: the last scored year)")
    c.add_argument("--out", metavar="CSV", default=None, help="write ticker,cluster,... here")
    c.set_defaults(func=run_cluster)


def run_cluster(args) -> int:
    from .. import cluster as cl
    from ..jsonable import jsonable
    from ..methods import Method, resolve
    cfg = dataclass_from_args(EvaluateConfig, args)
    ctx = make_context(args, cfg)
    if args.theta is not None:
        base = args.method.removesuffix("_rolling").removesuffix("_mst")
        if not args.method.endswith(("_mst", "_mst_rolling")):
            raise DataError("--theta applies only to MST methods (e.g. tfidf_mst)")
        m = Method(args.method, cl.mst_threshold(ctx.vectors(base), args.theta),
                   {"algorithm": "mst_threshold", "theta": args.theta})
    else:
        m = resolve(args.method, ctx)
    part = m.partition
    if isinstance(part, list):
        part = part[0]
    year = None
    if isinstance(part, dict):
        year = args.year or max(part)
        if year not in part:
            raise DataError(f"{args.method} has no partition for {year} "
                            f"({min(part)}-{max(part)})")
        part = part[year]
    if not isinstance(part, pd.Series):
        raise DataError(f"{args.method} gives candidate pairs, not clusters")
    t = ctx.table
    sizes = part.value_counts()
    out = pd.DataFrame({"ticker": part.index, "cluster": part.to_numpy()})
    out["size"] = out["cluster"].map(sizes).to_numpy()
    out = out[out["size"] >= 2].sort_values(["size", "cluster", "ticker"],
                                            ascending=[False, True, True])
    out["name"] = t.loc[out["ticker"], "name"].to_numpy()
    out["gics_sub_industry"] = t.loc[out["ticker"], "gics_sub_industry"].to_numpy()
    summary = {"method": args.method, "year": year, "n_companies": len(ctx.universe),
               "n_clusters": int(out["cluster"].nunique()), "n_covered": len(out),
               "coverage": len(out) / len(ctx.universe), "choice": jsonable(m.notes)}
    if args.out:
        from ..safe_csv import to_csv
        to_csv(out, args.out, index=False)  # names and labels are text: no formula cells
    if args.json:
        json.dump({**summary, "clusters": {str(c): g["ticker"].tolist()
                                           for c, g in out.groupby("cluster", sort=False)}},
                  sys.stdout, indent=1)
        print()
        return 0
    print(f"{args.method}: {summary['n_clusters']} clusters covering {len(out)} of "
          f"{len(ctx.universe)} companies" + (f" ({year})" if year else "")
          + (f"; {m.notes}" if m.notes else ""))
    for c, g in out.groupby("cluster", sort=False):
        tick = g["ticker"].tolist()
        shown = ", ".join(tick[:12]) + (f" ... (+{len(tick) - 12})" if len(tick) > 12 else "")
        print(f"  [{len(tick):3d}] {shown}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
