"""glibc allocator settings for CPU training: keep freed memory instead of handing it back to
the kernel after every step.

A TopK training step allocates and frees the same large buffers every step (the [batch, d_sae]
pre-activations, the gradient products). With glibc's defaults the freed top of the heap is
trimmed and large blocks are unmapped, so the next step faults the same pages in again: on the
2-core test machine about a sixth of a training run's CPU time went to the kernel (`time`'s sys
against user). `tune_allocator` raises the trim threshold and the top pad and pins the mmap
threshold at its 32 MiB ceiling (`mallopt`, the same knobs as the MALLOC_TRIM_THRESHOLD_,
MALLOC_TOP_PAD_ and MALLOC_MMAP_THRESHOLD_ environment variables), so the memory is reused.
benchmarks/allocator.py measures it side by side. The cost: the process keeps its peak heap
instead of shrinking back between steps.

The command line calls it once at start (the process is finsae's own). Library users can call
it themselves; it changes the whole process, which is why nothing in the library does.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc's malloc.h
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 2 ** 31 - 1, M_TOP_PAD: 1 << 30}
ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


def tune_allocator() -> bool:
    """Apply SETTINGS with glibc's mallopt; True when applied. Does nothing (False) off Linux,
    with another C library, with FINSAE_NO_MALLOC_TUNING set, or when the user already set one
    of the MALLOC_* variables (their choice wins)."""
    if not sys.platform.startswith("linux") or os.environ.get("FINSAE_NO_MALLOC_TUNING") \
            or any(k in os.environ for k in ENV):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):    # musl and others: no glibc mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(k, v) == 1 for k, v in SETTINGS.items())
