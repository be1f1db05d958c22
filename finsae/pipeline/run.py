"""`finsae run`: the main job, end to end, with every stage cached by the hash of its inputs.

    encode + train SAE  ->  company features  ->  evaluate  ->  backtest  ->  report

A run folder holds the config (``config.toml``), ``metrics.json``, CSV tables, PNG plots and a
self-contained ``report.html``. A change of one setting re-runs only the stages it affects
(`finsae.pipeline.stages.run_stage`); a second run of the same config reuses everything and
writes the same ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from ..config_check import check_layer_in_model, check_run_config, check_run_inputs
from ..hashing import file_digest, json_key
from .config import RunConfig
from .stages import StageResult, run_stage

#: the layout version of the evaluate and backtest stage folders (part of their cache keys)
STAGE_LAYOUT = 2


def _file_id(path: str | None) -> str | None:
    """Content hash of an input file, so an edited file invalidates the stages that read it."""
    return None if path is None else file_digest(path, 16)


def run(config: RunConfig, out: str | Path, *, log=print) -> dict:
    """Run every stage (reusing cached ones) and write the run folder. Returns metrics."""
    from ..data import load_companies, load_prices
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
        from ..lm import encode_texts, load_lm
        from ..sae import (
            SAEConfig,
            TrainConfig,
            evaluate_reconstruction,
            load_sae,
            train_sae,
        )
        lm = load_lm(cfg.sae.model)
        layers = [cfg.sae.layer, *cfg.sae.extra_layers]
        store = encode_texts(lm, described["description"].tolist(), layers=sorted(set(layers)),
                             max_tokens=cfg.sae.max_tokens)
        corpus = None
        if cfg.sae.train_text in ("corpus", "both") and not cfg.sae.path:
            from ..data.corpus import load_corpus
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

    from ..sae.train import TRAIN_RECIPE
    s_sae = stage("sae", {**dataclasses.asdict(cfg.sae), **inputs, "recipe": TRAIN_RECIPE}, [],
                  train)

    # 2. company vectors: SAE features, hidden state, MiniLM, TF-IDF (+ labels)
    def features(folder: Path):
        from ..features.build import build_feature_set
        extra = [(lx, s_sae.path / ("sae" if cfg.sae.path else f"sae_L{lx}"))
                 for lx in cfg.sae.extra_layers]
        built = build_feature_set(described, model=cfg.sae.model, layer=cfg.sae.layer,
                                  sae=s_sae.path / "sae", max_tokens=cfg.sae.max_tokens,
                                  extra=extra,
                                  **dataclasses.asdict(cfg.features))
        shutil.copytree(built, folder / "features")

    from ..features.build import FEATURES_RECIPE
    s_feat = stage("features", {**dataclasses.asdict(cfg.features),
                               "max_tokens": cfg.sae.max_tokens, "recipe": FEATURES_RECIPE},
                   [s_sae], features)

    # 3. every method scored on one universe: peer metrics and MeanCorr
    def universe_of(fs):
        from ..data import evaluation_universe
        return [t for t in evaluation_universe(companies, prices) if t in fs.tickers]

    def evaluate(folder: Path):
        from ..features.store import FeatureSet
        from ..methods import EvalContext, evaluate_methods
        fs = FeatureSet.load(s_feat.path / "features", labels=False)
        ctx = EvalContext.from_config(companies, prices, cfg.evaluate, universe=universe_of(fs),
                                      features=fs)  # the vectors of this run
        ev = evaluate_methods(ctx, cfg.evaluate.methods)
        ev.save(folder, cfg.evaluate.ci_by, cfg.evaluate.n_boot)

    s_eval = stage("evaluate", {**dataclasses.asdict(cfg.evaluate), **inputs,
                                "layout": STAGE_LAYOUT}, [s_feat], evaluate)

    # 4. walk-forward pairs backtest per method
    def backtest(folder: Path):
        from ..features.store import FeatureSet
        from ..jsonable import write_json
        from ..pairs.compare import backtest_methods
        fs = FeatureSet.load(s_feat.path / "features", labels=False)
        report = backtest_methods(companies, prices, cfg.backtest, universe=universe_of(fs),
                                  features=fs)
        report.save(folder)
        write_json(folder / "summary.json", report.summary())

    s_bt = stage("backtest", {**dataclasses.asdict(cfg.backtest), **inputs,
                              "layout": STAGE_LAYOUT}, [s_feat], backtest)

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
    from .report import write_run_report
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
    from ..features.store import FeatureSet
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
    bt = json.loads((s_bt.path / "summary.json").read_text())
    sae = json.loads((s_sae.path / "sae_stats.json").read_text())
    sae.pop("seconds", None)  # timings vary between runs; metrics.json must not
    for extra in sae.get("extra_layers", {}).values():
        extra.pop("seconds", None)
    return {
        "inputs": {"companies": cfg.data.companies or "bundled:data/companies.csv",
                   "description_vintage": companies.attrs.get("vintage"),
                   "prices": prices.attrs.get("source"),
                   "price_dates": [str(prices.index[0].date()), str(prices.index[-1].date())]},
        "protocol": {"in_sample": list(cfg.evaluate.fit_years),
                     "years": list(cfg.evaluate.years),
                     "out_of_sample": [cfg.evaluate.fit_years[1] + 1, cfg.evaluate.years[1]]},
        "sae": sae,
        "evaluate": {"universe": ev["universe"]["n_companies"], "k": ev["protocol"]["k"],
                     "linkage": ev["protocol"]["linkage"],
                     "methods": {n: {k: m.get(k) for k in METRIC_KEYS}
                                 for n, m in ev["methods"].items()},
                     "vs_gics": {n: _won(m) for n, m in ev["methods"].items()
                                 if "vs_baseline" in m}},
        "backtest": bt,
    }
