"""Company features: pooling, weighting, similarity explanations, labels, the feature cache and
the `finsae similar` / `finsae features` commands."""

import json

import numpy as np
import pandas as pd
import pytest

from finsae.cli import main
from finsae.data.errors import DataError, UnknownTickerError
from finsae.features.company import (CompanyFeatures, TokenLatents, content_token_mask,
                                     pool_latents, token_words)
from finsae.features.labels import latent_labels, short_label, to_html, to_json
from finsae.features.lookup import similar
from finsae.features.store import FeatureSet
from finsae.similarity import (ablation_importance, contributions, distinctive_features,
                               explain_pair, neighbours, within_similarity)

# ----------------------------------------------------------------------------- synthetic data

@pytest.fixture
def tl():
    # doc A: tokens 0-2, doc B: tokens 3-4; k = 2 latents per token, d_sae = 4
    idx = np.array([[0, 1], [1, 2], [0, 2], [3, 1], [3, 0]])
    val = np.array([[1., 2.], [3., 1.], [2., 2.], [5., 1.], [1., 4.]])
    return TokenLatents(["A", "B"], [0, 3, 5], idx, val, 4)


def test_sum_mean_max_pooling_known_answers(tl):
    s = pool_latents(tl, "sum")
    assert s.loc["A"].tolist() == [3, 5, 3, 0] and s.loc["B"].tolist() == [4, 1, 0, 6]
    m = pool_latents(tl, "max")
    assert m.loc["A"].tolist() == [2, 3, 2, 0] and m.loc["B"].tolist() == [4, 1, 0, 5]
    mean = pool_latents(tl, "mean")
    np.testing.assert_allclose(mean.loc["A"], np.array([3, 5, 3, 0]) / 3)
    np.testing.assert_allclose(mean.loc["B"], np.array([4, 1, 0, 6]) / 2)


def test_masked_pooling_skips_tokens(tl):
    mask = np.array([True, False, True, True, True])
    assert pool_latents(tl, "mean", mask=mask).loc["A"].tolist() == [1.5, 1.0, 1.0, 0.0]
    assert pool_latents(tl, "sum", mask=mask).loc["A"].tolist() == [3, 2, 2, 0]
    assert pool_latents(tl, "max", mask=mask).loc["A"].tolist() == [2, 2, 2, 0]
    with pytest.raises(DataError, match="one entry per token"):
        pool_latents(tl, "sum", mask=mask[:3])
    with pytest.raises(DataError, match="pooling"):
        pool_latents(tl, "median")


def test_pooling_leaves_token_latents_intact(tl):
    before = tl.indices.copy(), tl.values.copy()
    mask = np.array([True, False, True, True, False])
    first = pool_latents(tl, "sum", mask=mask)
    tl.csr(mask)
    pd.testing.assert_frame_equal(pool_latents(tl, "sum", mask=mask), first)
    np.testing.assert_array_equal(tl.indices, before[0])
    np.testing.assert_array_equal(tl.values, before[1])


def test_from_dense_matches_sparse(tl):
    dense = np.zeros((5, 4))
    for r in range(5):
        dense[r, tl.indices[r]] = tl.values[r]
    tl2 = TokenLatents.from_dense(["A", "B"], [0, 3, 5], dense)
    pd.testing.assert_frame_equal(pool_latents(tl2, "sum"), pool_latents(tl, "sum"))


def test_token_latents_validation():
    with pytest.raises(DataError, match="offsets"):
        TokenLatents(["A"], [0, 3], np.zeros((2, 1), int), np.ones((2, 1)), 4)
    with pytest.raises(DataError, match="latent ids"):
        TokenLatents(["A"], [0, 1], np.array([[7]]), np.ones((1, 1)), 4)


