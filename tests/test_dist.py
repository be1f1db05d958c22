"""Data parallelism under torchrun: 2 CPU processes (gloo) against one process.

Each test launches ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m finsae
...`` as users do, then compares with the single-process result on the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import SENTENCES as TINY_SENTENCES
from tiny_models import bpe_tokenizer, tiny_llama

import finsae
from finsae import dist

ROOT = Path(finsae.__file__).resolve().parents[1]


def torchrun(args: list[str], tmp_path: Path, nproc: int = 2, timeout: int = 120):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "FINSAE_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "finsae", *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_single_process_is_not_distributed():
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    assert dist.setup("cpu") == "cpu" and not dist.initialized()
    assert dist.backend_for("cuda:0") == "nccl" and dist.backend_for("cpu") == "gloo"


def test_batches_split_the_global_batch():
    from finsae.sae.train import Batches
    x = torch.randn(100, 4)
    full = Batches(x, 20, seed=3, massive_factor=None)
    parts = [Batches(x, 20, seed=3, massive_factor=None, rank=r, world_size=2) for r in (0, 1)]
    for _, b, b0, b1 in zip(range(12), iter(full), iter(parts[0]), iter(parts[1])):  # 2+ epochs
        assert b0.shape == (10, 4) and torch.equal(b, torch.cat([b0, b1]))
    with pytest.raises(Exception, match="multiple"):
        Batches(x, 21, rank=0, world_size=2)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu"])
def test_split_batch_loss_gives_the_global_gradient(arch):
    """What each rank computes (its half, tv = global total variance / 2), averaged, is the
    gradient of the whole batch: the identity the data-parallel trainer relies on."""
    from finsae.sae.architectures import build_sae, total_variance
    from finsae.sae.config import SAEConfig
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g) * 2 + 1
    dead = torch.rand(32, generator=g) < 0.5
    cfg = SAEConfig(d_in=8, d_sae=32, k=4, arch=arch)
    one, two = build_sae(cfg, seed=0), build_sae(cfg, seed=0)
    kw = {"sparsity_coef": 0.01}
    o = one.loss(x, dead if arch == "topk" else None, **kw)
    o.loss.backward()
    tv = total_variance(x) / 2
    fvu = 0.0
    for half in (x[:32], x[32:]):
        oh = two.loss(half, dead if arch == "topk" else None, tv=tv, **kw)
        (oh.loss / 2).backward()
        fvu += float(oh.fvu.detach()) / 2
    assert fvu == pytest.approx(float(o.fvu.detach()), rel=1e-5)
    for (name, p), q in zip(one.named_parameters(), two.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("arch", ["topk"])
def test_two_process_training_equals_one(tmp_path, arch):
    from finsae.sae.config import SAEConfig, TrainConfig
    from finsae.sae.io import load_sae
    from finsae.sae.train import train_sae
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g) @ torch.randn(16, 16, generator=g) + 2.0
    save_file({"acts": x}, str(tmp_path / "acts.safetensors"))
    steps, batch = 6, 256
    args = ["sae", "train", "--activations", str(tmp_path / "acts.safetensors"),
            "--arch", arch, "--d-sae", "64", "--k", "4", "--tokens", str(steps * batch),
            "--batch-size", str(batch), "--no-progress", "--json", "--out", str(tmp_path / "dp")]
    p = torchrun(args, tmp_path)
    summary = json.loads(p.stdout[p.stdout.index("{"):])
    assert summary["processes"] == 2 and summary["steps"] == steps
    assert summary["tokens"] == steps * batch
    one = train_sae(x, SAEConfig(d_in=16, d_sae=64, arch=arch, k=4),
                    TrainConfig(tokens=steps * batch, batch_size=batch, progress=False))
    two = load_sae(tmp_path / "dp")
    for name, t in one.sae.state_dict().items():
        torch.testing.assert_close(two.state_dict()[name], t, atol=2e-5, rtol=1e-4)
    assert summary["final_fvu"] == pytest.approx(one.history[-1]["fvu"], rel=1e-4)
    assert summary["dead_fraction"] == one.dead_fraction


#: the tiny model's sentences, the long last one cut short (texts of similar length shard evenly)
SENTENCES = TINY_SENTENCES[:-1] + [
    "The company sells software, cloud services and computers to banks and airlines."]


def _tiny_lm_folder(folder: Path) -> Path:
    tok = bpe_tokenizer(SENTENCES)
    tiny_llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_two_process_encode_equals_one(tmp_path, monkeypatch):
    from finsae.lm import ActivationStore, encode_texts, load_lm
    model = _tiny_lm_folder(tmp_path / "tiny")
    texts = SENTENCES * 3   # 21 texts, ~8 shards of >= 20 tokens
    csv = tmp_path / "companies.csv"
    csv.write_text("ticker,description\n" + "".join(f'T{i},"{t}"\n' for i, t in enumerate(texts)))
    args = ["encode", "--companies", str(csv), "--model", str(model), "--layers", "0,1",
            "--shard-tokens", "20", "--no-progress", "--json"]
    p = torchrun(args, tmp_path)
    out = json.loads(p.stdout[p.stdout.index("{"):])["descriptions"]
    assert out["processes"] == 2 and out["texts"] == len(texts)
    store = ActivationStore.open(out["cache"])
    assert len(store.manifest["shards"]) >= 4 and out["computed_shards"] == len(
        store.manifest["shards"])
    # a single process finds every shard in the cache the two processes wrote ...
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    lm = load_lm(str(model))
    again = encode_texts(lm, texts, [0, 1], shard_tokens=20, progress=False)
    assert again.path == store.path and again.stats.computed_shards == 0
    # ... and the activations equal a single-process encode
    one = encode_texts(lm, texts, [0, 1], shard_tokens=20, cache=False, progress=False)
    assert store.texts == texts
    assert torch.equal(store.doc_index, one.doc_index)
    assert torch.equal(store.token_ids, one.token_ids)
    for layer in (0, 1):
        torch.testing.assert_close(store.tokens(layer), one.tokens(layer), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(store.text_means(layer), one.text_means(layer),
                                   atol=1e-6, rtol=1e-6)
    # the cache trains SAEs directly: one block, and one Group-SAE over both blocks
    from finsae.cli import main
    from finsae.sae.io import load_sae
    for extra, out_dir in ((["--layer", "1"], "sae1"), (["--group", "0,1"], "group")):
        assert main(["sae", "train", "--store", out["cache"], *extra, "--d-sae", "32", "--k",
                     "4", "--tokens", "128", "--batch-size", "64", "--no-progress",
                     "--out", str(tmp_path / out_dir)]) == 0
    assert load_sae(tmp_path / "sae1").cfg.meta["layer"] == 1
    assert load_sae(tmp_path / "group").cfg.meta["layers"] == [0, 1]
    assert main(["sae", "train", "--store", out["cache"], "--group", "0,5", "--out",
                 str(tmp_path / "bad")]) == 2
