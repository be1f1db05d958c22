"""Activation capture: finsae's capture (exact fp32, and bf16) vs a naive full forward.

All run the default model (SmolLM2-135M, 30 blocks) on the first N bundled company
descriptions (BOS prepended, at most 512 text tokens each) and keep the residual stream after
block 5 and after block 15:

  naive        model(..., attention_mask=..., output_hidden_states=True), take
               hidden_states[i + 1]: all 30 blocks and the LM head (logits over a 49k
               vocabulary) run; the texts in length-sorted padded batches of <= 4096 tokens
               (greedy, longest first: what encode_texts did before; --naive-batches finsae:
               finsae's own batches). One forward serves both blocks, so it is timed once and
               compared with each.
  finsae fp32  finsae.lm.encode_texts(cache=False) on the float32 model, one block per call:
               includes tokenization, batching and gathering the text rows
  finsae bf16  the same on a bfloat16 copy of the model (``finsae encode --dtype bfloat16``)

The methods alternate within each repetition (one process, same machine load); time is the
process's CPU seconds (steadier than wall-clock on a machine shared with other jobs; with one
thread the two agree when the machine is idle), and ratio = the median over repetitions of
naive seconds / method seconds in the same repetition. The fp32
capture is checked against the naive hidden states (max abs difference over the text tokens);
bf16 is compared with fp32 by the per-token relative error ||h_bf16 - h_fp32|| / ||h_fp32||.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/activations.py \
        [--texts 24] [--layers 5,15] [--reps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _texts(n: int) -> list[str]:
    from finsae.data.companies import load_companies

    d = load_companies()["description"].fillna("")
    return [t for t in d if t.strip()][:n]


def _naive_batches(lm, texts, max_tokens, budget, same_as_finsae=False):
    """Greedy length-sorted batches (longest first, count x longest <= budget), or finsae's
    own: [(Inputs, text indices)]."""
    from finsae.lm.capture import _batches
    from finsae.lm.tokens import bos_id, pad_batch, pad_id, tokenize

    ids = tokenize(lm.tokenizer, texts, max_tokens).ids
    order = sorted(range(len(ids)), key=lambda k: -len(ids[k]))
    groups: list[list[int]] = []
    for k in order:
        if groups and (len(groups[-1]) + 1) * (len(ids[groups[-1][0]]) + 1) <= budget:
            groups[-1].append(k)
        else:
            groups.append([k])
    if same_as_finsae:
        groups = _batches([len(x) for x in ids], budget, 1)
    bos, pad = bos_id(lm.tokenizer), pad_id(lm.tokenizer)
    return [(pad_batch([ids[k] for k in g], bos, pad), g) for g in groups], ids


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--texts", type=int, default=24, help="first N non-empty descriptions")
    p.add_argument("--layers", default="5,15")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pooled", type=int, default=100,
                   help="companies for the bf16 vs fp32 agreement of pooled vectors (0: skip)")
    p.add_argument("--pooled-layer", type=int, default=5)
    p.add_argument("--naive-batches", choices=["greedy", "finsae"], default="greedy",
                   help="the naive forward's batches: greedy (as encode_texts made them before) "
                        "or finsae's own")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    from finsae.lm import LM, encode_texts, load_lm
    from finsae.lm.capture import _batches

    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    lm = load_lm(args.model)
    lm16 = LM.from_model(copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer,
                         name=lm.name + "-bf16")
    texts = _texts(args.texts)
    batches, ids = _naive_batches(lm, texts, args.max_tokens, args.batch_tokens,
                                  args.naive_batches == "finsae")
    n_tokens = sum(len(x) for x in ids)
    finsae_padded = sum(max(len(ids[k]) for k in b) * len(b) + len(b)
                        for b in _batches([len(x) for x in ids], args.batch_tokens, 1))

    def naive():
        out = {i: [None] * len(texts) for i in layers}
        with torch.inference_mode():
            for inp, group in batches:
                hs = lm.model(input_ids=inp.input_ids, attention_mask=inp.attention_mask,
                              output_hidden_states=True, use_cache=False).hidden_states
                for i in layers:
                    h = hs[i + 1].float()
                    for r, k in enumerate(group):
                        out[i][k] = h[r][inp.keep[r]]
        return {i: torch.cat(v) for i, v in out.items()}

    def finsae(model_lm, layer):
        store = encode_texts(model_lm, texts, [layer], max_tokens=args.max_tokens, cache=False,
                             batch_tokens=args.batch_tokens, progress=False)
        return store.tokens(layer)

    runs = [("naive", None, naive)]
    for i in layers:
        runs += [("finsae fp32", i, lambda i=i: finsae(lm, i)),
                 ("finsae bf16", i, lambda i=i: finsae(lm16, i))]
    with torch.inference_mode():  # warm-up outside the timing
        encode_texts(lm, texts[:2], [0], cache=False, progress=False)
        encode_texts(lm16, texts[:2], [0], cache=False, progress=False)
    seconds: dict = {(m, i): [] for m, i, _ in runs}   # CPU seconds of this process
    wall: dict = {(m, i): [] for m, i, _ in runs}
    result: dict = {}
    for _ in range(args.reps):
        for m, i, fn in runs:
            t0, c0 = time.perf_counter(), time.process_time()
            result[(m, i)] = fn()
            seconds[(m, i)].append(time.process_time() - c0)
            wall[(m, i)].append(time.perf_counter() - t0)
            print(f"{m} {i}: {seconds[(m, i)][-1]:.1f} CPU s, {wall[(m, i)][-1]:.1f} s",
                  file=sys.stderr)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    naive_s = med[("naive", None)]

    def ratio(m, i, t=seconds):
        """Median over repetitions of naive / method, each from the same repetition."""
        return statistics.median(a / b for a, b in zip(t[("naive", None)], t[(m, i)]))
    rows = []
    for i in layers:
        ref = result[("naive", None)][i]
        h32, h16 = result[("finsae fp32", i)], result[("finsae bf16", i)]
        norm = h32.norm(dim=-1)
        rel = (h16 - h32).norm(dim=-1) / norm
        ok = norm <= 10 * norm.median()  # the massive-token rule of the SAE metrics
        rows.append({"layer": i, "naive_s": naive_s, "fp32_s": med[("finsae fp32", i)],
                     "bf16_s": med[("finsae bf16", i)],
                     "fp32_ratio": ratio("finsae fp32", i),
                     "bf16_ratio": ratio("finsae bf16", i),
                     "fp32_wall_ratio": ratio("finsae fp32", i, wall),
                     "bf16_wall_ratio": ratio("finsae bf16", i, wall),
                     "fp32_max_abs_diff_vs_naive": float((h32 - ref).abs().max()),
                     "fp32_max_rel_diff_vs_naive": float(((h32 - ref).norm(dim=-1) / norm).max()),
                     "bf16_rel_err_max": float(rel[ok].max()),
                     "bf16_rel_err_mean": float(rel[ok].mean()),
                     "bf16_rel_err_median": float(rel[ok].median()),
                     "n_massive": int((~ok).sum())})
    info = {"model": args.model, "texts": len(texts), "tokens": n_tokens,
            "naive_padded_tokens": sum(inp.input_ids.numel() for inp, _ in batches),
            "finsae_padded_tokens": finsae_padded, "threads": args.threads, "reps": args.reps,
            "torch": torch.__version__}
    pooled = _pooled_agreement(lm, lm16, _texts(args.pooled), args.pooled_layer,
                               args.max_tokens) if args.pooled else None
    if args.json:
        print(json.dumps({"info": info, "rows": rows, "pooled": pooled}, indent=1))
        return 0
    print(f"{args.model}, {len(texts)} descriptions, {n_tokens:,} text tokens "
          f"(padded: naive {info['naive_padded_tokens']:,}, finsae {finsae_padded:,}), "
          f"{args.threads} thread(s), CPU seconds of the process, medians of {args.reps} "
          "(ratio: median of the per-repetition ratios; wall-clock ratio in brackets)")
    print("| block | naive CPU s | fp32 CPU s | fp32 ratio | bf16 CPU s | bf16 ratio | "
          "fp32 vs naive: max abs / max rel. diff | bf16 rel. err. mean / median / max |")
    print("|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['naive_s']:.1f} | {r['fp32_s']:.1f} | "
              f"{r['fp32_ratio']:.2f}x ({r['fp32_wall_ratio']:.2f}x) | {r['bf16_s']:.1f} | "
              f"{r['bf16_ratio']:.2f}x ({r['bf16_wall_ratio']:.2f}x) | "
              f"{r['fp32_max_abs_diff_vs_naive']:.1e} / {r['fp32_max_rel_diff_vs_naive']:.1e} | "
              f"{r['bf16_rel_err_mean']:.4f} / "
              f"{r['bf16_rel_err_median']:.4f} / {r['bf16_rel_err_max']:.3f} |")
    if pooled:
        print("pooled (mean over text tokens) company vectors, bf16 vs fp32: " +
              ", ".join(f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in pooled.items()))
    return 0


def _pooled_agreement(lm, lm16, texts, layer, max_tokens) -> dict:
    """Cosine of each company's mean-pooled bf16 vector with its fp32 one, and the overlap of
    the 10 nearest companies (cosine of the centred pooled vectors) under the two."""
    import torch
    import torch.nn.functional as F

    from finsae.lm import encode_texts

    def means(m):
        return encode_texts(m, texts, [layer], max_tokens=max_tokens, cache=False,
                            keep_tokens=False, progress=False).text_means(layer)

    a, b = means(lm), means(lm16)
    cos = F.cosine_similarity(a, b, dim=-1)

    def knn(x):
        x = F.normalize(x - x.mean(0), dim=-1)
        sim = x @ x.T
        sim.fill_diagonal_(-2)
        return sim.topk(10, dim=-1).indices

    na, nb = knn(a), knn(b)
    overlap = torch.tensor([len(set(na[k].tolist()) & set(nb[k].tolist())) / 10
                            for k in range(len(texts))])
    return {"companies": len(texts), "layer": layer, "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "knn10_overlap_mean": float(overlap.mean()),
            "knn10_overlap_min": float(overlap.min())}


if __name__ == "__main__":
    sys.exit(main())
