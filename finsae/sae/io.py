"""SAE folders: save in the finsae layout; load finsae, SAELens and EleutherAI sparsify folders.

finsae:   cfg.json (``"format": "finsae"`` + SAEConfig fields) and sae.safetensors with
          W_enc [d_sae, d_in], b_enc, W_dec [d_sae, d_in], b_dec, optional threshold.
SAELens:  cfg.json and sae_weights.safetensors with W_enc [d_in, d_sae], W_dec [d_sae, d_in],
          b_enc, b_dec, optional threshold (JumpReLU).
sparsify: cfg.json and sae.safetensors with encoder.weight [d_sae, d_in], encoder.bias,
          W_dec [d_sae, d_in], b_dec.
Gemma Scope: params.npz with W_enc [d_in, d_sae], W_dec, b_enc, b_dec, threshold (JumpReLU,
          no b_dec subtracted from the input), as in google/gemma-scope-*.
Whole releases (a folder of SAEs, one per hookpoint) are searched by `find_sae`.
Activation scaling is folded into the weights before saving, so a saved SAE acts on raw
activations.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..data.errors import DataError
from .architectures import SparseAutoencoder, build_sae
from .config import SAEConfig

CFG, FINSAE_WEIGHTS, SAELENS_WEIGHTS = "cfg.json", "sae.safetensors", "sae_weights.safetensors"
GEMMASCOPE_PARAMS = "params.npz"


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
    if folder.is_file() and folder.suffix == ".npz":
        return "gemmascope"
    if not folder.is_dir():
        raise DataError("no such SAE folder", path=folder)
    if (folder / GEMMASCOPE_PARAMS).exists() and not (folder / CFG).exists():
        return "gemmascope"
    if (folder / CFG).exists() and (folder / SAELENS_WEIGHTS).exists():
        return "saelens"
    if (folder / CFG).exists() and (folder / FINSAE_WEIGHTS).exists():
        cfg = _read_cfg(folder)
        return "finsae" if cfg.get("format") == "finsae" else "sparsify"
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / CFG).exists())
    hint = f"; SAE folders inside it: {', '.join(subs)}" if subs else ""
    raise DataError(f"not an SAE folder: expected {CFG} with {FINSAE_WEIGHTS} (finsae or "
                    f"sparsify), {SAELENS_WEIGHTS} (SAELens) or {GEMMASCOPE_PARAMS} (Gemma "
                    f"Scope){hint}", path=folder)


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
    """Load an SAE from a finsae, SAELens, sparsify or Gemma Scope folder (layout
    auto-detected; a Gemma Scope params.npz file may be given directly). For a whole release
    folder, pick one SAE with `find_sae` first."""
    folder = Path(folder)
    layout = layout or detect_layout(folder)
    if layout == "gemmascope":
        npz = folder if folder.is_file() else folder / GEMMASCOPE_PARAMS
        sae_cfg, state, threshold = _from_gemmascope(npz)
        sae = build_sae(sae_cfg)
        _fill(sae, state, threshold, npz)
        return sae.eval()
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
    # SAELens >= 6 keeps model and hook under "metadata"
    info = {**(cfg.get("metadata") or {}), **cfg}
    sae_cfg = SAEConfig(d_in=int(cfg.get("d_in", d_in)), d_sae=int(cfg.get("d_sae", d_sae)),
                        arch=arch, k=int(k),
                        meta={"source": "saelens", **{m: info[m] for m in
                              ("model_name", "hook_name", "hook_layer") if m in info}})
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
    if cfg.get("signed"):
        raise DataError("signed sparsify SAEs are not supported", path=folder)
    sae_cfg = SAEConfig(d_in=int(d_in), d_sae=int(d_sae), arch="topk", k=int(cfg["k"]),
                        meta={"source": "sparsify", "hookpoint": folder.name})
    return sae_cfg, {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"],
                     "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, None


def _from_gemmascope(npz: Path):
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


# --- releases: a folder of SAEs, one per hookpoint ----------------------------------------------

_RESID_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def sae_block(path: str | Path) -> int | None:
    """The decoder block whose output (residual stream) the SAE at `path` reads, from its
    metadata or folder name; None if it records none. DataError for an SAE of another
    activation (MLP or attention output, embeddings).

    sparsify ``layers.N``: output of block N; the first EleutherAI releases' ``layer_N``
    (`hidden_states[N]`, the input of block N): block N - 1; Gemma Scope ``layer_N/...``:
    block N; SAELens ``blocks.N.hook_resid_post``: N, ``hook_resid_pre``: N - 1; finsae: the
    recorded ``layer``."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "gemmascope":
        folder = path.parent if path.is_file() else path
        for part in [folder.name] + [p.name for p in folder.parents][:3]:
            m = re.fullmatch(r"layer_(\d+)", part)
            if m:
                return int(m.group(1))
        return None
    cfg = _read_cfg(path)
    if layout == "finsae":
        layer = (cfg.get("meta") or {}).get("layer", cfg.get("layer"))
        return None if layer is None else int(layer)
    if layout == "sparsify":
        return _hookpoint_block(path.name, path)
    info = {**(cfg.get("metadata") or {}), **cfg}
    hook = info.get("hook_name")
    if hook is None:
        return None if info.get("hook_layer") is None else int(info["hook_layer"])
    m = _RESID_HOOK.match(str(hook)) or re.fullmatch(r"(?:model\.)?layers\.(\d+)()",
                                                     str(hook))
    if not m:
        raise DataError(f"this SAE reads {hook!r}; finsae features read the residual stream "
                        "(blocks.N.hook_resid_post)", path=path)
    return int(m.group(1)) - (m.group(2) == "pre")


