"""Moving model bytes between a model folder and its remote: one entry, or many in parallel.

Every download takes one path (as huggingface_hub's ``_download_to_tmp_and_move``): stream
into a temp file in the local object store while hashing, check size and sha256, enter it in
the store, link it into the model folder and hand back the already-open, verified descriptor.
Bytes that fail the check are deleted and never returned. What the store already holds is
linked without the network; when the store cannot be used, downloads go straight into the
model folder as before. A key of the chunked layout (:mod:`model_filer.transfer.chunked`) is
fetched into the same temp or partial file and checked the same way; a push writes that layout
unless the Filer's ``storage`` is ``plain``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from model_filer.errors import (
    FolderNotWritableError,
    IntegrityError,
    LocalOnlyError,
    ModelFilerError,
    RemoteError,
    StoreError,
    TransferError,
)
from model_filer.fs.hashing import CHUNK, HashingWriter
from model_filer.fs.layout import PARTIAL_DIR, internal_dir
from model_filer.local.folder import READ_ONLY_ERRNOS, ModelFolder
from model_filer.local.freshness import Freshness, write_stamp
from model_filer.local.store import ObjectStore, warn_skipped
from model_filer.registry.model import Entry
from model_filer.registry.names import MANIFEST_KINDS, object_key, storage_key_kind
from model_filer.remotes import Progress, Remote
from model_filer.remotes.sources import FileSource
from model_filer.transfer import resume
from model_filer.transfer.progress import byte_bar, count_bar, stall_notice
from model_filer.transfer.watched import send_watched

if TYPE_CHECKING:
    from model_filer.transfer.chunked import Chunked, PackIndex

# Threads per core beyond ~4 only contend for the GIL (a 1,000-model pull on 2 cores: 8 threads
# 5% faster than 16); DVC's default is the same 4 per core.
DEFAULT_JOBS = min(16, 4 * (os.cpu_count() or 4))
OFFLOAD_ABOVE = 8 * 1024 * 1024  # transfers are network-bound: overlap round trips, not CPU
# Chunks of one model in flight, each held in memory: 12 keep a 200 MiB push near 140 MiB RSS
# (tests/test_memory.py's bound is 150; 16 took it to 151), a pull near 110.
CHUNK_JOBS = 12
# pull fetches models this small without the per-model lock file. That lock only spares a
# second process the same work; the object's own lock in the store still makes one download,
# and installing is atomic and idempotent (verified bytes renamed into place).
UNLOCKED_FETCH = 1024 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: How a push lays out bytes on the remote: ``chunked`` (compressed objects and chunks,
#: docs/storage-format.md) or ``plain`` (``<name>/<sha256>.pkl``, the pickle as it is).
STORAGES = ("chunked", "plain")


class TransferReport:
    """What a bulk push or pull did: names done, names already fine, and failures."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.skipped: list[str] = []
        self.linked: list[str] = []  # linked from the local store, no download
        self.failed: dict[str, ModelFilerError] = {}

    def __repr__(self) -> str:
        return (
            f"TransferReport(done={self.done}, linked={self.linked}, skipped={self.skipped}, "
            f"failed={self.failed})"
        )

    def raise_failures(self, action: str) -> None:
        """Raise one :class:`TransferError` keeping every failure, if any."""
        if self.failed:
            raise TransferError(action, self.failed)


class _StoreFile:
    """A store temp file being downloaded into: its write errors (a full disk) belong to the
    store, so the download can fall back to the model folder instead of failing as if the
    remote had."""

    def __init__(self, fh: IO[bytes], error: resume.WriteError) -> None:
        self._fh = fh
        self._error = error

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            raise self._error(exc) from exc


def _not_pushed(entry: Entry) -> LocalOnlyError:
    return LocalOnlyError(
        f"{entry.name!r} is local: it was never pushed, so its bytes exist only on the "
        f"machine that dumped it. Ask its author to run filer.push({entry.name!r}) and "
        "commit the registry."
    )


@contextlib.contextmanager
def _named(entry: Entry) -> Iterator[None]:
    """Say which model an error of the chunked layout is about: its keys name only hashes."""
    try:
        yield
    except (IntegrityError, RemoteError) as exc:
        if isinstance(exc, IntegrityError):
            exc.name = exc.name or entry.name
        exc.args = (f"Model {entry.name!r}: {exc}", *exc.args[1:])
        raise


def _placed(fh: IO[bytes], tmp: Path, place: Callable[[], object]) -> IO[bytes]:
    """Move a verified download into place; return its open file, or close it and re-raise.

    ``tmp`` is gone either way (moved, or deleted).
    """
    try:
        place()
    except BaseException:
        fh.close()
        tmp.unlink(missing_ok=True)
        raise
    return fh


