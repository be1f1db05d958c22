"""Training: cached activations or a live LM stream -> a trained SAE folder.

Recipe (Gao et al. 2024, the TopK defaults of EleutherAI sparsify):
- massive-activation tokens are dropped (counted) before anything else;
- inputs are scaled so their mean squared norm is 1; the scale is folded into the saved
  weights, so the saved SAE acts on raw activations;
- b_dec starts at the geometric median (or mean) of the data: SmolLM2's block-15 stream has a
  mean vector of norm ~132 against an RMS token norm ~250, and with b_dec = 0 most latents die;
- TopK kinds start as sparsify's SparseCoder: the encoder at nn.Linear's default scale, the
  decoder its unit-norm copy (ReLU and JumpReLU: encoder = unit decoder);
- Adam (fused where torch has it), lr = 2e-4 / sqrt(d_sae / 2^14), constant;
- decoder rows kept at unit norm, the gradient component along them removed before each step;
- AuxK on latents that have not fired for `dead_tokens` tokens: the top d_in / 2 of them,
  the loss scaled by min(#dead / (d_in / 2), 1), as Gao et al., sparsify and SAELens.

The activation sources and the shuffled batches live in `finsae.sae.activations`
(re-exported here).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .. import dist
from ..data.errors import DataError
from .activations import Batches, load_activations, stream_activations
from .architectures import SparseAutoencoder, build_sae
from .config import TOPK_ARCHS, SAEConfig, TrainConfig, default_lr
from .io import save_sae

#: the training recipe's version, in cache keys and in each trained folder's provenance: bump it
#: when a change alters what training produces from the same settings (2: sparsify's encoder
#: init and AuxK with k_aux = d_in / 2, scaled by the dead fraction)
TRAIN_RECIPE = 2

__all__ = ["TRAIN_RECIPE", "Batches", "TrainResult", "folded_copy", "geometric_median", "load_activations",
           "stream_activations", "train_sae"]


def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-5) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances."""
    x = x.double()
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        done = (y_new - y).norm() <= tol * y.norm().clamp_min(1e-8)
        y = y_new
        if done:
            break
    return y.float()


# --- training -------------------------------------------------------------------------------

@dataclass
class TrainResult:
    sae: SparseAutoencoder            # folded: acts on raw activations
    tokens: int
    steps: int
    seconds: float
    activation_scale: float
    n_massive_dropped: int
    n_tokens_seen: int
    dead_fraction: float              # not fired within the dead window at the end
    history: list[dict] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def _seeded_sample(batches: Batches, n: int, seed: int) -> Tensor:
    """The first n tokens of a permutation (seeded, its own generator) of a tensor source's kept
    tokens; up to n buffered tokens of a stream."""
    if batches.tensor is None:
        return batches.peek(n)
    t = batches.tensor
    return t[torch.randperm(len(t), generator=torch.Generator().manual_seed(seed))[:n]]


def _adam(params, lr):
    for kw in ({"fused": True}, {"foreach": True}, {}):
        try:
            return torch.optim.Adam(params, lr=lr, **kw)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("no Adam implementation available")  # pragma: no cover


def folded_copy(sae: SparseAutoencoder, scale: float) -> SparseAutoencoder:
    out = copy.deepcopy(sae).eval()
    if hasattr(out, "_workspace"):
        out._workspace = {}
    out.fold_input_scale(scale)
    return out


