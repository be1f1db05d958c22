"""CPU training speed with and without `finsae.allocator.tune_allocator`, side by side.

    python benchmarks/allocator.py --acts /tmp/bench/acts15.safetensors --steps 200 --repeats 3

Each round trains the same TopK SAE (d_sae 4608, k 32, batch 1024 by default) twice, in fresh
processes, once with glibc's default allocator settings and once tuned, in alternating order;
speeds are medians over rounds and the ratio is the median of the per-round ratios (a shared
machine's load moves both runs of a round together). Each run also reports its user and system
CPU seconds: the tuning's gain is the system time that page faults no longer take.
Without --acts, standard normal activations ([--tokens, --d-in]) stand in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, torch
cfg = json.loads(sys.argv[1])
if cfg["tuned"]:
    from finsae.allocator import tune_allocator
    assert tune_allocator(), "tune_allocator did not apply (not glibc, or MALLOC_* set)"
from finsae.sae import SAEConfig, TrainConfig, train_sae
torch.set_num_threads(cfg["threads"])
if cfg["acts"]:
    from safetensors.torch import load_file
    acts = load_file(cfg["acts"])["acts"].float()
else:
    acts = torch.randn(cfg["tokens"], cfg["d_in"], generator=torch.Generator().manual_seed(0))
r0 = resource.getrusage(resource.RUSAGE_SELF)
r = train_sae(acts, SAEConfig(d_in=acts.shape[1], d_sae=cfg["d_sae"], k=cfg["k"]),
              TrainConfig(tokens=cfg["steps"] * cfg["batch"], batch_size=cfg["batch"],
                          lr=1e-3, progress=False, seed=0))
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tok_s": r.tokens / r.seconds, "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime}))
"""


def run(cfg: dict, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "FINSAE_NO_MALLOC_TUNING"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps({**cfg, "tuned": tuned})],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", default="", help="a .safetensors file with key 'acts'")
    ap.add_argument("--tokens", type=int, default=131_072)
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    cfg = {k: getattr(a, k) for k in ("acts", "tokens", "d_in", "d_sae", "k", "batch", "steps",
                                      "threads")}
    rounds = []
    for i in range(a.repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {t: run(cfg, t) for t in order}
        rounds.append(got)
        print(f"round {i}: default {got[False]['tok_s']:,.0f} tok/s (sys {got[False]['sys_s']:.1f}"
              f" s), tuned {got[True]['tok_s']:,.0f} tok/s (sys {got[True]['sys_s']:.1f} s)",
              flush=True)
    med = lambda key, t: statistics.median(r[t][key] for r in rounds)  # noqa: E731
    summary = {"settings": cfg, "rounds": [{str(t): r[t] for t in r} for r in rounds],
               "default_tok_s": med("tok_s", False), "tuned_tok_s": med("tok_s", True),
               "default_sys_s": med("sys_s", False), "tuned_sys_s": med("sys_s", True),
               "speedup": statistics.median(r[True]["tok_s"] / r[False]["tok_s"]
                                            for r in rounds)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
