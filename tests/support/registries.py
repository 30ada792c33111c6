"""What a registry's bytes are by definition: PyYAML's safe dumper over the whole document."""

from __future__ import annotations

from typing import Any

from model_filer.registry import yamlio
from model_filer.registry.model import HEADER, Registry, alias_text, format_needed


def pyyaml_bytes(reg: Registry, dumper: type[Any] = yamlio.Dumper) -> bytes:
    """The registry as PyYAML (``dumper``: libyaml's by default) writes it in block style;
    the codec's writer must give exactly these bytes."""
    doc = {
        "format": format_needed(reg),
        "remote": reg.remote_fields(),
        "aliases": {a: alias_text(reg.aliases[a]) for a in sorted(reg.aliases)},
        "models": {n: reg.entries[n].to_yaml_dict() for n in sorted(reg.entries)},
    }
    if not doc["aliases"]:
        del doc["aliases"]  # (written only when there is one)
    return (HEADER + yamlio.dump(doc, dumper)).encode("utf-8")
