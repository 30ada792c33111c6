"""Safe YAML for registries: libyaml's C loader/dumper when present, duplicate keys refused.

The registry codec (:mod:`model_filer.registry.codec`) imports this, and so PyYAML (~15 ms),
only for text outside the canonical subset it reads and writes itself (hand edits, unusual
values), or when a test asks for PyYAML's own bytes.
"""

from __future__ import annotations

from typing import Any

import yaml

from model_filer.errors import RegistryError

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
    """Block-style YAML, keys in the given order, no line wrapping: stable bytes.

    A value the safe dumper cannot write (an object that is not a plain str, int, list or
    dict) raises :class:`RegistryError` naming its type, never PyYAML's own error.
    """
    try:
        return yaml.dump(
            doc,
            Dumper=dumper or Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=1 << 16,
            indent=2,
        )
    except yaml.representer.RepresenterError as exc:
        value = exc.args[1] if len(exc.args) > 1 else None
        raise RegistryError(
            f"Cannot write a {type(value).__module__}.{type(value).__qualname__} value "
            "to the registry: only plain strings, numbers, lists and maps "
            "can be written. Nothing was written: this is a model_filer bug, please report "
            "it with this message."
        ) from None
