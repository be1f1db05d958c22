"""Activation sources for SAE training: cached safetensors, a live LM stream, shuffled batches."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors.torch import load_file
from torch import Tensor

from ..data.errors import DataError
from ..lm import hooks
from ..lm.tokens import model_inputs
from .metrics import massive_token_mask


def load_activations(path: str | Path, key: str = "acts") -> Tensor:
    """[n, d] activations from a safetensors file holding `key`, or a folder of such shards."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise DataError("no activations: expected a .safetensors file or a folder of them",
                        path=path)
    parts = []
    for f in files:
        if f.is_dir():
            raise DataError("is a folder, not a .safetensors file", path=f)
        try:
            t = load_file(str(f))
        except Exception as e:  # noqa: BLE001 - safetensors raises several kinds
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"not a readable safetensors file ({msg})", path=f) from e
        if key not in t:
            raise DataError(f"no tensor {key!r}; found {sorted(t)}", path=f)
        a = t[key]
        if a.ndim == 3:
            a = a.reshape(-1, a.shape[-1])
        if a.ndim != 2:
            raise DataError(f"{key!r} must be [tokens, d], got {list(a.shape)}", path=f)
        parts.append(a.float())
    if len({p.shape[1] for p in parts}) > 1:
        raise DataError(f"shards disagree on d: {sorted({p.shape[1] for p in parts})}", path=path)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


# --- batches ----------------------------------------------------------------------------------

class Batches:
    """Shuffled [batch_size, d] batches from a tensor or a stream of [n, d] chunks.

    A tensor is reshuffled each epoch with a seeded generator. A stream goes through a
    shuffling buffer of `buffer_tokens`, refilled when half empty, so consecutive tokens of
    one text rarely share a batch. Massive tokens are dropped and counted in `n_dropped`.

    Data parallel (`world_size` > 1): `batch_size` is the global batch and each rank yields
    its own `batch_size // world_size` rows of it. With a tensor every rank draws the same
    seeded permutation and takes slice `rank` of each global batch, so the ranks together see
    exactly the batches of a single process. A stream is split by chunk (chunk i goes to rank
    i % world_size), each rank shuffling its own chunks.
    """

    def __init__(self, source, batch_size: int, *, seed: int = 0, buffer_tokens: int = 2**18,
                 massive_factor: float | None = 10.0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} out of range for world size {world_size}")
        if batch_size % world_size:
            raise DataError(f"the batch size {batch_size} must be a multiple of the number of "
                            f"processes ({world_size})")
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self._chunk = 0
        self.batch_size, self.buffer_tokens = batch_size, buffer_tokens
        self.massive_factor = massive_factor
        self.g = torch.Generator().manual_seed(seed)
        self.n_dropped = 0
        self.n_seen = 0
        if isinstance(source, (str, Path)):
            source = load_activations(source)
        if isinstance(source, Tensor):
            if source.ndim != 2:
                raise DataError(f"activations must be [tokens, d], got {list(source.shape)}")
            drop = massive_token_mask(source, massive_factor)
            self.n_dropped = int(drop.sum())
            self.n_seen = len(source)
            self.tensor = source[~drop] if self.n_dropped else source
            if len(self.tensor) < batch_size:
                raise DataError(f"only {len(self.tensor)} tokens, fewer than one batch "
                                f"({batch_size})")
            self.stream = None
        else:
            self.tensor, self.stream = None, iter(source)
        self.buffer = None

    @property
    def d(self) -> int:
        return self.peek().shape[1]

    def _pull(self) -> Tensor | None:
        try:
            chunk = next(self.stream)
            while self.world_size > 1 and self._chunk % self.world_size != self.rank:
                self._chunk += 1
                chunk = next(self.stream)
            self._chunk += 1
        except StopIteration:
            return None
        chunk = torch.as_tensor(chunk).float()
        chunk = chunk.reshape(-1, chunk.shape[-1])
        drop = massive_token_mask(chunk, self.massive_factor)
        self.n_seen += len(chunk)
        self.n_dropped += int(drop.sum())
        return chunk[~drop]

    def _fill(self) -> bool:
        have = [] if self.buffer is None else [self.buffer]
        n = sum(len(b) for b in have)
        grew = False
        while n < self.buffer_tokens:
            c = self._pull()
            if c is None:
                break
            have.append(c)
            n += len(c)
            grew = True
        if have:
            buf = torch.cat(have)
            self.buffer = buf[torch.randperm(len(buf), generator=self.g)]
        return grew

    def peek(self, n: int | None = None) -> Tensor:
        """Up to n tokens (for initialisation) without consuming them."""
        if self.tensor is not None:
            if n is None or n >= len(self.tensor):
                return self.tensor
            return self.tensor[torch.randperm(len(self.tensor), generator=self.g)[:n]]
        if self.buffer is None:
            self._fill()
        if self.buffer is None or not len(self.buffer):
            raise DataError("the activation stream is empty")
        return self.buffer if n is None else self.buffer[:n]

    def __iter__(self) -> Iterator[Tensor]:
        if self.tensor is not None:
            t, B = self.tensor, self.batch_size
            a, b = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
            while True:
                perm = torch.randperm(len(t), generator=self.g)
                for s in range(0, len(t) - B + 1, B):
                    yield t[perm[s:s + B]] if self.world_size == 1 else t[perm[s + a:s + b]]
        b = self.local_batch
        while True:
            if self.buffer is None or len(self.buffer) < self.buffer_tokens // 2:
                self._fill()
            if self.buffer is None or len(self.buffer) < b:
                return
            yield self.buffer[:b]
            self.buffer = self.buffer[b:]



# --- live LM stream ---------------------------------------------------------------------------

@torch.no_grad()
def stream_activations(model, tokenizer, texts: Iterable[str], *, layer: int,
                       batch_size: int = 8, max_length: int = 256, block=None,
                       bos: bool = True) -> Iterator[Tensor]:
    """Yield [n_text_tokens, d] outputs of decoder block `layer`, one chunk per batch of texts;
    the forward stops after that block. Texts are tokenized as the capture does
    (`finsae.lm.tokens.model_inputs`: at most max_length text tokens, the BOS prepended when
    the tokenizer has one); the BOS and padding positions are dropped."""
    with hooks.capture(model, [layer], blocks=None if block is None else [block]) as grabbed:
        texts = list(texts)
        dev = next(model.parameters()).device
        for s in range(0, len(texts), batch_size):
            inp = model_inputs(tokenizer, texts[s:s + batch_size], max_length, bos=bos)
            hooks.forward(model, input_ids=inp.input_ids.to(dev),
                          attention_mask=inp.attention_mask.to(dev), use_cache=False)
            yield grabbed[layer][inp.keep.to(dev)].float()
