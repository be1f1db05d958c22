"""Grouping feature labels by concept: the explanation lines of `finsae similar --explain`.

A label is up to three phrases read off a latent's top contexts ("data center / data centers /
cloud"). Its concept keys are those phrases lower-cased and stemmed (plural endings dropped,
a few function words left out), plus every run of two or more consecutive words inside them,
so "original equipment manufacturers" also carries "original equipment" but a lone word is a
key only where it is a whole phrase ("gas" does not collect "natural gas").

`concept_lines` picks lines greedily: the key that covers the largest total weight (share of
the cosine) among the features not yet placed becomes a line with all of them, and so on.
Every feature in a line has the line's phrase in its own label, so a person can check each
line against the features' labels and contexts; nothing chains one phrase to another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping

#: words that carry no concept on their own (left out of keys)
FUNCTION_WORDS = frozenset(
    "a an the of and or in on for to with by at from as its their our".split())


def stem(word: str) -> str:
    """A plural ending dropped ("loans" -> "loan", "boxes" -> "box", "utilities" -> "utility";
    "gas", "business" and "process" stay)."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def phrase_words(phrase: str) -> list[str]:
    """A phrase's stemmed words without function words."""
    return [stem(w) for w in re.findall(r"[a-z0-9]+", phrase.lower()) if w not in FUNCTION_WORDS]


def concept_keys(label: str) -> dict[str, str]:
    """The concept keys of a label, each with the original words it stands for (for display):
    every stemmed phrase and every run of at least two consecutive words inside one."""
    out: dict[str, str] = {}
    for phrase in label.split(" / "):
        raw = [w for w in re.findall(r"[a-z0-9]+", phrase.lower()) if w not in FUNCTION_WORDS]
        words = [stem(w) for w in raw]
        n = len(words)
        for size in range(n, 0, -1):
            if size == 1 and n > 1:
                break
            for s in range(n - size + 1):
                out.setdefault(" ".join(words[s:s + size]), " ".join(raw[s:s + size]))
    return out


def concept_lines(weights: Mapping[Hashable, float], labels: Mapping[Hashable, str],
                  top: int | None = None,
                  keys: Callable[[str], Mapping[str, str]] = concept_keys
                  ) -> list[tuple[str, list]]:
    """Lines of features by concept: [(phrase, [ids, largest weight first])], largest total
    first, at most `top`. weights: id -> positive weight (share of the cosine); labels: id ->
    label. Greedy cover: the key covering the most weight among the unplaced features is the
    next line (ties: the longer phrase, then alphabetical); a feature with no key is a line of
    its own under its full label. keys: label -> {key: phrase shown} (default `concept_keys`)."""
    order = sorted(weights, key=lambda j: -weights[j])
    kmap = {j: keys(str(labels.get(j, "") or "")) for j in order}
    by_key: dict[str, list] = {}
    for j in order:
        for k in kmap[j]:
            by_key.setdefault(k, []).append(j)
    left, lines = set(order), []
    while left and (top is None or len(lines) < top):
        best, best_w = None, 0.0
        for k, ids in by_key.items():
            w = sum(weights[j] for j in ids if j in left)
            if w > best_w or (w == best_w and best is not None and w > 0
                              and (len(k), k) > (len(best), best)):
                best, best_w = k, w
        if best is None:  # the rest have no key: one line each
            for j in [j for j in order if j in left][:None if top is None else top - len(lines)]:
                lines.append((str(labels.get(j, "") or ""), [j]))
            break
        ids = [j for j in by_key.pop(best) if j in left]
        left.difference_update(ids)
        lines.append((kmap[ids[0]][best], ids))
    return lines


def weighted_median(values, weights) -> float | None:
    """The weighted median of `values` (the smallest value holding at least half the weight);
    None when there is nothing to weigh."""
    pairs = sorted((float(v), float(w)) for v, w in zip(values, weights)
                   if v is not None and v == v and w > 0)
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return None
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= total / 2:
            return v
    return pairs[-1][0]
