"""SAE folder layouts: their file names, which one a folder holds, reading cfg.json and weights."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from ..data.errors import DataError

CFG, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS = "cfg.json", "sae_weights.safetensors", "sae.safetensors"
#: finsae's own weights file: a name of its own, so that neither SAELens nor sparsify takes a
#: finsae folder for one of theirs (folders written before used sparsify's sae.safetensors with
#: ``"format": "finsae"`` in cfg.json; they still load)
FINSAE_WEIGHTS = "finsae.safetensors"
GEMMASCOPE_PARAMS = "params.npz"


def detect_layout(folder: str | Path) -> str:
    """'finsae', 'saelens' or 'sparsify'; DataError naming what a SAE folder holds if none."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".npz":
        return "gemmascope"
    if not folder.is_dir():
        raise DataError("no such SAE folder", path=folder)
    if (folder / GEMMASCOPE_PARAMS).exists() and not (folder / CFG).exists():
        return "gemmascope"
    if (folder / CFG).exists() and (folder / FINSAE_WEIGHTS).exists():
        return "finsae"
    if (folder / CFG).exists() and (folder / SAELENS_WEIGHTS).exists():
        return "saelens"
    if (folder / CFG).exists() and (folder / SPARSIFY_WEIGHTS).exists():
        cfg = read_cfg(folder)
        return "finsae" if cfg.get("format") == "finsae" else "sparsify"
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / CFG).exists())
    hint = f"; SAE folders inside it: {', '.join(subs)}" if subs else ""
    raise DataError(f"not an SAE folder: expected {CFG} with {FINSAE_WEIGHTS} (finsae), "
                    f"{SAELENS_WEIGHTS} (SAELens), {SPARSIFY_WEIGHTS} (sparsify) or "
                    f"{GEMMASCOPE_PARAMS} (Gemma Scope){hint}", path=folder)


def finsae_weights(folder: Path) -> Path:
    """The weights file of a finsae folder (the legacy sae.safetensors name if that is all)."""
    own = folder / FINSAE_WEIGHTS
    return own if own.exists() else folder / SPARSIFY_WEIGHTS


def read_cfg(folder: Path) -> dict:
    """cfg.json of `folder`; DataError when it is not valid JSON."""
    try:
        return json.loads((folder / CFG).read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{CFG} is not valid JSON ({e})", path=folder) from None


def read_weights(path: Path, needed: tuple[str, ...]) -> dict:
    """The tensors of a safetensors file; DataError naming the `needed` ones missing."""
    w = load_file(str(path))
    missing = [n for n in needed if n not in w]
    if missing:
        raise DataError(f"missing tensors {missing}; found {sorted(w)}", path=path)
    return w
