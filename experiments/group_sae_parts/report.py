"""Outputs of experiments/group_sae.py: tables (CSV + markdown), plots, the transfer recovery
table and the results folder's README.md (rebuilt from run.json and the tables)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace


def transfer_recovery(trows: list[dict], n_tok: int) -> list[dict]:
    """Per layer and direction: quality at half the scratch budget as a share of the scratch
    run's final quality (CE-loss score ratio, and 'FVU recovered' = (1 - FVU) ratio)."""
    out = []
    for l in sorted({r["layer"] for r in trows}):
        sc = max((r for r in trows if r["layer"] == l and r["method"] == "scratch"),
                 key=lambda r: r["tokens"])
        for direction in ("forward", "backward"):
            rs = [r for r in trows if r["layer"] == l and r["method"] == direction]
            half = min(rs, key=lambda r: abs(r["tokens"] - n_tok / 2))
            zero = [r for r in rs if r["tokens"] == 0][0]
            out.append({"layer": l, "direction": direction, "scratch_tokens": sc["tokens"],
                        "transfer_tokens": half["tokens"],
                        "ce_score_scratch": sc["ce_loss_score"],
                        "ce_score_transfer": half["ce_loss_score"],
                        "ce_score_no_finetune": zero["ce_loss_score"],
                        "ce_recovery": half["ce_loss_score"] / sc["ce_loss_score"],
                        "fvu_scratch": sc["fvu"], "fvu_transfer": half["fvu"],
                        "fvu_no_finetune": zero["fvu"],
                        "one_minus_fvu_recovery": (1 - half["fvu"]) / (1 - sc["fvu"])})
    return out


def tokens_to_reach(points, target: float):
    """Fewest training tokens at which a curve [(tokens, value), ...] first reaches `target`,
    interpolated linearly between the two evaluated points around the crossing (the first point
    at or above it when nothing comes before), or None if no point reaches it."""
    pts = sorted(points)
    for i, (t, v) in enumerate(pts):
        if v >= target:
            if i == 0:
                return float(t)
            t0, v0 = pts[i - 1]
            return float(t0 + (t - t0) * (target - v0) / (v - v0))
    return None


def transfer_reach(trows: list[dict], n_tok: int, shares=(0.95, 0.99)) -> list[dict]:
    """Per layer and method (scratch, forward, backward): fine-tuning tokens needed to reach
    95% / 99% of the scratch run's final CE-loss score, as tokens and as a share of the scratch
    budget. A transferred run's curve starts at 0 tokens (the neighbour's SAE as it is); the
    scratch curve starts at its first checkpoint, so its own figure is an upper bound when the
    first checkpoint already reaches the target."""
    out = []
    for l in sorted({r["layer"] for r in trows}):
        sc = [r for r in trows if r["layer"] == l and r["method"] == "scratch"]
        final = max(sc, key=lambda r: r["tokens"])
        for method in ("scratch", "forward", "backward"):
            pts = [(r["tokens"], r["ce_loss_score"]) for r in trows
                   if r["layer"] == l and r["method"] == method]
            row = {"layer": l, "method": method, "scratch_final_ce_score": final["ce_loss_score"],
                   "scratch_tokens": final["tokens"]}
            for q in shares:
                t = tokens_to_reach(pts, q * final["ce_loss_score"])
                row[f"tokens_to_{round(q * 100)}pct"] = t
                row[f"share_of_scratch_budget_{round(q * 100)}pct"] = (
                    None if t is None else t / final["tokens"])
            out.append(row)
    return out


