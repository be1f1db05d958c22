"""Plain JSON from results: the one converter every JSON file of finsae goes through.

numpy scalars and arrays become numbers and lists, non-finite floats ``null`` (JSON has no
NaN), tuples lists, dict keys strings, dates ISO strings; anything else its ``str``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def jsonable(x):
    """`x` as plain JSON values (see the module docstring)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return str(x)


def dumps(obj, *, indent: int | None = 1, sort_keys: bool = False) -> str:
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, obj, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    path = Path(path)
    path.write_text(dumps(obj, indent=indent, sort_keys=sort_keys))
    return path
