"""One BOS convention (finsae.lm.tokens) for the capture, the SAE training stream and the splice
metrics: on a tiny Llama the three see the same token ids and the same activations."""

from __future__ import annotations

import torch
from tiny_models import SENTENCES, bpe_tokenizer, tiny_llama

from finsae.lm import LM, encode_texts
from finsae.lm.tokens import bos_id, model_inputs, pad_batch
from finsae.sae import splice_metrics_on_texts, stream_activations


class _Recorder:
    """An 'SAE' that returns its input and records what the splice hands it."""

    def __init__(self):
        self.seen = []

    def reconstruct(self, x):
        self.seen.append(x.detach().clone())
        return x


def test_capture_stream_and_splice_see_the_same_tokens_and_activations():
    tok = bpe_tokenizer(SENTENCES)
    model = tiny_llama(tok, n_layers=3).eval()
    lm = LM.from_model(model, tok, name="tiny-llama")
    texts = SENTENCES[:5]
    layer = 1
    store = encode_texts(lm, texts, layers=[layer], cache=False, max_tokens=16)

    inp = model_inputs(tok, texts, 16)
    assert inp.bos_id == tok.bos_token_id is not None
    assert torch.equal(inp.input_ids[:, 0], torch.full((len(texts),), tok.bos_token_id))
    assert torch.equal(inp.input_ids[inp.keep], store.token_ids)      # same ids, BOS dropped
    assert int(inp.keep.sum()) == store.n_tokens

    streamed = torch.cat(list(stream_activations(model, tok, texts, layer=layer, batch_size=2,
                                                 max_length=16)))
    torch.testing.assert_close(streamed, store.tokens(layer), atol=1e-4, rtol=1e-4)

    rec = _Recorder()
    r = splice_metrics_on_texts(model, tok, rec, texts, layer=layer, max_length=16,
                                batch_size=2, massive_factor=None)
    spliced = torch.cat(rec.seen)
    torch.testing.assert_close(spliced, store.tokens(layer), atol=1e-4, rtol=1e-4)
    assert r["n_spliced_tokens"] == store.n_tokens
    # BOS is never an input scored: one prediction fewer than tokens per text
    assert r["n_predictions"] == store.n_tokens - len(texts)
    assert abs(r["delta_lm_loss"]) < 1e-5


def test_bos_only_when_the_tokenizer_has_one():
    tok = bpe_tokenizer(SENTENCES)
    assert bos_id(tok) == tok.bos_token_id and bos_id(tok, False) is None
    b = pad_batch([[5, 6, 7], [8]], None, 0)
    assert b.bos_id is None and b.keep.tolist() == [[True] * 3, [True, False, False]]
    b = pad_batch([[5, 6, 7], [8]], 1, 0)
    assert b.input_ids.tolist() == [[1, 5, 6, 7], [1, 8, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert b.keep.tolist() == [[False, True, True, True], [False, True, False, False]]


def test_capture_batches_cut_padding_within_the_budget():
    from finsae.lm.capture import _batches
    lengths = [60, 400, 60, 60, 60, 60, 60]
    # greedy longest-first would pad all seven to 401 tokens (2,807); cut after the long one
    assert _batches(lengths, 4096, 1) == [[1], [0, 2, 3, 4, 5, 6]]
    lengths = [(k * 37) % 200 + 1 for k in range(300)]
    batches = _batches(lengths, 1000, 1)
    assert sorted(k for b in batches for k in b) == list(range(300))
    assert all(len(b) * (max(lengths[k] for k in b) + 1) <= 1000 for b in batches)
    assert _batches([5000], 1000, 1) == [[0]]               # a text over the budget: alone
