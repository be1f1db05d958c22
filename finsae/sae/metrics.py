"""SAE metrics, with the formulas of the research brief (section 5).

Reconstruction, over all kept tokens of an activation set:
- FVU = sum_n ||x_n - x_hat_n||^2 / sum_n ||x_n - mean(x)||^2, numerator and denominator summed
  separately over all tokens (not a mean of per-batch ratios), the mean taken per dimension;
- MSE = sum of squared errors / (tokens * d_in);
- L0 = mean number of active latents per token;
- dead fraction = share of latents that never fire on the stated number of tokens.
LM splicing, with the SAE reconstruction replacing the output of one decoder block through a
forward hook:
- CE-loss score = (L_zero_ablation - L_spliced) / (L_zero_ablation - L_clean);
- delta LM loss = L_spliced - L_clean;
- KL(clean || spliced), averaged over tokens.
`splice_metrics` runs the whole LM three times per batch; `SpliceEvaluator` scores many SAEs
on fixed unpadded chunks, with the clean and zero-ablation losses computed once per layer and
only the blocks after the layer run per SAE (`finsae.lm.hooks.forward_from`).
Losses are next-token cross-entropies averaged over predictions whose input and target are
real tokens (padding excluded) and whose input is not BOS. Massive-activation tokens (norm above
a multiple of the median, brief section 5) are dropped from the reconstruction metrics and keep
their clean activation in the splice; how many is reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.errors import DataError
from ..lm import hooks
from ..lm.tokens import model_inputs


def massive_token_mask(acts: Tensor, factor: float | None = 10.0,
                       median: float | None = None) -> Tensor:
    """True for tokens whose residual norm exceeds `factor` x the median norm.

    `acts` is [..., d]; `median` defaults to the median norm of `acts` itself. SmolLM2 has a
    few attention-sink tokens with norms 10,000-27,000 against a median near 175; they would
    dominate any squared error. factor=None marks nothing.
    """
    norms = acts.float().norm(dim=-1)
    if factor is None or norms.numel() == 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    med = norms.median() if median is None else torch.as_tensor(median)
    return norms > factor * med



def massive_token_mask_any_layer(acts, factor: float | None = 10.0) -> Tensor:
    """[N] bool, True for tokens that are massive at any layer: `massive_token_mask` of each
    layer of `acts` ([L, N, d], or L tensors [N, d] over the same N tokens), each layer against
    its own median norm. Drop (or keep clean) these tokens at every layer at once, so all
    layers share one token set."""
    masks = [massive_token_mask(a, factor) for a in acts]
    if not masks:
        raise DataError("no layers to take the massive-token mask of")
    return torch.stack(masks).any(0)


class ReconStats:
    """Running sums for FVU, MSE, L0 and dead latents over any number of batches."""

    def __init__(self, d_in: int, d_sae: int):
        self.sse = 0.0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_x2 = torch.zeros(d_in, dtype=torch.float64)
        self.n = 0
        self.active = 0
        self.fired = torch.zeros(d_sae, dtype=torch.bool)

    def update(self, x: Tensor, x_hat: Tensor, z: Tensor | None = None) -> None:
        """x, x_hat [N, d_in]; z [N, d_sae] latent activations (optional)."""
        x64 = x.detach().double()
        self.sse += float((x64 - x_hat.detach().double()).pow(2).sum())
        self.sum_x += x64.sum(0)
        self.sum_x2 += x64.pow(2).sum(0)
        self.n += x.shape[0]
        if z is not None:
            on = z.detach() > 0
            self.active += int(on.sum())
            self.fired |= on.any(0).cpu()

    @property
    def fvu(self) -> float:
        # per-dimension sum of squared deviations = sum x^2 - (sum x)^2 / n
        denom = float((self.sum_x2 - self.sum_x.pow(2) / max(self.n, 1)).sum())
        return self.sse / denom if denom > 0 else float("nan")

    @property
    def mse(self) -> float:
        return self.sse / max(self.n * len(self.sum_x), 1)

    @property
    def l0(self) -> float:
        return self.active / max(self.n, 1)

    @property
    def dead_fraction(self) -> float:
        return float((~self.fired).float().mean())

    def to_dict(self) -> dict:
        return {"fvu": self.fvu, "mse": self.mse, "l0": self.l0,
                "dead_fraction": self.dead_fraction, "dead_over_tokens": self.n,
                "n_tokens": self.n}


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """FVU of one set of tokens [N, d] (aggregated, per-dimension mean)."""
    s = ReconStats(x.shape[-1], 1)
    s.update(x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1]))
    return s.fvu


@torch.no_grad()
def evaluate_reconstruction(sae, acts: Tensor, *, batch_size: int = 4096,
                            massive_factor: float | None = 10.0) -> dict:
    """FVU, MSE, L0 and dead fraction of `sae` on activations [N, d_in] (raw, unscaled); for a
    Matryoshka SAE also ``prefix_fvu``: {width: FVU of the reconstruction by latents [0, width)}."""
    if acts.ndim != 2 or acts.shape[1] != sae.d_in:
        raise DataError(f"activations must be [tokens, {sae.d_in}], got {list(acts.shape)}")
    massive = massive_token_mask(acts, massive_factor)
    kept = acts[~massive]
    stats = ReconStats(sae.d_in, sae.d_sae)
    nested = {w: ReconStats(sae.d_in, 1) for w in getattr(sae, "widths", [])}
    was_training = sae.training
    sae.eval()
    for s in range(0, len(kept), batch_size):
        x = kept[s:s + batch_size].to(sae.W_enc.dtype)
        z = sae.encode(x)
        stats.update(x, sae.decode(z), z)
        if nested:
            for w, x_hat in sae.prefix_reconstructions(z):
                nested[w].update(x, x_hat)
    sae.train(was_training)
    extra = {"prefix_fvu": {w: s.fvu for w, s in nested.items()}} if nested else {}
    return {**stats.to_dict(), **extra, "n_massive_dropped": int(massive.sum()),
            "massive_factor": massive_factor}


# --- splicing into the LM -------------------------------------------------------------------

def ce_loss_score(l_clean: float, l_spliced: float, l_zero: float) -> float:
    """(L_zero - L_spliced) / (L_zero - L_clean): 1 = as good as clean, 0 = as bad as zeros;
    NaN when zero ablation does not change the loss."""
    if l_zero == l_clean:
        return float("nan")
    return (l_zero - l_spliced) / (l_zero - l_clean)


def _next_token_losses(logits: Tensor, input_ids: Tensor, valid: Tensor):
    """Per-prediction log-probs and CE at the valid prediction positions."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)[valid]
    target = input_ids[:, 1:][valid]
    return logp, -logp.gather(-1, target[:, None]).squeeze(-1)


