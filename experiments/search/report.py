"""Write experiments/results/search.md from search.csv: the whole grid with both periods'
scores, the choice made on 2001-2010 only, and the final comparison with years won.

    python experiments/search/report.py

Selection rule: the SAE representation (any row of kind sae or sae_concat, any linkage) with
the highest in-sample score (peer_r2_in + knn_r2_in) / 2. Linkage is chosen the same way for
every vector method. Supervised rows (kind sae_supervised) are fitted on 2001-2010 returns, so
their in-sample score is a training score: they compete on the held-out half of the fitting
years instead (weights fitted on 2001-2005, kNN-10 R² on 2006-2010, against the same vectors
without weights) and are chosen only if they gain more than 0.005 there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parents[1] / "results"
SAE_KINDS = ("sae", "sae_concat")
NOTES = """What was tried (all through finsae.lm, finsae.sae, finsae.features, finsae.evaluate):
- layers: TopK SAEs (4608 latents, k 32, 400k tokens of description activations) at blocks
  5, 10, 15, 20, 25; block 5 is best in-sample (the dense hidden state is U-shaped: 5 and 25
  best, 15-20 worst; the first build used block 20);
- latents as a vocabulary: sublinear tf, BM25, binary tf, each with idf; max_df 0.5 / 0.2
  (dropping latents that fire in most descriptions); the top 64 / 256 latents per company; the
  raw sum. Dropping common latents and sparsifying hurt at every layer;
- more text and wider dictionaries at block 5: corpus + descriptions (the FinanceDatabase
  corpus's first ~3,900 summaries that were encoded when the search ran: 690,827 tokens, plus
  the 174,006 description tokens; 1M training tokens) with 4608 and 16384 latents, and 16384
  latents on descriptions only;
