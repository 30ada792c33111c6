"""Downloads that continue where a killed or cut one stopped.

A download writes into a *partial file* named for the bytes it will hold (their sha256) and
tagged with its owner's host and pid, like every temp file. When the process dies the file
stays; the next download of the same bytes adopts it, re-hashes the prefix it holds (sha256
state cannot be saved, re-reading local bytes is cheap) and asks the remote for the rest only
(S3 ``Range: bytes=N-``; a local folder seeks). A server that ignores the range sends the
whole object, which is detected (no ``206``/``Content-Range``) and written from byte 0. The
bytes are always verified whole at the end; a resumed file that fails is fetched once more
from zero, so a damaged prefix costs one download, never a bad model.

The API knows nothing of model folders: :func:`claim_partial` picks the file in any folder,
:func:`download` fills it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from model_filer.fs.hashing import CHUNK, HashingWriter
from model_filer.fs.tempfiles import owned_temp_name, temp_owner
from model_filer.remotes import Progress, Remote

RESUMABLE_ABOVE = 16 * 1024 * 1024  # smaller downloads restart: one GET is all they cost
STALE_AFTER = 24 * 3600  # a dead process's partial of bytes nobody asked for since: removed
_PIECE = 1 << 20
# Partial files this process is filling, emptied as each download ends. Process-wide on
# purpose: threads share the pid a partial's name carries, so only the process can tell which
# of its own partials a thread is filling (two names of the same bytes, pulled in parallel
# without the store, would otherwise append to one file); a per-Filer set would miss a second
# Filer of the folder.
_IN_USE: set[str] = set()
_IN_USE_LOCK = threading.Lock()


def _suffix(sha256: str) -> str:
    return f".{sha256}.part.tmp"


def claim_partial(folder: Path, sha256: str) -> Path:
    """The partial file to download ``sha256``'s bytes into, in ``folder``.

    Adopts (renames to this process's name) one left by a dead process, or by this process
    when no thread of it is filling it; else names a new one. Dead processes' partials of other
    bytes, untouched for a day, are removed. Callers serialise downloads of the same bytes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / owned_temp_name(f"{sha256}.part")
    now = time.time()
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if not name.endswith(".part.tmp"):
            continue
        with _IN_USE_LOCK:
            busy = str(path) in _IN_USE
        if busy or temp_owner(name) == "alive":
            continue
        if name.endswith(_suffix(sha256)):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, mine)
                break
        else:
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > STALE_AFTER:
                    path.unlink()
    return mine


#: Makes the error to raise for a failed write to the local partial file.
WriteError = Callable[[OSError], BaseException]


class _PartialSink:
    """Appends to the partial file; everything it holds, prefix included, is hashed in a thread
    of its own (sha256 runs at a few hundred MB/s: inline it would halve a fast download)."""

    def __init__(
        self, fh: IO[bytes], digest: Any, held: int, write_error: WriteError | None = None
    ) -> None:
        self._fh = fh
        self._write_error = write_error
        self._writer = HashingWriter(fh, offload_bytes=0, digest=digest)
        self.held = held
        self.started_at: int | None = None

    @property
    def size(self) -> int:
        return self.held + self._writer.size

    def restart(self, offset: int) -> None:
        if offset != self.size:  # the server sent the object from byte 0: start over
            if offset != 0:
                raise ValueError(f"cannot continue at {offset}, holding {self.size} bytes")
            self._writer.hexdigest()  # stops its thread
            self._fh.seek(0)
            self._fh.truncate()
            self._writer = HashingWriter(self._fh, offload_bytes=0)
            self.held = 0
        self.started_at = offset

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            for start in range(0, view.nbytes, _PIECE):  # small pieces: a short hash queue
                self._writer.write(view[start : start + _PIECE])
        except OSError as exc:  # the local disk, not the remote: say so (a full store falls back)
            if self._write_error is None:
                raise
            raise self._write_error(exc) from exc
        return view.nbytes

    def hexdigest(self) -> str:
        return self._writer.hexdigest()


def _hash_prefix(fh: IO[bytes], size: int) -> Any:
    digest = hashlib.sha256()
    fh.seek(0)
    remaining = size
    while remaining and (chunk := fh.read(min(CHUNK, remaining))):
        digest.update(chunk)
        remaining -= len(chunk)
    return digest


def _attempt(
    remote: Remote,
    key: str,
    size: int,
    partial: Path,
    progress: Progress | None,
    write_error: WriteError | None = None,
) -> tuple[int, str, int]:
    """One pass: continue from what ``partial`` holds; return (size, sha256, bytes asked)."""
    with open(partial, "a+b") as fh:
        held = os.fstat(fh.fileno()).st_size
        if held > size:  # not a prefix of these bytes
            fh.truncate(0)
            held = 0
        sink = _PartialSink(fh, _hash_prefix(fh, held), held, write_error)
        fh.seek(held)
        if progress is not None and held:
            progress(held)
        try:
            if held == size:
                sink.restart(held)
            else:
                remote.download_from(key, held, sink, progress, size)
        finally:
            sha = sink.hexdigest()  # also stops the hashing thread on failure
        fh.flush()
        return sink.size, sha, sink.started_at or 0


def download(
    remote: Remote,
    key: str,
    size: int,
    sha256: str,
    partial: Path,
    progress: Progress | None = None,
    write_error: WriteError | None = None,
) -> tuple[int, str]:
    """Continue or finish downloading ``key`` (``size`` bytes, ``sha256``) into ``partial``.

    Returns the size and sha256 ``partial`` then holds; when they are not the expected ones the
    caller must delete it. An interrupted download leaves ``partial`` for the next attempt.
    ``write_error`` turns a failed local write (a full disk) into the caller's error, which
    the remote passes through instead of reporting it as a remote failure.
    """
    with _IN_USE_LOCK:
        _IN_USE.add(str(partial))
    try:
        got_size, got_sha, started = _attempt(remote, key, size, partial, progress, write_error)
        if (got_size, got_sha) != (size, sha256) and started > 0:
            # The prefix we held was damaged (or other bytes): once more, from zero.
            partial.unlink()
            got_size, got_sha, _ = _attempt(remote, key, size, partial, progress, write_error)
        return got_size, got_sha
    finally:
        with _IN_USE_LOCK:
            _IN_USE.discard(str(partial))