def test_token_latents_keeps_ordinary_tokens_only():
    import torch

    from finsae.features.build import token_latents
    from finsae.sae import SAEConfig, build_sae

    class Store:
        def __init__(self, norms):
            self.X = torch.tensor(norms, dtype=torch.float32)[:, None] * torch.tensor([[0.6, 0.8]])
            self.doc_index = torch.tensor([0, 0, 1, 1])

        def tokens(self, layer):
            return self.X

    sae = build_sae(SAEConfig(d_in=2, d_sae=4, k=1), seed=0)
    _, ok = token_latents(sae, Store([1, 1, 1, 100.0]), 0, ["A", "B"])
    assert ok.tolist() == [True, True, True, False]          # False: the massive token
    # the median is numpy's (mean of the two middle norms, 3 here, not the lower one, 2)
    _, ok = token_latents(sae, Store([1, 2, 4, 100.0]), 0, ["A", "B"], massive_factor=1.5)
    assert ok.tolist() == [True, True, True, False]
    _, ok = token_latents(sae, Store([1, 2, 4, 100.0]), 0, ["A", "B"], massive_factor=None)
    assert ok.all()


def test_idf_and_max_df_known_answers():
    X = pd.DataFrame([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [1.0, 0.0, 4.0]], index=["A", "B", "C"])
    cf = CompanyFeatures(max_df=0.5, weighting="idf", normalize=False).fit(X)
    # latent 0 fires in all 3 companies (> 0.5): dropped; 1 and 2 fire in one each
    assert list(cf.columns_) == [1, 2]
    idf = np.log(4 / 2) + 1
    out = cf.transform(X)
    assert out.loc["A", 1] == pytest.approx(2 * idf) and out.loc["C", 2] == pytest.approx(4 * idf)
    z = CompanyFeatures(weighting="standardize", normalize=False).fit_transform(X)
    np.testing.assert_allclose(z.mean(), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(ddof=0), 1)
    n = CompanyFeatures().fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1)


def test_sublinear_and_pca_and_errors():
    X = pd.DataFrame([[1.0, 100.0], [1.0, 1.0], [2.0, 0.0]], index=["A", "B", "C"])
    s = CompanyFeatures(sublinear=True, normalize=False).fit(X)
    # scale = median non-zero value per latent: [1, 50.5]; x -> 1 + log(x / scale)
    out = s.transform(X)
    assert out.loc["A", 0] == pytest.approx(1.0) and out.loc["C", 0] == pytest.approx(1 + np.log(2))
    assert out.loc["C", 1] == 0
    p = CompanyFeatures(pca=2).fit_transform(X)
    assert list(p.columns) == ["pc0", "pc1"]
    with pytest.raises(DataError, match="non-negative"):
        CompanyFeatures().fit(-X)
    with pytest.raises(DataError, match="not fitted"):
        CompanyFeatures().transform(X)
    with pytest.raises(DataError, match="latents differ"):
        CompanyFeatures().fit(X).transform(X[[0]])


def test_transform_uses_fitted_statistics_only():
    fit = pd.DataFrame([[1.0, 0.0], [0.0, 1.0]], index=["A", "B"])
    other = pd.DataFrame([[5.0, 5.0]], index=["C"])
    cf = CompanyFeatures(weighting="idf", normalize=False).fit(fit)
    before = cf.weights_.copy()
    cf.transform(other)
    np.testing.assert_array_equal(cf.weights_, before)


def test_content_token_mask_words_stopwords_and_name():
    toks = ["Apple", " Inc", ".", " designs", " smart", "phones", " and", " the", " iPhone", "-",
            "12", " it"]
    mask = content_token_mask(toks, [0, len(toks)], ["Apple Inc."])
    assert mask.tolist() == [False, False, False, True, True, True, False, False, True, False,
                             False, False]
    words = token_words(toks, [0, len(toks)])
    assert words[4] == words[5] == "smartphones" and words[2] == "."


# ----------------------------------------------------------------------------- similarity

@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    V = np.abs(rng.normal(size=(6, 8)))
    V[:3, :2] += 3  # A, B, C share latents 0 and 1
    return pd.DataFrame(V, index=list("ABCDEF"), columns=range(8))


def test_contributions_sum_to_cosine(vectors):
    u, v = vectors.loc["A"], vectors.loc["D"]
    cos = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
    assert contributions(u, v).sum() == pytest.approx(cos)
    ex = explain_pair(vectors, "A", "D", top=8, labels={0: "zero"})
    assert ex["contribution"].sum() == pytest.approx(cos)
    assert list(ex.columns) == ["id", "label", "contribution"]
    assert ex["contribution"].is_monotonic_decreasing


