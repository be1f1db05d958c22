"""SIC and GICS codes as partitions of companies, at every level of each hierarchy."""

from __future__ import annotations

import pandas as pd

from .paths import data_dir

#: SIC divisions by 2-digit major group (the SEC/OSHA SIC manual's ranges).
SIC_DIVISIONS = (
    (1, 9, "A: Agriculture, Forestry and Fishing"),
    (10, 14, "B: Mining"),
    (15, 17, "C: Construction"),
    (20, 39, "D: Manufacturing"),
    (40, 49, "E: Transportation, Communications, Electric, Gas and Sanitary Services"),
    (50, 51, "F: Wholesale Trade"),
    (52, 59, "G: Retail Trade"),
    (60, 67, "H: Finance, Insurance and Real Estate"),
    (70, 89, "I: Services"),
    (91, 97, "J: Public Administration"),
    (99, 99, "K: Nonclassifiable Establishments"),
)

#: partition levels, coarse to fine within each scheme.
LEVELS = ("sic_division", "sic2", "sic3", "sic4",
          "gics_sector", "gics_industry_group", "gics_industry", "gics_sub_industry")


def sic_division(sic: int) -> str | None:
    major = int(sic) // 100
    for lo, hi, name in SIC_DIVISIONS:
        if lo <= major <= hi:
            return name
    return None  # major groups the manual leaves unused (e.g. 18, 19, 98)


def partition(companies: pd.DataFrame, level: str) -> pd.Series:
    """Ticker -> group label at `level` (one of `LEVELS`); companies without a code are left out.

    SIC levels use the 4-digit SEC code truncated to 3 or 2 digits (e.g. 3674 -> "367", "36").
    GICS levels use the names in the companies table. The Series' name is the level.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown partition level {level!r}; choose one of {', '.join(LEVELS)}")
    if level.startswith("gics"):
        labels = companies[level].dropna().astype(str)
    else:
        sic = companies["sic"].dropna().astype(int)
        if level == "sic_division":
            labels = sic.map(sic_division).dropna()
        else:
            digits = int(level[-1])
            labels = (sic // 10 ** (4 - digits)).astype(str).str.zfill(digits)
    labels.name = level
    return labels


def sic_titles() -> pd.Series:
    """SEC SIC code -> industry title (data/classifications/sec_sic_codes.csv)."""
    t = pd.read_csv(data_dir() / "classifications" / "sec_sic_codes.csv")
    return t.set_index("sic")["industry_title"]


def gics_hierarchy(version: str = "20230318") -> pd.DataFrame:
    """GICS sub-industry -> industry -> industry group -> sector, with codes, for a version."""
    h = pd.read_csv(data_dir() / "classifications" / "gics_sub_industry_hierarchy.csv", dtype=str)
    versions = sorted(h["version"].unique())
    if version not in versions:
        raise ValueError(f"unknown GICS version {version!r}; available: {', '.join(versions)}")
    return h[h["version"] == version].drop(columns="version").reset_index(drop=True)
