"""`finsae run`: the main job, end to end, with every stage cached by the hash of its inputs.

    encode + train SAE  ->  company features  ->  evaluate (MeanCorr)  ->  backtest  ->  report

A run folder holds the config (``config.toml``), ``metrics.json``, CSV tables, PNG plots and a
self-contained ``report.html``. A change of one setting re-runs only the stages it affects
(`finsae.stages.run_stage`); a second run of the same config reuses everything and writes the
same ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config_check import check_layer_in_model, check_run_config, check_run_inputs
from .data.errors import DataError
from .hashing import file_digest, json_key
from .stages import StageResult, run_stage


@dataclass
class DataSection:
    #: companies CSV (None: the bundled table)
    companies: str | None = None
    #: daily prices CSV/parquet (None: the bundled 1999-2021 series)
    prices: str | None = None
    #: description vintage of the bundled table: latest, financedatabase, c2016, earliest
    vintage: str = "latest"
    #: keep only the first N companies with a description (None: all; small demo runs)
    limit: int | None = None


@dataclass
class SAESection:
    #: language model (short name, Hugging Face id, folder or .gguf)
    model: str = "smollm2-135m"
    #: residual stream after this block (chosen on 2001-2010: experiments/results/search.md)
    layer: int = 5
    #: more blocks, each with its own SAE, whose company vectors are joined to the layer's
    #: (each L2-normalised: the cosine is the mean of the blocks' cosines)
    extra_layers: list[int] = field(default_factory=list)
    #: tokens per description kept (truncation)
    max_tokens: int = 512
    #: SAE architecture: topk, batchtopk, relu, jumprelu
    arch: str = "topk"
    #: SAE width (latents) and active latents per token (TopK)
    d_sae: int = 16384
    k: int = 32
    #: SAE training text: descriptions (the companies' own), corpus (the bundled ~4,600
    #: FinanceDatabase business summaries), or both
    train_text: str = "both"
    #: training tokens (the training text's tokens are cycled through)
    train_tokens: int = 1_000_000
    batch_size: int = 4096
    seed: int = 0
    #: use this saved SAE instead of training one
    path: str | None = None


@dataclass
class FeatureSection:
    #: pooling of a description's token latents: sum, mean, max
    pooling: str = "sum"
    #: pool only content words (no punctuation, stop words or the company's own name)
    content_only: bool = True
    #: per-latent weight: idf, standardize, or none
    weighting: str | None = "idf"
    #: drop latents active in more than this share of the companies (none: keep all)
    max_df: float | None = None
    #: 1 + log tf (the same as tf = "sublinear")
    sublinear: bool = True
    #: term frequency of a latent read as a word: sublinear, binary, bm25 (none: see sublinear)
    tf: str | None = None
    #: keep each company's top_n latents (none: all)
    top_n: int | None = None


@dataclass
class EvaluateSection:
    methods: list[str] = field(default_factory=lambda: [
        "sae", "hidden", "tfidf", "minilm", "gics_sub_industry", "gics_industry", "gics_sector",
        "sic4", "sic2", "returns", "random", "one_cluster"])
    #: scored years and the in-sample years that fix every choice
    years: tuple[int, int] = (2001, 2020)
    fit_years: tuple[int, int] = (2001, 2010)
    #: random partitions averaged
    n_seeds: int = 100
    #: agglomerative linkage of the vector methods on cosine distance: average, ward (on
    #: L2-normalised vectors), complete (chosen on 2001-2010: experiments/results/search.md)
    linkage: str = "average"


@dataclass
class BacktestSection:
    methods: list[str] = field(default_factory=lambda: [
        "sae", "embedding", "gics", "sic", "returns", "random"])
    top_n: int = 20
    fees_bps: float = 10.0
    #: first / last date used (None: the whole price history)
    start: str | None = None
    end: str | None = None


@dataclass
class RunConfig:
    data: DataSection = field(default_factory=DataSection)
    sae: SAESection = field(default_factory=SAESection)
    features: FeatureSection = field(default_factory=FeatureSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    backtest: BacktestSection = field(default_factory=BacktestSection)

    @classmethod
    def load(cls, path: str | Path | None) -> "RunConfig":
        """Defaults, overridden by a TOML file's tables ([data], [sae], ...)."""
        if path is None:
            return cls()
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise DataError(f"not a readable TOML config ({e})", path=path) from e
        kw = {}
        for f in dataclasses.fields(cls):
            section = raw.pop(f.name, {})
            if not isinstance(section, dict):
                raise DataError(f"{f.name} must be a table ([{f.name}] followed by its "
                                f"settings), got {section!r}", path=path)
            names = {g.name for g in dataclasses.fields(f.default_factory())}
            unknown = set(section) - names
            if unknown:
                raise DataError(f"unknown key(s) {', '.join(sorted(unknown))} in [{f.name}]; "
                                f"known: {', '.join(sorted(names))}", path=path)
            kw[f.name] = f.default_factory(**section)  # the section's dataclass
        if raw:
            raise DataError(f"unknown section(s) {', '.join(raw)}; known: "
                            f"{', '.join(g.name for g in dataclasses.fields(cls))}", path=path)
        return check_run_config(cls(**kw), path)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            for k, v in values.items():
                if v is None:
                    lines.append(f"# {k} = (none)")
                else:
                    lines.append(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")
            lines.append("")
        return "\n".join(lines)


def _file_id(path: str | None) -> str | None:
    """Content hash of an input file, so an edited file invalidates the stages that read it."""
    return None if path is None else file_digest(path, 16)


def run(config: RunConfig, out: str | Path, *, log=print) -> dict:
    """Run every stage (reusing cached ones) and write the run folder. Returns metrics."""
    from .data import load_companies, load_prices
    out = Path(out)
    check_run_config(config)
    check_layer_in_model(config.sae.model, config.sae.layer)
    for layer in config.sae.extra_layers:
        check_layer_in_model(config.sae.model, layer, "[sae] extra_layers")
    t_start = time.perf_counter()
    cfg = config
    companies = load_companies(cfg.data.companies, vintage=cfg.data.vintage)
    described = companies[companies["description"] != ""]
    if cfg.data.limit:
        described = described.iloc[:cfg.data.limit]
    prices = load_prices(cfg.data.prices)
    check_run_inputs(cfg, prices)
    inputs = {"companies": _file_id(cfg.data.companies), "prices": _file_id(cfg.data.prices),
              "vintage": cfg.data.vintage, "texts": json_key(described["description"].tolist())}
    stages: list[StageResult] = []

    def stage(name, params, deps, fn):
        r = run_stage(name, params, deps, fn)
        stages.append(r)
        log(f"[{name}] {'cached' if r.cached else f'done in {r.seconds:.0f}s'} ({r.key})")
        return r

    # 1. LM activations of the descriptions and an SAE per block, trained on them
    def train(folder: Path):
        from .lm import encode_texts, load_lm
        from .sae import SAEConfig, TrainConfig, evaluate_reconstruction, load_sae, train_sae
        lm = load_lm(cfg.sae.model)
        layers = [cfg.sae.layer, *cfg.sae.extra_layers]
        store = encode_texts(lm, described["description"].tolist(), layers=sorted(set(layers)),
                             max_tokens=cfg.sae.max_tokens)
        corpus = None
        if cfg.sae.train_text in ("corpus", "both") and not cfg.sae.path:
            from .data.corpus import load_corpus
            corpus = encode_texts(lm, load_corpus()["text"].tolist(),
                                  layers=sorted(set(layers)), max_tokens=cfg.sae.max_tokens)
        all_info = {}
        for layer in layers:
            acts = store.tokens(layer)
            train_acts = acts
            if corpus is not None:
                train_acts = corpus.tokens(layer)
                if cfg.sae.train_text == "both":
                    import torch
                    train_acts = torch.cat([train_acts, acts])
            name = "sae" if layer == cfg.sae.layer else f"sae_L{layer}"
            if cfg.sae.path:
                sae = load_sae(cfg.sae.path)
                info = {"source": cfg.sae.path}
            else:
                res = train_sae(train_acts, SAEConfig(
                    d_in=lm.d_model, d_sae=cfg.sae.d_sae, arch=cfg.sae.arch, k=cfg.sae.k,
                    meta={"model": cfg.sae.model, "layer": layer}),
                    TrainConfig(tokens=cfg.sae.train_tokens, batch_size=cfg.sae.batch_size,
                                seed=cfg.sae.seed), out=folder / name)
                sae = res.sae
                info = {"tokens": res.tokens, "seconds": res.seconds,
                        "massive_dropped": res.n_massive_dropped}
            stats = evaluate_reconstruction(sae, acts)
            info.update({k: float(v) for k, v in stats.items() if isinstance(v, (int, float))})
            info["encode"] = {"texts": len(described), "tokens": int(acts.shape[0]),
                              "train_text": cfg.sae.train_text,
                              "train_text_tokens": int(train_acts.shape[0])}
            all_info[layer] = info
        if cfg.sae.path:
            shutil.copytree(cfg.sae.path, folder / "sae")
        info = dict(all_info[cfg.sae.layer])
        if cfg.sae.extra_layers:
            info["extra_layers"] = {str(lx): all_info[lx] for lx in cfg.sae.extra_layers}
        (folder / "sae_stats.json").write_text(json.dumps(info, indent=1))

    s_sae = stage("sae", {**dataclasses.asdict(cfg.sae), **inputs}, [], train)

    # 2. company vectors: SAE features, hidden state, MiniLM, TF-IDF (+ labels)
    def features(folder: Path):
        from .features.build import build_feature_set
        extra = [(lx, s_sae.path / ("sae" if cfg.sae.path else f"sae_L{lx}"))
                 for lx in cfg.sae.extra_layers]
        built = build_feature_set(described, model=cfg.sae.model, layer=cfg.sae.layer,
                                  sae=s_sae.path / "sae", max_tokens=cfg.sae.max_tokens,
                                  extra=extra,
                                  **dataclasses.asdict(cfg.features),
                                  companies_path=cfg.data.companies)
        shutil.copytree(built, folder / "features")

    s_feat = stage("features", {**dataclasses.asdict(cfg.features),
                               "max_tokens": cfg.sae.max_tokens}, [s_sae], features)

    # 3. MeanCorr evaluation of every method on one universe
    def evaluate(folder: Path):
        from .evaluate_cli import write_outputs
        from .features.store import FeatureSet
        from .methods import EvalContext, evaluate_methods
        fs = FeatureSet.load(s_feat.path / "features", labels=False)
        y0, y1 = cfg.evaluate.years
        f0, f1 = cfg.evaluate.fit_years
        from .data import evaluation_universe
        universe = [t for t in evaluation_universe(companies, prices) if t in fs.tickers]
        ctx = EvalContext(companies, prices, universe=universe, years=tuple(range(y0, y1 + 1)),
                          fit_years=tuple(range(f0, f1 + 1)), n_seeds=cfg.evaluate.n_seeds,
                          linkage=cfg.evaluate.linkage)
        for name, V in fs.vectors.items():  # the vectors of this run, not a global cache
            ctx.cache["minilm" if name == "embedding" else name] = V.loc[ctx.universe]
        ev = evaluate_methods(ctx, cfg.evaluate.methods)
        payload = {"universe": len(ctx.universe), "k": ctx.k, "linkage": ctx.linkage,
                   "baseline": ev.baseline, "methods": ev.method_dicts()}
        write_outputs(folder, ev.table(), ev.results, ev.resolved, ev.restricted, payload, ctx,
                      ev.peers)

    s_eval = stage("evaluate", {**dataclasses.asdict(cfg.evaluate), **inputs}, [s_feat],
                   evaluate)

    # 4. walk-forward pairs backtest per method
    def backtest(folder: Path):
        from .data import clean_prices, evaluation_universe
        from .features.store import FeatureSet
        from .pairs import BacktestConfig, SelectionConfig, run_backtest, sharpe_difference
        from .pairs.backtest import method_context
        from .pairs.cli import write_outputs
        from .pairs.select import _vector_clusters, resolve_partition
        from .pairs.strategy import StrategyConfig
        fs = FeatureSet.load(s_feat.path / "features", labels=False)
        bt = BacktestConfig(start=cfg.backtest.start, end=cfg.backtest.end,
                            selection=SelectionConfig(top_n=cfg.backtest.top_n),
                            strategy=StrategyConfig(fees=cfg.backtest.fees_bps / 1e4))
        traded = clean_prices(prices)
        universe = [t for t in evaluation_universe(companies, prices) if t in fs.tickers]
        ctx = method_context(companies, traded, universe, 0, bt)
        parts = {}
        for m in cfg.backtest.methods:
            if m in fs.vectors:
                parts[m] = _vector_clusters(m, lambda c, V=fs.vectors[m]: V)(ctx)
            else:
                parts[m] = resolve_partition(m, ctx)
        res = run_backtest(traded, parts, universe, bt)
        base = "gics" if "gics" in parts else next(iter(parts))
        tests = {m: {"baseline": base, **sharpe_difference(res.returns[m], res.returns[base],
                                                           "memmel")._asdict()}
                 for m in parts if m != base}
        summary = {"methods": {m: {k: (float(v) if math.isfinite(v) else None)
                                   for k, v in res.metrics.loc[m].items()} for m in parts},
                   "period": [str(res.returns.index[0].date()), str(res.returns.index[-1].date())],
                   "n_periods": len(res.periods), "universe": len(universe)}
        write_outputs(folder, res, summary, tests)

    s_bt = stage("backtest", {**dataclasses.asdict(cfg.backtest), **inputs}, [s_feat], backtest)

    # 5. the run folder and the report
    metrics = _collect(cfg, companies, prices, s_sae, s_eval, s_bt)
    out.mkdir(parents=True, exist_ok=True)
    for s in (s_eval, s_bt):
        for f in s.path.iterdir():
            if f.suffix in (".csv", ".png"):
                shutil.copy2(f, out / f"{s.name}_{f.name}")
    _write_vectors(s_feat.path / "features", out / "vectors")
    # where each stage's outputs live in the cache (machine-specific, so not in metrics.json)
    (out / "stages.json").write_text(json.dumps(
        {s.name: {"key": s.key, "path": str(s.path), "cached": s.cached} for s in stages},
        indent=1))
    (out / "config.toml").write_text(cfg.to_toml())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    from .report.build import write_run_report
    write_run_report(out, metrics, stages)
    log(f"wrote {out}/report.html ({time.perf_counter() - t_start:.0f}s)")
    return metrics


#: the per-method figures of metrics.json: the every-firm peer metrics lead, MeanCorr follows
METRIC_KEYS = tuple(f"{m}{s}" for m in ("peer_r2", "knn_r2", "excess_r2", "delta_r2",
                                        "knn_corr")
                    for s in ("_in_sample", "_out_of_sample")) + (
    "peer_coverage", "mean_corr", "mean_corr_in_sample", "mean_corr_out_of_sample",
    "pair_weighted", "pair_weighted_out_of_sample", "coverage", "n_clusters")


def _write_vectors(features: Path, folder: Path) -> None:
    """Every method's company vectors, one parquet file per method (tickers as the index), so
    an analyst can load them (`pd.read_parquet`) and a run can be re-scored elsewhere."""
    from .features.store import FeatureSet
    fs = FeatureSet.load(features, labels=False)
    folder.mkdir(parents=True, exist_ok=True)
    for name, V in fs.vectors.items():
        V = V.set_axis(V.columns.astype(str), axis=1).rename_axis("ticker")
        V.to_parquet(folder / f"{name}.parquet")


def _won(m: dict) -> dict:
    """Out-of-sample paired differences against the baseline: mean and years won."""
    out = {}
    for metric in ("peer_r2", "knn_r2", "delta_r2"):
        d = m["vs_baseline"][metric]["out_of_sample"]
        out[f"{metric}_diff"] = d["mean_diff"]
        out[f"{metric}_years_won"] = f"{d['years_won']}/{d['years']}"
    return out


def _collect(cfg, companies, prices, s_sae, s_eval, s_bt) -> dict:
    ev = json.loads((s_eval.path / "results.json").read_text())
    bt = json.loads((s_bt.path / "backtest.json").read_text())
    sae = json.loads((s_sae.path / "sae_stats.json").read_text())
    sae.pop("seconds", None)  # timings vary between runs; metrics.json must not
    return {
        "inputs": {"companies": cfg.data.companies or "bundled:data/companies.csv",
                   "description_vintage": companies.attrs.get("vintage"),
                   "prices": prices.attrs.get("source"),
                   "price_dates": [str(prices.index[0].date()), str(prices.index[-1].date())]},
        "protocol": {"in_sample": list(cfg.evaluate.fit_years),
                     "years": list(cfg.evaluate.years),
                     "out_of_sample": [cfg.evaluate.fit_years[1] + 1, cfg.evaluate.years[1]]},
        "sae": sae,
        "evaluate": {"universe": ev["universe"], "k": ev["k"], "linkage": ev.get("linkage"),
                     "methods": {n: {k: m.get(k) for k in METRIC_KEYS}
                                 for n, m in ev["methods"].items()},
                     "vs_gics": {n: _won(m) for n, m in ev["methods"].items()
                                 if "vs_baseline" in m}},
        "backtest": bt,
    }


def register(sub) -> None:
    p = sub.add_parser("run", help="the main job: encode, SAE, features, evaluate, backtest, "
                                   "report (every stage cached)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file with [data], [sae], [features], [evaluate], [backtest] "
                        "tables (default: the built-in defaults; see config.toml of a run)")
    p.add_argument("--out", metavar="DIR", default="runs/main", help="run folder")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config as TOML and exit")
    p.set_defaults(func=_main)


def _main(args) -> int:
    cfg = RunConfig.load(args.config)
    check_layer_in_model(cfg.sae.model, cfg.sae.layer, path=args.config)
    for layer in cfg.sae.extra_layers:
        check_layer_in_model(cfg.sae.model, layer, "[sae] extra_layers", path=args.config)
    if args.print_config:
        print(cfg.to_toml())
        return 0
    existed = Path(args.out).exists()
    try:
        run(cfg, args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    except BaseException:  # a failed run leaves no partial run folder behind
        if not existed:
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(f"{args.out}/report.html")
    return 0
