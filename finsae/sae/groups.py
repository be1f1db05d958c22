"""Group-SAE: one SAE for a group of similar layers (Ghilardi et al., EMNLP 2025).

Layers are compared by their angular distance, d(i, j) = E_tokens[arccos(cos(x_i, x_j)) / pi],
where x_i is one token's residual stream after block i. The distance is accumulated batch by
batch (`AngularDistance`), so only one batch of every layer is ever held in memory.

Centring. The authors' code subtracts a running mean of each layer before taking cosines: the
residual stream has a large shared mean direction that makes every pair of layers look alike.
`center="running"` does the same: the mean used for a batch is the mean of every token seen so
far, that batch included (so the first batch is centred by its own mean and later batches by an
ever better estimate). `center="none"` uses raw activations. The SmolLM2 experiment uses
"running"; the choice is recorded in the result.

Grouping. Layers 0..L-2 are clustered by complete linkage on d (a group's diameter is its
largest pairwise distance) with scipy; the last layer always gets its own SAE, as in the paper.
G counts the groups among layers 0..L-2, so the paper's Pythia-160M table starts at G = 1 and
G groups mean G + 1 SAEs in all. Complete linkage does not force a group to be a run of
adjacent layers; on residual streams d grows with the layer gap, so groups come out contiguous
in practice, and `GroupingResult.contiguous` says whether they did. ``contiguous=True`` asks for
the constrained variant (only neighbouring groups may merge), via scikit-learn's connectivity
option.

AMAD(G) = mean over the G groups of the group's diameter (singletons count 0); the chosen G is
the smallest with AMAD(G) < threshold (0.2 in the paper).
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch


class AngularDistance:
    """Streaming mean of arccos(cos(x_i, x_j)) / pi over tokens, for every pair of layers.

    Call `update` with one batch of every layer (a [L, N, d] tensor or a list of L [N, d]
    tensors holding the same N tokens), then `result()`. Sums are kept in float64.
    """

    def __init__(self, n_layers: int, center: str = "running"):
        if center not in ("running", "none"):
            raise ValueError(f"center must be 'running' or 'none', got {center!r}")
        self.n_layers, self.center = n_layers, center
        self.n_tokens = 0
        self._sum = torch.zeros(n_layers, n_layers, dtype=torch.float64)
        self._mean: torch.Tensor | None = None    # [L, d] running mean (float64)

    @torch.no_grad()
    def update(self, acts: torch.Tensor | Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> None:
        """acts: [L, N, d] or L tensors [N, d] (or [..., d], flattened); mask: [N] bool, the
        tokens to use (e.g. not padding, not BOS, not a massive activation)."""
        x = acts if isinstance(acts, torch.Tensor) else torch.stack([a for a in acts])
        if x.shape[0] != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {x.shape[0]}")
        x = x.reshape(self.n_layers, -1, x.shape[-1])
        if mask is not None:
            x = x[:, mask.reshape(-1).to(torch.bool)]
        n = x.shape[1]
        if n == 0:
            return
        # float64 throughout: arccos is steep near cos = 1, where neighbouring layers sit
        x = x.double()
        if self.center == "running":
            batch_mean = x.mean(1)
            if self._mean is None:
                self._mean = batch_mean
            else:   # mean of all tokens so far, this batch included
                self._mean += (batch_mean - self._mean) * (n / (self.n_tokens + n))
            x = x - self._mean[:, None]
        u = torch.nn.functional.normalize(x, dim=-1).transpose(0, 1)    # [N, L, d]
        for s in range(0, n, 1024):     # bound the [chunk, L, L] cosine tensor
            cos = torch.bmm(u[s:s + 1024], u[s:s + 1024].transpose(1, 2))
            self._sum += (torch.arccos(cos.clamp(-1, 1)) / math.pi).sum(0)
        self.n_tokens += n

    def result(self) -> np.ndarray:
        """[L, L] symmetric matrix with a zero diagonal."""
        if self.n_tokens == 0:
            raise ValueError("no tokens seen")
        d = (self._sum / self.n_tokens).numpy()
        d = (d + d.T) / 2
        np.fill_diagonal(d, 0.0)    # arccos(1) in float32 is ~3e-4, not 0
        return d


def angular_distances(batches: Iterable, n_layers: int, center: str = "running",
                      max_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """Distance matrix from an iterable of per-batch activations ([L, N, d], or (acts, mask)
    pairs). Stops once max_tokens tokens were used. Returns (matrix, tokens used)."""
    acc = AngularDistance(n_layers, center)
    for b in batches:
        acts, mask = b if isinstance(b, tuple) else (b, None)
        acc.update(acts, mask)
        if max_tokens is not None and acc.n_tokens >= max_tokens:
            break
    return acc.result(), acc.n_tokens


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


def plot_distances(dist, path, groups: Sequence[Sequence[int]] | None = None,
                   title: str = "angular distance between layers") -> None:
    """Heatmap of the distance matrix, with the chosen groups outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    d = np.asarray(dist)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    im = ax.imshow(d, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label="arccos(cos) / pi")
    for g in groups or []:
        if is_contiguous([g]):
            a = min(g) - 0.5
            ax.add_patch(Rectangle((a, a), len(g), len(g), fill=False, ec="red", lw=1.5))
    ax.set_xlabel("layer (block output)")
    ax.set_ylabel("layer (block output)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------- group training data

def group_tokens(acts, group: Sequence[int], seed: int = 0) -> torch.Tensor:
    """The training set of a group's SAE: token n is the activation of a random layer of the
    group at token n (uniform, seeded). `acts` is [L, N, d] or a dict layer -> [N, d] holding
    the same N tokens for every layer; the result is [N, d], as many tokens as one layer has,
    so a group SAE sees the same number of tokens as a per-layer SAE."""
    group = list(group)
    first = acts[group[0]]
    n = first.shape[0]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(group), (n,), generator=g)
    out = torch.empty_like(first)
    for j, layer in enumerate(group):
        sel = pick == j
        out[sel] = acts[layer][sel]
    return out


