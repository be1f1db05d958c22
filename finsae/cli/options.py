"""Command-line flags built from config dataclasses, as sparsify builds its CLI: one flag per
field, its type and default from the field, its help from the ``#:`` comment above the field.
So each default is written once, in the dataclass, and ``--help`` shows it.

    add_dataclass_flags(parser, EvaluateConfig)
    cfg = dataclass_from_args(EvaluateConfig, args)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing

NONE = "none"


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """field name -> the ``#:`` comment lines just above it in the class body (one string)."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    src = textwrap.dedent("".join(lines))
    tree = ast.parse(src)
    body = src.splitlines()
    out = {}
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc, i = [], node.lineno - 2
            while i >= 0 and body[i].strip().startswith("#:"):
                doc.insert(0, body[i].strip()[2:].strip())
                i -= 1
            out[node.target.id] = " ".join(doc)
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            out = {**field_docs(base), **out}
    return out


def _unwrap(tp):
    """(inner type, optional?) of `tp` (``X | None`` -> X, True)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _scalar(kind, flag: str):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} expects {'an integer' if kind is int else 'a number'}, got {text!r}")
    return parse


def _years(text: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    try:
        lo, hi = int(a), int(b or a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"years must look like 2001-2020, not {text!r}")
    if hi < lo:
        raise argparse.ArgumentTypeError(f"empty year range {text!r}")
    return lo, hi


def _pair(kind):
    def parse(text: str):
        try:
            lo, hi = (kind(t) for t in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from None
        return lo, hi
    return parse


def _optional(parse):
    return lambda text: None if text.lower() == NONE else parse(text)


def _show(value) -> str:
    if value is None:
        return NONE
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def add_dataclass_flags(parser, cls, *, skip=(), flags: dict | None = None,
                        prefix: str = "") -> None:
    """One flag per field of dataclass `cls` (except `skip`): ``--field-name``. bool fields
    become ``--name`` / ``--no-name``; lists take comma- or space-separated names; year pairs
    ``2001-2020``; other pairs ``LO,HI``; optional fields also take ``none``.
    flags: field -> extra flag strings (old spellings kept working)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default: skip it or give a flag")
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        names = [flag, *(flags or {}).get(f.name, ())]
        tp, optional = _unwrap(hints[f.name])
        help_ = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        kw = dict(dest=f"{prefix.replace('-', '_')}{f.name}", default=default)
        origin = typing.get_origin(tp)
        if tp is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction,
                                help=f"{help_} (default: {'yes' if default else 'no'})", **kw)
            continue
        if origin is list:
            kw.update(nargs="+", metavar=f.name.upper(), type=str)
        elif origin is tuple:
            inner = typing.get_args(tp)[0]
            parse = _years if "year" in f.name else _pair(inner)
            kw.update(type=_optional(parse) if optional else parse,
                      metavar="FIRST-LAST" if "year" in f.name else "LO,HI")
        elif tp in (int, float):
            parse = _scalar(tp, flag)
            kw.update(type=_optional(parse) if optional else parse,
                      metavar="N" if tp is int else "X")
        else:
            kw.update(type=_optional(str) if optional else str, metavar=f.name.upper())
        parser.add_argument(*names, help=f"{help_} (default: {_show(default)})", **kw)


def dataclass_from_args(cls, args, *, prefix: str = "", skip=(), **overrides):
    """An instance of `cls` from the parsed flags of `add_dataclass_flags` (lists split on
    commas as well as spaces); `overrides` set fields directly."""
    kw = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix.replace('-', '_')}{f.name}"
        if f.name in skip or not hasattr(args, dest):
            continue
        v = getattr(args, dest)
        if isinstance(v, list):
            v = [t.strip() for item in v for t in str(item).split(",") if t.strip()]
        kw[f.name] = v
    kw.update(overrides)
    return cls(**kw)


def flag_name(name: str) -> str:
    """A setting's flag (for error messages): ``fit_years`` -> ``--fit-years``."""
    return f"--{name.replace('_', '-')}"
