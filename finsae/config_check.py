"""Checks of settings and command-line options, before any work starts.

Each checker returns the value (normalised) or raises one `DataError` naming the setting, what
it must be, and what it got; `where` says where the setting came from (``--fees-bps``, or
``[sae] layer`` of a config file) and `path` the file, if any. Used by `finsae run --config`
(every setting of `finsae.pipeline.RunConfig`, see `check_run_config`) and the CLI verbs.
"""

from __future__ import annotations

import math
from pathlib import Path

from .data.errors import DataError


def _got(value) -> str:
    kind = {bool: "a boolean", str: "a string", int: "an integer", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def integer(value, where: str, *, minimum: int | None = None, maximum: int | None = None,
            path=None) -> int:
    """An int (not a bool, not a float) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where} must be an integer, got {_got(value)}", path=path)
    if minimum is not None and value < minimum:
        what = "positive" if minimum == 1 else f"at least {minimum}"
        raise DataError(f"{where} must be {what}, got {value}", path=path)
    if maximum is not None and value > maximum:
        raise DataError(f"{where} must be at most {maximum}, got {value}", path=path)
    return value


def number(value, where: str, *, minimum: float | None = None, maximum: float | None = None,
           strict_min: bool = False, path=None) -> float:
    """A finite int or float within the bounds (`strict_min`: value > minimum)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where} must be a number, got {_got(value)}", path=path)
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        rel = "greater than" if strict_min else "at least"
        raise DataError(f"{where} must be {rel} {minimum:g}, got {value:g}", path=path)
    if maximum is not None and value > maximum:
        raise DataError(f"{where} must be at most {maximum:g}, got {value:g}", path=path)
    return float(value)


def boolean(value, where: str, *, path=None) -> bool:
    if not isinstance(value, bool):
        raise DataError(f"{where} must be true or false, got {_got(value)}", path=path)
    return value


def text(value, where: str, *, path=None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where} must be a non-empty string, got {_got(value)}", path=path)
    return value


def choice(value, where: str, choices, *, path=None):
    if value not in tuple(choices):
        shown = ", ".join("(none)" if c is None else str(c) for c in choices)
        raise DataError(f"{where} must be one of {shown}; got {_got(value)}", path=path)
    return value


def date(value, where: str, *, path=None):
    """A date string (or date) -> pandas Timestamp."""
    import datetime as dt

    import pandas as pd
    if not isinstance(value, (str, dt.date)):
        raise DataError(f"{where} must be a date (YYYY-MM-DD), got {_got(value)}", path=path)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT or pd.isna(ts):
        raise DataError(f"{where} must be a date (YYYY-MM-DD), got {value!r}", path=path)
    return ts


def date_range(start, end, where_start: str, where_end: str, *, path=None):
    s = None if start is None else date(start, where_start, path=path)
    e = None if end is None else date(end, where_end, path=path)
    if s is not None and e is not None and s > e:
        raise DataError(f"{where_start} {s.date()} is after {where_end} {e.date()}", path=path)
    return s, e


def input_file(value, where: str, *, path=None, folder: bool = False) -> str:
    """An existing file (or folder, with folder=True)."""
    text(value, where, path=path)
    p = Path(value).expanduser()
    if not p.exists():
        raise DataError(f"{where}: {'folder' if folder else 'file'} not found: {p}", path=path)
    if folder and not p.is_dir():
        raise DataError(f"{where}: {p} is a file, not a folder", path=path)
    if not folder and p.is_dir():
        raise DataError(f"{where}: {p} is a folder, not a file", path=path)
    return value


