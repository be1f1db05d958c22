"""SAELens folders (cfg.json + sae_weights.safetensors): reading them as finsae SAEs exactly or
refusing, and writing finsae SAEs so that SAELens 6 (``SAE.load_from_disk``) loads them with
the same encodings.

SAELens' pass: ``pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc`` with W_enc
[d_in, d_sae]; TopK with ``rescale_acts_by_decoder_norm`` multiplies pre by ||W_dec[j]|| and
divides the latents by it again before decoding, which is folded here into W_enc, b_enc and
W_dec (exact: the same latents, the same reconstruction). BatchTopK and Matryoshka BatchTopK
are training architectures that SAELens saves for inference as JumpReLU with the running
threshold; finsae writes them the same way and records the training architecture under
``metadata``, from which they are read back as the finsae architecture they were.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder
from .config import SAEConfig
from .layouts import CFG, SAELENS_WEIGHTS, read_weights

#: the SAELens 6 config format finsae writes (a version >= 6 there selects the v6 reader)
SAELENS_FORMAT = "6.0.0"
_BATCHTOPK = ("batchtopk", "matryoshka_batchtopk")
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def _refuse(what: str, folder: Path):
    raise DataError(f"SAELens {what} cannot be loaded exactly by finsae; supported: standard "
                    "(ReLU), topk (also with rescale_acts_by_decoder_norm), jumprelu, and the "
                    "batchtopk / matryoshka_batchtopk training configs", path=folder)


def read_saelens(folder: Path, cfg: dict):
    """(SAEConfig, finsae weights, threshold or None) of a SAELens folder; DataError for an
    option finsae cannot reproduce exactly."""
    meta = dict(cfg.get("metadata") or {})
    info = {**meta, **cfg}
    if info.get("hook_name") is None and cfg.get("hook_point") is not None:
        info["hook_name"] = cfg["hook_point"]      # SAELens < 6 spelling
    arch = str(cfg.get("architecture", "standard")).lower()
    act = str(cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))).lower()
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if act == "topk" and arch == "standard":
        arch = "topk"     # SAELens < 6 kept TopK as standard + activation_fn topk
    if arch not in ("standard", "topk", "jumprelu") + _BATCHTOPK:
        _refuse(f"architecture {arch!r}", folder)
    if arch == "standard" and act != "relu":
        _refuse(f"activation_fn {act!r}", folder)
    w = read_weights(folder / SAELENS_WEIGHTS, ("W_enc", "b_enc", "W_dec", "b_dec"))
    norm = cfg.get("normalize_activations", "none")
    if norm not in (None, "none", False):
        raise DataError(f"normalize_activations={norm!r} is applied outside the weights; "
                        f"only SAEs with 'none' can be loaded exactly", path=folder)
    if cfg.get("reshape_activations", "none") not in ("none", None):
        _refuse(f"reshape_activations={cfg['reshape_activations']!r}", folder)
    sf = w.get("scaling_factor", w.get("finetuning_scaling_factor"))
    if sf is not None and not torch.allclose(sf, torch.ones_like(sf)):
        _refuse("finetuning scaling_factor", folder)
    extra = set(w) - {"W_enc", "b_enc", "W_dec", "b_dec", "threshold", "topk_threshold",
                      "scaling_factor", "finetuning_scaling_factor"}
    if extra:
        _refuse(f"weights {sorted(extra)}", folder)
    W_enc, b_enc = w["W_enc"].float().T.contiguous(), w["b_enc"].float()
    W_dec, b_dec = w["W_dec"].float(), w["b_dec"].float()
    d_sae, d_in = W_dec.shape
    if not cfg.get("apply_b_dec_to_input", True):
        # pre = x W + b_enc = (x - b_dec) W + (b_enc + b_dec W)
        b_enc = b_enc + W_enc @ b_dec
    threshold = w.get("threshold")
    if arch in _BATCHTOPK:       # a training checkpoint: its inference form uses topk_threshold
        if "topk_threshold" not in w:
            raise DataError(f"SAELens {arch} weights without topk_threshold", path=folder)
        threshold = w["topk_threshold"].double().expand(d_sae).clone()
    if arch in ("topk",) + _BATCHTOPK and cfg.get("rescale_acts_by_decoder_norm", False):
        # pre * n and z / n before decoding: the same as W_enc * n, b_enc * n, W_dec / n
        n = W_dec.norm(dim=1).clamp_min(1e-8)
        W_enc, b_enc, W_dec = W_enc * n[:, None], b_enc * n, W_dec / n[:, None]
    k, widths = 1, []
    details = meta.get("training_architecture_details") or {}
    if arch == "jumprelu" and meta.get("training_architecture") in _BATCHTOPK \
            and "k" in details and threshold is not None and bool((threshold >= 0).all()):
        # how SAELens (and finsae) save a BatchTopK SAE: back to the finsae architecture
        arch = meta["training_architecture"]
        widths = details.get("matryoshka_widths") or []
        k = details["k"]
    elif arch in ("topk",) + _BATCHTOPK:
        k = cfg.get("k", kwargs.get("k"))
        widths = cfg.get("matryoshka_widths") or []
        if k is None:
            raise DataError("TopK SAE cfg.json without k", path=folder)
    if arch == "standard":
        arch = "relu"
    if arch != "topk" and int(k) != k:
        k = round(k) or 1           # SAELens' BatchTopK k is a float; finsae keeps an int
    src = {"source": "saelens", **{m: info[m] for m in ("model_name", "hook_name", "hook_layer")
                                   if info.get(m) is not None}}
    m = _RESID.match(str(info.get("hook_name", "")))
    if m:
        src["layer"] = int(m.group(1)) - (m.group(2) == "pre")
    if meta.get("training_architecture"):
        src["saelens_training_architecture"] = meta["training_architecture"]
    sae_cfg = SAEConfig(d_in=int(cfg.get("d_in", d_in)), d_sae=int(cfg.get("d_sae", d_sae)),
                        arch=arch, k=int(k), matryoshka_widths=widths, meta=src)
    return sae_cfg, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, \
        None if threshold is None else threshold.float()


def save_saelens(sae: SparseAutoencoder, folder: str | Path, *, model_name: str | None = None,
                 hook_name: str | None = None) -> Path:
    """Write the SAELens 6 layout, which ``sae_lens.SAE.load_from_disk`` loads with the same
    encodings: ReLU as ``standard``, TopK as ``topk``, JumpReLU as ``jumprelu``, BatchTopK and
    Matryoshka BatchTopK as SAELens saves them for inference (``jumprelu`` with their threshold).
    ``metadata`` gets model_name and hook_name (default: the SAE's meta, hook
    ``blocks.{layer}.hook_resid_post`` from its layer)."""
    arch = sae.cfg.arch
    meta = sae.cfg.meta or {}
    folder = Path(folder)
    t = {"W_enc": sae.W_enc.detach().T.contiguous(), "W_dec": sae.W_dec.detach().contiguous(),
         "b_enc": sae.b_enc.detach().clone(), "b_dec": sae.b_dec.detach().clone()}
    md = {"sae_lens_version": SAELENS_FORMAT, "written_by": "finsae"}
    model_name = model_name or meta.get("model_name") or meta.get("model")
    layer = meta.get("layer")
    hook_name = hook_name or meta.get("hook_name") or (
        None if layer is None else f"blocks.{int(layer)}.hook_resid_post")
    if model_name is not None:
        md["model_name"] = str(model_name)
    if hook_name is not None:
        md["hook_name"] = str(hook_name)
    cfg = {"architecture": {"relu": "standard"}.get(arch, arch), "d_in": sae.d_in,
           "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none"}
    if arch == "topk":
        cfg.update(k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
    if arch in ("jumprelu",) + _BATCHTOPK:
        threshold = sae.threshold.detach().float().contiguous().clone()
        if arch in _BATCHTOPK:
            if bool((threshold < 0).any()):
                raise DataError(f"this {arch} SAE has no inference threshold yet (it is set "
                                "while training), so it has no JumpReLU form for SAELens")
            cfg["architecture"] = "jumprelu"
            details = {"k": sae.cfg.k}
            if arch == "matryoshka_batchtopk":
                details["matryoshka_widths"] = list(sae.cfg.matryoshka_widths)
            md.update(training_architecture=arch, training_architecture_details=details)
        t["threshold"] = threshold
    cfg["metadata"] = md
    folder.mkdir(parents=True, exist_ok=True)
    save_file(t, str(folder / SAELENS_WEIGHTS))
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder
