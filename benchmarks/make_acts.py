"""The activation files of `benchmarks/sae_train.py`: one block of an activation cache, split by
text into a training and a held-out file (no text in both).

    finsae encode --layers 5,10,15,20,25          # the bundled descriptions, cached
    python benchmarks/make_acts.py --store ~/.cache/finsae/activations/<model>-<key> \
        --layer 15 --out-dir /tmp/bench              # acts15.safetensors, acts15_heldout...

Texts 0..--train-texts-1 (in the cache's order) are training text, the rest held out. docs/sae.md's table used the cache of the command above (673 descriptions, BOS
prepended, at most 512 text tokens each), texts 0-510 for training (131,732 tokens) and
511-672 held out (42,274 tokens).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finsae.lm.store import ActivationStore  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="an activation cache folder (finsae encode)")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--train-texts", type=int, default=511,
                    help="texts 0..N-1 train, the rest held out")
    ap.add_argument("--out-dir", default=".")
    a = ap.parse_args(argv)
    store = ActivationStore.open(a.store)
    if not 0 < a.train_texts < store.n_texts:
        raise SystemExit(f"--train-texts must be in 1..{store.n_texts - 1}")
    acts, doc = store.tokens(a.layer), store.doc_index
    train = doc < a.train_texts
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"acts": acts[train].contiguous()}, out / f"acts{a.layer}.safetensors")
    save_file({"acts": acts[~train].contiguous()}, out / f"acts{a.layer}_heldout.safetensors")
    print(f"layer {a.layer}: {int(train.sum())} training tokens (texts 0-{a.train_texts - 1}), "
          f"{int((~train).sum())} held-out tokens (texts {a.train_texts}-{store.n_texts - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
