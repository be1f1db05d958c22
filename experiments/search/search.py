"""The representation search of issue 19, run through the library only.

Every company representation is scored by the every-firm peer metrics
(`finsae.evaluate.PeerPanel`): peer R² with cluster peers (K = 127 clusters, the number of
GICS sub-industries; average linkage and Ward) and kNN-10 peer R², on 2001-2010 (in-sample:
every choice is made here) and 2011-2020 (out of sample: only reported). The whole grid is
written to experiments/results/search.csv with both periods, so the selection stays visible.

    python experiments/search/search.py sae --layers 5 10 15 20 25 --text descriptions
    python experiments/search/search.py sae --layers 10 --text corpus --d-sae 4608 16384
    python experiments/search/search.py supervised --config BEST
    python experiments/search/search.py baselines

Pieces: activations `finsae.lm.encode_texts` (cached; see encode.py), SAEs `finsae.sae.train_sae`,
token latents and company vectors `finsae.features.build` / `CompanyFeatures`, supervised
weights `finsae.features.supervised.CoMovementWeights`, metrics `finsae.evaluate.peers`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from finsae import cluster as cl
from finsae.data import evaluation_universe, load_companies, load_prices, partition
from finsae.data.paths import cache_dir
from finsae.evaluate import IN_SAMPLE, YEARS, PeerPanel, ReturnPanel
from finsae.evaluate.meancorr import screened_returns

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
K_GICS = 127


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------- context

class Context:
    def __init__(self, vintage: str = "latest", years=YEARS, fit_years=IN_SAMPLE):
        self.vintage = vintage
        self.companies = load_companies(vintage=vintage)
        self.prices = load_prices()
        self.described = self.companies[self.companies["description"] != ""]
        uni = evaluation_universe(self.companies, self.prices)
        self.universe = [t for t in uni if t in self.described.index]
        self.years, self.fit_years = tuple(years), tuple(fit_years)
        self.out_years = tuple(y for y in self.years if y not in self.fit_years)
        daily = screened_returns(self.prices, self.universe, "D")
        self.panel = PeerPanel(daily, self.universe, self.years)
        self.mpanel = ReturnPanel.from_prices(self.prices, self.universe, self.years, "M")
        self.k = cl.matched_k(partition(self.companies.loc[self.universe], "gics_sub_industry"))

    def score(self, V: pd.DataFrame, **info) -> list[dict]:
        """One row per linkage: peer R² with clusters, kNN-10 R², both periods."""
        V = V.loc[self.universe]
        knn = self.panel.score(lambda y: self.panel.knn_peers(V, y), years=self.years)
        rows = []
        for linkage in ("average", "ward"):
            part = cl.agglomerative(V, self.k, linkage=linkage)
            clus = self.panel.score(lambda y: self.panel.partition_peers(part, y),
                                    years=self.years)
            mc = self.mpanel.score(part, years=list(self.years), in_sample=self.fit_years,
                                   out_of_sample=self.out_years)
            sizes = part.value_counts()
            rows.append({**info, "linkage": linkage,
                         **_periods(clus, "peer_r2", self), **_periods(knn, "peer_r2", self, "knn_r2"),
                         **_periods(clus, "delta_r2", self), **_periods(knn, "peer_corr", self, "knn_corr"),
                         "mean_corr_in": mc.mean_corr("in_sample"),
                         "mean_corr_out": mc.mean_corr("out_of_sample"),
                         "pair_weighted_out": mc.mean_corr("out_of_sample", "pairs"),
                         "largest_cluster": int(sizes.max()), "singletons": int((sizes == 1).sum()),
                         "knn_r2_by_year": json.dumps({int(y): round(float(v), 5) for y, v in
                                                       knn["peer_r2"].items()}),
                         "peer_r2_by_year": json.dumps({int(y): round(float(v), 5) for y, v in
                                                        clus["peer_r2"].items()})})
        return rows


def _periods(table: pd.DataFrame, col: str, ctx: Context, name: str | None = None) -> dict:
    name = name or col
    return {f"{name}_in": float(table.loc[list(ctx.fit_years), col].mean()),
            f"{name}_out": float(table.loc[list(ctx.out_years), col].mean())}


# ----------------------------------------------------------------------------- activations

def _store_folder(texts: list[str], layers) -> Path | None:
    """The activation cache folder written by encode.py for these texts and layers (found by
    its texts, so a change of the model fingerprint's definition does not force a re-encode)."""
    for manifest in cache_dir("activations").glob("*/manifest.json"):
        m = json.loads(manifest.read_text())
        if m.get("n_texts") == len(texts) and sorted(m.get("layers", [])) == sorted(layers) \
                and json.loads((manifest.parent / "texts.json").read_text()) == list(texts):
            return manifest.parent
    return None


def store_for(texts: list[str], layers, lm=None):
    """The complete cached activation store of `texts` (encode.py writes it)."""
    from finsae.lm.store import ActivationStore
    folder = _store_folder(texts, layers)
    if folder is None:
        raise SystemExit(f"no activation store for these {len(texts)} texts at layers "
                         f"{list(layers)}: run experiments/search/encode.py first")
    return ActivationStore.open(folder), None


# ----------------------------------------------------------------------------- SAEs

def corpus_tokens(texts, layers, layer) -> torch.Tensor:
    """Corpus activations at `layer`: the whole store, or (while encode.py is still running)
    its finished shards, i.e. the first texts of the corpus in order."""
    from finsae.lm.store import read_shard
    folder = _store_folder(texts, layers)
    parts = []
    for sh in (json.loads((folder / "manifest.json").read_text())["shards"] if folder else []):
        t = read_shard(folder / sh["file"])
        if t is None:
            break
        parts.append(t[f"layer.{layer}"].float())
    if not parts:
        raise SystemExit("no corpus activations: run experiments/search/encode.py --which corpus")
    return torch.cat(parts)


def corpus_texts(n: int | None = None) -> list[str]:
    """The FinanceDatabase corpus (encode.py's order); the first n texts of a fixed shuffle."""
    from finsae.data.corpus import load_corpus
    texts = load_corpus()["text"].tolist()
    if n is None or n >= len(texts):
        return texts
    order = np.random.default_rng(0).permutation(len(texts))[:n]
    return [texts[i] for i in sorted(order)]


def train_or_load(tag: str, acts: torch.Tensor, d_sae: int, k: int, tokens: int, seed: int = 0):
    from finsae.sae import SAEConfig, TrainConfig, load_sae, train_sae
    folder = cache_dir("search", "sae") / tag
    if (folder / "cfg.json").exists():
        return load_sae(folder)
    t = time.perf_counter()
    res = train_sae(acts, SAEConfig(d_in=acts.shape[1], d_sae=d_sae, arch="topk", k=k),
                    TrainConfig(tokens=tokens, batch_size=4096, seed=seed), out=folder)
    log(f"trained {tag}: {res.tokens} tokens in {time.perf_counter() - t:.0f}s, "
        f"dead {res.dead_fraction:.3f}")
    return res.sae


#: company-vector variants: latents read as a vocabulary (CompanyFeatures parameters)
VARIANTS = {
    "sublinear_idf": dict(tf="sublinear", weighting="idf"),
    "bm25_idf": dict(tf="bm25", weighting="idf"),
    "binary_idf": dict(tf="binary", weighting="idf"),
    "sublinear_idf_maxdf0.5": dict(tf="sublinear", weighting="idf", max_df=0.5),
    "sublinear_idf_maxdf0.2": dict(tf="sublinear", weighting="idf", max_df=0.2),
    "sublinear_idf_top64": dict(tf="sublinear", weighting="idf", top_n=64),
    "sublinear_idf_top256": dict(tf="sublinear", weighting="idf", top_n=256),
    "bm25_idf_maxdf0.2": dict(tf="bm25", weighting="idf", max_df=0.2),
    "raw_sum": dict(tf=None, weighting=None),
}


def company_vectors(tl, strings, names, ok, variant: str, content_only: bool = True):
    from finsae.features.build import sae_company_vectors
    params = dict(VARIANTS[variant])
    params.setdefault("max_df", None)
    vec, pooled, cf = sae_company_vectors(tl, strings, names, pooling="sum",
                                          content_only=content_only, token_mask=ok,
                                          sublinear=False, **params)
    return vec


def latents_for(sae, store, layer, tickers):
    from finsae.features.build import token_latents, token_strings
    tl, ok = token_latents(sae, store, layer, tickers)
    return tl, ok, token_strings(store)


def run_sae(args, ctx: Context):
    texts = ctx.described["description"].tolist()
    tickers = list(ctx.described.index)
    names = ctx.described["name"].fillna("").astype(str).tolist()
    layers = args.layers
    desc_store, _ = store_for(texts, args.store_layers)
    rows = []
    for layer in layers:
        acts = desc_store.tokens(layer)
        if args.text in ("corpus", "both"):
            corpus = corpus_tokens(corpus_texts(args.corpus_n), args.corpus_layers, layer)
            log(f"corpus tokens at layer {layer}: {len(corpus)}")
            acts = torch.cat([corpus, acts]) if args.text == "both" else corpus
        for d_sae in args.d_sae:
            for k in args.k:
                tokens = args.tokens or (400_000 if args.text == "descriptions" else
                                         2 * len(acts))
                text = args.text if args.text == "descriptions" else \
                    f"{args.text}{len(acts)}"  # the corpus may be partial: name its size
                tag = f"L{layer}-{text}-d{d_sae}-k{k}-t{tokens}-s{args.seed}"
                if args.sae_tag:  # an SAE trained earlier (e.g. the chosen one, for c2016)
                    tag, text = args.sae_tag, f"sae {args.sae_tag}"
                sae = train_or_load(tag, acts, d_sae, k, tokens, args.seed)
                tl, ok, strings = latents_for(sae, desc_store, layer, tickers)
                for variant in args.variants:
                    V = company_vectors(tl, strings, names, ok, variant)
                    for r in ctx.score(V, kind="sae", layer=layer, text=text,
                                       d_sae=int(sae.cfg.d_sae), k=int(sae.cfg.k), tokens=tokens, variant=variant,
                                       vintage=ctx.vintage):
                        rows.append(r)
                        log(_fmt(r))
                    _save_vectors(V, tag, variant, ctx)
        del acts
    _append(rows, args.out)


def _save_vectors(V, tag, variant, ctx):
    folder = cache_dir("search", "vectors", ctx.vintage)
    V.astype(np.float32).to_parquet(folder / f"{tag}-{variant}.parquet")


def run_hidden(args, ctx: Context):
    from finsae.features.build import hidden_vectors
    texts = ctx.described["description"].tolist()
    store, _ = store_for(texts, args.store_layers)
    rows = []
    for layer in args.layers:
        V = hidden_vectors(store, layer, list(ctx.described.index))
        for r in ctx.score(V, kind="hidden", layer=layer, variant="mean_standardized",
                           vintage=ctx.vintage):
            rows.append(r)
            log(_fmt(r))
    _append(rows, args.out)


def run_baselines(args, ctx: Context):
    from finsae.evaluate.peers import hierarchy_of
    from finsae.features.baselines import minilm_embeddings, tfidf_vectors
    rows = []
    tab = ctx.companies.loc[ctx.universe]
    for lv in ("gics_sub_industry", "gics_industry", "sic4"):
        p = ctx.panel
        part = partition(tab, lv)
        levels = [partition(tab, x) for x in hierarchy_of(lv)]
        clus = p.score(lambda y: p.partition_peers(part, y), years=ctx.years)
        knn = p.score(lambda y: p.hierarchy_peers(levels, y), years=ctx.years)
        mc = ctx.mpanel.score(part, years=list(ctx.years), in_sample=ctx.fit_years,
                              out_of_sample=ctx.out_years)
        r = {"kind": "classification", "variant": lv, "vintage": ctx.vintage,
             **_periods(clus, "peer_r2", ctx), **_periods(knn, "peer_r2", ctx, "knn_r2"),
             **_periods(clus, "delta_r2", ctx), **_periods(knn, "peer_corr", ctx, "knn_corr"),
             "mean_corr_in": mc.mean_corr("in_sample"), "mean_corr_out": mc.mean_corr("out_of_sample"),
             "pair_weighted_out": mc.mean_corr("out_of_sample", "pairs"),
             "knn_r2_by_year": json.dumps({int(y): round(float(v), 5) for y, v in knn["peer_r2"].items()}),
             "peer_r2_by_year": json.dumps({int(y): round(float(v), 5) for y, v in clus["peer_r2"].items()})}
        rows.append(r)
        log(_fmt(r))
    desc = ctx.described["description"]
    for name, V in (("tfidf", tfidf_vectors(desc)), ("minilm", minilm_embeddings(desc))):
        for r in ctx.score(V, kind="text", variant=name, vintage=ctx.vintage):
            rows.append(r)
            log(_fmt(r))
    _append(rows, args.out)


def run_supervised(args, ctx: Context):
    """Non-negative latent weights fitted on the in-sample years' co-movement."""
    from finsae.features.supervised import CoMovementWeights, select_penalty
    folder = cache_dir("search", "vectors", ctx.vintage)
    rows = []
    for name in args.configs:
        V = pd.read_parquet(folder / f"{name}.parquet").astype(float)
        Vu = V.loc[ctx.universe]
        pen, scores = select_penalty(Vu, ctx.panel, ctx.fit_years, tuple(args.penalties),
                                     steps=args.steps)
        log(f"{name}: penalty scores on the second half of the fitting years {scores} -> {pen}")
        cw = CoMovementWeights(penalty=pen, steps=args.steps).fit(
            Vu, ctx.panel.mean_corr_matrix(ctx.fit_years))
        W = cw.transform(V)
        W.astype(np.float32).to_parquet(folder / f"{name}-supervised.parquet")
        cw.weights_.to_csv(folder / f"{name}-supervised-weights.csv")
        for r in ctx.score(W, kind="sae_supervised", variant=name, penalty=pen,
                           penalty_scores=json.dumps(scores), vintage=ctx.vintage):
            rows.append(r)
            log(_fmt(r))
    _append(rows, args.out)


def run_concat(args, ctx: Context):
    """Several representations side by side: each L2-normalised, concatenated, re-normalised
    (cosine = the mean of the parts' cosines)."""
    folder = cache_dir("search", "vectors", ctx.vintage)
    parts = []
    for name in args.configs:
        V = pd.read_parquet(folder / f"{name}.parquet").astype(float)
        V.columns = [f"{name}:{c}" for c in V.columns]
        parts.append(V / np.linalg.norm(V.to_numpy(), axis=1, keepdims=True))
    W = pd.concat(parts, axis=1).loc[parts[0].index]
    W = W / np.linalg.norm(W.to_numpy(), axis=1, keepdims=True)
    tag = "+".join(args.configs)
    import hashlib
    key = hashlib.sha256(tag.encode()).hexdigest()[:8]
    W.astype(np.float32).to_parquet(folder / f"concat-{len(args.configs)}-{key}.parquet")
    rows = []
    for r in ctx.score(W, kind="sae_concat", variant=tag, vintage=ctx.vintage):
        rows.append(r)
        log(_fmt(r))
    _append(rows, args.out)


def _fmt(r: dict) -> str:
    keys = ("kind", "layer", "text", "d_sae", "variant", "linkage")
    head = " ".join(str(r[k]) for k in keys if k in r and r[k] is not None)
    return (f"{head}: peer R² {r['peer_r2_in']:.3f}/{r['peer_r2_out']:.3f} "
            f"kNN {r['knn_r2_in']:.3f}/{r['knn_r2_out']:.3f} "
            f"MeanCorr {r['mean_corr_in']:.3f}/{r['mean_corr_out']:.3f}")


def _append(rows: list[dict], out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame(rows)
    if out.exists():
        new = pd.concat([pd.read_csv(out), new], ignore_index=True)
    new.to_csv(out, index=False, float_format="%.5f")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=("sae", "hidden", "baselines", "supervised", "concat"))
    ap.add_argument("--layers", nargs="+", type=int, default=[5, 10, 15, 20, 25])
    ap.add_argument("--store-layers", nargs="+", type=int, default=[5, 10, 15, 20, 25],
                    help="the layers of the cached activation store (encode.py)")
    ap.add_argument("--corpus-n", type=int, default=None, help="corpus texts (encode.py)")
    ap.add_argument("--corpus-layers", nargs="+", type=int, default=[5, 10, 15, 20, 25])
    ap.add_argument("--text", choices=("descriptions", "corpus", "both"), default="descriptions")
    ap.add_argument("--d-sae", nargs="+", type=int, default=[4608])
    ap.add_argument("--k", nargs="+", type=int, default=[32])
    ap.add_argument("--tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sae-tag", default=None, help="use this cached search SAE")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--configs", nargs="+", default=[])
    ap.add_argument("--penalties", nargs="+", type=float, default=[0.1, 1.0, 10.0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--vintage", default="latest")
    ap.add_argument("--years", nargs=2, type=int, default=None)
    ap.add_argument("--fit-years", nargs=2, type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "search.csv")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    kw = {}
    if a.years:
        kw["years"] = range(a.years[0], a.years[1] + 1)
    if a.fit_years:
        kw["fit_years"] = range(a.fit_years[0], a.fit_years[1] + 1)
    ctx = Context(a.vintage, **kw)
    log(f"universe {len(ctx.universe)}, K {ctx.k}, vintage {a.vintage}")
    {"sae": run_sae, "hidden": run_hidden, "baselines": run_baselines,
     "supervised": run_supervised, "concat": run_concat}[a.stage](a, ctx)


if __name__ == "__main__":
    sys.exit(main())
