"""Exporting feature labels: select_labels (filter, order), to_json and a searchable to_html."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path


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
