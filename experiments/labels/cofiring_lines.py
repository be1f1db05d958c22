"""Lines by co-firing instead of by label phrase (issue 14, a negative result): the checked
latents (score >= 0.7, firing in 2+ and at most half the companies) clustered by their company
profiles (average-linkage, cosine distance, cut at several heights); a line = one cluster.
Prints the median share of the cosine the 3/5/8 largest lines carry, showcase and 100 random
companies, 5 peers each.

    python experiments/labels/cofiring_lines.py
"""
import time

import numpy as np
import pandas as pd

from measure import SHOWCASE  # this folder
from scipy.cluster.hierarchy import fcluster, linkage

from finsae.features.bundled import bundled_feature_set
from finsae.similarity import GENERIC, MIN_SCORE, contributions, neighbours

fs = bundled_feature_set()
vec, lab = fs.vectors["sae"], fs.labels
X = vec.to_numpy()
df = (X > 0).mean(0)
score = np.array([(lab.get(int(c)) or {}).get("score") or 0 for c in vec.columns])
checked = (score >= MIN_SCORE) & (df <= GENERIC) & ((X > 0).sum(0) >= 2)
idx = np.where(checked)[0]
P = X[:, idx].T.astype(np.float64)
P = P / np.linalg.norm(P, axis=1, keepdims=True)
print('checked feats', len(idx)); t = time.time()
Z = linkage(P, method='average', metric='cosine')
print('linkage s', time.time() - t)
rng = np.random.default_rng(0)
sample = sorted(rng.choice(list(vec.index), 100, replace=False).tolist())
for thr in (0.3, 0.4, 0.5, 0.6, 0.7):
    cl = fcluster(Z, t=thr, criterion='distance')
    topic = np.full(X.shape[1], -1); topic[idx] = cl
    sizes = np.bincount(cl)
    for name, ts in (("show", SHOWCASE), ("rand", sample)):
        shares = {3: [], 5: [], 8: []}
        for a in ts:
            for b in neighbours(vec, a, 5)["ticker"]:
                c = contributions(vec.loc[a], vec.loc[b]).to_numpy(); cos = c.sum()
                m = checked & (c > 0)
                s = pd.Series(c[m]).groupby(topic[m]).sum().sort_values(ascending=False)
                for k in shares: shares[k].append(s.head(k).sum() / cos)
        print(thr, name, 'nclusters', len(sizes) - 1, 'median size', np.median(sizes[1:]), 'max', sizes.max(),
              {k: round(float(np.median(v)) * 100, 1) for k, v in shares.items()}, flush=True)
