"""Data parallelism with `torch.distributed`, launched by `torchrun`.

``torchrun --nproc_per_node N -m finsae sae train ...`` (or ``... -m finsae encode ...``)
starts N processes with RANK, LOCAL_RANK and WORLD_SIZE in their environment; the commands
call `setup(device)`, which joins the process group (backend nccl for a CUDA device, gloo
otherwise) and gives each rank its own GPU (``cuda`` becomes ``cuda:LOCAL_RANK``). Without
torchrun (no WORLD_SIZE, or WORLD_SIZE=1) nothing is initialised and every helper here is a
no-op: a single process runs exactly as before.

Library code (`finsae.sae.train_sae`, `finsae.lm.encode_texts`) only asks whether a process
group is up (`world_size() > 1`), so a user who initialises one in Python gets the same
behaviour as from the command line.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def available() -> bool:
    return dist.is_available()


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    return dist.get_rank() if initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True in a process started by torchrun with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: str | torch.device | None) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` under torchrun (one GPU per process); else unchanged."""
    d = "cpu" if device is None else str(device)
    if d == "cuda" and launched():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return d


def backend_for(device: str | torch.device | None) -> str:
    return "nccl" if str(device or "cpu").startswith("cuda") else "gloo"


def setup(device: str | torch.device | None = "cpu") -> str:
    """Join the torchrun job if there is one; returns the device this rank should use.

    Backend: nccl when `device` is CUDA, gloo otherwise. Idempotent; a no-op (returning
    `device`) in a single process.
    """
    device = local_device(device)
    if not launched() or initialized():
        return device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend_for(device))
    return device


def teardown() -> None:
    if initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first, then the other ranks: for work that fills a shared cache
    (a GGUF conversion, a download) which concurrent ranks would race on."""
    if world_size() > 1 and not is_main():
        barrier()
    try:
        yield
    finally:
        if world_size() > 1 and is_main():
            barrier()


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum, max or min); returns t. A no-op in a single process."""
    if world_size() > 1:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                               "min": dist.ReduceOp.MIN}[op])
    return t


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    if world_size() > 1:
        dist.broadcast(t, src)
    return t


def broadcast_object(obj, src: int = 0):
    """Rank src's `obj` on every rank (pickled)."""
    if world_size() <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_gather_object(obj) -> list:
    if world_size() <= 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
