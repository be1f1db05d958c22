"""Labels from contexts and their detection score, on synthetic token latents (no LM)."""

import numpy as np
import pytest

from finsae.features.company import TokenLatents, content_token_mask
from finsae.features.labels import (_auroc, context_labels, label_words, median_score,
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
    assert _auroc([1, 1], [0, 0]) == 1.0 and _auroc([0], [0]) == 0.5
    assert _auroc([0, 1], [1, 0]) == 0.5
    ph = label_words("data center / cloud")
    assert ph == [["data", "center"], ["cloud"]]
    assert window_match(ph, ["the", "data", "hub"]) == 0.5
    assert window_match(ph, ["cloud"]) == 1.0 and window_match(ph, []) == 0.0
