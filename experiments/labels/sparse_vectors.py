"""Sparser company vectors for explanations a person can read (issue 14): keep each company's
top-n latents of the bundled SAE vectors (sublinear tf x idf; the top n of a row are the same
before and after its L2 normalisation, so this equals `CompanyFeatures(top_n=n)`), renormalise,
and score every variant with the search's every-firm metrics (`experiments/search/search.py`
Context.score: peer R² with 127 clusters, kNN-10 peer R², 2001-2010 in-sample and 2011-2020
out of sample) beside the median share of the cosine that `similar --explain`'s 8 checked
concept lines carry for the ten showcase companies (5 peers each).

    python experiments/labels/sparse_vectors.py --top 0 1024 512 256 128

A choice uses the in-sample columns only; the out-of-sample ones are reported.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))

from search import Context  # noqa: E402

from finsae.features.bundled import bundled_feature_set  # noqa: E402
from finsae.similarity import explain_match, neighbours  # noqa: E402

SHOWCASE = ["AAPL", "NVDA", "JPM", "XOM", "PFE", "WMT", "BA", "KO", "NEE", "AMT"]


def top_n(vec: pd.DataFrame, n: int) -> pd.DataFrame:
    if not n:
        return vec
    X = vec.to_numpy(dtype=float)
    cut = -np.partition(-X, n - 1, axis=1)[:, n - 1:n]
    X = np.where(X >= cut, X, 0.0)
    X /= np.where((nrm := np.linalg.norm(X, axis=1, keepdims=True)) == 0, 1.0, nrm)
    return pd.DataFrame(X, index=vec.index, columns=vec.columns)


def shown_share(vec, lab, lines=8):
    sh, sc = [], []
    for a in SHOWCASE:
        for b in neighbours(vec, a, 5)["ticker"]:
            ex = explain_match(vec, a, b, top=lines, labels=lab)
            f = ex["features"][ex["features"]["checked"].astype(bool)]
            sh.append(float(f["contribution"].sum()) / ex["cosine"])
            sc += [lab[int(j)]["score"] for ids in f["ids"] for j in ids]
    return float(np.median(sh)), float(np.median(sc))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, nargs="+", default=[0, 1024, 512, 256, 128])
    ap.add_argument("--out", default=None, help="also write the rows here (JSON)")
    a = ap.parse_args(argv)
    fs = bundled_feature_set()
    vec, lab = fs.vectors["sae"], fs.labels
    ctx = Context()
    rows = []
    for n in a.top:
        V = top_n(vec, n)
        share, score = shown_share(V, lab)
        for r in ctx.score(V, top_n=n or None):
            if r["linkage"] != "average":
                continue
            r.update(shown_share=share, shown_median_score=score,
                     nonzero=float((V.to_numpy() > 0).sum(1).mean()))
            rows.append(r)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                              for k, v in r.items() if "by_year" not in k}), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
