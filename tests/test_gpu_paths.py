"""GPU code paths, checked on the CPU where they can be; the CUDA tests skip without a GPU."""

from __future__ import annotations

import pytest
import torch

from finsae.sae.kernels import _sampled_dot

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_sampled_dot_with_sorted_csr_columns_matches():
    g = torch.Generator().manual_seed(0)
    grad, W = torch.randn(50, 8, generator=g), torch.randn(40, 8, generator=g)
    idx = torch.stack([torch.randperm(40, generator=g)[:6] for _ in range(50)])  # unsorted rows
    want = (grad[:, None, :] * W[idx]).sum(-1)
    for sort in (False, True):
        torch.testing.assert_close(_sampled_dot(grad, W, idx, sort_columns=sort), want,
                                   atol=1e-5, rtol=1e-5)


def test_train_sae_device_argument_cpu_is_the_default():
    from finsae.sae.config import SAEConfig, TrainConfig
    from finsae.sae.train import train_sae
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    tc = TrainConfig(tokens=256, batch_size=128, progress=False)
    a = train_sae(x, SAEConfig(d_in=8, d_sae=16, k=2), tc)
    b = train_sae(x, SAEConfig(d_in=8, d_sae=16, k=2), tc, device="cpu")
    for name, t in a.sae.state_dict().items():
        assert torch.equal(b.sae.state_dict()[name], t)


@cuda
def test_cuda_training_close_to_cpu():
    from finsae.sae.config import SAEConfig, TrainConfig
    from finsae.sae.train import train_sae
    x = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0)) + 1
    tc = TrainConfig(tokens=1024, batch_size=256, progress=False)
    a = train_sae(x, SAEConfig(d_in=16, d_sae=64, k=4), tc)
    b = train_sae(x, SAEConfig(d_in=16, d_sae=64, k=4), tc, device="cuda")
    assert next(b.sae.parameters()).device.type == "cpu"
    assert abs(a.history[-1]["fvu"] - b.history[-1]["fvu"]) < 0.05


@cuda
def test_cuda_sparse_kernels_match_dense():
    from finsae.sae.architectures import build_sae
    from finsae.sae.config import SAEConfig
    x = (torch.randn(512, 16) + 1).cuda()
    grads = []
    for sparse in (True, False):
        sae = build_sae(SAEConfig(d_in=16, d_sae=64, k=4), seed=0).cuda()
        sae.loss(x, sparse=sparse).loss.backward()
        grads.append([p.grad for p in sae.parameters()])
    for s, d in zip(*grads):
        torch.testing.assert_close(s, d, atol=1e-4, rtol=1e-3)
