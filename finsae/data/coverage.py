"""Coverage of the inputs: how many companies have each piece of data, overall and per year."""

from __future__ import annotations

import pandas as pd

from .classifications import partition
from .companies import GICS_LEVELS


def coverage(companies: pd.DataFrame, prices: pd.DataFrame) -> dict:
    """Counts of companies with description, SIC, GICS and prices, plus a per-year table.

    Per year: tickers of the companies table with any price that year, with a price on every
    trading day of it (``complete_prices``), and of those, with description, SIC and all GICS
    levels (``complete_all``).
    """
    has_desc = companies["description"].astype(str).str.strip() != ""
    has_sic = companies.index.isin(partition(companies, "sic4").index)
    has_gics = companies["gics_sector"].notna()
    has_gics_all = companies[list(GICS_LEVELS)].notna().all(axis=1)
    in_table = prices.columns.intersection(companies.index)
    has_prices = companies.index.isin(in_table[prices[in_table].notna().any().to_numpy()])
    all_four = has_desc & has_sic & has_gics_all & has_prices
    out = {
        "companies": int(len(companies)),
        "with_description": int(has_desc.sum()),
        "with_sic": int(has_sic.sum()),
        "with_gics": int(has_gics.sum()),
        "with_gics_all_levels": int(has_gics_all.sum()),
        "with_prices": int(has_prices.sum()),
        "with_all": int(all_four.sum()),
        "price_tickers": int(prices.shape[1]),
        "price_tickers_without_company": sorted(prices.columns.difference(companies.index)),
        "price_dates": [str(prices.index.min().date()), str(prices.index.max().date())]
        if len(prices) else [],
    }
    px = prices[in_table]
    years = []
    complete_all = companies.index[all_four]
    for year, block in px.groupby(px.index.year):
        any_ = block.notna().any()
        full = block.notna().all()
        years.append({"year": int(year), "trading_days": int(len(block)),
                      "with_prices": int(any_.sum()), "complete_prices": int(full.sum()),
                      "complete_all": int(full.reindex(complete_all).fillna(False).sum())})
    out["per_year"] = years
    return out


def coverage_table(cov: dict) -> str:
    """Plain-text rendering of `coverage` for the terminal."""
    lines = [f"{'companies':<24}{cov['companies']:>6}"]
    for k in ("with_description", "with_sic", "with_gics", "with_gics_all_levels",
              "with_prices", "with_all"):
        lines.append(f"{k:<24}{cov[k]:>6}   {100 * cov[k] / max(cov['companies'], 1):5.1f}%")
    if cov["price_tickers_without_company"]:
        extra = cov["price_tickers_without_company"]
        lines.append(f"price tickers with no company row: {len(extra)} "
                     f"({', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''})")
    lines.append("")
    lines.append(f"{'year':<6}{'days':>6}{'with prices':>13}{'complete':>10}{'complete+all':>14}")
    for y in cov["per_year"]:
        lines.append(f"{y['year']:<6}{y['trading_days']:>6}{y['with_prices']:>13}"
                     f"{y['complete_prices']:>10}{y['complete_all']:>14}")
    return "\n".join(lines)