def test_neighbours_and_unknown_ticker(vectors):
    nb = neighbours(vectors, "a", top=2)
    assert set(nb["ticker"]) == {"B", "C"} and "A" not in set(nb["ticker"])
    assert nb["score"].is_monotonic_decreasing
    with pytest.raises(UnknownTickerError) as e:
        neighbours(vectors, "AB")
    assert "unknown ticker" in str(e.value) and e.value.suggestions
    with pytest.raises(DataError, match="top"):
        neighbours(vectors, "A", top=0)


def test_cluster_explanations(vectors):
    d = distinctive_features(vectors, ["A", "B", "C"], top=2)
    assert set(d["id"]) == {0, 1}
    a = ablation_importance(vectors, ["A", "B", "C"], top=8, candidates=None)
    base = within_similarity(vectors.loc[["A", "B", "C"]].to_numpy())
    # the rank-one shortcut equals recomputing with the column zeroed
    for j, drop in zip(a["id"], a["drop"]):
        W = vectors.loc[["A", "B", "C"]].to_numpy().copy()
        W[:, j] = 0
        assert drop == pytest.approx(base - within_similarity(W))
    assert set(a["id"][:2]) == {0, 1}
    with pytest.raises(DataError, match="at least 2"):
        distinctive_features(vectors, ["A"])


# ----------------------------------------------------------------------------- labels

def test_labels_short_label_examples_companies(tl):
    strings = [" Bank", " loans", " bank", " Chips", " wafers"]
    lab = latent_labels(tl, strings, names={"A": "Alpha", "B": "Beta"}, context=1)
    assert set(lab) == {0, 1, 2, 3}
    # latent 3 fires only in B, strongest on " Chips"
    assert lab[3]["label"] == "chips"
    assert lab[3]["companies"][0] == {"ticker": "B", "name": "Beta", "value": 6.0}
    assert lab[3]["doc_freq"] == 0.5
    ex = lab[3]["examples"][0]
    assert ex["context"] == ["", " Chips", " wafers"] and ex["activation"] == 5.0
    assert short_label([" Bank", "bank", " BANK", " loans", " loans", " x"]) == "bank / loans / x"
    # a mask restricts the activations; words replace token pieces in the label
    masked = latent_labels(tl, strings, mask=np.array([1, 1, 1, 0, 1], bool),
                           words=["bank", "loans", "bank", "chips", "wafers"])
    assert masked[3]["label"] == "wafers" and masked[3]["examples"][0]["activation"] == 1.0


def test_label_exports(tmp_path, tl):
    lab = latent_labels(tl, [" a", " b", " c", " d", " e"])
    h = to_html(lab, tmp_path / "f.html")
    text = h.read_text()
    assert text.startswith("<!doctype html>") and "<script>" in text and "http" not in text
    j = json.loads(to_json(lab, tmp_path / "f.json").read_text())
    assert set(j) == {"0", "1", "2", "3"}


# ----------------------------------------------------------------------------- cache + CLI

@pytest.fixture
def feature_dir(tmp_path, vectors):
    labels = {j: {"label": f"feat{j}", "examples": [], "companies": [], "doc_freq": 0.5}
              for j in range(8)}
    fs = FeatureSet({"sae": vectors, "tfidf": vectors.iloc[:, ::-1]},
                    pd.Series({t: f"{t} Corp" for t in vectors.index}), labels,
                    {"layer": 5})
    return fs.save(tmp_path / "feat")


def test_feature_cache_roundtrip(feature_dir, vectors):
    fs = FeatureSet.load(feature_dir)
    np.testing.assert_allclose(fs.method("sae").to_numpy(), vectors.to_numpy(), rtol=1e-6)
    assert fs.names["A"] == "A Corp" and fs.label_map()[3] == "feat3"
    with pytest.raises(DataError, match="no 'hidden' vectors"):
        fs.method("hidden")
    with pytest.raises(DataError, match="meta.json"):
        FeatureSet.load(feature_dir.parent / "nothing")


