"""Feature labels: what each SAE latent responds to, read off the corpus.

For each latent: its top-activating tokens with a little context, a short label (the most
frequent top-activating token strings, lower-cased and de-duplicated), the share of companies
where it fires, and the companies where it is strongest (largest pooled value). Exported as
JSON (`to_json`) and as one self-contained HTML page an analyst can search (`to_html`).
"""

from __future__ import annotations

import html
import json
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
        examples = []
        for o in picked[:n_examples]:
            r = int(rows[o])
            d = doc[r]
            a, b = max(int(tl.offsets[d]), r - context), min(int(tl.offsets[d + 1]), r + context + 1)
            examples.append({
                "ticker": str(tl.tickers[d]), "token": token_strings[r],
                "context": ["".join(token_strings[a:r]), token_strings[r],
                            "".join(token_strings[r + 1:b])],
                "activation": round(float(vals[o]), 4)})
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


def labels_map(labels: Mapping[int, dict]) -> dict[int, str]:
    """latent id -> short label."""
    return {int(k): v.get("label", "") for k, v in labels.items()}


def to_json(labels: Mapping[int, dict], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps({str(k): v for k, v in sorted(labels.items())}, indent=1))
    return path


def to_html(labels: Mapping[int, dict], path: str | Path, title: str = "finsae SAE features",
            meta: Mapping | None = None) -> Path:
    """One self-contained HTML page: a searchable table of every latent (no external assets)."""
    e = html.escape
    rows = []
    for j, v in sorted(labels.items()):
        ex = "<br>".join(
            f"<span class=t>{e(x['ticker'])}</span> …{e(x['context'][0])}"
            f"<mark>{e(x['context'][1])}</mark>{e(x['context'][2])}… "
            f"<span class=a>{x['activation']:.2f}</span>" for x in v["examples"][:5])
        comp = ", ".join(f"{e(c['ticker'])} <span class=n>{e(c['name'])}</span>"
                         for c in v["companies"])
        rows.append(f"<tr><td>{j}</td><td><b>{e(v['label'])}</b></td>"
                    f"<td>{v['doc_freq']:.2f}</td><td>{comp}</td><td class=ex>{ex}</td></tr>")
    info = e(json.dumps(dict(meta or {}), default=str))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}}mark{{background:#fd6}}
.t{{color:#06c}}.a,.n{{color:#888}}.ex{{font-family:monospace;font-size:12px}}
#q{{width:30em;padding:4px}}</style></head><body><h2>{e(title)}</h2>
<p class=n>{info}</p>
<p><input id=q placeholder="filter: label, ticker, company or text" oninput="f()"> 
<span id=c></span></p>
<table id=tb><tr><th>id</th><th>label</th><th>firing share</th><th>strongest companies</th>
<th>top activations</th></tr>{''.join(rows)}</table>
<script>function f(){{var q=document.getElementById('q').value.toLowerCase(),n=0;
var r=document.getElementById('tb').rows;for(var i=1;i<r.length;i++){{
var s=r[i].textContent.toLowerCase().indexOf(q)>=0;r[i].style.display=s?'':'none';n+=s;}}
document.getElementById('c').textContent=n+' features';}}f();</script></body></html>"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
