"""Packs: chunks' stored forms back to back in one remote object, read back in ranges.

A model's new chunks go up in a few large objects instead of one each: a GiB is ~16 PUTs, not
~1,000, and a pull reads the runs of chunks it needs with one ranged GET per run (up to
:data:`RANGE_MAX`), so requests cost what a plain download's parts cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from model_filer.storage.manifest import Chunk

# A pack closes before the chunk that would take it past this size (chunks are at most
# 16 MiB): large enough that a GiB is ~16 uploads, each whole 8 MiB parts of a multipart, and
# small enough that a pack kept whole by gc for one live chunk wastes little.
PACK_TARGET = 64 * 1024 * 1024
# One ranged GET reads about 1/READS of the model, within these bounds: few requests for a big
# model (a GiB is 128 GETs of 8 MiB, as s3transfer's parts), and for any model a kill loses
# at most the reads in flight (8 of 128: ~6%), which a resumed pull asks for again.
RANGE_MIN = 1024 * 1024
RANGE_MAX = 16 * 1024 * 1024
READS = 128


def range_limit(size: int) -> int:
    """How much one ranged GET reads at most, for a model of ``size`` bytes."""
    return min(RANGE_MAX, max(RANGE_MIN, size // READS))


class Span(NamedTuple):
    """One read: ``length`` bytes of the object ``key`` from ``start``, holding ``chunks``
    (in order, back to back from ``start``)."""

    key: str
    start: int
    length: int
    chunks: list[Chunk]


def spans(chunks: Iterable[Chunk], limit: int) -> list[Span]:
    """The reads that fetch ``chunks`` (distinct): a chunk object of format 1 whole, one read
    each; chunks of a pack that lie back to back, joined up to ``limit`` bytes a read
    (:func:`range_limit`)."""
    out: list[Span] = []
    by_pack: dict[str, list[Chunk]] = {}
    for c in chunks:
        if c.pack is None:
            out.append(Span(c.key(), 0, c.size + 1, [c]))
        else:
            by_pack.setdefault(c.pack, []).append(c)
    for placed in by_pack.values():
        placed.sort(key=lambda c: c.offset)
        run: list[Chunk] = []
        for c in placed:
            if run and (
                c.offset != run[-1].offset + run[-1].stored
                or c.offset + c.stored - run[0].offset > limit
            ):
                out.append(_span(run))
                run = []
            run.append(c)
        out.append(_span(run))
    return out


def _span(run: list[Chunk]) -> Span:
    start = run[0].offset
    return Span(run[0].key(), start, run[-1].offset + run[-1].stored - start, run)
