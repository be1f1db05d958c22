"""Group-SAE and layer-wise transfer on SmolLM2-135M: the papers' experiments, scaled down.

    python experiments/group_sae.py                  # CPU-sized defaults (see Settings)
    python experiments/group_sae.py --train-tokens 2000000 --d-sae 9216 --k 64 --device cuda
    python experiments/group_sae.py --plan ...       # what those settings train and cost

Writes tables (CSV + markdown), plots (PNG) and a README into --out (runs/group_sae unless
given; the committed results in experiments/results/group_sae came from the command at the top
of their README). Every setting is a
command-line flag (`--help`). Activations are captured once, with hooks on every block
(`finsae.lm.capture_blocks` on `pack_tokens` chunks), and cached under
$FINSAE_CACHE/group_sae/<hash of the capture settings>; the capture's measured seconds are
stored with them so the cost model uses the time the capture really took. Each trained SAE is
kept there too (under a hash of the training settings) and marked done when saved, so a rerun
of the same command, after an interruption, trains only the SAEs not yet finished. The CE splices run
only the blocks after the layer (`finsae.sae.SpliceEvaluator`). Tables, plots and README:
group_sae_parts/report.py; the methods' groups and --plan: group_sae_parts/plan.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from group_sae_parts.plan import floats, ints, measure, method_specs, plan, show  # noqa: E402
from group_sae_parts.report import (frontier, plot_frontier, plot_methods,  # noqa: E402
                                    plot_transfer, transfer_reach, transfer_recovery,
                                    write_summary, write_table)

from finsae.allocator import tune_allocator  # noqa: E402
from finsae.data.paths import cache_dir  # noqa: E402
from finsae.hashing import Hasher  # noqa: E402
from finsae.lm import capture_blocks, decoder_layers, forward_from, load_lm, pack_tokens  # noqa: E402,E501
from finsae.sae import (SAEConfig, SpliceEvaluator, TrainConfig, angular_distances,  # noqa: E402
                        choose_groups, evaluate_reconstruction, load_sae,
                        massive_token_mask_any_layer, train_group_sae, transfer_sae)
from finsae.sae.grouping import lm_forward_flops, sae_train_flops, saving, training_cost  # noqa: E402,E501
from finsae.sae.plots import plot_distances  # noqa: E402
from finsae.sae.train import TRAIN_RECIPE  # noqa: E402


#: AMAD(G) of Pythia-160M in the Group-SAE paper (Ghilardi et al. 2025), G = 1..6
PAPER_AMAD = {1: 0.450, 2: 0.372, 3: 0.314, 4: 0.267, 5: 0.231, 6: 0.179}
TRANSFER_CHECKPOINTS = 16   # a transfer run saves a checkpoint every 1/16 of its budget


@dataclass
class Settings:
    model: str = "smollm2-135m"
    device: str = "cpu"
    threads: int = 2
    seed: int = 0
    # capture: texts are packed into seq_len-token chunks (no padding); the first position of
    # each chunk is the attention sink and is dropped by the massive-norm rule
    seq_len: int = 128
    train_tokens: int = 12_288          # per layer, before dropping massive tokens
    eval_tokens: int = 1_024            # held out: FVU, L0 and the CE splice
    batch_chunks: int = 8               # chunks per LM forward
    massive_factor: float = 10.0        # drop a token whose norm > factor x median at any layer
    # grouping
    center: str = "running"
    threshold: float = 0.2
    # SAEs (TopK); every SAE of every method is trained on sae_tokens tokens
    d_sae: int = 1152
    k: int = 16
    sae_tokens: int = 6_144             # may exceed the kept tokens: they are cycled through
    batch_size: int = 128
    lr: float = 2e-3
    # CE-loss score / delta LM loss are measured on these layers only (each costs LM forwards)
    ce_layers: str = "2,9,16,23"
    ce_tokens: int = 256
    # transfer: target layers, and the token budgets (as fractions of a scratch run) at which
    # FVU and CE are measured
    transfer_layers: str = "9,16"
    transfer_fracs: str = "0.25,0.5,1.0"
    transfer_lr_scale: float = 0.5      # fine-tuning lr = scale x scratch lr (paper: 1e-5/3e-5)
    max_layers: int = 0                 # 0: all layers; N: only the first N (a quick check)
    # where tables, plots and README go (the committed results: experiments/results/group_sae,
    # written by the command at the top of its README)
    out: str = str(ROOT / "runs" / "group_sae")
    # more group counts: AMAD and evenly spaced groups at every G listed ("1-8", "2,4"), besides
    # the AMAD-chosen G
    g_values: str = ""
    capture_only: bool = False
    summary_only: bool = False          # rebuild README.md from the tables in --out
    # --plan: print what the run trains and costs, and stop (nothing is captured or trained)
    plan: bool = False
    plan_g: int = 6                     # stands in for AMAD's G (chosen from the distances)
    plan_sae_tok_s: float = 0.0         # SAE training tokens/s (0: measure here)
    plan_lm_tok_s: float = 0.0          # LM tokens/s through every block (0: measure here)

    def capture_key(self) -> str:
        keys = ("model", "seed", "seq_len", "train_tokens", "eval_tokens")
        return Hasher("blake2b", 6).json({k: getattr(self, k) for k in keys}).hex()

    def run_key(self) -> str:
        return Hasher("blake2b", 6).json(
            {**{k: v for k, v in asdict(self).items()
                if not k.startswith("plan") and k != "out"},  # where tables go: not training
             "recipe": TRAIN_RECIPE}).hex()


def parse_settings(argv=None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action="store_true")
        else:
            typ = {"int": int, "float": float, "str": str}.get(f.type.split(" ")[0], float)
            p.add_argument(flag, type=typ, default=f.default)
    return Settings(**vars(p.parse_args(argv)))


def get_activations(s: Settings, model, tok) -> dict:
    """Captured (or cached) train/eval activations, eval token ids and the capture timing."""
    folder = cache_dir("group_sae", s.capture_key())
    f = folder / "acts.pt"
    if f.exists():
        return torch.load(f)
    from finsae.data import load_corpus
    texts = load_corpus()["text"].tolist()
    order = np.random.default_rng(s.seed).permutation(len(texts))
    n_eval = math.ceil(s.eval_tokens / s.seq_len)
    chunks = pack_tokens(tok, (texts[i] for i in order), s.train_tokens + n_eval * s.seq_len,
                         s.seq_len)
    eval_ids, train_ids = chunks[:n_eval], chunks[n_eval:]
    t0 = time.perf_counter()
    train = capture_blocks(model, train_ids, batch_size=s.batch_chunks)
    seconds = time.perf_counter() - t0
    ev = capture_blocks(model, eval_ids, batch_size=s.batch_chunks)
    data = {"train": train, "eval": ev, "eval_ids": eval_ids, "train_ids": train_ids,
            "capture_seconds": seconds, "capture_tokens": train_ids.numel()}
    torch.save(data, f)
    return data


def drop_massive(acts: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(acts without the tokens massive at any layer, that mask). The kept tokens are moved to
    the front in place, one layer at a time, so memory never holds a second copy."""
    massive = massive_token_mask_any_layer(acts, factor)
    n = int((~massive).sum())
    for layer in range(len(acts)):
        acts[layer, :n] = acts[layer][~massive]
    return acts[:, :n], massive