def train_sae(source, sae_cfg: SAEConfig | dict | None = None,
              train_cfg: TrainConfig | None = None, *, out: str | Path | None = None,
              resume: str | Path | None = None, init: SparseAutoencoder | None = None,
              d_sae: int | None = None,
              device: str | torch.device | None = None) -> TrainResult:
    """Train an SAE on `source`: a [n, d] tensor, a safetensors path/folder, or an iterable of
    [n, d] chunks (e.g. `stream_activations`). Saves to `out` (finsae layout) when given.

    init: start from this trained SAE (acting on raw activations, as saved) instead of a fresh
    initialisation, e.g. an SAE of a neighbouring layer (`transfer_sae`). Its weights are
    rescaled to `source`'s activation scale, taken on the first 65536 tokens of a seeded
    permutation of the kept tokens (a stream: its first buffer); the optimizer, the
    dead-latent counters and the batch order start fresh.

    device: where the SAE and its batches live (default cpu; the activations stay on the CPU
    and each batch is copied over). The returned SAE is on the CPU.

    Data parallel: when a `torch.distributed` process group is up (``torchrun``, see
    `finsae.dist`), each rank trains on its slice of every global batch of `batch_size` rows;
    the total variance that normalises the FVU is taken over the global batch, the gradients
    are averaged with one all-reduce per step (together with the fired-latent counts and the
    batch metrics), so the decoder projections, Adam and the dead-latent counters stay
    identical on every rank and the run matches a single process on the same global batches
    up to float rounding. Only rank 0 writes `out` and checkpoints. BatchTopK's batch-level
    top-k is taken per rank (its threshold is averaged), so it is an approximation there.
    """
    tc = train_cfg or TrainConfig()
    if init is not None and resume is not None:
        raise ValueError("train_sae: give init (a start) or resume (a checkpoint), not both")
    world, rank = dist.world_size(), dist.rank()
    device = torch.device("cpu" if device is None else device)
    on_cpu = device.type == "cpu"
    batches = Batches(source, tc.batch_size, seed=tc.seed, buffer_tokens=tc.buffer_tokens,
                      massive_factor=tc.massive_factor, rank=rank, world_size=world)
    sample = batches.peek(65536)
    d_in = sample.shape[1]
    if sae_cfg is None or isinstance(sae_cfg, dict):
        kw = dict(sae_cfg or {})
        kw.setdefault("d_sae", d_sae or 8 * d_in)
        sae_cfg = SAEConfig(d_in=d_in, **kw)
    if sae_cfg.d_in != d_in:
        raise DataError(f"activations have d={d_in} but the SAE config has d_in={sae_cfg.d_in}")
    torch.manual_seed(tc.seed)
    scale = 1.0
    if tc.normalize_activations:
        part = sample if init is None else _seeded_sample(batches, 65536, tc.seed)
        scale = float(1.0 / part.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))
    sae = build_sae(sae_cfg, seed=tc.seed).train()
    if init is None:
        with torch.no_grad():
            start = sample[:16384] * scale
            if tc.b_dec_init == "geometric_median":
                sae.b_dec.copy_(geometric_median(start))
            elif tc.b_dec_init == "mean":
                sae.b_dec.copy_(start.mean(0))
    if not on_cpu:
        sae.to(device)
    if world > 1:  # a streamed source samples per rank: rank 0's scale and init are used
        scale = float(dist.broadcast_(torch.tensor([scale], dtype=torch.float64,
                                                   device=device))[0])
        with torch.no_grad():
            for t in sae.state_dict().values():
                dist.broadcast_(t)
    lr = tc.lr if tc.lr is not None else default_lr(sae_cfg.d_sae)
    opt = _adam(list(sae.parameters()), lr)
    since_fired = torch.zeros(sae_cfg.d_sae, dtype=torch.long, device=device)
    tokens = steps = 0
    if init is not None:
        start = copy.deepcopy(init).train()
        start.fold_input_scale(1.0 / scale)       # acts on scale * x, as training expects
        sae.load_state_dict(start.state_dict())
        batches.g.manual_seed(tc.seed)            # the batch order of a fresh generator
    if resume is not None:
        state = torch.load(Path(resume) / "trainer.pt", weights_only=True,  # no pickled code
                           map_location=device)
        sae.load_state_dict(state["sae"])
        opt.load_state_dict(state["opt"])
        since_fired, tokens, steps, scale = (state["since_fired"], state["tokens"],
                                            state["steps"], state["scale"])
        batches.g.set_state(state["rng"])
    dead_window = max(tc.batch_size, min(tc.dead_tokens, tc.tokens // 4))
    sparsity = tc.l1_coef if sae_cfg.arch == "relu" else tc.l0_coef
    history: list[dict] = []
    bar = None
    if tc.progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=tc.tokens, initial=tokens, unit="tok", unit_scale=True, desc="sae")
    next_ckpt = (tokens // tc.checkpoint_every + 1) * tc.checkpoint_every \
        if tc.checkpoint_every else None
    ema = None
    t0 = time.perf_counter()
    it = iter(batches)
    while tokens < tc.tokens:
        try:
            x = next(it)
        except StopIteration:
            x = None
        if x is not None:
            if not on_cpu:
                x = x.to(device, non_blocking=True)
            if scale != 1.0:
                x = x * scale
        tv = None
        if world > 1:  # every rank stops when one runs out (a stream split unevenly)
            tv = _global_variance(x, d_in, device, world)
            if tv is None:
                break
        elif x is None:
            break
        dead = since_fired >= dead_window
        o = sae.loss(x, dead if sae_cfg.arch in TOPK_ARCHS else None,
                     sparse=tc.sparse_kernels, auxk_coef=tc.auxk_coef, sparsity_coef=sparsity,
                     tv=tv)
        o.loss.backward()
        if world > 1:
            fired, fvu, l0 = _all_reduce_step(sae, o, world)
        else:
            fired, fvu, l0 = o.fired, float(o.fvu.detach()), float(o.l0)
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
        n_batch = len(x) * world
        since_fired += n_batch
        since_fired[fired] = 0
        tokens += n_batch
        steps += 1
        now = {"fvu": fvu, "l0": l0, "dead": float(dead.float().mean())}
        ema = now if ema is None else {k: 0.9 * ema[k] + 0.1 * v for k, v in now.items()}
        if steps % 10 == 0 or tokens >= tc.tokens:
            history.append({"tokens": tokens, **now})
        if bar is not None:
            bar.update(n_batch)
            bar.set_postfix(fvu=f"{ema['fvu']:.3f}", l0=f"{ema['l0']:.1f}",
                            dead=f"{ema['dead']:.3f}", refresh=False)
        if next_ckpt is not None and out is not None and tokens >= next_ckpt:
            if rank == 0:
                _checkpoint(Path(out) / "checkpoints" / f"tokens_{tokens}", sae, opt, since_fired,
                            tokens, steps, scale, batches, sae_cfg, tc)
            next_ckpt += tc.checkpoint_every
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    n_dropped, n_seen = batches.n_dropped, batches.n_seen
    if world > 1 and batches.tensor is None:  # each rank counted its own chunks
        c = dist.all_reduce_(torch.tensor([n_dropped, n_seen], dtype=torch.float64,
                                          device=device))
        n_dropped, n_seen = int(c[0]), int(c[1])
    folded = folded_copy(sae, scale)
    result = TrainResult(folded if on_cpu else folded.cpu(), tokens, steps, seconds, scale,
                         n_dropped, n_seen,
                         float((since_fired >= dead_window).float().mean()), history)
    if out is not None and rank == 0:
        save_sae(result.sae, out, extra=_provenance(result, tc, dead_window))
    dist.barrier()  # the saved folder is complete when any rank returns
    return result


def _global_variance(x: Tensor | None, d: int, device, world: int) -> Tensor | None:
    """The global batch's total variance / world, from one all-reduce of [sum x, sum |x|^2,
    n, ranks with a batch] in float64; None when some rank has no batch left.

    Each rank's FVU is then world * SSE_rank / TV_global, so the mean over ranks of the local
    losses (and of their gradients) is the global batch's loss (and gradient)."""
    v = torch.zeros(d + 3, dtype=torch.float64, device=device)
    if x is not None:
        xd = x.to(device=device, dtype=torch.float64)
        v[:d] = xd.sum(0)
        v[d] = xd.pow(2).sum()
        v[d + 1] = len(x)
        v[d + 2] = 1
    dist.all_reduce_(v)
    if int(v[d + 2]) < world:
        return None
    tv = (v[d] - v[:d].pow(2).sum() / v[d + 1]).clamp_min(1e-12)
    return (tv / world).float()


def _all_reduce_step(sae: SparseAutoencoder, o, world: int) -> tuple[Tensor, float, float]:
    """One all-reduce of [gradients, float buffers, fired, fvu, l0]: gradients and buffers
    (BatchTopK's threshold) are averaged, fired latents OR-ed, fvu and l0 averaged."""
    params = list(sae.parameters())
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bufs = [b for b in sae.buffers() if b.is_floating_point()]
    parts = [p.grad.reshape(-1) for p in params] + [b.reshape(-1) for b in bufs]
    parts += [o.fired.to(params[0].dtype), o.fvu.detach().reshape(1).to(params[0].dtype),
              o.l0.detach().reshape(1).to(params[0].dtype)]
    flat = dist.all_reduce_(torch.cat(parts))
    i = 0
    with torch.no_grad():
        for t in [p.grad for p in params] + bufs:
            t.copy_(flat[i:i + t.numel()].view_as(t) / world)
            i += t.numel()
    d = o.fired.numel()
    fired = flat[i:i + d] > 0
    return fired, float(flat[i + d]) / world, float(flat[i + d + 1]) / world


def _provenance(r: TrainResult, tc: TrainConfig, dead_window: int) -> dict:
    return {"train": {**tc.to_dict(), "recipe": TRAIN_RECIPE, "tokens_trained": r.tokens,
                      "steps": r.steps,
                      "activation_scale_folded": r.activation_scale,
                      "n_massive_dropped": r.n_massive_dropped, "n_tokens_seen": r.n_tokens_seen,
                      "dead_window_tokens": dead_window, "dead_fraction_end": r.dead_fraction}}


def _checkpoint(folder: Path, sae, opt, since_fired, tokens, steps, scale, batches, sae_cfg, tc):
    folder.mkdir(parents=True, exist_ok=True)
    save_sae(folded_copy(sae, scale), folder, extra={"train": {**tc.to_dict(),
                                                              "tokens_trained": tokens}})
    torch.save({"sae": sae.state_dict(), "opt": opt.state_dict(), "since_fired": since_fired,
                "tokens": tokens, "steps": steps, "scale": scale, "rng": batches.g.get_state()},
               folder / "trainer.pt")

