"""sparsify and Gemma Scope SAEs: reading them as finsae weights and writing them (SAELens:
`finsae.sae.saelens`, re-exported here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder
from .config import SAEConfig
from .layouts import CFG, GEMMASCOPE_PARAMS, SPARSIFY_WEIGHTS, read_weights
from .saelens import read_saelens, save_saelens

__all__ = ["read_gemmascope", "read_saelens", "read_sparsify", "save_gemmascope",
           "save_saelens", "save_sparsify"]


def read_sparsify(folder: Path, cfg: dict):
    """(SAEConfig, finsae weights, None) of a sparsify TopK SAE folder (``SparseCoder``:
    z = TopK(ReLU(encoder(x - b_dec)))); DataError for what finsae cannot load exactly:
    transcoders (``transcode``: the encoder reads x itself and the decoder writes another
    activation), skip connections, ``activation="groupmax"`` and signed SAEs."""
    w = read_weights(folder / SPARSIFY_WEIGHTS,
                     ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
    if cfg.get("transcode"):
        raise DataError("sparsify transcoders (transcode=true) are not supported: they map a "
                        "module's input to its output, not an activation to itself",
                        path=folder)
    if cfg.get("skip_connection") or "W_skip" in w:
        raise DataError("sparsify SAEs with a skip connection (skip_connection=true, W_skip) "
                        "are not supported", path=folder)
    act = cfg.get("activation", "topk")
    if act != "topk":
        raise DataError(f"sparsify activation={act!r} is not supported (finsae has TopK "
                        "only; groupmax keeps the largest latent of each of k groups)",
                        path=folder)
    if cfg.get("signed"):
        raise DataError("signed sparsify SAEs are not supported", path=folder)
    extra = set(w) - {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    if extra:
        raise DataError(f"sparsify weights {sorted(extra)} are not supported", path=folder)
    d_sae, d_in = w["encoder.weight"].shape
    if "k" not in cfg:
        raise DataError("sparsify cfg.json without k", path=folder)
    if cfg.get("d_in") not in (None, d_in):
        raise DataError(f"cfg.json d_in={cfg['d_in']} but encoder.weight is {[d_sae, d_in]}",
                        path=folder)
    if tuple(w["W_dec"].shape) != (d_sae, d_in):
        raise DataError(f"W_dec is {list(w['W_dec'].shape)}, expected {[d_sae, d_in]}",
                        path=folder)
    sae_cfg = SAEConfig(d_in=int(d_in), d_sae=int(d_sae), arch="topk", k=int(cfg["k"]),
                        meta={"source": "sparsify", "hookpoint": folder.name})
    return sae_cfg, {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"],
                     "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, None


def read_gemmascope(npz: Path):
    """A Gemma Scope params.npz: pre = x @ W_enc + b_enc (no b_dec subtracted), z = pre where
    pre > threshold; folded into finsae's pre = (x - b_dec) W_enc^T + b_enc'."""
    import numpy as np
    try:
        with np.load(npz) as f:
            w = {n: torch.from_numpy(np.asarray(f[n], dtype=np.float32)) for n in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {npz.name} ({e})", path=npz) from None
    missing = [n for n in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold") if n not in w]
    if missing:
        raise DataError(f"missing arrays {missing}; found {sorted(w)}", path=npz)
    W_enc = w["W_enc"].T.contiguous()
    d_sae, d_in = W_enc.shape
    b_enc = w["b_enc"] + W_enc @ w["b_dec"]
    sae_cfg = SAEConfig(d_in=int(d_in), d_sae=int(d_sae), arch="jumprelu", k=1,
                        meta={"source": "gemmascope", "params": str(npz)})
    return sae_cfg, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, \
        w["threshold"]


def save_gemmascope(sae: SparseAutoencoder, path: str | Path) -> Path:
    """Write a JumpReLU SAE as a Gemma Scope params.npz (path: the file or its folder)."""
    import numpy as np
    if sae.cfg.arch != "jumprelu":
        raise DataError(f"Gemma Scope holds JumpReLU SAEs only, this one is {sae.cfg.arch}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path / GEMMASCOPE_PARAMS
    path.parent.mkdir(parents=True, exist_ok=True)
    W_enc = sae.W_enc.detach().float()
    b_dec = sae.b_dec.detach().float()
    np.savez(path, W_enc=W_enc.T.numpy(), W_dec=sae.W_dec.detach().float().numpy(),
             b_enc=(sae.b_enc.detach().float() - W_enc @ b_dec).numpy(), b_dec=b_dec.numpy(),
             threshold=sae.threshold.detach().float().numpy())
    return path


def save_sparsify(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write the EleutherAI sparsify layout (TopK only), which
    ``sparsify.SparseCoder.load_from_disk`` loads with the same encodings."""
    if sae.cfg.arch != "topk":
        raise DataError(f"sparsify holds TopK SAEs only, this one is {sae.cfg.arch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"encoder.weight": sae.W_enc.detach().contiguous().clone(),
               "encoder.bias": sae.b_enc.detach().clone(),
               "W_dec": sae.W_dec.detach().contiguous().clone(),
               "b_dec": sae.b_dec.detach().clone()}, str(folder / SPARSIFY_WEIGHTS))
    cfg = {"activation": "topk", "expansion_factor": max(sae.d_sae // sae.d_in, 1),
           "normalize_decoder": True, "num_latents": sae.d_sae, "k": sae.cfg.k,
           "multi_topk": False, "skip_connection": False, "transcode": False,
           "d_in": sae.d_in}
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder
