"""Point-in-time S&P 500 membership (1996-2025), with ticker renames mapped.

The history (data/membership/sp500_historical_components.csv.gz) lists the full member set on
each date membership changed, in the tickers of that time (FB, ANTM, BF-B). Renames
(data/membership/ticker_name_mappings.json: FB -> META, ANTM -> ELV, ...) tie the spellings
of one company together, so membership can be asked in any of them: pass `universe` (e.g. the
price table's columns) to get members spelled as the universe spells them.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pandas as pd

from .paths import data_dir
from .tickers import normalize_ticker


@lru_cache(maxsize=2)
def _history(path: str) -> tuple[pd.DatetimeIndex, tuple[frozenset, ...]]:
    h = pd.read_csv(path)
    dates = pd.DatetimeIndex(pd.to_datetime(h["date"]))
    sets = tuple(frozenset(normalize_ticker(t) for t in str(s).split(",") if t.strip())
                 for s in h["tickers"])
    order = dates.argsort()
    return dates[order], tuple(sets[i] for i in order)


@lru_cache(maxsize=2)
def rename_groups(path: str | None = None) -> dict[str, frozenset]:
    """Ticker -> every spelling of the same company (itself included), from the rename map."""
    path = path or str(data_dir() / "membership" / "ticker_name_mappings.json")
    with open(path) as f:
        mapping = json.load(f)["mappings"]
    groups: dict[str, set] = {}
    for old, new in mapping.items():
        a, b = normalize_ticker(old), normalize_ticker(new)
        merged = groups.get(a, {a}) | groups.get(b, {b})
        for t in merged:
            groups[t] = merged
    return {t: frozenset(g) for t, g in groups.items()}


def sp500_members(date, universe=None) -> list[str]:
    """Sorted tickers in the S&P 500 at the close of `date` (the last change on or before it).

    universe: optional iterable of tickers; members are then returned in the universe's
    spelling (a member FB is returned as META if the universe has META but not FB), and
    members absent from the universe are left out.
    """
    dates, sets = _history(str(data_dir() / "membership" / "sp500_historical_components.csv.gz"))
    ts = pd.Timestamp(date)
    i = dates.searchsorted(ts, side="right") - 1
    if i < 0:
        raise ValueError(f"no S&P 500 membership before {dates[0].date()} (asked for {ts.date()})")
    members = sets[i]
    if universe is None:
        return sorted(members)
    groups = rename_groups()
    out = set()
    for t in {normalize_ticker(u) for u in universe}:
        if t in members or any(a in members for a in groups.get(t, ())):
            out.add(t)
    return sorted(out)

