"""The data layer: loaders, validation errors (one per bad-input case), returns screen,
classifications, membership, universe, and `finsae data check`."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from finsae.cli import main
from finsae.data import (DataError, UnknownTickerError, evaluation_universe, fetch_yfinance,
                         load_companies, load_corpus, load_prices, log_returns, partition,
                         read_price_file, require_tickers, screen_returns, sp500_members)
from finsae.data.classifications import sic_division
from finsae.data.returns import clean_prices


# ---------------------------------------------------------------- companies
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bundled_companies_vintages():
    latest = load_companies()
    assert len(latest) == 721 and latest.index.is_unique   # 722 rows, one a note
    assert (latest["description"] != "").sum() >= 650
    c2016 = load_companies(vintage="c2016")
    fd = load_companies(vintage="financedatabase")
    # c2016 text only where the c2016 source had it; the default falls back to it
    assert (c2016["description"] != "").sum() < (latest["description"] != "").sum()
    assert set(latest["description_vintage"].unique()) <= {"financedatabase", "c2016", ""}
    only_c2016 = (fd["description"] == "") & (c2016["description"] != "")
    assert (latest.loc[only_c2016, "description"] == c2016.loc[only_c2016, "description"]).all()
    with pytest.raises(ValueError, match="vintage"):
        load_companies(vintage="2030")


def test_user_companies_ok_and_normalised(tmp_path):
    p = write(tmp_path, "c.csv", "Ticker,Description,SIC,gics_sector\n"
                                 "brk-b,Insurance and more,6331,Financials\nAAPL,Phones,3571,\n")
    c = load_companies(p)
    assert list(c.index) == ["BRK.B", "AAPL"]
    assert c.loc["BRK.B", "sic"] == 6331 and pd.isna(c.loc["AAPL", "gics_sector"])
    assert c.loc["AAPL", "name"] == "AAPL"


@pytest.mark.parametrize("text, match, row", [
    ("ticker,name\nA,x\n", "missing column.*description", None),
    ("ticker,description\nA,x\nB,y\nA,z\n", "duplicate ticker A.*first seen on row 2", 4),
    ("ticker,description,sic\nA,x,12a4\n", "SIC code '12a4' is not a number", 2),
    ("ticker,description\nA,x\n,y\n", "blank ticker", 3),
])
def test_user_companies_errors(tmp_path, text, match, row):
    p = write(tmp_path, "c.csv", text)
    with pytest.raises(DataError, match=match) as e:
        load_companies(p)
    assert str(p) in str(e.value)
    assert e.value.row == row


def test_empty_description_error_or_counted(tmp_path):
    p = write(tmp_path, "c.csv", "ticker,description\nA,x\nB,  \nC,\n")
    with pytest.raises(DataError, match=r"row 3.*ticker B.*empty description \(2 such rows"):
        load_companies(p, require_description=True)
    c = load_companies(p)
    assert len(c) == 3  # kept, not dropped, and counted
    assert c.attrs["report"].skipped["no description"] == ["B", "C"]


def test_missing_file():
    with pytest.raises(DataError, match="file not found"):
        load_companies("/nonexistent/companies.csv")


# ---------------------------------------------------------------- prices
def test_bundled_prices():
    p = load_prices()
    assert p.shape[1] == 504 and p.index.is_monotonic_increasing and p.index.is_unique
    assert p.index[0] == pd.Timestamp("1999-11-01") and p.index[-1] == pd.Timestamp("2021-04-21")
    # the known drop_before fix: ANTM's pre-IPO history of another security is gone
    assert p.loc[:"2001-10-29", "ANTM"].isna().all() and p.loc["2001-10-30", "ANTM"] > 0
    assert "drop_before" in " ".join(p.attrs["report"].skipped)
    sub = load_prices(tickers=["aapl", "MSFT"], start="2010-01-01", end="2010-12-31")
    assert list(sub.columns) == ["AAPL", "MSFT"] and sub.index.year.unique().tolist() == [2010]


def test_unknown_ticker_suggests():
    with pytest.raises(UnknownTickerError, match=r"'APPL'.*did you mean.*AAPL") as e:
        load_prices(tickers=["AAPL", "APPL"])
    assert "AAPL" in e.value.suggestions
    with pytest.raises(UnknownTickerError, match="MSFTT.*MSFT"):
        require_tickers(["MSFTT"], ["MSFT", "AAPL"])


def test_wide_long_parquet_roundtrip(tmp_path):
    wide = "date,AAA,BBB\n2020-01-02,10,20\n2020-01-03,11,\n2020-01-06,12.5,21\n"
    w = read_price_file(write(tmp_path, "w.csv", wide))
    assert w.shape == (3, 2) and np.isnan(w.loc["2020-01-03", "BBB"])
    long = "ticker,date,close\nBBB,2020-01-02,20\nAAA,2020-01-02,10\nAAA,2020-01-03,11\n" \
           "AAA,2020-01-06,12.5\nBBB,2020-01-06,21\n"
    lg = read_price_file(write(tmp_path, "l.csv", long))
    pd.testing.assert_frame_equal(lg, w, check_freq=False)
    gz = tmp_path / "w.csv.gz"
    gz.write_bytes(gzip.compress(wide.encode()))
    pd.testing.assert_frame_equal(read_price_file(gz), w)
    w.to_parquet(tmp_path / "w.parquet")
    pq = load_prices(tmp_path / "w.parquet")
    pd.testing.assert_frame_equal(pq, w, check_names=False, check_freq=False)
    assert pq.attrs["source"].endswith("w.parquet")


@pytest.mark.parametrize("text, match, row, ticker", [
    ("date,A,B\n2020-01-02,1,x\n", "non-numeric price 'x'", 2, "B"),
    ("date,A,B\n2020-01-02,1,2\n2020-01-03,0,2\n", "non-positive price", 3, "A"),
    ("date,A,B\n2020-01-02,1,2\n2020-01-03,-4,2\n", "non-positive price", 3, "A"),
    ("date,A,B\n2020-01-02,1,2\n2020-01-02,1,2\n", "duplicate date 2020-01-02", 3, None),
    ("date,A,B\n2020-01-03,1,2\n2020-01-02,1,2\n", "dates not sorted", 3, None),
    ("date,A,A\n2020-01-02,1,2\n", "duplicate ticker column A", 1, "A"),
    ("date,A\nnot-a-date,1\n", "unreadable date", 2, None),
    ("ticker,date,close\nA,2020-01-02,1\nA,2020-01-02,2\n", "duplicate date", 3, "A"),
    ("ticker,date,close\nA,2020-01-02,1\nB,2020-01-02,abc\n", "non-numeric price 'abc'", 3, None),
    ("ticker,date,volume\nA,2020-01-02,1\n", "missing price column", None, None),
    ("A,B\n1,2\n", "missing column date", None, None),
])
def test_price_file_errors(tmp_path, text, match, row, ticker):
    p = write(tmp_path, "p.csv", text)
    with pytest.raises(DataError, match=match) as e:
        load_prices(p)
    assert str(p) in str(e.value)
    assert e.value.row == row
    if ticker:
        assert e.value.ticker == ticker


def test_corrupted_price_cache_is_rebuilt(tmp_path):
    p = write(tmp_path, "w.csv", "date,A\n2020-01-02,1\n2020-01-03,2\n")
    first = load_prices(p)
    from finsae.data.paths import cache_dir
    for f in cache_dir("prices").glob("w.csv.*.parquet"):
        f.write_bytes(b"garbage")
    pd.testing.assert_frame_equal(load_prices(p), first)


def test_yfinance_cache_without_network(tmp_path):
    calls = []

    def fake_download(tickers, **kw):
        calls.append(list(tickers))
        idx = pd.DatetimeIndex(["2021-01-04", "2021-01-05"])
        cols = pd.MultiIndex.from_product([["Close", "Open"], tickers])
        data = np.tile(np.arange(1, len(tickers) + 1, dtype=float), (2, 2))
        df = pd.DataFrame(data, index=idx, columns=cols)
        df[("Close", "ZZZZ")] = np.nan if "ZZZZ" in tickers else 0  # yahoo has no data for it
        return df

    got = fetch_yfinance(["AAPL", "brk.b", "ZZZZ"], start="2021-01-01", end="2021-01-31",
                         downloader=fake_download)
    assert calls == [["AAPL", "BRK-B", "ZZZZ"]]
    assert list(got.columns) == ["AAPL", "BRK.B"]
    assert got.attrs["report"].skipped == {"no data from yfinance": ["ZZZZ"]}

    def offline(*a, **k):
        raise AssertionError("network used although cached")

    again = fetch_yfinance(["AAPL", "BRK.B"], start="2021-01-01", end="2021-01-31",
                           downloader=offline)
    pd.testing.assert_frame_equal(again, got, check_freq=False)


# ---------------------------------------------------------------- returns
def synthetic_prices():
    idx = pd.bdate_range("2020-01-01", periods=60)
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, size=(60, 3))
    p = pd.DataFrame(100 * np.exp(np.cumsum(r, axis=0)), index=idx, columns=["A", "B", "C"])
    return p


def test_log_returns_daily_monthly_known_values():
    p = synthetic_prices()
    d = log_returns(p, screen=False)
    np.testing.assert_allclose(d["A"].to_numpy(), np.diff(np.log(p["A"].to_numpy())))
    m = log_returns(p, "M", screen=False)
    ends = p.groupby(p.index.to_period("M")).tail(1)
    np.testing.assert_allclose(m["B"].to_numpy(), np.diff(np.log(ends["B"].to_numpy())))


def test_monthly_needs_complete_month_and_gap_fill():
    p = synthetic_prices()
    p.iloc[25:27, 0] = np.nan          # short gap: filled, month still complete
    p.iloc[30:40, 1] = np.nan          # long gap (10 days > max_gap 5): month incomplete
    m = log_returns(p, "M", screen=False)
    assert m["A"].notna().all()
    month = p.index[35].to_period("M")
    assert np.isnan(m.loc[m.index.to_period("M") == month, "B"]).all()


def test_screen_spike_adjustment_and_known_fix():
    p = synthetic_prices()
    p.iloc[20, 0] *= 0.6                # one-day bad print that comes back
    p.iloc[40:, 1] *= 2.0               # split adjusted in the adjusted series but not real
    raw = p.copy()
    raw.iloc[40:, 1] /= 2.0
    fixes = pd.DataFrame({"ticker": ["C"], "date": [p.index[10]], "action": ["zero"]})
    clean = log_returns(p, screen=False)
    scr = screen_returns(clean, raw_close=raw, fixes=fixes)
    ev = scr.attrs["screen_events"]
    assert set(ev["rule"]) == {"spike", "adjustment", "known_fix"}
    assert scr.iloc[19, 0] == 0 and abs(scr.iloc[20, 0] - (clean.iloc[19, 0] + clean.iloc[20, 0])) < 1e-12
    assert abs(scr.iloc[39, 1]) < 0.05 and scr.iloc[9, 2] == 0
    # two-day move preserved: cumulative return unchanged by the spike fix
    assert abs(scr["A"].sum() - clean["A"].sum()) < 1e-12
    cp = clean_prices(p, raw_close=raw, fixes=fixes)
    np.testing.assert_allclose(np.log(cp).diff().iloc[1:].to_numpy(), scr.to_numpy(), atol=1e-12)


def test_bundled_screen_catches_documented_problems():
    d = log_returns(load_prices(tickers=["CMCSA", "TRMB", "GNRC", "SO", "AAPL"]))
    ev = d.attrs["screen_events"]
    hits = set(zip(ev["ticker"], ev["date"].dt.strftime("%Y-%m-%d")))
    for hit in [("CMCSA", "2004-08-02"), ("TRMB", "2007-02-23"), ("GNRC", "2010-02-12"),
                ("SO", "2001-04-03")]:
        assert hit in hits
    assert "AAPL" not in set(ev["ticker"])  # real moves (AAPL 2000) are kept


# ---------------------------------------------------------------- classifications, membership, universe
def test_partitions():
    comp = pd.DataFrame({"sic": pd.array([3674, 3571, 6022, pd.NA], dtype="Int64"),
                         "gics_sector": ["IT", "IT", None, "Energy"]},
                        index=["NVDA", "AAPL", "BANK", "XOM"])
    assert partition(comp, "sic4").to_dict() == {"NVDA": "3674", "AAPL": "3571", "BANK": "6022"}
    assert partition(comp, "sic2").to_dict() == {"NVDA": "36", "AAPL": "35", "BANK": "60"}
    assert partition(comp, "sic3")["NVDA"] == "367"
    assert partition(comp, "sic_division")["BANK"].startswith("H:")
    assert partition(comp, "gics_sector").to_dict() == {"NVDA": "IT", "AAPL": "IT", "XOM": "Energy"}
    assert sic_division(100).startswith("A:") and sic_division(9995).startswith("K:")
    assert sic_division(1900) is None
    with pytest.raises(ValueError, match="unknown partition level"):
        partition(comp, "naics")


def test_membership_point_in_time_and_renames():
    assert "AAPL" in sp500_members("2010-06-30")
    assert "TSLA" not in sp500_members("2019-12-31") and "TSLA" in sp500_members("2020-12-31")
    # FB joined in Dec 2013 and was renamed META: asked in either spelling
    assert "FB" in sp500_members("2014-06-30", ["FB", "AAPL"])
    assert "META" in sp500_members("2014-06-30", ["META"])
    assert "META" not in sp500_members("2012-06-30", ["META"])
    with pytest.raises(ValueError, match="no S&P 500 membership before"):
        sp500_members("1990-01-01")


def test_evaluation_universe_matches_reference_count():
    u = evaluation_universe(load_companies(), load_prices())
    assert len(u) == 453
    assert not {"FOX", "DISCK", "UA", "NWSA"} & set(u)


def test_corpus():
    c = load_corpus()
    assert len(c) > 4000 and c["text"].is_unique and c["text"].str.len().min() >= 200
    assert c.attrs["report"].n_skipped > 0


# ---------------------------------------------------------------- CLI
def test_data_check_json(capsys):
    assert main(["data", "check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["with_description"] >= 650 and out["with_prices"] >= 500
    for k in ("companies", "with_description", "with_sic", "with_gics", "with_prices", "per_year"):
        assert k in out


def test_data_check_user_files_and_error(tmp_path, capsys):
    c = write(tmp_path, "c.csv", "ticker,description,sic\nAAA,a,1000\nBBB,b,\n")
    p = write(tmp_path, "p.csv", "date,AAA,ZZZ\n2020-01-02,1,2\n2020-01-03,1.1,2\n")
    assert main(["data", "check", "--companies", str(c), "--prices", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["companies"] == 2 and out["with_sic"] == 1 and out["with_prices"] == 1
    assert out["price_tickers_without_company"] == ["ZZZ"]
    bad = write(tmp_path, "bad.csv", "date,AAA\n2020-01-02,-1\n")
    assert main(["data", "check", "--prices", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "row 2" in err and "AAA" in err and err.count("\n") == 1
