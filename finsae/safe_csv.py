"""CSV output that a spreadsheet opens as text: a text cell starting with ``=``, ``+``, ``-``,
``@`` (or a tab or carriage return) would run as a formula in Excel, LibreOffice or Google
Sheets (CSV formula injection, OWASP). Such cells get a leading ``'``, which spreadsheets hide
and show the text as written. Numbers, including negative ones, are left alone."""

from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(v):
    if isinstance(v, str) and v.startswith(FORMULA_START):
        try:
            float(v)          # "-0.5" is a number written as text: not a formula
            return v
        except ValueError:
            return "'" + v
    return v


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with every formula-leading text cell (and index label) escaped."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c].dtype):
            out[c] = out[c].map(escape_cell)
    if out.index.dtype == object:
        out.index = out.index.map(escape_cell)
    out.columns = [escape_cell(c) for c in out.columns]
    return out


def to_csv(df: pd.DataFrame, path, **kw) -> None:
    """``df.to_csv(path, **kw)`` with formula-leading text cells escaped."""
    escape_formulas(df).to_csv(path, **kw)
