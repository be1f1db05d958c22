"""Every SAE metric against values computed by hand on small tensors, and the LM splice on a
tiny random Llama."""

import math

import pytest
import torch

from finsae.data.errors import DataError
from finsae.sae import (ReconStats, SAEConfig, build_sae, ce_loss_score, evaluate_reconstruction,
                        fvu, massive_token_mask, splice_metrics)


def test_fvu_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 5.0]])
    # errors: 0, 1, 0, 1 -> 2; per-dimension mean (2, 3): deviations 1+1 and 1+1 -> 4
    assert fvu(x, x_hat) == pytest.approx(0.5)


def test_fvu_aggregates_numerator_and_denominator_over_batches():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]])
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 5.0], [4.0, 0.0]])
    s = ReconStats(2, 3)
    for i in range(3):  # one token per batch: a per-batch ratio would be 0/0
        s.update(x[i:i + 1], x_hat[i:i + 1])
    # sse = 0+1+0+1+1+0 = 3; mean (3, 2): (4+0+4) + (0+4+4) = 16
    assert s.fvu == pytest.approx(3 / 16)
    assert s.mse == pytest.approx(3 / 6)
    assert fvu(x, x_hat) == pytest.approx(3 / 16)


def test_l0_and_dead_fraction_by_hand():
    s = ReconStats(1, 3)
    z = torch.tensor([[0.0, 1.0, 0.0], [2.0, 3.0, 0.0]])
    s.update(torch.zeros(2, 1), torch.zeros(2, 1), z)
    assert s.l0 == pytest.approx(1.5)
    assert s.dead_fraction == pytest.approx(1 / 3)
    assert s.to_dict()["dead_over_tokens"] == 2


def test_massive_token_mask_by_hand():
    acts = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 100.0]])
    # norms 1, 2, 3, 100; torch's median of an even count is the lower middle: 2
    assert massive_token_mask(acts, 10.0).tolist() == [False, False, False, True]
    assert massive_token_mask(acts, 1.0).tolist() == [False, False, True, True]
    assert not massive_token_mask(acts, None).any()
    assert massive_token_mask(acts, 2.0, median=50.0).tolist() == [False] * 4


def test_ce_loss_score_by_hand():
    assert ce_loss_score(2.0, 2.5, 4.0) == pytest.approx(0.75)
    assert ce_loss_score(2.0, 2.0, 4.0) == pytest.approx(1.0)
    assert ce_loss_score(2.0, 4.0, 4.0) == pytest.approx(0.0)


def test_evaluate_reconstruction_drops_massive_and_matches_stats():
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(d_in=8, d_sae=32, k=3), seed=0)
    acts = torch.randn(300, 8)
    acts[0] *= 1000
    r = evaluate_reconstruction(sae, acts, batch_size=64)
    assert r["n_massive_dropped"] == 1 and r["n_tokens"] == 299
    x = acts[1:]
    ref = fvu(x, sae.reconstruct(x).detach())
    assert r["fvu"] == pytest.approx(ref, rel=1e-6)
    assert r["l0"] <= 3
    with pytest.raises(DataError, match="tokens, 8"):
        evaluate_reconstruction(sae, torch.zeros(4, 9))


# --- splicing -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


class _Fn:
    """An 'SAE' whose reconstruction is a fixed function."""

    def __init__(self, fn):
        self.reconstruct = fn


def _batch():
    ids = torch.tensor([[1, 5, 9, 11, 7, 3], [1, 4, 8, 0, 0, 0]])
    am = (ids != 0).long()
    am[1, 0] = 1
    return ids, am


