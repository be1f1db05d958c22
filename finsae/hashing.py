"""Every cache key, content digest and checksum in finsae, in one place.

Each function pins one serialisation, one algorithm and one truncation: a cache folder or file
is named after these digests, so changing any of them would orphan every cache a user already
has (and recompute it). Tests (tests/test_hashing.py) pin the digests of fixed inputs.

Two algorithms are in use, each where it already was when the caches were first written:

- SHA-256 for everything a user may check or compare (file checksums in the ``sha256sum``
  format, ``checksums.json``, the ``texts_sha256`` of an activation manifest) and for the
  content keys of settings, texts, input files and model weights;
- BLAKE2b for the activation-cache key, the per-shard tensor checksum and the key of a
  dequantized GGUF copy: internal names nobody checks by hand, where BLAKE2b is the faster.

Where one kind of input is hashed both ways (a list of texts: SHA-256 in the activation
manifest, BLAKE2b in the activation-cache key; tensors: SHA-256 in the model fingerprint,
BLAKE2b in the shard checksum), both digests are kept as they are: the algorithm is a parameter
of `Hasher`, chosen (and commented) at the call site.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 22  # file read size for `file_digest`


class Hasher:
    """A streaming digest: feed it bytes, JSON, texts or tensors, then read `hex`.

    algo: "sha256" (default) or "blake2b" (then `digest_size` bytes, default 64). Each method
    returns the hasher, so calls chain: ``Hasher().json(settings).texts(texts).hex(16)``."""

    def __init__(self, algo: str = "sha256", digest_size: int | None = None):
        if algo == "sha256":
            if digest_size is not None:
                raise ValueError("sha256 has a fixed digest size: truncate with hex(length)")
            self._h = hashlib.sha256()
        elif algo == "blake2b":
            self._h = hashlib.blake2b(**({} if digest_size is None
                                         else {"digest_size": digest_size}))
        else:
            raise ValueError(f"unknown hash algorithm {algo!r}: sha256 or blake2b")

    def update(self, data) -> "Hasher":
        """Raw bytes (or anything with the buffer protocol, e.g. a numpy array)."""
        self._h.update(data)
        return self

    def text(self, s: str) -> "Hasher":
        """A string's UTF-8 bytes, unframed."""
        return self.update(s.encode())

    def json(self, obj, *, sort_keys: bool = True) -> "Hasher":
        """``json.dumps(obj)`` (keys sorted unless told not to; non-JSON values as str)."""
        return self.text(json.dumps(obj, sort_keys=sort_keys, default=str))

    def texts(self, texts: Iterable[str]) -> "Hasher":
        """Each text's UTF-8 bytes, prefixed by their length (8 bytes, little-endian), so
        ["ab", "c"] and ["a", "bc"] differ."""
        for t in texts:
            b = t.encode()
            self.update(len(b).to_bytes(8, "little") + b)
        return self

    def pairs(self, texts) -> "Hasher":
        """(label, text) pairs of a Series, in order: ``\\0 label \\1 text`` each."""
        for t, x in texts.items():
            self.update(b"\0" + str(t).encode() + b"\1" + str(x).encode())
        return self

    def tensor(self, t) -> "Hasher":
        """A torch tensor's raw bytes (moved to the CPU and made contiguous; no dtype or
        shape: hash those yourself where they matter)."""
        import torch  # only here: the rest of this module needs no torch
        flat = t.to("cpu").contiguous().reshape(-1)
        return self.update(flat.view(torch.uint8).numpy())  # buffer protocol: no copy on CPU

    def hex(self, length: int | None = None) -> str:
        """The hex digest, cut to its first `length` characters."""
        return self._h.hexdigest()[:length]


def json_key(obj, length: int = 16) -> str:
    """Key of a JSON-able object such as a settings dict (keys sorted, other values as str):
    SHA-256, 16 hex digits. Stage keys (`finsae.pipeline.stages`), feature caches, run inputs."""
    return Hasher().json(obj).hex(length)


def texts_key(texts, *, salt: str = "", length: int = 16) -> str:
    """Key of a Series of texts by ticker, in order (SHA-256 of `salt`, then the pairs).
    Feature caches (16 hex digits, no salt); MiniLM embeddings (24, salted with the model)."""
    return Hasher().text(salt).pairs(texts).hex(length)


def texts_digest(texts: Iterable[str]) -> str:
    """SHA-256 of a list of texts (length-prefixed UTF-8), full length: the ``texts_sha256``
    of an activation manifest."""
    return Hasher().texts(texts).hex()


def bytes_digest(data: bytes, *, algo: str = "sha256", digest_size: int | None = None,
                 length: int | None = None) -> str:
    """Digest of a bytes string (see `Hasher` for algo and digest_size)."""
    return Hasher(algo, digest_size).update(data).hex(length)


def file_digest(path: str | Path, length: int | None = None) -> str:
    """SHA-256 of a file's bytes, read in chunks: in full (64 hex digits) for checksums, cut to
    `length` as a content key (16: run inputs; 20: the price-file cache)."""
    h = Hasher()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hex(length)


def file_stat_key(path: str | Path) -> str:
    """A cheap key of a file by its resolved path, size and modification time (not its
    content): BLAKE2b, 16 hex digits. Changes whenever the file is rewritten."""
    path = Path(path)
    st = os.stat(path)
    return bytes_digest(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(),
                        algo="blake2b", digest_size=8)
