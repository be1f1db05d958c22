"""`finsae run`: the main job, end to end (`finsae.pipeline`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..config_check import check_layer_in_model
from ..pipeline import RunConfig, run


def register(sub) -> None:
    p = sub.add_parser("run", help="the main job: encode, SAE, features, evaluate, backtest, "
                                   "report (every stage cached)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file with [data], [sae], [features], [evaluate], [backtest] "
                        "tables (default: the built-in defaults; see config.toml of a run)")
    p.add_argument("--out", metavar="DIR", default="runs/main", help="run folder")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config as TOML and exit")
    p.set_defaults(func=main)


def main(args) -> int:
    cfg = RunConfig.load(args.config)
    check_layer_in_model(cfg.sae.model, cfg.sae.layer, path=args.config)
    for layer in cfg.sae.extra_layers:
        check_layer_in_model(cfg.sae.model, layer, "[sae] extra_layers", path=args.config)
    if args.print_config:
        print(cfg.to_toml())
        return 0
    existed = Path(args.out).exists()
    try:
        run(cfg, args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    except BaseException:  # a failed run leaves no partial run folder behind
        if not existed:
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(f"{args.out}/report.html")
    return 0
