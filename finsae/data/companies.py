"""Companies: ticker, name, description, SIC and GICS, from the bundled table or a user CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, LoadReport, check_input_file, first_line
from .paths import data_dir
from .tickers import check_ticker, normalize_ticker, ticker_problem

GICS_LEVELS = ("gics_sector", "gics_industry_group", "gics_industry", "gics_sub_industry")

#: description vintages: which text each company gets.
VINTAGES = {
    # FinanceDatabase summary (~2021-2026) where present, else the c2016 text (bundled default).
    "latest": ("description_financedatabase", "description_c2016"),
    # only the FinanceDatabase summary.
    "financedatabase": ("description_financedatabase",),
    # only the c. 2013-2016 text: the period-appropriate one for price windows before ~2017.
    "c2016": ("description_c2016",),
    # c2016 where present, else FinanceDatabase.
    "earliest": ("description_c2016", "description_financedatabase"),
}

REQUIRED_COLUMNS = ("ticker", "description")


def load_companies(path: str | Path | None = None, *, vintage: str = "latest",
                   require_description: bool = False) -> pd.DataFrame:
    """Load companies as a DataFrame indexed by ticker.

    Columns always present: ``name``, ``description``, ``description_vintage``, ``sic`` (Int64,
    4-digit SEC code) and the four ``gics_*`` levels (missing values are NA). Other columns of the
    file are kept.

    path: a CSV with at least ``ticker`` and ``description`` (optional ``name``, ``sic``,
        ``gics_sector`` ... ``gics_sub_industry``); None for the bundled table.
    vintage: for the bundled table, which description each company gets (see `VINTAGES`).
    require_description: raise on a row without description text instead of keeping it with an
        empty description (the row is then counted in ``attrs["report"]``).

    Errors (`DataError`, naming file and row): missing columns, a blank, invalid (``NV DA``) or
    duplicate ticker,
    a non-numeric SIC, and, with require_description, an empty description.
    """
    bundled = path is None
    path = Path(data_dir() / "companies.csv" if bundled else path)
    check_input_file(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise DataError("empty file: expected a CSV with a header row (ticker, description, "
                        "...)", path=path) from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"not a readable CSV ({first_line(e)})", path=path) from e
    raw.columns = [c.strip() for c in raw.columns]
    if bundled:
        if vintage not in VINTAGES:
            raise ValueError(f"vintage must be one of {sorted(VINTAGES)}, not {vintage!r}")
        raw["description"] = _pick_vintage(raw, VINTAGES[vintage])
    else:
        lower = {c.lower(): c for c in raw.columns}
        raw = raw.rename(columns={v: k for k, v in lower.items() if k in
                                  (*REQUIRED_COLUMNS, "name", "sic", *GICS_LEVELS)})
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; found {', '.join(raw.columns)}",
                        path=path)

    report = LoadReport(source=str(path), n_read=len(raw))
    if bundled:  # one row of the bundled table is a note, not a ticker: counted, not kept
        bad = raw["ticker"].map(ticker_problem).notna()
        for t in raw.loc[bad, "ticker"]:
            report.skip("not a ticker", t)
        raw = raw[~bad.to_numpy()].reset_index(drop=True)
    tickers = raw["ticker"].map(normalize_ticker)
    for i, t in enumerate(tickers):
        if not t:
            raise DataError("blank ticker", path=path, row=i + 2)
        check_ticker(raw["ticker"].iloc[i], path=path, row=i + 2)
    dup = tickers.duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((tickers == tickers.iloc[i]).to_numpy())[0])
        raise DataError(f"duplicate ticker {tickers.iloc[i]} (first seen on row {first + 2})",
                        path=path, row=i + 2, ticker=tickers.iloc[i])

    desc = raw["description"].astype(str).str.strip()
    empty = desc == ""
    if empty.any():
        if require_description:
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataError(f"empty description ({int(empty.sum())} such rows in all)",
                            path=path, row=i + 2, ticker=tickers.iloc[i])
        for t in tickers[empty]:
            report.skip("no description", t)

    out = raw.copy()
    out["ticker"] = tickers
    out["description"] = desc
    if not bundled:  # the bundled table got its vintage column from _pick_vintage
        out["description_vintage"] = "user"
    if "name" not in out.columns:
        out["name"] = out["ticker"]
    out["name"] = out["name"].where(out["name"].str.strip() != "", out["ticker"])
    out["sic"] = _parse_sic(out.get("sic"), path)
    for level in GICS_LEVELS:
        col = out[level] if level in out.columns else pd.Series("", index=out.index)
        out[level] = col.astype(str).str.strip().replace("", pd.NA)
    for flag in [c for c in out.columns if c.startswith(("in_sp500", "in_nyse", "has_"))]:
        out[flag] = out[flag].str.lower().map({"true": True, "false": False}).astype("boolean")
    out = out.set_index("ticker", drop=False)
    out.index.name = None
    report.n_kept = int((~empty).sum())
    out.attrs["report"] = report
    out.attrs["source"] = str(path)
    out.attrs["vintage"] = vintage if bundled else "user"
    return out


def _pick_vintage(raw: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    text = pd.Series("", index=raw.index)
    which = pd.Series("", index=raw.index)
    for col in reversed(columns):  # the first column listed wins
        has = raw[col].str.strip() != ""
        text = text.where(~has, raw[col])
        which = which.where(~has, col.removeprefix("description_"))
    raw["description_vintage"] = which
    return text


def _parse_sic(col: pd.Series | None, path) -> pd.Series:
    if col is None:
        return pd.Series(pd.NA, dtype="Int64")
    s = col.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    num = pd.to_numeric(s.replace("", np.nan), errors="coerce")
    bad = num.isna() & (s != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"SIC code {s.iloc[i]!r} is not a number", path=path, row=i + 2)
    return num.round().astype("Int64")


def share_class_groups(companies: pd.DataFrame) -> pd.Series:
    """A key per company that is shared by share classes of one company (GOOG/GOOGL, FOX/FOXA).

    Two tickers are one company when they share a CIK, or, without CIK, the same non-empty
    description text.
    """
    cik = companies["cik"].astype(str).str.replace(r"\.0$", "", regex=True) \
        if "cik" in companies.columns else pd.Series("", index=companies.index)
    key = "cik:" + cik
    no_cik = cik.isin(["", "nan", "<NA>"])
    desc_key = "desc:" + companies["description"].astype(str)
    key = key.where(~no_cik, desc_key)
    no_desc = no_cik & (companies["description"].astype(str) == "")
    return key.where(~no_desc, "ticker:" + companies.index.to_series())


def drop_duplicate_share_classes(companies: pd.DataFrame,
                                 prefer: pd.Series | None = None) -> pd.DataFrame:
    """Keep one ticker per company. `prefer` (e.g. number of price days) ranks the classes;
    ties go to the shorter, then alphabetically first ticker (GOOGL before GOOG only by prefer).
    The dropped tickers are listed in ``attrs["report"]``."""
    key = share_class_groups(companies)
    score = (prefer.reindex(companies.index).fillna(-1) if prefer is not None
             else pd.Series(0, index=companies.index))
    order = pd.DataFrame({"key": key, "score": -score, "len": companies.index.str.len(),
                          "t": companies.index}).sort_values(["key", "score", "len", "t"])
    keep = order.drop_duplicates("key", keep="first")["t"]
    out = companies.loc[companies.index.isin(keep)].copy()
    report = LoadReport(source="share classes", n_read=len(companies), n_kept=len(out))
    for t in companies.index.difference(out.index):
        kept = order.loc[(order["key"] == key[t]) & order["t"].isin(keep), "t"].iloc[0]
        report.skip("second share class", f"{t} (kept {kept})")
    out.attrs = dict(companies.attrs)
    out.attrs["share_class_report"] = report
    return out


def bundled_descriptions(n: int | None = None) -> list[str]:
    """The first `n` non-empty descriptions of the bundled companies table, in file order (a
    fixed text sample for SAE training and metrics; reads one column only)."""
    d = pd.read_csv(data_dir() / "companies.csv", usecols=["description"])["description"]
    texts = d.dropna().astype(str).tolist()
    return texts if n is None else texts[:n]
