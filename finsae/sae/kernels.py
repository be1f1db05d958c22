"""Sparse TopK kernels: one dense GEMM per step, everything else O(tokens x k x d).

A TopK SAE step done with plain autograd costs three [N, d_in] x [d_in, d_sae] GEMMs: the
encoder forward, the encoder weight gradient (the pre-activation gradient is dense in shape
though only k entries per row are non-zero) and, with a dense decoder, two more. Here:

- encoder forward: one GEMM, then ``topk``;
- decoder forward: ``embedding_bag`` over the k active rows of W_dec, weighted by the acts;
- decoder backward: the gradient of the k acts is a sampled dense-dense product (SDDMM, only
  the k selected entries of grad @ W_dec^T are computed); the W_dec gradient is a sparse
  [d_sae, N] x [N, d_in] product;
- encoder backward: the W_enc gradient is the same sparse product with the pre-activation
  gradients as values, so it touches only the k selected rows (as sparsify's custom function).

Both sparse products share one sparsity pattern (token n selected latent j), sorted once per
step by latent into a CSR matrix.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class EncoderOutput(NamedTuple):
    top_acts: Tensor      # [N, k] activations of the selected latents (>= 0)
    top_indices: Tensor   # [N, k] their latent ids, in no particular order


def topk_select(pre: Tensor, k: int) -> EncoderOutput:
    """TopK then ReLU (the same as ReLU then TopK where it matters: ties at zero aside)."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return EncoderOutput(vals.relu_(), idx)


def decode(top_acts: Tensor, top_indices: Tensor, W_dec: Tensor) -> Tensor:
    """sum_s top_acts[n, s] * W_dec[top_indices[n, s]] without materialising [N, d_sae]."""
    return F.embedding_bag(top_indices, W_dec, per_sample_weights=top_acts.to(W_dec.dtype),
                           mode="sum")


def _pattern(idx: Tensor, d_sae: int):
    """Sort the (latent, token) pairs by latent once, for both sparse products.

    Returns (perm, crow, cols): entry i of the latent-major order is flat pair perm[i]; the
    CSR row pointers of the [d_sae, N] pattern and the token (column) of each entry.
    """
    n, k = idx.shape
    flat = idx.reshape(-1)
    if flat.device.type == "cpu":
        # numpy's stable sort is a radix sort for small integer keys: ~10x torch.argsort here
        key = flat.numpy().astype(np.int16 if d_sae < 2**15 else np.int32)
        perm = torch.from_numpy(np.argsort(key, kind="stable"))
    else:
        perm = flat.argsort(stable=True)
    # stable: tokens stay in order within a latent, so each CSR row's columns are sorted
    crow = torch.zeros(d_sae + 1, dtype=torch.long, device=idx.device)
    torch.cumsum(torch.bincount(flat, minlength=d_sae), 0, out=crow[1:])
    cols = perm.div(k, rounding_mode="floor")
    return perm, crow, cols


def _scatter_mm(values: Tensor, perm: Tensor, crow: Tensor, cols: Tensor, dense: Tensor,
                d_sae: int) -> Tensor:
    """[d_sae, d] = S @ dense with S[j, n] = value of the pair (token n, latent j).

    CSR, not COO, and ``addmm(beta=0, out=)``: on real TopK patterns (4,096 tokens x k 32 x
    d 576) the COO product took ~22 ms, CSR ``S @ dense`` ~12 ms (it zero-fills and copies its
    result) and CSR into a fresh ``out`` ~7 ms. beta=0 ignores whatever ``out`` held."""
    with warnings.catch_warnings():  # "CSR support is in beta", once per process otherwise
        warnings.simplefilter("ignore", UserWarning)
        S = torch.sparse_csr_tensor(crow, cols, values.reshape(-1)[perm],
                                    (d_sae, dense.shape[0]), check_invariants=False)
    out = dense.new_empty(d_sae, dense.shape[1])
    return torch.addmm(out, S, dense, beta=0.0, out=out)


