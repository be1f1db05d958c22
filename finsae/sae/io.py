"""SAE folders: save in the finsae layout; load finsae, SAELens and EleutherAI sparsify folders.

finsae:   cfg.json (``"format": "finsae"`` + SAEConfig fields) and finsae.safetensors with
          W_enc [d_sae, d_in], b_enc, W_dec [d_sae, d_in], b_dec, optional threshold. The
          weights file has a name of its own so that no library mistakes the folder for one of
          its own (SAELens wants sae_weights.safetensors, sparsify sae.safetensors); folders
          written by earlier finsae versions (sae.safetensors + "format": "finsae") still load.
          `save_saelens` / `save_sparsify` write what those libraries load.
SAELens:  cfg.json and sae_weights.safetensors with W_enc [d_in, d_sae], W_dec [d_sae, d_in],
          b_enc, b_dec, optional threshold (JumpReLU); see `finsae.sae.saelens`.
sparsify: cfg.json and sae.safetensors with encoder.weight [d_sae, d_in], encoder.bias,
          W_dec [d_sae, d_in], b_dec (TopK; transcoders, skip connections and groupmax are
          refused).
Gemma Scope: params.npz with W_enc [d_in, d_sae], W_dec, b_enc, b_dec, threshold (JumpReLU,
          no b_dec subtracted from the input), as in google/gemma-scope-*.
Whole releases (a folder of SAEs, one per hookpoint) are searched by `find_sae`.
Activation scaling is folded into the weights before saving, so a saved SAE acts on raw
activations.

Layout detection and file names live in `finsae.sae.layouts`, the SAELens / sparsify / Gemma
Scope readers and writers in `finsae.sae.convert`, `find_sae` and `sae_block` in
`finsae.sae.release` (all re-exported here).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder, build_sae
from .config import SAEConfig
from .convert import (read_gemmascope, read_saelens, read_sparsify, save_gemmascope, save_saelens,
                      save_sparsify)
from .layouts import (CFG, FINSAE_WEIGHTS, GEMMASCOPE_PARAMS, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS,
                      detect_layout, finsae_weights, read_cfg, read_weights)
from .release import find_sae, sae_block

__all__ = ["CFG", "FINSAE_WEIGHTS", "GEMMASCOPE_PARAMS", "SAELENS_WEIGHTS", "SPARSIFY_WEIGHTS",
           "detect_layout",
           "find_sae", "load_sae", "sae_block", "save_gemmascope", "save_sae", "save_saelens",
           "save_sparsify"]


def save_sae(sae: SparseAutoencoder, folder: str | Path, *, extra: dict | None = None) -> Path:
    """Write cfg.json + finsae.safetensors (finsae layout). Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: getattr(sae, n).detach().contiguous().clone()
               for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if hasattr(sae, "threshold"):
        tensors["threshold"] = sae.threshold.detach().contiguous().clone()
    save_file(tensors, str(folder / FINSAE_WEIGHTS))
    legacy = folder / SPARSIFY_WEIGHTS   # an earlier finsae save of this folder: stale weights
    if legacy.exists() and (folder / CFG).exists() and read_cfg(folder).get("format") == "finsae":
        legacy.unlink()
    cfg = {"format": "finsae", **sae.cfg.to_dict(), **(extra or {})}
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder


def load_sae(folder: str | Path, *, layout: str | None = None) -> SparseAutoencoder:
    """Load an SAE from a finsae, SAELens, sparsify or Gemma Scope folder (layout
    auto-detected; a Gemma Scope params.npz file may be given directly). For a whole release
    folder, pick one SAE with `find_sae` first."""
    folder = Path(folder)
    layout = layout or detect_layout(folder)
    if layout == "gemmascope":
        npz = folder if folder.is_file() else folder / GEMMASCOPE_PARAMS
        sae_cfg, state, threshold = read_gemmascope(npz)
        sae = build_sae(sae_cfg)
        _fill(sae, state, threshold, npz)
        return sae.eval()
    cfg = read_cfg(folder)
    if layout == "finsae":
        w = read_weights(finsae_weights(folder), ("W_enc", "b_enc", "W_dec", "b_dec"))
        sae_cfg = SAEConfig.from_dict(cfg)
        state = {n: w[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        threshold = w.get("threshold")
    elif layout == "saelens":
        sae_cfg, state, threshold = read_saelens(folder, cfg)
    elif layout == "sparsify":
        sae_cfg, state, threshold = read_sparsify(folder, cfg)
    else:
        raise DataError(f"unknown layout {layout!r}; known: finsae, saelens, sparsify, "
                        "gemmascope")
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
            if bool(threshold.isnan().any()):
                raise DataError("JumpReLU thresholds must not be NaN", path=folder)
            # z = ReLU(pre) * (pre > t): a threshold below 0 acts as 0 (log 0 = -inf is exact)
            sae.log_threshold.copy_(threshold.float().clamp_min(0).log())
        elif "threshold" in sae._buffers and threshold is not None:
            sae.threshold.copy_(threshold)
