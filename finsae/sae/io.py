"""SAE folders: save in the finsae layout; load finsae, SAELens and EleutherAI sparsify folders.

finsae:   cfg.json (``"format": "finsae"`` + SAEConfig fields) and sae.safetensors with
          W_enc [d_sae, d_in], b_enc, W_dec [d_sae, d_in], b_dec, optional threshold.
SAELens:  cfg.json and sae_weights.safetensors with W_enc [d_in, d_sae], W_dec [d_sae, d_in],
          b_enc, b_dec, optional threshold (JumpReLU).
sparsify: cfg.json and sae.safetensors with encoder.weight [d_sae, d_in], encoder.bias,
          W_dec [d_sae, d_in], b_dec.
Activation scaling is folded into the weights before saving, so a saved SAE acts on raw
activations.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder, build_sae
from .config import SAEConfig

CFG, FINSAE_WEIGHTS, SAELENS_WEIGHTS = "cfg.json", "sae.safetensors", "sae_weights.safetensors"


def save_sae(sae: SparseAutoencoder, folder: str | Path, *, extra: dict | None = None) -> Path:
    """Write cfg.json + sae.safetensors (finsae layout). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: getattr(sae, n).detach().contiguous().clone()
               for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if sae.cfg.arch in ("jumprelu", "batchtopk"):
        tensors["threshold"] = sae.threshold.detach().contiguous().clone()
    save_file(tensors, str(folder / FINSAE_WEIGHTS))
    cfg = {"format": "finsae", **sae.cfg.to_dict(), **(extra or {})}
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder


def detect_layout(folder: str | Path) -> str:
    """'finsae', 'saelens' or 'sparsify'; DataError naming what a SAE folder holds if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such SAE folder", path=folder)
    if (folder / CFG).exists() and (folder / SAELENS_WEIGHTS).exists():
        return "saelens"
    if (folder / CFG).exists() and (folder / FINSAE_WEIGHTS).exists():
        cfg = _read_cfg(folder)
        return "finsae" if cfg.get("format") == "finsae" else "sparsify"
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / CFG).exists())
    hint = f"; SAE folders inside it: {', '.join(subs)}" if subs else ""
    raise DataError(f"not an SAE folder: expected {CFG} with {FINSAE_WEIGHTS} (finsae or "
                    f"sparsify) or {SAELENS_WEIGHTS} (SAELens){hint}", path=folder)


def _read_cfg(folder: Path) -> dict:
    try:
        return json.loads((folder / CFG).read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{CFG} is not valid JSON ({e})", path=folder) from None


def _weights(path: Path, needed: tuple[str, ...]) -> dict:
    w = load_file(str(path))
    missing = [n for n in needed if n not in w]
    if missing:
        raise DataError(f"missing tensors {missing}; found {sorted(w)}", path=path)
    return w


def load_sae(folder: str | Path, *, layout: str | None = None) -> SparseAutoencoder:
    """Load an SAE from a finsae, SAELens or sparsify folder (layout auto-detected)."""
    folder = Path(folder)
    layout = layout or detect_layout(folder)
    cfg = _read_cfg(folder)
    if layout == "finsae":
        w = _weights(folder / FINSAE_WEIGHTS, ("W_enc", "b_enc", "W_dec", "b_dec"))
        sae_cfg = SAEConfig.from_dict(cfg)
        state = {n: w[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        threshold = w.get("threshold")
    elif layout == "saelens":
        sae_cfg, state, threshold = _from_saelens(folder, cfg)
    elif layout == "sparsify":
        sae_cfg, state, threshold = _from_sparsify(folder, cfg)
    else:
        raise DataError(f"unknown layout {layout!r}; known: finsae, saelens, sparsify")
    sae = build_sae(sae_cfg)
    _fill(sae, state, threshold, folder)
    return sae.eval()


def _fill(sae, state, threshold, folder):
    with torch.no_grad():
        for n, t in state.items():
            p = getattr(sae, n)
            if tuple(t.shape) != tuple(p.shape):
                raise DataError(f"{n} has shape {list(t.shape)}, cfg.json implies "
                                f"{list(p.shape)}", path=folder)
            p.copy_(t.to(p.dtype))
        if sae.cfg.arch == "jumprelu":
            if threshold is None:
                raise DataError("JumpReLU SAE without a threshold tensor", path=folder)
            if bool((threshold <= 0).any()):
                raise DataError("JumpReLU thresholds must be positive", path=folder)
            sae.log_threshold.copy_(threshold.log())
        elif sae.cfg.arch == "batchtopk" and threshold is not None:
            sae.threshold.copy_(threshold)


def _from_saelens(folder: Path, cfg: dict):
    w = _weights(folder / SAELENS_WEIGHTS, ("W_enc", "b_enc", "W_dec", "b_dec"))
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
    sae_cfg = SAEConfig(d_in=int(cfg.get("d_in", d_in)), d_sae=int(cfg.get("d_sae", d_sae)),
                        arch=arch, k=int(k),
                        meta={"source": "saelens", **{m: cfg[m] for m in
                              ("model_name", "hook_name", "hook_layer") if m in cfg}})
    return sae_cfg, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, \
        w.get("threshold")


def _from_sparsify(folder: Path, cfg: dict):
    w = _weights(folder / FINSAE_WEIGHTS, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
    if cfg.get("skip_connection") or "W_skip" in w:
        raise DataError("sparsify SAEs with a skip connection (transcoders) are not supported",
                        path=folder)
    d_sae, d_in = w["encoder.weight"].shape
    if "k" not in cfg:
        raise DataError("sparsify cfg.json without k", path=folder)
    if cfg.get("d_in") not in (None, d_in):
        raise DataError(f"cfg.json d_in={cfg['d_in']} but encoder.weight is {[d_sae, d_in]}",
                        path=folder)
    sae_cfg = SAEConfig(d_in=int(d_in), d_sae=int(d_sae), arch="topk", k=int(cfg["k"]),
                        meta={"source": "sparsify"})
    return sae_cfg, {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"],
                     "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, None


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

