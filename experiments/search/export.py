"""Rebuild the bundled SAE company features (data/features/) from a `finsae run` folder, so the
bundled fallback is exactly the run's vectors (all non-zero latents, float16) with its labels.

    finsae run --out runs/main            # the default configuration (chosen by search.py)
    python experiments/search/export.py runs/main

Reads the run's features stage (its path is in runs/main/stages.json), writes
data/features/{sae_company_vectors.npz, labels.json, meta.json}, and checks that the bundled
vectors give the same kNN-10 neighbours as the run's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from finsae.features.bundled import bundled_sae_vectors, save_bundled
from finsae.features.store import FeatureSet


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a finsae run folder")
    a = ap.parse_args(argv)
    stages = json.loads((a.run / "stages.json").read_text())
    fs = FeatureSet.load(Path(stages["features"]["path"]) / "features")
    cfg = (a.run / "config.toml").read_text()
    metrics = json.loads((a.run / "metrics.json").read_text())
    meta = {k: fs.meta.get(k) for k in ("model_name", "layer", "pooling", "content_only",
                                         "weighting", "max_df", "sublinear", "tf", "top_n",
                                         "texts", "n_tokens", "massive_dropped")}
    meta["variant"] = ", ".join(f"{k} {v}" for k, v in meta.items()
                                if k in ("pooling", "weighting", "tf", "top_n", "max_df")
                                and v is not None)
    meta["sae"] = metrics["sae"]
    meta["config"] = cfg
    meta["written_by"] = "experiments/search/export.py from a `finsae run` folder"
    V = fs.vectors["sae"]
    save_bundled(V, fs.labels, meta)
    B = bundled_sae_vectors().loc[V.index]
    X = V.to_numpy() / np.linalg.norm(V.to_numpy(), axis=1, keepdims=True)
    Y = B.reindex(columns=V.columns, fill_value=0).to_numpy()
    same = _knn(X) == _knn(Y)
    print(f"bundled {V.shape}, nnz {(B.to_numpy() != 0).sum()}, kNN-10 sets identical for "
          f"{same.all(axis=1).mean():.3f} of companies, max |diff| {np.abs(X - Y).max():.2e}")


def _knn(X, k=10):
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    return np.sort(np.argsort(-S, axis=1)[:, :k], axis=1)


if __name__ == "__main__":
    sys.exit(main())
