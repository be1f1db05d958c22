"""Feature labels: what each SAE latent responds to, read off the corpus.

`context_labels` (what `build_feature_set` uses): for each latent, its top-activating spans
(the words around the strongest token of each company), a short label made of the content
phrases that recur across them, the top contexts and companies, the share of companies where
it fires, and a detection score: how well the label's words tell apart held-out windows where
the latent fires from windows where it does not (AUROC; `median_score` summarises it).
`latent_labels` is the older bag of top tokens. Exported as JSON (`to_json`) and as one
self-contained HTML page an analyst can search and sort (`to_html`), filtered and ordered by
`select_labels`.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .company import TokenLatents


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
    ids = np.flatnonzero(np.diff(M.indptr)) if latents is None else np.asarray(latents, dtype=int)
    out: dict[int, dict] = {}
    for j in ids:
        j = int(j)
        lo, hi = M.indptr[j], M.indptr[j + 1]
        rows, vals = M.indices[lo:hi], M.data[lo:hi]
        order = np.argsort(-vals, kind="stable")
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
        companies, doc_freq = [], 0.0
        if j in cols:
            col = P[:, cols[j]]
            doc_freq = float((col > 0).mean())
            for i in np.argsort(-col, kind="stable")[:n_companies]:
                if col[i] <= 0:
                    break
                t = str(pooled.index[i])
                companies.append({"ticker": t, "name": str((names or {}).get(t, "")),
                                  "value": round(float(col[i]), 4)})
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
        from .company import _starts_word
        if stop_words is None:
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as stop_words
        n = len(token_strings)
        offsets = np.asarray(offsets, dtype=np.int64)
        wid = np.zeros(n, dtype=np.int64)
        words, wdoc, wstart = [], [], [0]
        for d in range(len(offsets) - 1):
            lo, hi = int(offsets[d]), int(offsets[d + 1])
            starts = [i for i in range(lo, hi) if _starts_word(token_strings, i, lo)] + [hi]
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


def _auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
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

    ids = np.flatnonzero(np.diff(M.indptr)) if latents is None else np.asarray(latents, dtype=int)
    out: dict[int, dict] = {}
    for j in ids:
        j = int(j)
        lo, hi = M.indptr[j], M.indptr[j + 1]
        rows, vals = M.indices[lo:hi], M.data[lo:hi]
        order = np.argsort(-vals, kind="stable")
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
                score = round(_auroc([f(rows[o]) for o in pos], [f(r) for r in neg]), 4)
                n_used = [len(pos), len(neg)]
        examples = [_example(tl, token_strings, doc, int(rows[o]), float(vals[o]), context)
                    for o in best[:n_examples]]
        contexts = [{"ticker": str(tl.tickers[doc[rows[o]]]),
                     "text": W.text(int(W.wid[rows[o]])),
                     "activation": round(float(vals[o]), 4)} for o in best[:n_contexts]]
        companies, doc_freq, n_comp = [], 0.0, 0
        if j in cols:
            col = P[:, cols[j]]
            n_comp = int((col > 0).sum())
            doc_freq = float((col > 0).mean())
            for i in np.argsort(-col, kind="stable")[:n_companies]:
                if col[i] <= 0:
                    break
                t = str(pooled.index[i])
                companies.append({"ticker": t, "name": str((names or {}).get(t, "")),
                                  "value": round(float(col[i]), 4)})
        out[j] = {"label": label, "label_kind": kind, "score": score, "score_n": n_used,
                  "doc_freq": round(doc_freq, 4), "n_companies": n_comp,
                  "companies": companies, "contexts": contexts, "examples": examples}
    return out


def median_score(labels: Mapping[int, dict], min_companies: int = 5,
                 ids: Sequence[int] | None = None) -> float:
    """Median detection score over the latents (of `ids`, default all) that fire in at least
    `min_companies` companies and have a score; nan when none does."""
    keys = labels.keys() if ids is None else [int(i) for i in ids]
    s = [labels[k]["score"] for k in keys if k in labels
         and labels[k].get("score") is not None
         and labels[k].get("n_companies", min_companies) >= min_companies]
    return float(np.median(s)) if s else float("nan")


def labels_map(labels: Mapping[int, dict]) -> dict[int, str]:
    """latent id -> short label."""
    return {int(k): v.get("label", "") for k, v in labels.items()}


SORTS = ("id", "score", "doc_freq")


def select_labels(labels: Mapping[int, dict], *, sort: str = "id", min_score: float | None = None,
                  min_companies: int | None = None,
                  max_doc_freq: float | None = None) -> dict[int, dict]:
    """Label records filtered and ordered (a dict in that order).

    sort: "id", "score" (best first; no score last) or "doc_freq" (most widespread first).
    min_score: keep latents whose detection score is at least this; min_companies: firing in
    at least this many companies; max_doc_freq: firing in at most this share (drops generic
    latents, leaving those that can set clusters apart)."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    out = []
    for k, v in labels.items():
        sc, n, df = v.get("score"), v.get("n_companies"), v.get("doc_freq")
        if min_score is not None and (sc is None or sc < min_score):
            continue
        if min_companies is not None and n is not None and n < min_companies:
            continue
        if max_doc_freq is not None and df is not None and df > max_doc_freq:
            continue
        out.append((int(k), v))
    key = {"id": lambda kv: kv[0],
           "score": lambda kv: (kv[1].get("score") is None, -(kv[1].get("score") or 0), kv[0]),
           "doc_freq": lambda kv: (-(kv[1].get("doc_freq") or 0), kv[0])}[sort]
    return dict(sorted(out, key=key))


