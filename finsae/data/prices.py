"""Daily adjusted close prices: the bundled AlphaVantage series, a user file, or yfinance.

All loaders return a wide DataFrame: a sorted DatetimeIndex named ``date`` x one column per
ticker (canonical spelling, see `normalize_ticker`), float64, NaN where a ticker has no price.
``attrs["source"]`` says where the prices came from and ``attrs["report"]`` what was skipped.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..hashing import file_digest
from ..integrity import check_file, remove_file, report_damaged, write_checksum
from .errors import DataError, LoadReport, check_input_file, first_line
from .paths import cache_dir, data_dir
from .tickers import check_ticker, normalize_ticker, require_tickers, ticker_problem

LONG_PRICE_COLUMNS = ("adjusted_close", "adj_close", "adj close", "close", "price")


def bundled_prices_path(kind: str = "adjusted") -> Path:
    name = {"adjusted": "adjusted_close_wide.csv.gz", "raw": "close_wide.csv.gz"}[kind]
    return data_dir() / "prices" / name


def load_prices(path: str | Path | None = None, *, source: str | None = None,
                tickers: Iterable[str] | None = None, start=None, end=None,
                apply_fixes: bool = True, cache: bool = True) -> pd.DataFrame:
    """Daily adjusted close, wide (date x ticker).

    path: a CSV (optionally .gz) or parquet file, wide (first column the date, one column per
        ticker) or long (columns date, ticker and one of adjusted_close/adj_close/close/price);
        None for the bundled AlphaVantage series 1999-11-01 .. 2021-04-21.
    source: "bundled", "file" or "yfinance" (inferred from path when None). yfinance needs
        `tickers` and network access; its downloads are cached on disk.
    tickers: keep only these (unknown ones raise `UnknownTickerError` with suggestions).
    start, end: date range (inclusive).
    apply_fixes: for the bundled series, discard the prices listed as ``drop_before`` in
        ``data/prices/known_price_fixes.csv`` (another security's history spliced in).
    """
    source = source or ("bundled" if path is None else "file")
    if source == "yfinance":
        if tickers is None:
            raise ValueError("source='yfinance' needs a list of tickers")
        prices = fetch_yfinance(list(tickers), start=start, end=end)
    elif source == "bundled":
        path = bundled_prices_path("adjusted")
        prices = read_cached(path, cache)
        prices.attrs["source"] = "bundled:alphavantage_sp500_1999_2021"
        if apply_fixes:
            prices = apply_drop_fixes(prices, known_price_fixes())
    elif source == "file":
        prices = read_cached(Path(path), cache)
        prices.attrs["source"] = str(path)
    else:
        raise ValueError(f"source must be bundled, file or yfinance, not {source!r}")
    attrs = dict(prices.attrs)
    if tickers is not None and source != "yfinance":
        keep = require_tickers(tickers, prices.columns, what=f"the prices ({attrs['source']})")
        prices = prices[keep]
    if start is not None or end is not None:
        prices = prices.loc[pd.Timestamp(start) if start else None:
                            pd.Timestamp(end) if end else None]
    prices.attrs = attrs
    return prices


def read_cached(path: Path, cache: bool) -> pd.DataFrame:
    """Read and validate a price file; a validated copy is kept as parquet, keyed by content."""
    check_input_file(path)
    if not cache:
        return read_price_file(path)
    digest = file_digest(path, 20)
    cached = cache_dir("prices") / f"{path.name}.{digest}.parquet"
    if cached.exists():
        # The key is the source file's hash, so a damaged copy would be served for ever: the
        # copy carries its own checksum (written with it) and is verified on every read.
        problem = check_file(cached)
        if problem is None:
            try:
                out = pd.read_parquet(cached)
                out.attrs["report"] = LoadReport(source=str(path), n_read=out.size,
                                                 n_kept=int(out.notna().to_numpy().sum()))
                return out
            except Exception as e:  # noqa: BLE001 - any unreadable copy is rebuilt
                problem = f"unreadable: {type(e).__name__}"
        report_damaged(cached, problem)
        remove_file(cached)
    out = read_price_file(path)
    tmp = cached.with_suffix(".tmp")
    plain = out.copy()
    plain.attrs = {}
    plain.to_parquet(tmp)
    write_checksum(tmp, name=cached.name)
    tmp.replace(cached)  # atomic: a reader never sees a half-written file
    return out


def read_price_file(path: str | Path) -> pd.DataFrame:
    """Parse and validate a wide or long price file (CSV, CSV.gz or parquet). See `load_prices`."""
    path = check_input_file(path)
    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a bad file
            raise DataError(f"not a readable parquet file ({first_line(e)})", path=path) from e
        if isinstance(df.index, pd.DatetimeIndex) or df.index.name is not None \
                or any(n is not None for n in df.index.names[1:]):
            df = df.reset_index()  # the dates (or date, ticker) kept as the index
        df.columns = [str(c) for c in df.columns]
        df = _epoch_dates(df, path)
        df = df.astype(object).where(df.notna(), "")
        header = list(df.columns)
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", newline="") as f:
                header = next(csv.reader(f), None)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"not a readable CSV ({first_line(e)})", path=path) from e
        if not header:
            raise DataError("empty file", path=path)
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, header=0)
        except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError,
                pd.errors.EmptyDataError) as e:  # e.g. a truncated .gz
            raise DataError(f"not a readable CSV ({first_line(e)})", path=path) from e
        df.columns = header  # pandas would rename duplicates (AAPL.1): keep them to report them
    lower = [h.strip().lower() for h in header]
    if "ticker" in lower or "symbol" in lower:
        return _parse_long(df, lower, path)
    return _parse_wide(df, header, path)


def _epoch_dates(df: pd.DataFrame, path) -> pd.DataFrame:
    """A numeric date column of a parquet file read as Unix time (unit from its magnitude)."""
    lower = [c.strip().lower() for c in df.columns]
    try:
        j = _date_column(lower, path)
    except DataError:
        return df
    col = df.iloc[:, j]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return df
    v = pd.to_numeric(col, errors="coerce")
    big = float(v.abs().max()) if v.notna().any() else 0.0
    unit = "s" if big < 1e11 else "ms" if big < 1e14 else "us" if big < 1e17 else "ns"
    if big < 1e8:  # not plausibly a Unix time after 1973 in any unit
        raise DataError(f"date column {df.columns[j]!r} holds numbers ({v.iloc[0]} ...), "
                        "not dates or Unix times", path=path)
    df = df.copy()
    df.isetitem(j, pd.to_datetime(v, unit=unit).dt.strftime("%Y-%m-%d %H:%M:%S"))
    return df


def _date_column(lower: list[str], path) -> int:
    for name in ("date", "timestamp", "datetime", "time"):
        if name in lower:
            return lower.index(name)
    if lower and lower[0] in ("", "unnamed: 0", "index"):
        return 0
    raise DataError(f"missing column date (found {', '.join(lower[:8])}...)", path=path)


def _parse_dates(values: pd.Series, path) -> pd.DatetimeIndex:
    dates = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = dates.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"unreadable date {values.iloc[i]!r}", path=path, row=i + 2)
    return pd.DatetimeIndex(dates).tz_localize(None) if dates.dt.tz is not None \
        else pd.DatetimeIndex(dates)


def _parse_numbers(values: pd.DataFrame, path, tickers: list[str], rows: np.ndarray) -> np.ndarray:
    """Strings -> float64; '' and NA are missing; anything else non-numeric or <= 0 is an error."""
    s = values.astype(str).apply(lambda c: c.str.strip())
    empty = s.isin(["", "nan", "NaN", "NA", "<NA>", "None", "null"]).to_numpy()
    num = s.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(num) & ~empty
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"non-numeric price {s.iat[r, c]!r}", path=path, row=int(rows[r]),
                        ticker=tickers[c])
    nonpos = num <= 0
    if nonpos.any():
        r, c = np.argwhere(nonpos)[0]
        raise DataError(f"non-positive price {num[r, c]!r}", path=path, row=int(rows[r]),
                        ticker=tickers[c])
    return num


def _check_dates(dates: pd.DatetimeIndex, rows: np.ndarray, path, ticker=None) -> None:
    d = dates.to_numpy()
    dup = np.flatnonzero(d[1:] == d[:-1])
    if len(dup):
        i = dup[0] + 1
        raise DataError(f"duplicate date {dates[i].date()} (also on row {rows[i - 1]})",
                        path=path, row=int(rows[i]), ticker=ticker)
    back = np.flatnonzero(d[1:] < d[:-1])
    if len(back):
        i = back[0] + 1
        raise DataError(f"dates not sorted: {dates[i].date()} comes after {dates[i - 1].date()}",
                        path=path, row=int(rows[i]), ticker=ticker)


def _parse_wide(df: pd.DataFrame, header: list[str], path) -> pd.DataFrame:
    lower = [h.strip().lower() for h in header]
    dcol = _date_column(lower, path)
    tick_cols = [j for j in range(len(header)) if j != dcol]
    tickers = [normalize_ticker(header[j]) for j in tick_cols]
    seen: dict[str, int] = {}
    for j, t in zip(tick_cols, tickers):
        if not t:
            raise DataError(f"blank ticker in header column {j + 1}", path=path, row=1)
        problem = ticker_problem(header[j])
        if problem:
            raise DataError(f"invalid {problem} in header column {j + 1}", path=path, row=1)
        if t in seen:
            raise DataError(f"duplicate ticker column {t} (columns {seen[t] + 1} and {j + 1})",
                            path=path, row=1, ticker=t)
        seen[t] = j
    rows = np.arange(len(df)) + 2
    dates = _parse_dates(df.iloc[:, dcol].reset_index(drop=True), path)
    _check_dates(dates, rows, path)
    num = _parse_numbers(df.iloc[:, tick_cols], path, tickers, rows)
    out = pd.DataFrame(num, index=pd.DatetimeIndex(dates, name="date"), columns=tickers)
    out.columns.name = "ticker"
    out.attrs["report"] = LoadReport(source=str(path), n_read=num.size,
                                     n_kept=int(np.isfinite(num).sum()))
    return out


def _parse_long(df: pd.DataFrame, lower: list[str], path) -> pd.DataFrame:
    dcol = _date_column(lower, path)
    tcol = lower.index("ticker") if "ticker" in lower else lower.index("symbol")
    pcol = next((lower.index(c) for c in LONG_PRICE_COLUMNS if c in lower), None)
    if pcol is None:
        raise DataError("missing price column (one of " + ", ".join(LONG_PRICE_COLUMNS) + ")",
                        path=path)
    rows = np.arange(len(df)) + 2
    tick = df.iloc[:, tcol].map(normalize_ticker).to_numpy()
    blank = np.flatnonzero(tick == "")
    if len(blank):
        raise DataError("blank ticker", path=path, row=int(rows[blank[0]]))
    for t in pd.unique(tick):
        if ticker_problem(t):
            i = int(np.flatnonzero(tick == t)[0])
            check_ticker(df.iloc[i, tcol], path=path, row=int(rows[i]))
    dates = _parse_dates(df.iloc[:, dcol].reset_index(drop=True), path)
    price = _parse_numbers(df.iloc[:, [pcol]], path, ["?"], rows)[:, 0]
    frame = pd.DataFrame({"date": dates, "ticker": tick, "price": price, "row": rows})
    for t, g in frame.groupby("ticker", sort=False):
        _check_dates(pd.DatetimeIndex(g["date"]), g["row"].to_numpy(), path, ticker=t)
    out = frame.pivot(index="date", columns="ticker", values="price").sort_index()
    out.index.name, out.columns.name = "date", "ticker"
    out.attrs["report"] = LoadReport(source=str(path), n_read=len(frame),
                                     n_kept=int(np.isfinite(price).sum()))
    return out


def known_price_fixes(path: str | Path | None = None) -> pd.DataFrame:
    """The hand-checked fixes for the bundled series: ticker, date, action (drop_before|zero)."""
    path = Path(path or data_dir() / "prices" / "known_price_fixes.csv")
    fixes = pd.read_csv(path, comment="#")
    missing = {"ticker", "date", "action"} - set(fixes.columns)
    if missing:
        raise DataError(f"missing column(s) {', '.join(sorted(missing))}", path=path)
    fixes["date"] = pd.to_datetime(fixes["date"])
    bad = ~fixes["action"].isin(["drop_before", "zero"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"unknown action {fixes['action'].iloc[i]!r}", path=path, row=i + 5)
    return fixes


def apply_drop_fixes(prices: pd.DataFrame, fixes: pd.DataFrame) -> pd.DataFrame:
    """Blank the prices before each ``drop_before`` date (a pure function: returns a copy)."""
    out = prices.copy()
    report = prices.attrs.get("report") or LoadReport(source=prices.attrs.get("source", "?"))
    for f in fixes[fixes["action"] == "drop_before"].itertuples():
        if f.ticker in out.columns:
            mask = out.index < f.date
            n = int(out.loc[mask, f.ticker].notna().sum())
            out.loc[mask, f.ticker] = np.nan
            report.skip("known price fix: drop_before", f"{f.ticker} {n} days before {f.date.date()}")
    out.attrs = dict(prices.attrs)
    out.attrs["report"] = report
    return out


def fetch_yfinance(tickers: list[str], start=None, end=None, *, refresh: bool = False,
                   downloader=None) -> pd.DataFrame:
    """Adjusted close from Yahoo Finance through yfinance, cached on disk per ticker and range.

    A ticker already cached for the same (start, end) is read from disk with no network call.
    Tickers Yahoo returns nothing for are listed in ``attrs["report"]`` (never silently dropped).
    `downloader` replaces ``yfinance.download`` (tests).
    """
    tickers = [normalize_ticker(t) for t in tickers]
    key = f"{pd.Timestamp(start).date() if start else 'min'}_{pd.Timestamp(end).date() if end else 'max'}"
    folder = cache_dir("yfinance", key)
    report = LoadReport(source="yfinance", n_read=len(tickers))
    series, todo = {}, []
    for t in tickers:
        f = folder / f"{t}.parquet"
        if f.exists() and not refresh:
            problem = check_file(f)
            if problem is None:
                try:
                    series[t] = pd.read_parquet(f)["close"]
                    continue
                except Exception as e:  # noqa: BLE001 - any unreadable copy is fetched again
                    problem = f"unreadable: {type(e).__name__}"
            report_damaged(f, problem, "fetching it again")
            remove_file(f)
        todo.append(t)
    if todo:
        if downloader is None:
            import yfinance
            downloader = yfinance.download
        yahoo = [t.replace(".", "-") for t in todo]  # Yahoo spells share classes BRK-B
        raw = downloader(yahoo, start=start, end=end, auto_adjust=True, progress=False,
                         group_by="column", threads=False)
        close = raw["Close"] if isinstance(raw.columns, pd.MultiIndex) else raw[["Close"]]
        if not isinstance(raw.columns, pd.MultiIndex):
            close.columns = yahoo[:1]
        for t, y in zip(todo, yahoo):
            s = close[y].dropna() if y in close.columns else pd.Series(dtype=float)
            if s.empty:
                report.skip("no data from yfinance", t)
                continue
            s = s.astype(float)
            s.index = pd.DatetimeIndex(s.index).tz_localize(None)
            tmp = folder / f"{t}.tmp"
            s.rename("close").to_frame().to_parquet(tmp)
            write_checksum(tmp, name=f"{t}.parquet")
            tmp.replace(folder / f"{t}.parquet")
            series[t] = s
    out = pd.DataFrame({t: series[t] for t in tickers if t in series}).sort_index()
    out.index.name, out.columns.name = "date", "ticker"
    report.n_kept = out.shape[1]
    out.attrs = {"source": "yfinance", "report": report}
    return out

