"""Activation capture: finsae's stop-early capture vs a naive full forward.

Both run the default model (SmolLM2-135M, 30 blocks) on the same length-sorted batches of
bundled company descriptions and keep the residual stream after block 15:

  naive      model(..., output_hidden_states=True), take hidden_states[16]: runs all 30 blocks
             and the LM head (logits over a 49k vocabulary)
  finsae     finsae.lm.encode_texts(cache=False): a hook on block 15 raises to stop the forward;
             includes tokenization and gathering the non-pad rows
  truncated  the alternative way to stop early: the base model with its layer list cut to
             blocks 0..15 (no head), same hook for the capture without raising

Speed is reported per wall second and per CPU second of the process (time.process_time, all
threads): on a machine shared with other jobs the CPU-second ratio is the steadier one.
Each method runs in its own process so its peak resident memory (ru_maxrss) is its own; the
activations of every method are compared with finsae's (max abs difference, exact equality).

    python benchmarks/activations.py [--texts 100] [--layer 15] [--batch-tokens 4096]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _texts(n: int) -> list[str]:
    from finsae.data.companies import load_companies

    d = load_companies()["description"].fillna("")
    return [t for t in d if t.strip()][:n]


def _batches(lm, texts, max_tokens, batch_tokens):
    """The batches encode_texts builds (one shard): (ids, mask, [(row, n_tokens), ...])."""
    import torch

    from finsae.lm.capture import _batches, tokenize

    tok = tokenize(lm.tokenizer, texts, max_tokens)
    bos = lm.tokenizer.bos_token_id
    out = []
    for batch in _batches([len(x) for x in tok.ids], batch_tokens, 1):
        width = max(len(tok.ids[k]) for k in batch) + 1
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, k in enumerate(batch):
            seq = [bos] + tok.ids[k]
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
        out.append((ids, mask, batch, [len(tok.ids[k]) for k in batch]))
    return out, [len(x) for x in tok.ids]


def _gather(pieces, lengths, d):
    """Rows of every text in input order from {text index: [n_tokens, d]}."""
    import torch

    return torch.cat([pieces[k] for k in range(len(lengths))]) if pieces else torch.empty(0, d)


def worker(method: str, args: dict, out_path: str, queue) -> None:
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(args["threads"])
    from finsae.lm import block, encode_texts, load_lm

    lm = load_lm(args["model"], device=args["device"])
    texts = _texts(args["texts"])
    layer = args["layer"]
    batches, lengths = _batches(lm, texts, args["max_tokens"], args["batch_tokens"])
    n_tokens = sum(lengths)
    sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)

    with torch.inference_mode():  # warm-up on the smallest batch, outside the timing
        lm.model(input_ids=batches[-1][0].to(lm.device), attention_mask=batches[-1][1].to(
            lm.device), use_cache=False)
    base_rss = _rss_mib()
    pieces = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "finsae":
        store = encode_texts(lm, texts, [layer], max_tokens=args["max_tokens"], cache=False,
                             batch_tokens=args["batch_tokens"], shard_tokens=10**12,
                             progress=False)
        sync()
        acts = store.tokens(layer)
    elif method == "naive":
        with torch.inference_mode():
            for ids, mask, batch, lens in batches:
                out = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                               output_hidden_states=True, use_cache=False)
                h = out.hidden_states[layer + 1].float().cpu()
                for r, (k, m) in enumerate(zip(batch, lens)):
                    pieces[k] = h[r, 1:1 + m]
        sync()
        acts = _gather(pieces, lengths, lm.d_model)
    elif method == "truncated":
        base = lm.model.model
        full = base.layers
        grabbed = {}
        handle = block(lm.model, layer).register_forward_hook(
            lambda mod, a, o: grabbed.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        base.layers = torch.nn.ModuleList(list(full)[:layer + 1])
        try:
            with torch.inference_mode():
                for ids, mask, batch, lens in batches:
                    base(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                         use_cache=False)
                    h = grabbed["h"].float().cpu()
                    for r, (k, m) in enumerate(zip(batch, lens)):
                        pieces[k] = h[r, 1:1 + m]
        finally:
            base.layers = full
            handle.remove()
        sync()
        acts = _gather(pieces, lengths, lm.d_model)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # all threads: robust to other jobs on the machine
    save_file({"acts": acts.contiguous()}, out_path)
    padded = sum(ids.numel() for ids, *_ in batches)
    queue.put({"method": method, "seconds": seconds, "tokens": n_tokens, "padded_tokens": padded,
               "batches": len(batches), "tokens_per_s": n_tokens / seconds,
               "cpu_seconds": cpu_seconds, "tokens_per_cpu_s": n_tokens / cpu_seconds,
               "peak_rss_mib": _rss_mib(), "rss_after_load_mib": base_rss,
               "device": str(lm.device)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--texts", type=int, default=100, help="first N non-empty descriptions")
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default="naive,finsae,truncated")
    p.add_argument("--json", action="store_true")
    args = vars(p.parse_args())

    from finsae.lm import load_lm
    load_lm(args["model"])  # build the dequantized cache once, outside the timed children

    import torch
    from safetensors.torch import load_file

    ctx = mp.get_context("spawn")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args["methods"].split(","):
            q = ctx.Queue()
            out = f"{tmp}/{method}.safetensors"
            proc = ctx.Process(target=worker, args=(method, args, out, q))
            proc.start()
            r = q.get()
            proc.join()
            r["acts"] = load_file(out)["acts"]
            results[method] = r
            print(f"{method}: {r['tokens_per_s']:.0f} tokens/s ({r['seconds']:.1f} s)",
                  file=sys.stderr)
    ref = results["finsae"]["acts"] if "finsae" in results else None
    for r in results.values():
        acts = r.pop("acts")
        if ref is not None:
            r["max_abs_diff_vs_finsae"] = float((acts - ref).abs().max())
            r["identical_to_finsae"] = bool(torch.equal(acts, ref))
    if "naive" in results:
        for r in results.values():
            r["speedup_vs_naive"] = r["tokens_per_s"] / results["naive"]["tokens_per_s"]
            r["cpu_speedup_vs_naive"] = (r["tokens_per_cpu_s"]
                                         / results["naive"]["tokens_per_cpu_s"])

    if args["json"]:
        print(json.dumps({"config": args, "results": results}, indent=1))
        return 0
    r0 = next(iter(results.values()))
    print(f"{args['model']} on {r0['device']}, {args['threads']} threads: first {args['texts']} "
          f"descriptions, {r0['tokens']:,} tokens ({r0['padded_tokens']:,} padded, "
          f"{r0['batches']} batches), capture after block {args['layer']}")
    print(f"{'method':<10} {'seconds':>8} {'tokens/s':>9} {'speedup':>8} {'tok/cpu-s':>10} "
          f"{'speedup':>8} {'peak RSS':>10} {'+ over load':>12} {'max |diff|':>11}  identical")
    nan = float("nan")
    for m, r in results.items():
        print(f"{m:<10} {r['seconds']:>8.1f} {r['tokens_per_s']:>9.0f} "
              f"{r.get('speedup_vs_naive', nan):>7.2f}x {r['tokens_per_cpu_s']:>10.0f} "
              f"{r.get('cpu_speedup_vs_naive', nan):>7.2f}x "
              f"{r['peak_rss_mib']:>7.0f} MiB "
              f"{r['peak_rss_mib'] - r['rss_after_load_mib']:>8.0f} MiB"
              f" {r.get('max_abs_diff_vs_finsae', float('nan')):>11.2e}  "
              f"{r.get('identical_to_finsae', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
