"""Matryoshka BatchTopK SAE (Bussmann et al. 2025, "Learning Multi-Level Features with
Matryoshka Sparse Autoencoders"; SAELens' MatryoshkaBatchTopKTrainingSAE, dictionary_learning's
MatryoshkaBatchTopKSAE).

The latents are nested prefixes of widths ``cfg.matryoshka_widths`` (strictly increasing, the
last = d_sae). Activations are BatchTopK's (training: the batch's top N*k pre-activations;
inference: a per-latent threshold, the running mean of the smallest kept activation). Each
prefix must reconstruct the input on its own: the loss is the sum over prefixes of the FVU of
``z[:, :w] @ W_dec[:w] + b_dec``, plus AuxK as for BatchTopK. SAELens adds the inner
prefixes' MSEs, unweighted, to the full SAE's loss; here each term is normalised by the batch's
total variance like finsae's other losses. For inference the SAE is a JumpReLU SAE with that
threshold, which is how SAELens saves it.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from .architectures import BatchTopKSAE, ForwardOutput, total_variance


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    arch = "matryoshka_batchtopk"

    @property
    def widths(self) -> list[int]:
        return list(self.cfg.matryoshka_widths)

    def prefix_reconstructions(self, z: Tensor) -> Iterator[tuple[int, Tensor]]:
        """(width, reconstruction by latents [0, width)) for each nested prefix, cumulative."""
        out, prev = self.b_dec, 0
        for w in self.widths:
            out = z[:, prev:w] @ self.W_dec[prev:w] + out
            prev = w
            yield w, out

    def prefix_fvus(self, x: Tensor) -> dict[int, float]:
        """FVU of each prefix's reconstruction of x (one batch, eval encoding)."""
        x = self._check(x)
        tv = total_variance(x)
        z = self.encode(x)
        return {w: float((x - r).pow(2).sum() / tv) for w, r in self.prefix_reconstructions(z)}

    def loss(self, x, dead_mask=None, *, sparse=True, auxk_coef=1 / 32, sparsity_coef=0.0,
             tv=None):
        x = self._check(x)
        z = self.activation(self.pre_acts(x))
        tv = total_variance(x) if tv is None else tv
        total = x.new_zeros(())
        for _, recon in self.prefix_reconstructions(z):
            total = total + (x - recon).pow(2).sum() / tv
        fvu = (x - recon).pow(2).sum() / tv          # the full SAE's (last prefix)
        aux = self.aux_loss(x, x - recon, dead_mask, tv)
        return ForwardOutput(recon, total + auxk_coef * aux, fvu, aux,
                             (z > 0).sum(-1).float().mean(), (z > 0).any(0))
