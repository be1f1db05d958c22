"""Released SAEs end to end: `finsae features build --model FOLDER --sae RELEASE --layer N` on a
tiny random Llama saved with save_pretrained (with SmolLM2's real tokenizer) and fixture SAEs
written in the layouts of an EleutherAI sparsify release (layers.N folders), a Gemma Scope
repository (layer_N/width_*/average_l0_*/params.npz) and a SAELens folder.

The company vectors are checked against latents computed here from the raw files with each
release's own formula, on hidden states checked against a plain forward pass of the model.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from finsae.cli import main
from finsae.data.errors import DataError
from finsae.sae import (SAEConfig, build_sae, find_sae, load_sae, sae_block, save_gemmascope,
                        save_saelens, save_sparsify)

D, N_LAYERS = 64, 3
COMPANIES = [
    ("AAA", "Alpha Bank", "Alpha Bank takes deposits and makes mortgage loans to households."),
    ("BBB", "Beta Oil", "Beta Oil explores for crude oil and natural gas and runs refineries."),
    ("CCC", "Gamma Soft", "Gamma Soft sells cloud software and data analytics to banks."),
    ("DDD", "Delta Air", "Delta Air flies passengers and cargo between airports worldwide."),
    ("EEE", "Eps Pharma", "Eps Pharma develops cancer drugs and vaccines in its laboratories."),
]


def _smollm2_tokenizer():
    """SmolLM2's tokenizer, from the offline SmolLM2 package's GGUF file (~4 s), or read from
    a verified dequantized copy in the user's model cache when there is one (read only)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from finsae.integrity import check_folder
    from finsae.lm.load import _known_gguf
    gguf = _known_gguf("smollm2-135m")
    for folder in sorted((Path.home() / ".cache" / "finsae" / "models").glob(f"{gguf.stem}-*")):
        files = ["tokenizer.json", "tokenizer_config.json"]
        if (folder / "tokenizer.json").exists() and check_folder(folder, only=files) is None:
            return AutoTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, companies CSV): a 3-block Llama with d_model 64 and SmolLM2's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM
    root = tmp_path_factory.mktemp("releases")
    tok = _smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=D, intermediate_size=2 * D,
                      num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, initializer_range=0.1,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = root / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(model)
    tok.save_pretrained(model)
    csv = root / "companies.csv"
    csv.write_text("ticker,name,description\n"
                   + "".join(f'{t},{n},"{d}"\n' for t, n, d in COMPANIES))
    return model, csv


def _random_sae(arch, seed, **kw):
    torch.manual_seed(seed)
    sae = build_sae(SAEConfig(d_in=D, d_sae=4 * D, arch=arch, **kw))
    with torch.no_grad():   # non-zero biases, so a mishandled b_dec or b_enc shows
        sae.b_enc.normal_(0, 0.05)
        sae.b_dec.normal_(0, 0.2)
    return sae


@pytest.fixture(scope="module")
def sparsify_release(tmp_path_factory):
    """An EleutherAI sparsify release: layers.0 .. layers.2, plus an MLP hookpoint."""
    root = tmp_path_factory.mktemp("sae-tiny-llama-4x")
    for n in range(N_LAYERS):
        save_sparsify(_random_sae("topk", n, k=8), root / f"layers.{n}")
    save_sparsify(_random_sae("topk", 9, k=8), root / "layers.1.mlp")
    (root / ".cache" / "huggingface").mkdir(parents=True)   # left by `huggingface-cli download`
    return root


def _jumprelu(seed):
    sae = _random_sae("jumprelu", seed)
    with torch.no_grad():
        sae.log_threshold.copy_(torch.empty(sae.d_sae).uniform_(0.05, 0.3).log())
    return sae


@pytest.fixture(scope="module")
def gemma_release(tmp_path_factory):
    """A Gemma Scope repository: layer_1 with two L0s, layer_2 with one."""
    root = tmp_path_factory.mktemp("gemma-scope-tiny-pt-res")
    for layer, l0, seed in ((1, 12, 1), (1, 40, 2), (2, 20, 3)):
        save_gemmascope(_jumprelu(seed), root / f"layer_{layer}" / "width_256" /
                        f"average_l0_{l0}" / "params.npz")
    return root


def _build(capsys, model, csv, sae, *layer):
    capsys.readouterr()
    rc = main(["features", "build", "--model", str(model), "--sae", str(sae), *layer,
               "--companies", str(csv), "--no-baselines", "--json"])
    out = capsys.readouterr()
    return rc, out


def _built(capsys, model, csv, sae, *layer):
    from finsae.features.store import FeatureSet
    rc, out = _build(capsys, model, csv, sae, *layer)
    assert rc == 0, out.err
    fs = FeatureSet.load(json.loads(out.out)["features_dir"])
    return fs.method("sae"), fs.meta


