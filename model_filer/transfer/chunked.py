"""Moving one model in the chunked layout: a whole stored object, or a map of packed chunks.

Push cuts and compresses (never dump) and writes the chunks the remote lacks into packs, each
uploaded as it fills; a chunk it already holds (listed in a map this machine keeps, in a pack
the remote's listing shows) is named where it is, and refreshed if gc could soon collect it.
The map goes up last: the key push returns names bytes that are all on the remote. Pull reads
the map (bounded, checked before anything is written), takes each chunk from bytes already on
this machine (a partial file of an earlier, killed pull, or an object of the local store whose
manifest lists it) or else reads it, in ranged GETs of back-to-back chunks, and hands the
reassembled file back for the whole sha256 check. Manifests of format 1 (each chunk its own
object, from earlier releases) are still read. Remotes are used through their ``upload``,
``read_range``, ``list_objects`` and ``touch`` only: they know nothing of chunks.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from model_filer.errors import IntegrityError, RemoteObjectMissingError
from model_filer.local.freshness import changed_while_pushed, write_stamp
from model_filer.registry.model import Entry
from model_filer.remotes import Progress, Remote, RemoteObject
from model_filer.remotes.sources import Source, ended
from model_filer.storage import REFRESH_AFTER, storage_key
from model_filer.storage.chunks import MIN_AVG, SMALL_MAX, cut
from model_filer.storage.manifest import (
    MAX_MANIFEST_BYTES,
    Chunk,
    encode_manifest,
    fits,
    needs,
    read_manifest,
)
from model_filer.storage.packs import PACK_TARGET, Span, range_limit, spans
from model_filer.storage.stored import (
    RAW,
    decode,
    encode,
    level_for,
    max_stored_size,
    may_hold,
)
from model_filer.transfer.watched import moved, send_watched

if TYPE_CHECKING:
    from concurrent.futures import Future

READ_PIECE = 1024 * 1024  # bytes read back at once to hash (from the page cache)

# A whole model this big is looked up before it goes up: it may be there already (the same
# bytes under another name, or pushed from another clone), and its bytes cost more than the
# lookup's round trip. A smaller one goes straight up: a new model is the usual case, where a
# lookup is one more round trip a model, and an upload renews one already there as gc needs
# (Remote.upload).
LOOKUP_FROM = 1024 * 1024
# Packs going up at once while the next fills: each is a multipart upload of 8 parts in flight,
# and one alone idles while its last parts finish (measured on loopback S3: 0.73x upload_file's
# rate with one, 1.04x with two). Parts are read as they are sent (see _Pack).
PACKS_UPLOADING = 2
RANGE_JOBS = 8  # ranged GETs in flight (each up to RANGE_MAX in memory)

#: Where the chunks of objects on this machine are: chunk sha256 -> (file, offset, size).
ChunkIndex = dict[str, tuple[Path, int, int]]
#: Where chunks are on remotes, as the maps this machine keeps say: chunk sha256 -> Chunk.
PackIndex = dict[str, Chunk]


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

    ``temp`` names fresh temp files (a pack's compressed chunks wait in one); ``jobs``
    chunks of format 1 move at once; ``known`` tells where the maps this machine keeps place
    chunks (a push names those the remote still holds instead of uploading them).
    """

    def __init__(
        self,
        remote: Remote,
        temp: Callable[[str], Path],
        jobs: int,
        known: Callable[[], PackIndex] = dict,
    ) -> None:
        self.remote = remote
        self.temp = temp
        self.jobs = max(1, jobs)
        self.known = known

    # -- the remote's side --------------------------------------------------------------------
    def _get(
        self, key: str, limit: int, what: str, size: int, name: str, legacy: bool = False
    ) -> bytes:
        """Read the object ``key`` (``size`` bytes expected, at most ``limit``) of model
        ``name``; ``legacy``: a chunk of format 1."""
        too_big = IntegrityError(
            f"The remote's {what} is larger than the {limit} bytes it may be; it was not read "
            f"further and nothing was written. "
            f"{repair_advice(self.remote, key, name, legacy, at_length=False)}"
        )
        return self.remote.read_bytes(key, limit, size, too_big)

    def _decode(
        self,
        blob: Any,
        size: int,
        what: str,
        key: str,
        name: str,
        legacy: bool = False,
        shared: bool = False,
    ) -> Any:
        """:func:`decode` the stored object ``blob`` read from ``key`` (of model ``name``);
        if it is damaged, the error says how to repair it (:func:`repair_advice`)."""
        try:
            return decode(blob, size, what)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{exc} {repair_advice(self.remote, key, name, legacy, shared)}"
            ) from None

    def _put(self, data: Iterable[Any], key: str, sha256: str) -> None:
        """Upload the buffers ``data`` as the object ``key``."""
        self.remote.upload_parts(data, key, sha256)

    def _keep(self, found: RemoteObject) -> None:
        """Refresh an object a push reuses if gc could collect it soon (see REFRESH_AFTER)."""
        if datetime.now(UTC) - found.modified > REFRESH_AFTER:
            self.remote.touch(found.key)

    def _listed(self, prefix: str) -> dict[str, RemoteObject]:
        return {obj.key: obj for obj in self.remote.list_objects(prefix)}

    # -- push ---------------------------------------------------------------------------------
    def push(
        self,
        fh: IO[bytes],
        entry: Entry,
        progress: Progress | None,
        stamp: tuple[int, ...] | None = None,
    ) -> tuple[str, bytes, list[Chunk]]:
        """Store the verified open file ``fh`` of ``entry``; return its key, its map and the
        chunks it places (``b""`` and none for a small model, stored whole). ``stamp`` is
        :func:`write_stamp` of ``fh`` when it was verified (default: now)."""
        if entry.size <= SMALL_MAX:
            return self._push_whole(fh, entry, progress), b"", []
        return self._push_chunks(fh, entry, progress, stamp)

    def _push_whole(self, fh: IO[bytes], entry: Entry, progress: Progress | None) -> str:
        key = storage_key("objects", entry.sha256)
        found = self.remote.stat(key) if entry.size >= LOOKUP_FROM else None  # (with its age)
        if found is not None and may_hold(found.size, entry.size):
            self._keep(found)
        else:
            data = fh.read()
            if hashlib.sha256(data).hexdigest() != entry.sha256:  # (in memory: cheap)
                raise changed_while_pushed(entry.name, "it no longer holds its bytes")
            self._put(encode(data, level_for(entry.size)), key, entry.sha256)
        if progress is not None:
            progress(entry.size)
        return key

    def _push_chunks(
        self,
        fh: IO[bytes],
        entry: Entry,
        progress: Progress | None,
        stamp: tuple[int, ...] | None,
    ) -> tuple[str, bytes, list[Chunk]]:
        from concurrent.futures import ThreadPoolExecutor  # (not on the hooks' path)

        placed: dict[str, Chunk | tuple[_Pack, int, int]] = {}  # sha -> where, or pack being made
        order: list[tuple[str, int]] = []
        reused: dict[str, RemoteObject] = {}
        with ThreadPoolExecutor(PACKS_UPLOADING + 1) as pool:
            known = self.known()
            listing = pool.submit(self._listed, storage_key("packs", "")) if known else None
            base, fd = fh.tell(), fh.fileno()
            stamp = stamp or write_stamp(os.fstat(fd))  # (as it was verified)
            packer = _Packer(self, pool, progress, (entry.name, fd, stamp))
            level = level_for(entry.size)
            try:
                for piece, data in cut(fh, entry.size):
                    sha = piece.sha256
                    order.append((sha, piece.size))
                    if sha not in placed:
                        old = known.get(sha)
                        found = None if old is None or listing is None else listing.result()
                        there = None if found is None or old is None else found.get(old.key())
                        if old is None or there is None or there.size != old.pack_size:
                            placed[sha] = packer.add(
                                sha, base + piece.offset, encode(data, level), piece.size
                            )
                            continue
                        placed[sha] = old
                        reused[there.key] = there
                    if progress is not None:  # (a chunk put in a pack counts once it is up)
                        progress(piece.size)
                packer.finish()
                if moved(fd, stamp):  # written to since it was verified? the map must be right
                    _recut(fd, base, entry, order)
            except BaseException:
                packer.abort()
                raise
        for there in reused.values():
            self._keep(there)
        chunks = [_placed(sha, size, placed[sha]) for sha, size in order]
        manifest = encode_manifest(entry.sha256, entry.size, chunks)
        key = storage_key("maps", entry.sha256)
        # Last: the map names only what is now stored.
        self._put_map(manifest, key, entry.sha256, entry.name)
        return key, manifest, chunks

    def _put_map(self, manifest: bytes, key: str, sha256: str, name: str) -> None:
        """Upload the map ``manifest`` as ``key``. Its key names the model, not these bytes:
        a map there of the same length may place chunks elsewhere (a repair names new packs),
        and remotes keep an object of the right length at a key that names its bytes. So
        one of other bytes goes first; one of these bytes is renewed, as an upload would."""
        found = self.remote.stat(key)
        if found is not None and found.size == len(manifest):
            if self._get(key, MAX_MANIFEST_BYTES, f"map {key}", found.size, name) == manifest:
                self._keep(found)
                return
            self.remote.delete(key)  # (a pull in between finds none, and may try again)
        self._put([manifest], key, sha256)

    def present(self, entry: Entry) -> bool:
        """Whether ``entry``'s stored bytes are all on the remote: the object, or the
        manifest and every pack (or chunk) it names, at the lengths it records (checked on
        the remote, not assumed)."""
        key = entry.key or ""
        if key == storage_key("objects", entry.sha256):
            found = self.remote.stat(key)
            return found is not None and may_hold(found.size, entry.size)
        try:
            _, chunks = read_manifest(self.remote, key, entry.sha256, entry.size)
        except (IntegrityError, LookupError):  # damaged, or missing: not on the remote
            return False
        need = needs(chunks)
        listed: dict[str, int] = {}
        for prefix in {k.rpartition("/")[0] + "/" for k in need}:
            listed.update(self.remote.list_sizes(prefix))
        return all(fits(sizes, listed.get(k)) for k, sizes in need.items())

    # -- fetch --------------------------------------------------------------------------------
    def fetch_whole(self, key: str, entry: Entry, tmp: Path) -> tuple[int, str]:
        """Download the stored object ``key`` of ``entry`` into ``tmp``; return what came
        (size, sha256) for the caller's check."""
        limit = max_stored_size(entry.size)
        blob = self._get(key, limit, f"object {key}", entry.size + 1, entry.name)
        data = self._decode(blob, entry.size, f"object {key}", key, entry.name)
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
    ) -> tuple[int, str, bytes, list[Chunk]]:
        """Assemble ``entry`` in ``partial`` from its chunks; return (size, sha256, manifest,
        the chunks read from packs: whose places the caller's sha256 check has now proved).

        What ``partial`` already holds (a killed pull's chunks, checked by their hashes) and
        what objects on this machine hold (``local()``, checked too) is not downloaded again.
        Downloaded chunks are checked by the whole file's sha256, hashed in order as they
        land; when it fails, the chunk at fault is found and named.
        """
        hint = _manifest_size(entry.size)
        manifest, chunks = read_manifest(self.remote, key, entry.sha256, entry.size, hint)
        where: dict[str, list[int]] = {}
        in_order, offset = [], 0
        for chunk in chunks:
            where.setdefault(chunk.sha256, []).append(offset)
            in_order.append((offset, chunk.size, chunk.sha256))
            offset += chunk.size
        first = {c.sha256: c for c in reversed(chunks)}  # where each is read from
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        hasher: _InOrder | None = None
        try:
            held = os.fstat(fd).st_size
            if held > entry.size:
                os.ftruncate(fd, 0)
                held = 0
            hasher = _InOrder(fd, in_order)
            todo: list[Chunk] = []
            index: ChunkIndex | None = None
            for sha, offsets in where.items():
                size = first[sha].size
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
                    todo.append(first[sha])
                else:
                    _write_all(fd, data, offsets, progress)
                    hasher.landed(sha)
            reads = spans(todo, range_limit(entry.size))
            self._download_chunks(entry.name, fd, reads, where, progress, hasher.landed)
            os.ftruncate(fd, entry.size)
            digest = hasher.hexdigest()
            if digest != entry.sha256:
                _name_bad_chunk(self.remote, entry.name, fd, todo, where)
            return entry.size, digest, manifest, [c for c in todo if c.pack is not None]
        finally:
            if hasher is not None:
                hasher.stop()
            os.close(fd)

    def _download_chunks(
        self,
        name: str,
        fd: int,
        reads: list[Span],
        where: dict[str, list[int]],
        progress: Progress | None,
        landed: Callable[[str], None],
    ) -> None:
        def one(span: Span) -> None:
            try:
                read(span)
            except RemoteObjectMissingError:
                raise RemoteObjectMissingError(
                    f"{self.remote.url(span.key)}, which holds chunks of this model, does not "
                    "exist on the remote (deleted by hand, or by the gc of another repository "
                    f"that shares the prefix?). On a machine that holds the model, run "
                    f"`model-filer push {name}`: it puts them back. Then pull again.",
                    key=span.key,
                    address=self.remote.address,
                ) from None

        def read(span: Span) -> None:
            head = span.chunks[0]
            if head.pack is None:  # format 1: the chunk's own stored object
                what = f"chunk {span.key}"
                limit = max_stored_size(head.size)
                blob: Any = self._get(span.key, limit, what, head.size + 1, name, legacy=True)
                data = self._decode(blob, head.size, what, span.key, name, legacy=True)
                _write_all(fd, data, where[head.sha256], progress)
                landed(head.sha256)
                return
            blob = memoryview(self.remote.read_range(span.key, span.start, span.length))
            if blob.nbytes != span.length:
                raise IntegrityError(
                    f"The remote's pack {span.key} ends before the chunks its map places in it "
                    f"(bytes {span.start}..{span.start + span.length}). Nothing was loaded. "
                    f"{repair_advice(self.remote, span.key, name, shared=True, at_length=False)}"
                )
            for c in span.chunks:
                at = c.offset - span.start
                what = f"chunk {c.sha256} in pack {span.key}"
                stored = blob[at : at + c.stored]
                data = self._decode(stored, c.size, what, span.key, name, shared=True)
                _write_all(fd, data, where[c.sha256], progress)
                landed(c.sha256)

        if not reads:
            return
        from concurrent.futures import ThreadPoolExecutor  # (not on the hooks' path)

        jobs = self.jobs if reads[0].chunks[0].pack is None else RANGE_JOBS
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(one, span) for span in reads]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


