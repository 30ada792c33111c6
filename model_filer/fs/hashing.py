"""sha256 of a stream: of files in chunks, and of bytes while they are written."""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path
from typing import IO, Any

CHUNK = 8 * 1024 * 1024
QUEUE_CHUNKS = 32  # chunks waiting for the hashing thread (32 x 256 KiB for a download)
_SMALL = 1 << 20  # below this, hashing inline is cheaper than a hand-off to the thread
# A big buffer goes to the thread and the file in slices of this size, in step: the hash
# reads each slice from the cache the write just filled (32 queued: the 32 MiB L3 of a
# small server), and both end together instead of the hash starting the whole buffer cold.
_SLICE = 1 << 20


def sha256_stream(fh: IO[bytes]) -> str:
    """Hash an open file from its position to the end, in chunks."""
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hash a file in chunks, never holding it whole in memory."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


class HashingWriter:
    """A write-only file wrapper that hashes what passes through it.

    Large buffers (numpy arrays written by pickle protocol 5) are hashed in a second thread
    while the file write runs, slice by slice (no copy): both release the GIL, so hashing
    costs almost no wall time on a machine with a free core. The bytes reach the file in
    order, and ``write`` returns as soon as the file has them, so callers must keep written
    buffers alive until :meth:`hexdigest` (pickle does: they belong to the object dumped).
    """

    def __init__(self, fh: IO[bytes], offload_bytes: int = _SMALL, digest: Any = None) -> None:
        self._fh = fh
        self._offload = offload_bytes  # writes this large or larger are hashed in the thread
        self._digest = hashlib.sha256() if digest is None else digest  # e.g. of a resumed prefix
        # Bounded: when hashing falls behind, writers wait instead of piling up buffers
        # (a download's chunks are fresh bytes: an unbounded queue is unbounded memory).
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self.size = 0

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._digest.update(item)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        if n >= self._offload:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
            for at in range(0, n, _SLICE):
                piece = view[at : at + _SLICE]
                self._queue.put(piece)
                self._fh.write(piece)
        else:
            if self._thread is not None:
                self._queue.put(bytes(view))  # keep order with buffers still queued
            else:
                self._digest.update(view)
            self._fh.write(view)
        self.size += n
        return n

    def seekable(self) -> bool:
        """Never: writers (s3transfer) must deliver bytes in order."""
        return False

    def hexdigest(self) -> str:
        """Finish hashing and return the sha256 of everything written."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        return self._digest.hexdigest()
