"""The bundled SAE company features: a compact copy of the chosen configuration's vectors.

``data/features/sae_company_latents.npz`` holds, for each bundled company, its strongest
`TOP` latents (id and value of the L2-normalised company vector; the rest are zero) and
``labels.json`` the short label of each of those latents. Written by
``experiments/export_bundled_features.py`` from the configuration chosen in
``experiments/results/features_selection.md``; ``meta.json`` records it. They let tests and a
fresh install look up real SAE neighbours without running the LM (`finsae similar` falls back
to them when no `finsae features build` exists for the bundled companies).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..data.paths import data_dir

TOP = 128


def bundled_dir() -> Path:
    return data_dir() / "features"


def bundled_sae_vectors() -> pd.DataFrame:
    """DataFrame ticker x latent id (only latents that are some company's top-`TOP`)."""
    f = bundled_dir() / "sae_company_latents.npz"
    if not f.exists():
        raise DataError("bundled SAE features missing", path=f)
    z = np.load(f, allow_pickle=False)
    idx, val, tickers = z["indices"], z["values"].astype(np.float32), z["tickers"]
    cols = np.unique(idx[val > 0])
    pos = np.searchsorted(cols, idx)
    V = np.zeros((len(tickers), len(cols)), dtype=np.float32)
    rows = np.repeat(np.arange(len(tickers)), idx.shape[1])
    keep = val.ravel() > 0
    V[rows[keep], pos.ravel()[keep]] = val.ravel()[keep]
    return pd.DataFrame(V, index=pd.Index([str(t) for t in tickers], name="ticker"),
                        columns=[int(c) for c in cols])


def save_bundled(vectors: pd.DataFrame, labels: dict, meta: dict, folder: Path | None = None,
                 top: int = TOP) -> Path:
    """Write the compact copy of `vectors` (rows L2-normalised first) and the labels."""
    folder = Path(folder or bundled_dir())
    folder.mkdir(parents=True, exist_ok=True)
    V = vectors.to_numpy(dtype=np.float64)
    V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-V, axis=1)[:, :top]
    vals = np.take_along_axis(V, order, axis=1)
    ids = np.asarray(vectors.columns, dtype=np.int64)[order]
    np.savez_compressed(folder / "sae_company_latents.npz", indices=ids.astype(np.int32),
                        values=vals.astype(np.float16),
                        tickers=np.array([str(t) for t in vectors.index]))
    used = set(np.unique(ids).tolist())
    (folder / "labels.json").write_text(json.dumps(
        {str(k): {"label": v["label"], "doc_freq": v.get("doc_freq"),
                  "companies": v.get("companies", [])[:3]}
         for k, v in sorted(labels.items()) if int(k) in used}))
    (folder / "meta.json").write_text(json.dumps({**meta, "top": top}, indent=1, default=str))
    return folder


def bundled_feature_set():
    """The bundled features as a `FeatureSet` (method "sae" only), with names and labels."""
    from ..data import load_companies
    from .store import FeatureSet
    V = bundled_sae_vectors()
    folder = bundled_dir()
    labels = {int(k): {**v, "examples": []} for k, v in
              json.loads((folder / "labels.json").read_text()).items()}
    meta = json.loads((folder / "meta.json").read_text())
    names = load_companies()["name"].reindex(V.index).fillna("").astype(str)
    return FeatureSet({"sae": V}, names, labels, {**meta, "bundled": True})


def company_sae_vectors(companies: pd.DataFrame | None = None) -> pd.DataFrame:
    """SAE company vectors for evaluation and backtests: the latest `finsae features build` for
    these companies, else (for the bundled companies) the compact bundled copy."""
    from .store import FeatureSet, find_cache
    user = companies is not None and companies.attrs.get("vintage") == "user"
    source = companies.attrs.get("source") if user else None
    try:
        return FeatureSet.load(find_cache(None, source), methods=["sae"], labels=False).vectors["sae"]
    except DataError:
        if user:
            raise
        return bundled_sae_vectors()