class _Pack(Source):
    """A pack being made, and the source its upload reads: each chunk's header byte, then its
    payload from where it already is. A raw chunk is read from the model's own file; a
    compressed one from the pack's spill file, written there as it is made. So a GiB of
    incompressible chunks goes up without being written out again, and nothing waits in
    memory.

    The name is the sha256 of what the pack holds, in order: each chunk's raw sha256, how it
    is stored, its stored length and, when compressed, its payload's sha256. That fixes the
    pack's bytes as a hash of them would, without hashing a GiB of incompressible chunks a
    second time (their sha256 already says what they are).
    """

    def __init__(self, model_fd: int, spill: Path) -> None:
        self._model_fd, self._spill, self._spill_fd, self._spilled = model_fd, spill, -1, 0
        self._starts: list[int] = []  # where each piece begins in the pack
        self._pieces: list[tuple[int, int, bytes]] = []  # (fd, offset, b"") or (-1, 0, bytes)
        self.contents: list[tuple[bytes, int, str]] = []  # header, payload length, its sha256
        self.digest = hashlib.sha256()
        self.size = self.raw = 0
        self.name = ""

    def write(self, sha: str, offset: int, parts: list[Any], stored: int) -> None:
        """Append the chunk ``sha``, at ``offset`` in the model's file, stored as ``parts``
        (``stored`` bytes)."""
        header, payload = bytes(parts[0]), memoryview(parts[1]).cast("B")
        self._add(header, -1, 0, len(header))
        if header == bytes([RAW]):
            self._add(b"", self._model_fd, offset, payload.nbytes)
        else:
            if self._spill_fd < 0:
                flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                self._spill_fd = os.open(self._spill, flags, 0o600)
            self._add(b"", self._spill_fd, self._spilled, payload.nbytes)
            while payload:
                written = os.pwrite(self._spill_fd, payload, self._spilled)
                payload, self._spilled = payload[written:], self._spilled + written
        self.digest.update(bytes.fromhex(sha) + header + stored.to_bytes(8, "big"))
        payload_sha = sha
        if header != bytes([RAW]):
            payload_sha = hashlib.sha256(parts[1]).hexdigest()
            self.digest.update(bytes.fromhex(payload_sha))
        self.contents.append((header, stored - len(header), payload_sha))

    def _add(self, data: bytes, fd: int, offset: int, length: int) -> None:
        self._starts.append(self.size)
        self._pieces.append((fd, offset, data))
        self.size += length

    def seal(self) -> None:
        self.name = self.digest.hexdigest()

    def read_into(self, view: memoryview, offset: int) -> int:
        index, done = bisect.bisect_right(self._starts, offset) - 1, 0
        while done < view.nbytes and 0 <= index < len(self._pieces):
            begin = self._starts[index]
            end = self._starts[index + 1] if index + 1 < len(self._starts) else self.size
            fd, at, data = self._pieces[index]
            skip = offset + done - begin
            n = min(end - begin - skip, view.nbytes - done)
            if fd < 0:
                view[done : done + n] = data[skip : skip + n]
            elif os.preadv(fd, [view[done : done + n]], at + skip) != n:
                raise ended(offset + done, self.size)
            done, index = done + n, index + 1
        return done

    def close(self) -> None:
        """Drop the spill file (once no upload reads the pack)."""
        if self._spill_fd >= 0:
            os.close(self._spill_fd)
            self._spill_fd = -1
            self._spill.unlink(missing_ok=True)


