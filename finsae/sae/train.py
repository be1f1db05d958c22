"""Training: cached activations or a live LM stream -> a trained SAE folder.

Recipe (Gao et al. 2024, the TopK defaults of EleutherAI sparsify):
- massive-activation tokens are dropped (counted) before anything else;
- inputs are scaled so their mean squared norm is 1; the scale is folded into the saved
  weights, so the saved SAE acts on raw activations;
- b_dec starts at the geometric median (or mean) of the data: SmolLM2's block-15 stream has a
  mean vector of norm ~132 against an RMS token norm ~250, and with b_dec = 0 most latents die;
- Adam (fused where torch has it), lr = 2e-4 / sqrt(d_sae / 2^14), constant;
- decoder rows kept at unit norm, the gradient component along them removed before each step;
- AuxK on latents that have not fired for `dead_tokens` tokens.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors.torch import load_file
from torch import Tensor

from .. import dist
from ..data.errors import DataError
from ..lm import hooks
from .architectures import SparseAutoencoder, build_sae
from .config import SAEConfig, TrainConfig, default_lr
from .io import save_sae
from .metrics import massive_token_mask


def load_activations(path: str | Path, key: str = "acts") -> Tensor:
    """[n, d] activations from a safetensors file holding `key`, or a folder of such shards."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise DataError("no activations: expected a .safetensors file or a folder of them",
                        path=path)
    parts = []
    for f in files:
        if f.is_dir():
            raise DataError("is a folder, not a .safetensors file", path=f)
        try:
            t = load_file(str(f))
        except Exception as e:  # noqa: BLE001 - safetensors raises several kinds
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"not a readable safetensors file ({msg})", path=f) from e
        if key not in t:
            raise DataError(f"no tensor {key!r}; found {sorted(t)}", path=f)
        a = t[key]
        if a.ndim == 3:
            a = a.reshape(-1, a.shape[-1])
        if a.ndim != 2:
            raise DataError(f"{key!r} must be [tokens, d], got {list(a.shape)}", path=f)
        parts.append(a.float())
    if len({p.shape[1] for p in parts}) > 1:
        raise DataError(f"shards disagree on d: {sorted({p.shape[1] for p in parts})}", path=path)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


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


# --- batches ----------------------------------------------------------------------------------

class Batches:
    """Shuffled [batch_size, d] batches from a tensor or a stream of [n, d] chunks.

    A tensor is reshuffled each epoch with a seeded generator. A stream goes through a
    shuffling buffer of `buffer_tokens`, refilled when half empty, so consecutive tokens of
    one text rarely share a batch. Massive tokens are dropped and counted in `n_dropped`.

    Data parallel (`world_size` > 1): `batch_size` is the global batch and each rank yields
    its own `batch_size // world_size` rows of it. With a tensor every rank draws the same
    seeded permutation and takes slice `rank` of each global batch, so the ranks together see
    exactly the batches of a single process. A stream is split by chunk (chunk i goes to rank
    i % world_size), each rank shuffling its own chunks.
    """

    def __init__(self, source, batch_size: int, *, seed: int = 0, buffer_tokens: int = 2**18,
                 massive_factor: float | None = 10.0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} out of range for world size {world_size}")
        if batch_size % world_size:
            raise DataError(f"the batch size {batch_size} must be a multiple of the number of "
                            f"processes ({world_size})")
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self._chunk = 0
        self.batch_size, self.buffer_tokens = batch_size, buffer_tokens
        self.massive_factor = massive_factor
        self.g = torch.Generator().manual_seed(seed)
        self.n_dropped = 0
        self.n_seen = 0
        if isinstance(source, (str, Path)):
            source = load_activations(source)
        if isinstance(source, Tensor):
            if source.ndim != 2:
                raise DataError(f"activations must be [tokens, d], got {list(source.shape)}")
            drop = massive_token_mask(source, massive_factor)
            self.n_dropped = int(drop.sum())
            self.n_seen = len(source)
            self.tensor = source[~drop] if self.n_dropped else source
            if len(self.tensor) < batch_size:
                raise DataError(f"only {len(self.tensor)} tokens, fewer than one batch "
                                f"({batch_size})")
            self.stream = None
        else:
            self.tensor, self.stream = None, iter(source)
        self.buffer = None

    @property
    def d(self) -> int:
        return self.peek().shape[1]

    def _pull(self) -> Tensor | None:
        try:
            chunk = next(self.stream)
            while self.world_size > 1 and self._chunk % self.world_size != self.rank:
                self._chunk += 1
                chunk = next(self.stream)
            self._chunk += 1
        except StopIteration:
            return None
        chunk = torch.as_tensor(chunk).float()
        chunk = chunk.reshape(-1, chunk.shape[-1])
        drop = massive_token_mask(chunk, self.massive_factor)
        self.n_seen += len(chunk)
        self.n_dropped += int(drop.sum())
        return chunk[~drop]

    def _fill(self) -> bool:
        have = [] if self.buffer is None else [self.buffer]
        n = sum(len(b) for b in have)
        grew = False
        while n < self.buffer_tokens:
            c = self._pull()
            if c is None:
                break
            have.append(c)
            n += len(c)
            grew = True
        if have:
            buf = torch.cat(have)
            self.buffer = buf[torch.randperm(len(buf), generator=self.g)]
        return grew

    def peek(self, n: int | None = None) -> Tensor:
        """Up to n tokens (for initialisation) without consuming them."""
        if self.tensor is not None:
            if n is None or n >= len(self.tensor):
                return self.tensor
            return self.tensor[torch.randperm(len(self.tensor), generator=self.g)[:n]]
        if self.buffer is None:
            self._fill()
        if self.buffer is None or not len(self.buffer):
            raise DataError("the activation stream is empty")
        return self.buffer if n is None else self.buffer[:n]

    def __iter__(self) -> Iterator[Tensor]:
        if self.tensor is not None:
            t, B = self.tensor, self.batch_size
            a, b = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
            while True:
                perm = torch.randperm(len(t), generator=self.g)
                for s in range(0, len(t) - B + 1, B):
                    yield t[perm[s:s + B]] if self.world_size == 1 else t[perm[s + a:s + b]]
        b = self.local_batch
        while True:
            if self.buffer is None or len(self.buffer) < self.buffer_tokens // 2:
                self._fill()
            if self.buffer is None or len(self.buffer) < b:
                return
            yield self.buffer[:b]
            self.buffer = self.buffer[b:]


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
        o = sae.loss(x, dead if sae_cfg.arch in ("topk", "batchtopk") else None,
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
    return {"train": {**tc.to_dict(), "tokens_trained": r.tokens, "steps": r.steps,
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


# --- live LM stream ---------------------------------------------------------------------------

@torch.no_grad()
def stream_activations(model, tokenizer, texts: Iterable[str], *, layer: int,
                       batch_size: int = 8, max_length: int = 256, block=None) -> Iterator[Tensor]:
    """Yield [n_real_tokens, d] outputs of decoder block `layer`, padding removed, one chunk
    per batch of texts; the forward stops after that block."""
    with hooks.capture(model, [layer], blocks=None if block is None else [block]) as grabbed:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        batch: list[str] = []
        for text in list(texts) + [None]:
            if text is not None:
                batch.append(text)
                if len(batch) < batch_size:
                    continue
            if not batch:
                break
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length)
            hooks.forward(model, **enc)
            yield grabbed[layer][enc["attention_mask"].bool()].float()
            batch = []
