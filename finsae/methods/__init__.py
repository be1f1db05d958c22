"""Grouping and similarity methods: one registry for evaluate, cluster, backtest and run.

- `context`: `EvaluateConfig` (the settings of a comparison) and `EvalContext` (one universe,
  its return panels and the vectors of one feature set);
- `registry`: names, aliases and `resolve(name, ctx) -> Method` (with `partition_at(start,
  end)` for the backtest's windows);
- `evaluation`: `score`, `peer_score`, `evaluate_methods` -> `Evaluation` (`to_dict`, `save`).
"""

from .context import DEFAULT_METHODS, EvalContext, EvaluateConfig, year_range
from .evaluation import BASELINE, Evaluation, evaluate_methods, peer_score, score
from .registry import (ALIASES, CLASSIFICATIONS, KNN_PAIRS, PARTITIONS, SUFFIXES, VECTORS, Method,
                       canonical, is_known, known_methods, resolve, supervised)

__all__ = ["DEFAULT_METHODS", "EvalContext", "EvaluateConfig", "year_range", "BASELINE",
           "Evaluation", "evaluate_methods", "peer_score", "score", "ALIASES",
           "CLASSIFICATIONS", "KNN_PAIRS", "PARTITIONS", "SUFFIXES", "VECTORS", "Method",
           "canonical", "is_known", "known_methods", "resolve", "supervised"]
