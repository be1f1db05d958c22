"""Choose layer, SAE and pooling for the company features on 2001-2010 only, then report
2011-2020 for the choice and the baselines.

    python experiments/feature_selection.py [--acts DIR] [--layers 5 10 15 20 25]
        [--d-sae 4608] [--k 32] [--epochs 2] [--out experiments/results]

Steps (everything cached under cache_dir("features", "selection"), so a rerun is fast):
1. Residual-stream activations of the bundled descriptions (all 673, texts as in
   `load_companies()`), at every layer compared, in one forward pass: `finsae.lm.encode_texts`,
   or `--acts DIR` holding precomputed arrays (L<layer>.npy [n_tokens, d] float32, offsets.npy
   [n_docs + 1], token_ids.npy, meta.json {"tickers": [...]}).
2. One TopK SAE per layer trained on those tokens (massive tokens, norm > 10x median, dropped):
   `experiments/topk_sae.py` (d_sae 4608, k 32 by default).
3. Company vectors for a grid of pooling / token / weighting variants, each clustered
   identically: average-linkage agglomerative clustering on cosine distance, K = number of GICS
   sub-industries in the 453-company evaluation universe (127). Scored by MeanCorr (monthly
   returns, `finsae.evaluate.ReturnPanel`) on 2001-2010 (unweighted and pair-weighted) and by a
   retrieval metric (share of each company's 10 nearest neighbours in its GICS sub-industry).
4. The SAE variant with the best 2001-2010 MeanCorr is the choice; then 2011-2020 is reported
   for it, the best variant per layer, the paper's recipe, the hidden state, TF-IDF, MiniLM,
   GICS and SIC. Writes features_selection.md and features_selection.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from finsae import cluster as cl  # noqa: E402
from finsae.data import evaluation_universe, load_companies, load_prices, partition  # noqa: E402
from finsae.data.errors import DataError  # noqa: E402
from finsae.data.paths import cache_dir  # noqa: E402
from finsae.evaluate import IN_SAMPLE, OUT_OF_SAMPLE, YEARS, ReturnPanel  # noqa: E402
from finsae.features.build import (hidden_vectors, sae_company_vectors, token_strings)  # noqa: E402
from finsae.features.company import TokenLatents, massive_token_mask  # noqa: E402

torch.set_num_threads(2)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------- activations

class ArrayStore:
    """The subset of finsae.lm's ActivationStore used here, over precomputed arrays.

    Token rows with a residual norm above 10x the median (attention sinks) are excluded from
    text_means, as BOS is in finsae.lm's store."""

    def __init__(self, folder: Path, texts: list[str], tokenizer):
        self.folder = folder
        meta = json.loads((folder / "meta.json").read_text())
        self.tickers = meta["tickers"]
        self.layers = meta["layers"]
        off = np.load(folder / "offsets.npy")
        self.doc_index = np.repeat(np.arange(len(off) - 1), np.diff(off))
        self.token_ids = np.load(folder / "token_ids.npy")
        self.texts = texts
        # character spans: re-tokenise (fast) and check the ids agree with the stored ones
        spans = []
        for d, t in enumerate(texts):
            enc = tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"][:2048]
            if not np.array_equal(ids, self.token_ids[off[d]:off[d + 1]]):
                raise SystemExit(f"text {d} tokenises differently from the stored activations")
            spans.extend(enc["offset_mapping"][:2048])
        self.offsets = np.asarray(spans)
        self._off = off

    def tokens(self, layer: int) -> torch.Tensor:
        return torch.from_numpy(np.load(self.folder / f"L{layer}.npy", mmap_mode="r")[:].copy())

    def text_means(self, layer: int) -> torch.Tensor:
        X = self.tokens(layer)
        ok = torch.from_numpy(massive_token_mask(X.norm(dim=1).numpy()))
        out = torch.zeros(len(self._off) - 1, X.shape[1])
        for d in range(len(out)):
            a, b = self._off[d], self._off[d + 1]
            out[d] = X[a:b][ok[a:b]].mean(0)
        return out