class _Packer:
    """Puts stored chunks into packs, uploading each as it fills, PACKS_UPLOADING at once
    (the next fills meanwhile).

    The packs read the model's file as they go up: when its stat moves meanwhile,
    each pack is read back and checked against what its name says, deleted if it is not (and
    the push fails), kept if it is (another push may rely on it).
    """

    def __init__(
        self,
        chunked: Chunked,
        pool: Any,
        progress: Progress | None,
        watched: tuple[str, int, tuple[int, ...]],
    ) -> None:
        self._chunked, self._pool, self._progress = chunked, pool, progress
        self._watched = watched  # the model's name, file and stamp (see send_watched)
        self._slots = threading.BoundedSemaphore(PACKS_UPLOADING)
        self._uploads: list[tuple[Future[None], _Pack]] = []
        self._open: _Pack | None = None

    def add(self, sha: str, offset: int, parts: list[Any], raw: int) -> tuple[_Pack, int, int]:
        """Append the stored chunk ``sha`` (``raw`` bytes from ``offset`` of the model's file);
        return where it is."""
        stored = sum(memoryview(part).nbytes for part in parts)
        if self._open is not None and self._open.size + stored > PACK_TARGET:
            self._close()  # (full parts: a pack of PACK_TARGET is whole 8 MiB parts)
        pack = self._open
        if pack is None:
            pack = self._open = _Pack(self._watched[1], self._chunked.temp("pack"))
        start = pack.size
        pack.write(sha, offset, parts, stored)
        pack.raw += raw
        return pack, start, pack.size - start

    def _close(self) -> None:
        pack, self._open = self._open, None
        if pack is None:
            return
        pack.seal()
        try:
            self._slots.acquire()
            for done, _ in self._uploads:  # a failed upload stops the push at once
                if done.done():
                    done.result()
            self._uploads.append((self._pool.submit(self._upload, pack), pack))
        except BaseException:
            pack.close()  # (abort() knows only the packs submitted)
            raise

    def _upload(self, pack: _Pack) -> None:
        key = storage_key("packs", pack.name)
        remote = self._chunked.remote

        def holds() -> bool:
            check = _PackCheck(pack.contents)
            remote.download(key, check, None, pack.size)
            return check.whole()

        try:
            send_watched(remote, pack, key, pack.name, None, self._watched, holds)
            if self._progress is not None:
                self._progress(pack.raw)
        finally:
            pack.close()
            self._slots.release()

    def finish(self) -> None:
        """Upload the last pack; wait for every upload (the first failure is raised)."""
        self._close()
        for upload, _ in self._uploads:
            upload.result()

    def abort(self) -> None:
        """Stop: uploads not begun are dropped with their packs' spill files (an upload
        running drops its own when it ends)."""
        if self._open is not None:
            self._open.close()
        for upload, pack in self._uploads:
            if upload.cancel():
                pack.close()


