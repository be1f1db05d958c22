"""From descriptions to the feature cache: LM activations -> SAE latents -> company vectors,
plus the baselines (mean-pooled hidden state, MiniLM, TF-IDF) and the feature labels.

The pieces work on anything shaped like `finsae.lm`'s ActivationStore (``tokens(layer)``,
``doc_index``, ``offsets``, ``texts``, ``text_means(layer)``) and any SAE with
``encode(x) -> latents`` (a TopK SAE's latents have at most k non-zeros per token), so
experiments can feed them cached arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.errors import DataError
from ..integrity import check_folder, report_damaged
from ..lm.defaults import DEFAULT_LAYER, DEFAULT_MODEL
from .company import (DEFAULT_CONTENT_ONLY, DEFAULT_FEATURES, DEFAULT_POOLING, CompanyFeatures,
                      TokenLatents, content_token_mask, pool_latents)

#: the version of the code that turns token latents into company vectors and labels (this
#: module, features/company.py, features/labels.py): in the cache key of every built feature
#: set and of `finsae run`'s features stage, so a change there is not served from an old
#: cache. Bump it with any change to their output.
FEATURES_RECIPE = 1

#: what `finsae features build` uses unless told otherwise (chosen on 2001-2010, see
#: experiments/results/search.md)
DEFAULT_BUILD = dict(model=DEFAULT_MODEL, layer=DEFAULT_LAYER, pooling=DEFAULT_POOLING,
                     content_only=DEFAULT_CONTENT_ONLY, **DEFAULT_FEATURES)


def token_strings(store) -> list[str]:
    """Each token row's text, including the whitespace before it (so word starts are visible):
    the characters from the previous token's end (in the same text) to this token's end."""
    doc = np.asarray(store.doc_index)
    off = np.asarray(store.offsets)
    texts = store.texts
    out = []
    prev_doc, prev_end = -1, 0
    for d, (s, e) in zip(doc.tolist(), off.tolist()):
        if d != prev_doc:
            prev_doc, prev_end = d, s
        out.append(texts[d][min(prev_end, s):e])
        prev_end = e
    return out


def doc_offsets(doc_index, n_docs: int) -> np.ndarray:
    """Token row offsets per text from a sorted doc_index (texts in input order)."""
    doc = np.asarray(doc_index)
    if len(doc) and (np.diff(doc) < 0).any():
        raise DataError("token rows are not grouped by text")
    return np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=n_docs))])


def encode_tokens(sae, X, *, batch: int = 8192, k: int | None = None):
    """SAE latents of token activations X [n, d] in TopK form: (indices, values) [n, k].

    k: latents kept per token (default: the SAE's k for a TopK SAE, else the largest number of
    non-zeros in any token, found on the first batch and grown as needed)."""
    import torch
    X = torch.as_tensor(X)
    # token rows go to the SAE's device (a GPU for a released SAE of a large model)
    dev = next(iter(sae.parameters()), X).device if hasattr(sae, "parameters") else X.device
    cfg = getattr(sae, "cfg", None)
    if k is None and str(getattr(cfg, "arch", "topk")) == "topk":  # exactly k per token
        k = getattr(cfg, "k", None)
    idx, val = [], []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            A = sae.encode(X[i:i + batch].to(dev).float())
            kk = k or int((A != 0).sum(dim=1).max().clamp(min=1))
            v, j = torch.topk(A, min(kk, A.shape[1]), dim=1)
            idx.append(j.to(torch.int32).cpu().numpy())
            val.append(v.clamp(min=0).float().cpu().numpy())
    if k is None:  # pad batches to a common width
        w = max(a.shape[1] for a in idx)
        idx = [np.pad(a, ((0, 0), (0, w - a.shape[1]))) for a in idx]
        val = [np.pad(a, ((0, 0), (0, w - a.shape[1]))) for a in val]
    return np.concatenate(idx), np.concatenate(val)


def token_latents(sae, store, layer: int, tickers, *, batch: int = 8192,
                  massive_factor: float | None = 10.0) -> tuple[TokenLatents, np.ndarray]:
    """SAE latents of every token of `store` at `layer` (texts = `tickers`, in order), and the
    mask of ordinary tokens (False: a massive token, residual norm above massive_factor x median:
    the attention sinks, whose latents are noise and would dominate a sum; None keeps all)."""
    from ..sae.metrics import massive_token_mask

    X = store.tokens(layer)
    ok = np.ones(len(X), bool)
    if massive_factor:
        # numpy's median of the norms (the mean of the two middle ones), as features always used
        median = float(np.median(X.norm(dim=1).numpy()))
        ok = ~massive_token_mask(X, massive_factor, median=median).numpy()
    d_sae = int(getattr(getattr(sae, "cfg", None), "d_sae", 0) or sae.encode(X[:1]).shape[1])
    idx, val = encode_tokens(sae, X, batch=batch)
    offsets = doc_offsets(store.doc_index, len(tickers))
    return TokenLatents(list(tickers), offsets, idx, val, d_sae), ok


def sae_company_vectors(tl: TokenLatents, strings, names=None, *, pooling: str = DEFAULT_POOLING,
                        content_only: bool = DEFAULT_CONTENT_ONLY, token_mask=None,
                        fit_tickers=None, **feature_params):
    """Company vectors from token latents: mask, pool, weight (see `CompanyFeatures`).

    token_mask: extra boolean mask (e.g. massive tokens); content_only adds
    `content_token_mask`. fit_tickers: the companies whose statistics (document frequency, idf)
    are fitted (default: all). Returns (vectors, pooled, fitted CompanyFeatures).
    """
    mask = None if token_mask is None else np.asarray(token_mask, dtype=bool)
    if content_only:
        cm = content_token_mask(strings, tl.offsets, names)
        mask = cm if mask is None else mask & cm
    pooled = pool_latents(tl, pooling, mask=mask)
    params = {**DEFAULT_FEATURES, **feature_params}
    cf = CompanyFeatures(**params)
    cf.fit(pooled if fit_tickers is None else pooled.loc[list(fit_tickers)])
    return cf.transform(pooled), pooled, cf


def hidden_vectors(store, layer: int, tickers, standardize: bool = True) -> pd.DataFrame:
    """The LM's mean-pooled hidden state at `layer`, per company (no SAE); standardised per
    dimension by default (the raw residual stream has a few huge dimensions that would
    otherwise decide every cosine)."""
    H = np.asarray(store.text_means(layer), dtype=np.float64)
    if standardize:
        sd = H.std(axis=0)
        H = (H - H.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return pd.DataFrame(H, index=pd.Index(list(tickers), name="ticker"),
                        columns=[f"h{i}" for i in range(H.shape[1])])


def build_feature_set(companies: pd.DataFrame, *, model: str = DEFAULT_BUILD["model"],
                      layer: int | None = DEFAULT_BUILD["layer"], sae=None,
                      pooling: str = DEFAULT_BUILD["pooling"],
                      content_only: bool = DEFAULT_BUILD["content_only"],
                      weighting=DEFAULT_BUILD["weighting"], max_df=DEFAULT_BUILD["max_df"],
                      sublinear: bool = DEFAULT_BUILD["sublinear"],
                      tf: str | None = DEFAULT_BUILD.get("tf"),
                      top_n: int | None = DEFAULT_BUILD.get("top_n"), extra=(),
                      baselines: bool = True,
                      device: str = "cpu", companies_path=None, progress: bool = True,
                      max_tokens: int = 512):
    """Compute and cache every method's company vectors and the feature labels; returns the
    cache folder (reused when it already exists for the same settings and texts). Pass that
    folder on to whatever reads the features (``--features DIR``, ``features=``).

    sae: an SAE folder (finsae, SAELens, sparsify, Gemma Scope params.npz) or a whole release
    folder, in which the SAE for block `layer` is picked (`finsae.sae.find_sae`); layer=None:
    the block the SAE records.

    companies_path: not used (the folder is keyed by the texts, not their file); still
    accepted so existing callers need no change."""
    from ..hashing import json_key, texts_key
    from .store import FeatureSet, features_root
    try:
        from ..lm import encode_texts, load_lm
        from ..sae import load_sae  # noqa: F401  (checks finsae.sae is installed)
    except ImportError as e:
        raise DataError("building features needs finsae.lm and finsae.sae "
                        f"(missing: {e.name})") from e
    texts = companies["description"].fillna("").astype(str).str.strip()
    texts = texts[texts != ""]
    if len(texts) < 2:
        raise DataError("need at least 2 companies with a description")
    layer = _sae_layer(sae, layer)
    lm = load_lm(model, device=device, progress=None if progress else False)
    sae_obj, sae_id = _resolve_sae(sae, lm, layer, texts, progress)
    extra = [(int(lx), *_resolve_sae(sx, lm, int(lx), texts, progress)) for lx, sx in extra]
    settings = dict(model=lm.fingerprint, layer=layer, sae=sae_id, pooling=pooling,
                    **({"extra": [(lx, sid) for lx, _, sid in extra]} if extra else {}),
                    content_only=content_only, weighting=weighting, max_df=max_df,
                    sublinear=sublinear, texts=texts_key(texts), baselines=baselines,
                    **({} if tf is None else {"tf": tf}),
                    **({} if top_n is None else {"top_n": top_n}),
                    **({} if max_tokens == 512 else {"max_tokens": max_tokens}),
                    recipe=FEATURES_RECIPE)
    folder = features_root() / json_key(settings)
    if folder.exists():
        problem = check_folder(folder)
        if problem is None:
            return folder
        report_damaged(folder, problem)
    layers = [layer] + [lx for lx, _, _ in extra]
    store = encode_texts(lm, texts.to_list(), layers=sorted(set(layers)), max_tokens=max_tokens,
                         progress=progress)
    tickers = list(texts.index)
    strings = token_strings(store)
    names = companies["name"].reindex(tickers).fillna("").astype(str).to_list() \
        if "name" in companies else None
    name_map = dict(zip(tickers, names or [""] * len(tickers)))
    from .labels import context_labels
    parts, labels, n_tokens, n_massive = [], {}, 0, 0
    for pos, (lx, sx) in enumerate([(layer, sae_obj)] + [(lx, sx) for lx, sx, _ in extra]):
        tl, ok = token_latents(sx, store, lx, tickers)
        vec, pooled, _ = sae_company_vectors(tl, strings, names, pooling=pooling,
                                             content_only=content_only, token_mask=ok,
                                             weighting=weighting, max_df=max_df,
                                             sublinear=sublinear, tf=tf, top_n=top_n)
        lmask = ok & content_token_mask(strings, tl.offsets, names) if content_only else ok
        lab = context_labels(tl, strings, pooled=pooled, names=name_map,
                             latents=[int(c) for c in vec.columns], mask=lmask)
        # latent ids of the extra layers are offset (block lx's latent j -> LAYER_ID * pos + j)
        offset = LAYER_ID * pos
        labels.update({offset + int(j): {**v, "layer": lx} for j, v in lab.items()})
        parts.append(vec.set_axis([offset + int(c) for c in vec.columns], axis=1))
        n_tokens, n_massive = int(tl.n_tokens), n_massive + int((~ok).sum())
    vec = join_layers(parts)
    vectors = {"sae": vec, "hidden": hidden_vectors(store, layer, tickers)}
    if baselines:
        from .baselines import minilm_embeddings, tfidf_vectors
        vectors["embedding"] = minilm_embeddings(texts)
        vectors["tfidf"] = tfidf_vectors(texts)
    fs = FeatureSet(vectors, pd.Series(name_map), labels,
                    {**settings, "model_name": model, "sae_path": str(sae_id),
                     "n_tokens": n_tokens, "massive_dropped": n_massive,
                     "layers": layers})
    fs.save(folder)
    return folder


#: latent ids of the k-th extra layer start at k * LAYER_ID in concatenated vectors
LAYER_ID = 1_000_000


def join_layers(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Company vectors of several blocks side by side: each L2-normalised, joined, and
    re-normalised, so the cosine of two companies is the mean of the blocks' cosines."""
    if len(parts) == 1:
        return parts[0]
    norm = [p / np.maximum(np.linalg.norm(p.to_numpy(), axis=1, keepdims=True), 1e-12)
            for p in parts]
    V = pd.concat(norm, axis=1)
    return V / np.maximum(np.linalg.norm(V.to_numpy(), axis=1, keepdims=True), 1e-12)