def frontier(summary: list[dict]) -> list[dict]:
    """AMAD against evenly spaced groups at every G both were trained at: FVU, CE-loss score
    and saving side by side, with the paired difference (AMAD minus even) and whether the two
    partitions are the same SAEs."""
    by = {(r["family"], r["G"]): r for r in summary}
    out = []
    for g in sorted({r["G"] for r in summary if r["family"] == "amad"}):
        a, e = by.get(("amad", g)), by.get(("even", g))
        if a is None or e is None:
            continue
        out.append({"G": g, "n_saes": a["n_saes"], "fvu_amad": a["fvu"], "fvu_even": e["fvu"],
                    "fvu_amad_minus_even": a["fvu"] - e["fvu"],
                    "ce_amad": a["ce_loss_score"], "ce_even": e["ce_loss_score"],
                    "ce_amad_minus_even": a["ce_loss_score"] - e["ce_loss_score"],
                    "saving_flops_separate_amad": a["saving_flops_separate_runs"],
                    "saving_flops_separate_even": e["saving_flops_separate_runs"],
                    "saving_flops_shared": a["saving_flops_shared_capture"],
                    "same_groups": bool(a.get("same_groups_as_even", False))})
    return out


def plot_frontier(summary: list[dict], path, chosen_g: int) -> None:
    """Cost against quality over G: compute saved (FLOPs, separate runs, the papers'
    accounting) against mean FVU and mean CE-loss score, one line per grouping, per-layer SAEs
    at zero saving."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for fam, style in (("amad", "b-o"), ("even", "r-s")):
        rows = sorted((r for r in summary if r["family"] == fam), key=lambda r: r["G"])
        for ax, key in zip(axes, ("fvu", "ce_loss_score")):
            x = [100 * r["saving_flops_separate_runs"] for r in rows]
            ax.plot(x, [r[key] for r in rows], style, ms=4, label=f"{fam} groups")
            for r, xi in zip(rows, x):
                ax.annotate(f"G{r['G']}" + ("*" if fam == "amad" and r["G"] == chosen_g else ""),
                            (xi, r[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for r in summary:
        if r["family"] in ("per_layer", "small"):
            for ax, key in zip(axes, ("fvu", "ce_loss_score")):
                ax.plot(100 * r["saving_flops_separate_runs"], r[key],
                        "k^" if r["family"] == "per_layer" else "gv", ms=7,
                        label=r["method"])
    for ax, lab in zip(axes, ("mean held-out FVU (lower is better)",
                              "mean CE-loss score (higher is better)")):
        ax.set_xlabel("compute saved vs per-layer SAEs, % of FLOPs (separate runs)")
        ax.set_ylabel(lab)
        ax.legend(fontsize=7)
    axes[0].set_title(f"cost-quality frontier over G (* = AMAD's choice, G={chosen_g})",
                      fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(stem: Path, rows: list[dict]) -> None:
    import pandas as pd
    df = pd.DataFrame(rows)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.5g")
    stem.with_suffix(".md").write_text(markdown(df) + "\n")


def markdown(df) -> str:
    cols = list(df.columns)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def plot_methods(rows, names, path, groups) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for n in names:
        sub = sorted((r for r in rows if r["method"] == n), key=lambda r: r["layer"])
        ax.plot([r["layer"] for r in sub], [r["fvu"] for r in sub], marker="o", ms=3, label=n)
    for g in groups[:-1]:
        ax.axvline(max(g) + 0.5, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("layer")
    ax.set_ylabel("held-out FVU")
    ax.set_title("FVU by layer (dotted: AMAD group boundaries)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_transfer(trows, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = sorted({r["layer"] for r in trows})
    fig, axes = plt.subplots(2, len(layers), figsize=(4.2 * len(layers), 6.4), squeeze=False)
    for j, l in enumerate(layers):
        for method, style in (("scratch", "k-o"), ("forward", "b-s"), ("backward", "r-^")):
            sub = sorted((r for r in trows if r["layer"] == l and r["method"] == method),
                         key=lambda r: r["tokens"])
            for i, key in enumerate(("fvu", "ce_loss_score")):
                axes[i, j].plot([r["tokens"] for r in sub], [r[key] for r in sub], style,
                                ms=4, label=method)
        axes[0, j].set_title(f"layer {l}")
        axes[0, j].set_ylabel("held-out FVU")
        axes[1, j].set_ylabel("CE-loss score")
        axes[1, j].set_xlabel("training tokens (0 = neighbour SAE, no fine-tuning)")
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"


def write_summary(out: Path) -> None:
    """README.md of a results folder, rebuilt from its run.json and tables (so
    `--summary-only` can redo it without retraining). Every figure in it is read from the
    tables; the sentences that compare with the papers are chosen by those figures."""
    import pandas as pd
    log = json.loads((out / "run.json").read_text())
    s = SimpleNamespace(**log["settings"])
    grouping = json.loads((out / "grouping.json").read_text())
    methods = pd.read_csv(out / "methods.csv")
    front = pd.read_csv(out / "frontier.csv")
    rec = pd.read_csv(out / "transfer_recovery.csv")
    reach = pd.read_csv(out / "transfer_reach.csv")
    trans = pd.read_csv(out / "transfer.csv")
    L = log["n_layers"]
    amad = ", ".join(f"{g}: {v:.3f}" for g, v in grouping["amad"].items() if int(g) <= 12)
    n_tok = log["sae_tokens"]
    cmd = log.get("command", "python experiments/group_sae.py")
    base = methods[methods.method == "per_layer"].iloc[0]
    a = methods[methods.method == "amad_groups"].iloc[0]
    e = methods[methods.method == "even_groups"].iloc[0]
    small = methods[methods.family == "small"]
    chosen = grouping["chosen_g"]

    # convergence: the scratch (per-layer) curves at the transfer layers
    sc = trans[trans.method == "scratch"]
    conv = []
    for l, grp in sc.groupby("layer"):
        grp = grp.sort_values("tokens")
        half = grp.iloc[(grp.tokens - n_tok / 2).abs().argmin()]
        last = grp.iloc[-1]
        conv.append((l, half.fvu, last.fvu, (half.fvu - last.fvu) / half.fvu))
    conv_txt = "; ".join(f"layer {l}: {h:.4f} -> {f:.4f} ({d:.1%})" for l, h, f, d in conv)

    worst = max(d for *_, d in conv)
    flat = ("The curve has flattened (at most a {:.1%} fall over the last half).".format(worst)
            if worst < 0.03 else
            "The curve is flattening but not flat (up to a {:.1%} fall over the last half): the "
            "methods are ranked near, not at, convergence, and every FVU would fall by a few "
            "thousandths more with a larger budget.".format(worst) if worst < 0.10 else
            "The curve is still falling ({:.1%} over the last half): the methods are ranked "
            "before convergence, and a larger budget could change the ranking.".format(worst))
    total_h = (log["capture_seconds"] + log["distance_seconds"] + log["distinct_sae_seconds"]
               + log["eval_seconds"]) / 3600

    # AMAD against even groups at every G where the partitions differ
    diff = front[~front.same_groups.astype(bool)]
    n_win = int((diff.fvu_amad_minus_even < 0).sum())
    n_ce = int((diff.ce_amad_minus_even > 0).sum())

    # transfer: tokens to 95% / 99% of scratch's final CE-loss score
    tr = reach[reach.method != "scratch"]
    zero = trans[(trans.method != "scratch") & (trans.tokens == 0)]

    def reach_txt(q):
        col = f"share_of_scratch_budget_{q}pct"
        parts = []
        for m in ("forward", "backward"):
            v = tr[tr.method == m][col]
            n_no = int(v.isna().sum())
            parts.append(f"{m} median {_pct(v.median())} (range {_pct(v.min())}-"
                         f"{_pct(v.max())}" + (f"; {n_no} layers never" if n_no else "") + ")")
        return "; ".join(parts)

    sec_txt = "; ".join(
        f"d_sae {w}: {v['seconds']:.0f} s, the median of {v['n_saes']} of its {v['of']} SAEs"
        + (", those trained with the allocator tuned" if v.get("allocator_tuned") else "")
        for w, v in log.get("sae_seconds_median", {}).items())
    paper_fvu_ok = a.fvu_cost_vs_per_layer <= 0.01
    paper_save_ok = a.saving_flops_separate_runs >= 0.40
    text = f"""# Group-SAE and layer-wise transfer on SmolLM2-135M (CPU)