def to_json(labels: Mapping[int, dict], path: str | Path, sort: str | None = "id") -> Path:
    """Every record as JSON {id: record}; sort as in `select_labels` (None: the given order)."""
    path = Path(path)
    items = labels.items() if sort is None else select_labels(labels, sort=sort).items()
    path.write_text(json.dumps({str(k): v for k, v in items}, indent=1))
    return path


def to_html(labels: Mapping[int, dict], path: str | Path, title: str = "finsae SAE features",
            meta: Mapping | None = None, sort: str | None = "id") -> Path:
    """One self-contained HTML page: a searchable table of every latent (no external assets);
    a click on a column header sorts by it."""
    e = html.escape
    items = labels.items() if sort is None else select_labels(labels, sort=sort).items()
    rows = []
    for j, v in items:
        if v.get("contexts"):
            ex = "<br>".join(
                f"<span class=t>{e(x['ticker'])}</span> …"
                + e(x["text"]).replace("[[", "<mark>").replace("]]", "</mark>")
                + f"… <span class=a>{x['activation']:.2f}</span>" for x in v["contexts"][:5])
        else:
            ex = "<br>".join(
                f"<span class=t>{e(x['ticker'])}</span> …{e(x['context'][0])}"
                f"<mark>{e(x['context'][1])}</mark>{e(x['context'][2])}… "
                f"<span class=a>{x['activation']:.2f}</span>" for x in v.get("examples", [])[:5])
        comp = ", ".join(f"{e(c['ticker'])} <span class=n>{e(c['name'])}</span>"
                         for c in v.get("companies", []))
        sc = v.get("score")
        sc = "" if sc is None else f"{sc:.2f}"
        rows.append(f"<tr><td>{j}</td><td><b>{e(v['label'])}</b></td><td>{sc}</td>"
                    f"<td>{(v.get('doc_freq') or 0):.2f}</td><td>{comp}</td>"
                    f"<td class=ex>{ex}</td></tr>")
    info = e(json.dumps(dict(meta or {}), default=str))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}}mark{{background:#fd6}}
th{{cursor:pointer}}.t{{color:#06c}}.a,.n{{color:#888}}.ex{{font-family:monospace;font-size:12px}}
#q{{width:30em;padding:4px}}</style></head><body><h2>{e(title)}</h2>
<p class=n>{info}</p>
<p class=n>score: detection AUROC of the label on held-out companies (1 = the label's words
tell apart the windows where the feature fires; 0.5 = chance). Click a header to sort.</p>
<p><input id=q placeholder="filter: label, ticker, company or text" oninput="f()"> 
<span id=c></span></p>
<table id=tb><tr><th onclick="s(0)">id</th><th onclick="s(1)">label</th>
<th onclick="s(2)">score</th><th onclick="s(3)">firing share</th><th>strongest companies</th>
<th>top contexts</th></tr>{''.join(rows)}</table>
<script>function f(){{var q=document.getElementById('q').value.toLowerCase(),n=0;
var r=document.getElementById('tb').rows;for(var i=1;i<r.length;i++){{
var s=r[i].textContent.toLowerCase().indexOf(q)>=0;r[i].style.display=s?'':'none';n+=s;}}
document.getElementById('c').textContent=n+' features';}}f();
var dir={{}};function s(c){{var t=document.getElementById('tb'),r=[].slice.call(t.rows,1);
dir[c]=-(dir[c]||1);r.sort(function(a,b){{var x=a.cells[c].textContent,y=b.cells[c].textContent,
u=parseFloat(x),v=parseFloat(y);if(isNaN(u))u=-1e9;if(isNaN(v))v=-1e9;
return c==1?dir[c]*x.localeCompare(y):dir[c]*(u-v);}});
r.forEach(function(x){{t.tBodies[0].appendChild(x);}});}}</script></body></html>"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
