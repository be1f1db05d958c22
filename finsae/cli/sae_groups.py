"""`finsae sae groups` and `finsae sae transfer`.

The `sae` verb lives in finsae/sae/cli.py; it calls `add_commands(sae_subparsers)` to add these
two sub-commands, each with ``func(args) -> int`` as its default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.errors import DataError
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
    p.add_argument("--results", metavar="DIR",
                   help="a results folder of experiments/group_sae.py (frontier.csv, "
                        "methods.csv): show the measured FVU, CE-loss score and compute saved "
                        "at each G beside AMAD")
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
    measured = read_group_results(args.results) if args.results else None
    if measured is not None:
        out["results"] = measured
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
    by_g = {r["G"]: r for r in measured["by_g"]} if measured else {}
    head = "  G  SAEs  AMAD"
    if measured:
        head += ("   FVU amad  FVU even  CE amad  CE even  saved(FLOPs, separate runs / "
                 "shared capture)")
    print(head)
    for g, v in res.amad.items():
        mark = "  <- chosen" if g == res.chosen_g else ""
        m = by_g.get(g)
        cols = (f"   {m['fvu_amad']:8.4f}  {m['fvu_even']:8.4f}  {m['ce_amad']:7.4f}  "
                f"{m['ce_even']:7.4f}  {m['saving_flops_separate_amad']:6.1%} / "
                f"{m['saving_flops_shared']:5.1%}") if m else ""
        if measured and not m and g > max(by_g, default=0):
            continue            # past the measured G values: AMAD only would be noise here
        print(f"{g:3d} {g + int(res.last_alone):5d}  {v:.3f}{cols}{mark}")
    print(f"groups: {res.groups}")
    if measured:
        b = measured["per_layer"]
        print(f"per-layer SAEs ({b['n_saes']}): FVU {b['fvu']:.4f}, CE-loss score "
              f"{b['ce_loss_score']:.4f}; measured in {args.results} ({measured['scale']})")
        if measured["transfer"]:
            print("transfer, fine-tuning tokens to 99% of scratch's final CE-loss score "
                  "(share of the scratch budget, median over layers): "
                  + ", ".join(f"{k} {v:.1%}" for k, v in measured["transfer"].items()))
    if args.plot:
        print(f"heatmap: {args.plot}")
    return 0


def _require_columns(path, frame, columns) -> None:
    """A results table edited by hand or written by another version: name the file and the
    missing columns rather than fail later on a KeyError."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (written by "
                        "experiments/group_sae.py)", path=path)


def read_group_results(folder) -> dict:
    """The measured side of `finsae sae groups --results`: per G, AMAD's and evenly spaced
    groups' mean FVU, CE-loss score and compute saved (frontier.csv), the per-layer baseline
    (methods.csv) and the transfer token shares (transfer_reach.csv), from a results folder of
    experiments/group_sae.py."""
    import pandas as pd
    folder = Path(folder)
    need = [folder / n for n in ("frontier.csv", "methods.csv")]
    missing = [str(f) for f in need if not f.exists()]
    if missing:
        raise DataError(f"--results {folder}: missing {', '.join(missing)} (a results folder "
                         "of experiments/group_sae.py holds them)")
    front = pd.read_csv(need[0])
    methods = pd.read_csv(need[1])
    _require_columns(need[0], front, ("G", "n_saes", "fvu_amad", "fvu_even", "ce_amad",
                                      "ce_even", "saving_flops_separate_amad",
                                      "saving_flops_shared"))
    _require_columns(need[1], methods, ("method", "n_saes", "fvu", "ce_loss_score"))
    base = methods[methods.method == "per_layer"]
    if base.empty:
        raise DataError(f"{need[1]}: no per_layer row")
    b = base.iloc[0]
    out = {"folder": str(folder), "by_g": front.to_dict("records"),
           "per_layer": {"n_saes": int(b.n_saes), "fvu": float(b.fvu),
                         "ce_loss_score": float(b.ce_loss_score)},
           "transfer": {}, "scale": ""}
    run = folder / "run.json"
    if run.exists():
        log = json.loads(run.read_text())
        st = log.get("settings", {})
        out["scale"] = (f"{st.get('model')}, {log.get('sae_tokens', 0):,} tokens per SAE, "
                        f"d_sae {st.get('d_sae')}, k {st.get('k')}")
    reach = folder / "transfer_reach.csv"
    if reach.exists():
        r = pd.read_csv(reach)
        _require_columns(reach, r, ("method", "share_of_scratch_budget_99pct"))
        for m in ("forward", "backward", "scratch"):
            v = r[r.method == m]["share_of_scratch_budget_99pct"]
            if len(v):
                out["transfer"][m] = float(v.median())
    return out


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