def _reference_vectors(model, csv, layer, latents_fn):
    """Company vectors from latents computed by `latents_fn(X)` (numpy, the release's own
    formula) on hidden states checked against a forward pass, pooled as features/build does."""
    from finsae.data import load_companies
    from finsae.features.build import doc_offsets, sae_company_vectors, token_strings
    from finsae.features.company import TokenLatents
    from finsae.lm import encode_texts, load_lm
    from finsae.lm.hooks import block
    from finsae.sae.metrics import massive_token_mask
    lm = load_lm(str(model))
    companies = load_companies(str(csv))
    tickers = list(companies.index)
    store = encode_texts(lm, companies["description"].to_list(), layers=[layer])
    X = store.tokens(layer)
    doc, ids = np.asarray(store.doc_index), store.token_ids
    got = []   # block `layer`'s output in a plain forward of [BOS] + the text's tokens
    hook = block(lm.model, layer).register_forward_hook(
        lambda m, i, o: got.append((o[0] if isinstance(o, tuple) else o)[0, 1:]))
    try:
        for d in (0, len(tickers) - 1):
            seq = torch.cat([torch.tensor([lm.tokenizer.bos_token_id]), ids[doc == d].long()])
            with torch.no_grad():
                lm.model(seq[None])
            torch.testing.assert_close(X[doc == d], got[-1], atol=1e-4, rtol=1e-4)
    finally:
        hook.remove()
    A = latents_fn(X.double().numpy())
    tl = TokenLatents.from_dense(tickers, doc_offsets(doc, len(tickers)), A)
    ok = ~massive_token_mask(X, 10.0, median=float(np.median(X.norm(dim=1).numpy()))).numpy()
    names = companies["name"].fillna("").astype(str).to_list()
    vec, _, _ = sae_company_vectors(tl, token_strings(store), names, token_mask=ok)
    return vec, A


def _assert_same(V, ref):
    assert sorted(int(c) for c in V.columns) == sorted(int(c) for c in ref.columns)
    assert list(V.index) == list(ref.index)
    np.testing.assert_allclose(V[ref.columns].to_numpy(), ref.to_numpy(), rtol=1e-4, atol=1e-5)


