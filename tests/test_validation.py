"""One clear error for every bad input, before any work starts (issue 16): `finsae run`
configs, CLI options, tickers, unreadable files, CSV formula cells, closed pipes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finsae.cli import main
from finsae.data.errors import DataError


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if anything tries to load a language model."""
    import finsae.lm
    import finsae.lm.load

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(finsae.lm.load, "load_lm", boom)
    monkeypatch.setattr(finsae.lm, "load_lm", boom)


def _one_error(err: str, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("finsae: error:"), err
    for n in needles:
        assert n in lines[0], (n, err)


# ------------------------------------------------------------------------------ finsae run
@pytest.mark.parametrize("toml,needle", [
    ('[sae]\nlayer = "twenty"\n', "[sae] layer must be an integer, got 'twenty'"),
    ('[data]\nlimit = "three"\n', "[data] limit must be an integer"),
    ("[sae]\nlayer = 99\n", "layer = 99 is out of range: smollm2-135m has 30 blocks"),
    ("sae = 5\n", "sae must be a table"),
    ("[sae]\nd_sae = 0\n", "[sae] d_sae must be positive"),
    ("[sae]\nk = 0\n", "[sae] k must be positive"),
    ('[sae]\narch = "top"\n', "[sae] arch must be one of"),
    ("[sae]\ntrain_tokens = 1.5\n", "[sae] train_tokens must be an integer"),
    ('[sae]\npath = "/nonexistent/sae"\n', "folder not found"),
    ('[data]\nvintage = "new"\n', "[data] vintage must be one of"),
    ('[data]\nprices = "/nonexistent.csv"\n', "file not found"),
    ('[features]\npooling = "median"\n', "[features] pooling must be one of"),
    ('[features]\ncontent_only = "yes"\n', "[features] content_only must be true or false"),
    ("[features]\nmax_df = 2.0\n", "[features] max_df must be at most 1"),
    ('[evaluate]\nmethods = ["sae", "gicz"]\n', "unknown method 'gicz'"),
    ("[evaluate]\nyears = [2020, 2001]\n", "first year 2020 is after last year 2001"),
    ("[evaluate]\nn_seeds = 0\n", "[evaluate] n_seeds must be positive"),
    ('[backtest]\nmethods = ["sae", "tfidf_mst"]\n', "tfidf_mst is chosen on the evaluation's in-sample"),
    ("[backtest]\ntop_n = -2\n", "[backtest] top_n must be positive"),
    ("[backtest]\nfees_bps = -10\n", "[backtest] fees_bps must be at least 0"),
    ("[sae]\nextra_layers = 25\n", "[sae] extra_layers must be a list"),
    ("[sae]\nextra_layers = [99]\n", "[sae] extra_layers = 99 is out of range"),
    ("[sae]\nlayer = 5\nextra_layers = [5]\n", "must not repeat a block"),
    ('[sae]\ntrain_text = "web"\n', "[sae] train_text must be one of"),
    ('[features]\ntf = "log"\n', "[features] tf must be one of"),
    ("[features]\ntop_n = 0\n", "[features] top_n must be positive"),
    ('[evaluate]\nlinkage = "median"\n', "[evaluate] linkage must be one of"),
    ('[backtest]\nstart = "notadate"\n', "[backtest] start must be a date"),
    ('[backtest]\nstart = "2020-01-01"\nend = "2019-01-01"\n', "is after [backtest] end"),
])
@pytest.mark.parametrize("verb", ["run", "print"])
def test_run_config_checked_before_any_model_loads(tmp_path, capsys, no_model, toml, needle,
                                                    verb):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = tmp_path / "run"
    argv = ["run", "--config", str(cfg)] + (["--print-config"] if verb == "print"
                                            else ["--out", str(out)])
    assert main(argv) == 2
    c = capsys.readouterr()
    _one_error(c.err, needle, str(cfg))
    assert c.out == "" and not out.exists()


def test_default_config_and_saved_config_are_valid(tmp_path, capsys):
    from finsae.pipeline import RunConfig
    assert main(["run", "--print-config"]) == 0
    saved = tmp_path / "c.toml"
    saved.write_text(capsys.readouterr().out)
    assert RunConfig.load(saved).to_toml() == RunConfig().to_toml()


def test_failed_run_leaves_no_run_folder(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    prices = tmp_path / "p.csv"
    prices.write_text("date,AAA\n2020-01-02,abc\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nprices = "{prices}"\n')
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 2
    _one_error(capsys.readouterr().err, "non-numeric price")
    assert not out.exists()
    stages = tmp_path / "cache" / "stages"
    assert not stages.exists() or not any(stages.rglob("*.tmp"))


def test_run_with_too_short_prices_names_the_file(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    prices = tmp_path / "p.csv"
    prices.write_text("date,AAPL\n2020-01-02,1\n2020-01-03,2\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\nprices = "{prices}"\n[evaluate]\nyears = [2020, 2020]\n'
                   'fit_years = [2020, 2020]\n')
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    _one_error(capsys.readouterr().err, str(prices), "2 days, 2020-01-02 .. 2020-01-03",
               "too few for one formation window")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ backtest
@pytest.fixture(scope="module")
def short_prices(tmp_path_factory):
    f = tmp_path_factory.mktemp("p") / "five_days.csv"
    f.write_text("date,AAPL,MSFT\n" + "".join(f"2020-01-0{d},{70 + d},{150 + d}\n"
                                               for d in (2, 3, 6, 7, 8)))
    return f


@pytest.mark.parametrize("opts,needle", [
    (["--fees-bps", "-10"], "--fees-bps must be at least 0, got -10"),
    (["--borrow-bps", "-1"], "--borrow-bps must be at least 0"),
    (["--formation-days", "0"], "--formation-days must be at least 20, got 0"),
    (["--trading-days", "0"], "--trading-days must be at least 21, got 0"),
    (["--step-days", "0"], "--step-days must be positive"),
    (["--start", "2020-01-01", "--end", "2019-01-01"],
     "--start 2020-01-01 is after --end 2019-01-01"),
    (["--start", "notadate"], "--start must be a date (YYYY-MM-DD), got 'notadate'"),
    (["--end", "2019-13-45"], "--end must be a date"),
    (["--execution-lag", "-1"], "--execution-lag must be at least 0, got -1"),
    (["--pvalue", "0"], "--pvalue must be greater than 0"),
    (["--entry-z", "1", "--exit-z", "2"], "--exit-z (2) must be below --entry-z (1)"),
    (["--stop-z", "1.5"], "--stop-z (1.5) must be above --entry-z"),
    (["--baseline", "sic", "--methods", "gics,random"], "--baseline 'sic' is not among"),
])
def test_backtest_options_checked_before_any_data(capsys, monkeypatch, opts, needle):
    import finsae.data.prices as P

    def no_prices(*a, **k):
        raise AssertionError("prices were read before the options were checked")

    monkeypatch.setattr(P, "load_prices", no_prices)
    assert main(["backtest", *opts]) == 2
    _one_error(capsys.readouterr().err, needle)


def test_backtest_too_short_history_names_file_and_dates(capsys, short_prices):
    assert main(["backtest", "--prices", str(short_prices), "--methods", "random"]) == 2
    _one_error(capsys.readouterr().err, str(short_prices), "5 days, 2020-01-02 .. 2020-01-08",
               "too few for one formation window (252 days)")


def test_evaluate_too_short_history_names_file_and_dates(capsys, short_prices):
    assert main(["evaluate", "--prices", str(short_prices), "--methods", "gics_sector"]) == 2
    _one_error(capsys.readouterr().err, str(short_prices), "5 days, 2020-01-02 .. 2020-01-08",
               "none in years 2001-2019 of the scored years 2001-2020")


@pytest.mark.parametrize("opts,needle", [
    (["--seeds", "0"], "--n-seeds must be positive"),
    (["--k", "1"], "--k must be at least 2"),
    (["--min-coverage", "1.5"], "--min-coverage must be at most 1"),
])
def test_evaluate_options_checked(capsys, opts, needle):
    assert main(["evaluate", "--methods", "gics_sector", *opts]) == 2
    _one_error(capsys.readouterr().err, needle)


# ------------------------------------------------------------------------------ tickers
@pytest.fixture
def brk_features(tmp_path):
    from finsae.features.store import FeatureSet
    rng = np.random.default_rng(0)
    idx = pd.Index(["BRK.B", "AAPL", "MSFT", "XOM"])
    V = pd.DataFrame(np.abs(rng.normal(size=(4, 6))), index=idx, columns=range(6))
    fs = FeatureSet({"sae": V}, pd.Series({t: f"{t} Inc" for t in idx}),
                    {j: {"label": f"f{j}"} for j in range(6)}, {})
    return fs.save(tmp_path / "feat")


@pytest.mark.parametrize("spelling", ["BRK.B", "BRK-B", "BRK/B", "brk.b", " brk_b "])
def test_similar_normalises_tickers(brk_features, capsys, spelling):
    import json
    assert main(["similar", spelling, "--json", "--top", "2",
                 "--features", str(brk_features)]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 2 and "BRK.B" not in [r["ticker"] for r in recs]


def test_lookups_normalise_tickers(brk_features):
    from finsae.features.store import FeatureSet
    from finsae.similarity import distinctive_features, explain_pair, neighbours
    V = FeatureSet.load(brk_features).vectors["sae"]
    assert neighbours(V, "brk-b", 3).equals(neighbours(V, "BRK.B", 3))
    assert explain_pair(V, "BRK/B", "aapl").equals(explain_pair(V, "BRK.B", "AAPL"))
    assert distinctive_features(V, ["brk-b", "msft"]).equals(
        distinctive_features(V, ["BRK.B", "MSFT"]))


def test_ticker_with_a_space_is_refused(brk_features, tmp_path, capsys):
    from finsae.data import load_companies, load_prices
    assert main(["similar", "NV DA", "--features", str(brk_features)]) == 2
    _one_error(capsys.readouterr().err, "invalid ticker 'NV DA' contains a space")
    companies = tmp_path / "c.csv"
    companies.write_text("ticker,description\nAAPL,phones\nNV DA,chips\n")
    with pytest.raises(DataError, match=r"c.csv, row 3: invalid ticker 'NV DA' contains a space"):
        load_companies(companies)
    wide = tmp_path / "w.csv"
    wide.write_text("date,AAPL,NV DA\n2020-01-02,1,2\n")
    with pytest.raises(DataError, match=r"w.csv, row 1: invalid ticker 'NV DA'.*column 3"):
        load_prices(wide, cache=False)
    long = tmp_path / "l.csv"
    long.write_text("date,ticker,close\n2020-01-02,AAPL,1\n2020-01-02,NV DA,2\n")
    with pytest.raises(DataError, match=r"l.csv, row 3: invalid ticker 'NV DA'"):
        load_prices(long, cache=False)
    with pytest.raises(DataError, match="invalid ticker"):
        load_prices(tickers=["NV DA"])


# ------------------------------------------------------------------------------ unreadable inputs
def _prices_frame():
    d = pd.bdate_range("2020-01-01", periods=30)
    return d, pd.DataFrame({"AAPL": np.arange(30) + 1.0, "MSFT": np.arange(30) + 2.0}, index=d)


@pytest.mark.parametrize("what,kind", [
    *[("companies", k) for k in ("empty", "folder", "binary_csv")],
    *[("prices", k) for k in ("empty", "folder", "truncated_parquet", "csv_as_parquet",
                              "truncated_gz", "binary_csv")]])
def test_unreadable_input_one_error_naming_the_file(tmp_path, capsys, monkeypatch, kind, what):
    import gzip
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "cache"))
    if kind == "empty":
        f = tmp_path / "in.csv"
        f.write_bytes(b"")
    elif kind == "folder":
        f = tmp_path / "in_folder"
        f.mkdir()
    elif kind == "truncated_parquet":
        f = tmp_path / "in.parquet"
        _prices_frame()[1].to_parquet(f)
        f.write_bytes(f.read_bytes()[:300])
    elif kind == "csv_as_parquet":
        f = tmp_path / "in.parquet"
        f.write_text("date,AAPL\n2020-01-02,1\n")
    elif kind == "truncated_gz":
        f = tmp_path / "in.csv.gz"
        blob = gzip.compress(("date,AAPL\n" + "2020-01-02,1\n" * 5000).encode())
        f.write_bytes(blob[: len(blob) // 2])
    else:
        f = tmp_path / "in.csv"
        f.write_bytes(bytes(range(256)) * 4)
    rc = main(["data", "check", f"--{what}", str(f)])
    assert rc == 2
    _one_error(capsys.readouterr().err, str(f))


@pytest.mark.parametrize("index", ["string_index", "epoch_s", "epoch_ms", "datetime_index"])
def test_parquet_date_column_kinds(tmp_path, index):
    from finsae.data import load_prices
    d, w = _prices_frame()
    if index == "string_index":
        w.index = d.strftime("%Y-%m-%d")
        w.index.name = "date"
    elif index.startswith("epoch"):
        w = w.reset_index(names="date")
        mult = 1 if index == "epoch_s" else 1000
        w["date"] = ((d - pd.Timestamp(0)).total_seconds() * mult).astype("int64")
    else:
        w.index.name = "date"
    f = tmp_path / "p.parquet"
    w.to_parquet(f)
    got = load_prices(f, cache=False)
    assert list(got.index) == list(d) and got.shape == (30, 2)
    assert got["MSFT"].iloc[0] == 2.0


def test_small_integers_as_dates_refused(tmp_path):
    from finsae.data import load_prices
    f = tmp_path / "p.parquet"
    pd.DataFrame({"date": [1, 2, 3], "AAPL": [1.0, 2.0, 3.0]}).to_parquet(f)
    with pytest.raises(DataError, match="p.parquet: date column 'date' holds numbers"):
        load_prices(f, cache=False)


@pytest.mark.parametrize("kind", ["text", "folder", "truncated"])
def test_sae_train_unreadable_activations(tmp_path, capsys, kind):
    import torch
    from safetensors.torch import save_file
    f = tmp_path / "acts.safetensors"
    if kind == "text":
        f.write_text("not a safetensors file")
    elif kind == "truncated":
        save_file({"acts": torch.randn(64, 8)}, str(f))
        f.write_bytes(f.read_bytes()[:200])
    else:
        f = tmp_path / "acts_dir"
        (f / "x.safetensors").mkdir(parents=True)
    assert main(["sae", "train", "--activations", str(f), "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys.readouterr().err, "safetensors")


# ------------------------------------------------------------------------------ outputs
def test_csv_formula_cells_escaped():
    from finsae.safe_csv import escape_formulas
    df = pd.DataFrame({"name": ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "ok",
                                "-0.5", "\tx"], "v": [-1.0, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0]})
    out = escape_formulas(df)
    assert out["name"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3", "'@SUM(A1)",
                                    "ok", "-0.5", "'\tx"]
    assert out["v"].tolist() == df["v"].tolist()


def test_cluster_out_escapes_formula_names(tmp_path, capsys):
    companies = tmp_path / "c.csv"
    rows = ["ticker,name,description,sic,gics_sector,gics_industry_group,gics_industry,"
            "gics_sub_industry"]
    for i, name in enumerate(["=cmd|' /C calc'!A0", "+Plus Corp", "-Minus Co", "@At Inc",
                              "Safe Ltd", "Other plc"]):
        g = "10" if i < 3 else "20"
        rows.append(f"T{i},\"{name}\",text {i},1311,{g},{g}10,{g}1010,{g}101010")
    companies.write_text("\n".join(rows) + "\n")
    d = pd.bdate_range("2000-12-01", "2002-12-31")
    rng = np.random.default_rng(0)
    prices = pd.DataFrame(np.exp(rng.normal(0, 0.01, (len(d), 6)).cumsum(0)) * 50, index=d,
                          columns=[f"T{i}" for i in range(6)]).rename_axis("date")
    pfile = tmp_path / "p.csv"
    prices.to_csv(pfile)
    out = tmp_path / "clusters.csv"
    assert main(["cluster", "--companies", str(companies), "--prices", str(pfile), "--years",
                 "2001-2002", "--fit-years", "2001-2001", "--method", "gics_sector",
                 "--out", str(out)]) == 0
    text = out.read_text()
    names = pd.read_csv(out)["name"].tolist()
    assert not any(str(n).startswith(("=", "+", "-", "@")) for n in names), text
    assert "'=cmd" in text and "'+Plus Corp" in text and "'-Minus Co" in text


def test_closed_pipe_ends_quietly(tmp_path):
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-m", "finsae.cli", "data", "check"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.readline()
    p.stdout.close()          # what `| head -1` does
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc in (0, 141)


def test_no_torch_load_without_weights_only():
    import re
    from pathlib import Path

    import finsae
    root = Path(finsae.__file__).parent
    for f in root.rglob("*.py"):
        for m in re.finditer(r"torch\.load\((.*)", f.read_text()):
            assert "weights_only=True" in m.group(1), (f, m.group(0))


def test_every_verb_help_shows_each_default():
    """`finsae VERB --help` names every option's default (defined once, in the dataclass or
    the flag)."""
    import argparse

    from finsae.cli import COMMANDS, build_parser

    def options(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from options(sub, path + [name])
            elif a.option_strings and a.default not in (None, False, argparse.SUPPRESS):
                yield path, parser, a

    seen = 0
    for verb in COMMANDS:
        for path, parser, a in options(build_parser([verb]), [verb]):
            seen += 1
            assert a.help, f"finsae {' '.join(path)} {a.option_strings[0]} has no help"
            text = " ".join(parser.format_help().split())
            shown = parser._get_formatter()._get_help_string(a) % {"default": a.default,
                                                                   "prog": parser.prog}
            assert "default" in shown.lower(), (path, a.option_strings[0])
            assert " ".join(shown.split())[:40] in text
    assert seen > 100