def str_list(value, where: str, known=None, *, path=None) -> list[str]:
    """A non-empty list of strings (each in `known` when given, `known(name) -> bool`)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{where} must be a non-empty list of names, got {_got(value)}", path=path)
    for v in value:
        if not isinstance(v, str) or not v:
            raise DataError(f"{where} must be a list of names, got the item {_got(v)}", path=path)
        if known is not None and not known(v):
            raise DataError(f"{where}: unknown method {v!r}", path=path)
    dup = {v for v in value if list(value).count(v) > 1}
    if dup:
        raise DataError(f"{where}: {', '.join(sorted(dup))} listed twice", path=path)
    return list(value)


def year_pair(value, where: str, *, path=None) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise DataError(f"{where} must be [first, last] years, got {_got(value)}", path=path)
    a = integer(value[0], where, minimum=1900, maximum=2100, path=path)
    b = integer(value[1], where, minimum=1900, maximum=2100, path=path)
    if a > b:
        raise DataError(f"{where}: first year {a} is after last year {b}", path=path)
    return a, b


# ------------------------------------------------------------------------------ finsae run
def _evaluate_method_known(name: str) -> bool:
    """Known to the registry, or vectors every `finsae run` feature stage provides."""
    from .features.store import METHODS
    from .methods import is_known
    return is_known(name, METHODS)


def check_run_config(cfg, path=None):
    """Type and range of every setting of a `RunConfig`; returns cfg. Reads no model (the
    layer is checked against the model's depth by `check_layer_in_model`)."""
    from .data.companies import VINTAGES
    from .features.company import POOLINGS, WEIGHTINGS
    from .sae.config import ARCHS

    d, s, f, e, b = cfg.data, cfg.sae, cfg.features, cfg.evaluate, cfg.backtest
    if d.companies is not None:
        input_file(d.companies, "[data] companies", path=path)
    if d.prices is not None:
        input_file(d.prices, "[data] prices", path=path)
    choice(d.vintage, "[data] vintage", sorted(VINTAGES), path=path)
    if d.limit is not None:
        integer(d.limit, "[data] limit", minimum=2, path=path)

    text(s.model, "[sae] model", path=path)
    integer(s.layer, "[sae] layer", minimum=0, path=path)
    if not isinstance(s.extra_layers, list):
        raise DataError(f"[sae] extra_layers must be a list of blocks, got {s.extra_layers!r}",
                        path=path)
    for lx in s.extra_layers:
        integer(lx, "[sae] extra_layers", minimum=0, path=path)
    if s.layer in s.extra_layers or len(set(s.extra_layers)) != len(s.extra_layers):
        raise DataError("[sae] extra_layers must not repeat a block (nor [sae] layer)",
                        path=path)
    if s.extra_layers and s.path is not None:
        raise DataError("[sae] path gives one SAE for one block: it cannot be combined with "
                        "[sae] extra_layers (each extra block trains its own SAE)", path=path)
    integer(s.max_tokens, "[sae] max_tokens", minimum=1, path=path)
    choice(s.arch, "[sae] arch", ARCHS, path=path)
    integer(s.d_sae, "[sae] d_sae", minimum=1, path=path)
    integer(s.k, "[sae] k", minimum=1, maximum=s.d_sae, path=path)
    choice(s.train_text, "[sae] train_text", ("descriptions", "corpus", "both"), path=path)
    integer(s.train_tokens, "[sae] train_tokens", minimum=1, path=path)
    integer(s.batch_size, "[sae] batch_size", minimum=1, path=path)
    integer(s.seed, "[sae] seed", minimum=0, path=path)
    if s.path is not None:
        input_file(s.path, "[sae] path", folder=True, path=path)

    choice(f.pooling, "[features] pooling", POOLINGS, path=path)
    boolean(f.content_only, "[features] content_only", path=path)
    choice(f.weighting, "[features] weighting", WEIGHTINGS, path=path)
    if f.max_df is not None:
        number(f.max_df, "[features] max_df", minimum=0, maximum=1, strict_min=True, path=path)
    boolean(f.sublinear, "[features] sublinear", path=path)
    if f.tf is not None:
        choice(f.tf, "[features] tf", ("sublinear", "binary", "bm25"), path=path)
    if f.top_n is not None:
        integer(f.top_n, "[features] top_n", minimum=1, path=path)

    e.check(lambda name: f"[evaluate] {name}", path)
    str_list(e.methods, "[evaluate] methods", _evaluate_method_known, path=path)
    b.check(lambda name: f"[backtest] {name}", path)
    return cfg


def check_layer_in_model(model: str, layer: int, where: str = "[sae] layer", *, path=None):
    """`layer` within the model's blocks, from its config alone (no weights are loaded)."""
    from .lm.load import model_depth
    n = model_depth(model)
    if n is not None and not 0 <= layer < n:
        raise DataError(f"{where} = {layer} is out of range: {model} has {n} blocks "
                        f"(0..{n - 1})", path=path)


def check_run_inputs(cfg, prices) -> None:
    """The prices cover the evaluated years and one backtest window, else one error naming
    the price file and its date range (before any stage runs)."""
    from .methods.context import check_price_years
    from .pairs.settings import check_history
    source = str(prices.attrs.get("source", cfg.data.prices))
    y0, y1 = cfg.evaluate.years
    check_price_years(prices, range(y0, y1 + 1), source)
    check_history(prices, cfg.backtest.to_config(), source)