```
{cmd}
```

All settings are in run.json. The command resumes: every trained SAE is cached under
$FINSAE_CACHE with its measured seconds, so it can be run in pieces (this one was, across
sessions on a 2-core CPU) and a rerun trains only what is missing, then evaluates and writes
this folder.

**Compute.** Capture {log['capture_seconds']:.0f} s ({log['capture_tokens']:,} tokens through
all {L} blocks), angular distances {log['distance_seconds']:.0f} s, SAE training
{log['distinct_sae_seconds'] / 3600:.2f} h for {log['distinct_saes']} distinct SAEs (the methods
ask for {log['saes_asked']}; a group that recurs across G and methods, such as AMAD's nested
partitions, G = 1 or the last layer alone, is the same SAE and is trained once), evaluation
{log['eval_seconds'] / 60:.0f} min: {total_h:.1f} h of wall time in all. Timings come from one shared machine and move with its load:
compare them as ratios.

**Scale.** The papers train every SAE on about 1B tokens. Here: {log['train_tokens_captured']:,}
training tokens per layer, captured once with a hook on every block, {log['train_tokens_captured']
- log['train_tokens_kept']:,} dropped as massive (norm > {s.massive_factor} x the layer median at
any layer: the attention sink at the first position of every {s.seq_len}-token chunk, and a few
more); every SAE is trained on {n_tok:,} tokens ({log['sae_epochs']:.1f} passes): TopK,
d_sae={s.d_sae}, k={s.k}, batch {s.batch_size}, Adam lr {s.lr}, the training recipe of
finsae.sae.train. FVU, L0 and dead fraction over {log['eval_tokens_kept']:,} held-out tokens;
CE-loss score and delta LM loss over {s.ce_tokens:,} held-out tokens at layers {s.ce_layers}
(each point is a spliced forward). Held-out FVU of the per-layer SAEs over the last half of the
budget: {conv_txt} (transfer_curves.png, top row). {flat}

