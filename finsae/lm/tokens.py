"""Texts to model inputs, with one BOS convention for the activation capture
(`capture.encode_texts`), the live SAE training stream (`finsae.sae.stream_activations`) and the
LM splice metrics (`finsae.sae.splice_metrics_on_texts`).

Convention: a text is tokenized without special tokens and truncated to `max_tokens` text
tokens; the tokenizer's BOS is prepended when it has one (``bos=True``); the BOS position holds
the attention sink (residual norm ~20k in SmolLM2, instead of on the first word) and is
dropped from everything computed on the residual stream: capture rows, training tokens,
spliced tokens and scored predictions. So a text gives the same token ids and the same
activations in all three. Batches are padded on the right.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch


class Tokenized(NamedTuple):
    ids: list[list[int]]                   # text tokens, no BOS
    offsets: list[list[tuple[int, int]]]   # (start, end) characters of each token


class Inputs(NamedTuple):
    input_ids: torch.Tensor        # [B, T] BOS (when used) + text tokens, right padding
    attention_mask: torch.Tensor   # [B, T] 1 on BOS and text tokens
    keep: torch.Tensor             # [B, T] bool: the text tokens (not BOS, not padding)
    bos_id: int | None             # the BOS prepended, None when none was


def tokenize(tokenizer, texts: Sequence[str], max_tokens: int) -> Tokenized:
    """Text tokens (no special tokens) and their character offsets, truncated to max_tokens."""
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True,
                    max_length=max_tokens, return_offsets_mapping=True,
                    return_attention_mask=False)
    return Tokenized([list(x) for x in enc["input_ids"]],
                     [[tuple(o) for o in x] for x in enc["offset_mapping"]])


def bos_id(tokenizer, bos: bool = True, *, required: bool = False) -> int | None:
    """The BOS id to prepend: the tokenizer's when ``bos`` and it has one, else None
    (``required``: ValueError when the tokenizer has none)."""
    if not bos:
        return None
    b = tokenizer.bos_token_id
    if b is None and required:
        raise ValueError("the tokenizer has no BOS token: pass bos=False")
    return None if b is None else int(b)


def pad_id(tokenizer) -> int:
    """Any id for padded positions (they are masked or dropped): the pad token, else 0."""
    p = tokenizer.pad_token_id
    return 0 if p is None else int(p)


def pad_batch(seqs: Sequence[Sequence[int]], bos: int | None, pad: int) -> Inputs:
    """Right-padded [B, T] inputs of text token lists, each led by `bos` when not None."""
    skip = 0 if bos is None else 1
    width = max(len(s) for s in seqs) + skip
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    lengths = torch.tensor([len(s) + skip for s in seqs])
    pos = torch.arange(width)[None]
    mask = pos < lengths[:, None]
    for r, s in enumerate(seqs):
        if skip:
            ids[r, 0] = bos
        ids[r, skip:skip + len(s)] = torch.as_tensor(s, dtype=torch.long)
    keep = mask & (pos >= skip)
    return Inputs(ids, mask.long(), keep, bos)


def model_inputs(tokenizer, texts: Sequence[str], max_tokens: int, *,
                 bos: bool = True) -> Inputs:
    """`texts` as capture tokenizes them: text tokens truncated to max_tokens, the BOS
    prepended when the tokenizer has one (and ``bos``), right padding."""
    return pad_batch(tokenize(tokenizer, texts, max_tokens).ids, bos_id(tokenizer, bos),
                     pad_id(tokenizer))
