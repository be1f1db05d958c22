"""`finsae sae train` and `finsae sae eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.companies import bundled_descriptions
from ..data.errors import DataError
from ..lm.defaults import DEFAULT_LAYER, DEFAULT_MODEL
from ..sae.config import SAEConfig, TrainConfig
from .options import add_dataclass_flags, dataclass_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("sae", help="train and evaluate sparse autoencoders",
                              description=__doc__)
    sub = p.add_subparsers(dest="sae_cmd", metavar="CMD")
    from .sae_groups import add_commands  # Group-SAE layer groups and transfer
    add_commands(sub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    t = sub.add_parser("train", help="train an SAE on cached activations or on texts")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--activations", metavar="PATH",
                     help="safetensors file with a tensor 'acts' [n, d], or a folder of shards")
    src.add_argument("--texts", metavar="N", type=int,
                     help="encode the first N bundled company descriptions with --model "
                          "(needs finsae.lm)")
    src.add_argument("--store", metavar="DIR",
                     help="an activation cache folder written by `finsae encode` (token level)")
    t.add_argument("--model", default=DEFAULT_MODEL, help="LM for --texts (default: %(default)s)")
    t.add_argument("--layer", type=int, default=DEFAULT_LAYER,
                   help="decoder block (default: %(default)s)")
    t.add_argument("--group", metavar="LAYERS", default=None,
                   help="train one Group-SAE on these blocks (comma-separated, e.g. 3,4,5): "
                        "token n comes from a random block of the group (with --texts or "
                        "--store)")
    w = t.add_mutually_exclusive_group()
    w.add_argument("--d-sae", type=int, help="number of latents")
    w.add_argument("--expansion", type=int, default=8, help="d_sae = expansion * d_in "
                                                          "(default: %(default)s)")
    add_dataclass_flags(t, SAEConfig, skip=("d_in", "d_sae", "meta"))
    add_dataclass_flags(t, TrainConfig)
    t.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:1 ... (default cpu). Under torchrun each process "
                        "trains on its slice of every batch (backend nccl on CUDA, gloo on CPU; "
                        "cuda means cuda:LOCAL_RANK) and rank 0 writes --out")
    t.add_argument("--out", required=True, metavar="DIR", help="output SAE folder")
    t.add_argument("--json", action="store_true", help="print machine-readable JSON")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="FVU, L0, dead fraction, CE-loss score of an SAE folder")
    e.add_argument("path", help="SAE folder (finsae, SAELens or sparsify layout)")
    e.add_argument("--activations", metavar="PATH",
                   help="held-out activations for FVU/L0/dead (safetensors 'acts')")
    e.add_argument("--model", default=DEFAULT_MODEL, help="LM for the splice metrics "
                                                          "(default: %(default)s)")
    e.add_argument("--layer", type=int, default=None,
                   help="block to splice after (default: the SAE's recorded layer)")
    e.add_argument("--texts", type=int, default=64,
                   help="bundled company descriptions used for the splice (default: %(default)s)")
    e.add_argument("--max-length", type=int, default=256,
                   help="text tokens per text for the splice metrics (the BOS prepended as "
                        "in the capture is not counted)")
    e.add_argument("--no-lm", action="store_true", help="skip the LM splice metrics")
    e.add_argument("--massive-factor", type=float, default=TrainConfig.massive_factor,
                   help="drop tokens with norm above this multiple of the median, as in "
                        "training; 0 keeps all (default: %(default)s)")
    e.add_argument("--json", action="store_true", help="print machine-readable JSON")
    e.set_defaults(func=run_eval)


def _load_lm(name: str, device: str = "cpu"):
    try:
        from ..lm import load_lm
    except ImportError:
        raise DataError("the LM metrics need finsae.lm (activations capture), missing in this "
                        "install; use --no-lm or --activations") from None
    return load_lm(name, device=device)


def run_train(args: argparse.Namespace) -> int:
    from .. import dist
    device = dist.setup(args.device)
    try:
        return _run_train(args, device)
    finally:
        dist.teardown()


def _run_train(args: argparse.Namespace, device: str) -> int:
    from .. import dist
    from ..sae.train import load_activations, train_sae
    group = None
    if args.group is not None:
        try:
            group = [int(x) for x in args.group.split(",") if x.strip()]
        except ValueError:
            raise DataError(f"--group: expected block indices like 3,4,5, not {args.group!r}") \
                from None
        if not group:
            raise DataError("--group: no blocks given")
        if args.activations:
            raise DataError("--group needs every block's activations: use --texts or --store")
    layers = group or [args.layer]
    if args.activations:
        acts, meta = load_activations(args.activations), {"activations": args.activations}
    else:
        if args.store:
            from ..lm import ActivationStore
            store = ActivationStore.open(args.store)
            meta = {"store": args.store, "model": store.manifest.get("model")}
        else:
            from ..lm import encode_texts
            with dist.main_first():  # rank 0 fills the model cache alone
                lm = _load_lm(args.model, device)
            store = encode_texts(lm, bundled_descriptions(args.texts), layers=layers)
            meta = {"model": lm.name, "texts": args.texts}
        missing = [i for i in layers if i not in store.layers]
        if missing:
            raise DataError(f"blocks {missing} not in the activation store (it has "
                            f"{store.layers})", path=store.path)
        if group:
            from ..sae.group_train import group_tokens
            acts = group_tokens({i: store.tokens(i) for i in group}, group, args.seed).float()
        else:
            acts = store.tokens(args.layer)
    if group:
        meta.update({"layers": group, "hook": "resid_post", "group_sae": True})
    else:
        meta["layer"] = args.layer
    d_in = acts.shape[1]
    d_sae = args.d_sae or args.expansion * d_in
    cfg = dataclass_from_args(SAEConfig, args, skip=("d_in", "d_sae", "meta"), d_in=d_in,
                              d_sae=d_sae, meta=meta)
    tc = dataclass_from_args(TrainConfig, args)
    r = train_sae(acts, cfg, tc, out=args.out, device=device)
    if not dist.is_main():
        return 0
    summary = {"out": str(Path(args.out)), "tokens": r.tokens, "steps": r.steps,
               "seconds": round(r.seconds, 2), "tokens_per_second": round(r.tokens_per_second),
               "n_massive_dropped": r.n_massive_dropped, "n_tokens_seen": r.n_tokens_seen,
               "dead_fraction": r.dead_fraction, "processes": dist.world_size(),
               "final_fvu": r.history[-1]["fvu"] if r.history else None}
    print(json.dumps(summary, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..sae.io import load_sae
    from ..sae.metrics import evaluate_reconstruction, splice_metrics_on_texts
    from ..sae.train import load_activations
    sae = load_sae(args.path)
    out: dict = {"path": args.path, "arch": sae.cfg.arch, "d_in": sae.d_in, "d_sae": sae.d_sae}
    if args.activations:
        out.update(evaluate_reconstruction(sae, load_activations(args.activations),
                                           massive_factor=args.massive_factor or None))
    else:
        out.update({"fvu": None, "l0": None, "dead_fraction": None,
                    "note_reconstruction": "no --activations given"})
    if args.no_lm:
        out.update({"ce_loss_score": None, "delta_lm_loss": None, "kl_div": None})
    else:
        layer = args.layer if args.layer is not None else sae.cfg.meta.get("layer")
        if layer is None:
            raise DataError("the SAE does not record its layer; pass --layer", path=args.path)
        lm = _load_lm(args.model)
        out.update(splice_metrics_on_texts(lm.model, lm.tokenizer, sae, bundled_descriptions(args.texts),
                                           layer=int(layer), max_length=args.max_length,
                                           massive_factor=args.massive_factor or None))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main
    sys.exit(main(["sae", *sys.argv[1:]]))
