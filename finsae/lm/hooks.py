"""Forward hooks on a causal LM's decoder blocks: find a block, read the residual stream after
blocks (ending the forward after the last one needed), replace a block's output.

Also `forward_from`: the logits from a block's output, running only the later blocks (a
Llama-like model's partial forward, for splicing SAEs into a cached capture).

The only place in finsae that hooks a model. Block i's output is ``hidden_states[i + 1]`` of a
transformers forward with ``output_hidden_states=True`` (except the last block's, to which
hidden_states adds the final norm); a decoder block returns either that tensor or a tuple
whose first entry it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..data.errors import DataError

#: where the decoder blocks sit: Llama-like, GPT-NeoX/Pythia, GPT-2, OPT, bare stacks
_BLOCK_PATHS = ("model.layers", "gpt_neox.layers", "transformer.h", "model.decoder.layers",
                "layers", "h")


class BlockIndexError(DataError, IndexError):
    """A block index outside the model (an IndexError and a DataError)."""


class StopForward(Exception):
    """Raised by a capture hook on the last block needed, to end the forward there."""


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama-like, GPT-NeoX/Pythia, GPT-2, OPT...)."""
    for path in _BLOCK_PATHS:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise DataError(f"cannot find the decoder blocks of {type(model).__name__}: expected one of "
                    "model.layers, gpt_neox.layers, transformer.h, model.decoder.layers")


def block(model: torch.nn.Module, i: int) -> torch.nn.Module:
    """The i-th decoder block; its output is ``hidden_states[i + 1]`` of a full forward.

    Hook it to read or replace the residual stream after block i, e.g. to splice an SAE
    reconstruction in. Negative i counts from the end.
    """
    layers = decoder_layers(model)
    n = len(layers)
    if not -n <= i < n:
        raise BlockIndexError(f"block {i} out of range: the model has {n} blocks (0..{n - 1})")
    return layers[i]


def block_output(output) -> Tensor:
    """The hidden state in what a decoder block returned (a tensor, or a tuple led by one)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture(model: torch.nn.Module, layers: Sequence[int], *, stop: bool = True,
            blocks: Sequence[torch.nn.Module] | None = None) -> Iterator[dict[int, Tensor]]:
    """Hooks writing the output of each block in `layers` into the yielded dict (layer ->
    [batch, seq, d], overwritten by every forward).

    stop: the hook on the last (highest) layer raises `StopForward`, so the blocks after it and
    the LM head never run; run the model with `forward`. blocks: the modules to hook instead of
    ``block(model, i)``, one per layer. The hooks are removed on exit.
    """
    layers = list(layers)
    mods = [block(model, i) for i in layers] if blocks is None else list(blocks)
    captured: dict[int, Tensor] = {}
    last = max(layers)

    def make(i: int):
        def hook(_module, _args, output):
            captured[i] = block_output(output)
            if stop and i == last:
                raise StopForward
        return hook

    handles = [m.register_forward_hook(make(i)) for i, m in zip(layers, mods)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def forward(model: torch.nn.Module, **inputs) -> bool:
    """``model(**inputs)``, ending quietly where a capture hook stopped it; True if one did."""
    try:
        model(**inputs)
    except StopForward:
        return True
    return False


@contextmanager
def replace_output(module: torch.nn.Module, edit: Callable[[Tensor], Tensor | None]):
    """Hook a block so that `edit(h)` sees its output h on every forward: a tensor returned
    replaces h downstream (a tuple output keeps its other entries), None leaves it as is."""
    def hook(_module, _args, output):
        new = edit(block_output(output))
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _causal_mask(model: torch.nn.Module, h: Tensor, pos: Tensor):
    """The model's own causal mask for unpadded sequences (None where its attention applies
    causality itself), built as its forward builds it (the arguments vary by version)."""
    import inspect

    from transformers.masking_utils import create_causal_mask
    params = inspect.signature(create_causal_mask).parameters
    kw = {"config": model.config, "inputs_embeds": h, "attention_mask": None,
          "position_ids": pos}
    for name in ("cache", "past_key_values"):
        if name in params:
            kw[name] = None
    if "cache_position" in params:
        kw["cache_position"] = pos[0]
    return create_causal_mask(**kw)


def forward_from(model: torch.nn.Module, hidden: Tensor, layer: int) -> Tensor:
    """Logits [B, T, vocab] of a Llama-like causal LM when `hidden` [B, T, d] is the output of
    block `layer`: only the blocks after it, the final norm and the LM head run (the blocks up
    to `layer` are skipped, the costly half of splicing an SAE in after a cached capture).

    The sequences are taken as unpadded and starting at position 0 (packed token chunks), so
    the attention mask is plain causal. Supported: models laid out as Llama (``model.layers``,
    ``model.rotary_emb``, ``model.norm``, ``lm_head``: Llama, SmolLM2, Mistral, Qwen2) with
    full attention in every block; anything else raises a DataError.
    """
    inner = getattr(model, "model", None)
    cfg = getattr(model, "config", None)
    missing = [n for n, obj in (("model.layers", getattr(inner, "layers", None)),
                                ("model.rotary_emb", getattr(inner, "rotary_emb", None)),
                                ("model.norm", getattr(inner, "norm", None)),
                                ("lm_head", getattr(model, "lm_head", None)))
               if obj is None]
    if missing or cfg is None:
        raise DataError(f"forward_from supports Llama-like models only: {type(model).__name__} "
                        f"has no {', '.join(missing) or 'config'}")
    if getattr(cfg, "final_logit_softcapping", None) or any(
            t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        raise DataError(f"forward_from does not support {type(model).__name__}: logit "
                        "soft-capping or sliding-window blocks")
    n = len(inner.layers)
    if not -n <= layer < n:
        raise BlockIndexError(f"block {layer} out of range: the model has {n} blocks "
                              f"(0..{n - 1})")
    if hidden.ndim != 3:
        raise DataError(f"hidden must be [batch, seq, d], got {list(hidden.shape)}")
    p = next(model.parameters())
    h = hidden.to(device=p.device, dtype=p.dtype)
    pos = torch.arange(h.shape[1], device=h.device)[None]
    mask = _causal_mask(model, h, pos)
    pe = inner.rotary_emb(h, position_ids=pos)
    for blk in inner.layers[layer % n + 1:]:
        h = block_output(blk(h, attention_mask=mask, position_embeddings=pe, position_ids=pos))
    return model.lm_head(inner.norm(h))
