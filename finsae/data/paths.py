"""Where the bundled data and the on-disk caches live."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The bundled data folder: $FINSAE_DATA, else the project's `data/`."""
    d = Path(os.environ.get("FINSAE_DATA", PROJECT_ROOT / "data"))
    if not (d / "companies.csv").exists():
        raise FileNotFoundError(
            f"bundled data not found in {d} (set FINSAE_DATA to the folder holding companies.csv)")
    return d


def cache_dir(*parts: str) -> Path:
    """A cache folder: $FINSAE_CACHE, else ~/.cache/finsae; created on first use."""
    root = Path(os.environ.get("FINSAE_CACHE", Path.home() / ".cache" / "finsae"))
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
