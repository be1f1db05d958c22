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

from measure import SHOWCASE, line_figures  # noqa: E402  (this folder)
from search import Context  # noqa: E402

from finsae.features.bundled import bundled_feature_set  # noqa: E402
from finsae.features.company import keep_top_n  # noqa: E402


def top_n(vec: pd.DataFrame, n: int) -> pd.DataFrame:
    """`CompanyFeatures(top_n=n)` on vectors it already made: the row's top n, renormalised."""
    if not n:
        return vec
    X = keep_top_n(vec.to_numpy(dtype=float), n)
    X /= np.where((nrm := np.linalg.norm(X, axis=1, keepdims=True)) == 0, 1.0, nrm)
    return pd.DataFrame(X, index=vec.index, columns=vec.columns)


def shown_share(vec, lab, lines=8):
    """The median share of the cosine the `lines` checked concept lines carry over the
    showcase pairs, and the median detection score of their latents (`measure.line_figures`)."""
    f = line_figures(vec, lab, [t for t in SHOWCASE if t in vec.index], lines=(lines,))[0][lines]
    return f["median_checked_share"], f["median_score_shown"]


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
