"""On-disk activation cache: a folder of safetensors shards plus a manifest.

Layout of ``cache_dir("activations", "<model>-<key>")``::

    manifest.json            what was encoded (model fingerprint, layers, truncation, BOS,
                             shard plan); written before the first shard
    texts.json               the input texts, so every token row can be traced to its text
                             (their SHA-256 is in the manifest; a damaged copy is rewritten)
    shard-00000.safetensors  one per contiguous range of texts (input order), holding
        doc_index [n]  token_ids [n]  offsets [n, 2]  layer.<i> [n, d]   (token level)
        n_tokens [m]   mean.<i> [m, d]                                  (per text)
      with a blake2b checksum of those tensors in the file's metadata.

A shard is written to a temporary name and renamed, so a shard file is either complete or
absent; the checksum catches a file damaged afterwards, which is then reported and
recomputed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..data.errors import DataError
from ..hashing import Hasher, texts_digest

FORMAT = 1


class EncodeStats(NamedTuple):
    """What one `encode_texts` call did (``computed_*`` excludes shards found in the cache)."""

    n_texts: int
    n_tokens: int
    computed_tokens: int
    computed_shards: int
    cached_shards: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.computed_tokens / self.seconds if self.seconds > 0 else float("nan")


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """A shard's checksum (name, dtype, shape and bytes of each tensor). BLAKE2b-128, as every
    shard already written carries it (the model fingerprint hashes tensors with SHA-256)."""
    h = Hasher("blake2b", 16)
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode()).tensor(t)
    return h.hex()


def write_shard(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write atomically: a crash leaves either the old file or none, never half a shard."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={**meta, "checksum": checksum(tensors), "format": str(FORMAT)})
    os.replace(tmp, path)


def read_shard(path: Path, expect_tokens: int | None = None) -> dict[str, torch.Tensor] | None:
    """The shard's tensors if the file is intact (parses, checksum and size match), else None."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception:  # missing, truncated or garbled: all mean "recompute"
        return None
    if meta.get("checksum") != checksum(tensors):
        return None
    if expect_tokens is not None and int(tensors["n_tokens"].sum()) != expect_tokens:
        return None
    return tensors


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class ActivationStore:
    """Residual-stream activations of a list of texts at some blocks.

    Token rows are every non-padding, non-BOS token of every text, texts in input order.
    ``layer`` arguments are block indices: block i's output is ``hidden_states[i + 1]`` of a
    full forward (for the last block, transformers' hidden_states[-1] has the final norm
    applied; the store keeps the raw block output).
    """

    def __init__(self, manifest: dict, shards: list[Path | dict[str, torch.Tensor]],
                 path: Path | None = None, texts: list[str] | None = None,
                 stats: EncodeStats | None = None):
        self.manifest = manifest
        self.path = path
        self.stats = stats
        self._shards = shards
        self._texts = texts
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def open(cls, path: str | Path) -> "ActivationStore":
        """Reopen a complete cache folder without the model."""
        path = Path(path)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise DataError("not an activation cache (no readable manifest.json)",
                            path=path) from e
        shards = [path / s["file"] for s in manifest["shards"]]
        missing = [p.name for p in shards if not p.exists()]
        if missing:
            raise DataError(f"incomplete activation cache: {len(missing)} of {len(shards)} "
                            f"shards missing (rerun the encode to finish it)", path=path)
        return cls(manifest, shards, path)

    # ---- what is stored -------------------------------------------------------------------
    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def n_texts(self) -> int:
        return int(self.manifest["n_texts"])

    @property
    def n_tokens(self) -> int:
        return sum(int(s["n_tokens"]) for s in self.manifest["shards"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            if self.path is None or not (self.path / "texts.json").exists():
                raise DataError("this store does not keep its texts", path=self.path)
            try:
                texts = json.loads((self.path / "texts.json").read_text())
                if not (isinstance(texts, list) and len(texts) == self.n_texts
                        and all(isinstance(t, str) for t in texts)):
                    raise ValueError("not the encoded texts")
                want = self.manifest.get("texts_sha256")
                if want is not None and texts_digest(texts) != want:
                    raise ValueError("checksum mismatch")
            except (OSError, ValueError, UnicodeDecodeError) as e:
                raise DataError(f"damaged texts.json ({type(e).__name__}): rerun the encode to "
                                "repair it", path=self.path) from e
            self._texts = texts
        return self._texts

    @property
    def lengths(self) -> torch.Tensor:
        """Token rows per text [n_texts]."""
        return self._cat("n_tokens")

    @property
    def doc_index(self) -> torch.Tensor:
        """Which text each token row came from [n_tokens]."""
        return self._cat("doc_index")

    @property
    def token_ids(self) -> torch.Tensor:
        return self._cat("token_ids")

    @property
    def offsets(self) -> torch.Tensor:
        """Character span (start, end) of each token row in its text [n_tokens, 2]."""
        return self._cat("offsets")

    def token_text(self, row: int) -> str:
        """The piece of text that token row `row` covers."""
        doc = int(self.doc_index[row])
        start, end = (int(x) for x in self.offsets[row])
        return self.texts[doc][start:end]

    def tokens(self, layer: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All token activations at `layer` [n_tokens, d_model], filled shard by shard into
        one preallocated tensor (no second copy of the whole set)."""
        key = self._layer_key("layer", layer)
        out = torch.empty(self.n_tokens, self.d_model, dtype=dtype)
        i = 0
        for t in self._iter(key):
            out[i:i + len(t)] = t
            i += len(t)
        return out

    def iter_tokens(self, layer: int) -> Iterator[torch.Tensor]:
        """Token activations at `layer`, one shard at a time (to stream more than fits RAM)."""
        yield from self._iter(self._layer_key("layer", layer))

    def text_means(self, layer: int) -> torch.Tensor:
        """Mean activation over each text's tokens at `layer` [n_texts, d_model]."""
        return torch.cat(list(self._iter(self._layer_key("mean", layer))))

    # ---- internals ------------------------------------------------------------------------
    def _layer_key(self, kind: str, layer: int) -> str:
        if layer not in self.layers:
            raise KeyError(f"layer {layer} not in this store (layers {self.layers})")
        if kind == "layer" and not self.manifest.get("keep_tokens", True):
            raise DataError("this store keeps only per-text means (encoded with "
                            "keep_tokens=False)", path=self.path)
        return f"{kind}.{layer}"

    def _iter(self, key: str) -> Iterator[torch.Tensor]:
        for s in self._shards:
            if isinstance(s, dict):
                yield s[key]
            else:
                # safe_open memory-maps the file and reads only the requested tensor.
                with safe_open(str(s), framework="pt") as f:
                    yield f.get_tensor(key)

    def _cat(self, key: str) -> torch.Tensor:
        if key not in self._cache:
            if key != "n_tokens" and not self.manifest.get("keep_tokens", True):
                raise DataError("this store keeps only per-text means (encoded with "
                                "keep_tokens=False)", path=self.path)
            self._cache[key] = torch.cat(list(self._iter(key)))
        return self._cache[key]

    def __repr__(self) -> str:
        return (f"ActivationStore(model={self.manifest.get('model')!r}, layers={self.layers}, "
                f"n_texts={self.n_texts}, n_tokens={self.n_tokens}, path={self.path})")
