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
from model_filer.fs.hashing import HashingWriter
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
        self.parts.append(bytes(data))  # (no copy of a bytes object: one GET's body)
        self.size += n
        return n

    def getvalue(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    def seekable(self) -> bool:
        return False


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
        if found is not None and _fits(found, entry.size):
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
            if found is not None and _fits(found, len(data)):
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
            chunks = parse_manifest(data, entry.sha256, entry.size)
        except (IntegrityError, LookupError):  # damaged, or missing: not on the remote
            return False
        listed = self._listed(storage_key("chunks", ""))
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

        The file is written in order, hashed as it is written (as a plain download is), while
        up to ``2 * jobs`` chunks download ahead. What ``partial`` already holds (a killed
        pull's prefix, checked chunk by chunk) and chunks that objects on this machine hold
        (``local()``, checked too) are not downloaded. When the whole sha256 fails, the chunk
        at fault is found and named.
        """
        manifest = self._get(key, MAX_MANIFEST_BYTES, f"manifest {key}")
        chunks = parse_manifest(manifest, entry.sha256, entry.size)  # before any write
        with open(partial, "a+b") as fh:
            done, digest = _held_prefix(fh, chunks)
            prefix = sum(c.size for c in chunks[:done])
            fh.truncate(prefix)
            if progress is not None and prefix:
                progress(prefix)
            writer = HashingWriter(fh, offload_bytes=0, digest=digest)
            try:
                fetched = self._write_chunks(fh, writer, chunks[done:], progress, local)
            finally:
                sha = writer.hexdigest()  # also stops its thread
            fh.flush()
            if sha != entry.sha256:
                _name_bad_chunk(fh, chunks, fetched)
        return entry.size, sha, manifest

    def _write_chunks(
        self,
        fh: IO[bytes],
        writer: HashingWriter,
        chunks: list[Chunk],
        progress: Progress | None,
        local: Callable[[], ChunkIndex],
    ) -> set[str]:
        """Write ``chunks`` in order at the end of ``fh``; return the shas downloaded."""
        index = local() if chunks else {}
        start = fh.seek(0, os.SEEK_END)  # ("a+b": every write appends here)
        written: dict[str, int] = {}  # sha -> where this file already holds it
        fetch = [c for c in dict.fromkeys(chunks) if c.sha256 not in index]
        with ThreadPoolExecutor(self.jobs) as pool:
            ahead: dict[str, Future[bytes]] = {}
            queue = iter(fetch)

            def refill() -> None:
                while len(ahead) < 2 * self.jobs and (nxt := next(queue, None)) is not None:
                    ahead[nxt.sha256] = pool.submit(self._chunk, nxt)

            try:
                for chunk in chunks:
                    refill()
                    data: Any = None
                    if chunk.sha256 in written:  # repeated in this model: read back
                        fh.flush()
                        data = os.pread(fh.fileno(), chunk.size, written[chunk.sha256])
                    elif chunk.sha256 in index:
                        data = _read_local(index[chunk.sha256], chunk.sha256)
                    if data is None:
                        future = ahead.pop(chunk.sha256, None) or pool.submit(self._chunk, chunk)
                        data = future.result()
                    written.setdefault(chunk.sha256, start + writer.size)
                    writer.write(data)
                    if progress is not None:
                        progress(chunk.size)
            except BaseException:
                for future in ahead.values():
                    future.cancel()
                raise
        return {c.sha256 for c in fetch}

    def _chunk(self, chunk: Chunk) -> Any:
        """One chunk's raw bytes, from the remote (checked later, with the whole file)."""
        key = storage_key("chunks", chunk.sha256)
        what = f"chunk {key}"
        return decode(
            self._get(key, max_stored_size(chunk.size), what, chunk.size + 1), chunk.size, what
        )


def _fits(found: RemoteObject, size: int) -> bool:
    """Whether a stored object found on the remote can hold ``size`` bytes (one cut short,
    say by another tool's partial upload, is replaced, not trusted)."""
    return 1 < found.size <= max_stored_size(size)  # (a header and at least one byte)


def _held_prefix(fh: IO[bytes], chunks: list[Chunk]) -> tuple[int, Any]:
    """How many chunks a killed pull's partial file holds whole, in order, and the sha256
    state of those bytes (to continue hashing from)."""
    digest = hashlib.sha256()
    held = os.fstat(fh.fileno()).st_size
    offset = 0
    for done, chunk in enumerate(chunks):
        if offset + chunk.size > held:
            return done, digest
        data = os.pread(fh.fileno(), chunk.size, offset)
        if hashlib.sha256(data).hexdigest() != chunk.sha256:
            return done, digest
        digest.update(data)
        offset += chunk.size
    return len(chunks), digest


def _name_bad_chunk(fh: IO[bytes], chunks: list[Chunk], fetched: set[str]) -> None:
    """Raise for the first downloaded chunk whose bytes are not those its name says."""
    offset = 0
    for chunk in chunks:
        data = os.pread(fh.fileno(), chunk.size, offset)
        offset += chunk.size
        if chunk.sha256 in fetched and hashlib.sha256(data).hexdigest() != chunk.sha256:
            raise IntegrityError(
                f"The remote's chunk {storage_key('chunks', chunk.sha256)} does not hold the "
                "bytes its name says. The model was not loaded. Ask the model's author to push "
                "it again."
            )


def _read_local(found: tuple[Path, int, int], sha: str) -> bytes | None:
    """The chunk's bytes from an object on this machine, if it still holds them."""
    path, offset, size = found
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), size, offset)
        if hashlib.sha256(data).hexdigest() == sha:
            return data
    return None