def acts_key(store: ArrayStore) -> str:
    """Identifies precomputed activations: tickers, token ids and the arrays' sizes."""
    import hashlib
    h = hashlib.sha256(json.dumps(store.tickers).encode())
    h.update(np.ascontiguousarray(store.token_ids).tobytes())
    for L in store.layers:
        h.update(f"{L}:{(store.folder / f'L{L}.npy').stat().st_size}".encode())
    return "acts-" + h.hexdigest()[:12]


def lm_store(texts, layers):
    from finsae.lm import encode_texts, load_lm
    lm = load_lm("smollm2-135m")
    return encode_texts(lm, texts, layers=layers, progress=True)


# ----------------------------------------------------------------------------- scoring

class Scorer:
    def __init__(self, companies, prices, universe):
        self.universe = list(universe)
        self.table = companies.loc[self.universe]
        self.sub = partition(self.table, "gics_sub_industry")
        self.sector = partition(self.table, "gics_sector")
        self.k = cl.matched_k(self.sub)
        log(f"universe {len(self.universe)}, K = {self.k}; return panel ...")
        self.panel = ReturnPanel.from_prices(prices, self.universe, YEARS, "M")

    def retrieval(self, V: pd.DataFrame, labels: pd.Series, n: int = 10) -> float:
        X = V.loc[self.universe].to_numpy(dtype=float)
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        S = X @ X.T
        np.fill_diagonal(S, -np.inf)
        nb = np.argsort(-S, axis=1)[:, :n]
        lab = labels.reindex(self.universe).to_numpy()
        return float((lab[nb] == lab[:, None]).mean())

    def partition_scores(self, part, name: str) -> dict:
        r = self.panel.score(part, method=name)
        return {"in_mc": r.mean_corr(IN_SAMPLE), "in_pw": r.mean_corr(IN_SAMPLE, "pairs"),
                "out_mc": r.mean_corr(OUT_OF_SAMPLE), "out_pw": r.mean_corr(OUT_OF_SAMPLE, "pairs"),
                "coverage": r.coverage, "K": r.n_clusters}

    def score(self, V: pd.DataFrame, name: str) -> dict:
        V = V.loc[self.universe]
        part = cl.agglomerative(V, self.k, linkage="average")
        out = self.partition_scores(part, name)
        out["top10_sub"] = self.retrieval(V, self.sub)
        out["top10_sector"] = self.retrieval(V, self.sector)
        out["largest"] = int(part.value_counts().iloc[0])
        return out


# ----------------------------------------------------------------------------- variants

VARIANTS = {
    # name: (pooling, content_only, CompanyFeatures params)
    "paper: sum, all tokens, standardize, PCA": ("sum", False, dict(weighting="standardize",
                                                                    pca=400, max_df=None,
                                                                    sublinear=False)),
    "sum, all tokens": ("sum", False, dict(weighting=None, max_df=None, sublinear=False)),
    "sum, all tokens, idf": ("sum", False, dict(weighting="idf", max_df=None, sublinear=False)),
    "max, all tokens": ("max", False, dict(weighting=None, max_df=None, sublinear=False)),
    "sum, content": ("sum", True, dict(weighting=None, max_df=None, sublinear=False)),
    "sum, content, idf, max_df .5": ("sum", True, dict(weighting="idf", max_df=0.5,
                                                      sublinear=False)),
    "sum, content, sublinear, idf": ("sum", True, dict(weighting="idf", max_df=None,
                                                      sublinear=True)),
    "sum, content, sublinear, idf, max_df .5": ("sum", True, dict(weighting="idf", max_df=0.5,
                                                                 sublinear=True)),
    "sum, content, sublinear, idf, max_df .2": ("sum", True, dict(weighting="idf", max_df=0.2,
                                                                 sublinear=True)),
    "sum, all tokens, sublinear, idf, max_df .5": ("sum", False, dict(weighting="idf",
                                                                     max_df=0.5, sublinear=True)),
    "max, content, idf, max_df .5": ("max", True, dict(weighting="idf", max_df=0.5,
                                                      sublinear=False)),
}


