"""How well a grouping or a similarity captures return co-movement.

- `meancorr`: MeanCorr, the paper's within-cluster correlation (kept for comparison; it can
  be gamed by catch-all clusters and singletons).
- `meancorr_results`: MeanCorr results, seed averages and the comparison table.
- `protocol`: the in-sample / out-of-sample years and threshold selection on them.
- `peers`: the every-firm metrics that decide (peer R², excess R², ΔR² over the market,
  kNN-10 R² and corr; ``docs/evaluation.md``).
"""

from .meancorr import ReturnPanel, screened_returns
from .meancorr_results import MeanCorrResult, average_results, compare
from .peers import HIERARCHIES, KNN, METRICS, PeerPanel, PeerResult, hierarchy_of
from .protocol import (IN_SAMPLE, OUT_OF_SAMPLE, YEARS, select_fixed, select_rolling,
                       threshold_scores)

__all__ = ["IN_SAMPLE", "OUT_OF_SAMPLE", "YEARS", "MeanCorrResult", "ReturnPanel",
           "average_results", "compare", "screened_returns", "select_fixed", "select_rolling",
           "threshold_scores", "HIERARCHIES", "KNN", "METRICS", "PeerPanel", "PeerResult",
           "hierarchy_of"]
