"""A self-contained HTML report: tables and PNG figures inlined, so it opens offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} .note{color:#555;font-size:.92em}
figure{margin:1em 0} figcaption{color:#555;font-size:.9em} img{max-width:100%}
.meta td{text-align:left}
"""


def table_html(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    fmt = {c: (lambda v, f=floatfmt: f.format(v) if pd.notna(v) else "")
           for c in df.columns if pd.api.types.is_float_dtype(df[c])}
    return df.to_html(formatters=fmt, border=0, escape=True, na_rep="")


def figure_html(png: str | Path, caption: str = "") -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">{cap}</figure>'


def write_report(path: str | Path, title: str, sections: list[tuple[str, list[str]]],
                 meta: dict[str, str] | None = None) -> Path:
    """Write `sections` ([(heading, [html fragments])]) under a metadata table to `path`."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in meta.items())
        parts.append(f"<table class='meta'>{rows}</table>")
    for heading, fragments in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.extend(fragments)
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts))
    return path


def paragraph(text: str, cls: str = "") -> str:
    c = f" class='{cls}'" if cls else ""
    return f"<p{c}>{html.escape(text)}</p>"


def tear_sheets(out: Path, prefix: str = "tearsheet_") -> list[str]:
    """One figure per strategy's tear sheet PNG in `out` (equity, drawdown, rolling Sharpe,
    trade statistics), in name order."""
    pngs = sorted(Path(out).glob(f"{prefix}*.png"))
    if not pngs:
        return [paragraph("(no tear sheets produced)", "note")]
    return [figure_html(p, p.stem[len(prefix):]) for p in pngs]
