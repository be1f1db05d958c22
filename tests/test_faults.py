"""Fault injection: for every cache kind, damage an entry (truncate it, flip one byte, delete a
file) and check that the damage is detected, reported in one line, and rebuilt into exactly what
an intact cache gives. Each test uses its own empty cache (tmp_path), never the user's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import bpe_tokenizer, tiny_llama

from finsae.data.errors import DataError
from finsae.integrity import FOLDER_CHECKSUMS, check_file, check_folder, sidecar

DAMAGES = ["truncate", "flip", "delete"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FINSAE_CACHE", str(cache))
    return cache


def damage(path, how: str, at: float = 0.5) -> None:
    """Truncate to half, flip the byte at fraction `at` of the file, or delete it."""
    if how == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[min(len(data) - 1, int(len(data) * at))] ^= 0xFF
    path.write_bytes(bytes(data))


def one_report(err: str, path) -> None:
    """Exactly one 'damaged cache' line, naming the damaged entry."""
    lines = [ln for ln in err.splitlines() if "damaged cache" in ln]
    assert len(lines) == 1, err
    assert str(path) in lines[0]


# ------------------------------------------------------------------------------- prices
def _price_file(tmp_path):
    dates = pd.bdate_range("2019-12-02", periods=40)
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"),
                         "MSFT": np.round(150 + rng.normal(0, 1, 40).cumsum(), 2),
                         "AAPL": np.round(60 + rng.normal(0, 1, 40).cumsum(), 2)})
    f = tmp_path / "p.csv"
    wide.to_csv(f, index=False)
    return f


@pytest.mark.parametrize("how", DAMAGES)
def test_prices_cache_damage_detected_and_rebuilt(tmp_path, private_cache, capsys, how):
    from finsae.data import load_prices
    f = _price_file(tmp_path)
    ref = load_prices(f)
    [cached] = (private_cache / "prices").glob("p.csv.*.parquet")
    assert check_file(cached) is None
    # flip a byte inside the column data (parquet keeps its footer at the end)
    damage(sidecar(cached) if how == "delete" else cached, how, at=0.3)
    capsys.readouterr()
    got = load_prices(f)
    one_report(capsys.readouterr().err, cached)
    pd.testing.assert_frame_equal(got, ref)
    assert check_file(cached) is None           # rebuilt, with a fresh checksum
    load_prices(f)
    assert "damaged" not in capsys.readouterr().err


def test_prices_cache_flipped_value_not_served(tmp_path, private_cache, capsys):
    """The silent case of the issue: a damaged copy that still parses gave wrong prices."""
    from finsae.data import load_prices
    f = _price_file(tmp_path)
    ref = load_prices(f, cache=False)
    load_prices(f)
    [cached] = (private_cache / "prices").glob("p.csv.*.parquet")
    bad = ref.copy()
    bad.iloc[3, 0] = 25.05
    bad.to_parquet(cached)                      # parses fine, one wrong price
    got = load_prices(f)
    assert got.iloc[3, 0] == ref.iloc[3, 0]
    one_report(capsys.readouterr().err, cached)


@pytest.mark.parametrize("how", DAMAGES)
def test_yfinance_cache_damage_detected_and_refetched(private_cache, capsys, how):
    from finsae.data import fetch_yfinance
    calls = []

    def fake_download(tickers, **kw):
        calls.append(list(tickers))
        idx = pd.DatetimeIndex(["2021-01-04", "2021-01-05", "2021-01-06"])
        cols = pd.MultiIndex.from_product([["Close"], tickers])
        base = {"AAPL": 130.0, "MSFT": 220.0}
        return pd.DataFrame([[base[t] + d for t in tickers] for d in range(3)], index=idx,
                            columns=cols)

    kw = dict(start="2021-01-01", end="2021-01-31", downloader=fake_download)
    ref = fetch_yfinance(["AAPL", "MSFT"], **kw)
    [cached] = (private_cache / "yfinance").glob("*/MSFT.parquet")
    damage(sidecar(cached) if how == "delete" else cached, how, at=0.3)
    capsys.readouterr()
    got = fetch_yfinance(["AAPL", "MSFT"], **kw)
    one_report(capsys.readouterr().err, cached)
    assert calls == [["AAPL", "MSFT"], ["MSFT"]]           # only the damaged one is fetched
    pd.testing.assert_frame_equal(got, ref, check_freq=False)
    assert check_file(cached) is None


# ------------------------------------------------------------------------------- MiniLM
class _FakeMiniLM:
    """Deterministic stand-in for the sentence-transformers model (the cache is under test)."""

    calls = 0

    def encode(self, texts, **kw):
        type(self).calls += 1
        E = np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)
        return E / np.linalg.norm(E, axis=1, keepdims=True)


@pytest.mark.parametrize("how", DAMAGES)
def test_minilm_cache_damage_detected_and_rebuilt(private_cache, monkeypatch, capsys, how):
    from finsae.features import baselines
    monkeypatch.setattr(baselines, "_minilm_model", lambda device: _FakeMiniLM())
    texts = pd.Series({"A": "a bank with branches", "B": "an oil explorer", "C": "software"})
    ref = baselines.minilm_embeddings(texts)
    [cached] = (private_cache / "embeddings").glob("minilm_*.npy")
    calls = _FakeMiniLM.calls
    pd.testing.assert_frame_equal(baselines.minilm_embeddings(texts), ref)
    assert _FakeMiniLM.calls == calls          # served from the cache
    damage(sidecar(cached) if how == "delete" else cached, how, at=0.9)  # 0.9: in the floats
    capsys.readouterr()
    got = baselines.minilm_embeddings(texts)
    one_report(capsys.readouterr().err, cached)
    assert _FakeMiniLM.calls == calls + 1
    pd.testing.assert_frame_equal(got, ref)
    assert check_file(cached) is None


# ------------------------------------------------------------------------------- model weights
SENTENCES = ["Apple designs and sells smartphones and personal computers.",
             "Exxon Mobil explores for and produces crude oil and natural gas.",
             "The bank provides retail and commercial banking services in Ohio."]


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer(SENTENCES, vocab_size=120)


def _llama(tokenizer, seed=0, hidden=32):
    return tiny_llama(tokenizer, hidden=hidden, intermediate=64, heads=2, kv_heads=1,
                      max_positions=128, seed=seed)


@pytest.fixture
def fake_gguf(tmp_path, tokenizer, monkeypatch):
    """A '.gguf' file whose conversion (patched) saves the tiny Llama: exercises the real
    dequantized-model cache of load_lm without a real GGUF file."""
    from finsae.lm import load as load_mod
    model = _llama(tokenizer)
    calls = []

    def convert(gguf_path, dest, trust_remote_code):
        calls.append(gguf_path)
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)

    monkeypatch.setattr(load_mod, "_convert_gguf", convert)
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF fake")
    return f, calls


@pytest.mark.parametrize("victim,how", [
    ("model.safetensors", "flip"), ("model.safetensors", "truncate"),
    ("model.safetensors", "delete"), ("config.json", "truncate"),
    ("tokenizer.json", "truncate"), ("tokenizer.json", "flip")])
def test_model_cache_damage_detected_and_rebuilt(fake_gguf, private_cache, capsys, victim, how):
    from finsae.lm import encode_texts, load_lm
    f, calls = fake_gguf
    lm = load_lm(str(f))
    ref = encode_texts(lm, SENTENCES, layers=[1], cache=False).tokens(1)
    [folder] = [p for p in (private_cache / "models").iterdir() if not p.name.startswith(".")]
    assert (folder / FOLDER_CHECKSUMS).exists() and check_folder(folder) is None
    assert len(calls) == 1 and load_lm(str(f)).fingerprint == lm.fingerprint and len(calls) == 1
    damage(folder / victim, how, at=0.7)
    capsys.readouterr()
    again = load_lm(str(f))
    one_report(capsys.readouterr().err, folder)
    assert len(calls) == 2 and check_folder(folder) is None
    assert again.fingerprint == lm.fingerprint
    assert torch.equal(encode_texts(again, SENTENCES, layers=[1], cache=False).tokens(1), ref)


def test_fingerprint_sees_every_weight(tokenizer):
    """One changed weight outside any sample changes the fingerprint, so activations of a
    damaged model are never cached under (or served for) the good model's key."""
    from finsae.lm import LM, encode_texts
    good = LM.from_model(_llama(tokenizer, hidden=64), tokenizer, name="t")
    bad_model = _llama(tokenizer, hidden=64)
    emb = bad_model.model.embed_tokens.weight
    assert emb.numel() > 4096
    with torch.no_grad():
        emb.view(-1)[-1] += 1e-3   # outside a sample of the first 4096 (or every n-th) values
    bad = LM.from_model(bad_model, tokenizer, name="t")
    assert bad.fingerprint != good.fingerprint
    a = encode_texts(good, SENTENCES, layers=[1])
    b = encode_texts(bad, SENTENCES, layers=[1])
    assert a.path != b.path