def test_similar_cli_json_shape(feature_dir, capsys):
    rc = main(["similar", "a", "--top", "3", "--explain", "--json",
               "--features", str(feature_dir)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 3 and {"ticker", "name", "score", "features"} <= set(out[0])
    assert out[0]["ticker"] in {"B", "C"} and out[0]["name"].endswith("Corp")
    f = out[0]["features"][0]
    assert {"id", "label", "contribution", "score", "doc_freq", "checked", "n_features",
            "ids"} == set(f)
    assert f["label"] == f"feat{f['id']}"
    # shown + generic + the rest sums to the score
    fs = FeatureSet.load(feature_dir)
    full = similar(fs, "A", top=1, explain=True, n_features=8)[0]
    e = full["explained"]
    assert sum(x["contribution"] for x in full["features"]) == pytest.approx(e["shown"], abs=1e-5)
    assert e["shown"] + e["generic"] + e["rest"] == pytest.approx(full["score"], abs=1e-5)


def test_similar_cli_text_other_method_and_errors(feature_dir, capsys):
    assert main(["similar", "A", "--method", "tfidf", "--features", str(feature_dir)]) == 0
    assert "TF-IDF" in capsys.readouterr().out
    assert main(["similar", "AB", "--features", str(feature_dir)]) == 2
    err = capsys.readouterr().err
    assert "unknown ticker 'AB'" in err and "did you mean" in err
    assert main(["similar", "A", "--method", "hidden", "--features", str(feature_dir)]) == 2
    assert "no 'hidden' vectors" in capsys.readouterr().err


def test_features_explain_and_show_cli(feature_dir, capsys):
    assert main(["features", "explain", "A", "B", "C", "--json",
                 "--features", str(feature_dir)]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert {rec[0]["id"], rec[1]["id"]} == {0, 1}
    assert main(["features", "explain", "A", "B", "C", "--by", "ablation",
                 "--features", str(feature_dir)]) == 0
    assert "ablation" in capsys.readouterr().out
    assert main(["features", "show", "3", "--features", str(feature_dir)]) == 0
    assert "feat3" in capsys.readouterr().out
    assert main(["features", "show", "3", "--features-dir", str(feature_dir)]) == 0  # old name
    assert "feat3" in capsys.readouterr().out
    assert main(["features", "show", "99", "--features", str(feature_dir)]) == 2


def test_lookup_is_fast(feature_dir):
    import resource
    import subprocess
    import sys
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "finsae.cli", "similar", "A",
                        "--explain", "--features", str(feature_dir)],
                       capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr
    # CPU seconds, not wall time: about 0.7 s, whatever else the machine is running
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 3
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()}
    assert not {"torch", "transformers", "sklearn"} & imported


# ----------------------------------------------------------------------------- real features

def test_neighbours_share_gics_sector_far_more_than_chance():
    """The bundled SAE company features (top latents per company, from the chosen layer):
    the 10 nearest neighbours share the GICS sector far more often than random companies."""
    from finsae.data import load_companies
    from finsae.features.bundled import bundled_sae_vectors
    V = bundled_sae_vectors()
    comp = load_companies()
    sector = comp["gics_sector"].reindex(V.index)
    V = V[sector.notna()]
    sector = sector[sector.notna()].to_numpy()
    X = V.to_numpy() / np.linalg.norm(V.to_numpy(), axis=1, keepdims=True)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    nb = np.argsort(-S, axis=1)[:, :10]
    share = (sector[nb] == sector[:, None]).mean()
    _, counts = np.unique(sector, return_counts=True)
    chance = ((counts / counts.sum()) ** 2).sum()
    assert len(V) > 400
    assert share > 3 * chance and share > 0.4, (share, chance)


def test_similar_falls_back_to_bundled_features(tmp_path, monkeypatch, capsys):
    """Without any `finsae features build`, the lookup uses the bundled compact SAE features."""
    monkeypatch.setenv("FINSAE_CACHE", str(tmp_path / "empty_cache"))
    assert main(["similar", "AAPL", "--top", "5", "--explain", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 5 and all(r["features"] and r["features"][0]["label"] for r in out)
    assert all(-1 <= r["score"] <= 1 for r in out)
    # other methods need a build: a clear error, not a silent SAE answer
    assert main(["similar", "AAPL", "--method", "tfidf"]) == 2
    assert "features build" in capsys.readouterr().err


def test_feature_sets_are_passed_explicitly(feature_dir, vectors):
    """No "latest build": a folder or FeatureSet is passed; None is the bundled features,
    for the bundled companies only (and for the SAE method only)."""
    from finsae.features.bundled import bundled_sae_vectors, company_sae_vectors
    from finsae.features.lookup import load_features
    assert company_sae_vectors().equals(bundled_sae_vectors())
    V = company_sae_vectors(None, features=feature_dir)
    np.testing.assert_allclose(V.to_numpy(), vectors.to_numpy(), rtol=1e-6)
    assert str(feature_dir) in V.attrs["source"]
    fs = FeatureSet.load(feature_dir)
    assert company_sae_vectors(None, features=fs).equals(fs.method("sae"))
    user = pd.DataFrame({"description": ["x"]}, index=pd.Index(["A"], name="ticker"))
    user.attrs.update(vintage="user", source="mine.csv")
    with pytest.raises(DataError, match=r"mine\.csv.*--features DIR"):
        company_sae_vectors(user)
    assert load_features("mine.csv", feature_dir, ["tfidf"], labels=False).vectors.keys() \
        == {"tfidf"}
    with pytest.raises(DataError, match="--features DIR"):
        load_features("mine.csv", None, ["sae"], labels=False)
    with pytest.raises(DataError, match="'tfidf'"):
        load_features(None, None, ["sae", "tfidf"], labels=False)
    assert load_features(None, None, ["sae"], labels=True).meta["bundled"]


def test_sae_method_in_evaluate_and_backtest_registries():
    """`finsae evaluate` and `finsae backtest` accept the SAE features as a method (the bundled
    copy when nothing was built), clustered like every other vector method."""
    from finsae.data import evaluation_universe, load_companies, load_prices
    from finsae.methods import EvalContext, resolve

    companies, prices = load_companies(), load_prices()
    universe = evaluation_universe(companies, prices)
    ctx = EvalContext(companies, prices, universe=universe, n_seeds=2)
    assert ctx.vectors("sae").shape[0] == len(universe)
    m = resolve("sae", ctx)
    assert m.partition.nunique() == ctx.k == 127
    from finsae.pairs.backtest import BacktestConfig
    from finsae.pairs.compare import backtest_context
    part = resolve("sae", backtest_context(companies, prices, universe, BacktestConfig())
                   ).partition_at("2015-01-01", "2015-12-31")
    assert part.nunique() == 127 and set(part.index) == set(universe)


def test_build_path_keeps_the_default_1024_strongest_latents():
    """sae_company_vectors (what `finsae features build` and the run call) applies the default
    top_n of 1024: a company with more active latents keeps its 1,024 largest."""
    from finsae.features.build import sae_company_vectors
    from finsae.features.company import DEFAULT_FEATURES, TokenLatents
    assert DEFAULT_FEATURES["top_n"] == 1024
    rng = np.random.default_rng(0)
    n_doc, n_tok, k, d_sae = 20, 300, 8, 3000   # ~1,650 distinct latents per company
    idx = np.stack([rng.choice(d_sae, k, replace=False) for _ in range(n_doc * n_tok)])
    val = rng.uniform(0.1, 2.0, idx.shape)
    tl = TokenLatents([f"T{i}" for i in range(n_doc)], np.arange(n_doc + 1) * n_tok, idx, val,
                      d_sae)
    vec, _, _ = sae_company_vectors(tl, None, content_only=False)
    full, _, _ = sae_company_vectors(tl, None, content_only=False, top_n=None)
    assert ((full.to_numpy() != 0).sum(axis=1) > 1400).all()
    for t in full.index:
        f, kept = full.loc[t].to_numpy(), vec.loc[t].to_numpy() != 0
        cut = np.sort(f)[-1024]
        # the 1,024 largest, plus any latent tied with the 1,024th (sublinear tf is exactly 1
        # at a latent's median company, so latents of equal document frequency can tie)
        assert kept.sum() >= 1024 and (kept == (f >= cut)).all()