def _resolve_sae(sae, lm, layer: int, texts: pd.Series, progress: bool):
    """(SAE object, identifier for the cache key) from a folder, or None: the default SAE."""
    from ..sae import load_sae
    if sae is None:
        raise DataError("an SAE is needed (a folder): one trained on this model's block "
                        f"{layer} (e.g. with `finsae sae train`)")
    from ..sae import find_sae
    p, _ = find_sae(sae, layer)   # one SAE folder, or the one for block `layer` in a release
    obj = load_sae(p).to(getattr(lm, "device", "cpu"))
    d_model = getattr(lm, "d_model", None)
    if d_model is not None and obj.d_in != d_model:
        raise DataError(f"the SAE reads {obj.d_in}-dimensional activations but the model's "
                        f"residual stream has {d_model}: an SAE of another model?", path=p)
    files = [p] if p.is_file() else [f for f in p.iterdir() if f.is_file()]
    st = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return obj, f"{p.resolve()}|{st}"


def _sae_layer(sae, layer: int | None) -> int:
    """The block to read: `layer`, or (None) the one the SAE at `sae` records (a release
    folder must then hold a single SAE), else the default block. Checked before the model is
    loaded, so a missing or contradicting SAE fails fast."""
    if sae is None:
        return DEFAULT_BUILD["layer"] if layer is None else int(layer)
    from ..sae import find_sae
    _, block = find_sae(sae, None if layer is None else int(layer))
    if layer is not None:
        return int(layer)
    return DEFAULT_BUILD["layer"] if block is None else block