def mixed_layer_batches(batches: Iterable, group: Sequence[int], seed: int = 0):
    """Streaming form of `group_tokens`: from batches holding every layer ([L, N, d] or dict),
    yield [N, d] batches whose token n comes from a random layer of the group."""
    g = torch.Generator().manual_seed(seed)
    group = list(group)
    for b in batches:
        first = b[group[0]]
        pick = torch.randint(len(group), (first.shape[0],), generator=g)
        out = torch.empty_like(first)
        for j, layer in enumerate(group):
            out[pick == j] = b[layer][pick == j]
        yield out


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


def training_cost(groups: Sequence[Sequence[int]], tokens: int, train_per_token: float | Sequence[float],
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


# ---------------------------------------------------------------------------------- training

def train_group_sae(acts, group: Sequence[int], sae_cfg, train_cfg, *, out=None,
                    seed: int = 0):
    """One SAE for a group of layers (`finsae.sae.train_sae` on `group_tokens`). The saved
    cfg.json records the group under meta['layers']."""
    import copy as _copy

    from .train import train_sae
    cfg = _copy.deepcopy(sae_cfg)
    cfg.meta = {**cfg.meta, "layers": [int(l) for l in group], "hook": "resid_post",
                "group_sae": True}
    # float32: a float16 cache would overflow in the squared norms of the activation scale
    return train_sae(group_tokens(acts, group, seed).float(), cfg, train_cfg, out=out)


def transfer_sae(init, source, train_cfg, *, out=None, layer: int | None = None):
    """Fine-tune a copy of a trained SAE (`init`, acting on raw activations) on `source`, the
    activations of another layer: layer-wise transfer (Ghilardi et al. 2024).

    Uses train_sae's resume path: the copy is rescaled to the new layer's activation scale and
    handed over as a checkpoint with a fresh optimizer, zero tokens and no dead latents, so
    b_dec and every weight start from `init` instead of the usual initialisation.
    """
    import copy as _copy
    import tempfile
    from pathlib import Path

    from .metrics import massive_token_mask
    from .train import _adam, train_sae
    from .config import default_lr

    sae = _copy.deepcopy(init).train()
    sae.cfg = _copy.deepcopy(init.cfg)
    sae.cfg.meta = {**sae.cfg.meta, "transfer_from": sae.cfg.meta.get("layer",
                                                                         sae.cfg.meta.get("layers")),
                    **({"layer": int(layer)} if layer is not None else {})}
    if not isinstance(source, torch.Tensor):
        raise TypeError("transfer_sae needs the new layer's activations as a [tokens, d] tensor")
    x = source.float()
    scale = 1.0
    if train_cfg.normalize_activations:     # the same scale train_sae would compute
        kept = x[~massive_token_mask(x, train_cfg.massive_factor)].float()
        sample = kept[torch.randperm(len(kept), generator=torch.Generator().manual_seed(
            train_cfg.seed))[:65536]]
        scale = float(1.0 / sample.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))
    sae.fold_input_scale(1.0 / scale)       # now acts on scale * x, as training expects
    lr = train_cfg.lr if train_cfg.lr is not None else default_lr(sae.cfg.d_sae)
    state = {"sae": sae.state_dict(), "opt": _adam(list(sae.parameters()), lr).state_dict(),
             "since_fired": torch.zeros(sae.cfg.d_sae, dtype=torch.long), "tokens": 0,
             "steps": 0, "scale": scale,
             "rng": torch.Generator().manual_seed(train_cfg.seed).get_state()}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / "trainer.pt")
        return train_sae(x, sae.cfg, train_cfg, out=out, resume=tmp)


