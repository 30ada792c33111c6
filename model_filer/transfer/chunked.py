"""Moving one model in the chunked layout: a whole stored object, or a manifest of chunks.

Push cuts and compresses (never dump), uploads only the chunks the remote lacks (one listing
of the chunk prefix says which it holds), refreshes reused chunks gc could soon collect, and
uploads the manifest last: the key it returns names bytes that are all on the remote. Pull
reads the manifest (bounded, checked before anything is written), takes each chunk from bytes
already on this machine (a partial file of an earlier, killed pull, or an object of the local
store whose manifest lists it) or else downloads it, checks every chunk against its hash, and
hands the reassembled file back for the whole sha256 check. Remotes are used through their
``upload``/``download``/``list_objects``/``touch`` only: they know nothing of chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from model_filer.errors import IntegrityError
from model_filer.fs.hashing import CHUNK, sha256_stream
from model_filer.registry.model import Entry
from model_filer.remotes import Progress, Remote, RemoteObject
from model_filer.storage import REFRESH_AFTER, storage_key
from model_filer.storage.chunks import SMALL_MAX, cut
from model_filer.storage.manifest import MAX_MANIFEST_BYTES, Chunk, encode_manifest, parse_manifest
from model_filer.storage.stored import decode, encode, max_stored_size

#: Where the chunks of objects on this machine are: chunk sha256 -> (file, offset, size).
ChunkIndex = dict[str, tuple[Path, int, int]]


class _Buffer:
    """An in-memory download sink that refuses more than ``limit`` bytes (a hostile or
    damaged object is cut off, not read whole)."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.what = limit, what
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if self.size + n > self.limit:
            raise IntegrityError(
                f"The remote's {self.what} is larger than the {self.limit} bytes it may be; "
                "it was not read further and nothing was written. Ask the model's author to "
                "push it again."
            )
        self.parts.append(bytes(data))
        self.size += n
        return n

    def seekable(self) -> bool:
        return False

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Chunked:
    """Push and fetch models in the chunked layout on ``remote``.

    ``temp`` names fresh temp files (a stored object is uploaded from one); ``jobs`` chunks
    move at once.
    """

    def __init__(self, remote: Remote, temp: Callable[[str], Path], jobs: int) -> None:
        self.remote = remote
        self.temp = temp
        self.jobs = max(1, jobs)

    # -- the remote's side --------------------------------------------------------------------
    def _get(self, key: str, limit: int, what: str, size: int | None = None) -> bytes:
        sink = _Buffer(limit, what)
        self.remote.download(key, sink, None, size)
        return sink.getvalue()

    def _put(self, data: Iterable[Any], key: str, sha256: str) -> None:
        """Upload the buffers ``data`` as the object ``key`` (through a temp file)."""
        tmp = self.temp("stored")
        try:
            with open(tmp, "wb") as fh:
                for part in data:
                    fh.write(part)
            self.remote.upload(tmp, key, sha256, None)
        finally:
            tmp.unlink(missing_ok=True)

    def _keep(self, found: RemoteObject) -> None:
        """Refresh an object a push reuses if gc could collect it soon (see REFRESH_AFTER)."""
        if datetime.now(UTC) - found.modified > REFRESH_AFTER:
            self.remote.touch(found.key)

    def _listed(self, prefix: str) -> dict[str, RemoteObject]:
        return {obj.key: obj for obj in self.remote.list_objects(prefix)}

    # -- push ---------------------------------------------------------------------------------
    def push(self, fh: IO[bytes], entry: Entry, progress: Progress | None) -> tuple[str, bytes]:
        """Store the verified open file ``fh`` of ``entry``; return its key and its manifest
        (``b""`` for a small model, stored whole)."""
        if entry.size <= SMALL_MAX:
            return self._push_whole(fh, entry, progress), b""
        return self._push_chunks(fh, entry, progress)

    def _push_whole(self, fh: IO[bytes], entry: Entry, progress: Progress | None) -> str:
        key = storage_key("objects", entry.sha256)
        found = self.remote.stat(key)  # one HEAD, with the object's age
        if found is not None:
            self._keep(found)
        else:
            self._put(encode(fh.read()), key, entry.sha256)
        if progress is not None:
            progress(entry.size)
        return key

    def _push_chunks(
        self, fh: IO[bytes], entry: Entry, progress: Progress | None
    ) -> tuple[str, bytes]:
        key = storage_key("manifests", entry.sha256)
        chunks: list[Chunk] = []
        seen: set[str] = set()
        slots = threading.BoundedSemaphore(2 * self.jobs)  # chunks in memory: bounded
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(self.jobs) as pool:
            listing = pool.submit(self._listed, storage_key("chunks", ""))
            try:
                for piece, data in cut(fh, entry.size):
                    chunks.append(Chunk(piece.sha256, piece.size))
                    if piece.sha256 in seen:  # repeated inside this model: stored once
                        if progress is not None:
                            progress(piece.size)
                        continue
                    seen.add(piece.sha256)
                    slots.acquire()
                    futures.append(
                        pool.submit(
                            self._push_chunk, piece.sha256, bytes(data), listing, slots, progress
                        )
                    )
                for future in futures:
                    future.result()  # the first failure is raised; the rest are not waited
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        manifest = encode_manifest(entry.sha256, entry.size, chunks)
        self._put([manifest], key, entry.sha256)  # last: it names only chunks now stored
        return key, manifest

    def _push_chunk(
        self,
        sha: str,
        data: bytes,
        listing: Future[dict[str, RemoteObject]],
        slots: threading.BoundedSemaphore,
        progress: Progress | None,
    ) -> None:
        try:
            key = storage_key("chunks", sha)
            found = listing.result().get(key)
            if found is not None:
                self._keep(found)
            else:
                self._put(encode(data), key, sha)
            if progress is not None:
                progress(len(data))
        finally:
            slots.release()

    def present(self, entry: Entry) -> bool:
        """Whether ``entry``'s stored bytes are all on the remote: the object, or the
        manifest and every chunk it names (checked on the remote, not assumed)."""
        key = entry.key or ""
        if key == storage_key("objects", entry.sha256):
            return self.remote.stat(key) is not None
        try:
            data = self._get(key, MAX_MANIFEST_BYTES, "manifest")
        except IntegrityError:
            return False
        except LookupError:
            return False
        listed = self._listed(storage_key("chunks", ""))
        try:
            chunks = parse_manifest(data, entry.sha256, entry.size)
        except IntegrityError:
            return False
        return all(storage_key("chunks", c.sha256) in listed for c in chunks)

    # -- fetch --------------------------------------------------------------------------------
    def fetch_whole(self, key: str, entry: Entry, tmp: Path) -> tuple[int, str]:
        """Download the stored object ``key`` of ``entry`` into ``tmp``; return what came
        (size, sha256) for the caller's check."""
        blob = self._get(key, max_stored_size(entry.size), f"object {key}", entry.size + 1)
        data = decode(blob, entry.size, f"object {key}")
        with open(tmp, "wb") as fh:
            fh.write(data)
        return len(data), hashlib.sha256(data).hexdigest()

    def fetch_chunks(
        self,
        key: str,
        entry: Entry,
        partial: Path,
        progress: Progress | None,
        local: Callable[[], ChunkIndex],
    ) -> tuple[int, str, bytes]:
        """Assemble ``entry`` in ``partial`` from its chunks; return (size, sha256, manifest).

        What ``partial`` already holds (a killed pull's chunks, checked by their hashes) and
        what objects on this machine hold (``local()``) is not downloaded again.
        """
        manifest = self._get(key, MAX_MANIFEST_BYTES, f"manifest {key}")
        chunks = parse_manifest(manifest, entry.sha256, entry.size)  # before any write
        where: dict[str, list[int]] = {}
        offset = 0
        for chunk in chunks:
            where.setdefault(chunk.sha256, []).append(offset)
            offset += chunk.size
        sizes = {c.sha256: c.size for c in chunks}
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            held = os.fstat(fd).st_size
            if held > entry.size:
                os.ftruncate(fd, 0)
                held = 0
            todo: list[str] = []
            index: ChunkIndex | None = None
            for sha, offsets in where.items():
                size = sizes[sha]
                if any(o + size <= held and _holds(fd, o, size, sha) for o in offsets):
                    data = os.pread(fd, size, next(o for o in offsets if o + size <= held))
                    _write_all(fd, data, offsets, sha, progress)  # (fills the other places)
                    continue
                if index is None:
                    index = local()
                found = index.get(sha)
                mine = _read_local(found, sha) if found is not None else None
                if mine is not None:
                    _write_all(fd, mine, offsets, sha, progress)
                else:
                    todo.append(sha)
            self._download_chunks(fd, todo, where, sizes, progress)
            os.ftruncate(fd, entry.size)
            os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(fd), "rb") as fh:
                sha = sha256_stream(fh)
            return entry.size, sha, manifest
        finally:
            os.close(fd)

    def _download_chunks(
        self,
        fd: int,
        todo: list[str],
        where: dict[str, list[int]],
        sizes: dict[str, int],
        progress: Progress | None,
    ) -> None:
        def one(sha: str) -> None:
            key = storage_key("chunks", sha)
            what = f"chunk {key}"
            blob = self._get(key, max_stored_size(sizes[sha]), what, sizes[sha] + 1)
            data = decode(blob, sizes[sha], what)
            if hashlib.sha256(data).hexdigest() != sha:
                raise IntegrityError(
                    f"The remote's {what} does not hold the bytes its name says. The model "
                    "was not loaded. Ask the model's author to push it again."
                )
            _write_all(fd, data, where[sha], sha, progress)

        if not todo:
            return
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(one, sha) for sha in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _holds(fd: int, offset: int, size: int, sha: str) -> bool:
    """Whether the file holds the chunk ``sha`` at ``offset`` (a killed pull wrote it)."""
    digest = hashlib.sha256()
    for start in range(offset, offset + size, CHUNK):
        digest.update(os.pread(fd, min(CHUNK, offset + size - start), start))
    return digest.hexdigest() == sha


def _read_local(found: tuple[Path, int, int], sha: str) -> bytes | None:
    """The chunk's bytes from an object on this machine, if it still holds them."""
    path, offset, size = found
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), size, offset)
        if hashlib.sha256(data).hexdigest() == sha:
            return data
    return None


def _write_all(fd: int, data: Any, offsets: list[int], sha: str, progress: Progress | None) -> None:
    view = memoryview(data).cast("B")
    for offset in offsets:
        done = 0
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:], offset + done)
        if progress is not None:
            progress(view.nbytes)
