"""Ticker spelling: one canonical form, share classes, and lookups with suggestions."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UnknownTickerError

_SEP = re.compile(r"[-/_ ]")


def normalize_ticker(t: str) -> str:
    """Upper case, with '.' for share classes (BRK-B, BRK/B and brk.b all become BRK.B)."""
    return _SEP.sub(".", str(t).strip().upper())


def require_tickers(requested: Iterable[str], known: Iterable[str], *, what: str = "the data",
                    path=None) -> list[str]:
    """Normalise `requested`; raise UnknownTickerError (with suggestions) on the first unknown one."""
    known = set(known)
    out = []
    for t in requested:
        n = normalize_ticker(t)
        if n not in known:
            raise UnknownTickerError(n, known, what=what, path=path)
        out.append(n)
    return out