def _sampled_dot(grad: Tensor, W_dec: Tensor, idx: Tensor,
                 sort_columns: bool | None = None) -> Tensor:
    """[N, k]: <grad[n], W_dec[idx[n, s]]>, computed only at the selected entries.

    sort_columns: build the CSR mask with each row's column indices sorted (cuSPARSE's SDDMM
    behind `sampled_addmm` on CUDA expects canonical CSR) and put the values back in the
    order of `idx`. None: only on CUDA; the CPU kernel takes the unsorted rows as they are.
    """
    n, k = idx.shape
    if sort_columns is None:
        sort_columns = idx.device.type == "cuda"
    order = None
    if sort_columns:
        idx, order = idx.sort(dim=1)
    crow = torch.arange(0, n * k + 1, k, device=idx.device)
    with warnings.catch_warnings():  # "CSR support is in beta", once per process otherwise
        warnings.simplefilter("ignore", UserWarning)
        mask = torch.sparse_csr_tensor(crow, idx.reshape(-1), grad.new_zeros(n * k),
                                       (n, W_dec.shape[0]), check_invariants=False)
    out = torch.sparse.sampled_addmm(mask, grad, W_dec.t(), beta=0.0).values().view(n, k)
    if order is not None:
        out = torch.empty_like(out).scatter_(1, order, out)
    return out


class _TopKSAE(torch.autograd.Function):
    """recon = decode(topk(relu((x - b_dec) W_enc^T + b_enc))) + b_dec with a sparse backward."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, b_dec, k, workspace):
        xc = x - b_dec
        # the [N, d_sae] pre-activations are the one big temporary; a fresh 75 MB block is
        # page-faulted in on every step, a reused one is not
        shape = (x.shape[0], W_enc.shape[0])
        buf = workspace.get("pre") if workspace is not None else None
        if buf is None or buf.shape != shape or buf.dtype != x.dtype or buf.device != x.device:
            buf = torch.empty(shape, dtype=x.dtype, device=x.device)
            if workspace is not None:
                workspace["pre"] = buf
        pre = torch.addmm(b_enc, xc, W_enc.t(), out=buf)
        acts, idx = topk_select(pre, k)
        del pre
        recon = decode(acts, idx, W_dec) + b_dec
        ctx.save_for_backward(xc, W_enc, W_dec, acts, idx)
        ctx.mark_non_differentiable(idx)
        return recon, acts, idx

    @staticmethod
    def backward(ctx, g_recon, g_acts_extra, _g_idx):
        xc, W_enc, W_dec, acts, idx = ctx.saved_tensors
        d_sae = W_enc.shape[0]
        g_recon = g_recon.contiguous()
        perm, crow, cols = _pattern(idx, d_sae)
        # decoder
        g_acts = _sampled_dot(g_recon, W_dec, idx)
        if g_acts_extra is not None:
            g_acts = g_acts + g_acts_extra
        grad_W_dec = _scatter_mm(acts, perm, crow, cols, g_recon, d_sae) \
            if ctx.needs_input_grad[3] else None
        # encoder: ReLU passes the gradient only where the act is positive
        g_pre = g_acts * (acts > 0)
        grad_W_enc = _scatter_mm(g_pre, perm, crow, cols, xc, d_sae) \
            if ctx.needs_input_grad[1] else None
        grad_b_enc = g_pre.new_zeros(d_sae).index_add_(0, idx.reshape(-1), g_pre.reshape(-1))
        # b_dec enters twice: added to the output, subtracted from the input; the input path
        # summed over tokens is -(sum of pre-activation grads per latent) @ W_enc
        grad_b_dec = g_recon.sum(0) - grad_b_enc @ W_enc if ctx.needs_input_grad[4] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(idx, W_enc, per_sample_weights=g_pre, mode="sum")
        return (grad_x, grad_W_enc, grad_b_enc if ctx.needs_input_grad[2] else None,
                grad_W_dec, grad_b_dec, None, None)


def topk_sae(x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, k: int,
             workspace: dict | None = None):
    """(recon [N, d_in], top_acts [N, k], top_indices [N, k]) via the sparse kernels.

    workspace: a dict kept by the caller between steps, to reuse the pre-activation buffer.
    """
    return _TopKSAE.apply(x, W_enc, b_enc, W_dec, b_dec, k, workspace)
