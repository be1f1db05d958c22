"""Write the bundled SAE company features (data/features/) from the selection experiment's
cached SAE for the chosen configuration, plus a full feature cache for `finsae similar`.

    python experiments/export_bundled_features.py --acts DIR [--layer 5] [--variant NAME]

Uses the same activations, SAE (cached by experiments/feature_selection.py) and variant as the
selection; the variant defaults to the choice recorded in
experiments/results/features_selection.json. Also writes a feature cache (SAE, hidden state,
MiniLM, TF-IDF, labels) under cache_dir("features", key) and marks it as the latest build, and
the browsable label export experiments/results/features.html.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import feature_selection as fsel  # noqa: E402
from finsae.data import load_companies  # noqa: E402
from finsae.data.paths import cache_dir  # noqa: E402
from finsae.features.build import (doc_offsets, encode_tokens, hidden_vectors,  # noqa: E402
                                   sae_company_vectors, token_strings)
from finsae.features.bundled import save_bundled  # noqa: E402
from finsae.features.company import (TokenLatents, content_token_mask, massive_token_mask,  # noqa: E402
                                     token_words)
from finsae.features.labels import latent_labels, to_html  # noqa: E402
from finsae.features.store import (FeatureSet, feature_key, features_root, mark_latest,  # noqa: E402
                                   texts_hash)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acts", type=Path, required=True)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--variant", default=None)
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--train-tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = json.loads((ROOT / "experiments/results/features_selection.json").read_text())
    sae_rows = [r for r in res["rows"] if r.get("family") == "sae"]
    best = max(sae_rows, key=lambda r: (r["in_mc"], r["top10_sub"]))
    layer = args.layer if args.layer is not None else best["layer"]
    variant = args.variant or best["variant"]
    if args.epochs is None:  # the chosen row's SAE
        args.epochs = best.get("epochs", 1)
        args.train_tokens = best.get("train_tokens", 90000)
    if args.train_tokens == 0:
        args.train_tokens = None
    pooling, content, params = fsel.VARIANTS[variant]
    fsel.log(f"exporting layer {layer}, variant {variant!r}")

    companies = load_companies()
    texts = companies["description"].fillna("").astype(str).str.strip()
    texts = texts[texts != ""]
    tickers = list(texts.index)
    from transformers import AutoTokenizer
    folder = next(Path(cache_dir("models")).glob("SmolLM2*"))
    store = fsel.ArrayStore(args.acts, list(texts), AutoTokenizer.from_pretrained(folder))
    args.acts_key = fsel.acts_key(store)
    X = store.tokens(layer)
    ok = massive_token_mask(X.norm(dim=1).numpy())
    sae, stats = fsel.train_or_load_sae(store, layer, args, ok)
    idx, val = encode_tokens(sae, X)
    tl = TokenLatents(tickers, doc_offsets(store.doc_index, len(tickers)), idx, val, args.d_sae)
    strings = token_strings(store)
    names = companies["name"].reindex(tickers).fillna("").astype(str).to_list()
    from finsae.data import evaluation_universe, load_prices
    universe = evaluation_universe(companies, load_prices())
    vec, pooled, cf = sae_company_vectors(tl, strings, names, pooling=pooling,
                                          content_only=content, token_mask=ok,
                                          fit_tickers=universe, **params)
    name_map = dict(zip(tickers, names))
    lmask = ok & content_token_mask(strings, tl.offsets, names) if content else ok
    labels = latent_labels(tl, strings, pooled=pooled, names=name_map,
                           latents=[int(c) for c in vec.columns], mask=lmask,
                           words=token_words(strings, tl.offsets))
    meta = {"model": "smollm2-135m (SmolLM2-135M-Instruct Q4_1 GGUF, dequantized)",
            "layer": layer, "sae": f"TopK d_sae {args.d_sae} k {args.k}, {args.epochs} epoch(s) "
            f"over {args.train_tokens or 'all'} tokens of the bundled descriptions "
            "(experiments/topk_sae.py)", "variant": variant,
            "pooling": pooling, "content_only": content, **params,
            "texts": texts_hash(texts), "sae_stats": stats}
    save_bundled(vec, labels, meta)
    from finsae.features.baselines import minilm_embeddings, tfidf_vectors
    vectors = {"sae": vec, "hidden": hidden_vectors(store, layer, tickers),
               "embedding": minilm_embeddings(texts), "tfidf": tfidf_vectors(texts)}
    fs = FeatureSet(vectors, pd.Series(name_map), labels, meta)
    out = fs.save(features_root() / feature_key({**meta, "source": "experiment"}))
    mark_latest(out)
    to_html(labels, ROOT / "experiments/results/features.html",
            title=f"finsae SAE features: SmolLM2-135M block {layer}", meta=meta)
    fsel.log(f"bundled -> data/features; cache -> {out}")


if __name__ == "__main__":
    main()
