"""The settings of `finsae run`: one table per stage ([data], [sae], [features], [evaluate],
[backtest]), read from TOML, checked, and written back into every run folder."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config_check import check_run_config
from ..data.errors import DataError
from ..features.company import DEFAULT_CONTENT_ONLY, DEFAULT_FEATURES, DEFAULT_POOLING
from ..lm.capture import CaptureConfig
from ..lm.defaults import DEFAULT_LAYER, DEFAULT_MODEL
from ..methods import EvaluateConfig
from ..pairs.settings import BacktestSettings
from ..sae.config import SAEConfig, TrainConfig


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
    model: str = DEFAULT_MODEL
    #: residual stream after this block (chosen on 2001-2010: experiments/results/search.md)
    layer: int = DEFAULT_LAYER
    #: more blocks, each with its own SAE, whose company vectors are joined to the layer's
    #: (each L2-normalised: the cosine is the mean of the blocks' cosines)
    extra_layers: list[int] = field(default_factory=list)
    #: tokens per description kept (truncation)
    max_tokens: int = CaptureConfig.max_tokens
    #: SAE architecture: topk, batchtopk, relu, jumprelu
    arch: str = SAEConfig.arch
    #: SAE width (latents; chosen on 2001-2010: experiments/results/search.md)
    d_sae: int = 16384
    #: active latents per token (TopK)
    k: int = SAEConfig.k
    #: SAE training text: descriptions (the companies' own), corpus (the bundled ~4,600
    #: FinanceDatabase business summaries), or both
    train_text: str = "both"
    #: training tokens (the training text's tokens are cycled through)
    train_tokens: int = TrainConfig.tokens
    #: tokens per optimizer step
    batch_size: int = TrainConfig.batch_size
    #: seed of the SAE's initialisation and batch order
    seed: int = TrainConfig.seed
    #: use this saved SAE instead of training one
    path: str | None = None


@dataclass
class FeatureSection:
    """Company vectors from the SAE latents (defaults: `finsae.features.company`, chosen on
    2001-2010)."""

    #: pooling of a description's token latents: sum, mean, max
    pooling: str = DEFAULT_POOLING
    #: pool only content words (no punctuation, stop words or the company's own name)
    content_only: bool = DEFAULT_CONTENT_ONLY
    #: per-latent weight: idf, standardize, or none
    weighting: str | None = DEFAULT_FEATURES["weighting"]
    #: drop latents active in more than this share of the companies (none: keep all)
    max_df: float | None = DEFAULT_FEATURES["max_df"]
    #: 1 + log tf (the same as tf = "sublinear")
    sublinear: bool = DEFAULT_FEATURES["sublinear"]
    #: term frequency of a latent read as a word: sublinear, binary, bm25 (none: see sublinear)
    tf: str | None = None
    #: keep each company's top_n latents after weighting (none: all)
    top_n: int | None = DEFAULT_FEATURES["top_n"]


#: what `finsae run` scores and trades: its own feature set adds the hidden-state baseline
RUN_EVALUATE_METHODS = ["sae", "hidden", "tfidf", "minilm", "gics_sub_industry", "gics_industry",
                        "gics_sector", "sic4", "sic2", "returns", "random", "one_cluster"]
RUN_BACKTEST_METHODS = ["sae", "embedding", "gics", "sic", "returns", "random"]


@dataclass
class RunConfig:
    data: DataSection = field(default_factory=DataSection)
    sae: SAESection = field(default_factory=SAESection)
    features: FeatureSection = field(default_factory=FeatureSection)
    evaluate: EvaluateConfig = field(
        default_factory=lambda: EvaluateConfig(methods=list(RUN_EVALUATE_METHODS)))
    backtest: BacktestSettings = field(
        default_factory=lambda: BacktestSettings(methods=list(RUN_BACKTEST_METHODS)))

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
            base = f.default_factory()  # the section's dataclass with the run's defaults
            names = {g.name for g in dataclasses.fields(base)}
            unknown = set(section) - names
            if unknown:
                raise DataError(f"unknown key(s) {', '.join(sorted(unknown))} in [{f.name}]; "
                                f"known: {', '.join(sorted(names))}", path=path)
            kw[f.name] = dataclasses.replace(base, **section)
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
