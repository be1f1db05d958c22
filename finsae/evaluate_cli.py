"""`finsae evaluate`: MeanCorr of every method on one universe, with a table, plots and JSON.

Example: ``finsae evaluate --methods gics_sub_industry tfidf minilm random --out runs/eval``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .data.errors import DataError
from .evaluate.peers import KNN


def _years(text: str) -> tuple[int, ...]:
    try:
        a, _, b = text.partition("-")
        lo, hi = int(a), int(b or a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"years must look like 2001-2020, not {text!r}")
    if hi < lo:
        raise argparse.ArgumentTypeError(f"empty year range {text!r}")
    return tuple(range(lo, hi + 1))


def context_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import common_inputs
    common_inputs(p)
    p.add_argument("--years", type=_years, default=_years("2001-2020"),
                   help="scored years (default 2001-2020)")
    p.add_argument("--fit-years", type=_years, default=_years("2001-2010"),
                   help="in-sample years that fix every choice (threshold, lookback); the other "
                        "scored years are out-of-sample (default 2001-2010)")
    p.add_argument("--freq", choices=("M", "D"), default="M",
                   help="returns correlated within a year: M = 12 monthly (default), D = daily")
    p.add_argument("--k", type=int, default=None,
                   help="clusters for vector methods (default: number of GICS sub-industries "
                        "in the universe)")
    p.add_argument("--seeds", type=int, default=100, help="random partitions (default 100)")
    p.add_argument("--linkage", choices=("average", "ward", "complete", "single"),
                   default="average",
                   help="agglomerative linkage for vector methods, on cosine distance (ward: on "
                        "L2-normalised vectors) (default average)")
    p.add_argument("--min-coverage", type=float, default=0.0,
                   help="MST methods: thresholds covering less than this share of the "
                        "companies are never chosen (default 0)")
    p.add_argument("--max-cluster-share", type=float, default=1.0,
                   help="MST methods: thresholds whose largest cluster holds more than this "
                        "share of the companies (a giant component) are never chosen "
                        "(default 1: no limit, the paper's protocol)")


def check_context_args(args) -> None:
    """Ranges of the options shared by evaluate and cluster, before any data is read."""
    from . import config_check as cc
    if args.k is not None:
        cc.integer(args.k, "--k", minimum=2)
    cc.integer(args.seeds, "--seeds", minimum=1)
    cc.number(args.min_coverage, "--min-coverage", minimum=0, maximum=1)
    cc.number(args.max_cluster_share, "--max-cluster-share", minimum=0, maximum=1,
              strict_min=True)


def check_price_years(prices, years, source: str) -> None:
    """Every scored year has prices, else one error naming the file and its date range."""
    have = set(prices.index.year) if len(prices) else set()
    missing = [y for y in years if y not in have]
    if missing:
        span = (f"{len(prices)} days, {prices.index[0].date()} .. {prices.index[-1].date()}"
                if len(prices) else "no days")
        if len(missing) == 1:
            miss = f"year {missing[0]}"
        elif missing == list(range(missing[0], missing[-1] + 1)):
            miss = f"years {missing[0]}-{missing[-1]}"
        else:
            miss = "years " + ", ".join(map(str, missing[:6])) + (" ..." if len(missing) > 6
                                                                  else "")
        raise DataError(f"prices cover {span}: none in {miss} of the scored years "
                        f"{min(years)}-{max(years)}; pass --years within the prices",
                        path=source)


def make_context(args):
    from .data.companies import load_companies
    from .data.prices import load_prices
    from .methods import EvalContext
    check_context_args(args)
    companies = load_companies(args.companies)
    prices = load_prices(args.prices)
    check_price_years(prices, args.years, str(prices.attrs.get("source", args.prices)))
    ctx = EvalContext(companies, prices, years=args.years, fit_years=args.fit_years,
                      freq=args.freq, k=args.k, n_seeds=args.seeds,
                      min_coverage=args.min_coverage,
                      max_cluster_share=args.max_cluster_share, linkage=args.linkage)
    if len(ctx.universe) < 2:
        raise DataError("fewer than 2 companies have a description, SIC, all GICS levels and "
                        "prices: nothing to evaluate")
    return ctx


def register(subparsers) -> None:
    from .methods import DEFAULT_METHODS
    p = subparsers.add_parser(
        "evaluate", help="MeanCorr of clusters vs SIC, GICS, embeddings and baselines",
        description="Within-cluster return correlation (MeanCorr) of each method on one "
                    "universe, per year, in-sample and out-of-sample, with bootstrap CIs, "
                    "pair-weighted figure, coverage and cluster count.")
    context_arguments(p)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                   help="methods to score (default: %(default)s); vector methods also take the "
                        "suffixes _kmeans, _mst, _mst_rolling (e.g. tfidf_mst) and a cluster "
                        "count after @ (tfidf@gics_sector, minilm_kmeans@50)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write meancorr.csv, by_year.csv, results.json and PNG plots here")
    p.add_argument("--ci-by", choices=("year", "cluster"), default="year",
                   help="bootstrap unit of the confidence intervals (default year)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws (default 2000)")
    p.set_defaults(func=run)


def evaluate_all(ctx, names, log=None):
    """(results by method, resolved methods, restricted comparisons for MST methods); see
    `finsae.methods.evaluate_methods` for the full `Evaluation` with the peer metrics."""
    from .methods import evaluate_methods
    ev = evaluate_methods(ctx, names, log)
    return ev.results, ev.resolved, ev.restricted


def run(args) -> int:
    from .methods import evaluate_methods
    names = list(dict.fromkeys(args.methods))
    log = (lambda s: print(s, file=sys.stderr)) if args.json else None
    ctx = make_context(args)
    ev = evaluate_methods(ctx, names, log)
    results, resolved, restricted = ev.results, ev.resolved, ev.restricted
    table = ev.table()
    payload = {
        "universe": {"n_companies": len(ctx.universe),
                     "companies": ctx.companies.attrs.get("source"),
                     "description_vintage": ctx.companies.attrs.get("vintage"),
                     "prices": ctx.prices.attrs.get("source")},
        "protocol": {"freq": ctx.freq, "years": [min(ctx.years), max(ctx.years)],
                     "in_sample": [min(ctx.fit_years), max(ctx.fit_years)],
                     "out_of_sample": sorted(set(ctx.years) - set(ctx.fit_years)),
                     "k": ctx.k, "n_seeds_random": ctx.n_seeds,
                     "mst_min_coverage": ctx.min_coverage,
                     "mst_max_cluster_share": ctx.max_cluster_share,
                     "linkage": ctx.linkage, "knn": KNN, "baseline": ev.baseline,
                     "metric": "mean over years of the unweighted mean over clusters of the "
                               "mean within-cluster pairwise Pearson correlation",
                     "peer_metrics": "firm means per year of daily-return R² on the equal-"
                                     "weighted peer mean (docs/evaluation.md), then years"},
        "methods": {n: {**d, "choice": _jsonable(resolved[n].notes)}
                    for n, d in ev.method_dicts(args.ci_by, args.n_boot).items()},
    }
    if restricted:
        payload["restricted_to_mst_coverage"] = {
            n: {o: {k: v for k, v in r.to_dict(args.ci_by, args.n_boot).items()
                    if k != "by_year"} for o, r in d.items()} for n, d in restricted.items()}
    if args.out:
        write_outputs(Path(args.out), table, results, resolved, restricted, payload, ctx,
                      ev.peers)
    if args.json:
        json.dump(payload, sys.stdout, indent=1)
        print()
    else:
        print(f"universe: {len(ctx.universe)} companies; years {min(ctx.years)}-"
              f"{max(ctx.years)} ({'monthly' if ctx.freq == 'M' else 'daily'} returns), "
              f"in-sample {min(ctx.fit_years)}-{max(ctx.fit_years)}; K = {ctx.k}")
        print(format_table(table))
        for n, d in restricted.items():
            print(f"\nrestricted to the companies {n} covers:")
            print(format_table(pd.DataFrame([r.summary() for r in d.values()])))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0


def format_table(table: pd.DataFrame) -> str:
    cols = ["peer_r2_in", "peer_r2_out", "knn_r2_in", "knn_r2_out", "delta_r2_out",
            "mean_corr", "in_sample", "out_of_sample", "pair_weighted", "coverage",
            "n_clusters", "k"]
    t = table[[c for c in cols if c in table]].copy()
    return t.to_string(float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def write_outputs(out: Path, table, results, resolved, restricted, payload, ctx,
                  peers: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.rename_axis("method").to_csv(out / "meancorr.csv", float_format="%.5f")
    long = pd.concat({n: r.by_year for n, r in results.items()}, names=["method", "year"])
    if peers:
        pd.concat({n: p.by_year for n, p in peers.items()}, names=["method", "year"]).to_csv(
            out / "peers_by_year.csv", float_format="%.5f")
    long.to_csv(out / "by_year.csv", float_format="%.5f")
    if restricted:
        rows = [r.summary().rename(f"{o} within {n}") for n, d in restricted.items()
                for o, r in d.items()]
        pd.DataFrame(rows).rename_axis("method").to_csv(out / "meancorr_restricted.csv",
                                                        float_format="%.5f")
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    plot_by_year(results, out / "meancorr_by_year.png")
    if peers:
        plot_peers_by_year(peers, out / "peer_r2_by_year.png")
    plot_cluster_sizes(resolved, ctx, out / "cluster_sizes.png")


def plot_by_year(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = plt.get_cmap("tab20").colors
    for i, (n, r) in enumerate(results.items()):
        ax.plot(r.by_year.index, r.by_year["mean_corr"], marker=".", label=n,
                color=colors[i % len(colors)], linestyle="-" if i < 20 else "--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fit = r.in_sample
    if fit:
        ax.axvspan(min(fit) - 0.5, max(fit) + 0.5, color="0.9", zorder=0, label="in-sample")
    ax.set_xlabel("year")
    ax.set_ylabel("MeanCorr (within-cluster return correlation)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_peers_by_year(peers: dict, path: Path) -> None:
    """Peer R² (cluster peers) and kNN-10 R² by year, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    colors = plt.get_cmap("tab20").colors
    for ax, col, title in zip(axes, ("peer_r2", "knn_r2"),
                              ("peer R² (cluster peers; market if none)", "kNN-10 peer R²")):
        for i, (n, p) in enumerate(peers.items()):
            ax.plot(p.by_year.index, p.by_year[col], marker=".", label=n,
                    color=colors[i % len(colors)])
        fit = p.in_sample
        if fit:
            ax.axvspan(min(fit) - 0.5, max(fit) + 0.5, color="0.9", zorder=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("year (shaded: in-sample)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R² of daily returns on the peer mean, firm average")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cluster_sizes(resolved: dict, ctx, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .cluster import cluster_sizes
    names = list(resolved)
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    last = max(ctx.years)
    for ax, n in zip(axes.flat, names):
        p = resolved[n].partition
        p = p[0] if isinstance(p, list) else p
        p = p[last] if isinstance(p, dict) else p
        sizes = cluster_sizes(p)
        sizes = sizes[sizes >= 2]
        ax.bar(np.arange(1, len(sizes) + 1), sizes.to_numpy(), width=1.0)
        ax.set_yscale("log")
        ax.set_xlabel("cluster rank", fontsize=7)
        covered = int(sizes.sum())
        ax.set_title(f"{n}: K={len(sizes)}, {covered}/{len(ctx.universe)}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("cluster sizes, largest first (clusters of >= 2; per-year methods: last "
                 "year; random: first seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
