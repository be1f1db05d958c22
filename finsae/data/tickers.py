"""Ticker spelling: one canonical form, share classes, and lookups with suggestions."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import DataError, UnknownTickerError

_SEP = re.compile(r"[-/_]")
_VALID = re.compile(r"[A-Z0-9.&^=]+")


def normalize_ticker(t: str) -> str:
    """Upper case, with '.' for share classes (BRK-B, BRK/B, brk_b and brk.b all become BRK.B).

    Leading and trailing blanks are dropped; a blank inside (``NV DA``) is kept, so that
    `ticker_problem` can refuse it rather than guess which ticker was meant."""
    return _SEP.sub(".", str(t).strip().upper())


def ticker_problem(t) -> str | None:
    """Why `t` cannot be a ticker (one phrase), or None. Blank tickers are left to the caller."""
    n = normalize_ticker(t)
    if not n:
        return None
    if re.search(r"\s", n):
        return f"ticker {str(t).strip()!r} contains a space"
    if not _VALID.fullmatch(n):
        bad = sorted({c for c in n if not _VALID.fullmatch(c)})
        return f"ticker {str(t).strip()!r} contains {''.join(bad)!r}"
    return None


def check_ticker(t, *, path=None, row: int | None = None) -> str:
    """The normalised ticker, or one DataError naming the file and row when it cannot be one."""
    problem = ticker_problem(t)
    if problem:
        raise DataError(f"invalid {problem} (tickers are letters, digits and '.' for share "
                        "classes: BRK.B, BRK-B and BRK/B are the same ticker)", path=path,
                        row=row)
    return normalize_ticker(t)


def require_tickers(requested: Iterable[str], known: Iterable[str], *, what: str = "the data",
                    path=None) -> list[str]:
    """Normalise `requested`; raise UnknownTickerError (with suggestions) on the first unknown one."""
    known = set(known)
    out = []
    for t in requested:
        n = check_ticker(t, path=path)
        if n not in known:
            raise UnknownTickerError(n, known, what=what, path=path)
        out.append(n)
    return out