def test_truncated_config_in_a_model_folder_names_the_folder(tmp_path, tokenizer):
    from finsae.lm import load_lm
    folder = tmp_path / "m"
    _llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    damage(folder / "config.json", "truncate")
    with pytest.raises(DataError) as e:
        load_lm(str(folder))
    msg = str(e.value)
    assert str(folder) in msg and "HF_HUB_OFFLINE" not in msg and "\n" not in msg


# ------------------------------------------------------------------------------- activations
@pytest.fixture(scope="module")
def lm(tokenizer):
    from finsae.lm import LM
    return LM.from_model(_llama(tokenizer), tokenizer, name="tiny")


@pytest.mark.parametrize("victim,how", [
    ("texts.json", "truncate"), ("texts.json", "flip"), ("texts.json", "delete"),
    ("manifest.json", "truncate"), ("shard", "flip"), ("shard", "truncate")])
def test_activation_cache_damage_detected_and_rebuilt(lm, capsys, victim, how):
    from finsae.lm import ActivationStore, encode_texts
    store = encode_texts(lm, SENTENCES, layers=[0, 1], shard_tokens=12)
    ref = store.tokens(1).clone()
    path = store.path / (store.manifest["shards"][0]["file"] if victim == "shard" else victim)
    damage(path, how, at=0.8)
    if victim == "texts.json" and how != "delete":   # reopening without the model: one error
        with pytest.raises(DataError, match="texts.json"):
            ActivationStore.open(store.path).texts
    capsys.readouterr()
    again = encode_texts(lm, SENTENCES, layers=[0, 1], shard_tokens=12)
    one_report(capsys.readouterr().err, path)
    assert torch.equal(again.tokens(1), ref)
    reopened = ActivationStore.open(store.path)
    assert reopened.texts == SENTENCES and torch.equal(reopened.tokens(1), ref)


