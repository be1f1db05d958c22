"""Errors and skip reports for the data layer.

Every bad input gets one `DataError` whose message names the file and, where it applies, the
row (1-based, as a spreadsheet shows it, header = row 1) or the ticker. Rows that a loader skips
on purpose are never dropped silently: they are counted in a `LoadReport` attached to the
result (``frame.attrs["report"]``) and printed by the CLI.
"""

from __future__ import annotations

import difflib
from pathlib import Path


class DataError(ValueError):
    """A bad input file or value. The message names the file and the row or ticker."""

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None,
                 ticker: str | None = None):
        where = []
        if path is not None:
            where.append(f"{path}")
        if row is not None:
            where.append(f"row {row}")
        if ticker is not None:
            where.append(f"ticker {ticker}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.path = None if path is None else str(path)
        self.row = row
        self.ticker = ticker


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def check_input_file(path: str | Path) -> Path:
    """An input file that exists, is a file (not a folder) and is not empty, else a DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir():
        raise DataError("is a folder, not a file", path=path)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise DataError(f"cannot be read ({first_line(e)})", path=path) from e
    if size == 0:
        raise DataError("empty file", path=path)
    return path


class UnknownTickerError(DataError, KeyError):
    """A ticker that is not in the data, with close-match suggestions."""

    def __init__(self, ticker: str, known, *, what: str = "the data", path=None):
        known = sorted({str(k) for k in known})
        self.suggestions = suggest(ticker, known)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown ticker {ticker!r}: not in {what}{hint}", path=path)
        self.ticker = ticker

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


def suggest(ticker: str, known, n: int = 5) -> list[str]:
    """Close matches for a mistyped ticker (prefix matches first, then difflib)."""
    t = str(ticker).upper()
    known = list(known)
    out = [k for k in known if k.startswith(t) and k != t][:2]
    for k in difflib.get_close_matches(t, known, n=n, cutoff=0.5):
        if k not in out:
            out.append(k)
    return out[:n]


class LoadReport(dict):
    """What a loader read, kept and skipped, with the reason for every skipped item.

    A dict underneath (attribute access on top), so a DataFrame carrying it in ``attrs`` can
    still be written to parquet or JSON.
    """

    def __init__(self, source: str, n_read: int = 0, n_kept: int = 0,
                 skipped: dict[str, list[str]] | None = None, notes: list[str] | None = None):
        super().__init__(source=source, n_read=n_read, n_kept=n_kept, skipped=skipped or {},
                         notes=notes or [])

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def skip(self, reason: str, item: str) -> None:
        self["skipped"].setdefault(reason, []).append(str(item))

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self["skipped"].values())

    def summary(self) -> str:
        lines = [f"{self.source}: read {self.n_read}, kept {self.n_kept}, skipped {self.n_skipped}"]
        for reason, items in self.skipped.items():
            shown = ", ".join(items[:8]) + (" ..." if len(items) > 8 else "")
            lines.append(f"  skipped {len(items)} ({reason}): {shown}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**self, "n_skipped": self.n_skipped,
                "skipped_counts": {k: len(v) for k, v in self.skipped.items()}}
