"""`finsae sae groups` and `finsae sae transfer`.

The `sae` verb lives in finsae/sae/cli.py; it calls `add_commands(sae_subparsers)` to add these
two sub-commands, each with ``func(args) -> int`` as its default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..lm.defaults import DEFAULT_MODEL
from ..sae.config import TrainConfig
from .options import add_dataclass_flags, dataclass_from_args


def add_commands(sae_subparsers) -> None:
    p = sae_subparsers.add_parser(
        "groups", help="angular distances between layers, AMAD(G) and the Group-SAE layer groups")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=DEFAULT_MODEL,
                     help="LM whose blocks are compared (short name, HF id, folder, .gguf; "
                          "default: %(default)s)")
    src.add_argument("--distances", metavar="CSV",
                     help="a saved [L, L] distance matrix instead of a model")
    p.add_argument("--texts", type=int, default=256,
                   help="corpus texts to run (the bundled company summaries)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens kept per text")
    p.add_argument("--token-budget", type=int, default=None,
                   help="stop once this many tokens were averaged")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward")
    p.add_argument("--center", choices=("running", "none"), default="running",
                   help="subtract a running mean per layer before the cosine (the paper's code)")
    p.add_argument("--massive-factor", type=float, default=TrainConfig.massive_factor,
                   help="drop tokens whose norm exceeds this multiple of the median (default: "
                        "%(default)s)")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="choose the smallest G with AMAD(G) below this")
    p.add_argument("--contiguous", action="store_true",
                   help="only let neighbouring groups merge (runs of adjacent layers)")
    p.add_argument("--all-layers-grouped", action="store_true",
                   help="group the last layer like the others (the paper keeps it alone)")
    p.add_argument("--plot", default="angular_distance.png", metavar="PNG",
                   help="heatmap path ('' for none)")
    p.add_argument("--save-distances", metavar="CSV", help="write the matrix as CSV")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... for the LM")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run_groups)

    t = sae_subparsers.add_parser(
        "transfer", help="initialise an SAE from a neighbouring layer's SAE and fine-tune it")
    t.add_argument("init", help="SAE folder of the neighbouring layer (finsae, SAELens, sparsify)")
    t.add_argument("--activations", required=True, metavar="PATH",
                   help="the target layer's activations: .safetensors file or folder (key 'acts')")
    t.add_argument("--out", required=True, help="folder for the fine-tuned SAE")
    t.add_argument("--layer", type=int, default=None, help="target layer (recorded in cfg.json)")
    add_dataclass_flags(t, TrainConfig, skip=("checkpoint_every", "progress"))
    t.add_argument("--json", action="store_true", help="print machine-readable JSON")
    t.set_defaults(func=run_transfer)


def run_groups(args) -> int:
    import numpy as np

    from ..sae.grouping import choose_groups
    from ..sae.layer_distance import model_layer_distances
    from ..sae.plots import plot_distances

    info: dict = {}
    if args.distances:
        dist = np.loadtxt(args.distances, delimiter=",")
        info["source"] = str(args.distances)
    else:
        from ..data import load_corpus
        from ..lm import load_lm
        lm = load_lm(args.model, device=args.device)
        texts = load_corpus()["text"].tolist()[: args.texts]
        dist, info = model_layer_distances(lm, texts, max_tokens=args.max_tokens,
                                           batch_size=args.batch_size, center=args.center,
                                           massive_factor=args.massive_factor,
                                           token_budget=args.token_budget)
        info["model"] = lm.name
    res = choose_groups(dist, args.threshold, last_alone=not args.all_layers_grouped,
                        contiguous=args.contiguous)
    if args.save_distances:
        np.savetxt(args.save_distances, res.distances, delimiter=",", fmt="%.6f")
    if args.plot:
        plot_distances(res.distances, args.plot, res.groups)
    out = {**res.to_dict(), **info, "plot": args.plot or None}
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    if args.distances:
        print(f"angular distances from {args.distances}")
    else:
        print(f"angular distance of {info['model']} over {info['n_tokens']} tokens "
              f"(centring: {info['center']}; {info['n_massive_dropped']} massive tokens "
              f"dropped)")
    print("  G  SAEs  AMAD")
    for g, v in res.amad.items():
        mark = "  <- chosen" if g == res.chosen_g else ""
        print(f"{g:3d} {g + int(res.last_alone):5d}  {v:.3f}{mark}")
    print(f"groups: {res.groups}")
    if args.plot:
        print(f"heatmap: {args.plot}")
    return 0


def run_transfer(args) -> int:
    from .. import dist
    dist.setup("cpu")  # under torchrun: data-parallel fine-tuning (train_sae), rank 0 saves
    try:
        return _run_transfer(args)
    finally:
        dist.teardown()


def _run_transfer(args) -> int:
    from .. import dist
    from ..sae.group_train import transfer_sae
    from ..sae.io import load_sae
    from ..sae.metrics import evaluate_reconstruction
    from ..sae.train import load_activations

    init = load_sae(args.init)
    acts = load_activations(args.activations)
    before = evaluate_reconstruction(init, acts)
    tc = dataclass_from_args(TrainConfig, args, skip=("checkpoint_every", "progress"),
                             progress=not args.json)
    r = transfer_sae(init, acts, tc, out=args.out, layer=args.layer)
    after = evaluate_reconstruction(r.sae, acts)
    out = {"init": str(args.init), "out": str(Path(args.out)), "tokens": r.tokens,
           "seconds": r.seconds, "fvu_no_finetune": before["fvu"], "fvu": after["fvu"],
           "l0": after["l0"], "dead_fraction": after["dead_fraction"]}
    if not dist.is_main():
        return 0
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
    else:
        print(f"{args.init} -> {args.out}: FVU {before['fvu']:.4f} (no fine-tuning) -> "
              f"{after['fvu']:.4f} after {r.tokens} tokens ({r.seconds:.0f}s); "
              "FVU on the training activations")
    return 0