# ------------------------------------------------------------------------------- features
def _feature_set():
    from finsae.features.store import FeatureSet
    rng = np.random.default_rng(0)
    idx = pd.Index(["AAA", "BBB", "CCC"], name="ticker")
    V = pd.DataFrame(rng.random((3, 5)).astype(np.float32), index=idx, columns=list(range(5)))
    return FeatureSet({"sae": V, "tfidf": V * 2}, pd.Series({"AAA": "A", "BBB": "B", "CCC": "C"}),
                      {j: {"label": f"f{j}"} for j in range(5)}, {"layer": 1})


@pytest.mark.parametrize("victim,how", [
    ("sae.npy", "flip"), ("sae.npy", "truncate"), ("sae.npy", "delete"),
    ("meta.json", "truncate"), ("labels.json", "flip"), (FOLDER_CHECKSUMS, "delete")])
def test_feature_cache_damage_gives_one_clear_error(tmp_path, victim, how):
    from finsae.features.store import FeatureSet
    folder = _feature_set().save(tmp_path / "feat")
    ok = FeatureSet.load(folder)
    damage(folder / victim, how, at=0.9)
    with pytest.raises(DataError) as e:
        FeatureSet.load(folder)
    assert "damaged feature cache" in str(e.value) and str(folder) in str(e.value)
    if victim not in ("sae.npy", FOLDER_CHECKSUMS, "meta.json"):
        return
    _feature_set().save(folder)                              # a rebuild repairs it
    pd.testing.assert_frame_equal(FeatureSet.load(folder).vectors["sae"], ok.vectors["sae"])


