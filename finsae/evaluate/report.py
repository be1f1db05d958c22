"""The files of an evaluation: tables (CSV), results.json and plots (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_evaluation(out: Path, ev, payload: dict) -> Path:
    """`ev` (a `finsae.methods.Evaluation`) and its `payload` (``ev.to_dict()``) into `out`."""
    from ..jsonable import write_json
    out.mkdir(parents=True, exist_ok=True)
    ev.table().rename_axis("method").to_csv(out / "meancorr.csv", float_format="%.5f")
    long = pd.concat({n: r.by_year for n, r in ev.results.items()}, names=["method", "year"])
    pd.concat({n: p.by_year for n, p in ev.peers.items()}, names=["method", "year"]).to_csv(
        out / "peers_by_year.csv", float_format="%.5f")
    long.to_csv(out / "by_year.csv", float_format="%.5f")
    if ev.restricted:
        rows = [r.summary().rename(f"{o} within {n}") for n, d in ev.restricted.items()
                for o, r in d.items()]
        pd.DataFrame(rows).rename_axis("method").to_csv(out / "meancorr_restricted.csv",
                                                        float_format="%.5f")
    write_json(out / "results.json", payload)
    plot_by_year(ev.results, out / "meancorr_by_year.png")
    plot_peers_by_year(ev.peers, out / "peer_r2_by_year.png")
    plot_cluster_sizes(ev.resolved, ev.ctx, out / "cluster_sizes.png")
    return out


def format_table(table: pd.DataFrame) -> str:
    """The evaluation table as text: peer metrics first, then MeanCorr."""
    cols = ["peer_r2_in", "peer_r2_out", "knn_r2_in", "knn_r2_out", "delta_r2_out",
            "mean_corr", "in_sample", "out_of_sample", "pair_weighted", "coverage",
            "n_clusters", "k"]
    t = table[[c for c in cols if c in table]].copy()
    return t.to_string(float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")


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

    from ..cluster import cluster_sizes
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
