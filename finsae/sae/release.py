"""Finding an SAE in a release folder: the block an SAE reads (sae_block) and find_sae."""

from __future__ import annotations

import re
from pathlib import Path

from ..data.errors import DataError
from .layouts import detect_layout, read_cfg

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
    cfg = read_cfg(path)
    if layout == "finsae":
        layer = (cfg.get("meta") or {}).get("layer", cfg.get("layer"))
        return None if layer is None else int(layer)
    if layout == "sparsify":
        return _hookpoint_block(path.name, path)
    info = {**(cfg.get("metadata") or {}), **cfg}
    hook = info.get("hook_name", info.get("hook_point"))  # hook_point: SAELens < 6
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
