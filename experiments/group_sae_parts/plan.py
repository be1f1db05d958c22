"""What a group_sae.py run trains, and what it costs: the methods' layer groups (one source for
the run and for `--plan`), and the plan printed by `--plan` without running: SAEs, SAE training
tokens, LM forward tokens for the capture and the CE splices, memory, and a wall-time estimate
from throughputs measured here (or given as flags)."""

from __future__ import annotations

import math
import time

import torch

from finsae.lm import capture_blocks, forward_from
from finsae.sae import AngularDistance, SAEConfig, TrainConfig, even_groups, train_sae
from finsae.sae.grouping import equal_compute_width, sae_train_flops


def ints(text: str) -> list[int]:
    """'2,9,16' -> [2, 9, 16]; '1-8' -> [1, ..., 8] (ranges and lists mix: '1-3,6')."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def floats(text: str) -> list[float]:
    return sorted(float(x) for x in text.split(",") if x.strip())


def method_specs(s, n_layers: int, d: int, chosen_g: int, partition) -> dict:
    """method -> (layer groups, d_sae): per-layer SAEs, the AMAD groups and evenly spaced
    groups at the chosen G, per-layer SAEs as small as the AMAD groups' training FLOPs, and
    AMAD/even groups at every other G of --g-values. partition(G): AMAD's groups of layers
    0..L-2 (the last layer gets its own SAE)."""
    L = n_layers
    small = equal_compute_width(d, s.d_sae, s.k, chosen_g + 1, L)
    every = [[l] for l in range(L)]
    specs = {"per_layer": (every, s.d_sae),
             "amad_groups": (partition(chosen_g) + [[L - 1]], s.d_sae),
             "even_groups": (even_groups(L, chosen_g), s.d_sae),
             f"per_layer_small_{small}": (every, small)}
    for g in ints(s.g_values):
        if g != chosen_g and 1 <= g <= L - 1:
            specs[f"amad_G{g}"] = (partition(g) + [[L - 1]], s.d_sae)
            specs[f"even_G{g}"] = (even_groups(L, g), s.d_sae)
    return specs


def measure(s, model, n_layers: int, d: int) -> dict:
    """Throughputs on this machine: LM tokens/s through every block of the model, the final
    norm and LM head's seconds per token, SAE training tokens/s at (d_sae, k, batch) from the
    difference of a 50- and a 150-step run (so set-up costs cancel), and angular-distance
    tokens/s over n_layers (the layers the run uses)."""
    out = {}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (4, s.seq_len), generator=g)
    capture_blocks(model, ids[:1])                       # warm-up
    if s.plan_lm_tok_s > 0:
        out["lm_tok_s"] = s.plan_lm_tok_s
    else:
        t0 = time.perf_counter()
        capture_blocks(model, ids, [-1])
        out["lm_tok_s"] = ids.numel() / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with torch.no_grad():
        forward_from(model, torch.randn(*ids.shape, d, generator=g), -1)  # norm + head only
    out["head_s_per_tok"] = (time.perf_counter() - t0) / ids.numel()
    if s.plan_sae_tok_s > 0:
        out["sae_tok_s"] = s.plan_sae_tok_s
    else:
        x = torch.randn(150 * s.batch_size, d, generator=g)
        times = []
        for steps in (50, 150):
            tc = TrainConfig(tokens=steps * s.batch_size, batch_size=s.batch_size, lr=s.lr,
                             progress=False, b_dec_init="mean", massive_factor=None)
            t0 = time.perf_counter()
            train_sae(x, SAEConfig(d_in=d, d_sae=s.d_sae, k=s.k), tc)
            times.append(time.perf_counter() - t0)
        out["sae_tok_s"] = 100 * s.batch_size / max(times[1] - times[0], 1e-9)
    acc = AngularDistance(n_layers)
    x = torch.randn(n_layers, 2048, d, generator=g)
    t0 = time.perf_counter()
    acc.update(x)
    out["distance_tok_s"] = 2048 / (time.perf_counter() - t0)
    return out


def plan(s, n_layers_model: int, d: int, rates: dict) -> dict:
    """The counts and the time estimate of the configured run (AMAD's G is not known before
    the distances: --plan-g stands in for it)."""
    L = min(n_layers_model, s.max_layers or n_layers_model)
    G = max(1, min(s.plan_g, L - 1))
    specs = method_specs(s, L, d, G, lambda g: even_groups(L, g)[:-1])
    n_tok = s.sae_tokens
    fracs = floats(s.transfer_fracs)
    t_layers = [l for l in ints(s.transfer_layers) if 0 < l < L - 1]
    ce_layers = [l for l in ints(s.ce_layers) if l < L]
    base_flops = sae_train_flops(d, s.d_sae, s.k)
    rows, train_tokens, train_sec = [], 0, 0.0
    for name, (groups, width) in specs.items():
        toks = len(groups) * n_tok
        sec = toks / rates["sae_tok_s"] * sae_train_flops(d, width, s.k) / base_flops
        rows.append((name, len(groups), width, toks, sec))
        train_tokens += toks
        train_sec += sec
    tr_tok = 2 * len(t_layers) * int(max(fracs) * n_tok)
    rows.append(("transfer (forward+backward)", 2 * len(t_layers), s.d_sae, tr_tok,
                 tr_tok / rates["sae_tok_s"]))
    train_tokens += tr_tok
    train_sec += tr_tok / rates["sae_tok_s"]
    n_eval_chunks = math.ceil(s.eval_tokens / s.seq_len)
    cap_tokens = (math.ceil(s.train_tokens / s.seq_len) + n_eval_chunks) * s.seq_len
    cap_sec = cap_tokens / rates["lm_tok_s"]
    # CE splices: per layer 2 base losses (clean, zero) + one per SAE evaluated there
    ce_tok = max(1, s.ce_tokens // s.seq_len) * s.seq_len
    per_block = 1 / (rates["lm_tok_s"] * n_layers_model)
    splices, block_tokens, ce_sec = 0, 0, 0.0
    for l in sorted(set(ce_layers) | set(t_layers)):
        n = 2 + (len(specs) if l in ce_layers else 0) + (3 * len(fracs) + 2 if l in t_layers
                                                          else 0)
        depth = n_layers_model - l - 1
        splices += n
        block_tokens += n * ce_tok * depth
        ce_sec += n * ce_tok * (depth * per_block + rates["head_s_per_tok"])
    n_saes = sum(r[1] for r in rows)
    n_evals = L * len(specs) + len(t_layers) * (3 * len(fracs) + 2)
    eval_sec = n_evals * s.eval_tokens / (3 * rates["sae_tok_s"])
    dist_sec = s.train_tokens / rates["distance_tok_s"]
    total = cap_sec + train_sec + ce_sec + eval_sec + dist_sec
    return {"layers": L, "chosen_g_assumed": G, "methods": rows, "n_saes": n_saes,
            "sae_tokens_each": n_tok, "sae_train_tokens_total": train_tokens,
            "capture_tokens": cap_tokens, "capture_block_tokens": cap_tokens * n_layers_model,
            "capture_gib": cap_tokens * n_layers_model * d * 2 / 2**30,
            "saes_gib": sum(r[1] * (2 * d + 1) * r[2] * 4 for r in rows) / 2**30,
            "ce_splices": splices, "ce_tokens_each": ce_tok,
            "ce_block_tokens": block_tokens, "fvu_evaluations": n_evals, "rates": rates,
            "seconds": {"capture": cap_sec, "distances": dist_sec, "sae_training": train_sec,
                        "fvu_eval": eval_sec, "ce_splices": ce_sec, "total": total}}


def show(p: dict) -> str:
    """The plan as text."""
    r, sec = p["rates"], p["seconds"]
    lines = [f"plan: {p['layers']} layers, AMAD's chosen G assumed {p['chosen_g_assumed']} "
             "(--plan-g; the real G comes from the distances)",
             f"{'method':<32}{'SAEs':>6}{'d_sae':>7}{'train tokens':>15}{'est. h':>10}"]
    lines += [f"{n:<32}{k:>6}{w:>7}{t:>15,}{x / 3600:>10.2f}" for n, k, w, t, x in p["methods"]]
    lines += [
        f"SAEs trained: {p['n_saes']}, {p['sae_tokens_each']:,} tokens each (transfer: the "
        f"largest fraction); SAE training tokens in all: {p['sae_train_tokens_total']:,}",
        f"LM capture: {p['capture_tokens']:,} tokens through every block "
        f"({p['capture_block_tokens']:,} block-tokens; cache {p['capture_gib']:.1f} GiB "
        f"float16, held in RAM; the trained SAEs another {p['saes_gib']:.1f} GiB)",
        f"CE splices: {p['ce_splices']} partial forwards of {p['ce_tokens_each']:,} tokens "
        f"({p['ce_block_tokens']:,} block-tokens + the LM head each); "
        f"FVU evaluations: {p['fvu_evaluations']}",
        f"measured here: LM {r['lm_tok_s']:,.0f} tok/s through all blocks, head "
        f"{r['head_s_per_tok'] * 1e3:.3f} ms/tok, SAE training {r['sae_tok_s']:,.0f} tok/s, "
        f"distances {r['distance_tok_s']:,.0f} tok/s",
        "estimated wall time: " + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in sec.items())
        + " (FVU eval taken at 3x the training rate; small SAEs scaled by FLOPs)"]
    return "\n".join(lines)