class _PackCheck:
    """A download sink that checks a pack, as it arrives, against what its name says it
    holds (``contents``: each chunk's header, payload length and payload sha256)."""

    def __init__(self, contents: list[tuple[bytes, int, str]]) -> None:
        self._todo = contents[::-1]  # the next one last
        self._left = 0  # payload bytes still to come
        self._digest = hashlib.sha256()
        self._want = ""
        self.bad = False

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        while view.nbytes and not self.bad:
            if self._left == 0 and not self._want:  # a header next
                if not self._todo:
                    self.bad = True  # more bytes than the pack holds
                    break
                header, self._left, self._want = self._todo.pop()
                self._digest = hashlib.sha256()
                if bytes(view[: len(header)]) != header:
                    self.bad = True
                    break
                view = view[len(header) :]
                continue
            take = view[: self._left]
            self._digest.update(take)
            self._left -= take.nbytes
            view = view[take.nbytes :]
            if self._left == 0:
                self.bad = self._digest.hexdigest() != self._want
                self._want = ""
        return memoryview(data).nbytes

    def whole(self) -> bool:
        """Whether every chunk came, each as its name says."""
        return not self.bad and not self._todo and self._left == 0 and not self._want


def _recut(fd: int, base: int, entry: Entry, order: list[tuple[str, int]]) -> None:
    """Cut the model's file again; raise unless it still holds ``entry``'s bytes, cut as
    ``order`` says (then the map describes them, whatever moved its stat: a touch, a link).

    A push trusts the file as its stat was verified, and hashes nothing twice; a stat that
    moved during the push costs this one more read.
    """
    before = write_stamp(os.fstat(fd))
    with open(os.dup(fd), "rb") as again:
        again.seek(base)
        whole, cuts = hashlib.sha256(), []
        for piece, data in cut(again, entry.size):
            whole.update(data)
            cuts.append((piece.sha256, piece.size))
    if whole.hexdigest() != entry.sha256 or cuts != order or moved(fd, before):
        raise changed_while_pushed(entry.name, "its chunks were not cut from its bytes")