def _sparsify_latents(folder, k):
    """sparsify's Sae.encode: TopK of ReLU(encoder(x - b_dec))."""
    w = {n: t.double().numpy() for n, t in load_file(str(folder / "sae.safetensors")).items()}

    def fn(X):
        pre = np.maximum((X - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"], 0)
        A = np.zeros_like(pre)
        top = np.argsort(-pre, axis=1)[:, :k]
        np.put_along_axis(A, top, np.take_along_axis(pre, top, axis=1), axis=1)
        return A
    return fn


def _gemma_latents(npz):
    """Gemma Scope's JumpReLU: pre = x W_enc + b_enc, kept where pre > threshold."""
    p = {n: v.astype(np.float64) for n, v in np.load(npz).items()}

    def fn(X):
        pre = X @ p["W_enc"] + p["b_enc"]
        return pre * (pre > p["threshold"])
    return fn


def test_sparsify_release_end_to_end(tiny, sparsify_release, capsys):
    model, csv = tiny
    V, meta = _built(capsys, model, csv, sparsify_release, "--layer", "1")
    assert meta["layer"] == 1 and "layers.1|" in meta["sae"] and "mlp" not in meta["sae"]
    ref, A = _reference_vectors(model, csv, 1, _sparsify_latents(sparsify_release / "layers.1", 8))
    assert ((A != 0).sum(axis=1) <= 8).all() and (A != 0).any()
    _assert_same(V, ref)
    # another block of the same release is another SAE (and other vectors)
    V2, meta2 = _built(capsys, model, csv, sparsify_release, "--layer", "2")
    assert meta2["layer"] == 2 and "layers.2|" in meta2["sae"]
    _assert_same(V2, _reference_vectors(model, csv, 2, _sparsify_latents(
        sparsify_release / "layers.2", 8))[0])


def test_sparsify_release_errors(tiny, sparsify_release, capsys):
    model, csv = tiny
    rc, out = _build(capsys, model, csv, sparsify_release, "--layer", "7")
    assert rc == 2
    err = out.err
    assert "no SAE for block 7" in err and "layers.0 (block 0)" in err
    assert "layers.2 (block 2)" in err and "layers.1.mlp" in err and ".cache" not in err
    # several SAEs and no --layer: the command asks for one
    rc, out = _build(capsys, model, csv, sparsify_release)
    assert rc == 2 and "--layer" in out.err and "layers.0" in out.err
    # one hookpoint folder: its block is taken from the name, a contradicting --layer refused
    rc, out = _build(capsys, model, csv, sparsify_release / "layers.1", "--layer", "2")
    assert rc == 2 and "after block 1, not block 2" in out.err
    rc, out = _build(capsys, model, csv, sparsify_release / "layers.1.mlp", "--layer", "1")
    assert rc == 2 and "not the residual stream" in out.err


def test_single_hookpoint_folder_infers_layer(tiny, sparsify_release, capsys, tmp_path):
    model, csv = tiny
    V, meta = _built(capsys, model, csv, sparsify_release / "layers.2")
    assert meta["layer"] == 2
    # a release folder holding one SAE: used without --layer
    shutil.copytree(sparsify_release / "layers.0", tmp_path / "one" / "layers.0")
    V0, meta0 = _built(capsys, model, csv, tmp_path / "one")
    assert meta0["layer"] == 0
    _assert_same(V0, _reference_vectors(model, csv, 0, _sparsify_latents(
        sparsify_release / "layers.0", 8))[0])


def test_gemma_scope_release_end_to_end(tiny, gemma_release, capsys):
    model, csv = tiny
    one = gemma_release / "layer_1" / "width_256" / "average_l0_12"
    rc, out = _build(capsys, model, csv, gemma_release, "--layer", "1")
    assert rc == 2 and "2 SAEs read block 1" in out.err
    assert "layer_1/width_256/average_l0_12" in out.err and "average_l0_40" in out.err
    rc, out = _build(capsys, model, csv, gemma_release, "--layer", "0")
    assert rc == 2 and "no SAE for block 0" in out.err and "layer_2 (block 2)" in out.err
    rc, out = _build(capsys, model, csv, one, "--layer", "2")
    assert rc == 2 and "after block 1, not block 2" in out.err

    V, meta = _built(capsys, model, csv, one, "--layer", "1")
    assert meta["layer"] == 1
    ref, A = _reference_vectors(model, csv, 1, _gemma_latents(one / "params.npz"))
    assert 0 < (A != 0).sum(axis=1).mean() < A.shape[1] / 2
    _assert_same(V, ref)
    # the params.npz file itself, and the release with a block that has one SAE, work too
    assert find_sae(one / "params.npz") == (one / "params.npz", 1)
    V2, meta2 = _built(capsys, model, csv, gemma_release, "--layer", "2")
    assert meta2["layer"] == 2 and "average_l0_20" in meta2["sae"]


def test_saelens_folder_records_its_hook(tiny, capsys, tmp_path):
    model, csv = tiny
    sae = _jumprelu(5)
    folder = save_saelens(sae, tmp_path / "blocks.2.hook_resid_post")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"] = {"model_name": "tiny-llama", "hook_name": "blocks.2.hook_resid_post"}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    V, meta = _built(capsys, model, csv, folder)    # layer from the hook name
    assert meta["layer"] == 2
    w = {n: t.double().numpy()
         for n, t in load_file(str(folder / "sae_weights.safetensors")).items()}

    def fn(X):   # SAELens JumpReLU with apply_b_dec_to_input
        pre = (X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        return pre * (pre > w["threshold"])
    _assert_same(V, _reference_vectors(model, csv, 2, fn)[0])
    rc, out = _build(capsys, model, csv, folder, "--layer", "1")
    assert rc == 2 and "after block 2, not block 1" in out.err
    # the same SAE as Gemma Scope params: identical latents (b_dec folding both ways)
    npz = save_gemmascope(sae, tmp_path / "gs" / "layer_2" / "params.npz")
    X = torch.randn(50, D)
    with torch.no_grad():
        A = load_sae(folder).encode(X)
        torch.testing.assert_close(load_sae(npz).encode(X), A, atol=1e-5, rtol=1e-5)
    assert (A != 0).any()
    np.testing.assert_allclose(_gemma_latents(npz)(X.double().numpy()), A.double().numpy(),
                               atol=1e-4)


def test_sae_block_names_and_hooks(tmp_path):
    sae = _random_sae("topk", 0, k=4)
    # the first EleutherAI upload: layer_N = hidden_states[N], the input of block N
    assert sae_block(save_sparsify(sae, tmp_path / "old" / "layer_5")) == 4
    assert find_sae(tmp_path / "old", 4)[0].name == "layer_5"
    save_sparsify(sae, tmp_path / "old" / "layer_0")
    with pytest.raises(DataError, match="embeddings"):
        sae_block(tmp_path / "old" / "layer_0")
    assert sae_block(save_sparsify(sae, tmp_path / "model.layers.3")) == 3
    assert sae_block(save_sparsify(sae, tmp_path / "mine")) is None
    lens = save_saelens(sae, tmp_path / "lens")
    for hook, block in (("blocks.6.hook_resid_pre", 5), ("blocks.6.hook_resid_post", 6)):
        cfg = json.loads((lens / "cfg.json").read_text())
        (lens / "cfg.json").write_text(json.dumps({**cfg, "hook_name": hook}))
        assert sae_block(lens) == block
    (lens / "cfg.json").write_text(json.dumps({**cfg, "hook_name": "blocks.6.hook_mlp_out"}))
    with pytest.raises(DataError, match="residual stream"):
        sae_block(lens)
    with pytest.raises(DataError, match="not found"):
        find_sae(tmp_path / "nothing", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an SAE folder"):
        find_sae(tmp_path / "empty", 1)


def test_sae_for_another_model_is_refused(tiny, capsys, tmp_path):
    model, csv = tiny
    torch.manual_seed(0)
    wide = build_sae(SAEConfig(d_in=2 * D, d_sae=8 * D, arch="topk", k=4))
    save_sparsify(wide, tmp_path / "layers.1")
    rc, out = _build(capsys, model, csv, tmp_path, "--layer", "1")
    assert rc == 2 and f"{2 * D}-dimensional" in out.err and str(D) in out.err
