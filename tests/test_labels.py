"""Labels from contexts and their detection score, on synthetic token latents (no LM)."""

import numpy as np
import pytest

from finsae.features.company import TokenLatents, content_token_mask
from finsae.features.labels import (auroc, context_labels, label_words, median_score,
                                    split_companies, window_match)

VOCAB = ("revenue customers markets segment services equipment software retail energy "
         "pipeline banking insurance wireless devices pharmaceutical drugs vehicles steel "
         "aircraft hotels restaurants chemicals mining lumber apparel footwear beverages "
         "tobacco semiconductor cable broadcasting railroads trucking logistics packaging "
         "fertilizer solar turbines elevators furniture jewelry cosmetics").split()


@pytest.fixture(scope="module")
def corpus():
    """80 descriptions of 50 words; half contain "data center" (latent 0 fires on "center"
    after "data"), latent 1 fires on 8% of tokens at random, latent 2 on "the"."""
    rng = np.random.default_rng(7)
    strings, offsets, names, tickers = [], [0], {}, []
    for d in range(80):
        ws = list(rng.choice(VOCAB, 50))
        ws[rng.integers(0, 50)] = "the"
        if d % 2 == 0:
            for _ in range(2):
                i = int(rng.integers(1, 48))
                ws[i:i + 2] = ["data", "center"]
        t = f"T{d:02d}"
        tickers.append(t)
        names[t] = f"Tee{d} Holdings"
        strings += [f" {w}" for w in ws] + [" Tee" + str(d), "."]
        offsets.append(len(strings))
    n = len(strings)
    idx = np.tile(np.arange(3), (n, 1))
    val = np.zeros((n, 3), np.float32)
    for i in range(1, n):
        if strings[i] == " center" and strings[i - 1] == " data":
            val[i, 0] = 5 + rng.random()
    val[:, 1] = (rng.random(n) < 0.08) * (1 + rng.random(n))
    val[[i for i, s in enumerate(strings) if s == " the"], 2] = 2.0
    tl = TokenLatents(tickers, offsets, idx, val, 3)
    return tl, strings, names


def test_phrase_latent_scores_near_one_random_near_half(corpus):
    tl, strings, names = corpus
    mask = content_token_mask(strings, tl.offsets, [names[t] for t in tl.tickers])
    lab = context_labels(tl, strings, names=names, mask=mask)
    assert lab[0]["label"].split(" / ")[0] == "data center"
    assert lab[0]["label_kind"] == "phrase"
    assert lab[0]["score"] >= 0.95
    assert abs(lab[1]["score"] - 0.5) < 0.15
    assert lab[0]["n_companies"] == 40 and lab[0]["doc_freq"] == 0.5
    # contexts and the old keys are there; company names never reach a label
    c = lab[0]["contexts"][0]
    assert "[[center]]" in c["text"] and c["ticker"].startswith("T")
    assert {"label", "doc_freq", "companies", "examples"} <= set(lab[1])
    assert all("tee" not in v["label"] for v in lab.values())
    # "the" is masked out: latent 2 never fires on a content token
    assert 2 not in lab
    assert median_score(lab, min_companies=1) == pytest.approx(
        np.median([lab[0]["score"], lab[1]["score"]]))
    assert median_score(lab, min_companies=41, ids=[0, 1]) == pytest.approx(lab[1]["score"])


def test_label_is_deterministic_and_split_is_by_company(corpus):
    tl, strings, names = corpus
    a = context_labels(tl, strings, names=names, latents=[0, 1], seed=3)
    b = context_labels(tl, strings, names=names, latents=[0, 1], seed=3)
    assert a == b
    s = split_companies(tl.tickers, seed=3)
    assert s.sum() == 40 and (s == split_companies(tl.tickers, seed=3)).all()
    # no held-out firing: no score
    only = context_labels(tl, strings, names=names, latents=[0], split=np.ones(80, bool))
    assert only[0]["score"] is None and median_score(only) != median_score(only)


def test_auroc_and_window_match():
    assert auroc([1, 1], [0, 0]) == 1.0 and auroc([0], [0]) == 0.5
    assert auroc([0, 1], [1, 0]) == 0.5
    ph = label_words("data center / cloud")
    assert ph == [["data", "center"], ["cloud"]]
    assert window_match(ph, ["the", "data", "hub"]) == 0.5
    assert window_match(ph, ["cloud"]) == 1.0 and window_match(ph, []) == 0.0


