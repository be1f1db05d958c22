"""GPU throughput and memory: residual-stream capture and TopK SAE training on one CUDA device.

For each model (default: SmolLM2-135M; add any local folder, .gguf or cached HF id whose
weights are present with --models), measured on the bundled company descriptions:

- capture: `finsae.lm.encode_texts` (no cache) at --layer, tokens/s and peak CUDA memory;
- training: `finsae.sae.train_sae(..., device="cuda")` on those activations (a TopK SAE of
  --expansion x d_model latents, k = --k), tokens/s and peak CUDA memory;
- kernels: the sparse TopK kernels against plain autograd on one CUDA batch (max difference of
  the loss and of each gradient), since `torch.sparse.sampled_addmm` runs a different kernel
  on CUDA than on the CPU.

Prints one JSON object per model and writes them all to --out (default
docs/gpu_benchmark.json). Without a CUDA device it says so and exits with status 1, measuring
nothing. Under torchrun (`torchrun --nproc_per_node N benchmarks/gpu.py`) each process uses
its own GPU and the training part runs data parallel; rank 0 writes the file.

    PYTHONPATH=. .venv/bin/python benchmarks/gpu.py --texts 2000 --train-tokens 20000000
    PYTHONPATH=. .venv/bin/python benchmarks/gpu.py --models smollm2-135m /models/Llama-3-8B \
        --layer 15 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finsae import dist  # noqa: E402
from finsae.data.companies import bundled_descriptions  # noqa: E402


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def kernel_check(d_in: int, d_sae: int, k: int, device: str, n: int = 4096) -> dict:
    """Sparse TopK kernels vs dense autograd on one random batch on `device`."""
    from finsae.sae import SAEConfig
    from finsae.sae.architectures import build_sae
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(n, d_in, generator=g) + 1.0).to(device)
    out = {}
    for sparse in (True, False):
        sae = build_sae(SAEConfig(d_in=d_in, d_sae=d_sae, k=k), seed=0).to(device)
        o = sae.loss(x, sparse=sparse)
        o.loss.backward()
        out[sparse] = (float(o.loss), {n_: p.grad.clone() for n_, p in sae.named_parameters()})
    (ls, gs), (ld, gd) = out[True], out[False]
    return {"loss_abs_diff": abs(ls - ld),
            "grad_max_abs_diff": {n_: float((gs[n_] - gd[n_]).abs().max()) for n_ in gs},
            "grad_max_abs": {n_: float(gd[n_].abs().max()) for n_ in gd}}


def bench_model(name: str, args, device: str) -> dict:
    from finsae.lm import encode_texts, load_lm
    from finsae.sae import SAEConfig, TrainConfig, train_sae
    rec: dict = {"model": name, "device": torch.cuda.get_device_name(torch.device(device)),
                 "processes": dist.world_size()}
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with dist.main_first():  # rank 0 fills the model cache alone
        lm = load_lm(name, device=device, dtype=args.dtype, progress=False)
    rec.update(load_seconds=round(time.perf_counter() - t0, 2), d_model=lm.d_model,
               n_layers=lm.n_layers, dtype=str(next(lm.model.parameters()).dtype))
    layer = args.layer if args.layer is not None else lm.n_layers // 2
    texts = bundled_descriptions(args.texts)
    encode_texts(lm, texts[:8], [layer], cache=False, progress=False)   # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    store = encode_texts(lm, texts, [layer], cache=False, batch_tokens=args.batch_tokens,
                         max_tokens=args.max_tokens, progress=False)
    torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    rec["capture"] = {"layer": layer, "texts": len(texts), "tokens": store.n_tokens,
                      "seconds": round(sec, 3), "tokens_per_s": round(store.n_tokens / sec),
                      "peak_gib": round(_peak_gib(), 3), "batch_tokens": args.batch_tokens}
    acts = store.tokens(layer)
    del lm, store
    torch.cuda.empty_cache()

    d_sae = args.expansion * acts.shape[1]
    torch.cuda.reset_peak_memory_stats()
    r = train_sae(acts, SAEConfig(d_in=acts.shape[1], d_sae=d_sae, k=args.k),
                  TrainConfig(tokens=args.train_tokens, batch_size=args.batch_size,
                              progress=False), device=device)
    torch.cuda.synchronize()
    rec["train"] = {"d_sae": d_sae, "k": args.k, "batch_size": args.batch_size,
                    "tokens": r.tokens, "steps": r.steps, "seconds": round(r.seconds, 3),
                    "tokens_per_s": round(r.tokens_per_second),
                    "peak_gib": round(_peak_gib(), 3),
                    "final_fvu": r.history[-1]["fvu"] if r.history else None,
                    "dead_fraction": r.dead_fraction}
    if dist.is_main():
        rec["kernels"] = kernel_check(acts.shape[1], d_sae, args.k, device)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m"],
                    help="short names, folders, .gguf files or cached HF ids")
    ap.add_argument("--layer", type=int, default=None, help="block (default: the middle one)")
    ap.add_argument("--texts", type=int, default=1000, help="bundled descriptions to encode")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=32768,
                    help="padded tokens per capture forward (default %(default)s)")
    ap.add_argument("--dtype", default=None, help="model dtype (default bfloat16 on CUDA)")
    ap.add_argument("--expansion", type=int, default=32, help="d_sae = expansion * d_model")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--train-tokens", type=int, default=5_000_000)
    ap.add_argument("--out", default="docs/gpu_benchmark.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False; "
              f"torch {torch.__version__}, CUDA build: {torch.version.cuda}); nothing measured.",
              file=sys.stderr)
        return 1
    device = dist.setup("cuda")
    try:
        results = []
        for name in args.models:
            rec = bench_model(name, args, device)
            if dist.is_main():
                print(json.dumps(rec), flush=True)
            results.append(rec)
        if dist.is_main():
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                                       "results": results}, indent=1))
            print(f"wrote {out}")
    finally:
        dist.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
