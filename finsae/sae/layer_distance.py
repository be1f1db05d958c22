"""Angular distance between the layers of an LM: a streaming accumulator, and one pass over texts.

Layers are compared by their angular distance, d(i, j) = E_tokens[arccos(cos(x_i, x_j)) / pi],
where x_i is one token's residual stream after block i. The distance is accumulated batch by
batch (`AngularDistance`), so only one batch of every layer is ever held in memory. The
distances feed Group-SAE's grouping (`finsae.sae.grouping`; Ghilardi et al., EMNLP 2025).

Centring. The authors' code subtracts a running mean of each layer before taking cosines: the
residual stream has a large shared mean direction that makes every pair of layers look alike.
`center="running"` does the same: the mean used for a batch is the mean of every token seen so
far, that batch included (so the first batch is centred by its own mean and later batches by an
ever better estimate). `center="none"` uses raw activations. The SmolLM2 experiment uses
"running"; the choice is recorded in the result.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from ..lm import hooks
from ..lm.tokens import bos_id, pad_batch, pad_id, tokenize
from .metrics import massive_token_mask_any_layer


class AngularDistance:
    """Streaming mean of arccos(cos(x_i, x_j)) / pi over tokens, for every pair of layers.

    Call `update` with one batch of every layer (a [L, N, d] tensor or a list of L [N, d]
    tensors holding the same N tokens), then `result()`. Sums are kept in float64.
    """

    def __init__(self, n_layers: int, center: str = "running"):
        if center not in ("running", "none"):
            raise ValueError(f"center must be 'running' or 'none', got {center!r}")
        self.n_layers, self.center = n_layers, center
        self.n_tokens = 0
        self._sum = torch.zeros(n_layers, n_layers, dtype=torch.float64)
        self._mean: torch.Tensor | None = None    # [L, d] running mean (float64)

    @torch.no_grad()
    def update(self, acts: torch.Tensor | Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> None:
        """acts: [L, N, d] or L tensors [N, d] (or [..., d], flattened); mask: [N] bool, the
        tokens to use (e.g. not padding, not BOS, not a massive activation)."""
        x = acts if isinstance(acts, torch.Tensor) else torch.stack([a for a in acts])
        if x.shape[0] != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {x.shape[0]}")
        x = x.reshape(self.n_layers, -1, x.shape[-1])
        if mask is not None:
            x = x[:, mask.reshape(-1).to(torch.bool)]
        n = x.shape[1]
        if n == 0:
            return
        # float64 throughout: arccos is steep near cos = 1, where neighbouring layers sit
        x = x.double()
        if self.center == "running":
            batch_mean = x.mean(1)
            if self._mean is None:
                self._mean = batch_mean
            else:   # mean of all tokens so far, this batch included
                self._mean += (batch_mean - self._mean) * (n / (self.n_tokens + n))
            x = x - self._mean[:, None]
        u = torch.nn.functional.normalize(x, dim=-1).transpose(0, 1)    # [N, L, d]
        for s in range(0, n, 1024):     # bound the [chunk, L, L] cosine tensor
            cos = torch.bmm(u[s:s + 1024], u[s:s + 1024].transpose(1, 2))
            self._sum += (torch.arccos(cos.clamp(-1, 1)) / math.pi).sum(0)
        self.n_tokens += n

    def result(self) -> np.ndarray:
        """[L, L] symmetric matrix with a zero diagonal."""
        if self.n_tokens == 0:
            raise ValueError("no tokens seen")
        d = (self._sum / self.n_tokens).numpy()
        d = (d + d.T) / 2
        np.fill_diagonal(d, 0.0)    # arccos(1) in float32 is ~3e-4, not 0
        return d


def angular_distances(batches: Iterable, n_layers: int, center: str = "running",
                      max_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """Distance matrix from an iterable of per-batch activations ([L, N, d], or (acts, mask)
    pairs). Stops once max_tokens tokens were used. Returns (matrix, tokens used)."""
    acc = AngularDistance(n_layers, center)
    for b in batches:
        acts, mask = b if isinstance(b, tuple) else (b, None)
        acc.update(acts, mask)
        if max_tokens is not None and acc.n_tokens >= max_tokens:
            break
    return acc.result(), acc.n_tokens


@torch.no_grad()
def model_layer_distances(lm, texts: Sequence[str], *, max_tokens: int = 128,
                          batch_size: int = 8, center: str = "running",
                          massive_factor: float | None = 10.0,
                          token_budget: int | None = None) -> tuple[np.ndarray, dict]:
    """Angular distances between the outputs of every block of `lm` (a `finsae.lm.LM`) on
    `texts`, streamed one batch of texts at a time: hooks on every block feed
    `AngularDistance` and nothing is kept (the forward ends after the last block). A BOS is
    prepended (the attention sink then sits on it) and dropped with the padding; tokens whose
    norm exceeds massive_factor x the layer's median in the batch at any layer are dropped too
    and counted. Stops after token_budget tokens. Returns (matrix, info)."""
    if not len(texts):
        raise ValueError("no texts")
    tok = lm.tokenizer
    n_layers = len(hooks.decoder_layers(lm.model))
    acc = AngularDistance(n_layers, center)
    n_massive = n_seen = 0
    with hooks.capture(lm.model, range(n_layers)) as outs:
        for s in range(0, len(texts), batch_size):
            ids = [x for x in tokenize(tok, list(texts[s:s + batch_size]), max_tokens).ids if x]
            if not ids:
                continue
            inp = pad_batch(ids, bos_id(tok), pad_id(tok))   # the capture's BOS convention
            hooks.forward(lm.model, input_ids=inp.input_ids.to(lm.device),
                          attention_mask=inp.attention_mask.to(lm.device), use_cache=False)
            keep = inp.keep.to(lm.device)
            acts = torch.stack([outs[i][keep].float().cpu()
                                for i in range(n_layers)])                # [L, n, d]
            massive = massive_token_mask_any_layer(acts, massive_factor)
            n_seen += acts.shape[1]
            n_massive += int(massive.sum())
            acc.update(acts, ~massive)
            if token_budget is not None and acc.n_tokens >= token_budget:
                break
    return acc.result(), {"n_tokens": acc.n_tokens, "n_tokens_seen": n_seen,
                          "n_massive_dropped": n_massive, "n_texts": min(s + batch_size,
                                                                          len(texts)),
                          "center": center, "massive_factor": massive_factor}
