"""How well a grouping or a similarity captures return co-movement.

- `meancorr`: MeanCorr, the paper's within-cluster correlation (kept for comparison; it can
  be gamed by catch-all clusters and singletons).
- `peers`: the every-firm metrics that decide (peer R², excess R², ΔR² over the market,
  kNN-10 R² and corr; ``docs/evaluation.md``).
"""

from .meancorr import (IN_SAMPLE, OUT_OF_SAMPLE, YEARS, MeanCorrResult, ReturnPanel,
                       average_results, compare, screened_returns, select_fixed, select_rolling,
                       threshold_scores)
from .peers import HIERARCHIES, KNN, METRICS, PeerPanel, PeerResult, hierarchy_of

__all__ = ["IN_SAMPLE", "OUT_OF_SAMPLE", "YEARS", "MeanCorrResult", "ReturnPanel",
           "average_results", "compare", "screened_returns", "select_fixed", "select_rolling",
           "threshold_scores", "HIERARCHIES", "KNN", "METRICS", "PeerPanel", "PeerResult",
           "hierarchy_of"]