def training_rows(store, n_tokens: int | None) -> np.ndarray:
    """Token rows to train the SAEs on: whole descriptions, shortest first, until n_tokens
    (None: all). Shortest-first because the activations are captured in that order, so
    training can start before the longest texts are encoded."""
    off = np.concatenate([[0], np.cumsum(np.bincount(np.asarray(store.doc_index)))])
    lens = np.diff(off)
    rows, n = [], 0
    for d in np.argsort(lens, kind="stable"):
        if n_tokens is not None and n >= n_tokens:
            break
        rows.append(np.arange(off[d], off[d + 1]))
        n += lens[d]
    return np.sort(np.concatenate(rows))


def train_or_load_sae(store, layer, args, ok_mask):
    from topk_sae import TopKSAE, train_topk
    f = cache_dir("features", "selection") / \
        (f"sae_L{layer}_d{args.d_sae}_k{args.k}_e{args.epochs}_b{args.batch}"
         f"_n{args.train_tokens}_s{args.seed}_{args.acts_key}.pt")
    if f.exists():
        blob = torch.load(f, weights_only=False)
        sae = TopKSAE(blob["d_in"], args.d_sae, args.k)
        sae.load_state_dict(blob["state"])
        return sae.eval().requires_grad_(False), blob["stats"]
    rows = training_rows(store, args.train_tokens)
    X = store.tokens(layer)[torch.from_numpy(rows)]
    if (X.norm(dim=1) == 0).any():
        raise SystemExit("training tokens not captured yet (all-zero activations)")
    X = X[torch.from_numpy(ok_mask[rows])]
    log(f"L{layer}: training TopK SAE d_sae={args.d_sae} k={args.k} on {len(X)} tokens")
    sae, stats = train_topk(X, args.d_sae, args.k, args.epochs, batch=args.batch,
                            seed=args.seed, log=log)
    stats["train_tokens"] = len(X)
    torch.save({"d_in": X.shape[1], "state": sae.state_dict(), "stats": stats}, f)
    return sae, stats


