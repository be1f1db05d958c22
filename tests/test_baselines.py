import numpy as np
import pandas as pd
import pytest

from finsae.data.errors import DataError
from finsae.data.paths import cache_dir
from finsae.features import minilm_embeddings, tfidf_vectors

TEXTS = pd.Series({
    "BANK": "The bank takes deposits and makes commercial loans and mortgages.",
    "LEND": "A regional bank offering deposits, mortgages and consumer loans.",
    "OIL": "The company explores for and produces crude oil and natural gas.",
})


def _cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_tfidf_vectors_indexed_by_ticker_and_normalised():
    X = tfidf_vectors(TEXTS, min_df=1)
    assert list(X.index) == list(TEXTS.index)
    assert np.allclose(np.linalg.norm(X.to_numpy(), axis=1), 1.0)
    assert "the" not in X.columns  # English stop words removed
    assert _cos(X.loc["BANK"], X.loc["LEND"]) > _cos(X.loc["BANK"], X.loc["OIL"])
    companies = pd.DataFrame({"description": TEXTS})
    assert tfidf_vectors(companies).equals(X)
    with pytest.raises(DataError, match="empty description"):
        tfidf_vectors(pd.Series({"A": "text here", "B": " "}))


def test_minilm_embeddings_cached_by_text_hash():
    E = minilm_embeddings(TEXTS)
    assert E.shape == (3, 384) and list(E.index) == list(TEXTS.index)
    assert np.allclose(np.linalg.norm(E.to_numpy(), axis=1), 1.0, atol=1e-5)
    assert _cos(E.loc["BANK"], E.loc["LEND"]) > _cos(E.loc["BANK"], E.loc["OIL"])
    files = list(cache_dir("embeddings").glob("minilm_*.npy"))
    assert len(files) == 1
    again = minilm_embeddings(TEXTS)  # from the cache
    assert np.array_equal(again.to_numpy(), E.to_numpy())
    files[0].write_bytes(b"corrupted")  # a broken cache file is recomputed
    assert np.allclose(minilm_embeddings(TEXTS).to_numpy(), E.to_numpy(), atol=1e-6)
    changed = TEXTS.copy()
    changed["OIL"] = "An oil refiner."
    minilm_embeddings(changed)
    assert len(list(cache_dir("embeddings").glob("minilm_*.npy"))) == 2
