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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from model_filer.errors import IntegrityError
from model_filer.registry.model import Entry
from model_filer.remotes import Progress, Remote, RemoteObject
from model_filer.storage import REFRESH_AFTER, storage_key
from model_filer.storage.chunks import MIN_AVG, SMALL_MAX, cut
from model_filer.storage.manifest import MAX_MANIFEST_BYTES, Chunk, encode_manifest, read_manifest
from model_filer.storage.stored import decode, encode, max_stored_size

if TYPE_CHECKING:
    from concurrent.futures import Future

READ_PIECE = 1024 * 1024  # bytes read back at once to hash (from the page cache)

#: Where the chunks of objects on this machine are: chunk sha256 -> (file, offset, size).
ChunkIndex = dict[str, tuple[Path, int, int]]


class _InOrder:
    """The sha256 of a file filled out of order, hashed in order as each next chunk lands
    (read back from the page cache): no second pass over the file once the last one lands."""

    def __init__(self, fd: int, spans: list[tuple[int, int, str]]) -> None:
        self._fd, self._spans = fd, spans
        self._cond = threading.Condition()
        self._landed: set[str] = set()
        self._stopped = False
        self._digest = hashlib.sha256()
        self._buffer = bytearray(READ_PIECE)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def landed(self, sha: str) -> None:
        """Chunk ``sha`` is written at every offset it has."""
        with self._cond:
            self._landed.add(sha)
            self._cond.notify()

    def _run(self) -> None:
        for offset, size, sha in self._spans:
            with self._cond:
                while sha not in self._landed and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
            _hash_span(self._digest, self._fd, offset, size, self._buffer)

    def hexdigest(self) -> str:
        """The file's sha256, once every chunk has landed."""
        self._thread.join()
        return self._digest.hexdigest()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()


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
        too_big = IntegrityError(
            f"The remote's {what} is larger than the {limit} bytes it may be; it was not read "
            "further and nothing was written. Ask the model's author to push it again."
        )
        return self.remote.read_bytes(key, limit, size, too_big)

    def _put(self, data: Iterable[Any], key: str, sha256: str) -> None:
        """Upload the buffers ``data`` as the object ``key`` (through a temp file)."""
        self.remote.upload_parts(data, key, sha256, self.temp("stored"))

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
        slots = threading.BoundedSemaphore(self.jobs)  # chunks in memory: one per upload
        futures: list[Future[None]] = []
        from concurrent.futures import ThreadPoolExecutor  # (not on the hooks' path)

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
            _, chunks = read_manifest(self.remote, key, entry.sha256, entry.size)
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

        What ``partial`` already holds (a killed pull's chunks, checked by their hashes) and
        what objects on this machine hold (``local()``, checked too) is not downloaded again.
        Downloaded chunks are checked by the whole file's sha256, hashed in order as they
        land; when it fails, the chunk at fault is found and named.
        """
        hint = _manifest_size(entry.size)
        manifest, chunks = read_manifest(self.remote, key, entry.sha256, entry.size, hint)
        where: dict[str, list[int]] = {}
        spans, offset = [], 0
        for chunk in chunks:
            where.setdefault(chunk.sha256, []).append(offset)
            spans.append((offset, chunk.size, chunk.sha256))
            offset += chunk.size
        sizes = {c.sha256: c.size for c in chunks}
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        hasher: _InOrder | None = None
        try:
            held = os.fstat(fd).st_size
            if held > entry.size:
                os.ftruncate(fd, 0)
                held = 0
            hasher = _InOrder(fd, spans)
            todo: list[str] = []
            index: ChunkIndex | None = None
            for sha, offsets in where.items():
                size = sizes[sha]
                at = next(
                    (o for o in offsets if o + size <= held and _holds(fd, o, size, sha)), None
                )
                data: Any = os.pread(fd, size, at) if at is not None else None
                if data is None:
                    if index is None:
                        index = local()
                    found = index.get(sha)
                    data = _read_local(found, sha) if found is not None else None
                if data is None:
                    todo.append(sha)
                else:
                    _write_all(fd, data, offsets, progress)
                    hasher.landed(sha)
            self._download_chunks(fd, todo, where, sizes, progress, hasher.landed)
            os.ftruncate(fd, entry.size)
            digest = hasher.hexdigest()
            if digest != entry.sha256:
                _name_bad_chunk(fd, todo, where, sizes)
            return entry.size, digest, manifest
        finally:
            if hasher is not None:
                hasher.stop()
            os.close(fd)

    def _download_chunks(
        self,
        fd: int,
        todo: list[str],
        where: dict[str, list[int]],
        sizes: dict[str, int],
        progress: Progress | None,
        landed: Callable[[str], None],
    ) -> None:
        def one(sha: str) -> None:
            key = storage_key("chunks", sha)
            what = f"chunk {key}"
            blob = self._get(key, max_stored_size(sizes[sha]), what, sizes[sha] + 1)
            _write_all(fd, decode(blob, sizes[sha], what), where[sha], progress)
            landed(sha)

        if not todo:
            return
        from concurrent.futures import ThreadPoolExecutor  # (not on the hooks' path)

        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(one, sha) for sha in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _name_bad_chunk(
    fd: int, todo: list[str], where: dict[str, list[int]], sizes: dict[str, int]
) -> None:
    """Raise for the first downloaded chunk whose bytes are not those its name says."""
    for sha in todo:
        if not _holds(fd, where[sha][0], sizes[sha], sha):
            raise IntegrityError(
                f"The remote's chunk {storage_key('chunks', sha)} does not hold the bytes its "
                "name says. The model was not loaded. Ask the model's author to push it again."
            )


def _manifest_size(size: int) -> int:
    """How long the manifest of a ``size``-byte model written by this chunker can be: a hint
    that lets a remote fetch it in one request (a longer one is still read, up to its bound)."""
    most_chunks = size // (MIN_AVG // 4) + 1  # FastCDC's smallest chunk: a quarter of the average
    return min(MAX_MANIFEST_BYTES, 256 + 80 * most_chunks)  # ["<64 hex>",<size>], per chunk


def _fits(found: RemoteObject, size: int) -> bool:
    """Whether a stored object found on the remote can hold ``size`` bytes (one cut short,
    say by another tool's partial upload, is replaced, not trusted)."""
    return min(2, size + 1) <= found.size <= max_stored_size(size)  # (a header and a byte)


def _holds(fd: int, offset: int, size: int, sha: str) -> bool:
    """Whether the file holds the chunk ``sha`` at ``offset`` (a killed pull wrote it)."""
    digest = hashlib.sha256()
    _hash_span(digest, fd, offset, size, bytearray(READ_PIECE))
    return digest.hexdigest() == sha


def _hash_span(digest: Any, fd: int, offset: int, size: int, buffer: bytearray) -> None:
    """Feed ``size`` bytes of the file from ``offset`` to ``digest``, read into ``buffer``
    (reused: a fresh buffer per read costs a page fault per 4 KiB, more than the copy)."""
    view = memoryview(buffer)
    end = offset + size
    while offset < end:
        n = os.preadv(fd, [view[: min(len(view), end - offset)]], offset)
        if n == 0:  # the file ends early: what was hashed cannot match
            return
        digest.update(view[:n])
        offset += n


def _read_local(found: tuple[Path, int, int], sha: str) -> bytes | None:
    """The chunk's bytes from an object on this machine, if it still holds them."""
    path, offset, size = found
    with contextlib.suppress(OSError):
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), size, offset)
        if hashlib.sha256(data).hexdigest() == sha:
            return data
    return None


def _write_all(fd: int, data: Any, offsets: list[int], progress: Progress | None) -> None:
    """Write one chunk at each of its offsets (pieces landing out of order)."""
    view = memoryview(data).cast("B")
    for offset in offsets:
        done = 0
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:], offset + done)
        if progress is not None:
            progress(view.nbytes)
