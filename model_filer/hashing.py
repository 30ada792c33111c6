"""sha256 while writing, sha256 of files, and the cache of verified hashes.

The cache maps a model file to the sha256 it was verified to hold, keyed by its
``(size, mtime_ns, inode, ctime_ns, device)``: a file that was not touched since is trusted
with one ``stat``; any change (a branch switch that brought other bytes of the same size, or
a same-size overwrite whose mtime was set back) forces a re-hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from pathlib import Path
from typing import IO, Any

from .files import INTERNAL_DIR, write_bytes_atomic

CHUNK = 8 * 1024 * 1024
QUEUE_CHUNKS = 32  # chunks waiting for the hashing thread (32 x 256 KiB for a download)
_SMALL = 1 << 20  # below this, hashing inline is cheaper than a hand-off to the thread


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

    Large buffers (numpy arrays written out-of-band by pickle protocol 5) are hashed in a
    second thread while the file write runs: both release the GIL, so hashing costs almost
    no wall time. Writes are forwarded unchanged and ``write`` returns as soon as the file
    has them, so callers must keep written buffers alive until :meth:`hexdigest` (pickle does:
    they belong to the object being dumped).
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
            self._queue.put(view)
        elif self._thread is not None:
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


def _key(st: os.stat_result) -> list[int]:
    # ctime cannot be set from user space (a tamper that restores the mtime still moves it);
    # the device tells apart two files of one inode number on different filesystems.
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev]


_KEY_LEN = 5


class HashCache:
    """Verified hashes of the model files in one folder, persisted in ``.model_filer``."""

    FILENAME = "hashes.json"

    def __init__(self, local_dir: Path) -> None:
        self._dir = local_dir
        self._path = local_dir / INTERNAL_DIR / self.FILENAME
        self._entries = self._read()
        self._updates: dict[str, list[Any] | None] = {}

    def _read(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self._path.read_bytes())
        except (OSError, ValueError):  # missing, unreadable or corrupt: start empty
            return {}
        return data if isinstance(data, dict) else {}

    def lookup_stat(self, path: Path, st: os.stat_result) -> str | None:
        """The verified sha256 of ``path`` if ``st`` (its stat now) shows it unchanged."""
        cached = self._entries.get(path.name)
        if not isinstance(cached, list) or len(cached) != _KEY_LEN + 1:
            return None  # also an older cache's shorter key: re-hashed once
        return str(cached[_KEY_LEN]) if _key(st) == cached[:_KEY_LEN] else None

    def lookup(self, path: Path) -> str | None:
        """The verified sha256 of ``path`` if it has not changed since, else ``None``."""
        try:
            return self.lookup_stat(path, os.stat(path))
        except FileNotFoundError:
            return None

    def verified_sha256(self, path: Path) -> str | None:
        """sha256 of ``path`` from the cache, or by hashing it (and caching); None if absent."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None
        with fh:
            st = os.fstat(fh.fileno())
            if (sha := self.lookup_stat(path, st)) is not None:
                return sha
            sha = sha256_stream(fh)
        self.record(path, sha, st)
        return sha

    def record(self, path: Path, sha256: str, st: os.stat_result | None = None) -> None:
        """Remember that ``path`` (as ``st`` describes it, default: now) holds ``sha256``."""
        try:
            key = _key(st or os.stat(path))
        except FileNotFoundError:
            return
        self._entries[path.name] = [*key, sha256]
        self._updates[path.name] = self._entries[path.name]

    def forget(self, path: Path) -> None:
        """Drop ``path`` from the cache (it was deleted)."""
        self._entries.pop(path.name, None)
        self._updates[path.name] = None

    def save(self) -> None:
        """Merge this instance's updates into the file on disk, atomically.

        No lock: the file is replaced whole, so readers never see it torn, and an update lost
        to a concurrent save only costs one re-hash later (entries are keyed by stat).
        """
        if not self._updates:
            return
        try:  # a cache that cannot be written (read-only folder) only costs a re-hash
            merged = self._read()
            for name, value in self._updates.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            data = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()
            write_bytes_atomic(self._path, self._dir, data, "hashes")
        except OSError:
            pass
        self._updates.clear()
