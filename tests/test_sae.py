"""SAE architectures, sparse kernels and files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from finsae.data.errors import DataError
from finsae.sae import (REGISTRY, SAEConfig, build_sae, detect_layout, load_sae, save_sae,
                        save_saelens, save_sparsify)
from finsae.sae.kernels import decode, topk_sae, topk_select


def _sae(arch="topk", d_in=12, d_sae=48, k=4, seed=0):
    widths = [12, 24] if arch == "matryoshka_batchtopk" else []
    sae = build_sae(SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, k=k, matryoshka_widths=widths),
                    seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(d_sae, generator=g))
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.full((d_sae,), -1.0))
        if arch in ("batchtopk", "matryoshka_batchtopk"):
            sae.threshold.fill_(0.3)
    return sae.eval()


def test_init_unit_decoder_encoder_is_transpose():
    """ReLU and JumpReLU start with the encoder equal to the unit-norm decoder."""
    sae = build_sae(SAEConfig(d_in=10, d_sae=40, arch="relu"), seed=3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(40), atol=1e-6)
    assert torch.equal(sae.W_enc, sae.W_dec)  # W_enc [d_sae, d_in] = (W_dec^T)^T
    assert set(REGISTRY) == {"topk", "batchtopk", "relu", "jumprelu", "matryoshka_batchtopk"}


def test_bad_config_and_input():
    with pytest.raises(DataError, match="known: topk, batchtopk, relu, jumprelu"):
        SAEConfig(d_in=4, d_sae=8, arch="gated")
    with pytest.raises(DataError, match="k must be"):
        SAEConfig(d_in=4, d_sae=8, k=9)
    with pytest.raises(DataError, match=r"\[tokens, 12\]"):
        _sae().encode(torch.zeros(2, 3, 12))


def test_topk_select_and_decode_by_hand():
    pre = torch.tensor([[0.5, -1.0, 2.0, 0.1], [-3.0, -2.0, -1.0, 4.0]])
    acts, idx = topk_select(pre, 2)
    idx, order = idx.sort(dim=1)
    acts = acts.gather(1, order)
    assert idx.tolist() == [[0, 2], [2, 3]]
    assert acts.tolist() == [[0.5, 2.0], [0.0, 4.0]]  # ReLU after TopK
    W = torch.arange(8.0).view(4, 2)                 # rows (0,1) (2,3) (4,5) (6,7)
    assert decode(acts, idx, W).tolist() == [[0.5 * 0 + 2 * 4, 0.5 * 1 + 2 * 5],
                                             [4 * 6.0, 4 * 7.0]]


def test_sparse_kernels_match_dense_autograd():
    torch.manual_seed(0)
    x = torch.randn(300, 12) + 2
    a, b = _sae(), _sae()
    a.train(), b.train()
    oa, ob = a.loss(x, sparse=True), b.loss(x, sparse=False)
    assert torch.allclose(oa.sae_out, ob.sae_out, atol=1e-6)
    oa.loss.backward()
    ob.loss.backward()
    for n in ("W_enc", "b_enc", "W_dec", "b_dec"):
        ga, gb = getattr(a, n).grad, getattr(b, n).grad
        assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4), n
    # the input gradient (not used in training) is right too
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ra, _, _ = topk_sae(xa, a.W_enc, a.b_enc, a.W_dec, a.b_dec, 4)
    acts, idx = topk_select(b.pre_acts(xb), 4)
    rb = decode(acts, idx, b.W_dec) + b.b_dec
    g = torch.randn_like(ra)
    (ra * g).sum().backward()
    (rb * g).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)


def test_auxk_by_hand():
    """Gao et al. B.1 as sparsify and SAELens: k_aux = d_in / 2 (here 6), at most #dead, the
    loss scaled by min(#dead / k_aux, 1)."""
    torch.manual_seed(1)
    sae = _sae(d_sae=16, k=2)
    x = torch.randn(20, 12)
    resid = torch.randn(20, 12)
    dead = torch.zeros(16, dtype=torch.bool)
    assert sae.aux_loss(x, resid, dead) == 0
    tv = (x - x.mean(0)).pow(2).sum()
    # 3 dead <= d_in/2: all of them reconstruct the residual (no b_dec in the decode), the
    # loss weighted 3/6
    dead[[1, 4, 6]] = True
    pre = (x - sae.b_dec) @ sae.W_enc[dead].T + sae.b_enc[dead]
    ref = 0.5 * (pre.relu() @ sae.W_dec[dead] - resid).pow(2).sum() / tv
    assert torch.allclose(sae.aux_loss(x, resid, dead), ref, rtol=1e-5)
    # 8 dead > d_in/2 = 6: only the top 6 of them per token, weight 1
    dead[[0, 2, 3, 9, 12]] = True
    pre = (x - sae.b_dec) @ sae.W_enc[dead].T + sae.b_enc[dead]
    v, i = pre.topk(6, dim=1)
    z = torch.zeros_like(pre).scatter(1, i, v.relu())
    ref = (z @ sae.W_dec[dead] - resid).pow(2).sum() / tv
    assert torch.allclose(sae.aux_loss(x, resid, dead), ref, rtol=1e-5)


def test_topk_init_is_sparsify_linear_init():
    """TopK kinds start as sparsify's SparseCoder: encoder rows at nn.Linear's scale
    (uniform within +-1/sqrt(d_in)), decoder rows their unit-norm copies, biases zero."""
    sae = build_sae(SAEConfig(d_in=12, d_sae=4096, k=2), seed=0)
    bound = 1 / 12 ** 0.5
    W = sae.W_enc.detach()
    assert float(W.abs().max()) <= bound
    assert abs(float(W.norm(dim=1).mean()) - (12 / 3) ** 0.5 * bound) < 0.02
    assert torch.allclose(sae.W_dec, sae.W_enc / sae.W_enc.norm(dim=1, keepdim=True))
    assert float(sae.b_enc.abs().max()) == 0 and float(sae.b_dec.abs().max()) == 0


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_fold_input_scale_is_exact(arch):
    torch.manual_seed(2)
    sae = _sae(arch)
    x = torch.randn(50, 12) * 30
    s = 0.037
    want = sae.reconstruct(x * s).detach() / s
    z_want = sae.encode(x * s).detach() / s
    sae.fold_input_scale(s)
    assert torch.allclose(sae.reconstruct(x).detach(), want, rtol=1e-4, atol=1e-4)
    assert torch.allclose(sae.encode(x).detach(), z_want, rtol=1e-4, atol=1e-5)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae), atol=1e-5)


