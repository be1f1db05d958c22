"""Trainer, batches, initialisation and the `finsae sae` CLI on small synthetic activations."""

import json

import pytest
import torch
from safetensors.torch import save_file

from finsae.cli import main
from finsae.data.errors import DataError
from finsae.sae import (Batches, SAEConfig, TrainConfig, default_lr, evaluate_reconstruction,
                        geometric_median, load_activations, load_sae, stream_activations,
                        train_sae)


def _acts(n=12000, d=16, n_feat=40, seed=0):
    """Sparse combinations of a few directions plus a large shared mean (the trap of real
    residual streams) and two massive tokens."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_feat, d, generator=g)
    codes = torch.rand(n, n_feat, generator=g) * (torch.rand(n, n_feat, generator=g) < 0.08)
    x = codes @ dirs + 6.0 + 0.01 * torch.randn(n, d, generator=g)
    x[[5, 900]] *= 200
    return x


def _tc(**kw):
    base = dict(tokens=24000, batch_size=512, seed=0, progress=False)
    return TrainConfig(**{**base, **kw})


def test_default_lr_and_geometric_median_by_hand():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(2**16) == pytest.approx(1e-4)
    gm = geometric_median(torch.tensor([[0.0], [1.0], [100.0]]))
    assert float(gm[0]) == pytest.approx(1.0, abs=1e-3)
    pts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    assert torch.allclose(geometric_median(pts), torch.tensor([1.0, 1.0]), atol=1e-4)


def test_training_learns_and_reports(tmp_path):
    x = _acts()
    r = train_sae(x, SAEConfig(d_in=16, d_sae=64, k=6), _tc(), out=tmp_path / "s")
    assert r.n_massive_dropped == 2 and r.n_tokens_seen == len(x)
    assert r.tokens >= 24000 and r.history[-1]["fvu"] < min(0.35, 0.7 * r.history[0]["fvu"])
    sae = load_sae(tmp_path / "s")
    ev = evaluate_reconstruction(sae, x)
    assert ev["fvu"] < 0.35 and ev["l0"] <= 6 and ev["n_massive_dropped"] == 2
    assert ev["dead_fraction"] < 0.5
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["train"]["n_massive_dropped"] == 2
    assert cfg["train"]["activation_scale_folded"] == pytest.approx(r.activation_scale)
    # b_dec started at the data's geometric median, not at zero (raw space after folding)
    assert float(sae.b_dec.detach().mean()) > 3


def test_same_seed_same_weights_other_seed_differs():
    x = _acts(n=4000)
    tc = _tc(tokens=4096)
    a = train_sae(x, SAEConfig(d_in=16, d_sae=32, k=4), tc).sae
    b = train_sae(x, SAEConfig(d_in=16, d_sae=32, k=4), tc).sae
    c = train_sae(x, SAEConfig(d_in=16, d_sae=32, k=4), _tc(tokens=4096, seed=1)).sae
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_enc, c.W_enc)


@pytest.mark.parametrize("arch", ["batchtopk", "relu", "jumprelu"])
def test_other_architectures_train(arch):
    x = _acts(n=6000)
    r = train_sae(x, SAEConfig(d_in=16, d_sae=64, k=6, arch=arch), _tc(tokens=12000))
    assert r.history[-1]["fvu"] < r.history[0]["fvu"]
    ev = evaluate_reconstruction(r.sae, x)
    assert ev["fvu"] < 1.0 and 0 < ev["l0"] < 64


def test_stream_source_checkpoint_and_resume(tmp_path):
    x = _acts(n=8000)
    chunks = (x[i:i + 700] for i in range(0, len(x), 700))
    tc = _tc(tokens=6144, buffer_tokens=2048, checkpoint_every=3072)
    r = train_sae(chunks, {"d_sae": 32, "k": 4}, tc, out=tmp_path / "s")
    assert r.tokens == 6144 and r.n_massive_dropped == 2
    ck = sorted((tmp_path / "s" / "checkpoints").iterdir())
    assert [p.name for p in ck] == ["tokens_3072", "tokens_6144"]
    resumed = train_sae(x, SAEConfig(d_in=16, d_sae=32, k=4), _tc(tokens=9216),
                        resume=ck[-1])
    assert resumed.tokens == 9216 and resumed.steps == 18
    with pytest.raises(ValueError, match="not both"):
        train_sae(x, SAEConfig(d_in=16, d_sae=32, k=4), _tc(tokens=9216), resume=ck[-1],
                  init=r.sae)


def test_init_starts_from_a_trained_sae():
    x = _acts(n=3000)
    cfg = SAEConfig(d_in=16, d_sae=32, k=4)
    first = train_sae(x, cfg, _tc(tokens=2048)).sae
    # lr = 0: nothing moves, so the result is the start (up to the scale fold round trip)
    same = train_sae(x, cfg, _tc(tokens=512, lr=0.0), init=first).sae
    for k, v in first.state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v, atol=1e-5, rtol=1e-5)


def test_batches_shuffle_and_errors(tmp_path):
    x = torch.arange(40.0).view(20, 2)
    b = Batches(x, 5, seed=0, massive_factor=None)
    seen = [t for _, t in zip(range(4), b)]
    assert sorted(torch.cat(seen)[:, 0].tolist()) == list(range(0, 40, 2))  # one epoch
    with pytest.raises(DataError, match="fewer than one batch"):
        Batches(x, 64)
    with pytest.raises(DataError, match=r"\[tokens, d\]"):
        Batches(torch.zeros(3, 4, 5), 2)
    save_file({"other": x}, str(tmp_path / "a.safetensors"))
    with pytest.raises(DataError, match="no tensor 'acts'"):
        load_activations(tmp_path / "a.safetensors")
    with pytest.raises(DataError, match="d_in=8"):
        train_sae(_acts(n=2000), SAEConfig(d_in=8, d_sae=16, k=2), _tc(tokens=512))


def test_stream_activations_from_a_tiny_llama():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    words = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"] + "the firm makes chips and sells cloud".split()
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", bos_token="[BOS]",
                                  eos_token="[EOS]", unk_token="[UNK]")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=8,
                                         intermediate_size=16, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    texts = ["the firm makes chips", "the firm sells cloud and chips", "chips"]
    chunks = list(stream_activations(model, tok, texts, layer=1, batch_size=2))
    assert [c.shape for c in chunks] == [(10, 8), (1, 8)]
    # tokenized as the capture does: BOS prepended, then dropped with the padding
    ids = tok(texts[:2], return_tensors="pt", padding=True)
    bos = torch.full((2, 1), tok.bos_token_id)
    ref = model(input_ids=torch.cat([bos, ids["input_ids"]], 1),
                attention_mask=torch.cat([torch.ones_like(bos), ids["attention_mask"]], 1),
                output_hidden_states=True).hidden_states[2][:, 1:]
    assert torch.allclose(chunks[0], ref[ids["attention_mask"].bool()], atol=1e-5)


def test_cli_train_and_eval(tmp_path, capsys):
    f = tmp_path / "acts.safetensors"
    save_file({"acts": _acts(n=6000)}, str(f))
    rc = main(["sae", "train", "--activations", str(f), "--out", str(tmp_path / "s"),
               "--tokens", "6144", "--batch-size", "1024", "--expansion", "4", "--k", "4",
               "--no-progress", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens"] == 6144 and summary["n_massive_dropped"] == 2
    rc = main(["sae", "eval", str(tmp_path / "s"), "--activations", str(f), "--no-lm",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["d_sae"] == 64 and 0 < out["fvu"] < 1 and out["l0"] <= 4
    for key in ("fvu", "l0", "dead_fraction", "ce_loss_score", "delta_lm_loss"):
        assert key in out
    assert main(["sae", "train", "--activations", str(f), "--out", str(tmp_path / "t"),
                 "--arch", "gated", "--no-progress"]) == 2
    assert "known: topk" in capsys.readouterr().err
    assert main(["sae", "eval", str(tmp_path)]) == 2
    assert "not an SAE folder" in capsys.readouterr().err


def test_tune_allocator_applies_on_glibc_and_yields_to_the_user(tmp_path):
    """In fresh processes (mallopt changes the whole process): applied on Linux with glibc,
    skipped when the user set a MALLOC_* variable or FINSAE_NO_MALLOC_TUNING."""
    import os
    import platform
    import subprocess
    import sys
    code = "from finsae.allocator import tune_allocator; print(tune_allocator())"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k != "FINSAE_NO_MALLOC_TUNING"}

    def run(**extra):
        return subprocess.run([sys.executable, "-c", code], env={**base, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert run() == str(glibc)
    assert run(MALLOC_TRIM_THRESHOLD_="131072") == "False"
    assert run(FINSAE_NO_MALLOC_TUNING="1") == "False"