def test_feature_build_rebuilds_a_damaged_cache(tmp_path, tokenizer, capsys):
    from finsae.features.build import build_feature_set
    from finsae.features.store import FeatureSet
    from finsae.lm import encode_texts, load_lm
    from finsae.sae import SAEConfig, TrainConfig, train_sae
    mfolder = tmp_path / "m"
    _llama(tokenizer).save_pretrained(mfolder)
    tokenizer.save_pretrained(mfolder)
    acts = encode_texts(load_lm(str(mfolder)), SENTENCES, layers=[1]).tokens(1)
    train_sae(acts, SAEConfig(d_in=32, d_sae=16, k=4), TrainConfig(tokens=512, batch_size=16,
                                                                   progress=False),
              out=tmp_path / "sae")
    companies = pd.DataFrame({"description": SENTENCES, "name": ["Apple", "Exxon", "Bank"]},
                             index=pd.Index(["AAPL", "XOM", "BNK"], name="ticker"))
    kw = dict(model=str(mfolder), layer=1, sae=tmp_path / "sae", baselines=False,
              progress=False)
    folder = build_feature_set(companies, **kw)
    ref = FeatureSet.load(folder).vectors["sae"]
    # labels from contexts (issue 14): every record has a score slot and its contexts
    lab = FeatureSet.load(folder).labels
    assert lab and all({"label", "score", "contexts", "doc_freq", "companies"} <= set(v)
                       for v in lab.values())
    damage(folder / "sae.npy", "flip", at=0.9)
    capsys.readouterr()
    assert build_feature_set(companies, **kw) == folder
    one_report(capsys.readouterr().err, folder)
    pd.testing.assert_frame_equal(FeatureSet.load(folder).vectors["sae"], ref)
    # `finsae features build` prints the folder; the commands reading features take it
    from finsae.cli import main
    from finsae.features.bundled import company_sae_vectors
    csv = tmp_path / "companies.csv"
    companies.reset_index().to_csv(csv, index=False)
    assert main(["features", "build", "--model", str(mfolder), "--layer", "1", "--sae",
                 str(tmp_path / "sae"), "--no-baselines", "--companies", str(csv)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"features cached in {folder}"
    assert main(["similar", "AAPL", "--json", "--companies", str(csv),
                 "--features", str(folder)]) == 0
    assert {r["ticker"] for r in json.loads(capsys.readouterr().out)} == {"XOM", "BNK"}
    assert main(["similar", "AAPL", "--companies", str(csv)]) == 2  # no folder: no guess
    assert "--features DIR" in capsys.readouterr().err
    from finsae.data import load_companies
    user = load_companies(csv)
    with pytest.raises(DataError, match="features build` printed"):
        company_sae_vectors(user)
    pd.testing.assert_frame_equal(company_sae_vectors(user, features=folder), ref)
    # a new version of the features code is not served from the old cache
    import finsae.features.build as fb
    old = fb.FEATURES_RECIPE
    try:
        fb.FEATURES_RECIPE = old + 1
        newer = build_feature_set(companies, **kw)
    finally:
        fb.FEATURES_RECIPE = old
    assert newer != folder and FeatureSet.load(newer).meta["recipe"] == old + 1


# ------------------------------------------------------------------------------- stages
@pytest.mark.parametrize("how", DAMAGES)
def test_stage_damage_detected_and_rerun(tmp_path, capsys, how):
    from finsae.pipeline.stages import run_stage
    calls = []

    def fn(folder):
        calls.append(1)
        (folder / "out.json").write_text(json.dumps({"x": list(range(50))}))

    first = run_stage("s", {"a": 1}, [], fn, root=tmp_path)
    ref = (first.path / "out.json").read_bytes()
    damage(first.path / "out.json", how)
    capsys.readouterr()
    again = run_stage("s", {"a": 1}, [], fn, root=tmp_path)
    one_report(capsys.readouterr().err, first.path)
    assert not again.cached and len(calls) == 2
    assert (again.path / "out.json").read_bytes() == ref
    assert run_stage("s", {"a": 1}, [], fn, root=tmp_path).cached


def test_failed_stage_leaves_no_tmp_folder(tmp_path):
    from finsae.pipeline.stages import run_stage

    def boom(folder):
        (folder / "partial").write_text("x")
        raise ValueError("bad setting")

    with pytest.raises(ValueError):
        run_stage("s", {}, [], boom, root=tmp_path)
    assert list((tmp_path / "s").iterdir()) == []


def test_no_progress_hides_gguf_conversion_bars(fake_gguf, monkeypatch):
    """`--no-progress` reaches the GGUF conversion, whose bar transformers draws with tqdm."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from finsae.lm import load as load_mod
    f, calls = fake_gguf
    seen = []
    real = load_mod._convert_gguf

    def convert(*a):
        seen.append((gguf_utils.tqdm(range(1)).disable, hf_logging.is_progress_bar_enabled()))
        real(*a)

    monkeypatch.setattr(load_mod, "_convert_gguf", convert)
    load_mod.load_lm(str(f), progress=False)
    assert seen == [(True, False)]
    assert hf_logging.is_progress_bar_enabled() and gguf_utils.tqdm(range(1)).disable is not True
