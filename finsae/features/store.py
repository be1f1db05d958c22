"""On-disk feature cache: company vectors for every method, names, feature labels, metadata.

A folder ``cache_dir("features", key)`` where key hashes what computed the vectors (model,
layer, SAE, pooling and weighting, the texts: `finsae.hashing.json_key` of the settings).
`finsae features build` prints the folder; the commands reading features take it as
``--features DIR``. Reading it needs numpy and json only, so a lookup (`finsae similar`)
answers in well under a second and never loads the LM.

Layout: ``meta.json`` (settings, tickers, names, per-method column ids), ``<method>.npy``
(float32 ticker x dim, rows in ``meta["tickers"]`` order), ``labels.json`` (latent id -> label
record, see `finsae.features.labels`), ``checksums.json`` (SHA-256 of each file, verified on
every read: a damaged cache raises one DataError, and `build_feature_set` rebuilds it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..data.paths import cache_dir
from ..integrity import check_folder, write_folder_checksums
from ..jsonable import dumps

METHODS = ("sae", "embedding", "hidden", "tfidf")
FORMAT = 1


@dataclass
class FeatureSet:
    """Company vectors per method (DataFrames sharing one ticker index), names and labels."""

    vectors: dict[str, pd.DataFrame]
    names: pd.Series
    labels: dict[int, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.vectors:
            raise DataError("a feature set needs at least one method's vectors")
        for m, V in self.vectors.items():
            if m not in METHODS:
                raise DataError(f"unknown method {m!r}; known: {', '.join(METHODS)}")
            if V.index.has_duplicates:
                raise DataError(f"duplicate ticker in the {m} vectors")

    @property
    def tickers(self) -> pd.Index:
        return next(iter(self.vectors.values())).index

    def method(self, name: str) -> pd.DataFrame:
        if name not in self.vectors:
            have = ", ".join(self.vectors)
            raise DataError(f"no {name!r} vectors in this feature cache (it has: {have}); "
                            "rebuild with `finsae features build`")
        return self.vectors[name]

    def label_map(self) -> dict[int, str]:
        return {int(k): v.get("label", "") for k, v in self.labels.items()}

    def save(self, folder: str | Path) -> Path:
        """Write atomically: a folder with meta.json is always complete."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            cols = {}
            for m, V in self.vectors.items():
                np.save(tmp / f"{m}.npy", V.to_numpy(dtype=np.float32))
                cols[m] = [c if isinstance(c, str) else int(c) for c in V.columns]
                tickers = [str(t) for t in V.index]
            (tmp / "labels.json").write_text(json.dumps({str(k): v for k, v in self.labels.items()}))
            meta = {**self.meta, "format": FORMAT, "tickers": tickers,
                    "names": [str(self.names.get(t, "")) for t in tickers],
                    "columns": cols, "methods": list(self.vectors)}
            (tmp / "meta.json").write_text(dumps(meta, indent=None))
            write_folder_checksums(tmp)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | Path, methods=None, labels: bool = True) -> "FeatureSet":
        """Read a saved feature set (only `methods`, default all; labels optional)."""
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise DataError("no feature cache here (meta.json missing); build it with "
                            "`finsae features build`", path=folder)
        problem = check_folder(folder, only=["meta.json"])
        try:
            meta = json.loads((folder / "meta.json").read_text()) if problem is None else None
        except ValueError:
            problem = "meta.json: unreadable"
        if problem is not None:
            raise DataError(f"damaged feature cache ({problem}); rebuild it with "
                            "`finsae features build`", path=folder)
        if meta.get("format") != FORMAT:
            raise DataError(f"feature cache format {meta.get('format')} is not {FORMAT}; rebuild",
                            path=folder)
        index = pd.Index(meta["tickers"], name="ticker")
        vectors = {}
        methods = list(methods or meta["methods"])
        for m in methods:
            if m not in meta["methods"]:
                raise DataError(f"no {m!r} vectors in this feature cache (it has: "
                                f"{', '.join(meta['methods'])}); rebuild with "
                                "`finsae features build`", path=folder)
        files = [f"{m}.npy" for m in methods] + (["labels.json"] if labels else [])
        problem = check_folder(folder, only=files)
        if problem is not None:
            raise DataError(f"damaged feature cache ({problem}); rebuild it with "
                            "`finsae features build`", path=folder)
        for m in methods:
            V = np.load(folder / f"{m}.npy")
            vectors[m] = pd.DataFrame(V, index=index, columns=meta["columns"][m])
        lab = {}
        if labels and (folder / "labels.json").exists():
            lab = {int(k): v for k, v in json.loads((folder / "labels.json").read_text()).items()}
        names = pd.Series(meta["names"], index=index, name="name")
        return cls(vectors, names, lab, meta)


def features_root() -> Path:
    return cache_dir("features")