# ------------------------------------------------------------------------ from a language model

@torch.no_grad()
def model_layer_distances(lm, texts: Sequence[str], *, max_tokens: int = 128,
                          batch_size: int = 8, center: str = "running",
                          massive_factor: float | None = 10.0,
                          token_budget: int | None = None) -> tuple[np.ndarray, dict]:
    """Angular distances between the outputs of every block of `lm` (a `finsae.lm.LM`) on
    `texts`, streamed one batch of texts at a time: hooks on every block feed
    `AngularDistance` and nothing is kept. A BOS is prepended (the attention sink then sits on
    it) and dropped with the padding; tokens whose norm exceeds massive_factor x the layer's
    median in the batch at any layer are dropped too and counted. Stops after token_budget
    tokens. Returns (matrix, info)."""
    from ..lm.load import decoder_layers
    from .metrics import massive_token_mask

    if not len(texts):
        raise ValueError("no texts")
    tok = lm.tokenizer
    layers = decoder_layers(lm.model)
    acc = AngularDistance(len(layers), center)
    outs: list = [None] * len(layers)

    def hook(i):
        def f(_m, _i, o):
            outs[i] = o[0] if isinstance(o, tuple) else o
        return f

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(layers)]
    bos = tok.bos_token_id
    n_massive = n_seen = 0
    try:
        for s in range(0, len(texts), batch_size):
            enc = tok(list(texts[s:s + batch_size]), add_special_tokens=False, truncation=True,
                      max_length=max_tokens)["input_ids"]
            ids = [([bos] if bos is not None else []) + x for x in enc if x]
            if not ids:
                continue
            T = max(map(len, ids))
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            inp = torch.tensor([x + [pad] * (T - len(x)) for x in ids], device=lm.device)
            mask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in ids],
                                device=lm.device)
            lm.model(input_ids=inp, attention_mask=mask, use_cache=False)
            keep = mask.bool()
            if bos is not None:
                keep[:, 0] = False
            acts = torch.stack([o[keep].float().cpu() for o in outs])     # [L, n, d]
            massive = torch.zeros(acts.shape[1], dtype=torch.bool)
            if massive_factor is not None:
                for a in acts:
                    massive |= massive_token_mask(a, massive_factor)
            n_seen += acts.shape[1]
            n_massive += int(massive.sum())
            acc.update(acts, ~massive)
            if token_budget is not None and acc.n_tokens >= token_budget:
                break
    finally:
        for h in handles:
            h.remove()
    return acc.result(), {"n_tokens": acc.n_tokens, "n_tokens_seen": n_seen,
                          "n_massive_dropped": n_massive, "n_texts": min(s + batch_size,
                                                                          len(texts)),
                          "center": center, "massive_factor": massive_factor}
