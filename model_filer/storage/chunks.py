"""Where a model's bytes are cut: content-defined chunks (FastCDC), each named by its sha256.

Cuts depend on the bytes only, so two versions of a model that share long runs share the
chunks inside them, wherever the runs sit. A model up to :data:`SMALL_MAX` is not cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO, NamedTuple

# A model this small is one stored object: one request, and at most this much to dedupe.
SMALL_MAX = 8 * 1024 * 1024
# The average chunk grows with the model: ~SPLIT chunks each, between these bounds
# (FastCDC cuts between a quarter and four times the average).
MIN_AVG = 256 * 1024
MAX_AVG = 1024 * 1024
SPLIT = 256


class Piece(NamedTuple):
    """A chunk found in a model: its raw bytes' sha256, where it starts, its length."""

    sha256: str
    offset: int
    size: int


def average_chunk(size: int) -> int:
    """FastCDC's average chunk size for a model of ``size`` bytes (a power of two)."""
    avg = MIN_AVG
    while avg < MAX_AVG and avg * SPLIT < size:
        avg *= 2
    return avg


def cut(fh: IO[bytes], size: int) -> Iterator[tuple[Piece, memoryview]]:
    """The chunks of the open file ``fh`` (``size`` bytes, read from its position), in order.

    Each view is valid until the next chunk is asked for (copy it to keep it). Memory: two
    maximal chunks.
    """
    from pyfastcdc.cy import FastCDC  # (not on the hooks' path)

    for found in FastCDC(avg_size=average_chunk(size)).cut_stream(fh):
        data = found.data
        yield Piece(hashlib.sha256(data).hexdigest(), found.offset, found.length), data
