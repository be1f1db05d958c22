"""`finsae encode`: residual-stream activations of the company descriptions (and corpus)."""

from __future__ import annotations

import argparse
import json
import sys

from ..data.errors import DataError
from ..lm.capture import CaptureConfig
from ..lm.defaults import DEFAULT_LAYER, DEFAULT_MODEL
from .options import add_dataclass_flags


def register(subparsers) -> None:
    from .common import common_inputs

    p = subparsers.add_parser(
        "encode", help="LM activations of every company description (cached, resumable)",
        description="Run the language model on every non-empty company description (and, with "
                    "--corpus, the FinanceDatabase corpus), keep the residual stream after the "
                    "chosen blocks, and cache it (token level + per-text means). A rerun "
                    "reuses the cache; an interrupted run resumes.")
    common_inputs(p)
    p.add_argument("--vintage", default="latest",
                   help="which bundled description each company gets (latest, c2016, ...)")
    p.add_argument("--corpus", action="store_true",
                   help="also encode the bundled FinanceDatabase corpus")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"short name, Hugging Face id, model folder or .gguf file (default "
                        f"{DEFAULT_MODEL})")
    p.add_argument("--layers", default=str(DEFAULT_LAYER),
                   help=f"block indices, comma-separated, or 'all' (default {DEFAULT_LAYER}; "
                        f"block i's output is hidden_states[i+1])")
    add_dataclass_flags(p, CaptureConfig, skip=("layers", "keep_tokens"))
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:1 ... (default cpu). Under torchrun the shards are "
                        "split between the processes (cuda means cuda:LOCAL_RANK)")
    p.add_argument("--dtype", default=None,
                   help="float32, bfloat16 or float16 (default float32 on CPU, bfloat16 on CUDA); "
                        "bfloat16 on a CPU with AVX512-BF16 captures ~2x faster with ~1%% "
                        "mean activation error (docs/speed.md)")
    p.add_argument("--means-only", action="store_true",
                   help="keep only per-text means, not token-level activations")
    p.add_argument("--limit", type=int, default=None, help="encode only the first N texts")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model code shipped with a checkpoint to run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import dist
    device = dist.setup(args.device)  # under torchrun: join the job (gloo on CPU, nccl on CUDA)
    try:
        return _run(args, device)
    finally:
        dist.teardown()


def _run(args: argparse.Namespace, device: str) -> int:
    from .. import dist
    from ..data.companies import load_companies
    from ..lm.capture import check_layers, encode_texts
    from ..lm.load import load_lm

    companies = load_companies(args.companies, vintage=args.vintage)
    desc = companies["description"].fillna("").astype(str)
    keep = desc.str.strip() != ""
    jobs = [("descriptions", desc[keep].tolist(), int((~keep).sum()))]
    if args.corpus:
        jobs.append(("corpus", *_corpus_texts()))
    if args.limit is not None:
        jobs = [(name, texts[:args.limit], skipped) for name, texts, skipped in jobs]

    with dist.main_first():  # rank 0 fills the model cache (GGUF conversion) alone
        lm = load_lm(args.model, device=device, dtype=args.dtype,
                     trust_remote_code=args.trust_remote_code,
                     progress=False if args.no_progress else None)
    layers = _parse_layers(args.layers, lm.n_layers)
    try:
        check_layers(layers, lm.n_layers)
    except (IndexError, TypeError) as e:
        raise DataError(f"--layers: {e}") from None

    results = {}
    for name, texts, skipped in jobs:
        if not texts:
            raise DataError(f"no non-empty {name} to encode")
        store = encode_texts(lm, texts, layers, max_tokens=args.max_tokens, bos=args.bos,
                             batch_tokens=args.batch_tokens, keep_tokens=not args.means_only,
                             shard_tokens=args.shard_tokens,
                             progress=False if args.no_progress else None)
        s = store.stats
        results[name] = {"model": lm.name, "layers": store.layers, "cache": str(store.path),
                         "texts": s.n_texts, "skipped_empty": skipped, "tokens": s.n_tokens,
                         "computed_tokens": s.computed_tokens, "cached_shards": s.cached_shards,
                         "computed_shards": s.computed_shards, "seconds": round(s.seconds, 2),
                         "tokens_per_s": (round(s.tokens_per_s, 1) if s.computed_tokens
                                          else None),
                         "processes": dist.world_size()}
    if not dist.is_main():
        return 0
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for name, r in results.items():
        speed = (f"{r['tokens_per_s']:,.0f} tokens/s" if r["tokens_per_s"]
                 else "all from cache")
        print(f"{name}: {r['texts']} texts ({r['skipped_empty']} empty skipped), "
              f"{r['tokens']:,} tokens, layers {r['layers']}, {r['seconds']:.1f} s, {speed}")
        print(f"  cache: {r['cache']}")
    return 0


def _parse_layers(text: str, n_layers: int) -> list[int]:
    if text.strip().lower() == "all":
        return list(range(n_layers))
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--layers: expected integers like 15 or 6,15 or 'all', not {text!r}") \
            from None


def _corpus_texts() -> tuple[list[str], int]:
    try:
        from ..data.corpus import load_corpus
    except ImportError:
        raise DataError("--corpus needs finsae.data.corpus, which this version lacks") from None
    corpus = load_corpus()
    text = corpus["text"].fillna("").astype(str)
    keep = text.str.strip() != ""
    return text[keep].tolist(), int((~keep).sum())


if __name__ == "__main__":  # pragma: no cover
    from . import main
    sys.exit(main(["encode", *sys.argv[1:]]))
