"""Stage 1 of the representation search: SmolLM2 residual-stream activations, through the
library (`finsae.lm.encode_texts`, cached and resumable), of
  - the bundled descriptions (the 673 texts `finsae run` encodes), and
  - the FinanceDatabase corpus (~4,580 business summaries, the SAE training text),
at every layer the search compares. One forward per text stops after the deepest layer.

    python experiments/search/encode.py [--which descriptions corpus] [--layers 5 10 15 20 25]
"""
from __future__ import annotations

import argparse
import time

from finsae.data import load_companies
from finsae.data.corpus import load_corpus
from finsae.lm import encode_texts, load_lm

LAYERS = (5, 10, 15, 20, 25)


def description_texts(vintage: str = "latest") -> list[str]:
    c = load_companies(vintage=vintage)
    return c.loc[c["description"] != "", "description"].tolist()


def corpus_texts() -> list[str]:
    return load_corpus()["text"].tolist()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--which", nargs="+", default=["descriptions", "corpus"])
    ap.add_argument("--layers", nargs="+", type=int, default=list(LAYERS))
    a = ap.parse_args(argv)
    lm = load_lm("smollm2-135m")
    for which in a.which:
        texts = {"descriptions": description_texts, "corpus": corpus_texts,
                 "c2016": lambda: description_texts("c2016")}[which]()
        t = time.perf_counter()
        store = encode_texts(lm, texts, layers=a.layers, max_tokens=512, progress=False)
        print(which, len(texts), store.n_tokens, "tokens", f"{time.perf_counter() - t:.0f}s",
              store.path, flush=True)


if __name__ == "__main__":
    main()