def _manual(model, ids, am, fn, layer=0):
    """Losses and KL by explicit loops, with `fn` applied after block `layer` at real non-BOS
    positions."""
    def run(f):
        def hook(_m, _i, out):
            h = out[0] if isinstance(out, tuple) else out
            if f is None:
                return None
            new = h.clone()
            for b in range(ids.shape[0]):
                for t in range(ids.shape[1]):
                    if am[b, t] and ids[b, t] != 1:
                        new[b, t] = f(h[b, t][None])[0]
            return (new, *out[1:]) if isinstance(out, tuple) else new
        hd = model.model.layers[layer].register_forward_hook(hook)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=am).logits
        hd.remove()
        return logits.log_softmax(-1)

    lc, ls, lz = run(None), run(fn), run(torch.zeros_like)
    ce = {"c": 0.0, "s": 0.0, "z": 0.0}
    kl, n = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if am[b, t] and am[b, t + 1] and ids[b, t] != 1:
                y = ids[b, t + 1]
                ce["c"] -= float(lc[b, t, y])
                ce["s"] -= float(ls[b, t, y])
                ce["z"] -= float(lz[b, t, y])
                kl += float((lc[b, t].exp() * (lc[b, t] - ls[b, t])).sum())
                n += 1
    return {k: v / n for k, v in ce.items()}, kl / n, n


def test_splice_matches_hand_loops(tiny_llama):
    ids, am = _batch()
    half = _Fn(lambda h: 0.5 * h)
    r = splice_metrics(tiny_llama, half, ids, am, layer=0, bos_token_id=1, massive_factor=None,
                       batch_size=1)
    ce, kl, n = _manual(tiny_llama, ids, am, half.reconstruct)
    # predictions from real, non-BOS tokens to real tokens: 4 in row 0, 1 in row 1
    assert n == 5 == r["n_predictions"]
    assert r["loss_clean"] == pytest.approx(ce["c"], rel=1e-5)
    assert r["loss_spliced"] == pytest.approx(ce["s"], rel=1e-5)
    assert r["loss_zero_ablation"] == pytest.approx(ce["z"], rel=1e-5)
    assert r["kl_div"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert r["delta_lm_loss"] == pytest.approx(ce["s"] - ce["c"], rel=1e-4, abs=1e-6)
    assert r["ce_loss_score"] == pytest.approx((ce["z"] - ce["s"]) / (ce["z"] - ce["c"]),
                                               rel=1e-4)
    assert r["n_spliced_tokens"] == 7  # 9 real tokens minus 2 BOS


def test_splice_identity_and_zero(tiny_llama):
    ids, am = _batch()
    ident = splice_metrics(tiny_llama, _Fn(lambda h: h), ids, am, layer=1, bos_token_id=1)
    assert ident["ce_loss_score"] == pytest.approx(1.0, abs=1e-5)
    assert ident["delta_lm_loss"] == pytest.approx(0.0, abs=1e-5)
    assert ident["kl_div"] == pytest.approx(0.0, abs=1e-6)
    zero = splice_metrics(tiny_llama, _Fn(torch.zeros_like), ids, am, layer=1, bos_token_id=1)
    assert zero["ce_loss_score"] == pytest.approx(0.0, abs=1e-5)
    assert zero["delta_lm_loss"] == pytest.approx(zero["loss_zero_ablation"] - zero["loss_clean"])


def test_splice_keeps_massive_tokens_clean(tiny_llama):
    ids, am = _batch()
    # factor 0: every token is "massive", so nothing is spliced and the LM is unchanged
    r = splice_metrics(tiny_llama, _Fn(torch.zeros_like), ids, am, layer=0, bos_token_id=1,
                       massive_factor=1e-9)
    assert r["n_spliced_tokens"] == 0 and r["n_massive_kept_clean"] == 7
    assert r["delta_lm_loss"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(r["ce_loss_score"])  # zero ablation changed nothing either: 0/0


def test_splice_with_a_real_sae_and_bad_input(tiny_llama):
    ids, am = _batch()
    sae = build_sae(SAEConfig(d_in=16, d_sae=32, k=4), seed=0)
    r = splice_metrics(tiny_llama, sae, ids, am, layer=0, bos_token_id=1)
    assert r["loss_spliced"] > 0 and r["kl_div"] >= 0
    with pytest.raises(DataError, match="out of range"):
        splice_metrics(tiny_llama, sae, ids, am, layer=5)
    with pytest.raises(DataError, match="batch, seq"):
        splice_metrics(tiny_llama, sae, ids[0], am[0], layer=0)
