"""SAE architectures, one class per kind, looked up by name in REGISTRY.

All share the parameter layout of EleutherAI sparsify: W_enc [d_sae, d_in] (the encoder's
``nn.Linear.weight``), b_enc [d_sae], W_dec [d_sae, d_in] (one row per latent), b_dec [d_in],
and the pass ``pre = (x - b_dec) @ W_enc.T + b_enc``, ``x_hat = z @ W_dec + b_dec``.
JumpReLU and BatchTopK (at inference) also have a per-latent ``threshold``. Matryoshka
BatchTopK lives in `finsae.sae.matryoshka`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.errors import DataError
from .config import SAEConfig
from .kernels import EncoderOutput, decode, topk_sae, topk_select


class ForwardOutput(NamedTuple):
    sae_out: Tensor       # [N, d_in] reconstruction
    loss: Tensor          # what the trainer minimises
    fvu: Tensor           # this batch's fraction of variance unexplained
    aux_loss: Tensor      # AuxK (TopK kinds) or the sparsity penalty (ReLU, JumpReLU)
    l0: Tensor            # mean active latents per token
    fired: Tensor         # [d_sae] bool, latents active on some token of the batch


def total_variance(x: Tensor) -> Tensor:
    """Sum of squared deviations from the per-dimension batch mean."""
    return (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


def batch_fvu(x: Tensor, x_hat: Tensor, tv: Tensor | None = None) -> Tensor:
    """Sum of squared errors over the sum of squared deviations from the batch mean."""
    return (x - x_hat).pow(2).sum() / (total_variance(x) if tv is None else tv)


class SparseAutoencoder(nn.Module):
    """Base class: parameters, init, decoder-norm upkeep, dense encode/decode."""

    arch = ""
    #: "linear" (sparsify: encoder at nn.Linear's scale, decoder its unit-norm copy) or
    #: "transpose" (encoder = the unit-norm decoder)
    encoder_init = "transpose"

    def __init__(self, cfg: SAEConfig, *, seed: int | None = None, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        if self.encoder_init == "linear":
            # sparsify's init: the encoder as nn.Linear's default (uniform +-1/sqrt(d_in), row
            # norm ~0.58), the decoder its unit-norm copy. Against an encoder equal to the
            # unit decoder, the smaller encoder learns faster: held-out FVU 0.51 vs 0.57 after
            # 20 steps of the training benchmark (docs/sae.md)
            W_enc = (torch.rand(d_sae, d_in, generator=g, dtype=dtype) * 2 - 1) / math.sqrt(d_in)
            W_dec = W_enc / W_enc.norm(dim=1, keepdim=True)
        else:
            # encoder = decoder transpose (Gao et al.; SAELens' init up to its decoder norm)
            W_dec = torch.randn(d_sae, d_in, generator=g, dtype=dtype)
            W_dec /= W_dec.norm(dim=1, keepdim=True)
            W_enc = W_dec.clone()
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_enc.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))

    # --- shapes -----------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def _check(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[-1] != self.d_in:
            raise DataError(f"SAE input must be [tokens, {self.d_in}], got {list(x.shape)} "
                            f"(flatten [batch, seq, d] to [batch*seq, d] first)")
        return x.to(self.W_enc.dtype)

    # --- forward pieces -----------------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        return F.linear(self._check(x) - self.b_dec, self.W_enc, self.b_enc)

    def activation(self, pre: Tensor) -> Tensor:
        """Dense latent activations [N, d_sae] from pre-activations (inference rule)."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Dense latent activations [N, d_sae]."""
        return self.activation(self.pre_acts(x))

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # --- decoder norm upkeep (training) -------------------------------------------------------
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Adam would otherwise spend its step growing the norm that we then project away."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    # --- scaling fold -------------------------------------------------------------------------
    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make the SAE act on raw x when it was trained on scale * x.

        The raw-space latents are the trained latents / scale, so the decoder keeps unit rows:
        b_enc, b_dec and any threshold are divided by scale; W_enc and W_dec are unchanged.
        """
        self.b_enc /= scale
        self.b_dec /= scale
        if "threshold" in self._buffers:
            self.threshold /= scale
        if hasattr(self, "log_threshold"):
            self.log_threshold -= math.log(scale)

    def loss(self, x: Tensor, dead_mask: Tensor | None = None, *, sparse: bool = True,
             auxk_coef: float = 1 / 32, sparsity_coef: float = 0.0,
             tv: Tensor | None = None) -> ForwardOutput:
        """tv: the total variance that normalises the FVU (None: this batch's; data-parallel
        training passes the global batch's divided by the number of ranks)."""
        raise NotImplementedError


class TopKSAE(SparseAutoencoder):
    """z = ReLU(TopK(pre, k)); loss = FVU + auxk_coef * AuxK (Gao et al. 2024)."""

    arch = "topk"
    encoder_init = "linear"

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self._workspace: dict = {}  # scratch buffers of the sparse kernels, never saved

    def encode_sparse(self, x: Tensor) -> EncoderOutput:
        return topk_select(self.pre_acts(x), self.cfg.k)

    def activation(self, pre: Tensor) -> Tensor:
        acts, idx = topk_select(pre, self.cfg.k)
        return torch.zeros_like(pre).scatter_(-1, idx, acts)

    def reconstruct(self, x: Tensor) -> Tensor:
        acts, idx = self.encode_sparse(x)
        return decode(acts, idx, self.W_dec) + self.b_dec

    def aux_loss(self, x: Tensor, residual: Tensor, dead_mask: Tensor | None,
                 tv: Tensor | None = None) -> Tensor:
        """AuxK: the top k_aux dead latents reconstruct the residual (Gao et al. B.1, as
        sparsify and SAELens): k_aux = d_in / 2, at most the number of dead latents, and the
        loss scaled by min(#dead / (d_in / 2), 1) so a handful of dead latents do not pull as
        hard as half the input dimension.

        The target is x - x_hat, which already contains b_dec, so the auxiliary decode adds no
        b_dec; the dead latents read the same centred input (x - b_dec) as in the main pass,
        with b_dec detached so the auxiliary loss trains the dead latents only. Normalised like
        the FVU, by the batch's total variance.
        """
        if dead_mask is None or not bool(dead_mask.any()):
            return x.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = max(self.d_in // 2, 1)
        weight = min(len(dead) / k_aux, 1.0)
        k_aux = min(k_aux, len(dead))
        pre = F.linear(x - self.b_dec.detach(), self.W_enc[dead], self.b_enc[dead])
        if k_aux < len(dead):
            vals, ix = pre.topk(k_aux, dim=-1, sorted=False)
            z = torch.zeros_like(pre).scatter(-1, ix, vals.relu())
        else:
            z = pre.relu()
        e_hat = z @ self.W_dec[dead]
        e = residual.detach()
        return weight * (e_hat - e).pow(2).sum() / (total_variance(x) if tv is None else tv)

    def loss(self, x, dead_mask=None, *, sparse=True, auxk_coef=1 / 32, sparsity_coef=0.0,
             tv=None):
        x = self._check(x)
        if sparse:
            recon, acts, idx = topk_sae(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec,
                                        self.cfg.k, self._workspace)
        else:
            acts, idx = topk_select(self.pre_acts(x), self.cfg.k)
            recon = decode(acts, idx, self.W_dec) + self.b_dec
        tv = total_variance(x) if tv is None else tv
        residual = x - recon
        fvu = residual.pow(2).sum() / tv
        aux = self.aux_loss(x, residual, dead_mask, tv)
        on = acts > 0
        # bincount over the selected ids (zero acts sent to an overflow bin) beats mask indexing
        fired = torch.bincount(idx.masked_fill(~on, self.d_sae).flatten(),
                               minlength=self.d_sae + 1)[:-1] > 0
        l0 = on.sum() / x.shape[0]
        return ForwardOutput(recon, fvu + auxk_coef * aux, fvu, aux, l0, fired)


class BatchTopKSAE(TopKSAE):
    """Training keeps the batch's top N*k pre-activations (k per token on average);
    inference uses a threshold, the running mean of the smallest kept activation
    (Bussmann et al. 2024)."""

    arch = "batchtopk"

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.register_buffer("threshold", torch.full((cfg.d_sae,), -1.0))

    def activation(self, pre: Tensor) -> Tensor:
        if self.training or bool((self.threshold < 0).all()):
            flat = pre.relu().flatten()
            vals, ix = flat.topk(min(len(flat), pre.shape[0] * self.cfg.k), sorted=False)
            z = torch.zeros_like(flat).scatter(0, ix, vals).view_as(pre)
            if self.training:
                with torch.no_grad():
                    pos = vals[vals > 0]
                    if len(pos):
                        m = pos.min()
                        t = self.threshold
                        t.copy_(torch.where(t < 0, m, 0.99 * t + 0.01 * m))
            return z
        return pre * (pre > self.threshold)

    def encode_sparse(self, x):
        raise DataError("BatchTopK has a variable number of active latents; use encode()")

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def loss(self, x, dead_mask=None, *, sparse=True, auxk_coef=1 / 32, sparsity_coef=0.0,
             tv=None):
        x = self._check(x)
        z = self.activation(self.pre_acts(x))
        recon = self.decode(z)
        fvu = batch_fvu(x, recon, tv)
        aux = self.aux_loss(x, x - recon, dead_mask, tv)
        return ForwardOutput(recon, fvu + auxk_coef * aux, fvu, aux,
                             (z > 0).sum(-1).float().mean(), (z > 0).any(0))


class ReLUSAE(SparseAutoencoder):
    """z = ReLU(pre); loss = FVU + l1_coef * mean_n sum_j z_nj * ||W_dec[j]|| (SAELens
    "standard")."""

    arch = "relu"

    def activation(self, pre):
        return pre.relu()

    def loss(self, x, dead_mask=None, *, sparse=True, auxk_coef=1 / 32, sparsity_coef=5e-3,
             tv=None):
        x = self._check(x)
        z = self.encode(x)
        recon = self.decode(z)
        fvu = batch_fvu(x, recon, tv)
        l1 = (z * self.W_dec.norm(dim=1)).sum(-1).mean()
        return ForwardOutput(recon, fvu + sparsity_coef * l1, fvu, l1,
                             (z > 0).sum(-1).float().mean(), (z > 0).any(0))


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """x * H(x - t); straight-through gradient for t with a rectangle kernel (Rajamanoharan
    et al. 2024): d/dt = -(t / bw) * K((x - t) / bw)."""

    @staticmethod
    def forward(ctx, x, t, bw):
        ctx.save_for_backward(x, t)
        ctx.bw = bw
        return x * (x > t)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        gt = (-(t / ctx.bw) * _rectangle((x - t) / ctx.bw) * g).sum(0)
        return g * (x > t), gt, None


class _Step(torch.autograd.Function):
    """H(x - t) with d/dt = -(1 / bw) * K((x - t) / bw): the L0 penalty's gradient."""

    @staticmethod
    def forward(ctx, x, t, bw):
        ctx.save_for_backward(x, t)
        ctx.bw = bw
        return (x > t).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        gt = (-(1.0 / ctx.bw) * _rectangle((x - t) / ctx.bw) * g).sum(0)
        return torch.zeros_like(x), gt, None


class JumpReLUSAE(SparseAutoencoder):
    """z = ReLU(pre) * H(pre - threshold), per-latent threshold = exp(log_threshold);
    loss = FVU + l0_coef * mean_n L0_n."""

    arch = "jumprelu"

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        self.log_threshold = nn.Parameter(
            torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, pre):
        return _JumpReLU.apply(pre.relu(), self.threshold, self.cfg.jumprelu_bandwidth)

    def loss(self, x, dead_mask=None, *, sparse=True, auxk_coef=1 / 32, sparsity_coef=1e-3,
             tv=None):
        x = self._check(x)
        pre = self.pre_acts(x).relu()
        z = _JumpReLU.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
        recon = self.decode(z)
        fvu = batch_fvu(x, recon, tv)
        l0 = _Step.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth).sum(-1).mean()
        return ForwardOutput(recon, fvu + sparsity_coef * l0, fvu, l0,
                             (z > 0).sum(-1).float().mean(), (z > 0).any(0))


from .matryoshka import MatryoshkaBatchTopKSAE  # noqa: E402 (it subclasses BatchTopKSAE)

REGISTRY: dict[str, type[SparseAutoencoder]] = {
    cls.arch: cls for cls in (TopKSAE, BatchTopKSAE, ReLUSAE, JumpReLUSAE,
                              MatryoshkaBatchTopKSAE)}


def build_sae(cfg: SAEConfig, *, seed: int | None = None) -> SparseAutoencoder:
    """A freshly initialised SAE of cfg.arch."""
    try:
        cls = REGISTRY[cfg.arch]
    except KeyError:
        raise DataError(f"unknown SAE architecture {cfg.arch!r}; known: "
                        f"{', '.join(REGISTRY)}") from None
    return cls(cfg, seed=seed)
