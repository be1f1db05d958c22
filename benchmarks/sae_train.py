"""TopK SAE training speed: finsae vs sae-lens vs EleutherAI sparsify on the same activations.

Every trainer gets the same tokens in the same order (massive tokens dropped once, shuffled
once with a fixed seed), the same d_in, d_sae, k, batch size and token count, fp32 on CPU.
Printed per trainer: tokens/s (with --repeats, the median over interleaved rounds), the ratio
finsae / it (the median of the per-round ratios), held-out FVU (aggregated, per-dimension
mean) and dead fraction (latents that never fire on the held-out tokens); for finsae also its
share of the FLOP-bound ceiling, 2 * d_in * d_sae FLOPs per token at the rate of the encoder
GEMM ([batch, d_in] x [d_in, d_sae]) measured in the same run.

Competitors run as their own code trains by default:
- sae-lens: TopKTrainingSAE with its default config (b_dec = 0, decoder norm 0.1, AuxK coef 1,
  raw activations), the SAETrainer step (fire tracking, grad-norm clip 1.0, Adam lr 3e-4);
- sparsify: SparseCoder with the sparsify Trainer's step (b_dec = mean of the first batch,
  decoder kept unit norm, gradient parallel to the decoder removed, torch Adam at
  2e-4 / sqrt(d_sae / 2^14), AuxK 1/32 on latents dead for 10M tokens).

Run it in an environment with both installed (pinned CPU torch first):
    python3 -m venv /work/venvs/bench
    /work/venvs/bench/bin/pip install torch==2.13.0
    /work/venvs/bench/bin/pip install sae-lens eai-sparsify
    PYTHONPATH=. /work/venvs/bench/bin/python benchmarks/sae_train.py --acts acts.safetensors
A competitor whose package is missing is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finsae.sae import (ReconStats, SAEConfig, TrainConfig, load_activations,  # noqa: E402
                        massive_token_mask, train_sae)


def gemm_rate(batch: int, d_in: int, d_sae: int, reps: int = 5) -> float:
    """GFLOP/s of the encoder GEMM shape, best of `reps` after a warm-up."""
    x, W, b = torch.randn(batch, d_in), torch.randn(d_sae, d_in), torch.zeros(d_sae)
    torch.addmm(b, x, W.t())
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.addmm(b, x, W.t())
        best = min(best, time.perf_counter() - t0)
    return 2 * batch * d_in * d_sae / best / 1e9


def batches(train: torch.Tensor, batch: int, n_steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out, perm, pos = [], torch.randperm(len(train), generator=g), 0
    for _ in range(n_steps):
        if pos + batch > len(train):
            perm, pos = torch.randperm(len(train), generator=g), 0
        out.append(perm[pos:pos + batch])
        pos += batch
    return out


def held_out(recon_fn, encode_fn, test: torch.Tensor, d_sae: int, bs: int = 4096) -> dict:
    s = ReconStats(test.shape[1], d_sae)
    with torch.no_grad():
        for i in range(0, len(test), bs):
            x = test[i:i + bs]
            z = encode_fn(x)
            s.update(x, recon_fn(x), z)
    return {"fvu": s.fvu, "dead_fraction": s.dead_fraction, "l0": s.l0}


def run_finsae(train, test, args):
    # same tokens, same count; finsae shuffles them with its own seeded generator
    tc = TrainConfig(tokens=args.steps * args.batch_size, batch_size=args.batch_size,
                     seed=args.seed, massive_factor=None, progress=False)
    r = train_sae(train, SAEConfig(d_in=train.shape[1], d_sae=args.d_sae, k=args.k), tc)
    sae = r.sae
    ev = held_out(sae.reconstruct, sae.encode, test, args.d_sae)
    return {"tokens": r.tokens, "seconds": r.seconds, **ev}


def run_sparsify(train, test, args):
    from sparsify import SparseCoder, SparseCoderConfig
    torch.manual_seed(args.seed)
    sae = SparseCoder(train.shape[1], SparseCoderConfig(num_latents=args.d_sae, k=args.k))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4 / (args.d_sae / 2**14) ** 0.5)
    since = torch.zeros(args.d_sae, dtype=torch.long)
    idx = batches(train, args.batch_size, args.steps, args.seed)
    t0 = time.perf_counter()
    for step, ix in enumerate(idx):
        x = train[ix]
        if step == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=since > 10_000_000)
        (out.fvu + out.auxk_loss / 32).backward()
        since += len(x)
        since[out.latent_indices.flatten()] = 0
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    sec = time.perf_counter() - t0
    sae.eval()

    def enc(x):
        e = sae.encode(x)
        return torch.zeros(len(x), args.d_sae).scatter_(1, e.top_indices, e.top_acts)

    ev = held_out(lambda x: sae(x).sae_out, enc, test, args.d_sae)
    return {"tokens": len(idx) * args.batch_size, "seconds": sec, **ev}


def run_saelens(train, test, args):
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    torch.manual_seed(args.seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=args.d_sae,
                                                k=args.k, dtype="float32", device="cpu"))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))  # runner defaults
    since = torch.zeros(args.d_sae)
    idx = batches(train, args.batch_size, args.steps, args.seed)
    t0 = time.perf_counter()
    for step, ix in enumerate(idx):
        sae.train()
        out = sae.training_forward_pass(step_input=TrainStepInput(
            sae_in=train[ix], coefficients={}, dead_neuron_mask=since > 1000,
            n_training_steps=step, is_logging_step=False))
        with torch.no_grad():
            fired = out.feature_acts.bool().float().sum(-2).bool()
            since += 1
            since[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    sec = time.perf_counter() - t0
    sae.eval()
    ev = held_out(lambda x: sae.decode(sae.encode(x)), sae.encode, test, args.d_sae)
    return {"tokens": len(idx) * args.batch_size, "seconds": sec, **ev}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", required=True, help="safetensors with 'acts' [n, d] (or folder)")
    ap.add_argument("--heldout", default=None, help="held-out activations (default: last 10%%)")
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=50, help="training steps for every trainer")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of all trainers, interleaved; speeds are the per-trainer "
                         "medians and ratios the medians of the per-round ratios (the runs are "
                         "seeded, so FVU is the same every round)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--massive-factor", type=float, default=10.0)
    ap.add_argument("--only", default="finsae,sparsify,saelens")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    acts = load_activations(args.acts)
    drop = massive_token_mask(acts, args.massive_factor)
    acts = acts[~drop]
    if args.heldout:
        test = load_activations(args.heldout)
        n_test_drop = int(massive_token_mask(test, args.massive_factor).sum())
        test = test[~massive_token_mask(test, args.massive_factor)]
        train = acts
    else:
        perm = torch.randperm(len(acts), generator=torch.Generator().manual_seed(123))
        n_test = len(acts) // 10
        test, train = acts[perm[:n_test]], acts[perm[n_test:]]
        n_test_drop = 0
    d_in = train.shape[1]
    print(f"activations: {len(train)} train, {len(test)} held-out tokens, d_in {d_in}; "
          f"massive tokens dropped: {int(drop.sum())} train, {n_test_drop} held-out "
          f"(factor {args.massive_factor}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"each trainer: {args.steps} steps x {args.batch_size} tokens = "
          f"{args.steps * args.batch_size} tokens, d_sae {args.d_sae}, k {args.k}, fp32")
    runners = {"finsae": run_finsae, "sparsify": run_sparsify, "saelens": run_saelens}
    rates = [gemm_rate(args.batch_size, d_in, args.d_sae)]
    res, rounds = {}, []
    names = args.only.split(",")
    for rnd in range(args.repeats):
        speeds = {}
        for name in names:
            if rnd and name not in res:
                continue
            try:
                r = runners[name](train, test, args)
            except ImportError as e:
                print(f"{name}: skipped, package not installed ({e.name}); "
                      f"pip install {'sae-lens' if name == 'saelens' else 'eai-sparsify'}")
                continue
            r["tokens_per_s"] = speeds[name] = r["tokens"] / r["seconds"]
            res.setdefault(name, r)
            print(f"  round {rnd + 1} {name}: {r['tokens_per_s']:.0f} tok/s, held-out FVU "
                  f"{r['fvu']:.4f}, dead {r['dead_fraction']:.4f}, L0 {r['l0']:.1f}", flush=True)
            rates.append(gemm_rate(args.batch_size, d_in, args.d_sae))
        rounds.append(speeds)
    for name, r in res.items():
        r["tokens_per_s_rounds"] = [sp[name] for sp in rounds]
        r["tokens_per_s"] = statistics.median(r["tokens_per_s_rounds"])
    gflops = sum(rates) / len(rates)
    ceiling = gflops * 1e9 / (2 * d_in * args.d_sae)
    print(f"\nencoder GEMM {args.batch_size}x{d_in}x{args.d_sae}: {gflops:.1f} GFLOP/s "
          f"(mean of {len(rates)} measurements, {min(rates):.1f}-{max(rates):.1f}) -> "
          f"ceiling {ceiling:.0f} tok/s")
    print(f"{'trainer':10s} {'tok/s':>9s} {'finsae/x':>9s} {'FVU':>8s} {'dead':>7s} {'L0':>6s}")
    f = res.get("finsae")
    for name, r in res.items():
        ratio = statistics.median(sp["finsae"] / sp[name] for sp in rounds) if f \
            else float("nan")
        r["finsae_ratio"] = ratio
        print(f"{name:10s} {r['tokens_per_s']:9.0f} {ratio:9.2f} {r['fvu']:8.4f} "
              f"{r['dead_fraction']:7.4f} {r['l0']:6.1f}")
    if f:
        f["ceiling_share"] = f["tokens_per_s"] / ceiling
        print(f"finsae share of the FLOP-bound ceiling: {100 * f['ceiling_share']:.1f}% "
              f"(median speed over {args.repeats} round(s) / ceiling)")
    if args.json:
        Path(args.json).write_text(json.dumps({"gemm_gflops": gflops, "ceiling_tok_s": ceiling,
                                               "results": res, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
