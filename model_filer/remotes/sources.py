"""What an upload sends: bytes read by position, from a file or from pieces put together.

Every remote type reads an upload through :class:`Source`: a part at a time, several parts
at once from several threads (reads are positional, so they share nothing). A source need
not be one file: a pack is assembled from ranges of a model's file and a few buffers, and is
uploaded without ever being written out.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class Source(ABC):
    """``size`` bytes that an upload reads by position."""

    size: int

    @abstractmethod
    def read_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` with the bytes from ``offset`` on; return how many (fewer only at
        the end). Safe to call from several threads at once."""

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end)."""
        buffer = bytearray(max(0, min(length, self.size - offset)))
        view, done = memoryview(buffer), 0
        while done < len(buffer):
            got = self.read_into(view[done:], offset + done)
            if got == 0:
                raise ended(offset + done, self.size)
            done += got
        return bytes(buffer)


def ended(at: int, size: int) -> OSError:
    """The error of an upload whose source ran out at byte ``at`` of the ``size`` expected
    (its file was cut short while it was sent)."""
    return OSError(f"the bytes to upload ended at {at} of {size}")


class FileSource(Source):
    """The bytes of an open file descriptor (not closed here) or of a file (opened here)."""

    def __init__(self, file: Path | int) -> None:
        self._owned = not isinstance(file, int)
        self.fd = file if isinstance(file, int) else os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size

    def read_into(self, view: memoryview, offset: int) -> int:
        n, done = max(0, min(view.nbytes, self.size - offset)), 0
        while done < n:  # (a network filesystem may read less than asked)
            got = os.preadv(self.fd, [view[done:n]], offset + done)
            if got == 0:
                break
            done += got
        return done

    def close(self) -> None:
        """Close the file if this source opened it."""
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BufferSource(Source):
    """Buffers in memory (a chunk, a marker, a map), sent as one object in order."""

    def __init__(self, parts: Iterable[Any]) -> None:
        self._data = b"".join(memoryview(p).cast("B") for p in parts)
        self.size = len(self._data)

    def read_into(self, view: memoryview, offset: int) -> int:
        n = max(0, min(view.nbytes, self.size - offset))
        view[:n] = self._data[offset : offset + n]
        return n


@contextlib.contextmanager
def source_of(src: Path | Source) -> Iterator[Source]:
    """``src`` as a source, open for the block: a path is opened (and closed after)."""
    if isinstance(src, Source):
        yield src
        return
    source = FileSource(src)
    try:
        yield source
    finally:
        source.close()