def _hookpoint_block(name: str, path: Path | None = None) -> int | None:
    """Block of a sparsify hookpoint folder name (see `sae_block`); None for other names."""
    m = re.fullmatch(r"(?:model\.)?layers\.(\d+)", name)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"layer_(\d+)", name)
    if m:
        if int(m.group(1)) == 0:
            raise DataError("layer_0 holds an SAE of the token embeddings, not of a block's "
                            "output", path=path)
        return int(m.group(1)) - 1
    if re.fullmatch(r"(?:model\.)?layers\.\d+\..+|embed_tokens", name):
        raise DataError(f"hookpoint {name!r} is not the residual stream after a block; finsae "
                        "features read layers.N (a block's output)", path=path)
    return None


def _release_saes(root: Path) -> list[tuple[str, Path, int | None | str]]:
    """(name relative to root, SAE path, block or the reason it is unusable) of every SAE up to
    three folders below root."""
    found = []

    def visit(folder: Path, depth: int):
        try:
            layout = detect_layout(folder)
        except DataError:
            layout = None
        if layout is not None:
            rel = folder.relative_to(root).as_posix()
            try:
                found.append((rel, folder, sae_block(folder)))
            except DataError as e:
                found.append((rel, folder, e.args[0] if e.args else str(e)))
            return
        if depth < 3:
            for sub in _subfolders(folder):
                visit(sub, depth + 1)

    for sub in _subfolders(root):
        visit(sub, 1)
    return sorted(found, key=lambda t: _natural(t[0]))


def _subfolders(folder: Path) -> list[Path]:
    # not hidden ones (`huggingface-cli download --local-dir` leaves a .cache folder)
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_sae(path: str | Path, layer: int | None = None) -> tuple[Path, int | None]:
    """(the SAE to load, the block it reads) for `path`: one SAE folder (finsae, SAELens,
    sparsify, Gemma Scope) or params.npz, or a whole release folder on disk (an
    EleutherAI/sparsify release with one ``layers.N`` folder per hookpoint, a Gemma Scope
    repository with ``layer_N/width_*/average_l0_*/params.npz``, or folders of SAELens SAEs),
    in which the SAE for block `layer` is picked. Without `layer`, a release must hold one
    usable SAE. DataError naming what is there when the choice is missing or ambiguous."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("SAE folder not found", path=path)
    try:
        detect_layout(path)
        single = True
    except DataError:
        if path.is_file():
            raise
        single = False
    if single:
        block = sae_block(path)
        if layer is not None and block is not None and block != layer:
            raise DataError(f"this SAE reads the residual stream after block {block}, not "
                            f"block {layer}: pass --layer {block} or an SAE for block {layer}",
                            path=path)
        return path, block
    saes = _release_saes(path)
    if not saes:
        detect_layout(path)  # raises, naming what the folder holds
    usable = [(n, p, b) for n, p, b in saes if isinstance(b, int)]
    if len(saes) == 1 and isinstance(saes[0][2], str):
        raise DataError(saes[0][2], path=saes[0][1])
    if layer is None:
        if len(saes) == 1:
            return saes[0][1], saes[0][2]
        raise DataError(f"{len(saes)} SAEs in this release ({_summary(saes)}); choose one "
                        "with --layer N or point --sae at its folder", path=path)
    hits = [(n, p, b) for n, p, b in usable if b == layer]
    if not hits:
        unknown = [p for _, p, b in saes if b is None]
        if len(unknown) == 1 and not usable:   # a lone SAE with no recorded block
            return unknown[0], None
        raise DataError(f"no SAE for block {layer} (the residual stream after it) in this "
                        f"release; it holds {_summary(saes)}", path=path)
    if len(hits) > 1:
        raise DataError(f"{len(hits)} SAEs read block {layer}; point --sae at one of: "
                        + ", ".join(n for n, _, _ in hits), path=path)
    return hits[0][1], layer


def _summary(saes, most: int = 40) -> str:
    """'layers.0 (block 0), ...' for an error message; Gemma Scope style sets per block."""
    blocks: dict = {}
    for n, _, b in saes:
        head = n.split("/")[0] if "/" in n else n
        blocks.setdefault((head, b if isinstance(b, int) or b is None else "not usable"),
                          []).append(n)
    parts = []
    for (head, b), names in blocks.items():
        what = (f"block {b}" if isinstance(b, int) else "block unknown" if b is None else b)
        parts.append(f"{head} ({what}{'' if len(names) == 1 else f', {len(names)} SAEs'})")
    more = f", ... ({len(parts) - most} more)" if len(parts) > most else ""
    return ", ".join(parts[:most]) + more


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