def test_jumprelu_threshold_gets_gradient_and_batchtopk_keeps_n_times_k():
    torch.manual_seed(3)
    j = _sae("jumprelu").train()
    with torch.no_grad():
        j.log_threshold.fill_(-2.0)
    j.cfg.jumprelu_bandwidth = 1.0
    j.loss(torch.randn(64, 12), sparsity_coef=1.0).loss.backward()
    assert j.log_threshold.grad is not None and j.log_threshold.grad.abs().sum() > 0
    b = _sae("batchtopk").train()
    z = b.activation(b.pre_acts(torch.randn(10, 12)))
    assert int((z > 0).sum()) <= 10 * 4
    assert float(b.threshold[0]) > 0


# --- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_save_then_load_is_exact(tmp_path, arch):
    sae = _sae(arch)
    save_sae(sae, tmp_path / "s", extra={"train": {"tokens": 5}})
    assert detect_layout(tmp_path / "s") == "finsae"
    back = load_sae(tmp_path / "s")
    assert type(back) is type(sae) and back.cfg.k == sae.cfg.k
    for n, p in sae.state_dict().items():
        assert torch.equal(p, back.state_dict()[n]), n
    x = torch.randn(20, 12)
    assert torch.equal(sae.reconstruct(x), back.reconstruct(x))
    assert json.loads((tmp_path / "s" / "cfg.json").read_text())["train"] == {"tokens": 5}


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_saelens_layout_roundtrip(tmp_path, arch):
    sae = _sae(arch)
    save_saelens(sae, tmp_path / "l")
    assert detect_layout(tmp_path / "l") == "saelens"
    back = load_sae(tmp_path / "l")
    x = torch.randn(20, 12)
    assert torch.allclose(sae.reconstruct(x), back.reconstruct(x), atol=1e-6)


