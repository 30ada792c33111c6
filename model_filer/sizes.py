"""Sizes as people type them: ``500MB``, ``2GiB``, ``1024``."""

from __future__ import annotations

import argparse
import re

_SIZE_RE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*")
# "", then k m g t as powers of 1000 and ki mi gi ti as powers of 1024
_UNITS = {"": 1} | {
    prefix + binary: base**power
    for power, prefix in enumerate("kmgt", 1)
    for binary, base in (("", 1000), ("i", 1024))
}


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"1024"`` -> bytes."""
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 500MB, 2GiB, 1024")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(float(match.group(1)) * _UNITS[unit])
