"""`finsae run`, the main job: its settings (`config`), the stage cache (`stages`), the run
itself (`run`) and its HTML report (`report`)."""

from .config import (BacktestSettings, DataSection, EvaluateConfig, FeatureSection, RunConfig,
                     SAESection)
from .run import run

__all__ = ["BacktestSettings", "DataSection", "EvaluateConfig", "FeatureSection", "RunConfig",
           "SAESection", "run"]