# ----------------------------------------------------------------------------- explanations

import json  # noqa: E402

import pandas as pd  # noqa: E402

from finsae.cli import main  # noqa: E402
from finsae.features.labels import select_labels, to_html, to_json  # noqa: E402
from finsae.features.store import FeatureSet  # noqa: E402
from finsae.similarity import contributions, explain_match  # noqa: E402


@pytest.fixture
def scored():
    """A and B share a generic latent 0 (large share), a well-labelled 1 and a poorly
    labelled 2 (larger share than 1); C is far away."""
    V = pd.DataFrame([[5.0, 1.0, 2.0, 0.5], [5.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.1, 3.0]],
                     index=["A", "B", "C"], columns=range(4))
    rec = {0: {"label": "company / provides", "score": 0.55, "doc_freq": 0.9, "n_companies": 9},
           1: {"label": "data center", "score": 0.95, "doc_freq": 0.1, "n_companies": 3},
           2: {"label": "misc", "score": 0.52, "doc_freq": 0.2, "n_companies": 4},
           3: {"label": "loans", "score": None, "doc_freq": 0.1, "n_companies": 1}}
    for j, r in rec.items():
        r.update({"companies": [{"ticker": "A", "name": "A Corp", "value": 1.0}],
                  "examples": [], "contexts": [{"ticker": "A", "text": "the [[data]] center",
                                                "activation": 2.0}]})
    return V, rec


def test_explain_match_bar_generic_and_share(scored):
    V, rec = scored
    ex = explain_match(V, "A", "B", top=1, labels=rec)
    cos = float(V.loc["A"] @ V.loc["B"] / np.linalg.norm(V.loc["A"]) / np.linalg.norm(V.loc["B"]))
    assert ex["cosine"] == pytest.approx(cos)
    # the checked label comes first although latent 2 carries more; the generic one is folded
    assert list(ex["features"]["id"]) == [1] and bool(ex["features"]["checked"][0])
    assert ex["n_generic"] == 1 and ex["generic"] == pytest.approx(25 / np.sqrt(30.25 * 30.0))
    assert ex["shown"] + ex["generic"] + ex["rest"] == pytest.approx(cos)
    assert ex["shown_share"] == pytest.approx(ex["shown"] / cos)
    # fewer passing than asked: filled with the rest, flagged
    two = explain_match(V, "A", "B", top=2, labels=rec)
    assert list(two["features"]["id"]) == [1, 2] and list(two["features"]["checked"]) == [True, False]
    # latents sharing a label's head phrase are one line (passing ones only)
    W = V.copy()
    W[4] = [1.0, 1.0, 0.0]
    rec4 = {**rec, 4: {"label": "data center", "score": 0.8, "doc_freq": 0.1}}
    g = explain_match(W, "A", "B", top=1, labels=rec4)
    c = g["features"].iloc[0]
    assert c["n_features"] == 2 and set(c["ids"]) == {1, 4}
    # the share-weighted median: equal shares, the lower of 0.95 and 0.8
    assert c["score"] == pytest.approx(0.8)
    single = explain_match(W, "A", "B", top=1, labels=rec4, group=False)
    assert single["features"]["n_features"][0] == 1
    assert g["shown"] > single["shown"]
    # a plain id -> label map (no scores): contribution order, nothing folded
    plain = explain_match(V, "A", "B", top=3, labels={0: "x"})
    assert list(plain["features"]["id"]) == [0, 2, 1] and plain["n_generic"] == 0