def main(argv=None) -> int:
    s = parse_settings(argv)
    if s.summary_only:
        write_summary(Path(s.out))
        return 0
    tuned = tune_allocator()  # this process is ours: keep freed memory between training steps
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    lm = load_lm(s.model, device=s.device, dtype="float32")
    model, tok = lm.model, lm.tokenizer
    if s.plan:
        n, d = len(decoder_layers(model)), model.config.hidden_size
        p = plan(s, n, d, measure(s, model, min(n, s.max_layers or n), d))
        print(show(p))
        print(json.dumps(p))
        return 0

    T_start = time.perf_counter()
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = cache_dir("group_sae", s.capture_key(), f"saes-{s.run_key()}")
    data = get_activations(s, model, tok)
    if s.capture_only:
        return 0
    train, ev = data["train"], data["eval"]
    if s.max_layers:    # a quick check on the first layers only
        train, ev = train[:s.max_layers], ev[:s.max_layers]
    L, n_captured, d = train.shape
    train, _ = drop_massive(train, s.massive_factor)
    massive_ev = massive_token_mask_any_layer(ev, s.massive_factor)
    n_tok = s.sae_tokens
    log = {"settings": asdict(s), "n_layers": L, "d_model": d,
           "command": " ".join(["python experiments/group_sae.py", *(
               sys.argv[1:] if argv is None else argv)]),
           "train_tokens_captured": n_captured, "train_tokens_kept": train.shape[1],
           "eval_tokens_captured": len(massive_ev),
           "eval_tokens_kept": int((~massive_ev).sum()), "sae_tokens": n_tok,
           "sae_epochs": n_tok / train.shape[1],
           "capture_seconds": data["capture_seconds"], "capture_tokens": data["capture_tokens"]}
    print(json.dumps({k: v for k, v in log.items() if k != "settings"}), flush=True)

    # ---- 1. angular distances, streamed batch by batch, and the AMAD groups
    t0 = time.perf_counter()
    dist, n_dist = angular_distances(
        (train[:, a:a + 1024] for a in range(0, train.shape[1], 1024)), L, center=s.center)
    grouping = choose_groups(dist, s.threshold)
    log["distance_seconds"], log["distance_tokens"] = time.perf_counter() - t0, n_dist
    plot_distances(dist, out / "angular_distance.png", grouping.groups,
                   title=f"SmolLM2-135M angular distance ({n_dist} tokens, centred)")
    np.savetxt(out / "angular_distance.csv", dist, delimiter=",", fmt="%.5f")
    write_table(out / "amad", [{"G": g, "n_saes": g + 1, "amad": v,
                                "pythia160m_paper": PAPER_AMAD.get(g, ""),
                                "groups": grouping.partitions[g]}
                               for g, v in grouping.amad.items()])
    (out / "grouping.json").write_text(json.dumps(grouping.to_dict(), indent=1))
    methods = method_specs(s, L, d, grouping.chosen_g,
                           lambda g: [list(x) for x in grouping.partitions[g]])
    print(f"AMAD: chosen G={grouping.chosen_g} ({len(grouping.groups)} SAEs) "
          f"groups={grouping.groups}", flush=True)

    # ---- 2. the methods, each SAE trained on n_tok tokens
    tc = TrainConfig(tokens=n_tok, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
                     massive_factor=s.massive_factor, progress=False, checkpoint_every=None)
    # checkpoints of the scratch runs at the smallest transfer fraction, in whole batches
    ckpt_every = max(1, round(n_tok * floats(s.transfer_fracs)[0] / s.batch_size)) * s.batch_size
    # the transfer runs are checkpointed more finely: how few tokens a transferred SAE needs
    # is the question, and it starts near its neighbour's quality
    tf_every = max(1, round(n_tok / TRANSFER_CHECKPOINTS / s.batch_size)) * s.batch_size
    t_tf = TrainConfig(**{**tc.to_dict(), "tokens": int(max(floats(s.transfer_fracs)) * n_tok),
                          "lr": s.lr * s.transfer_lr_scale, "checkpoint_every": tf_every})
    # training order: what the main tables need first (so an interrupted run has finished
    # them), the G sweep and the small per-layer SAEs last
    sweep = [n for n in methods if n.startswith(("amad_G", "even_G"))]
    order = (["per_layer", "amad_groups", "even_groups", "transfer"] + sweep
             + [n for n in methods if n not in sweep and n not in
                ("per_layer", "amad_groups", "even_groups")])
    seconds: dict[str, list[float]] = {n: [] for n in methods}
    folders: dict[str, list[Path]] = {n: [] for n in methods}
    unique: dict[Path, float] = {}          # each SAE trained (or found done) once
    widths: dict[Path, int] = {}
    for name in order:
        if name == "transfer":
            for l, direction, src, tf in transfer_runs(s, runs):
                nb = load_sae(runs / "per_layer" / f"layers_{src}")
                unique[tf] = train_once(
                    tf, lambda: transfer_sae(nb, train[l], t_tf, out=tf, layer=l).seconds,
                    tuned)
            print(f"transfer: {len(ints(s.transfer_layers)) * 2} SAEs", flush=True)
            continue
        groups, width = methods[name]
        for g in groups:
            folder = sae_folder(runs, name, g, width, s.d_sae)
            cfg = SAEConfig(d_in=d, d_sae=width, k=s.k,
                            meta={"model": s.model, "layer": g[0] if len(g) == 1 else None})
            # the per-layer run doubles as the scratch curve of the transfer experiment
            ck = len(g) == 1 and width == s.d_sae and g[0] in ints(s.transfer_layers)
            t = TrainConfig(**{**tc.to_dict(), "checkpoint_every": ckpt_every if ck else None})
            # the seed follows the layers, not the method: the same layers at the same width
            # are the same SAE wherever they recur (AMAD's nested partitions, the last layer)
            unique[folder] = train_once(
                folder, lambda: train_group_sae(train, g, cfg, t, out=folder,
                                                seed=s.seed + g[0]).seconds, tuned)
            widths[folder] = width
            seconds[name].append(unique[folder])
            folders[name].append(folder)
        print(f"{name}: {len(groups)} SAEs (d_sae {width}) in {sum(seconds[name]):.0f}s "
              f"({len(unique)} distinct SAEs so far, {sum(unique.values()):.0f}s)", flush=True)
    log["distinct_saes"], log["distinct_sae_seconds"] = len(unique), sum(unique.values())
    # seconds per SAE for the cost model: every SAE of one width does the same work, so the
    # median over those trained with the allocator tuned stands for each of them (a run made
    # in pieces mixes conditions: SAEs trained before the tuning, or beside other jobs)
    sec_per_sae = {}
    for w in set(widths.values()):
        fs = [f for f in widths if widths[f] == w]
        ok = [unique[f] for f in fs if json.loads((f / "done.json").read_text()).get(
            "allocator_tuned")]
        sec_per_sae[w] = float(np.median(ok or [unique[f] for f in fs]))
        log.setdefault("sae_seconds_median", {})[str(w)] = {
            "seconds": sec_per_sae[w], "n_saes": len(ok or fs), "of": len(fs),
            "allocator_tuned": bool(ok)}
    log["saes_asked"] = sum(len(v) for v in folders.values()) + 2 * len(ints(s.transfer_layers))
    trained: dict[str, dict[int, tuple]] = {}   # method -> layer -> (sae, group index)
    loaded: dict[Path, object] = {}             # what was saved is what gets evaluated
    for name, (groups, width) in methods.items():
        trained[name] = {}
        for gi, (g, folder) in enumerate(zip(groups, folders[name])):
            if folder not in loaded:
                loaded[folder] = load_sae(folder)
            for l in g:
                trained[name][l] = (loaded[folder], gi)

    # ---- 3. evaluation: FVU, L0, dead on every layer; CE on ce_layers
    t_eval = time.perf_counter()
    ce_ids = data["eval_ids"][: max(1, s.ce_tokens // s.seq_len)]
    splicer = SpliceEvaluator(model, ce_ids, hidden=ev, massive=massive_ev)
    check = ints(s.ce_layers)[0]
    with torch.no_grad():   # forward_from on the real model, against a full forward
        h = capture_blocks(model, ce_ids[:1], [check], dtype=torch.float32)[0]
        log["forward_from_max_logit_diff"] = float((model(input_ids=ce_ids[:1]).logits
                                                    - forward_from(model, h[None], check)
                                                    ).abs().max())
    rows = []
    ev_kept = ev[:, ~massive_ev]
    measured: dict[tuple[int, int], dict] = {}  # (SAE, layer) -> metrics: a shared SAE once
    for name in methods:
        for l in range(L):
            sae, gi = trained[name][l]
            if (id(sae), l) not in measured:
                m = evaluate_reconstruction(sae, ev_kept[l].float(), massive_factor=None)
                m = {"fvu": m["fvu"], "l0": m["l0"], "dead_fraction": m["dead_fraction"]}
                if l in ints(s.ce_layers):
                    m.update(splice_row(splicer.metrics(l, sae)))
                measured[id(sae), l] = m
            rows.append({"method": name, "layer": l, "group": gi, **measured[id(sae), l]})
        print(f"evaluated {name} ({time.perf_counter() - T_start:.0f}s)", flush=True)
    write_table(out / "per_layer_metrics", rows)

    # ---- 4. cost model and the summary table
    n_params_block = sum(p.numel() for p in decoder_layers(model)[0].parameters())
    cap_s_per_tok_depth = data["capture_seconds"] / (data["capture_tokens"] * L)
    fl_cap_per_tok_depth = lm_forward_flops(n_params_block, 1, s.seq_len, d)
    summary = []
    base = None
    for name, (groups, width) in methods.items():
        sub = [r for r in rows if r["method"] == name]
        ce = [r for r in sub if "ce_loss_score" in r]
        fl_train = sae_train_flops(d, width, s.k)
        costs = {}
        for shared in (True, False):
            costs[("flops", shared)] = training_cost(groups, n_tok, fl_train,
                                                     fl_cap_per_tok_depth, shared)
            costs[("sec", shared)] = training_cost(
                groups, n_tok, [sec_per_sae[width] / n_tok] * len(groups),
                cap_s_per_tok_depth, shared)
        if base is None:
            base = costs
        family, g = method_family(name, grouping.chosen_g, L)
        summary.append({
            "method": name, "family": family, "G": g, "n_saes": len(groups), "d_sae": width,
            "fvu": float(np.mean([r["fvu"] for r in sub])),
            "ce_loss_score": float(np.mean([r["ce_loss_score"] for r in ce])),
            "delta_lm_loss": float(np.mean([r["delta_lm_loss"] for r in ce])),
            "l0": float(np.mean([r["l0"] for r in sub])),
            "dead_fraction": float(np.mean([r["dead_fraction"] for r in sub])),
            "train_seconds": sum(seconds[name]),
            "train_tflops": costs[("flops", True)].train / 1e12,
            **{f"saving_{unit}_{acct}": saving(base[(key, shared)], costs[(key, shared)])
               for unit, key in (("flops", "flops"), ("seconds", "sec"))
               for acct, shared in (("separate_runs", False), ("shared_capture", True))},
        })
    for r in summary:
        r["fvu_cost_vs_per_layer"] = r["fvu"] - summary[0]["fvu"]
        r["ce_score_cost_vs_per_layer"] = summary[0]["ce_loss_score"] - r["ce_loss_score"]
    evens = {r["G"]: methods[r["method"]][0] for r in summary if r["family"] == "even"}
    for r in summary:
        if r["family"] == "amad":
            r["same_groups_as_even"] = methods[r["method"]][0] == evens.get(r["G"])
    write_table(out / "methods", summary)
    write_table(out / "frontier", frontier(summary))
    plot_frontier(summary, out / "frontier.png", grouping.chosen_g)
    plot_methods(rows, list(methods), out / "fvu_by_layer.png", grouping.groups)

    # ---- 5. transfer: forward (from l-1), backward (from l+1), scratch (the per-layer run)
    fracs = floats(s.transfer_fracs)
    # transfer checkpoints evaluated: a geometric ladder down to the finest checkpoint, plus
    # the scratch run's fractions (each point costs a CE splice)
    tf_fracs = sorted({*fracs, *(2.0 ** -i for i in range(1, int(math.log2(
        TRANSFER_CHECKPOINTS)) + 1))})
    trows = []
    for l in ints(s.transfer_layers):
        # scratch: every checkpoint of the per-layer run (its FVU curve shows the flattening)
        for f in np.arange(1, n_tok // ckpt_every + 1) * ckpt_every / n_tok:
            trows.append(transfer_row(l, "scratch", runs / "per_layer" / f"layers_{l}",
                                      f, n_tok, ckpt_every, ev_kept, splicer))
        for _, direction, src, tf in (r for r in transfer_runs(s, runs) if r[0] == l):
            nb = trained["per_layer"][src][0]
            trows.append(transfer_row(l, direction, nb, 0, n_tok, ckpt_every, ev_kept, splicer))
            for f in tf_fracs:
                trows.append(transfer_row(l, direction, tf, f, n_tok, tf_every, ev_kept,
                                          splicer))
        print(f"transfer layer {l} done ({time.perf_counter() - T_start:.0f}s)", flush=True)
    write_table(out / "transfer", trows)
    write_table(out / "transfer_recovery", transfer_recovery(trows, n_tok))
    write_table(out / "transfer_reach", transfer_reach(trows, n_tok))
    plot_transfer(trows, out / "transfer_curves.png")

    log["total_seconds"] = time.perf_counter() - T_start
    log["eval_seconds"] = time.perf_counter() - t_eval
    log["transfer_checkpoints"] = TRANSFER_CHECKPOINTS
    log["grouping"] = {"chosen_g": grouping.chosen_g, "groups": grouping.groups,
                       "contiguous": grouping.contiguous,
                       "even_groups": methods["even_groups"][0]}
    (out / "run.json").write_text(json.dumps(log, indent=1))
    write_summary(out)
    print(f"done in {log['total_seconds']:.0f}s", flush=True)
    return 0


def method_family(name: str, chosen_g: int, n_layers: int) -> tuple[str, int]:
    """(family, G) of a method: amad / even groups at G, per-layer (G = L - 1: every layer
    before the last alone) or the equal-compute small per-layer SAEs."""
    if name in ("amad_groups", "even_groups"):
        return name.split("_")[0], chosen_g
    if name.startswith(("amad_G", "even_G")):
        return name.split("_")[0], int(name.split("_G")[1])
    return ("per_layer" if name == "per_layer" else "small"), n_layers - 1


def sae_folder(runs: Path, name: str, g: list[int], width: int, d_sae: int) -> Path:
    """Where the SAE of layers g at this width lives: one folder per (layers, width), so a
    group that recurs across methods is trained once (a single layer at the working width is
    the per-layer SAE)."""
    leaf = "layers_" + "-".join(map(str, g))
    if width != d_sae:
        return runs / name / leaf
    return runs / ("per_layer" if len(g) == 1 else "groups") / leaf


def transfer_runs(s: Settings, runs: Path):
    """(target layer, direction, source layer, folder) of every transfer run: forward from
    l-1, backward from l+1."""
    for l in ints(s.transfer_layers):
        for direction, src in (("forward", l - 1), ("backward", l + 1)):
            yield l, direction, src, runs / f"transfer_{direction}" / f"layer_{l}"


def train_once(folder: Path, fit, tuned: bool = False) -> float:
    """Run `fit` (training that saves into `folder` and returns its seconds) unless an earlier
    run of the same settings finished it: the folders live under the run's cache key, and
    `done.json`, written last, marks a finished SAE, so an interrupted experiment resumes at
    the first SAE it had not finished, with the seconds the finished ones took."""
    done = folder / "done.json"
    if done.exists():
        return float(json.loads(done.read_text())["seconds"])
    seconds = float(fit())
    done.write_text(json.dumps({"seconds": seconds, "allocator_tuned": bool(tuned)}))
    return seconds


def splice_row(m: dict) -> dict:
    """The CE columns of the tables (loss_zero: the zero-ablation loss)."""
    return {"ce_loss_score": m["ce_loss_score"], "delta_lm_loss": m["delta_lm_loss"],
            "loss_clean": m["loss_clean"], "loss_zero": m["loss_zero_ablation"],
            "loss_spliced": m["loss_spliced"]}


def transfer_row(layer, method, sae, frac, n_tok, ckpt_every, ev_kept, splicer) -> dict:
    """FVU, L0 and CE of `sae` at `layer`; a run folder stands for its checkpoint nearest to
    frac x n_tok tokens, an SAE for itself at 0 tokens."""
    tokens = int(round(frac * n_tok / ckpt_every)) * ckpt_every
    if isinstance(sae, Path):
        p = sae / "checkpoints" / f"tokens_{tokens}"
        if not p.exists():  # never stand in another checkpoint for the one asked for
            raise FileNotFoundError(f"{p}: no checkpoint at {tokens} tokens (run trained "
                                    f"with another checkpoint interval?)")
        sae = load_sae(p)
    m = evaluate_reconstruction(sae, ev_kept[layer].float(), massive_factor=None)
    ce = splicer.metrics(layer, sae)
    return {"layer": layer, "method": method, "tokens": tokens, "fvu": m["fvu"], "l0": m["l0"],
            "ce_loss_score": ce["ce_loss_score"], "delta_lm_loss": ce["delta_lm_loss"]}


if __name__ == "__main__":
    sys.exit(main())