class Transfers:
    """Fetch and upload the entries of one folder to and from one remote.

    ``storage`` is how a push lays out new bytes (:data:`STORAGES`); every layout is read.
    """

    def __init__(
        self, folder: ModelFolder, remote: Remote, store: ObjectStore, storage: str = "chunked"
    ) -> None:
        self.folder = folder
        self.remote = remote
        self.store = store
        self.storage = storage
        self._chunked: Chunked | None = None

    @property
    def chunked(self) -> Chunked:
        """The chunked layout's transfers, made (and imported: hooks that never transfer
        skip it) on first use."""
        if self._chunked is None:
            from model_filer.transfer.chunked import Chunked

            self._chunked = Chunked(self.remote, self.folder.temp, CHUNK_JOBS, self._pack_index)
        return self._chunked

    # -- one entry ----------------------------------------------------------------------------
    def _download(
        self,
        entry: Entry,
        temp: Callable[[str], Path],
        partial_dir: Path,
        direct: bool = False,
    ) -> tuple[Path, IO[bytes]]:
        """Download ``entry`` into a temp file, verify it; return the file and it open at 0.

        ``temp`` names a fresh temp file; a big download resumes instead, from its partial
        file in ``partial_dir``, which outlives a kill or a cut connection (see
        :mod:`model_filer.transfer.resume`) unless what arrived failed verification. The caller
        moves the returned file into place and deletes it if that fails. Unless ``direct``, a failed
        write (a full disk) is the store's :class:`StoreError`, not the remote's.
        """
        if entry.key is None:
            raise _not_pushed(entry)
        kind = storage_key_kind(entry.key)
        resumable = entry.size > resume.RESUMABLE_ABOVE or kind in MANIFEST_KINDS
        if resumable:
            partial_dir.mkdir(parents=True, exist_ok=True)
            tmp = resume.claim_partial(partial_dir, entry.sha256)
        else:
            tmp = temp(f"{entry.name}.download")
        error = None if direct else self._store_error
        done = keep = False
        try:
            with byte_bar(entry.size, entry.name) as progress:
                if kind in MANIFEST_KINDS:
                    with _named(entry):
                        size, sha, manifest, placed = self.chunked.fetch_chunks(
                            entry.key, entry, tmp, progress, self._chunk_index
                        )
                elif kind == "objects":
                    with _named(entry):
                        size, sha = self.chunked.fetch_whole(entry.key, entry, tmp)
                elif resumable:
                    size, sha = resume.download(
                        self.remote,
                        entry.key,
                        entry.size,
                        entry.sha256,
                        tmp,
                        progress,
                        error,
                    )
                else:
                    size, sha = self._stream(entry.key, entry.size, tmp, progress, error)
            if size != entry.size or sha != entry.sha256:
                from model_filer.transfer.chunked import repair_advice

                url = self.remote.url(entry.key)
                # A push keeps what it finds there at the length it expects (a plain object,
                # or a map that parses and places chunks that are all there), so one damaged
                # in place goes first; one of another length it replaces.
                legacy = storage_key_kind(entry.key) == "manifests"  # (its push writes a map)
                fix = repair_advice(
                    self.remote, entry.key, entry.name, legacy, at_length=size == entry.size
                )
                raise IntegrityError(
                    f"Downloaded {entry.name!r} from {url} does not match the registry: "
                    f"expected {entry.size} bytes, sha256 {entry.sha256}; got {size} bytes, "
                    f"sha256 {sha}. The remote object was changed or damaged; it was not "
                    f"loaded. {fix}",
                    name=entry.name,
                    expected=(entry.size, entry.sha256),
                    actual=(size, sha),
                )
            if kind in MANIFEST_KINDS and not direct:
                self.store.record_manifest(entry.sha256, manifest)
                self.store.record_places(self.remote.address, entry.sha256, placed)
            fh = open(tmp, "rb")  # noqa: SIM115 - returned to the caller: the verified inode
            done = True
            return tmp, fh
        except (IntegrityError, StoreError):
            raise  # bad bytes, or a store that cannot hold them: nothing worth resuming
        except OSError as exc:
            if error is not None and exc.errno in _DISK_FULL:
                raise error(exc) from exc  # (the partial goes: the download falls back)
            keep = resumable  # the next attempt continues from what arrived
            raise
        except BaseException:
            keep = resumable
            raise
        finally:
            if not done and not keep:
                tmp.unlink(missing_ok=True)

    def _chunk_index(self) -> dict[str, tuple[Path, int, int]]:
        try:
            return self.store.chunk_index()
        except (OSError, StoreError):  # a store that cannot be read: chunks are downloaded
            return {}

    def _pack_index(self) -> PackIndex:
        try:
            return self.store.pack_index(self.remote.address)
        except (OSError, StoreError):  # a store that cannot be read: chunks are uploaded
            return {}

    def _store_error(self, exc: OSError) -> StoreError:
        return StoreError(self.store.root, "write a download", exc)

    def _stream(
        self,
        key: str,
        size: int,
        tmp: Path,
        progress: Progress | None,
        error: resume.WriteError | None,
    ) -> tuple[int, str]:
        """Stream an object into ``tmp`` while hashing; return the size and sha256 that came."""
        with open(tmp, "wb") as fh:
            # A big download is hashed in a thread of its own, off the transfer's single
            # writer thread; for a small one that thread costs more than it saves.
            target = fh if error is None else cast(IO[bytes], _StoreFile(fh, error))
            sink = HashingWriter(target, offload_bytes=0 if size > OFFLOAD_ABOVE else CHUNK)
            try:
                self.remote.download(key, sink, progress, size)
            finally:
                sha = sink.hexdigest()  # also stops the hashing thread on failure
            try:
                fh.flush()
            except OSError as exc:  # the last buffered bytes, on a disk now full
                if error is None:
                    raise
                raise error(exc) from exc
        return sink.size, sha

    def _link_in(self, entry: Entry, fresh: Freshness) -> None:
        """Link the store's object of ``entry`` into the model folder (object lock held)."""
        final = self.folder.model_path(entry.name)
        if self.store.link_new(entry.sha256, final):
            fresh.record(final, entry.sha256)
        else:  # a file to replace, or a reflink or copy to make: whole before the rename
            dest = self.folder.temp(f"{entry.name}.link")
            try:
                self.store.link(entry.sha256, dest, final)
                self.folder.install(dest, entry, fresh)
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
        self.store.settle(entry.sha256)

    def _from_store(
        self, entry: Entry, fresh: Freshness | None, download: bool
    ) -> IO[bytes] | None:
        """``entry``'s object, open: from the store, downloaded into it first if it lacks it
        and ``download``, else ``None``; with ``fresh``, also linked into the model folder.

        The object's lock is held throughout: another process fetching it is waited for.
        :class:`StoreError` when the store cannot be used.
        """
        sha = entry.sha256
        with self.store.locked(sha):
            obj = self.store.lookup(sha, entry.size)
            fh: IO[bytes]
            if obj is not None:
                fh = open(obj, "rb")  # noqa: SIM115 - returned to the caller
            elif not download:
                return None
            else:  # (recorded by the link's settle, when one follows)
                tmp, fh = self._download(entry, self.store.temp, self.store.root / PARTIAL_DIR)
                _placed(fh, tmp, lambda: self.store.enter(tmp, sha, entry.size, fresh is None))
            try:
                if fresh is not None:
                    self._link_in(entry, fresh)
            except BaseException:
                fh.close()
                raise
        fh.seek(0)
        return fh

    def _direct(self, entry: Entry, fresh: Freshness | None) -> IO[bytes]:
        """Download ``entry`` without the store: into place with ``fresh``, else privately
        (the file is deleted once open)."""
        partial_dir = internal_dir(self.folder.local_dir) / PARTIAL_DIR
        tmp, fh = self._download(entry, self.folder.temp, partial_dir, direct=True)
        if fresh is None:
            tmp.unlink(missing_ok=True)  # the open descriptor keeps the verified bytes
            return fh
        return _placed(fh, tmp, lambda: self.folder.install(tmp, entry, fresh))

    def from_store(self, entry: Entry, fresh: Freshness) -> bool:
        """Link ``entry``'s bytes from the local store if it has them: no network, and no
        hashing but of an object small enough to be hashed at each use.

        The caller holds the model's lock. Returns whether the model file is now in place.
        """
        try:
            fh = self._from_store(entry, fresh, download=False)
        except StoreError as exc:
            warn_skipped(exc)
            return False
        if fh is not None:
            fh.close()
        return fh is not None

    def fetch(self, entry: Entry, fresh: Freshness | None = None) -> IO[bytes]:
        """Download ``entry`` into the store, verify it, and return it open; with ``fresh``,
        link it into place in the model folder (the caller holds the model's lock).

        Without ``fresh``, the model folder's files are not touched: a version the working
        tree does not name, for history. When the store cannot be used, the download goes
        straight into the model folder (or, without ``fresh``, into a private file).
        """
        pushed = entry.state == "synced" and entry.key is not None
        # (the callers that link show one notice for the model, or for all of a pull)
        notice = stall_notice(self.remote, self._what(entry)) if fresh is None else None
        with notice or contextlib.nullcontext():
            try:  # (never pushed: only a store that has it, dumped on this machine, can help)
                fh = self._from_store(entry, fresh, download=pushed)
                if fh is not None:
                    return fh
            except StoreError as exc:
                warn_skipped(exc)
            if not pushed:
                raise _not_pushed(entry)
            fh = self._direct(entry, fresh)
        fh.seek(0)
        return fh

    def open(self, entry: Entry, fresh: Freshness) -> IO[bytes]:
        """The verified model file of ``entry``: as it is, linked from the store, or downloaded.

        The local file is hashed at most once; linking and downloading happen under the
        model's lock, after checking that another process did not do it meanwhile.
        """
        fh = fresh.open(entry)
        if fh is not None:
            return fh
        try:
            with self.folder.model_lock(entry.name):
                # Another process may have fetched it while we waited: a stat tells, or a
                # hash of the new file (what we hashed before is remembered by its stat).
                fh = fresh.open(entry)
                if fh is not None:
                    return fh
                # From the store if it has it (a local model: dumped on this machine), else
                # from the remote.
                with stall_notice(self.remote, self._what(entry)):
                    return self.fetch(entry, fresh)
        except OSError as exc:  # a read-only deployment copy cannot receive a download
            raise self._not_writable(exc, entry.name, "is not present (or not current)") from None

    def _what(self, entry: Entry) -> str:
        """What a download of ``entry`` waits for, for the stall notice."""
        return f"{entry.name!r} from {self.remote.url(entry.key or '')}"

    def _not_writable(self, exc: OSError, name: str, state: str) -> FolderNotWritableError:
        """``exc`` as the error of a read-only model folder; re-raised when it is another."""
        if exc.errno not in READ_ONLY_ERRNOS:
            raise exc
        return FolderNotWritableError(
            f"{name!r} {state} in {self.folder.local_dir}, and that folder is read-only "
            f"({exc.strerror}), so it cannot be downloaded there. Pull it where the folder is "
            f"writable (`model-filer pull --dir {self.folder.local_dir} {name}`), then copy "
            "the folder again."
        )

    def upload(self, entry: Entry, fresh: Freshness, notice: bool = True) -> str:
        """Upload a model file that still holds ``entry``'s bytes; return its object key.

        ``notice=False`` when the caller shows one stall notice for many uploads.
        """
        path = self.folder.model_path(entry.name)
        fh = fresh.open(entry)  # raises when a local file changed
        if fh is None:
            raise LocalOnlyError(
                f"{path} is missing, so local model {entry.name!r} cannot be pushed. "
                f"Dump it again, or filer.remove({entry.name!r})."
            )
        with fh:
            stamp = write_stamp(os.fstat(fh.fileno()))  # as verified: a write after it shows
            plain = self._plain(entry)
            key = object_key(entry.name, entry.sha256) if plain else ""
            self.remote.ensure_identity()  # recorded in the registry when marked synced
            waiting = f"{entry.name!r} to {self.remote.url(key or entry.sha256)}"
            with (
                stall_notice(self.remote, waiting) if notice else contextlib.nullcontext(),
                byte_bar(entry.size, entry.name) as progress,
            ):
                if plain:  # (the verified file: the path may name another by now)
                    self._push_plain(fh, entry, key, progress, stamp)
                    return key
                key, manifest, placed = self.chunked.push(fh, entry, progress, stamp)
        if manifest:
            self.store.record_manifest(entry.sha256, manifest)
            self.store.record_places(self.remote.address, entry.sha256, placed)
        return key

    def _push_plain(
        self,
        fh: IO[bytes],
        entry: Entry,
        key: str,
        progress: Progress | None,
        stamp: tuple[int, ...],
    ) -> None:
        """Upload the verified open file ``fh`` (its stamp then: ``stamp``), read back if it
        was written to meanwhile (see :mod:`model_filer.transfer.watched`)."""

        def holds() -> bool:
            with open(os.devnull, "wb") as null:
                sink = HashingWriter(null)
                self.remote.download(key, sink, None, entry.size)
                return (sink.size, sink.hexdigest()) == (entry.size, entry.sha256)

        watched = (entry.name, fh.fileno(), stamp)
        send_watched(
            self.remote, FileSource(fh.fileno()), key, entry.sha256, progress, watched, holds
        )

    def _plain(self, entry: Entry) -> bool:
        """Whether ``entry`` goes up in the plain layout: the setting, except that a synced
        entry pushed again (a remote that lost it) keeps the layout of its key."""
        if entry.state == "synced" and entry.key is not None:
            return storage_key_kind(entry.key) is None
        return self.storage == "plain"

    def present(self, entry: Entry) -> bool:
        """Whether the remote holds all of ``entry``'s bytes under its key (checked there)."""
        if entry.key is None:
            return False
        if storage_key_kind(entry.key) is None:
            return self.remote.size_of(entry.key) == entry.size
        return self.chunked.present(entry)

    # -- many entries -------------------------------------------------------------------------
    def pull(
        self,
        entries: Sequence[Entry],
        jobs: int | None = None,
        on_done: Callable[[int], object] | None = None,
    ) -> TransferReport:
        """Bring in the synced ``entries`` whose file is missing or stale, ``jobs`` at a time.

        What the local store holds is linked first, without the network; only the rest is
        downloaded. What is learnt of the files is saved once for all models, not per download.
        """
        with self.folder.freshness() as fresh:
            return self._pull(entries, fresh, jobs, on_done)

    def _pull(
        self,
        entries: Sequence[Entry],
        fresh: Freshness,
        jobs: int | None,
        on_done: Callable[[int], object] | None,
    ) -> TransferReport:
        report = TransferReport()
        todo = []
        for entry in entries:
            if entry.state != "synced":
                continue
            if fresh.holds(entry):
                report.skipped.append(entry.name)
                continue
            if not self.store.has(entry.sha256):
                todo.append(entry)
                continue
            try:
                with self.folder.model_lock(entry.name):
                    if fresh.holds(entry):  # another process may have won
                        report.skipped.append(entry.name)
                    elif self.from_store(entry, fresh):
                        report.linked.append(entry.name)
                    else:
                        todo.append(entry)
            except OSError as exc:
                raise self._not_writable(exc, entry.name, "is missing or stale") from None
        if on_done is not None and report.linked:
            on_done(len(report.linked))

        def one(entry: Entry) -> None:
            try:
                if entry.size <= UNLOCKED_FETCH:
                    self.fetch(entry, fresh).close()  # the object's lock still orders it
                    return
                with self.folder.model_lock(entry.name):
                    if not fresh.holds(entry):  # another process may have won
                        self.fetch(entry, fresh).close()
            except OSError as exc:  # reported with the others, not raised from a thread
                raise self._not_writable(exc, entry.name, "is missing or stale") from None

        if todo:
            with stall_notice(self.remote, f"{len(todo)} model(s) from {self.remote.address}"):
                if self._reachable(todo, report):
                    self.run_parallel(todo, one, report, jobs, "pull", on_done)
        return report

    def push(
        self, entries: Sequence[Entry], jobs: int | None = None
    ) -> tuple[dict[str, tuple[str, str]], TransferReport]:
        """Upload ``entries``; return name -> (sha256, key) of those uploaded, and the report."""
        pushed: dict[str, tuple[str, str]] = {}
        report = TransferReport()
        with self.folder.freshness() as fresh:

            def one(entry: Entry) -> None:
                pushed[entry.name] = (entry.sha256, self.upload(entry, fresh, notice=False))

            with stall_notice(self.remote, f"a push to {self.remote.address}"):
                self.run_parallel(list(entries), one, report, jobs, "push")
        return pushed, report

    def _reachable(self, todo: list[Entry], report: TransferReport) -> bool:
        """Probe the remote once before many downloads; on failure mark them all failed.

        An unreachable store or bad credentials then cost one round of retries, not one per
        model.
        """
        if len(todo) < 2 or todo[0].key is None:
            return True
        try:
            self.remote.size_of(todo[0].key)
        except RemoteError as exc:
            report.failed.update((entry.name, exc) for entry in todo)
            return False
        return True

    @staticmethod
    def run_parallel(
        entries: list[Entry],
        fn: Callable[[Entry], None],
        report: TransferReport,
        jobs: int | None,
        action: str,
        on_done: Callable[[int], object] | None = None,
    ) -> None:
        """Run ``fn`` on each entry in a thread pool, filling ``report``."""
        if not entries:
            return
        # Imported here: every hook imports this package, and most never transfer.
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with (
            ThreadPoolExecutor(max_workers=max(1, jobs or DEFAULT_JOBS)) as pool,
            count_bar(0 if on_done else len(entries), action) as bar,
        ):
            tick = on_done or (bar.update if bar is not None else None)
            futures = {pool.submit(fn, e): e.name for e in entries}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    future.result()
                    report.done.append(name)
                except ModelFilerError as exc:
                    report.failed[name] = exc
                if tick is not None:
                    tick(1)