def test_explain_match_groups_features_by_concept():
    """Features whose labels name the same concept (plurals, a longer phrase holding it, a
    second phrase) are one line whose share is the sum of theirs; unrelated ones are not."""
    from finsae.features.label_groups import concept_keys, concept_lines, stem
    assert stem("loans") == "loan" and stem("utilities") == "utility" and stem("gas") == "gas"
    assert "data center" in concept_keys("data centers / cloud")
    assert "gas" not in concept_keys("natural gas") and "gas" in concept_keys("oil / gas")
    lab = {0: "data center", 1: "data centers / servers", 2: "cloud / data center operators",
           3: "crude oil", 4: "petroleum / crude oil", 5: "natural gas", 6: "banking", 7: "loans",
           8: "generic words"}
    score = {0: 0.9, 1: 0.8, 2: 0.95, 3: 0.85, 4: 0.9, 5: 0.75, 6: 0.6, 7: None, 8: 0.99}
    u = np.array([3.0, 2.0, 1.0, 1.5, 1.0, 0.5, 2.5, 1.0, 4.0])
    V = pd.DataFrame([u, u, np.ones(9)], index=["A", "B", "C"], columns=range(9))
    rec = {j: {"label": lab[j], "score": score[j], "doc_freq": 0.9 if j == 8 else 0.1}
           for j in lab}
    ex = explain_match(V, "A", "B", top=3, labels=rec)
    f, c = ex["features"], contributions(V.loc["A"], V.loc["B"])
    assert list(f["label"]) == ["data center", "crude oil", "natural gas"]
    assert set(f["ids"][0]) == {0, 1, 2} and f["n_features"][0] == 3
    assert f["contribution"][0] == pytest.approx(c[[0, 1, 2]].sum())
    assert set(f["ids"][1]) == {3, 4} and f["contribution"][1] == pytest.approx(c[[3, 4]].sum())
    assert f["score"][0] == pytest.approx(0.9)  # share-weighted median of 0.9, 0.8, 0.95
    assert all(f["checked"]) and ex["n_generic"] == 1
    assert ex["shown_share"] == pytest.approx(c[[0, 1, 2, 3, 4, 5]].sum() / c.sum())
    # below the bar (6) or unscored (7): never in a line, shown one by one after the lines
    more = explain_match(V, "A", "B", top=5, labels=rec)["features"]
    assert list(more["checked"]) == [True, True, True, False, False]
    assert [ids for ids in more["ids"][3:]] == [[6], [7]]
    # by exact head phrase, "data centers" and "petroleum / crude oil" stay apart
    head = explain_match(V, "A", "B", top=3, labels=rec, group="phrase")["features"]
    assert head["n_features"].max() == 1
    assert concept_lines({0: 1.0, 1: 1.0}, {0: "", 1: "x"}, top=5) == [("x", [1]), ("", [0])]


def test_show_export_and_similar_cli_carry_scores(scored, tmp_path, capsys):
    V, rec = scored
    folder = FeatureSet({"sae": V}, pd.Series({t: f"{t} Corp" for t in V.index}), rec,
                        {"layer": 5}).save(tmp_path / "feat")
    assert main(["features", "show", "1", "--features", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "detection score 0.95" in out and "[[data]]" in out and "10% of companies" in out
    j = tmp_path / "f.json"
    assert main(["features", "export", "--json-out", str(j), "--sort", "score",
                 "--max-doc-freq", "0.5", "--features", str(folder)]) == 0
    got = json.loads(j.read_text())
    assert list(got) == ["1", "2", "3"] and got["1"]["contexts"]
    assert list(select_labels(rec, min_score=0.6)) == [1]
    assert list(select_labels(rec, min_companies=4, sort="doc_freq")) == [0, 2]
    h = to_html(rec, tmp_path / "f.html", sort="score").read_text()
    assert "<mark>data</mark>" in h and h.index("data center") < h.index("misc")
    assert list(json.loads(to_json(rec, tmp_path / "g.json").read_text())) == ["0", "1", "2", "3"]
    capsys.readouterr()
    assert main(["similar", "A", "--top", "1", "--explain", "--n-features", "1",
                 "--features", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "data center" in out and "score 0.95" in out and "other: 1 generic" in out
    assert "of the SAE cosine" in out
    assert main(["features", "explain", "A", "B", "--json", "--features", str(folder)]) == 0
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert 0 not in ids and ids[0] in (1, 2)
    assert main(["features", "explain", "A", "B", "--min-score", "0.9", "--json",
                 "--features", str(folder)]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [1]


def test_given_labels_are_scored_the_same_way(corpus):
    tl, strings, names = corpus
    lab = context_labels(tl, strings, names=names, latents=[0],
                         given={0: "pipeline / steel"})
    assert lab[0]["label"] == "pipeline / steel" and lab[0]["label_kind"] == "given"
    assert lab[0]["score"] < 0.75  # a wrong label does not separate the windows

