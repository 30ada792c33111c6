"""Safe YAML for registries: libyaml's C loader/dumper when present, duplicate keys refused.

Kept apart from :mod:`model_filer.registry` so that PyYAML (~15 ms) is imported only when a
registry is actually read or written, not on ``import model_filer``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

try:  # libyaml is ~4x faster; CSafeLoader builds only plain types (never CLoader)
    from yaml import CSafeDumper as Dumper
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeDumper as Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

YAMLError = yaml.YAMLError


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    # Registry keys are plain scalars, so comparing their text finds duplicates without
    # constructing every key twice (`a` and `"a"` collide, as they should).
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # Never built: an alias bomb used as a key would cost exponential time.
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        key = key_node.value
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


class Loader(_BaseLoader):
    """Safe loader (libyaml when present) that refuses duplicate mapping keys."""


class PurePythonLoader(yaml.SafeLoader):
    """The same checks without libyaml: the fallback, and the reference in tests."""


for _cls in (Loader, PurePythonLoader):
    _cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load(text: bytes, loader: type[Any] | None = None) -> Any:
    """Parse YAML safely; raises :class:`YAMLError`."""
    return yaml.load(text, Loader=loader or Loader)  # noqa: S506 - a safe loader subclass


def dump(doc: Any, dumper: type[Any] | None = None) -> str:
    """Block-style YAML, keys in the given order, no line wrapping: stable bytes."""
    return yaml.dump(
        doc,
        Dumper=dumper or Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
        indent=2,
    )


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
_PLAIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+/=:-]*(?<!:)")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"
# First characters of the values some implicit tag may claim: any other is a plain string.
RESOLVED_FIRST = frozenset(k for k in _RESOLVER.yaml_implicit_resolvers if k)
_INT_RE = re.compile(r"0|[1-9][0-9]*")
MAX_PLAIN = 1000  # longer strings take the library's path (no line wrapping questions)
MAX_KEY = 100  # PyYAML writes keys of 128+ characters as complex keys ('? ')


@functools.lru_cache(maxsize=4096)
def scalar(value: str) -> str | None:
    """``value`` as :func:`dump` writes it (plain or single-quoted), or ``None`` if unsure."""
    if len(value) > MAX_PLAIN or not _PLAIN_RE.fullmatch(value):
        return None
    # Plain only when a reader would not take it for a number, a date, a bool...
    tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if tag == _STR_TAG:
        return value
    return f"'{value}'"


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
