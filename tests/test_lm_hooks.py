"""finsae.lm.hooks on a tiny random 2-layer Llama: capture, early stop, output replacement."""

import pytest
import torch

from finsae.data.errors import DataError
from finsae.lm import hooks


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def batch():
    ids = torch.randint(3, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def test_capture_equals_hidden_states(llama, batch):
    ref = llama(**batch, output_hidden_states=True).hidden_states
    n_hooks = len(llama.model.layers[0]._forward_hooks)       # transformers' own, if any
    with hooks.capture(llama, [0, 1], stop=False) as got:
        assert len(llama.model.layers[0]._forward_hooks) == n_hooks + 1
        assert not hooks.forward(llama, **batch)
    torch.testing.assert_close(got[0], ref[1], atol=0, rtol=0)
    # the last entry of hidden_states has the final norm applied; the capture is the raw output
    torch.testing.assert_close(llama.model.norm(got[1]), ref[2], atol=1e-6, rtol=1e-6)
    assert len(llama.model.layers[0]._forward_hooks) == n_hooks   # removed on exit


@torch.no_grad()
def test_capture_stops_after_the_last_block(llama, batch):
    ref = llama(**batch, output_hidden_states=True).hidden_states
    ran = []
    handle = llama.model.layers[1].register_forward_hook(lambda *a: ran.append(1))
    try:
        with hooks.capture(llama, [0]) as got:
            assert hooks.forward(llama, **batch)
    finally:
        handle.remove()
    assert ran == []                                             # block 1 never ran
    torch.testing.assert_close(got[0], ref[1], atol=0, rtol=0)
    with hooks.capture(llama, [1], blocks=[llama.model.layers[0]]) as got:
        assert hooks.forward(llama, **batch)
    torch.testing.assert_close(got[1], ref[1], atol=0, rtol=0)  # the module given was hooked


@torch.no_grad()
def test_replace_output(llama, batch):
    clean = llama(**batch).logits
    seen = []
    with hooks.replace_output(hooks.block(llama, 0), lambda h: seen.append(h.clone())):
        torch.testing.assert_close(llama(**batch).logits, clean, atol=0, rtol=0)  # None: kept
    with hooks.replace_output(hooks.block(llama, -2), lambda h: h * 0):
        zeroed = llama(**batch).logits
    assert not torch.allclose(zeroed, clean)
    # zeroing block 0's output is the same as starting block 1 from zeros
    with hooks.capture(llama, [1], stop=False) as got, \
            hooks.replace_output(hooks.block(llama, 0), torch.zeros_like):
        llama(**batch)
    torch.testing.assert_close(llama.lm_head(llama.model.norm(got[1])), zeroed)
    torch.testing.assert_close(llama(**batch).logits, clean, atol=0, rtol=0)    # hook removed
    assert seen and seen[0].shape == (2, 7, 32)


def test_block_finder_errors(llama):
    assert hooks.block(llama, -1) is llama.model.layers[1]
    assert hooks.decoder_layers(llama) is llama.model.layers
    with pytest.raises(IndexError, match="out of range"):
        hooks.block(llama, 2)
    with pytest.raises(DataError, match=r"0\.\.1"):
        hooks.block(llama, -3)
    with pytest.raises(DataError, match="decoder blocks"):
        hooks.block(torch.nn.Linear(2, 2), 0)
