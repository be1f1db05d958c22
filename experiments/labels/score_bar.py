"""The checked bar of `similar --explain` (MIN_SCORE 0.7) lowered to 0.6 and 0.5 (issue 14, a
negative result): the median share of the cosine 8 concept lines carry and the median detection
score of their latents, showcase (50 pairs) and 40 random companies (200 pairs).

    python experiments/labels/score_bar.py
"""
import numpy as np
from measure import SHOWCASE  # this folder

from finsae.features.bundled import bundled_feature_set
from finsae.similarity import explain_match, neighbours

fs = bundled_feature_set()
vec, lab = fs.vectors["sae"], fs.labels
rng = np.random.default_rng(0)
sample = sorted(rng.choice(list(vec.index), 100, replace=False).tolist())
for ms in (0.7, 0.6, 0.5):
    for name, ts in (("show", SHOWCASE), ("rand", sample[:40])):
        sh, sc = [], []
        for a in ts:
            for b in neighbours(vec, a, 5)["ticker"]:
                ex = explain_match(vec, a, b, top=8, labels=lab, min_score=ms)
                f = ex["features"][ex["features"]["checked"].astype(bool)]
                sh.append(f["contribution"].sum() / ex["cosine"])
                sc += [lab[int(j)]["score"] for ids in f["ids"] for j in ids]
        print(ms, name, round(100*np.median(sh),1), round(float(np.median(sc)),3), flush=True)
