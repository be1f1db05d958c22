"""The evaluation universe: companies that every method can be scored on."""

from __future__ import annotations

import pandas as pd

from .classifications import partition
from .companies import GICS_LEVELS, drop_duplicate_share_classes
from .errors import LoadReport


def evaluation_universe(companies: pd.DataFrame, prices: pd.DataFrame,
                        min_price_days: int = 1) -> list[str]:
    """Tickers with a description, a SIC code, all four GICS levels and prices, one share
    class per company (the class with the most price days is kept).

    The reasons each other company was left out are in `universe_report(...)`.
    """
    return universe_report(companies, prices, min_price_days)[0]


def universe_report(companies: pd.DataFrame, prices: pd.DataFrame,
                    min_price_days: int = 1) -> tuple[list[str], LoadReport]:
    report = LoadReport(source="evaluation universe", n_read=len(companies))
    n_days = prices.notna().sum().reindex(companies.index).fillna(0)
    checks = {
        "no description": companies["description"].astype(str).str.strip() == "",
        "no SIC code": ~companies.index.isin(partition(companies, "sic4").index),
        "missing a GICS level": companies[list(GICS_LEVELS)].isna().any(axis=1),
        "no prices": n_days < min_price_days,
    }
    ok = pd.Series(True, index=companies.index)
    for reason, bad in checks.items():
        for t in companies.index[bad & ok]:
            report.skip(reason, t)
        ok &= ~bad
    kept = drop_duplicate_share_classes(companies[ok], prefer=n_days)
    for item in kept.attrs["share_class_report"].skipped.get("second share class", []):
        report.skip("second share class", item)
    report.n_kept = len(kept)
    return sorted(kept.index), report
