"""Would concept lines carry more of the cosine if near-synonymous phrases were one concept?
(issue 14, an experiment: the library does not do this, since the lookup loads no model.)

Embeds every concept key of the checked labels (`finsae.features.label_groups.concept_keys`)
with the offline all-MiniLM-L6-v2 and gives each label, besides its own keys, every key whose
embedding is within cosine --thresholds of one of them: a line is then a phrase and every
checked feature with a phrase near it (a star around the line's phrase, no chaining). Prints
the same table as `measure.py --bundled` for the concept lines at each threshold.

    python experiments/labels/synonyms.py --out /tmp/synonyms
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from measure import SHOWCASE, line_figures

from finsae.features.baselines import _minilm_model
from finsae.features.bundled import bundled_feature_set
from finsae.features.label_groups import concept_keys


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.9, 0.8, 0.7])
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--peers", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    fs = bundled_feature_set()
    vec, lab = fs.vectors["sae"], fs.labels
    raw = {}
    for r in lab.values():
        if (r.get("score") or 0) >= 0.7 and r.get("doc_freq", 1) <= 0.5:
            raw.update(concept_keys(r["label"]))
    keys = sorted(raw)
    t0 = time.perf_counter()
    E = _minilm_model("cpu").encode(keys, batch_size=256, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
    sim, ix = E @ E.T, {k: i for i, k in enumerate(keys)}
    res = {"n_keys": len(keys), "seconds_embed": round(time.perf_counter() - t0, 1)}
    rng = np.random.default_rng(a.seed)
    sample = sorted(rng.choice(list(vec.index), a.sample, replace=False).tolist())
    for thr in a.thresholds:
        def near(label, thr=thr):
            out = {}
            for k, r in concept_keys(label).items():
                out.setdefault(k, r)
                if k in ix:
                    for n in np.flatnonzero(sim[ix[k]] >= thr):
                        out.setdefault(keys[n], raw[keys[n]])
            return out
        for name, ts in (("showcase", [t for t in SHOWCASE if t in vec.index]),
                         ("random", sample)):
            by_n, gen, coh = line_figures(vec, lab, ts, a.peers, near)
            res[f"{name}/{thr}"] = {"lines": by_n, "coherence": coh}
            for n, f in by_n.items():
                if n == "all checked":
                    continue
                print(f"| {name} ({f['n_pairs']} pairs) | MiniLM >= {thr} | {n} | "
                      f"{f['median_score_shown']:.2f} | {f['median_line_score']:.2f} | "
                      f"{f['median_checked_share']:.1%} | {coh['within_line']:.2f} / "
                      f"{coh['random_checked']:.2f} |", flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "synonyms.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
