"""sha256 while writing, sha256 of files, and the cache of verified hashes.

The cache maps a model file to the sha256 it was verified to hold, keyed by its
``(size, mtime_ns, inode, ctime_ns, device)``: a file that was not touched since is trusted
with one ``stat``; any change (a branch switch that brought other bytes of the same size, or
a same-size overwrite whose mtime was set back) forces a re-hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
from pathlib import Path
from typing import IO, Any

from .files import INTERNAL_DIR, internal_dir, write_bytes_atomic

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
    """Verified hashes of the model files in one folder, persisted in ``.model_filer``.

    Saved as ``hashes.json`` plus a journal of later changes (``hashes.log``, one JSON line
    each), folded into the JSON when it grows past half its size: a dump into a folder of
    10,000 models then writes one line, not the whole cache. Nothing is read until a lookup
    needs it.
    """

    FILENAME = "hashes.json"
    JOURNAL = "hashes.log"
    JOURNAL_MIN = 64 * 1024  # appended to until larger than this and half the JSON

    def __init__(self, local_dir: Path) -> None:
        self._dir = local_dir
        self._dir_text = str(local_dir)
        self._path = local_dir / INTERNAL_DIR / self.FILENAME
        self._journal = self._path.with_name(self.JOURNAL)
        self._cache: dict[str, list[Any]] | None = None
        self._updates: dict[str, list[Any] | None] = {}

    @property
    def _entries(self) -> dict[str, list[Any]]:
        if self._cache is None:
            self._cache = self._read()
            _apply(self._cache, self._updates)
        return self._cache

    def _read(self) -> dict[str, list[Any]]:
        raw, journal = _read_bytes(self._path), _read_bytes(self._journal)
        memo = _PARSED.get(str(self._path))
        if memo is not None and memo[0] == raw and memo[1] == journal:
            return dict(memo[2])  # (values are replaced, never changed in place)
        entries = self._parse(raw, journal)
        _PARSED[str(self._path)] = (raw, journal, dict(entries))
        return entries

    @staticmethod
    def _parse(raw: bytes, journal: bytes) -> dict[str, list[Any]]:
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:  # corrupt: start empty
            data = {}
        entries: dict[str, list[Any]] = data if isinstance(data, dict) else {}
        for line in journal.splitlines():
            try:  # a line cut short by a crash is skipped: it costs a re-hash at most
                name, value = json.loads(line)
            except (ValueError, TypeError):
                continue
            if isinstance(name, str) and (value is None or isinstance(value, list)):
                _apply(entries, {name: value})
        return entries

    def lookup_stat(self, path: Path, st: os.stat_result) -> str | None:
        """The verified sha256 of ``path`` if ``st`` (its stat now) shows it unchanged."""
        cached = self._entries.get(path.name)
        if not isinstance(cached, list) or len(cached) != _KEY_LEN + 1:
            return None  # also an older cache's shorter key: re-hashed once
        return str(cached[_KEY_LEN]) if _key(st) == cached[:_KEY_LEN] else None

    def lookup_name(self, filename: str) -> str | None:
        """:meth:`lookup` of the file ``filename`` in the folder, with no path objects: the
        per-model cost when a pull checks 10,000 models are present."""
        cached = self._entries.get(filename)
        if not isinstance(cached, list) or len(cached) != _KEY_LEN + 1:
            return None
        try:
            st = os.stat(f"{self._dir_text}/{filename}")
        except OSError:
            return None
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
        self._updates[path.name] = value = [*key, sha256]
        if self._cache is not None:
            self._cache[path.name] = value

    def forget(self, path: Path) -> None:
        """Drop ``path`` from the cache (it was deleted)."""
        if self._cache is not None:
            self._cache.pop(path.name, None)
        self._updates[path.name] = None

    def save(self) -> None:
        """Merge this instance's updates into the files on disk.

        Appends them to the journal while it is small (one ``write``; a line cut short by
        a crash is skipped when read), else writes the merged JSON atomically and drops the
        journal. No lock: the cache is advisory and keyed by stat, so an update lost to a
        concurrent save only costs one re-hash later.
        """
        if not self._updates:
            return
        lines = b"".join(
            json.dumps([n, v], separators=(",", ":")).encode() + b"\n"
            for n, v in self._updates.items()
        )
        try:  # a cache that cannot be written (read-only folder) only costs a re-hash
            internal_dir(self._dir)  # made on demand; a symlink there is refused
            if len(lines) + _size(self._journal) <= max(self.JOURNAL_MIN, _size(self._path) // 2):
                # O_NOFOLLOW: a symlink committed as .model_filer/hashes.log must not make
                # us append to a file outside the model folder.
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                with os.fdopen(os.open(self._journal, flags, 0o644), "ab") as fh:
                    fh.write(b"\n" + lines)  # a torn earlier line stays a line of its own
            else:
                merged = self._read()
                _apply(merged, self._updates)
                data = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()
                write_bytes_atomic(self._path, self._dir, data, "hashes")
                with contextlib.suppress(FileNotFoundError):
                    self._journal.unlink()
        except OSError:
            pass
        self._updates.clear()


# The last parse of each cache file, by its exact bytes: a push of 10,000 models makes a
# HashCache per model, and parsing 1 MB of JSON each time is what would cost.
_PARSED: dict[str, tuple[bytes, bytes, dict[str, list[Any]]]] = {}


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # missing or unreadable: nothing cached
        return b""


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _apply(entries: dict[str, list[Any]], updates: dict[str, list[Any] | None]) -> None:
    for name, value in updates.items():
        if value is None:
            entries.pop(name, None)
        else:
            entries[name] = value
