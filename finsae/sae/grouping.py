"""Group-SAE grouping: layers clustered by angular distance, AMAD, evenly spaced groups, and the
cost model of training one SAE per group (Ghilardi et al., EMNLP 2025).

Grouping. Layers 0..L-2 are clustered by complete linkage on d (a group's diameter is its
largest pairwise distance; d from `finsae.sae.layer_distance`) with scipy; the last layer always
gets its own SAE, as in the paper. G counts the groups among layers 0..L-2, so the paper's
Pythia-160M table starts at G = 1 and G groups mean G + 1 SAEs in all. Complete linkage does
not force a group to be a run of adjacent layers; on residual streams d grows with the layer
gap, so groups come out contiguous in practice, and `GroupingResult.contiguous` says whether
they did. ``contiguous=True`` asks for the constrained variant (only neighbouring groups may
merge), via scikit-learn's connectivity option.

AMAD(G) = mean over the G groups of the group's diameter (singletons count 0); the chosen G is
the smallest with AMAD(G) < threshold (0.2 in the paper).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


def _check_dist(dist) -> np.ndarray:
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance matrix must be square, got shape {d.shape}")
    if not np.allclose(d, d.T, atol=1e-8) or np.any(np.diag(d) != 0):
        raise ValueError("distance matrix must be symmetric with a zero diagonal")
    return d


def cluster_layers(dist, n_groups: int, layers: Sequence[int] | None = None,
                   contiguous: bool = False) -> list[list[int]]:
    """Complete-linkage clustering of `layers` (default: all) into n_groups groups, each a sorted
    list of layer indices; groups ordered by their first layer."""
    d = _check_dist(dist)
    layers = list(range(len(d))) if layers is None else list(layers)
    n = len(layers)
    if not 1 <= n_groups <= n:
        raise ValueError(f"n_groups must be in 1..{n}, got {n_groups}")
    if n_groups == n:
        return [[l] for l in layers]
    if n_groups == 1:
        return [layers]
    sub = d[np.ix_(layers, layers)]
    if contiguous:
        from scipy.sparse import diags
        from sklearn.cluster import AgglomerativeClustering
        chain = diags([np.ones(n - 1), np.ones(n - 1)], [-1, 1])
        labels = AgglomerativeClustering(n_clusters=n_groups, metric="precomputed",
                                         linkage="complete", connectivity=chain).fit_predict(sub)
    else:
        from scipy.cluster.hierarchy import cut_tree, linkage
        from scipy.spatial.distance import squareform
        z = linkage(squareform(sub, checks=False), method="complete")
        # cut_tree gives exactly n_groups clusters even with tied merge heights (fcluster's
        # maxclust may give fewer)
        labels = cut_tree(z, n_clusters=n_groups).ravel()
    groups: dict[int, list[int]] = {}
    for l, lab in zip(layers, labels):
        groups.setdefault(int(lab), []).append(l)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def diameter(dist, group: Sequence[int]) -> float:
    """Largest pairwise distance inside a group (0 for a single layer)."""
    d = np.asarray(dist)
    return float(d[np.ix_(group, group)].max()) if len(group) > 1 else 0.0


def amad(dist, groups: Sequence[Sequence[int]]) -> float:
    """Average maximum angular distance: the mean diameter of the groups."""
    return float(np.mean([diameter(dist, g) for g in groups]))


def is_contiguous(groups: Sequence[Sequence[int]]) -> bool:
    return all(list(g) == list(range(min(g), max(g) + 1)) for g in groups)


class GroupingResult(NamedTuple):
    distances: np.ndarray                   # [L, L]
    amad: dict[int, float]                  # G -> AMAD(G), G = groups among layers 0..L-2
    partitions: dict[int, list[list[int]]]  # G -> groups of layers 0..L-2 (last layer not listed)
    chosen_g: int
    groups: list[list[int]]                 # chosen partition, the last layer alone appended
    threshold: float
    last_alone: bool
    contiguous: bool                        # whether every chosen group is a run of layers

    def to_dict(self) -> dict:
        return {"distances": np.round(self.distances, 6).tolist(),
                "amad": {str(g): round(v, 6) for g, v in self.amad.items()},
                "chosen_g": self.chosen_g, "n_saes": len(self.groups), "groups": self.groups,
                "threshold": self.threshold, "last_alone": self.last_alone,
                "contiguous": self.contiguous,
                "partitions": {str(g): p for g, p in self.partitions.items()}}


def choose_groups(dist, threshold: float = 0.2, last_alone: bool = True,
                  contiguous: bool = False) -> GroupingResult:
    """AMAD(G) for every G and the smallest G with AMAD(G) < threshold."""
    d = _check_dist(dist)
    n = len(d)
    pool = list(range(n - 1)) if last_alone and n > 1 else list(range(n))
    partitions = {g: cluster_layers(d, g, pool, contiguous) for g in range(1, len(pool) + 1)}
    amads = {g: amad(d, p) for g, p in partitions.items()}
    # AMAD(len(pool)) = 0, so some G always qualifies when threshold > 0
    chosen = min((g for g, v in amads.items() if v < threshold), default=len(pool))
    groups = [list(g) for g in partitions[chosen]] + ([[n - 1]] if pool != list(range(n)) else [])
    return GroupingResult(d, amads, partitions, chosen, groups, float(threshold),
                          pool != list(range(n)), is_contiguous(groups))


def even_groups(n_layers: int, n_groups: int, last_alone: bool = True) -> list[list[int]]:
    """The baseline: n_groups runs of (nearly) equal length over layers 0..L-2, plus the last
    layer alone (or over all layers when last_alone is False)."""
    pool = n_layers - 1 if last_alone else n_layers
    if not 1 <= n_groups <= pool:
        raise ValueError(f"n_groups must be in 1..{pool}, got {n_groups}")
    cuts = np.linspace(0, pool, n_groups + 1).round().astype(int)
    groups = [list(range(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]
    return groups + ([[n_layers - 1]] if last_alone else [])


# ------------------------------------------------------------------------------- cost model

def sae_train_flops(d_in: int, d_sae: int, k: int, sparse: bool = True) -> float:
    """FLOPs per training token of a TopK SAE.

    Dense encoder forward 2*d*m. With the sparse kernels the encoder's weight gradient touches
    only the k selected rows (2*k*d) and the decoder is a gather of k rows (forward 2*k*d,
    backward 4*k*d); without them every matmul is dense (forward + backward = 3 x forward).
    AuxK and the optimizer step (O(d*m) but not per token) are left out.
    """
    if sparse:
        return 2 * d_in * d_sae + 8 * k * d_in
    return 3 * (2 * d_in * d_sae + 2 * d_sae * d_in)


def lm_forward_flops(params_per_block: float, depth: int, seq_len: int, d_model: int) -> float:
    """FLOPs per token of an LM forward through `depth` blocks: 2 * params per block plus the
    causal attention scores and mixing (2 * 2 * d * seq / 2 per block, halved by the mask)."""
    return depth * (2 * params_per_block + 2 * d_model * seq_len)


class Cost(NamedTuple):
    capture: float
    train: float

    @property
    def total(self) -> float:
        return self.capture + self.train


def training_cost(groups: Sequence[Sequence[int]], tokens: int,
                  train_per_token: float | Sequence[float],
                  capture_per_token_depth: float, shared_capture: bool) -> Cost:
    """Cost (FLOPs or seconds) of training one SAE per group on `tokens` tokens each.

    train_per_token: cost of one SAE training token (one number, or one per group).
    capture_per_token_depth: cost of one token through one LM block.
    shared_capture=True: one LM forward through the deepest layer feeds every SAE (activations
    of all layers captured together, as in the experiment); False: each SAE's run does its own
    forward up to its deepest layer (separate training runs, the paper's accounting).
    """
    per = ([train_per_token] * len(groups) if np.isscalar(train_per_token)
           else list(train_per_token))
    train = sum(p * tokens for p in per)
    if shared_capture:
        depth = max(max(g) for g in groups) + 1
        capture = tokens * depth * capture_per_token_depth
    else:
        capture = sum(tokens * (max(g) + 1) * capture_per_token_depth for g in groups)
    return Cost(float(capture), float(train))


def saving(baseline: Cost, other: Cost) -> float:
    """Fraction of the baseline's total cost saved."""
    return 1.0 - other.total / baseline.total


def equal_compute_width(d_in: int, d_sae: int, k: int, n_saes: int, n_layers: int,
                        multiple: int = 64) -> int:
    """Width of per-layer SAEs whose total training FLOPs (n_layers of them) match n_saes SAEs
    of width d_sae: the 'smaller per-layer SAEs at equal compute' baseline."""
    budget = sae_train_flops(d_in, d_sae, k) * n_saes / n_layers
    m = (budget - 8 * k * d_in) / (2 * d_in)
    return max(multiple, int(m // multiple) * multiple, k)
