"""Group-SAE training: one SAE per group of layers on tokens mixed across the group, and
layer-wise transfer (fine-tuning a neighbour layer's SAE)."""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch

from .train import train_sae


def group_tokens(acts, group: Sequence[int], seed: int = 0) -> torch.Tensor:
    """The training set of a group's SAE: token n is the activation of a random layer of the
    group at token n (uniform, seeded). `acts` is [L, N, d] or a dict layer -> [N, d] holding
    the same N tokens for every layer; the result is [N, d], as many tokens as one layer has,
    so a group SAE sees the same number of tokens as a per-layer SAE."""
    group = list(group)
    first = acts[group[0]]
    n = first.shape[0]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(group), (n,), generator=g)
    out = torch.empty_like(first)
    for j, layer in enumerate(group):
        sel = pick == j
        out[sel] = acts[layer][sel]
    return out


def mixed_layer_batches(batches: Iterable, group: Sequence[int], seed: int = 0):
    """Streaming form of `group_tokens`: from batches holding every layer ([L, N, d] or dict),
    yield [N, d] batches whose token n comes from a random layer of the group."""
    g = torch.Generator().manual_seed(seed)
    group = list(group)
    for b in batches:
        first = b[group[0]]
        pick = torch.randint(len(group), (first.shape[0],), generator=g)
        out = torch.empty_like(first)
        for j, layer in enumerate(group):
            out[pick == j] = b[layer][pick == j]
        yield out


def train_group_sae(acts, group: Sequence[int], sae_cfg, train_cfg, *, out=None,
                    seed: int = 0):
    """One SAE for a group of layers (`finsae.sae.train_sae` on `group_tokens`). The saved
    cfg.json records the group under meta['layers']."""
    cfg = copy.deepcopy(sae_cfg)
    cfg.meta = {**cfg.meta, "layers": [int(l) for l in group], "hook": "resid_post",
                "group_sae": True}
    # float32: a float16 cache would overflow in the squared norms of the activation scale
    return train_sae(group_tokens(acts, group, seed).float(), cfg, train_cfg, out=out)


def transfer_sae(init, source, train_cfg, *, out=None, layer: int | None = None):
    """Fine-tune a copy of a trained SAE (`init`, acting on raw activations) on `source`, the
    activations of another layer: layer-wise transfer (Ghilardi et al. 2024).

    `train_sae(..., init=init)`: the copy is rescaled to the new layer's activation scale and
    trained with a fresh optimizer, zero tokens and no dead latents, so b_dec and every weight
    start from `init` instead of the usual initialisation.
    """
    if not isinstance(source, torch.Tensor):
        raise TypeError("transfer_sae needs the new layer's activations as a [tokens, d] tensor")
    cfg = copy.deepcopy(init.cfg)
    cfg.meta = {**cfg.meta, "transfer_from": cfg.meta.get("layer", cfg.meta.get("layers")),
                **({"layer": int(layer)} if layer is not None else {})}
    return train_sae(source.float(), cfg, train_cfg, out=out, init=init)
