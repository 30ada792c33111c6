"""The registry's YAML subset, written and read as text: no PyYAML import on this path.

:mod:`model_filer.registry_text` builds and reads the canonical registry with these; PyYAML
(:mod:`model_filer.yamlio`) is imported only for what falls outside the subset.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# -- The canonical form, written and read without building YAML objects ----------------------
#
# A registry holds thousands of entries of a few plain fields each; running PyYAML's
# representer and constructor over all of them on every dump is what costs. The functions
# below write exactly the text :func:`dump` writes (block style, two-space indent, keys in the
# given order) for the values a registry holds, and return ``None`` for anything else so the
# caller takes :func:`dump` instead. tests/test_registry_text.py checks the equality against
# :func:`dump` over many generated registries.

# Characters that never make PyYAML's emitter leave plain or single-quoted style: no
# indicator, no space, no quote, no ':' at the end (': ' cannot occur without a space).
_PLAIN_RE = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_.+/=:-]*(?<!:)")
_X = re.X
# YAML 1.1's implicit types exactly as PyYAML's Resolver declares them (yaml/resolver.py):
# (tag, pattern, first characters). A plain scalar that one matches is read as that type,
# so it must be quoted. Kept here so reading a registry imports no PyYAML (~20 ms of every
# hook run); tests/test_registry_text.py checks it against PyYAML's own table.
IMPLICIT: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "tag:yaml.org,2002:bool",
        re.compile(
            r"""^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$""",
            _X,
        ),
        "yYnNtTfFoO",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
            _X,
        ),
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:int",
        re.compile(
            r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""",
            _X,
        ),
        "-+0123456789",
    ),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), "<"),
    (
        "tag:yaml.org,2002:null",
        re.compile(
            r"""^(?: ~
                    |null|Null|NULL
                    | )$""",
            _X,
        ),
        "~nN",  # (and the empty string, which never reaches scalar())
    ),
    (
        "tag:yaml.org,2002:timestamp",
        re.compile(
            r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
            _X,
        ),
        "0123456789",
    ),
    ("tag:yaml.org,2002:value", re.compile(r"^(?:=)$"), "="),
    ("tag:yaml.org,2002:yaml", re.compile(r"^(?:!|&|\*)$"), "!&*"),
)
_BY_FIRST: dict[str, list[re.Pattern[str]]] = {}
for _tag, _pattern, _firsts in IMPLICIT:
    for _first in _firsts:
        _BY_FIRST.setdefault(_first, []).append(_pattern)
# First characters of the values some implicit tag may claim: any other is a plain string.
RESOLVED_FIRST = frozenset(_BY_FIRST)
_INT_RE = re.compile(r"0|[1-9][0-9]*")
MAX_PLAIN = 1000  # longer strings take the library's path (no line wrapping questions)
MAX_KEY = 100  # PyYAML writes keys of 128+ characters as complex keys ('? ')


@functools.lru_cache(maxsize=4096)
def scalar(value: str) -> str | None:
    """``value`` as :func:`dump` writes it (plain or single-quoted), or ``None`` if unsure."""
    if len(value) > MAX_PLAIN or not _PLAIN_RE.fullmatch(value):
        return None
    # Plain only when a reader would not take it for a number, a date, a bool...
    if any(p.match(value) for p in _BY_FIRST.get(value[0], ())):
        return f"'{value}'"
    return value


def _value(value: Any) -> str | None:
    if type(value) is str:
        return scalar(value)
    if type(value) is int:
        return str(value)
    return None


def block(key: str, fields: dict[str, Any], indent: int = 2) -> str | None:
    """One mapping entry ``key: {fields}`` at ``indent``, as :func:`dump` writes it inside a
    block mapping at that indentation; ``None`` when a value is not of the plain kinds."""
    head = scalar(key) if len(key) <= MAX_KEY else None
    if head is None or not fields:
        return None
    pad, inner = " " * (indent + 2), " " * (indent + 4)
    out = [f"{' ' * indent}{head}:\n"]
    for field, value in fields.items():
        name = scalar(field)
        if name is None or len(field) > MAX_KEY:
            return None
        kind = type(value)
        if kind is dict and value:
            out.append(f"{pad}{name}:\n")
            for sub, item in value.items():
                sub_text = scalar(sub) if type(sub) is str and len(sub) <= MAX_KEY else None
                item_text = _value(item)
                if sub_text is None or item_text is None:
                    return None
                out.append(f"{inner}{sub_text}: {item_text}\n")
        elif kind is list:
            if not value:
                out.append(f"{pad}{name}: []\n")
                continue
            out.append(f"{pad}{name}:\n")
            for item in value:  # PyYAML does not indent a sequence inside a mapping
                item_text = _value(item)
                if item_text is None:
                    return None
                out.append(f"{pad}- {item_text}\n")
        else:
            text = _value(value)
            if text is None:
                return None
            out.append(f"{pad}{name}: {text}\n")
    return "".join(out)


def read_scalar(text: str) -> str | int:
    """The value of a plain or single-quoted scalar, read loosely: callers re-emit what they
    read and compare, so anything this gets wrong is caught there."""
    if len(text) >= 2 and text[0] == "'" == text[-1]:
        return text[1:-1]
    if _INT_RE.fullmatch(text):
        return int(text)
    return text


_PENDING: Any = object()


def read_block(text: str, indent: int = 2) -> tuple[str | int, dict[str, Any]] | None:
    """Read one entry written by :func:`block`; ``None`` on anything of another shape.

    Loose on purpose: the caller writes the result back with :func:`block` and trusts it only
    if that gives ``text`` again, byte for byte.
    """
    lines = text.split("\n")
    head = lines[0]
    pad = " " * (indent + 2)
    seq, inner = pad + "- ", " " * (indent + 4)
    if lines[-1] != "" or not head.startswith(" " * indent) or not head.endswith(":"):
        return None
    data: dict[str, Any] = {}
    open_field: str | None = None
    for line in lines[1:-1]:
        if line.startswith(inner):
            key, sep, value = line[len(inner) :].partition(": ")
            current = data.get(open_field) if open_field else None
            if not sep or not (current is _PENDING or type(current) is dict):
                return None
            if current is _PENDING:
                current = data[open_field] = {}  # type: ignore[index]
            current[read_scalar(key)] = read_scalar(value)
        elif line.startswith(seq):
            current = data.get(open_field) if open_field else None
            if not (current is _PENDING or type(current) is list):
                return None
            if current is _PENDING:
                current = data[open_field] = []  # type: ignore[index]
            current.append(read_scalar(line[len(seq) :]))
        elif line.startswith(pad):
            body = line[len(pad) :]
            if body.endswith(":"):
                open_field = str(read_scalar(body[:-1]))
                data[open_field] = _PENDING
                continue
            key, sep, value = body.partition(": ")
            if not sep:
                return None
            data[str(read_scalar(key))] = [] if value == "[]" else read_scalar(value)
            open_field = None
        else:
            return None
    if any(v is _PENDING for v in data.values()):
        return None
    return read_scalar(head[indent:-1]), data
