"""SAELens, sparsify and Gemma Scope SAEs: reading them as finsae weights and writing them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder
from .config import SAEConfig
from .layouts import (CFG, FINSAE_WEIGHTS, GEMMASCOPE_PARAMS, SAELENS_WEIGHTS, read_weights)


def read_saelens(folder: Path, cfg: dict):
    """(SAEConfig, finsae weights, threshold or None) of a SAELens folder."""
    w = read_weights(folder / SAELENS_WEIGHTS, ("W_enc", "b_enc", "W_dec", "b_dec"))
    arch = str(cfg.get("architecture", "standard")).lower()
    act = str(cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))).lower()
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch in ("topk", "batchtopk") or act == "topk":
        arch = "topk" if arch != "batchtopk" else "batchtopk"
        k = cfg.get("k", kwargs.get("k"))
        if k is None:
            raise DataError("TopK SAE cfg.json without k", path=folder)
    elif arch in ("standard", "relu"):
        arch, k = "relu", 1
    elif arch == "jumprelu":
        k = 1
    else:
        raise DataError(f"SAELens architecture {arch!r} is not supported; supported: "
                        f"standard, topk, batchtopk, jumprelu", path=folder)
    norm = cfg.get("normalize_activations", "none")
    if norm not in (None, "none", False):
        raise DataError(f"normalize_activations={norm!r} is applied outside the weights; "
                        f"only SAEs with 'none' can be loaded exactly", path=folder)
    W_enc, b_enc, W_dec, b_dec = (w["W_enc"].T.contiguous(), w["b_enc"], w["W_dec"], w["b_dec"])
    d_in, d_sae = W_dec.shape[1], W_dec.shape[0]
    if not cfg.get("apply_b_dec_to_input", True):
        # pre = x W + b_enc = (x - b_dec) W + (b_enc + b_dec W)
        b_enc = b_enc + W_enc @ b_dec
    # SAELens >= 6 keeps model and hook under "metadata"
    info = {**(cfg.get("metadata") or {}), **cfg}
    sae_cfg = SAEConfig(d_in=int(cfg.get("d_in", d_in)), d_sae=int(cfg.get("d_sae", d_sae)),
                        arch=arch, k=int(k),
                        meta={"source": "saelens", **{m: info[m] for m in
                              ("model_name", "hook_name", "hook_layer") if m in info}})
    return sae_cfg, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, \
        w.get("threshold")


def read_sparsify(folder: Path, cfg: dict):
    """(SAEConfig, finsae weights, None) of a sparsify (TopK) folder."""
    w = read_weights(folder / FINSAE_WEIGHTS, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
    if cfg.get("skip_connection") or "W_skip" in w:
        raise DataError("sparsify SAEs with a skip connection (transcoders) are not supported",
                        path=folder)
    d_sae, d_in = w["encoder.weight"].shape
    if "k" not in cfg:
        raise DataError("sparsify cfg.json without k", path=folder)
    if cfg.get("d_in") not in (None, d_in):
        raise DataError(f"cfg.json d_in={cfg['d_in']} but encoder.weight is {[d_sae, d_in]}",
                        path=folder)
    if cfg.get("signed"):
        raise DataError("signed sparsify SAEs are not supported", path=folder)
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


def save_saelens(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write the SAELens layout (for handing an SAE to SAELens-based tools)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t = {"W_enc": sae.W_enc.detach().T.contiguous(), "W_dec": sae.W_dec.detach().contiguous(),
         "b_enc": sae.b_enc.detach().clone(), "b_dec": sae.b_dec.detach().clone()}
    arch = {"relu": "standard"}.get(sae.cfg.arch, sae.cfg.arch)
    if sae.cfg.arch in ("jumprelu", "batchtopk"):
        t["threshold"] = sae.threshold.detach().contiguous().clone()
        arch = "jumprelu" if sae.cfg.arch == "jumprelu" else "batchtopk"
    save_file(t, str(folder / SAELENS_WEIGHTS))
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
           "apply_b_dec_to_input": True, "normalize_activations": "none"}
    if sae.cfg.arch in ("topk", "batchtopk"):
        cfg["k"] = sae.cfg.k
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder


def save_sparsify(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write the EleutherAI sparsify layout (TopK only)."""
    if sae.cfg.arch != "topk":
        raise DataError(f"sparsify holds TopK SAEs only, this one is {sae.cfg.arch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"encoder.weight": sae.W_enc.detach().contiguous().clone(),
               "encoder.bias": sae.b_enc.detach().clone(),
               "W_dec": sae.W_dec.detach().contiguous().clone(),
               "b_dec": sae.b_dec.detach().clone()}, str(folder / FINSAE_WEIGHTS))
    cfg = {"expansion_factor": sae.d_sae // sae.d_in, "normalize_decoder": True,
           "num_latents": sae.d_sae, "k": sae.cfg.k, "multi_topk": False,
           "skip_connection": False, "d_in": sae.d_in}
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder
