"""`finsae data check`: validate the inputs and print their coverage."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from .common import common_inputs

    p = sub.add_parser("data", help="validate inputs and print coverage")
    verbs = p.add_subparsers(dest="data_verb", metavar="VERB", required=True)
    check = verbs.add_parser("check", help="validate companies and prices; print coverage")
    common_inputs(check)
    check.add_argument("--vintage", default="latest",
                       help="description vintage of the bundled table: latest, financedatabase, "
                            "c2016 or earliest")
    check.set_defaults(func=run_check)


def run_check(args) -> int:
    from ..data.companies import load_companies
    from ..data.coverage import coverage, coverage_table
    from ..data.prices import load_prices

    companies = load_companies(args.companies, vintage=args.vintage)
    prices = load_prices(args.prices)
    cov = coverage(companies, prices)
    reports = [r for r in (companies.attrs.get("report"), prices.attrs.get("report")) if r]
    cov["inputs"] = {"companies": companies.attrs["source"], "prices": prices.attrs["source"],
                     "description_vintage": companies.attrs["vintage"]}
    cov["skipped"] = [r.to_dict() for r in reports]
    if args.json:
        json.dump(cov, sys.stdout, indent=1)
        print()
        return 0
    print(f"companies: {cov['inputs']['companies']} (descriptions: {args.vintage})")
    print(f"prices:    {cov['inputs']['prices']} ({cov['price_dates'][0]} .. {cov['price_dates'][1]})")
    print()
    print(coverage_table(cov))
    for r in reports:
        if r.n_skipped:
            print()
            print(r.summary())
    return 0
