"""Labels from contexts on the chosen representation (issue 14): the median detection score
over all latents and over the latents `finsae similar --explain` shows for ten well-known
companies, and the share of the similarity those features carry.

Reads, without writing to them, an activation cache of the bundled descriptions at block 5 and
a saved SAE (e.g. the search's chosen one), builds the company vectors exactly as
`build_feature_set` does, labels every latent with `context_labels`, and writes the labels and
a summary to --out.

    python experiments/labels/measure.py --store ~/.cache/finsae/activations/<key> \
        --sae ~/.cache/finsae/search/sae/L5-both864833-d16384-k32-t1000000-s0 --out /tmp/labels
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
from finsae.similarity import explain_match, neighbours

SHOWCASE = ["AAPL", "NVDA", "JPM", "XOM", "PFE", "WMT", "BA", "KO", "NEE", "AMT"]


def main(argv=None):
    ap = argparse.ArgumentParser()
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
