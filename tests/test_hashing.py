"""finsae.hashing: every key and digest pinned to the value the code gave before it moved here.

Cache folders and files are named after these digests: a changed digest would orphan (and
recompute) every cache a user has. The expected values below were computed with the code each
function replaced (stages.stable_hash, features.store.texts_hash/feature_key,
features.baselines._text_hash, integrity.file_digest, pipeline._file_id, the price-cache digest
in data.prices, lm.store.texts_digest/checksum, lm.capture.cache_key, lm.load.fingerprint and
the GGUF key in lm.load._dequantized); do not update them to make a test pass.
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from finsae.hashing import (Hasher, bytes_digest, file_digest, file_stat_key, json_key,
                            texts_digest, texts_key)

OBJ = {"b": [1, 2], "a": "x", "p": Path("/tmp/x"), "n": None, "f": 0.5}
PAIRS = pd.Series(["alpha", "beta é"], index=["AAA", "BBB"])
TEXTS = ["ab", "c", "é", ""]
FILE_BYTES = b"finsae\n" * 1000 + bytes(range(256))
FILE_SHA256 = "e82527bbc2518279818bd904788434f602c5a3550310f43c51db074350fd6cbf"


@pytest.fixture()
def data_file(tmp_path) -> Path:
    p = tmp_path / "f.bin"
    p.write_bytes(FILE_BYTES)
    return p


def test_json_key_pinned():
    assert json_key(OBJ) == "63fe6030f2ec00d4"
    assert json_key(dict(reversed(list(OBJ.items())))) == "63fe6030f2ec00d4"  # key order free
    assert json_key(["one", "two é"]) == "28283dbd4d23d904"
    assert json_key({"a": 1}) != json_key({"a": 2})


def test_texts_key_pinned():
    assert texts_key(PAIRS) == "a459cd13b09212be"  # a feature cache's texts
    assert texts_key(PAIRS, salt="all-MiniLM-L6-v2", length=24) == "0300b652743eb7666251de42"


def test_file_digest_pinned(data_file):
    assert file_digest(data_file) == FILE_SHA256
    assert file_digest(data_file, 16) == FILE_SHA256[:16]
    assert file_digest(data_file) == bytes_digest(FILE_BYTES)


def test_texts_digest_pinned():
    assert texts_digest(TEXTS) == \
        "915979d42c17b43b49b88cd1de063dce9f25c425c9146fedea128613680591da"
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])


def test_file_stat_key_is_the_old_gguf_key(data_file):
    st = data_file.stat()
    old = hashlib.blake2b(f"{data_file.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(),
                          digest_size=8).hexdigest()
    assert file_stat_key(data_file) == old and len(old) == 16


def test_hasher_algorithms():
    assert Hasher().hex() == hashlib.sha256().hexdigest()
    assert Hasher("blake2b", 8).update(b"x").hex() == \
        hashlib.blake2b(b"x", digest_size=8).hexdigest()
    with pytest.raises(ValueError):
        Hasher("md5")
    with pytest.raises(ValueError):
        Hasher("sha256", 16)


# ---- the call sites give the keys they gave before ---------------------------------------------

def test_stage_key_pinned(tmp_path):
    from finsae.pipeline.stages import run_stage
    r = run_stage("demo", {"x": 1, "y": [1, 2]}, [],
                  lambda f: (f / "o.txt").write_text("hi"), root=tmp_path)
    assert r.key == "4c47604f840ad09d"


def test_run_input_file_id_pinned(data_file):
    from finsae.pipeline.run import _file_id
    assert _file_id(str(data_file)) == FILE_SHA256[:16]
    assert _file_id(None) is None


def test_integrity_checksum_pinned(data_file):
    from finsae.integrity import check_file, folder_checksums, sidecar, write_checksum
    assert write_checksum(data_file) == FILE_SHA256
    assert sidecar(data_file).read_text() == f"{FILE_SHA256}  f.bin\n"
    assert check_file(data_file) is None
    assert folder_checksums(data_file.parent)["f.bin"]["sha256"] == FILE_SHA256


def test_price_cache_name_pinned(tmp_path, monkeypatch):
    from finsae.data.paths import cache_dir
    from finsae.data.prices import read_cached
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "px.csv"
    p.write_text("date,AAA,BBB\n2020-01-02,1.0,2.0\n2020-01-03,1.5,2.5\n2020-01-06,1.25,2.25\n")
    read_cached(p, True)
    assert (cache_dir("prices") / "px.csv.b187c71d0f18a6bdd587.parquet").is_file()


def test_minilm_cache_name_pinned(tmp_path, monkeypatch):
    """A cache file under the old name is found (and served) without running MiniLM."""
    import numpy as np

    from finsae.data.paths import cache_dir
    from finsae.features.baselines import minilm_embeddings
    from finsae.integrity import write_checksum
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    path = cache_dir("embeddings") / "minilm_0300b652743eb7666251de42.npy"
    np.save(path, np.eye(2, 384, dtype=np.float32))
    write_checksum(path)
    E = minilm_embeddings(PAIRS)
    assert list(E.index) == ["AAA", "BBB"] and E.iloc[0, 0] == 1


def test_activation_keys_pinned():
    from finsae.lm.capture import CaptureConfig, cache_key
    from finsae.lm.store import checksum
    lm = types.SimpleNamespace(fingerprint="abc123")
    assert cache_key(lm, CaptureConfig(layers=(1, 2)), TEXTS) == "9ad3e5eded256889786c59e21ca1ffe8"
    assert cache_key(lm, CaptureConfig(layers=(3,), max_tokens=64, bos=False, keep_tokens=False),
                     TEXTS) == "84e3271d8b9203974431292a50363e2e"
    tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "a": torch.tensor([1, 2], dtype=torch.int64)}
    assert checksum(tensors) == "f07f686c1a17ce5d40d39b127ef53522"


def test_model_fingerprint_pinned():
    from finsae.lm.load import fingerprint
    m = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 4, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.arange(12, dtype=torch.float32).reshape(4, 3) / 7)
    m[1].weight = m[0].weight  # tied: hashed once
    assert fingerprint(m) == "c6b75af6ce044bf13a0a919a71e4eb2a"
    m.config = types.SimpleNamespace(to_dict=lambda: {"z": 1, "a": [1, 2], "_name_or_path": "x",
                                                      "p": Path("/q")})
    backend = types.SimpleNamespace(to_str=lambda: '{"tok": 1}')
    fast = types.SimpleNamespace(backend_tokenizer=backend)
    slow = types.SimpleNamespace(get_vocab=lambda: {"b": 2, "a": 1})
    assert fingerprint(m, fast) == "6d1655edec8653819c9661baef152e0a"
    assert fingerprint(m, slow) == "065b6e9afbcc751152fe3c10a42c7290"
