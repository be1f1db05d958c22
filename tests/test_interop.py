"""Interop with the real SAELens and EleutherAI sparsify, without importing them.

Loading: tests/fixtures/sae_interop holds tiny SAEs written by sae-lens and eai-sparsify and
each library's own encoding of the same inputs (make_fixtures.py there regenerates them in an
environment with those libraries); finsae must reproduce the encoding or refuse with a
DataError naming what it cannot reproduce.

Saving: `test_saved_folders_for_the_libraries` writes every finsae architecture in each layout
a library loads, with finsae's encodings beside them; with FINSAE_INTEROP_DIR=/some/dir it
writes them there, for ``make_fixtures.py --check /some/dir`` to load with the real libraries
(results in tests/fixtures/sae_interop/README.md).
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from finsae.data.errors import DataError
from finsae.sae import (
    REGISTRY,
    SAEConfig,
    TrainConfig,
    build_sae,
    detect_layout,
    evaluate_reconstruction,
    load_sae,
    sae_block,
    save_sae,
    save_saelens,
    save_sparsify,
    train_sae,
)

FIX = Path(__file__).parent / "fixtures" / "sae_interop"
LOADS = {  # fixture -> the finsae architecture it loads as
    "saelens_standard": "relu", "saelens_topk": "topk", "saelens_topk_rescale": "topk",
    "saelens_topk_training": "topk", "saelens_jumprelu": "jumprelu",
    "saelens_batchtopk": "batchtopk", "saelens_batchtopk_training": "batchtopk",
    "saelens_matryoshka_batchtopk": "matryoshka_batchtopk",
    "sparsify_topk": "topk", "sparsify_multi_topk": "topk"}
REFUSED = {"saelens_gated": "architecture 'gated'", "sparsify_transcode": "transcoders",
           "sparsify_groupmax": "groupmax", "sparsify_skip": "skip connection"}


def _x():
    return load_file(str(FIX / "inputs.safetensors"))["x"]


def test_fixtures_are_complete_and_tiny():
    folders = {p.name for p in FIX.iterdir() if p.is_dir()}
    assert folders == set(LOADS) | set(REFUSED)
    assert {p.name[len("expected_"):-len(".safetensors")]
            for p in FIX.glob("expected_*.safetensors")} == set(LOADS)
    assert sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file()) < 300_000


@pytest.mark.parametrize("name", sorted(LOADS))
def test_library_folder_loads_with_equal_encodings(name):
    sae = load_sae(FIX / name)
    assert sae.cfg.arch == LOADS[name]
    want = load_file(str(FIX / f"expected_{name}.safetensors"))["z"]
    with torch.no_grad():
        z = sae.encode(_x())
    assert int((want > 0).sum()) > 0
    assert torch.allclose(z, want, atol=1e-5, rtol=1e-5), float((z - want).abs().max())


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_library_folder_refused_clearly(name):
    with pytest.raises(DataError, match=REFUSED[name]):
        load_sae(FIX / name)


def test_saelens_metadata_is_read():
    sae = load_sae(FIX / "saelens_topk")
    assert sae.cfg.meta["model_name"] == "tiny-model"
    assert sae.cfg.meta["hook_name"] == "blocks.3.hook_resid_post"
    assert sae.cfg.meta["layer"] == 3 and sae_block(FIX / "saelens_topk") == 3
    assert load_sae(FIX / "saelens_matryoshka_batchtopk").cfg.matryoshka_widths == [8, 16, 32]


def test_saelens_rescale_is_folded_exactly():
    """rescale_acts_by_decoder_norm: reconstruction = (z / ||W_dec||) @ W_dec + b_dec."""
    w = load_file(str(FIX / "saelens_topk_rescale" / "sae_weights.safetensors"))
    n = w["W_dec"].norm(dim=1)
    assert float((n - 1).abs().max()) > 0.1          # the fixture's decoder is not unit-norm
    sae = load_sae(FIX / "saelens_topk_rescale")
    x = _x()
    with torch.no_grad():
        z = sae.encode(x)
        want = load_file(str(FIX / "expected_saelens_topk_rescale.safetensors"))["z"]
        assert torch.allclose(sae.decode(z), (want / n) @ w["W_dec"] + w["b_dec"], atol=1e-5)


def _random(arch, seed=0, d_in=16, d_sae=32, **kw):
    if arch == "matryoshka_batchtopk":
        kw.setdefault("matryoshka_widths", [8, 16])
    sae = build_sae(SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, k=4, **kw), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_enc.copy_(0.2 * torch.randn(d_sae, generator=g))
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
        if arch == "jumprelu":
            sae.log_threshold.copy_((0.3 * torch.rand(d_sae, generator=g) + 0.05).log())
        if "threshold" in sae._buffers:
            sae.threshold.copy_(0.3 * torch.rand(d_sae, generator=g) + 0.05)
    sae.cfg.meta = {"model": "tiny-model", "layer": 5}
    return sae.eval()


def _write_check_dir(root: Path) -> dict:
    """Every architecture in every layout a library loads (plus finsae's own folder), with
    finsae's encodings of the inputs: what `make_fixtures.py --check` compares."""
    root.mkdir(parents=True, exist_ok=True)
    x = _x()
    save_file({"x": x}, str(root / "inputs.safetensors"))
    written = {}
    for arch in REGISTRY:
        sae = _random(arch)
        with torch.no_grad():
            z = sae.encode(x).contiguous()
        targets = [("saelens", save_saelens)] + ([("sparsify", save_sparsify)]
                                                 if arch == "topk" else [])
        for lib, save in targets:
            name = f"{lib}_{arch}"
            save(sae, root / name)
            save_file({"z": z}, str(root / f"finsae_z_{name}.safetensors"))
            written[name] = (sae, z)
        save_sae(sae, root / f"finsae_{arch}")
        written[f"finsae_{arch}"] = (sae, z)
    return written


def test_saved_folders_for_the_libraries(tmp_path):
    root = Path(os.environ.get("FINSAE_INTEROP_DIR") or tmp_path / "check")
    written = _write_check_dir(root)
    x = _x()
    for name, (sae, z) in written.items():
        folder = root / name
        back = load_sae(folder)
        assert back.cfg.arch == sae.cfg.arch, name
        with torch.no_grad():
            assert torch.allclose(back.encode(x), z, atol=1e-6), name
        if name.startswith("saelens_"):
            cfg = json.loads((folder / "cfg.json").read_text())
            md = cfg["metadata"]
            assert md["hook_name"] == "blocks.5.hook_resid_post"
            assert md["model_name"] == "tiny-model"
            assert md["sae_lens_version"] >= "6"
            assert sae_block(folder) == 5
            want = {"relu": "standard", "topk": "topk"}.get(sae.cfg.arch, "jumprelu")
            assert cfg["architecture"] == want, name
            if want == "jumprelu" and sae.cfg.arch != "jumprelu":
                assert md["training_architecture"] == sae.cfg.arch
        if name.startswith("finsae_"):
            # neither library's weight file name: no library takes it for one of its own
            assert detect_layout(folder) == "finsae"
            assert not (folder / "sae.safetensors").exists()
            assert not (folder / "sae_weights.safetensors").exists()


def test_what_a_library_cannot_hold_is_refused(tmp_path):
    untrained = build_sae(SAEConfig(d_in=16, d_sae=32, arch="batchtopk", k=4))
    with pytest.raises(DataError, match="no inference threshold"):
        save_saelens(untrained, tmp_path / "b")
    for arch in ("relu", "jumprelu", "batchtopk"):
        with pytest.raises(DataError, match="TopK SAEs only"):
            save_sparsify(_random(arch), tmp_path / arch)


def test_legacy_finsae_folder_still_loads(tmp_path):
    sae = _random("jumprelu")
    save_sae(sae, tmp_path / "s")
    (tmp_path / "s" / "finsae.safetensors").rename(tmp_path / "s" / "sae.safetensors")
    assert detect_layout(tmp_path / "s") == "finsae"
    assert torch.equal(load_sae(tmp_path / "s").W_enc, sae.W_enc)
    save_sae(sae, tmp_path / "s")          # re-saving drops the old file name
    assert not (tmp_path / "s" / "sae.safetensors").exists()


def test_jumprelu_threshold_at_or_below_zero_is_relu(tmp_path):
    sae = _random("jumprelu")
    save_saelens(sae, tmp_path / "j")
    w = load_file(str(tmp_path / "j" / "sae_weights.safetensors"))
    w["threshold"][:5] = torch.tensor([0.0, -1.0, 0.0, -0.5, 0.0])
    save_file(w, str(tmp_path / "j" / "sae_weights.safetensors"))
    back = load_sae(tmp_path / "j")
    x = _x()
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    want = pre.relu() * (pre > w["threshold"])
    with torch.no_grad():
        assert torch.allclose(back.encode(x), want, atol=1e-5)


# --- Matryoshka BatchTopK -----------------------------------------------------------------

def test_matryoshka_config_checks():
    c = SAEConfig(d_in=8, d_sae=32, arch="matryoshka_batchtopk", k=2, matryoshka_widths=[4, 16])
    assert c.matryoshka_widths == [4, 16, 32]
    for bad in ([], [16, 8], [0, 32], [8, 64]):
        with pytest.raises(DataError, match="matryoshka_widths"):
            SAEConfig(d_in=8, d_sae=32, arch="matryoshka_batchtopk", matryoshka_widths=bad)


def _nested_acts(n=8000, d=16, seed=0):
    """Features of decreasing frequency: a few common ones, many rare ones."""
    g = torch.Generator().manual_seed(seed)
    n_feat = 48
    dirs = torch.randn(n_feat, d, generator=g)
    p = 0.5 * torch.arange(1, n_feat + 1, dtype=torch.float32).pow(-0.8)
    codes = torch.rand(n, n_feat, generator=g) * (torch.rand(n, n_feat, generator=g) < p)
    return codes @ dirs + 0.01 * torch.randn(n, d, generator=g)


def test_matryoshka_trains_nested_prefixes_and_round_trips(tmp_path):
    x = _nested_acts()
    cfg = SAEConfig(d_in=16, d_sae=64, arch="matryoshka_batchtopk", k=4,
                    matryoshka_widths=[4, 16])
    r = train_sae(x, cfg, TrainConfig(tokens=48000, batch_size=512, progress=False),
                  out=tmp_path / "m")
    sae = load_sae(tmp_path / "m")
    assert type(sae).__name__ == "MatryoshkaBatchTopKSAE" and sae.widths == [4, 16, 64]
    ev = evaluate_reconstruction(sae, x)
    fv = ev["prefix_fvu"]
    assert list(fv) == [4, 16, 64]
    assert fv[4] > fv[16] > fv[64] and fv[64] == pytest.approx(ev["fvu"], rel=1e-6)
    assert ev["fvu"] < 0.5 and 1 <= ev["l0"] <= 8
    assert r.history[-1]["fvu"] < r.history[0]["fvu"]
    # the nested loss matters: the first 4 latents of a plain BatchTopK reconstruct worse
    plain = train_sae(x, SAEConfig(d_in=16, d_sae=64, arch="batchtopk", k=4),
                      TrainConfig(tokens=48000, batch_size=512, progress=False)).sae
    with torch.no_grad():
        z = plain.encode(x)
        pf = float((x - (z[:, :4] @ plain.W_dec[:4] + plain.b_dec)).pow(2).sum()
                   / (x - x.mean(0)).pow(2).sum())
    assert fv[4] < pf
    # SAELens form: jumprelu with the threshold, read back as Matryoshka, same encodings
    save_saelens(sae, tmp_path / "l")
    assert json.loads((tmp_path / "l" / "cfg.json").read_text())["architecture"] == "jumprelu"
    back = load_sae(tmp_path / "l")
    assert back.cfg.arch == "matryoshka_batchtopk" and back.widths == [4, 16, 64]
    with torch.no_grad():
        assert torch.allclose(back.encode(x[:500]), sae.encode(x[:500]), atol=1e-6)


def test_matryoshka_loss_is_the_sum_of_prefix_fvus():
    sae = _random("matryoshka_batchtopk").train()
    x = _x()
    o = sae.loss(x, None, auxk_coef=0.0)
    z = sae.activation(sae.pre_acts(x))        # training mode: batch top-k
    tv = (x - x.mean(0)).pow(2).sum()
    want = sum((x - (z[:, :w] @ sae.W_dec[:w] + sae.b_dec)).pow(2).sum() / tv
               for w in (8, 16, 32))
    assert float(o.loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    full = (x - sae.decode(z)).pow(2).sum() / tv
    assert float(o.fvu.detach()) == pytest.approx(float(full.detach()), rel=1e-5)


def test_saelens_pre6_hook_point_gives_the_layer(tmp_path):
    save_saelens(_random("relu"), tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    cfg.pop("metadata")
    cfg.update(hook_point="blocks.7.hook_resid_pre", model_name="old-model")
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    meta = load_sae(tmp_path / "s").cfg.meta
    assert meta["hook_name"] == "blocks.7.hook_resid_pre" and meta["layer"] == 6
    assert meta["model_name"] == "old-model" and sae_block(tmp_path / "s") == 6
