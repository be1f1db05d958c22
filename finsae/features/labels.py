"""Feature labels: what each SAE latent responds to, read off the corpus.

`context_labels` (what `build_feature_set` uses): for each latent, its top-activating spans
(the words around the strongest token of each company), a short label made of the content
phrases that recur across them, the top contexts and companies, the share of companies where
it fires, and a detection score: how well the label's words tell apart held-out windows where
the latent fires from windows where it does not (AUROC; `median_score` summarises it).
`latent_labels` is the older bag of top tokens. Exported as JSON (`to_json`) and as one
self-contained HTML page an analyst can search and sort (`to_html`), filtered and ordered by
`select_labels`.

This module makes the labels; the detection score's parts live in `label_score` and the
exports in `label_export` (both re-exported here).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .company import TokenLatents
from .label_export import SORTS, labels_map, select_labels, to_html, to_json
from .label_score import auroc, label_words, median_score, split_companies, window_match

__all__ = ["SORTS", "SPAN_LEFT", "SPAN_RIGHT", "auroc", "context_labels", "label_words",
           "labels_map", "latent_labels", "median_score", "select_labels", "short_label",
           "split_companies", "to_html", "to_json", "window_match"]


def _clean(tok: str) -> str:
    return tok.replace("\n", " ").strip().lower()


def short_label(top_tokens: Sequence[str], n: int = 3) -> str:
    """The `n` most frequent token strings among a latent's top activations, lower-cased and
    de-duplicated, most frequent first (ties: order of first appearance, i.e. strongest)."""
    words = [w for w in (_clean(t) for t in top_tokens) if w]
    counts = Counter(words)
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    best = sorted(counts, key=lambda w: (-counts[w], first[w]))[:n]
    return " / ".join(best)


def _example(tl, token_strings, doc, r: int, value: float, context: int) -> dict:
    """Token row r in its context: up to `context` tokens either side, within its document."""
    d = doc[r]
    a, b = max(int(tl.offsets[d]), r - context), min(int(tl.offsets[d + 1]), r + context + 1)
    return {"ticker": str(tl.tickers[d]), "token": token_strings[r],
            "context": ["".join(token_strings[a:r]), token_strings[r],
                        "".join(token_strings[r + 1:b])],
            "activation": round(value, 4)}


def _firing(M, latents=None):
    """(latent, token rows, values, order strongest first) for each latent of the CSC token x
    latent matrix `M` that fires (or each of `latents`)."""
    ids = np.flatnonzero(np.diff(M.indptr)) if latents is None else np.asarray(latents, dtype=int)
    for j in ids:
        j = int(j)
        lo, hi = M.indptr[j], M.indptr[j + 1]
        rows, vals = M.indices[lo:hi], M.data[lo:hi]
        yield j, rows, vals, np.argsort(-vals, kind="stable")


def _top_companies(P, cols, j, tickers, names, n_companies):
    """(the `n_companies` companies where latent j's pooled value is largest, with names and
    values; the share of companies where it fires; how many companies that is)."""
    if j not in cols:
        return [], 0.0, 0
    col = P[:, cols[j]]
    companies = []
    for i in np.argsort(-col, kind="stable")[:n_companies]:
        if col[i] <= 0:
            break
        t = str(tickers[i])
        companies.append({"ticker": t, "name": str((names or {}).get(t, "")),
                          "value": round(float(col[i]), 4)})
    return companies, float((col > 0).mean()), int((col > 0).sum())


def latent_labels(tl: TokenLatents, token_strings: Sequence[str], *,
                  pooled: pd.DataFrame | None = None, names: Mapping | None = None,
                  latents: Sequence[int] | None = None, n_examples: int = 10,
                  n_label: int = 30, n_companies: int = 5, context: int = 6,
                  mask=None, words: Sequence[str] | None = None) -> dict[int, dict]:
    """Labels for `latents` (default: every latent that fires at least once).

    token_strings: decoded text of each token of `tl`. pooled: the company x latent table used
    for "strongest companies" and the firing share (default: sum pooling of `tl`). names:
    ticker -> company name, for display. n_label: how many top activations vote for the label
    (one per document, so a latent firing on one company's name repeated 30 times does not get
    a label from one text alone). context: tokens shown on each side of an example.

    Returns {latent id: {"label", "examples": [{"ticker", "token", "context", "activation"}],
    "companies": [{"ticker", "name", "value"}], "doc_freq"}}.
    """
    from .company import pool_latents
    if len(token_strings) != tl.n_tokens:
        raise ValueError(f"{len(token_strings)} token strings for {tl.n_tokens} tokens")
    M = tl.csr(mask).tocsc()
    doc = tl.doc_of_token()
    if pooled is None:
        pooled = pool_latents(tl, "sum")
    P = pooled.to_numpy(dtype=float)
    cols = {int(c): i for i, c in enumerate(pooled.columns)}
    out: dict[int, dict] = {}
    for j, rows, vals, order in _firing(M, latents):
        # strongest token per document first, so one company cannot fill the whole label
        seen, picked = set(), []
        for o in order:
            d = doc[rows[o]]
            if d not in seen:
                seen.add(d)
                picked.append(o)
            if len(picked) >= n_label:
                break
        label = short_label([(words or token_strings)[rows[o]] for o in picked])
        examples = [_example(tl, token_strings, doc, int(rows[o]), float(vals[o]), context)
                    for o in picked[:n_examples]]
        companies, doc_freq, _ = _top_companies(P, cols, j, pooled.index, names, n_companies)
        out[j] = {"label": label, "examples": examples, "companies": companies,
                  "doc_freq": round(doc_freq, 4)}
    return out


# ----------------------------------------------------------------------------- labels from contexts
#
# `context_labels` reads each latent's top-activating *spans* (the few words before the token,
# which a causal LM has seen, and the word after), labels the latent with the content phrases
# (1-3 words) that recur across those spans, and measures the label in the style of Delphi's
# detection scorer: on descriptions not used to make it, windows where the latent fires
# strongly should contain the label's words, windows where it does not fire should not (AUROC).

#: words before / after the firing word that form a span (label) or a window (detection)
SPAN_LEFT, SPAN_RIGHT = 3, 1


class _Words:
    """Word-level view of the token rows: word id per token, the words, their documents."""

    def __init__(self, token_strings, offsets, names=None, stop_words=None):
        from .company import starts_word
        if stop_words is None:
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stop_words
        n = len(token_strings)
        offsets = np.asarray(offsets, dtype=np.int64)
        wid = np.zeros(n, dtype=np.int64)
        words, wdoc, wstart = [], [], [0]
        for d in range(len(offsets) - 1):
            lo, hi = int(offsets[d]), int(offsets[d + 1])
            starts = [i for i in range(lo, hi) if starts_word(token_strings, i, lo)] + [hi]
            for s0, s1 in zip(starts[:-1], starts[1:]):
                wid[s0:s1] = len(words)
                words.append("".join(token_strings[s0:s1]).strip().lower())
                wdoc.append(d)
            wstart.append(len(words))
        self.wid, self.words = wid, words
        self.wdoc, self.wstart = np.asarray(wdoc, dtype=np.int64), np.asarray(wstart)
        name_words = []
        for d in range(len(offsets) - 1):
            nm = names[d] if names is not None and d < len(names) else ""
            name_words.append({w for w in re.findall(r"[a-z0-9]+", str(nm or "").lower())
                               if len(w) > 1})
        self.content = np.array([len(w) >= 3 and w.isalpha() and w not in stop_words
                                 and w not in name_words[wdoc[i]]
                                 for i, w in enumerate(words)], dtype=bool)
        self.alpha = np.array([w.isalpha() for w in words], dtype=bool)

    def window(self, w: int, left: int = SPAN_LEFT, right: int = SPAN_RIGHT) -> range:
        d = self.wdoc[w]
        return range(max(int(self.wstart[d]), w - left), min(int(self.wstart[d + 1]), w + right + 1))

    def phrases(self, w: int, left: int = SPAN_LEFT, right: int = SPAN_RIGHT,
                max_n: int = 3) -> set[str]:
        """Content n-grams (1..max_n words, first and last a content word, every word a word)
        inside the span around word w that contain w."""
        win = self.window(w, left, right)
        out = set()
        for a in win:
            if not self.content[a]:
                continue
            for b in range(a, min(a + max_n, win.stop)):
                if not self.alpha[b]:
                    break
                if self.content[b] and a <= w <= b:
                    out.add(" ".join(self.words[a:b + 1]))
        return out

    def text(self, w: int, left: int = 6, right: int = 4) -> str:
        win = self.window(w, left, right)
        return " ".join(f"[[{self.words[i]}]]" if i == w else self.words[i] for i in win)



def context_labels(tl: TokenLatents, token_strings: Sequence[str], *,
                   pooled: pd.DataFrame | None = None, names: Mapping | None = None,
                   latents: Sequence[int] | None = None, mask=None,
                   words: Sequence[str] | None = None, n_spans: int = 40,
                   n_phrases: int = 3, n_examples: int = 10, n_contexts: int = 8,
                   n_companies: int = 5, context: int = 6, seed: int = 0,
                   n_pos: int = 25, n_neg: int = 50, strong: float = 0.3,
                   pos_per_company: int = 3, given: Mapping[int, str] | None = None,
                   split: np.ndarray | None = None) -> dict[int, dict]:
    """Labels read off each latent's top-activating spans, with a detection score.

    Takes what `latent_labels` takes (``words`` is accepted for compatibility; words are
    rebuilt from ``token_strings``) and returns the same records ("label", "doc_freq",
    "companies", "examples") plus:

    - "contexts": the strongest spans [{"ticker", "text", "activation"}] (firing word in [[ ]]);
    - "n_companies": how many companies the latent fires in (pooled value > 0);
    - "score": detection AUROC on held-out companies (None when too few firings there);
    - "score_n": [positives, negatives] behind the score; "label_kind": "phrase", "tokens"
      or "given" (``given``: latent id -> a label made elsewhere, scored the same way, e.g.
      to compare labelling methods).

    The label: on the label-making half of the companies (`split_companies(seed)`, or
    ``split``), the strongest token per company (at most ``n_spans`` companies) gives a span of
    `SPAN_LEFT` words before and `SPAN_RIGHT` after; each content n-gram (1-3 words, no stop
    word at either end, no word of that company's name) that contains the firing word votes
    once per span; a phrase needs 2 votes (a further one also a fifth of
    the first one's), so one company's wording cannot make a label. A vote weighs the span's
    activation over the strongest one. Phrases are ranked by weighted votes x length bonus (1,
    1.5, 1.8 for 1, 2, 3 words) x the square root of a smoothed idf over all descriptions (a
    phrase in every text says little), and up to ``n_phrases`` are taken greedily, each covering
    spans the previous did not. A latent with no recurring content phrase falls back to the
    bag of top tokens (`short_label`).

    The score: on the held-out companies, positives are the strongest tokens (at most
    ``pos_per_company`` per company, ``n_pos`` in all) whose activation is at least ``strong``
    x the latent's largest held-out activation, negatives ``n_neg`` seeded random (masked-in)
    tokens where the latent is zero; each window is scored by `window_match` with the label and
    the AUROC is the score (1: the label tells firing windows apart; 0.5: chance).
    """
    from .company import pool_latents
    if len(token_strings) != tl.n_tokens:
        raise ValueError(f"{len(token_strings)} token strings for {tl.n_tokens} tokens")
    n_docs = len(tl.tickers)
    name_list = [(names or {}).get(t, "") for t in tl.tickers]
    W = _Words(token_strings, tl.offsets, name_list)
    M = tl.csr(mask).tocsc()
    doc = tl.doc_of_token()
    if pooled is None:
        pooled = pool_latents(tl, "sum", mask=mask)
    P = pooled.to_numpy(dtype=float)
    cols = {int(c): i for i, c in enumerate(pooled.columns)}
    make = split_companies(tl.tickers, seed) if split is None else np.asarray(split, bool)
    allowed = np.ones(tl.n_tokens, bool) if mask is None else np.asarray(mask, bool)
    held_tokens = np.flatnonzero(allowed & ~make[doc])
    rng = np.random.default_rng(seed + 1)
    # document frequency of every phrase (for the idf that keeps labels specific)
    df: Counter = Counter()
    for d in range(n_docs):
        seen = set()
        for w in range(int(W.wstart[d]), int(W.wstart[d + 1])):
            if W.content[w]:
                for b in range(w, min(w + 3, int(W.wstart[d + 1]))):
                    if not W.alpha[b]:
                        break
                    if W.content[b]:
                        seen.add(" ".join(W.words[w:b + 1]))
        df.update(seen)
    idf = {}
    bonus = {1: 1.0, 2: 1.5, 3: 1.8}

    def phrase_weight(p):
        if p not in idf:
            idf[p] = np.sqrt(np.log((1 + n_docs) / (1 + df.get(p, 0))) + 1.0)
        return bonus[p.count(" ") + 1] * idf[p]

    out: dict[int, dict] = {}
    for j, rows, vals, order in _firing(M, latents):
        # strongest token per company, label-making half and held-out half apart
        seen, mk, held, best = set(), [], [], []
        for o in order:
            d = doc[rows[o]]
            if d in seen:
                continue
            seen.add(d)
            best.append(o)
            (mk if make[d] else held).append(o)
        spans = [W.phrases(int(W.wid[rows[o]])) for o in mk[:n_spans]]
        # a span's vote weighs its activation relative to the strongest (the label should
        # describe what the latent fires on most)
        weight = [float(vals[o] / vals[mk[0]]) for o in mk[:n_spans]]
        # greedy phrases: weighted votes x length bonus x idf, each covering new spans
        label_parts, left, first = [], list(range(len(spans))), 0
        while left and len(label_parts) < n_phrases:
            # a phrase must recur across companies; a further phrase also needs a fifth of
            # the first one's companies (else "banking / dining" from two stray spans)
            need = max(min(2, len(spans)), first / 5)
            count, mass = Counter(), Counter()
            for i in left:
                for p in spans[i]:
                    count[p] += 1
                    mass[p] += weight[i]
            votes = {p: mass[p] for p, v in count.items() if v >= need}
            if not votes:
                break
            p, v = max(votes.items(), key=lambda kv: (kv[1] * phrase_weight(kv[0]), kv[0]))
            first = first or count[p]
            label_parts.append(p)
            left = [i for i in left if p not in spans[i]]
        if given is not None and j in given:
            label, kind = str(given[j]), "given"
        elif label_parts:
            label, kind = " / ".join(label_parts), "phrase"
        else:
            label = short_label([(words or token_strings)[rows[o]] for o in best[:30]])
            kind = "tokens"
        # detection score on the held-out companies
        score, n_used = None, [0, 0]
        if held:
            top = vals[held[0]]
            per: Counter = Counter()
            pos = []
            for o in order:
                d = doc[rows[o]]
                if make[d] or per[d] >= pos_per_company or vals[o] < strong * top:
                    continue
                per[d] += 1
                pos.append(o)
                if len(pos) >= n_pos:
                    break
            fired = set(rows.tolist())
            cand = held_tokens[rng.integers(0, len(held_tokens), 3 * n_neg)] \
                if len(held_tokens) else np.array([], int)
            neg = [int(r) for r in dict.fromkeys(cand.tolist()) if int(r) not in fired][:n_neg]
            if len(pos) >= 3 and len(neg) >= 3:
                ph = label_words(label)
                f = lambda r: window_match(ph, [W.words[w] for w in W.window(int(W.wid[r]))])
                score = round(auroc([f(rows[o]) for o in pos], [f(r) for r in neg]), 4)
                n_used = [len(pos), len(neg)]
        examples = [_example(tl, token_strings, doc, int(rows[o]), float(vals[o]), context)
                    for o in best[:n_examples]]
        contexts = [{"ticker": str(tl.tickers[doc[rows[o]]]),
                     "text": W.text(int(W.wid[rows[o]])),
                     "activation": round(float(vals[o]), 4)} for o in best[:n_contexts]]
        companies, doc_freq, n_comp = _top_companies(P, cols, j, pooled.index, names,
                                                     n_companies)
        out[j] = {"label": label, "label_kind": kind, "score": score, "score_n": n_used,
                  "doc_freq": round(doc_freq, 4), "n_companies": n_comp,
                  "companies": companies, "contexts": contexts, "examples": examples}
    return out