def open_store(args, texts: pd.Series):
    if args.acts:
        from transformers import AutoTokenizer
        folder = next(Path(cache_dir("models")).glob("SmolLM2*"))
        store = ArrayStore(args.acts, list(texts), AutoTokenizer.from_pretrained(folder))
        if store.tickers != list(texts.index):
            raise SystemExit("--acts was computed on other texts")
        args.acts_key = acts_key(store)
    else:
        store = lm_store(list(texts), args.layers)
        args.acts_key = store.manifest["key"][:12]
    return store


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", type=Path, default=None)
    ap.add_argument("--layers", type=int, nargs="+", default=[5, 10, 15, 20, 25])
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--train-tokens", type=int, default=90000,
                    help="SAE training tokens: whole descriptions, shortest first")
    ap.add_argument("--merge", action="store_true",
                    help="add this run's SAE rows to the existing features_selection.json "
                         "(e.g. a longer-trained SAE) instead of starting a new table")
    ap.add_argument("--train-only", action="store_true",
                    help="train (and cache) the SAEs, then stop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=None, help="subset of variant names")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    args = ap.parse_args()

    companies = load_companies()
    prices = load_prices()
    universe = evaluation_universe(companies, prices)
    texts = companies["description"].fillna("").astype(str).str.strip()
    texts = texts[texts != ""]
    tickers = list(texts.index)
    if not args.train_only:
        sc = Scorer(companies, prices, universe)

    if args.train_only:  # needs only the training texts' activations
        store = open_store(args, texts)
        rows_ = training_rows(store, args.train_tokens)
        for layer in args.layers:
            X = store.tokens(layer)
            ok = np.zeros(len(X), dtype=bool)
            ok[rows_] = massive_token_mask(X[torch.from_numpy(rows_)].norm(dim=1).numpy())
            del X
            train_or_load_sae(store, layer, args, ok)
        return

    rows, sae_stats = [], {}
    # ---- baselines: GICS, SIC, TF-IDF, MiniLM (same universe, same clustering)
    from finsae.features.baselines import minilm_embeddings, tfidf_vectors
    for lvl in ("gics_sub_industry", "sic4"):
        p = partition(sc.table, lvl)
        r = sc.partition_scores(p, lvl)
        r.update(method=f"{lvl} (labels, K={p.nunique()})", family="label")
        rows.append(r)
    uni_texts = texts.reindex(universe)
    log("TF-IDF and MiniLM baselines")
    for name, V in (("TF-IDF", tfidf_vectors(uni_texts)), ("MiniLM", minilm_embeddings(uni_texts))):
        r = sc.score(V, name)
        r.update(method=name, family="baseline")
        rows.append(r)
        log(name, {k: round(v, 3) for k, v in r.items() if isinstance(v, float)})

    # ---- activations
    store = open_store(args, texts)
    strings = token_strings(store)
    names = companies["name"].reindex(tickers).fillna("").astype(str).to_list()

    sae_stats = {}
    if args.train_tokens == 0:
        args.train_tokens = None
    sae_desc = (f"d_sae {args.d_sae}, k {args.k}, {args.epochs} epoch(s) over "
                f"{'all' if args.train_tokens is None else args.train_tokens} tokens")
    if args.merge:
        rows = [r for r in rows if r.get("family") in ("label", "baseline")]
        old = json.loads((args.out / "features_selection.json").read_text())
        rows = [r for r in old["rows"]]
        sae_stats = {k: v for k, v in old["sae"].items()}
    for layer in args.layers:
        X = store.tokens(layer)
        ok = massive_token_mask(X.norm(dim=1).numpy())
        del X
        log(f"L{layer}: {int((~ok).sum())} massive tokens dropped of {len(ok)}")
        H = hidden_vectors(store, layer, tickers)
        if args.merge and any(r.get("method", "").startswith(f"hidden state L{layer} ") for r in rows):
            H = None
        if H is not None:
            r = sc.score(H, f"hidden L{layer}")
            r.update(method=f"hidden state L{layer} (mean-pooled, standardised)",
                     family="hidden", layer=layer)
            rows.append(r)
            log(r["method"], {k: round(v, 3) for k, v in r.items() if isinstance(v, float)})

        sae, stats = train_or_load_sae(store, layer, args, ok)
        tag = f"SAE L{layer}" + (f" [{sae_desc}]" if args.merge else "")
        sae_stats[tag] = stats
        from finsae.features.build import encode_tokens, doc_offsets
        idx, val = encode_tokens(sae, store.tokens(layer))
        tl = TokenLatents(tickers, doc_offsets(store.doc_index, len(tickers)), idx, val,
                          args.d_sae)
        for vname, (pooling, content, params) in VARIANTS.items():
            if args.variants and vname not in args.variants:
                continue
            try:
                vec, _, _ = sae_company_vectors(tl, strings, names, pooling=pooling,
                                                content_only=content, token_mask=ok,
                                                fit_tickers=universe, **params)
                r = sc.score(vec, vname)
            except DataError as e:  # e.g. every latent filtered out, or an all-zero company
                log(f"SAE L{layer}: {vname}: failed: {e}")
                continue
            r.update(method=f"{tag}: {vname}", family="sae", layer=layer, variant=vname,
                     dims=vec.shape[1], sae=sae_desc, epochs=args.epochs,
                     train_tokens=args.train_tokens)
            rows.append(r)
            log(r["method"], {k: round(v, 3) for k, v in r.items() if isinstance(v, float)})
        write(rows, sae_stats, args, sc)
    write(rows, sae_stats, args, sc)


def write(rows, sae_stats, args, sc):
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "features_selection.json").write_text(json.dumps(
        {"rows": rows, "sae": {str(k): v for k, v in sae_stats.items()},
         "settings": {"layers": args.layers, "d_sae": args.d_sae, "k": args.k,
                      "epochs": args.epochs, "seed": args.seed, "K": sc.k,
                      "universe": len(sc.universe)}}, indent=1, default=float))
    f = lambda x: "" if pd.isna(x) else f"{x:.3f}"  # noqa: E731
    sae = df[df.family == "sae"]
    lines = ["# Company features: choice of layer, SAE and pooling", "",
             "Written by `experiments/feature_selection.py` "
             f"(layers {args.layers}, TopK SAE d_sae {args.d_sae}, k {args.k}, "
             f"{args.epochs} epochs over the 673 bundled descriptions, seed {args.seed}). "
             f"Universe: {len(sc.universe)} companies (`evaluation_universe`), K = {sc.k} "
             "(GICS sub-industries), average-linkage agglomerative clustering on cosine distance "
             "for every vector method. MeanCorr on monthly log returns; `top10 sub` / "
             "`top10 sector`: share of each company's 10 nearest neighbours (cosine) in its "
             "GICS sub-industry / sector. Differences under about 0.02 in MeanCorr are noise.", ""]
    if len(sae):
        best = sae.sort_values(["in_mc", "top10_sub"], ascending=False).iloc[0]
        lines += [f"**Choice (best 2001-2010 MeanCorr among SAE variants): {best.method}** "
                  f"(2001-10 {best.in_mc:.3f}, pair-weighted {best.in_pw:.3f}).", ""]
    lines += ["## In-sample (2001-2010): the selection table", "",
              "| method | MeanCorr 2001-10 | pair-weighted 2001-10 | top10 sub | top10 sector | "
              "largest cluster |", "|---|---|---|---|---|---|"]
    for r in df.sort_values("in_mc", ascending=False).itertuples():
        lines.append(f"| {r.method} | {f(r.in_mc)} | {f(r.in_pw)} | "
                     f"{f(getattr(r, 'top10_sub', np.nan))} | "
                     f"{f(getattr(r, 'top10_sector', np.nan))} | "
                     f"{'' if pd.isna(getattr(r, 'largest', np.nan)) else int(r.largest)} |")
    lines += ["", "## Out-of-sample (2011-2020)", "",
              "Rows: the baselines, the best hidden-state layer and the best SAE variant of each "
              "layer (both chosen on 2001-2010), and the paper's recipe at each layer. "
              "Coverage and the number of scored clusters (clusters with >= 2 members with returns "
              "that year; K = 127 requested) are averaged over the 20 years.", "",
              "| method | MeanCorr 2011-20 | pair-weighted 2011-20 | coverage | scored clusters | "
              "MeanCorr 2001-10 |", "|---|---|---|---|---|---|"]
    keep = df[df.family.isin(["label", "baseline"])]
    hid = df[df.family == "hidden"]
    if len(hid):
        keep = pd.concat([keep, hid.sort_values("in_mc", ascending=False).head(1)])
    if len(sae):
        per_layer = sae.sort_values("in_mc", ascending=False).groupby("layer").head(1)
        paper = sae[sae.variant.str.startswith("paper")]
        keep = pd.concat([keep, per_layer, paper])
    for r in keep.drop_duplicates("method").itertuples():
        lines.append(f"| {r.method} | {f(r.out_mc)} | {f(r.out_pw)} | {f(r.coverage)} | "
                     f"{f(r.K)} | {f(r.in_mc)} |")
    if sae_stats:
        lines += ["", "## SAEs", "", "| SAE | train FVU (last epoch) | dead fraction | steps | "
                  "training tokens |", "|---|---|---|---|---|"]
        for L, s in sae_stats.items():
            lines.append(f"| {L} | {s['fvu_train_last_epoch']:.3f} | {s['dead_fraction']:.3f} | "
                         f"{s['steps']} | {s.get('train_tokens', '')} |")
    (args.out / "features_selection.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
