"""The bundled SAE company features: a compact copy of the chosen configuration's vectors.

``data/features/sae_company_vectors.npz`` holds every bundled company's L2-normalised vector
(all its non-zero latents, float16, sparse) and ``labels.json`` the label of each latent used.
Written by ``experiments/search/export.py`` from the configuration chosen on 2001-2010 in
``experiments/results/search.md``; ``meta.json`` records it, and every vector loaded from here
carries ``attrs["source"]`` so outputs can name it. They let tests and a
fresh install look up real SAE neighbours without running the LM: they are what the commands
use for the bundled companies unless given a `finsae features build` folder (``--features``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..data.paths import data_dir
from ..jsonable import dumps

if TYPE_CHECKING:
    from .store import FeatureSet

#: None: every non-zero of each company vector is kept (the bundled vectors score as the run's)
TOP = None
FILE = "sae_company_vectors.npz"


def bundled_dir() -> Path:
    return data_dir() / "features"


def bundled_sae_vectors() -> pd.DataFrame:
    """DataFrame ticker x latent id: the bundled company vectors (sparse CSR on disk, float16
    values; rows L2-normalised). ``attrs["source"]`` names them."""
    f = bundled_dir() / FILE
    if not f.exists():
        raise DataError("bundled SAE features missing", path=f)
    try:
        z = np.load(f, allow_pickle=False)
        from scipy import sparse
        M = sparse.csr_matrix((z["data"].astype(np.float32), z["indices"], z["indptr"]),
                              shape=(len(z["tickers"]), len(z["columns"])))
        tickers, cols = z["tickers"], z["columns"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"damaged bundled SAE features ({e})", path=f) from e
    V = pd.DataFrame(M.toarray(), index=pd.Index([str(t) for t in tickers], name="ticker"),
                     columns=[int(c) for c in cols])
    V.attrs["source"] = f"bundled:data/features/{FILE} ({_describe(bundled_meta())})"
    return V


def bundled_meta() -> dict:
    return json.loads((bundled_dir() / "meta.json").read_text())


def _describe(meta: dict) -> str:
    return (f"{meta.get('model_name', meta.get('model'))} block {meta.get('layer')}, "
            f"{meta.get('variant', '')}").strip(", ")


def save_bundled(vectors: pd.DataFrame, labels: dict, meta: dict, folder: Path | None = None,
                 top: int | None = TOP) -> Path:
    """Write `vectors` (rows L2-normalised first; with `top`, only each company's top latents)
    as a sparse matrix, the labels of the latents used, and the metadata."""
    from scipy import sparse
    folder = Path(folder or bundled_dir())
    folder.mkdir(parents=True, exist_ok=True)
    V = vectors.to_numpy(dtype=np.float64)
    V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    if top is not None:
        cut = -np.partition(-V, top - 1, axis=1)[:, top - 1:top]
        V = np.where(V >= cut, V, 0.0)
    used_cols = np.flatnonzero((V != 0).any(axis=0))
    M = sparse.csr_matrix(V[:, used_cols].astype(np.float32))
    cols = np.asarray(vectors.columns, dtype=np.int64)[used_cols]
    np.savez_compressed(folder / FILE, data=M.data.astype(np.float16),
                        indices=M.indices.astype(np.int32),
                        indptr=M.indptr.astype(np.int64), columns=cols,
                        tickers=np.array([str(t) for t in vectors.index]))
    used = set(cols.tolist())
    (folder / "labels.json").write_text(json.dumps(
        {str(k): {"label": v["label"], "doc_freq": v.get("doc_freq"),
                  "companies": v.get("companies", [])[:3],
                  # labels from contexts (finsae.features.labels.context_labels), when present;
                  # one context each (16k latents x 3 contexts would add ~6 MB)
                  **{x: v[x] for x in ("score", "n_companies") if x in v},
                  **({"contexts": v["contexts"][:1]} if v.get("contexts") else {})}
         for k, v in sorted(labels.items()) if int(k) in used}))
    (folder / "meta.json").write_text(dumps({**meta, "top": top}))
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


def features_needed(what: str) -> DataError:
    """The error for a command or call that needs a feature build it was not given."""
    return DataError(f"{what}: pass the folder that `finsae features build` printed "
                     "(`features=` in Python, --features DIR on the command line)")


def company_sae_vectors(companies: pd.DataFrame | None = None,
                        features: str | Path | FeatureSet | None = None) -> pd.DataFrame:
    """SAE company vectors (ticker x latent id) for evaluation and backtests.

    features: the folder `finsae features build` wrote (and printed), or a loaded `FeatureSet`;
    None: the bundled vectors, which serve only the bundled companies (companies None or from
    `load_companies()` without a path): for a companies file of your own, None raises a
    DataError asking for the folder. ``attrs["source"]`` names where the vectors came from."""
    from .store import FeatureSet
    if isinstance(features, FeatureSet):
        V = features.method("sae").copy(deep=False)
        V.attrs["source"] = V.attrs.get("source") or "a feature set passed in"
        return V
    if features is not None:
        V = FeatureSet.load(features, methods=["sae"], labels=False).vectors["sae"]
        V.attrs["source"] = f"feature build {features}"
        return V
    if companies is not None and companies.attrs.get("vintage") == "user":
        raise features_needed("the bundled SAE features cover only the bundled companies, not "
                              f"{companies.attrs.get('source', 'a companies file')}")
    return bundled_sae_vectors()
