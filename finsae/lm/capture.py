"""Residual-stream capture: run a causal LM on texts and keep the output of chosen blocks.

Index convention: block i's output is ``hidden_states[i + 1]`` of a transformers forward with
``output_hidden_states=True`` (hidden_states[0] is the embedding output). The one exception is
the last block, whose hidden_states entry has the final norm applied; here it is the raw
block output.

Tokens: `finsae.lm.tokens` (the BOS convention shared with the SAE training stream and the
splice metrics).

Speed: the hook on the last requested block ends the forward (`hooks.capture`), so the blocks
after it and the LM head (a 49k-vocabulary matmul for SmolLM2) never run. Texts are sorted by
length within a shard and cut into batches under a token budget at the points that minimise
padding plus a per-batch overhead, and padded on the right: in a causal model real tokens never
attend to later (padding) positions, so a text's activations do not depend on its batch, and
the forward needs no attention mask (the attention runs its plain causal kernel). Timings and
the bf16 mode (a model loaded with ``dtype=bfloat16``): docs/speed.md.
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from .. import dist
from ..data.paths import cache_dir
from ..hashing import Hasher, texts_digest
from ..integrity import report_damaged
from .defaults import DEFAULT_LAYER
from .hooks import capture, decoder_layers, forward
from .load import LM
from .store import (FORMAT, ActivationStore, EncodeStats, read_shard, write_json, write_shard)
from .tokens import Tokenized, bos_id, pad_batch, pad_id, tokenize


@dataclass(frozen=True)
class CaptureConfig:
    """What determines the activations (all of it goes into the cache key) ..."""

    #: blocks whose output (the residual stream after the block) is kept
    layers: tuple[int, ...] = (DEFAULT_LAYER,)
    #: text tokens kept per text (BOS not counted); longer texts are truncated
    max_tokens: int = 512
    #: prepend the tokenizer's BOS: the attention sink (residual norm ~20k in SmolLM2) then
    #: sits on BOS, which is dropped, instead of on the first word
    bos: bool = True
    #: store token-level rows; False keeps only per-text means
    keep_tokens: bool = True
    # ... and how it is computed (not in the key: results agree to float rounding).
    #: padded tokens per forward batch
    batch_tokens: int = 4096
    #: text tokens per cache shard, the unit of resumption and of the split between torchrun
    #: processes
    shard_tokens: int = 32768


def encode_texts(lm: LM, texts: Sequence[str], layers: Sequence[int] | int = (DEFAULT_LAYER,),
                 max_tokens: int = CaptureConfig.max_tokens, *, cache: bool = True,
                 bos: bool = CaptureConfig.bos, keep_tokens: bool = CaptureConfig.keep_tokens,
                 batch_tokens: int = CaptureConfig.batch_tokens,
                 shard_tokens: int = CaptureConfig.shard_tokens,
                 progress: bool | None = None) -> ActivationStore:
    """Residual-stream activations of `texts` after each block in `layers`.

    Returns an `ActivationStore` (token rows in input order, per-text means, token ids,
    character offsets). With ``cache=True`` the shards are written under
    ``cache_dir("activations")`` keyed by model fingerprint, layers, truncation, BOS and texts;
    a rerun reuses finished shards (an interrupted run resumes) and recomputes any shard whose
    checksum fails. progress: a tqdm bar with tokens/s (None: only on a terminal).

    Sharded across processes: when a `torch.distributed` process group is up (``torchrun
    ... -m finsae encode``, see `finsae.dist`), rank 0 writes the manifest and finds the shards
    still to compute, shard j of that list goes to rank j % world_size, every rank writes its
    own shard files into the same cache folder (so the layout is the one a single process
    writes; the folder must be on a file system every rank sees), and after a barrier every
    rank returns the complete store. Without a cache the shards' tensors are all-gathered.
    The bar shows rank 0's share.
    """
    world, rank = dist.world_size(), dist.rank()
    layers = (layers,) if isinstance(layers, int) else tuple(layers)
    cfg = CaptureConfig(layers=check_layers(layers, lm.n_layers), max_tokens=int(max_tokens),
                        bos=bool(bos), keep_tokens=bool(keep_tokens),
                        batch_tokens=int(batch_tokens), shard_tokens=int(shard_tokens))
    if cfg.max_tokens < 1 or cfg.batch_tokens < 1 or cfg.shard_tokens < 1:
        raise ValueError("max_tokens, batch_tokens and shard_tokens must be positive")
    texts = _check_texts(texts)
    bos_tok = _bos_id(lm) if cfg.bos else None
    tok = tokenize(lm.tokenizer, texts, cfg.max_tokens)
    empty = [i for i, ids in enumerate(tok.ids) if not ids]
    if empty:
        raise ValueError(f"{len(empty)} text(s) have no tokens (e.g. text {empty[0]}): "
                         "drop empty texts before encoding")

    key = cache_key(lm, cfg, texts)
    folder = None
    manifest = None
    if cache:
        folder = cache_dir("activations", f"{_slug(lm.name)}-{key[:16]}")
        manifest = _read_manifest(folder, key)
    if manifest is None:
        manifest = {"format": FORMAT, "key": key, "model": lm.name, "source": lm.source,
                    "fingerprint": lm.fingerprint, "d_model": lm.d_model,
                    "n_layers": lm.n_layers, "bos_id": bos_tok, "n_texts": len(texts),
                    "texts_sha256": texts_digest(texts),
                    **{k: v for k, v in asdict(cfg).items() if k != "batch_tokens"},
                    "layers": list(cfg.layers),
                    "shards": _plan(tok.ids, cfg.shard_tokens)}
        if folder is not None and rank == 0:
            write_json(folder / "texts.json", list(texts))
            write_json(folder / "manifest.json", manifest)
    elif folder is not None and rank == 0:
        _repair_texts(folder / "texts.json", list(texts))

    shards: list = [None] * len(manifest["shards"])
    todo: list[int] = []
    if rank == 0:
        for j, s in enumerate(manifest["shards"]):
            if folder is not None and read_shard(folder / s["file"], s["n_tokens"]) is not None:
                shards[j] = folder / s["file"]
            else:
                if folder is not None and (folder / s["file"]).exists():  # absent: not yet run
                    report_damaged(folder / s["file"], "unreadable or checksum mismatch",
                                   "recomputing it")
                todo.append(j)
    if world > 1:  # rank 0's view of the cache decides, before any rank writes a shard
        todo = dist.broadcast_object(todo)
    mine = todo[rank::world]

    total = sum(s["n_tokens"] for s in manifest["shards"])
    done = total - sum(manifest["shards"][j]["n_tokens"] for j in todo)
    t0 = time.perf_counter()
    if world > 1:
        total = done + sum(manifest["shards"][j]["n_tokens"] for j in mine)
    bar = tqdm(total=total, initial=done, unit="tok", unit_scale=True,
               disable=(None if progress is None else not progress) if rank == 0 else True,
               desc=f"encode {lm.name} {list(cfg.layers)}")
    try:
        with capture(lm.model, cfg.layers) as captured:
            for j in mine:
                s = manifest["shards"][j]
                a, b = s["start"], s["end"]
                tensors = _encode_shard(lm, Tokenized(tok.ids[a:b], tok.offsets[a:b]), a,
                                        cfg, bos_tok, captured, bar)
                if folder is None:
                    shards[j] = tensors
                else:
                    write_shard(folder / s["file"], tensors,
                                {"shard": str(j), "start": str(a), "end": str(b), "key": key})
                    shards[j] = folder / s["file"]
    finally:
        bar.close()
    if world > 1:
        if folder is None:
            for part in dist.all_gather_object({j: shards[j] for j in mine}):
                for j, tensors in part.items():
                    shards[j] = tensors
        else:
            dist.barrier()  # every shard file is written
            shards = [folder / s["file"] for s in manifest["shards"]]
        total = sum(s["n_tokens"] for s in manifest["shards"])
    seconds = time.perf_counter() - t0
    stats = EncodeStats(len(texts), total, total - done, len(todo),
                        len(manifest["shards"]) - len(todo), seconds)
    return ActivationStore(manifest, shards, folder, texts=list(texts), stats=stats)


def cache_key(lm: LM, cfg: CaptureConfig, texts: Sequence[str]) -> str:
    # BLAKE2b-128 (the manifest's texts_sha256 is SHA-256 of the same texts): both as every
    # existing activation cache was written; the settings in this order, keys not sorted.
    return Hasher("blake2b", 16).json(
        {"format": FORMAT, "model": lm.fingerprint, "layers": cfg.layers,
         "max_tokens": cfg.max_tokens, "bos": cfg.bos, "keep_tokens": cfg.keep_tokens},
        sort_keys=False).texts(texts).hex()



def pack_tokens(tokenizer, texts: Iterable[str], n_tokens: int, seq_len: int) -> torch.Tensor:
    """[ceil(n_tokens / seq_len), seq_len] token ids: `texts` in the order given, each
    tokenized as ``tokenizer(text)`` does and followed by EOS, concatenated and cut into
    chunks with no padding (a chunk may start mid-text). Reads only as many texts as needed;
    ValueError if they run out."""
    if n_tokens < 1 or seq_len < 1:
        raise ValueError("n_tokens and seq_len must be positive")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to separate packed texts")
    need = math.ceil(n_tokens / seq_len) * seq_len
    ids: list[int] = []
    for text in texts:
        ids += list(tokenizer(text).input_ids) + [eos]
        if len(ids) >= need:
            break
    else:
        raise ValueError(f"the texts hold {len(ids)} tokens, fewer than the {need} asked for")
    return torch.tensor(ids[:need]).view(-1, seq_len)


@torch.no_grad()
def capture_blocks(model: torch.nn.Module, chunks: torch.Tensor,
                   layers: Sequence[int] | None = None, *, batch_size: int = 8,
                   dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """[len(layers), n_chunks * seq_len, d] outputs of blocks `layers` (default: every block)
    on unpadded token chunks [n_chunks, seq_len] (e.g. `pack_tokens`), rows in chunk order,
    stored as `dtype` on the CPU. One forward per `batch_size` chunks, with `hooks.capture` on
    every layer (the forward ends after the highest)."""
    if chunks.ndim != 2:
        raise ValueError(f"chunks must be [n_chunks, seq_len], got {list(chunks.shape)}")
    n = len(decoder_layers(model))
    layers = list(range(n)) if layers is None else list(check_layers(tuple(layers), n))
    device = next(model.parameters()).device
    # filled in place: collecting per-batch pieces and then cat + stack held three copies (a
    # 330k-token capture of 30 SmolLM2 blocks, 11 GB in float16, peaked past 24 GB)
    out = None
    row = 0
    with capture(model, layers) as got:
        for s in range(0, len(chunks), batch_size):
            forward(model, input_ids=chunks[s:s + batch_size].to(device), use_cache=False)
            for j, layer in enumerate(layers):
                h = got[layer]
                h = h.reshape(-1, h.shape[-1])
                if out is None:
                    out = torch.empty(len(layers), chunks.numel(), h.shape[-1], dtype=dtype)
                out[j, row:row + len(h)] = h.to("cpu", dtype)
            row += len(h)
    if out is None:
        raise ValueError("no chunks to capture")
    return out


# ---- internals ----------------------------------------------------------------------------
def _encode_shard(lm: LM, tok: Tokenized, first_doc: int, cfg: CaptureConfig,
                  bos: int | None, captured: dict, bar) -> dict[str, torch.Tensor]:
    n_docs = len(tok.ids)
    lengths = torch.tensor([len(x) for x in tok.ids])
    starts = torch.cumsum(lengths, 0) - lengths        # row of each text's first token
    n = int(lengths.sum())
    d = lm.d_model
    rows = {i: torch.empty(n, d, dtype=torch.float32) for i in cfg.layers}
    device = lm.device
    pad = pad_id(lm.tokenizer)                         # any id: padded positions are dropped

    with torch.inference_mode():
        for batch in _batches(lengths.tolist(), cfg.batch_tokens, 0 if bos is None else 1):
            inp = pad_batch([tok.ids[k] for k in batch], bos, pad)
            dest = torch.cat([torch.arange(int(starts[k]), int(starts[k]) + len(tok.ids[k]))
                              for k in batch])
            captured.clear()
            # No attention mask: with right padding, real tokens never attend to the padding
            # after them in a causal model, so they come out as with the mask, and the
            # attention runs its plain causal kernel with no [B, 1, T, T] mask to build.
            if not forward(lm.model, input_ids=inp.input_ids.to(device), use_cache=False):
                raise RuntimeError("the forward finished without reaching the last requested "
                                   "block (are the hooks on this model's decoder blocks?)")
            keep = inp.keep.to(device)
            for i in cfg.layers:
                rows[i].index_copy_(0, dest, captured[i][keep].to("cpu", torch.float32))
            bar.update(len(dest))

    local = torch.repeat_interleave(torch.arange(n_docs), lengths)
    out = {"n_tokens": lengths}
    for i in cfg.layers:
        sums = torch.zeros(n_docs, d, dtype=torch.float64).index_add_(0, local, rows[i].double())
        out[f"mean.{i}"] = (sums / lengths[:, None]).float()
        if cfg.keep_tokens:
            out[f"layer.{i}"] = rows[i]
    if cfg.keep_tokens:
        out["doc_index"] = local + first_doc
        out["token_ids"] = torch.tensor([t for x in tok.ids for t in x], dtype=torch.long)
        out["offsets"] = torch.tensor([o for x in tok.offsets for o in x],
                                      dtype=torch.long).reshape(n, 2)
    return out


def _batches(lengths: list[int], budget: int, extra: int, overhead: int = 256,
             max_rows: int = 256) -> list[list[int]]:
    """Indices sorted longest first and cut into batches of at most max_rows texts whose padded
    size (count x longest, each text `extra` tokens longer) is <= budget, the cuts chosen to
    minimise the padded tokens plus `overhead` tokens per batch (dynamic programming over the
    cut points; max_rows bounds its cost on very short texts)."""
    order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
    size = [lengths[k] + extra for k in order]
    n = len(order)
    best = [0.0] + [math.inf] * n                      # best[j]: cost of the first j texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, max(j - max_rows, 0) - 1, -1):   # batch order[i:j]
            if (j - i) * size[i] > budget and i < j - 1:
                break
            c = best[i] + (j - i) * size[i] + overhead
            if c < best[j]:
                best[j], cut[j] = c, i
    batches, j = [], n
    while j:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


def _plan(ids: list[list[int]], shard_tokens: int) -> list[dict]:
    """Contiguous ranges of texts holding about shard_tokens text tokens each."""
    shards, start, count = [], 0, 0
    for k, x in enumerate(ids):
        count += len(x)
        if count >= shard_tokens or k == len(ids) - 1:
            shards.append({"file": f"shard-{len(shards):05d}.safetensors", "start": start,
                           "end": k + 1, "n_tokens": count})
            start, count = k + 1, 0
    return shards


def _repair_texts(path: Path, texts: list[str]) -> None:
    """texts.json of an existing cache must hold exactly the texts its key was made from."""
    try:
        ok = json.loads(path.read_text()) == texts
        problem = "content differs from the encoded texts"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        ok, problem = False, ("file missing" if not path.exists()
                              else f"unreadable: {type(e).__name__}")
    if not ok:
        report_damaged(path, problem, "rewriting it")
        write_json(path, texts)


def _read_manifest(folder: Path, key: str) -> dict | None:
    path = folder / "manifest.json"
    try:
        m = json.loads(path.read_text())
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if path.exists():
            report_damaged(path, f"unreadable: {type(e).__name__}", "rewriting it")
        return None
    return m if m.get("key") == key and m.get("format") == FORMAT else None


def check_layers(layers: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Layer indices as sorted, distinct, non-negative block numbers; IndexError if out of
    range, TypeError if not integers."""
    if not layers:
        raise ValueError("no layers requested")
    out = []
    for i in layers:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"layer {i!r} is not an integer") from None
        if not -n_layers <= i < n_layers:
            raise IndexError(f"layer {i!r} out of range: the model has {n_layers} blocks, "
                             f"valid layers are 0..{n_layers - 1} (or negative from the end)")
        out.append(i % n_layers)
    return tuple(sorted(set(out)))


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    if not texts:
        raise ValueError("no texts to encode")
    return texts


def _bos_id(lm: LM) -> int:
    try:
        return bos_id(lm.tokenizer, required=True)
    except ValueError:
        raise ValueError(f"the tokenizer of {lm.name} has no BOS token: pass bos=False") \
            from None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "model"