@torch.no_grad()
def splice_metrics(model, sae, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                   layer: int, block=None, bos_token_id: int | None = None,
                   massive_factor: float | None = 10.0, batch_size: int = 8) -> dict:
    """CE-loss score, delta LM loss and KL with `sae` spliced after decoder block `layer`.

    input_ids/attention_mask are [B, T] (right padding). The reconstruction replaces the
    block output at real, non-BOS, non-massive tokens; zero ablation replaces the same tokens
    with zeros.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
        raise DataError("input_ids and attention_mask must both be [batch, seq]")
    block = hooks.block(model, layer) if block is None else block
    state: dict = {}

    def edit(h: Tensor) -> Tensor | None:
        """Clean run (fn None): keep h. Otherwise h with fn applied at the masked tokens."""
        fn = state.get("fn")
        if fn is None:
            state["h"] = h
            return None
        m = state["mask"]
        new = h.clone()
        new[m] = fn(h[m]).to(h.dtype)
        return new

    tot = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0}
    n_pred = n_spliced = n_massive = 0
    with hooks.replace_output(block, edit):
        for s in range(0, len(input_ids), batch_size):
            ids, am = input_ids[s:s + batch_size], attention_mask[s:s + batch_size].bool()
            valid = am[:, :-1] & am[:, 1:]
            splice = am.clone()
            if bos_token_id is not None:
                valid &= ids[:, :-1] != bos_token_id
                splice &= ids != bos_token_id
            state["fn"] = None
            clean = model(input_ids=ids, attention_mask=am.long()).logits
            h = state["h"]
            massive = massive_token_mask(h[splice], massive_factor)
            idx = splice.nonzero()[massive]
            splice[idx[:, 0], idx[:, 1]] = False
            n_massive += int(massive.sum())
            n_spliced += int(splice.sum())
            state["mask"] = splice
            state["fn"] = sae.reconstruct
            spliced = model(input_ids=ids, attention_mask=am.long()).logits
            state["fn"] = torch.zeros_like
            zero = model(input_ids=ids, attention_mask=am.long()).logits
            lp_c, ce_c = _next_token_losses(clean, ids, valid)
            lp_s, ce_s = _next_token_losses(spliced, ids, valid)
            _, ce_z = _next_token_losses(zero, ids, valid)
            tot["clean"] += float(ce_c.sum())
            tot["spliced"] += float(ce_s.sum())
            tot["zero"] += float(ce_z.sum())
            tot["kl"] += float((lp_c.exp() * (lp_c - lp_s)).sum())
            n_pred += int(valid.sum())
    if n_pred == 0:
        raise DataError("no next-token predictions to score (texts too short?)")
    l_clean, l_spl, l_zero = (tot[k] / n_pred for k in ("clean", "spliced", "zero"))
    return {"ce_loss_score": ce_loss_score(l_clean, l_spl, l_zero),
            "delta_lm_loss": l_spl - l_clean, "kl_div": tot["kl"] / n_pred,
            "loss_clean": l_clean, "loss_spliced": l_spl, "loss_zero_ablation": l_zero,
            "n_predictions": n_pred, "n_spliced_tokens": n_spliced,
            "n_massive_kept_clean": n_massive, "layer": layer}


def splice_metrics_on_texts(model, tokenizer, sae, texts: list[str], *, layer: int,
                            max_length: int = 256, batch_size: int = 8, block=None,
                            massive_factor: float | None = 10.0, bos: bool = True) -> dict:
    """`splice_metrics` on `texts` tokenized as the capture does (`finsae.lm.tokens.
    model_inputs`: at most max_length text tokens, the BOS prepended when the tokenizer has
    one and neither spliced nor scored as an input; right padding)."""
    if not texts:
        raise DataError("no texts to evaluate the splice on")
    inp = model_inputs(tokenizer, list(texts), max_length, bos=bos)
    return splice_metrics(model, sae, inp.input_ids, inp.attention_mask, layer=layer,
                          block=block, bos_token_id=inp.bos_id,
                          massive_factor=massive_factor, batch_size=batch_size)


class SpliceEvaluator:
    """CE-loss score and delta LM loss of SAEs spliced in after a block, on fixed unpadded token
    chunks `input_ids` [B, T] (packed text, every position real): the clean and zero-ablation
    losses are computed once per layer, and each SAE then costs one `hooks.forward_from` (the
    blocks after the layer only). Llama-like models (see `forward_from`).

    hidden: the block outputs on these chunks, e.g. from a cached capture: a [L, N, d] tensor,
    or a mapping layer -> [N, d], with N >= B*T (the first B*T rows, in chunk order, are used);
    None: each layer's output is captured by one forward (stopped after the block) the first
    time it is needed.
    massive: [B*T] or [B, T] bool, True for tokens kept clean (neither spliced nor
    zero-ablated), e.g. `massive_token_mask_any_layer` of the capture; None: the
    `massive_token_mask(h, massive_factor)` of each layer's output (factor None: no token).
    Every prediction (position t -> t + 1 of every chunk) is scored: losses are mean next-token
    cross-entropies. Without padding and BOS this equals `splice_metrics` on the same ids.
    """

    def __init__(self, model, input_ids: Tensor, *, hidden=None, massive: Tensor | None = None,
                 massive_factor: float | None = None, batch_size: int = 4):
        if input_ids.ndim != 2 or input_ids.shape[1] < 2:
            raise DataError("input_ids must be [chunks, seq] with seq >= 2")
        self.model, self.ids = model, input_ids
        self.B, self.T = input_ids.shape
        self.source, self.factor, self.batch_size = hidden, massive_factor, batch_size
        self.massive = None if massive is None else massive.reshape(-1)[: self.B * self.T].view(
            self.B, self.T).bool()
        self._hidden: dict[int, Tensor] = {}
        self._base: dict[int, tuple[float, float]] = {}

    @torch.no_grad()
    def hidden(self, layer: int) -> Tensor:
        """[B, T, d] float32 output of block `layer` on the chunks."""
        if layer in self._hidden:
            return self._hidden[layer]
        if self.source is not None:
            h = self.source[layer]
            h = h.reshape(-1, h.shape[-1])[: self.B * self.T].float().view(self.B, self.T, -1)
        else:
            parts = []
            dev = next(self.model.parameters()).device
            with hooks.capture(self.model, [layer]) as got:
                for s in range(0, self.B, self.batch_size):
                    hooks.forward(self.model, input_ids=self.ids[s:s + self.batch_size].to(dev),
                                  use_cache=False)
                    parts.append(got[layer].float().cpu())
            h = torch.cat(parts)
        self._hidden[layer] = h
        return h

    def _spliced_tokens(self, layer: int) -> Tensor:
        if self.massive is not None:
            return ~self.massive
        return ~massive_token_mask(self.hidden(layer), self.factor)

    @torch.no_grad()
    def loss(self, layer: int, fn=None, *, chunk: int = 4096) -> float:
        """Mean next-token CE with `fn` ([n, d] -> [n, d], None: identity) applied to block
        `layer`'s output at the spliced (non-massive) tokens."""
        h = self.hidden(layer)
        if fn is not None:
            sel = self._spliced_tokens(layer)
            x = h[sel]
            h = h.clone()
            h[sel] = torch.cat([fn(x[a:a + chunk]).to(h.dtype) for a in range(0, len(x), chunk)]
                               ) if len(x) else x
        total = 0.0
        for s in range(0, self.B, self.batch_size):
            logits = hooks.forward_from(self.model, h[s:s + self.batch_size], layer)
            ids = self.ids[s:s + self.batch_size, 1:].to(logits.device)
            total += float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids.flatten(),
                                           reduction="sum"))
        return total / (self.B * (self.T - 1))

    def base(self, layer: int) -> tuple[float, float]:
        """(clean, zero-ablation) loss at `layer`, computed once."""
        if layer not in self._base:
            self._base[layer] = (self.loss(layer), self.loss(layer, torch.zeros_like))
        return self._base[layer]

    def metrics(self, layer: int, sae) -> dict:
        """The keys of `splice_metrics` but the KL: CE-loss score, delta LM loss, the three
        losses and the token counts."""
        clean, zero = self.base(layer)
        spliced = self.loss(layer, lambda x: sae.reconstruct(x).detach())
        n_spliced = int(self._spliced_tokens(layer).sum())
        return {"ce_loss_score": ce_loss_score(clean, spliced, zero),
                "delta_lm_loss": spliced - clean, "loss_clean": clean, "loss_spliced": spliced,
                "loss_zero_ablation": zero, "n_predictions": self.B * (self.T - 1),
                "n_spliced_tokens": n_spliced,
                "n_massive_kept_clean": self.B * self.T - n_spliced, "layer": layer}