## Angular distance and AMAD

{log['distance_tokens']:,} tokens, centring: {s.center} (finsae/sae/layer_distance.py).
Complete linkage on layers 0..{L - 2}, last layer alone; G counts groups before the last layer.
AMAD(G), G = 1..12: {amad}. Pythia-160M in the paper: 0.450, 0.372, 0.314, 0.267, 0.231, 0.179
(G = 1..6). Chosen G = {chosen} (smallest with AMAD < {grouping['threshold']}):
{len(grouping['groups'])} SAEs, {grouping['groups']}. Evenly spaced groups at the same G:
{log['grouping']['even_groups']}. Heatmap: angular_distance.png; table: amad.md.

## Methods (means over all {L} layers; CE metrics over the CE layers)

{markdown(methods[["method", "n_saes", "d_sae", "fvu", "ce_loss_score", "delta_lm_loss", "l0",
                   "dead_fraction", "train_seconds", "saving_flops_separate_runs",
                   "saving_flops_shared_capture", "saving_seconds_separate_runs",
                   "saving_seconds_shared_capture", "fvu_cost_vs_per_layer",
                   "ce_score_cost_vs_per_layer"]])}

Per layer and method: per_layer_metrics.csv, fvu_by_layer.png; every column: methods.csv.
Savings are against per-layer SAEs. "Separate runs": each SAE's training run does its own LM
forward up to its deepest layer (the papers' accounting); "shared capture": one forward
captures every layer for all SAEs, so only SAE training is saved. FLOPs: 2*d*m + 8*k*d per SAE
training token (sparse TopK), (2*params + 2*d*seq) per token per block for the LM. Seconds:
the measured capture time per token and block, and per SAE the median measured training time
of its width ({sec_txt}): every SAE of one width does the same work, and a run made in pieces
mixes conditions (train_seconds, the raw sum per method, shows them).

**Against the Group-SAE paper** (Pythia-160M: 42.5% of compute saved, FVU about 0.01 worse):
AMAD's {len(grouping['groups'])} SAEs save {_pct(a.saving_flops_separate_runs)} of FLOPs
({_pct(a.saving_seconds_separate_runs)} of measured seconds) in the papers' accounting and
{_pct(a.saving_flops_shared_capture)} ({_pct(a.saving_seconds_shared_capture)}) with a shared
capture, at an FVU cost of {a.fvu_cost_vs_per_layer:+.4f} (per-layer FVU {base.fvu:.4f}), a
CE-loss-score cost of {a.ce_score_cost_vs_per_layer:+.4f} and a delta LM loss of
{a.delta_lm_loss:.4f} against {base.delta_lm_loss:.4f} nats. The saving
{"reaches" if paper_save_ok else "falls short of"} the paper's 40%, and the FVU cost is
{"within" if paper_fvu_ok else "above"} its 0.01.

## The frontier over G, and AMAD against evenly spaced groups

{markdown(front)}

frontier.png plots compute saved (FLOPs, separate runs) against mean FVU and CE-loss score for
both groupings, with per-layer SAEs and the equal-compute small per-layer SAEs
({", ".join(f"{r.method}: FVU {r.fvu:.4f}, CE score {r.ce_loss_score:.4f}"
            for r in small.itertuples())}). Where the two partitions differ
({len(diff)} values of G), AMAD's groups have the lower FVU at {n_win} and the higher CE-loss
score at {n_ce}; mean FVU difference (AMAD minus even) {diff.fvu_amad_minus_even.mean():+.4f}.
At the chosen G = {chosen}: AMAD FVU {a.fvu:.4f} against even {e.fvu:.4f}, CE-loss score
{a.ce_loss_score:.4f} against {e.ce_loss_score:.4f}. One seed per SAE: differences of a few
thousandths of FVU are within what a different seed moves.

## Layer-wise transfer

Forward = layer l's SAE initialised from the per-layer SAE of l-1, backward = from l+1, then
fine-tuned on layer l at lr {s.lr * s.transfer_lr_scale:g} for the full budget, checkpointed
every 1/{log.get('transfer_checkpoints', 16)} of it; scratch = the per-layer run's own
checkpoints. tokens = 0 is the neighbour's SAE with no fine-tuning. Curves:
transfer_curves.png; every point: transfer.csv.

Fine-tuning tokens needed to reach 95% and 99% of the scratch run's final CE-loss score, as a
share of the scratch budget (interpolated between evaluated checkpoints; scratch's own figure
is an upper bound when its first checkpoint already reaches the target):

{markdown(reach)}

- 95%: {reach_txt(95)}.
- 99%: {reach_txt(99)}.
- With no fine-tuning the neighbour's SAE scores a CE-loss score of
  {zero.ce_loss_score.min():.3f}-{zero.ce_loss_score.max():.3f} (paper: 0.70-0.94), FVU
  {zero.fvu.min():.3f}-{zero.fvu.max():.3f}.
- Paper (Pythia-160M, 1B-token scratch): transfer reaches 0.956-0.961 against scratch's
  0.963-0.965 after 100M tokens, i.e. 99.3-99.6% of scratch's score with 10% of its tokens.

Quality at half the scratch budget as a share of scratch's final (paper: >= 90% of the gap
with half the tokens):

{markdown(rec)}

## Caveats

- A transferred SAE has also seen its neighbour's {n_tok:,} training tokens; the shares above
  count only its own fine-tuning tokens, as the paper does. Counting both, transfer costs more
  than scratch: its saving comes only when the neighbour's SAE is needed anyway.
- One seed per SAE, {s.ce_tokens:,} tokens per CE point at {len(str(s.ce_layers).split(','))}
  layers. The scale is {n_tok / 1e6:.2f}M tokens per SAE against the papers' 1,000M, on a 135M
  model with d_sae {s.d_sae}: the papers' absolute numbers are not expected, their comparisons
  are what is tested.
- The equal-compute small per-layer SAEs match training FLOPs, not seconds.
"""
    (out / "README.md").write_text(text)