def test_saelens_file_written_by_hand(tmp_path):
    """A SAELens v5-style standard SAE with apply_b_dec_to_input=False: pre = x W_enc + b_enc."""
    g = torch.Generator().manual_seed(4)
    W_enc, W_dec = torch.randn(6, 10, generator=g), torch.randn(10, 6, generator=g)
    b_enc, b_dec = torch.randn(10, generator=g), torch.randn(6, generator=g)
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec},
              str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": 6, "d_sae": 10, "activation_fn_str": "relu",
        "apply_b_dec_to_input": False, "normalize_activations": "none",
        "model_name": "m", "hook_name": "blocks.3.hook_resid_post"}))
    sae = load_sae(tmp_path)
    x = torch.randn(7, 6, generator=g)
    z = torch.relu(x @ W_enc + b_enc)
    assert torch.allclose(sae.encode(x), z, atol=1e-5)
    assert torch.allclose(sae.reconstruct(x), z @ W_dec + b_dec, atol=1e-4)
    assert sae.cfg.arch == "relu" and sae.cfg.meta["hook_name"] == "blocks.3.hook_resid_post"


def test_saelens_topk_v6_and_unsupported(tmp_path):
    sae = _sae("topk")
    save_saelens(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg.pop("k")
    cfg["architecture"] = "standard"
    cfg["activation_fn_str"], cfg["activation_fn_kwargs"] = "topk", {"k": 4}  # v5 style
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert load_sae(tmp_path).cfg.k == 4
    cfg["normalize_activations"] = "layer_norm"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="layer_norm"):
        load_sae(tmp_path)


def test_sparsify_layout_written_by_hand(tmp_path):
    g = torch.Generator().manual_seed(5)
    enc, dec = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
    eb, db = torch.randn(16, generator=g), torch.randn(6, generator=g)
    d = tmp_path / "layers.3"
    d.mkdir()
    save_file({"encoder.weight": enc, "encoder.bias": eb, "W_dec": dec, "b_dec": db},
              str(d / "sae.safetensors"))
    (d / "cfg.json").write_text(json.dumps({"expansion_factor": 32, "normalize_decoder": True,
                                            "num_latents": 16, "k": 3, "multi_topk": False,
                                            "skip_connection": False, "d_in": 6}))
    assert detect_layout(d) == "sparsify"
    sae = load_sae(d)
    x = torch.randn(5, 6, generator=g)
    pre = torch.relu((x - db) @ enc.T + eb)
    v, i = pre.topk(3, dim=1)
    z = torch.zeros_like(pre).scatter(1, i, v)
    assert torch.allclose(sae.encode(x), z, atol=1e-5)
    assert torch.allclose(sae.reconstruct(x), z @ dec + db, atol=1e-4)
    # the parent folder is no SAE, and says where the SAEs are
    with pytest.raises(DataError, match="SAE folders inside it: layers.3"):
        load_sae(tmp_path)
    save_sparsify(sae, tmp_path / "again")
    assert torch.equal(load_sae(tmp_path / "again").W_enc, sae.W_enc)


def test_not_an_sae_and_bad_shapes(tmp_path):
    with pytest.raises(DataError, match="not an SAE folder"):
        load_sae(tmp_path)
    with pytest.raises(DataError, match="no such SAE folder"):
        load_sae(tmp_path / "missing")
    sae = _sae()
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    cfg["d_sae"] = 50
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="W_enc has shape"):
        load_sae(tmp_path / "s")