def _placed(sha: str, size: int, where: Chunk | tuple[_Pack, int, int]) -> Chunk:
    """The chunk ``sha`` where a push put it: a place reused, or a pack it made (now sealed)."""
    if isinstance(where, Chunk):
        return where
    pack, offset, stored = where
    return Chunk(sha, size, pack.name, offset, stored, pack.size)


def _name_bad_chunk(
    remote: Remote, name: str, fd: int, todo: list[Chunk], where: dict[str, list[int]]
) -> None:
    """Raise for the first downloaded chunk whose bytes are not those its name says (its
    object was changed on the remote, keeping its length)."""
    for c in todo:
        if not _holds(fd, where[c.sha256][0], c.size, c.sha256):
            place = "" if c.pack is None else f" at byte {c.offset}"
            fix = repair_advice(remote, c.key(), name, c.pack is None, c.pack is not None)
            raise IntegrityError(
                f"The remote's {c.key()}{place} does not hold the chunk {c.sha256} its "
                f"manifest names: it was changed after it was uploaded. The model was not "
                f"loaded. {fix}"
            )


def repair_advice(
    remote: Remote,
    key: str,
    name: str,
    legacy: bool = False,
    shared: bool = False,
    at_length: bool = True,
) -> str:
    """How to repair the object ``key`` of model ``name`` on ``remote``.

    A push keeps an object of the length it expects (it cannot see damage ``at_length``
    without reading it back), so that one is deleted first; one of another length a push
    replaces by itself (a pack's or chunk's chunks it stores anew: a pack made again alike
    has the same name, others go in new packs that a new map names).
    ``legacy``: a chunk of format 1, whose push writes a map and so changes the registry;
    ``shared``: a pack, which other models' chunks may sit in.
    """
    push, url = f"run `model-filer push {name}`", remote.url(key)
    if at_length:
        advice = f"Delete {url} from the remote, then, on a machine that holds the model, {push}"
        advice += ": it uploads it again."
    else:
        advice = f"On a machine that holds the model, {push}: it "
        if legacy:  # (a chunk's own object: the push puts its bytes in packs, under a map)
            advice += f"stores the model's chunks again, in packs that a new map names ({url} "
            advice += "is then no longer read)."
        elif shared:  # (a pack is named by what it holds: made again alike, it has that name)
            advice += "stores the model's chunks again, in a pack of the same name, which "
            advice += f"replaces {url}, or in new packs that a rewritten map names."
        else:
            advice += f"replaces {url}."
    if legacy:
        advice += " It stores it in today's format: commit the registry it changes."
    if shared:
        advice += (
            " A model that kept other chunks in that pack may then name itself when pulled, "
            "to be pushed the same way."
        )
    return advice


def _manifest_size(size: int) -> int:
    """How long the manifest of a ``size``-byte model written by this chunker can be: a hint
    that lets a remote fetch it in one request (a longer one is still read, up to its bound)."""
    most_chunks = size // (MIN_AVG // 4) + 1  # FastCDC's smallest chunk: a quarter of the average
    return min(MAX_MANIFEST_BYTES, 256 + 80 * most_chunks)  # ["<64 hex>",<size>], per chunk


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
