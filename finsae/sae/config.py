"""Dataclass configs for an SAE and for its training run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..data.errors import DataError

#: the architectures of `finsae.sae.architectures.REGISTRY`, listed here so a config can be
#: checked without importing torch code
ARCHS = ("topk", "batchtopk", "relu", "jumprelu", "matryoshka_batchtopk")
#: the kinds that keep k active latents per token (on average over the batch for BatchTopK)
TOPK_ARCHS = ("topk", "batchtopk", "matryoshka_batchtopk")


@dataclass
class SAEConfig:
    """What defines an SAE's shape and its forward pass (saved as cfg.json)."""

    d_in: int
    d_sae: int
    #: SAE architecture: topk, batchtopk, relu, jumprelu, matryoshka_batchtopk
    arch: str = "topk"
    #: active latents per token (topk; batchtopk kinds: on average over the batch)
    k: int = 32
    #: JumpReLU: initial threshold
    jumprelu_init_threshold: float = 1e-3
    #: JumpReLU: width of the straight-through kernel
    jumprelu_bandwidth: float = 1e-3
    #: Matryoshka BatchTopK: strictly increasing prefix widths; the loss sums the FVU of the
    #: reconstruction by each prefix of latents (d_sae is appended when the last is smaller)
    matryoshka_widths: list[int] = field(default_factory=list)
    #: free-form provenance (model, layer, hook, dataset); not used by the forward pass
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.arch = str(self.arch).lower()
        if self.arch not in ARCHS:
            raise DataError(f"unknown SAE architecture {self.arch!r}; known: {', '.join(ARCHS)}")
        for name in ("d_in", "d_sae"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise DataError(f"{name} must be a positive integer, got {v!r}")
        if self.arch in TOPK_ARCHS and not 0 < self.k <= self.d_sae:
            raise DataError(f"k must be in 1..d_sae={self.d_sae}, got {self.k}")
        if self.arch == "matryoshka_batchtopk":
            self.matryoshka_widths = _matryoshka_widths(self.matryoshka_widths, self.d_sae)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SAEConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _matryoshka_widths(widths, d_sae: int) -> list[int]:
    """Checked prefix widths, d_sae appended when missing (as SAELens does)."""
    w = [int(v) for v in (widths or [])]
    if not w:
        raise DataError("matryoshka_batchtopk needs matryoshka_widths (e.g. [d_sae // 4, "
                        "d_sae // 2, d_sae])")
    if w[-1] != d_sae:
        w.append(d_sae)
    if w[0] <= 0 or any(a >= b for a, b in zip(w, w[1:])) or w[-1] != d_sae:
        raise DataError(f"matryoshka_widths must increase strictly from > 0 up to "
                        f"d_sae={d_sae}, got {widths}")
    return w


def default_lr(d_sae: int) -> float:
    """Adam learning rate that scales with width: 2e-4 / sqrt(d_sae / 2^14) (Gao et al. 2024)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass
class TrainConfig:
    """How to train. Token counts are counted after massive tokens are dropped."""

    #: training tokens (the activations are cycled through)
    tokens: int = 1_000_000
    #: tokens per optimizer step (under torchrun: the global batch)
    batch_size: int = 4096
    #: Adam learning rate (none: 2e-4 / sqrt(d_sae / 2^14), Gao et al. 2024)
    lr: float | None = None
    #: seed of the initialisation and of the batch order
    seed: int = 0
    #: decoder-bias init: "geometric_median", "mean" or "zero" (zero kills latents on
    #: residual streams with a large mean, see the module docs)
    b_dec_init: str = "geometric_median"
    #: scale inputs so their mean squared norm is 1; folded into the weights when saving
    normalize_activations: bool = True
    #: drop tokens whose norm exceeds this multiple of the median norm (none or 0: keep all)
    massive_factor: float | None = 10.0
    #: a latent is dead once it has not fired for this many tokens (OpenAI/EleutherAI use 10M;
    #: capped at a quarter of the run so short runs still get the AuxK signal)
    dead_tokens: int = 10_000_000
    #: weight of the AuxK loss (dead latents reconstruct the residual error; TopK kinds)
    auxk_coef: float = 1 / 32
    #: ReLU SAE: L1 penalty; JumpReLU: L0 penalty
    l1_coef: float = 5e-3
    l0_coef: float = 1e-3
    #: tokens in the shuffling buffer of a streamed source
    buffer_tokens: int = 2**18
    #: tokens between checkpoints (None: only the final save)
    checkpoint_every: int | None = None
    #: use the sparse TopK kernels (False: plain autograd, same maths, slower)
    sparse_kernels: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.massive_factor is not None and self.massive_factor <= 0:
            self.massive_factor = None  # 0 keeps every token, as the flag always said
        if self.b_dec_init not in ("geometric_median", "mean", "zero"):
            raise DataError(f"b_dec_init must be geometric_median, mean or zero, "
                            f"got {self.b_dec_init!r}")
        if self.tokens <= 0 or self.batch_size <= 0:
            raise DataError("tokens and batch_size must be positive")

    def to_dict(self) -> dict:
        return asdict(self)
