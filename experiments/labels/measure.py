"""Labels from contexts on the chosen representation (issue 14): the median detection score
over all latents and over the latents `finsae similar --explain` shows for ten well-known
companies, and the share of the similarity those features carry.

Reads, without writing to them, an activation cache of the bundled descriptions at block 5 and
a saved SAE (e.g. the search's chosen one), builds the company vectors exactly as
`build_feature_set` does, labels every latent with `context_labels`, and writes the labels and
a summary to --out.

    python experiments/labels/measure.py --store ~/.cache/finsae/activations/<key> \
        --sae ~/.cache/finsae/search/sae/L5-both864833-d16384-k32-t1000000-s0 --out /tmp/labels

With --bundled it reads instead the bundled vectors and labels (data/features, unchanged) and
measures the explanation lines: for the ten showcase companies and a seeded random sample of
--sample companies, each with its --peers nearest, the median detection score over all latents
(and those firing in >= 5 companies), of the features in the shown checked lines, the median
share of the cosine the checked lines carry and the generic line's share, by number of lines
(3, 5, 8, 10) and way of grouping (concept, head phrase, none):

    python experiments/labels/measure.py --bundled --out /tmp/lines
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from finsae.data import load_companies
from finsae.features.build import sae_company_vectors, token_latents, token_strings
from finsae.features.company import content_token_mask
from finsae.features.labels import context_labels, median_score, to_json
from finsae.lm.store import ActivationStore
from finsae.sae import load_sae
from finsae.similarity import GENERIC, MIN_SCORE, contributions, explain_match, neighbours

SHOWCASE = ["AAPL", "NVDA", "JPM", "XOM", "PFE", "WMT", "BA", "KO", "NEE", "AMT"]


LINES = (3, 5, 8, 10)


def line_figures(vec, lab, tickers, peers=5, group=True, lines=LINES):
    """Per number of lines n: the median score of the latents in the n largest checked lines,
    the median of those lines' scores, the median share of the cosine they carry, and the
    median share of the generic line (one `explain_match` per pair: greedy lines come largest
    first, so the first n of max(lines) are the n lines)."""
    per = {n: {"scores": [], "line_scores": [], "share": []} for n in lines}
    gen, coh, ceiling = [], [], []
    rec = [lab.get(int(j)) or {} for j in vec.columns]
    checked = np.array([(r.get("score") or 0) >= MIN_SCORE and r.get("doc_freq", 1) <= GENERIC
                        for r in rec])
    for t in tickers:
        for p in neighbours(vec, t, peers)["ticker"]:
            ex = explain_match(vec, t, p, top=max(lines), labels=lab, group=group)
            f = ex["features"][ex["features"]["checked"].astype(bool)]
            gen.append(ex["generic"] / ex["cosine"])
            c = contributions(vec.loc[t], vec.loc[p]).to_numpy()
            ceiling.append((float(c[checked & (c > 0)].sum()) / ex["cosine"],
                            int((checked & (c > 0)).sum())))
            coh += [ids for ids in f["ids"].head(min(lines)) if len(ids) > 1]
            for n in lines:
                g = f.head(n)
                per[n]["scores"] += [lab[int(j)]["score"] for ids in g["ids"] for j in ids]
                per[n]["line_scores"] += [x for x in g["score"] if x is not None]
                per[n]["share"].append(float(g["contribution"].sum()) / ex["cosine"])
    out = {n: {"median_score_shown": float(np.median(v["scores"])),
               "median_line_score": float(np.median(v["line_scores"])),
               "median_checked_share": float(np.median(v["share"])),
               "n_pairs": len(v["share"])} for n, v in per.items()}
    out["all checked"] = {"median_checked_share": float(np.median([x for x, _ in ceiling])),
                          "median_n_features": float(np.median([n for _, n in ceiling]))}
    return out, float(np.median(gen)), coherence(vec, lab, coh)


def coherence(vec, lab, groups, n_pairs=2000, seed=0):
    """Do a line's latents fire in the same companies? The median Jaccard overlap of the
    company sets of two latents in one shown line, against two random checked latents."""
    B = vec.to_numpy() > 0
    col = {c: i for i, c in enumerate(vec.columns)}
    rng = np.random.default_rng(seed)

    def jac(i, j):
        u = (B[:, i] | B[:, j]).sum()
        return (B[:, i] & B[:, j]).sum() / u if u else 0.0
    within = []
    for ids in groups:
        for _ in range(3):
            a, b = rng.choice(len(ids), 2, replace=False)
            within.append(jac(col[ids[a]], col[ids[b]]))
    pool = [col[j] for j in vec.columns if (lab.get(int(j)) or {}).get("score") is not None
            and lab[int(j)]["score"] >= 0.7 and lab[int(j)].get("doc_freq", 1) <= 0.5]
    rand = [jac(*rng.choice(pool, 2, replace=False)) for _ in range(n_pairs)]
    return {"within_line": float(np.median(within)) if within else None,
            "random_checked": float(np.median(rand))}


def bundled(a):
    """The line figures on the bundled vectors and labels."""
    from finsae.features.bundled import bundled_feature_set
    fs = bundled_feature_set()
    vec, lab = fs.vectors["sae"], fs.labels
    rng = np.random.default_rng(a.seed)
    sample = sorted(rng.choice(list(vec.index), a.sample, replace=False).tolist())
    res = {"median_score_all": median_score(lab, min_companies=1),
           "median_score_min5": median_score(lab, min_companies=5),
           "n_scored": sum(v.get("score") is not None for v in lab.values()),
           "peers": a.peers, "sample": a.sample, "seed": a.seed}
    for name, ts in (("showcase", [t for t in SHOWCASE if t in vec.index]), ("random", sample)):
        for group in ("concept", "phrase", False):
            t0 = time.perf_counter()
            by_n, gen, coh = line_figures(vec, lab, ts, a.peers, group)
            res[f"{name}/{group or 'none'}"] = {
                "lines": by_n, "median_generic_share": gen, "coherence": coh,
                "seconds": round(time.perf_counter() - t0, 1)}
            print(name, group, json.dumps(res[f"{name}/{group or 'none'}"]), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "lines.json").write_text(json.dumps(res, indent=1))
    print(f"median detection score: all {res['median_score_all']:.2f} "
          f"({res['n_scored']} scored), firing in >= 5 companies {res['median_score_min5']:.2f}")
    print("| companies | grouping | lines | median score, shown features | median line score "
          "| median checked share | generic share | Jaccard within line / random |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in res.items():
        if not isinstance(v, dict) or "lines" not in v:
            continue
        c = v["coherence"]
        cj = "n/a" if c["within_line"] is None else f"{c['within_line']:.2f}"
        for n, f in v["lines"].items():
            if n == "all checked":
                print(f"| {k.split('/')[0]} | {k.split('/')[1]} | all checked features "
                      f"(median {f['median_n_features']:.0f}) | | | "
                      f"{f['median_checked_share']:.1%} | | |")
                continue
            print(f"| {k.split('/')[0]} ({f['n_pairs']} pairs) | {k.split('/')[1]} | {n} | "
                  f"{f['median_score_shown']:.2f} | {f['median_line_score']:.2f} | "
                  f"{f['median_checked_share']:.1%} | {v['median_generic_share']:.1%} | "
                  f"{cj} / {c['random_checked']:.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundled", action="store_true",
                    help="measure the explanation lines on the bundled vectors and labels")
    ap.add_argument("--sample", type=int, default=100, help="with --bundled: random companies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store")
    ap.add_argument("--sae")
    ap.add_argument("--layer", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--peers", type=int, default=5)
    ap.add_argument("--n-features", type=int, default=5)
    ap.add_argument("--tokens", default=None,
                    help="an .npz of the token latents (written here on the first run as "
                         "OUT/token_latents.npz) to skip the SAE encoding")
    a = ap.parse_args(argv)
    if a.bundled:
        return bundled(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    c = load_companies()
    c = c.loc[c["description"].fillna("").str.strip() != ""]
    tickers = list(c.index)
    names = c["name"].fillna("").astype(str).to_list()
    name_map = dict(zip(tickers, names))
    if a.tokens:
        from finsae.features.company import TokenLatents
        z = np.load(a.tokens, allow_pickle=False)
        tl = TokenLatents(tickers, z["offsets"], z["indices"], z["values"], int(z["d_sae"]))
        ok, strings = z["ok"], z["strings"].tolist()
    else:
        store = ActivationStore.open(a.store)
        assert store.n_texts == len(c), (store.n_texts, len(c))
        strings = token_strings(store)
        sae = load_sae(a.sae)
        tl, ok = token_latents(sae, store, a.layer, tickers)
        np.savez(out / "token_latents.npz", offsets=tl.offsets, indices=tl.indices,
                 values=tl.values, d_sae=tl.d_sae, ok=ok, strings=np.array(strings))
    t1 = time.perf_counter()
    vec, pooled, _ = sae_company_vectors(tl, strings, names, token_mask=ok)
    lmask = ok & content_token_mask(strings, tl.offsets, names)
    lab = context_labels(tl, strings, pooled=pooled, names=name_map,
                         latents=[int(j) for j in vec.columns], mask=lmask)
    t2 = time.perf_counter()
    to_json(lab, out / "labels.json")
    vec.astype("float32").to_parquet(out / "sae_vectors.parquet")
    summary = {"n_latents": len(lab), "seconds_encode": round(t1 - t0, 1),
               "seconds_labels": round(t2 - t1, 1),
               "median_score_all": median_score(lab, min_companies=1),
               "median_score_min5": median_score(lab, min_companies=5),
               "share_phrase_labels": float(np.mean([v["label_kind"] == "phrase"
                                                     for v in lab.values()])),
               "nonzero_per_company": float((vec.to_numpy() != 0).sum(axis=1).mean())}
    shown_ids, shares, rows = [], [], []
    for t in SHOWCASE:
        if t not in vec.index:
            continue
        for p in neighbours(vec, t, a.peers)["ticker"]:
            ex = explain_match(vec, t, p, top=a.n_features, labels=lab)
            shown_ids += list(ex["features"]["id"])
            shares.append(ex["shown_share"])
            rows.append({"ticker": t, "peer": str(p), "cosine": round(ex["cosine"], 4),
                         "shown_share": round(ex["shown_share"], 4),
                         "generic": round(ex["generic"], 4),
                         "features": [f"{r.label} ({r.score}, {r.contribution:+.3f})"
                                      for r in ex["features"].itertuples()]})
    sc = [lab[i]["score"] for i in shown_ids if lab[i].get("score") is not None]
    summary.update({"median_score_shown": float(np.median(sc)) if sc else None,
                    "n_shown": len(shown_ids), "n_shown_scored": len(sc),
                    "median_shown_share": float(np.median(shares)),
                    "mean_shown_share": float(np.mean(shares))})
    # the same detection score for the older bag-of-top-tokens labels, made from the same
    # label-making half of the companies (the held-out texts stay unseen)
    from finsae.features.company import token_words
    from finsae.features.labels import latent_labels, split_companies
    make = split_companies(tickers, 0)[tl.doc_of_token()]
    old = latent_labels(tl, strings, pooled=pooled, names=name_map,
                        latents=[int(j) for j in vec.columns], mask=lmask & make,
                        words=token_words(strings, tl.offsets))
    old_scored = context_labels(tl, strings, pooled=pooled, names=name_map,
                                latents=[int(j) for j in vec.columns], mask=lmask,
                                given={j: v["label"] for j, v in old.items()})
    to_json(old_scored, out / "labels_bag_of_tokens.json")
    summary["median_score_all_bag_of_tokens"] = median_score(old_scored, min_companies=1)
    summary["median_score_shown_bag_of_tokens"] = float(np.median(
        [old_scored[i]["score"] for i in shown_ids if old_scored[i].get("score") is not None]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "showcase.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(summary, indent=1))
    for r in rows[:: a.peers]:
        print(r)


if __name__ == "__main__":
    main()