- several layers joined (each block's vectors L2-normalised, then concatenated): 5+25,
  5+10+15+20+25, the 16384-wide block 5 + block 25;
- clusterings: average and Ward linkage (Ward lowers peer R² for every vector method in-sample
  and was not chosen); spectral clustering on the kNN graph and complete linkage were probed on
  two representations and were worse (not in the grid);
- supervised non-negative latent weights (CoMovementWeights, fitted on 2001-2010 pair
  correlations; penalty chosen on fit 2001-2005 / score 2006-2010 from 0.1, 1, 10 in a first
  run (0.4546, 0.4564, 0.4578) and 10, 100, 1000 in a second): +0.002 kNN-10 R² on 2006-2010
  over the same vectors unweighted (0.4560), under the 0.005 bar, so not chosen; out of sample
  it is lower (0.457 vs 0.461).
The corpus-trained rows name the number of training activations (e.g. both864833). The
`finsae run` default uses the whole corpus (~800k tokens); its figures are in the README."""


def name(r) -> str:
    if r["kind"] == "classification":
        return r["variant"]
    if r["kind"] in ("text",):
        return r["variant"]
    if r["kind"] == "hidden":
        return f"hidden L{int(r['layer'])}"
    if r["kind"] == "sae":
        return (f"SAE L{int(r['layer'])} {r['text']} d{int(r['d_sae'])} k{int(r['k'])} "
                f"{r['variant']}")
    return f"{r['kind']} {r['variant']}"


def years_won(a: str, b: str, years) -> tuple[int, float]:
    da, db = json.loads(a), json.loads(b)
    d = np.array([da[str(y)] - db[str(y)] for y in years])
    return int((d > 0).sum()), float(d.mean())


def _markdown(t: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        return str(v)
    rows = ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    rows += ["| " + " | ".join(cell(v) for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join(rows)


def main(vintage: str = "latest", out_years=range(2011, 2021), path=None):
    df = pd.read_csv(path or RESULTS / "search.csv")
    df = df[df["vintage"] == vintage].copy()
    df["name"] = df.apply(name, axis=1)
    df["score_in"] = (df["peer_r2_in"] + df["knn_r2_in"]) / 2
    df["score_out"] = (df["peer_r2_out"] + df["knn_r2_out"]) / 2
    df = df.drop_duplicates(["name", "linkage"], keep="last")
    sae = df[df["kind"].isin(SAE_KINDS)].sort_values("score_in", ascending=False)
    best = sae.iloc[0]
    cols = ["name", "linkage", "peer_r2_in", "knn_r2_in", "score_in", "peer_r2_out",
            "knn_r2_out", "score_out", "delta_r2_out", "knn_corr_out", "mean_corr_out",
            "pair_weighted_out", "largest_cluster", "singletons"]
    lines = ["# Representation search (issue 19): every-firm peer metrics", "",
             "Every row scored on the 453-company universe: peer R² with K = 127 clusters "
             "(linkage as named), kNN-10 peer R², 2001-2010 (in-sample, `_in`) and 2011-2020 "
             "(out of sample, `_out`). The choice uses only `score_in` = (peer_r2_in + "
             "knn_r2_in) / 2. Commands: `experiments/search/{encode,search,report}.py`.", "",
             f"**Chosen on 2001-2010:** {best['name']} ({best['linkage']} linkage), score_in "
             f"{best['score_in']:.4f}.", "", NOTES, ""]
    ref = {r["name"]: r for _, r in df[df["kind"].isin(("classification", "text", "hidden"))]
           .sort_values("score_in", ascending=False).drop_duplicates("name").iterrows()}
    comp = [best] + [ref[n] for n in ("gics_sub_industry", "sic4", "tfidf", "minilm")
                     if n in ref]
    hid = [r for n, r in ref.items() if n.startswith("hidden")]
    if hid:
        comp.append(max(hid, key=lambda r: r["score_in"]))
    lines += [f"## The chosen SAE representation against the baselines "
              f"({min(out_years)}-{max(out_years)})", "",
              "| representation | peer R² | kNN-10 R² | ΔR² | kNN corr | peer R² years won vs "
              "GICS (mean diff) | kNN R² years won vs GICS | kNN R² years won vs TF-IDF |",
              "|---|---|---|---|---|---|---|---|"]
    g, t = ref.get("gics_sub_industry"), ref.get("tfidf")
    ny = len(list(out_years))
    for r in comp:
        w1 = years_won(r["peer_r2_by_year"], g["peer_r2_by_year"], out_years) if g is not None else None
        w2 = years_won(r["knn_r2_by_year"], g["knn_r2_by_year"], out_years) if g is not None else None
        w3 = years_won(r["knn_r2_by_year"], t["knn_r2_by_year"], out_years) if t is not None else None
        lines.append(f"| {r['name']} ({r.get('linkage') if isinstance(r.get('linkage'), str) else '-'}) "
                     f"| {r['peer_r2_out']:.3f} | {r['knn_r2_out']:.3f} | {r['delta_r2_out']:.3f} "
                     f"| {r['knn_corr_out']:.3f} "
                     f"| {w1[0]}/{ny} ({w1[1]:+.3f}) | {w2[0]}/{ny} ({w2[1]:+.3f}) "
                     f"| {w3[0]}/{ny} ({w3[1]:+.3f}) |")
    sup = df[df["kind"] == "sae_supervised"]
    if len(sup):
        lines += ["", "## Supervised latent weights (CoMovementWeights)", "",
                  "Penalty chosen on the fitting years' halves (fit 2001-2005, kNN-10 R² on "
                  "2006-2010); the unsupervised base on 2006-2010 for comparison.", "",
                  "| base vectors | linkage | penalty: 2006-10 kNN R² | base 2006-10 kNN R² | "
                  "peer R² in/out | kNN R² in/out |", "|---|---|---|---|---|---|"]
        for _, r in sup.iterrows():
            cand = df[df["kind"] == "sae"]
            base = cand[(cand.apply(
                lambda x: r["variant"].startswith(
                    f"L{int(x['layer'])}-{x['text']}-d{int(x['d_sae'])}") and
                r["variant"].endswith(x["variant"]), axis=1)) & (cand["linkage"] == r["linkage"])]
            b = (np.mean([json.loads(base.iloc[0]["knn_r2_by_year"])[str(y)]
                          for y in range(2006, 2011)]) if len(base) else float("nan"))
            lines.append(f"| {r['variant']} | {r['linkage']} | {r.get('penalty_scores')} | "
                         f"{b:.4f} | {r['peer_r2_in']:.3f}/{r['peer_r2_out']:.3f} | "
                         f"{r['knn_r2_in']:.3f}/{r['knn_r2_out']:.3f} |")
    lines += ["", "## The whole grid, best in-sample first", "",
              _markdown(df.sort_values("score_in", ascending=False)[cols]), ""]
    out = RESULTS / ("search.md" if vintage == "latest" else f"search_{vintage}.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    import sys
    v = sys.argv[1] if len(sys.argv) > 1 else "latest"
    # c2016 descriptions (written about 2013-2016): scored on 2017-2020 only
    main(v, range(2017, 2021) if v == "c2016" else range(2011, 2021))
