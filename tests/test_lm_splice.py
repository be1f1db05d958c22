"""Partial forwards and splices on a tiny random 4-block Llama: hooks.forward_from,
SpliceEvaluator against splice_metrics and a direct hooked forward, the any-layer massive-token
mask, packed-chunk capture of every block."""

import pytest
import torch
from tiny_models import SENTENCES, bpe_tokenizer, tiny_llama

from finsae.data.errors import DataError
from finsae.lm import capture_blocks, forward_from, hooks, pack_tokens
from finsae.sae import (SAEConfig, SpliceEvaluator, build_sae, massive_token_mask,
                        massive_token_mask_any_layer, splice_metrics)


@pytest.fixture(scope="module")
def tok():
    t = bpe_tokenizer(SENTENCES)
    t.eos_token = "<pad>"     # packing separates texts with EOS
    return t


@pytest.fixture(scope="module")
def llama(tok):
    return tiny_llama(tok, n_layers=4).eval()


@pytest.fixture(scope="module")
def chunks(tok):
    return pack_tokens(tok, SENTENCES * 4, 5 * 12, 12)


class _Fn:
    """An 'SAE' whose reconstruction is a fixed function."""

    def __init__(self, fn):
        self.reconstruct = fn


@torch.no_grad()
def test_forward_from_equals_the_full_forward(llama, chunks):
    full = llama(input_ids=chunks).logits
    with hooks.capture(llama, range(4), stop=False) as got:
        llama(input_ids=chunks)
    for layer in range(4):
        torch.testing.assert_close(forward_from(llama, got[layer], layer), full,
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forward_from(llama, got[1], -3), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(DataError, match="out of range"):
        forward_from(llama, got[0], 4)


def test_forward_from_refuses_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2))
    with pytest.raises(DataError, match="Llama-like"):
        forward_from(gpt2, torch.zeros(1, 3, 16), 0)


def test_pack_tokens(tok):
    ids = pack_tokens(tok, SENTENCES, 25, 10)
    assert ids.shape == (3, 10)
    first = tok(SENTENCES[0]).input_ids + [tok.eos_token_id]
    assert ids.flatten()[:len(first)].tolist() == first[:30]
    with pytest.raises(ValueError, match="fewer"):
        pack_tokens(tok, SENTENCES[:1], 1000, 10)


@torch.no_grad()
def test_capture_blocks_equals_hidden_states(llama, chunks):
    acts = capture_blocks(llama, chunks, batch_size=2, dtype=torch.float32)
    ref = llama(input_ids=chunks, output_hidden_states=True).hidden_states
    assert acts.shape == (4, chunks.numel(), 64)
    for layer in range(3):      # the last entry of hidden_states has the final norm applied
        torch.testing.assert_close(acts[layer], ref[layer + 1].reshape(-1, 64),
                                   atol=1e-5, rtol=1e-5)
    two = capture_blocks(llama, chunks, [2, 0], dtype=torch.float32)
    torch.testing.assert_close(two, acts[[0, 2]])


def test_massive_mask_any_layer():
    acts = torch.ones(3, 6, 2)
    acts[0, 1] *= 100                       # massive at layer 0 only
    acts[2, 4] *= 100                       # at layer 2 only
    got = massive_token_mask_any_layer(acts, 10.0)
    assert got.tolist() == [False, True, False, False, True, False]
    assert got.tolist() == (massive_token_mask(acts[0]) | massive_token_mask(acts[2])).tolist()
    assert not massive_token_mask_any_layer(acts, None).any()
    assert massive_token_mask_any_layer(list(acts), 10.0).tolist() == got.tolist()


@pytest.mark.parametrize("layer", [0, 2])
def test_splice_evaluator_equals_splice_metrics(llama, chunks, layer):
    sae = build_sae(SAEConfig(d_in=64, d_sae=128, k=8), seed=0)
    ref = splice_metrics(llama, sae, chunks, layer=layer, massive_factor=None, batch_size=2)
    ev = SpliceEvaluator(llama, chunks, batch_size=3)
    got = ev.metrics(layer, sae)
    for key in ("loss_clean", "loss_spliced", "loss_zero_ablation", "delta_lm_loss",
                "ce_loss_score"):
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key
    assert got["n_predictions"] == ref["n_predictions"]
    assert got["n_spliced_tokens"] == ref["n_spliced_tokens"] == chunks.numel()
    with torch.no_grad():
        assert got["loss_clean"] == pytest.approx(float(llama(input_ids=chunks,
                                                              labels=chunks).loss), rel=1e-5)


@torch.no_grad()
def test_splice_evaluator_on_a_capture_keeps_massive_tokens_clean(llama, chunks):
    acts = capture_blocks(llama, chunks, dtype=torch.float32)
    massive = torch.zeros(chunks.shape, dtype=torch.bool)
    massive[:, 0] = True                     # e.g. the attention sink of every chunk
    massive[1, 5] = True
    half = _Fn(lambda h: 0.5 * h)
    ev = SpliceEvaluator(llama, chunks, hidden=acts, massive=massive.flatten(), batch_size=2)

    def direct(fn):
        def edit(h):
            new = h.clone()
            new[~massive] = fn(h[~massive])
            return new
        with hooks.replace_output(hooks.block(llama, 1), edit):
            return float(llama(input_ids=chunks, labels=chunks).loss)

    got = ev.metrics(1, half)
    assert got["loss_spliced"] == pytest.approx(direct(half.reconstruct), rel=1e-5)
    assert got["loss_zero_ablation"] == pytest.approx(direct(torch.zeros_like), rel=1e-5)
    assert got["n_massive_kept_clean"] == chunks.shape[0] + 1
    assert ev.base(1) == (got["loss_clean"], got["loss_zero_ablation"])   # cached
    ident = ev.metrics(1, _Fn(lambda h: h))
    assert ident["delta_lm_loss"] == pytest.approx(0.0, abs=1e-6)
    assert ident["ce_loss_score"] == pytest.approx(1.0, abs=1e-5)
