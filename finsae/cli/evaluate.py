"""`finsae evaluate`: every method's peer metrics and MeanCorr on one universe, with a table,
plots and JSON.

Example: ``finsae evaluate --methods gics_sub_industry tfidf minilm random --out runs/eval``
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from ..data.errors import DataError
from ..methods import EvaluateConfig
from .common import feature_universe, load_feature_set, settings_parser
from .options import dataclass_from_args, flag_name

OLD_FLAGS = {"n_seeds": ("--seeds",)}


def register(subparsers) -> None:
    p = settings_parser(
        subparsers, "evaluate", "peer R², kNN-10 and MeanCorr of clusters vs SIC, GICS, "
        "embeddings and baselines", "Every-firm peer metrics (docs/evaluation.md) and the "
        "within-cluster return correlation (MeanCorr) of each method on one universe, per year, "
        "in-sample and out-of-sample, with bootstrap CIs, coverage and cluster count.",
        EvaluateConfig, flags=OLD_FLAGS)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write meancorr.csv, by_year.csv, peers_by_year.csv, results.json and "
                        "PNG plots here")
    p.set_defaults(func=run)



def make_context(args, cfg: EvaluateConfig):
    """The `EvalContext` of the flags: companies, prices, universe, the feature set."""
    from ..data.companies import load_companies
    from ..data.prices import load_prices
    from ..methods import EvalContext
    from ..methods.context import check_price_years, year_range
    cfg.check(flag_name)
    companies = load_companies(args.companies)
    prices = load_prices(args.prices)
    check_price_years(prices, year_range(cfg.years), str(prices.attrs.get("source",
                                                                          args.prices)))
    fs = load_feature_set(args.features)
    ctx = EvalContext.from_config(companies, prices, cfg, features=fs,
                                  universe=feature_universe(companies, prices, fs))
    if len(ctx.universe) < 2:
        raise DataError("fewer than 2 companies have a description, SIC, all GICS levels and "
                        "prices: nothing to evaluate")
    return ctx


def run(args) -> int:
    from ..evaluate.report import format_table
    from ..methods import evaluate_methods
    cfg = dataclass_from_args(EvaluateConfig, args)
    cfg.methods = list(dict.fromkeys(cfg.methods))
    log = (lambda s: print(s, file=sys.stderr)) if args.json else None
    ctx = make_context(args, cfg)
    ev = evaluate_methods(ctx, cfg.methods, log)
    payload = ev.to_dict(cfg.ci_by, cfg.n_boot)
    if args.out:
        ev.save(args.out, cfg.ci_by, cfg.n_boot)
    if args.json:
        json.dump(payload, sys.stdout, indent=1)
        print()
        return 0
    print(f"universe: {len(ctx.universe)} companies; years {min(ctx.years)}-"
          f"{max(ctx.years)} ({'monthly' if ctx.freq == 'M' else 'daily'} returns), "
          f"in-sample {min(ctx.fit_years)}-{max(ctx.fit_years)}; K = {ctx.k}")
    print(format_table(ev.table()))
    for n, d in ev.restricted.items():
        print(f"\nrestricted to the companies {n} covers:")
        print(format_table(pd.DataFrame([r.summary() for r in d.values()])))
    if args.out:
        print(f"\nwrote {args.out}")
    return 0
