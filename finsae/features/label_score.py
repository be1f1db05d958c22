"""Scoring feature labels: label words, window match, AUROC, company split, median score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a positive outscores a negative (ties count one half)."""
    p, q = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if not len(p) or not len(q):
        return float("nan")
    gt = (p[:, None] > q[None, :]).sum()
    eq = (p[:, None] == q[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(p) * len(q)))


def label_words(label: str) -> list[list[str]]:
    """A label's phrases as word lists ("data center / cloud" -> [["data", "center"], ["cloud"]])."""
    return [p.split() for p in label.split(" / ") if p.strip()]


def window_match(phrases: list[list[str]], window_words: Sequence[str]) -> float:
    """How well a window matches a label: the largest share of one phrase's words present."""
    ws = set(window_words)
    return max((sum(x in ws for x in p) / len(p) for p in phrases if p), default=0.0)


def split_companies(tickers: Sequence[str], seed: int = 0, share: float = 0.5) -> np.ndarray:
    """Boolean [n_docs]: True for the documents that make labels, False for the held-out ones
    (a seeded split by company, so a score never reads the texts its label came from)."""
    rng = np.random.default_rng(seed)
    make = np.zeros(len(tickers), dtype=bool)
    make[rng.permutation(len(tickers))[:int(round(share * len(tickers)))]] = True
    return make


def median_score(labels: Mapping[int, dict], min_companies: int = 5,
                 ids: Sequence[int] | None = None) -> float:
    """Median detection score over the latents (of `ids`, default all) that fire in at least
    `min_companies` companies and have a score; nan when none does."""
    keys = labels.keys() if ids is None else [int(i) for i in ids]
    s = [labels[k]["score"] for k in keys if k in labels
         and labels[k].get("score") is not None
         and labels[k].get("n_companies", min_companies) >= min_companies]
    return float(np.median(s)) if s else float("nan")
