"""Moving model bytes between a model folder and its remote: one entry, or many in parallel.

Every download takes one path (as huggingface_hub's ``_download_to_tmp_and_move``): stream
into a temp file beside its final place while hashing, check size and sha256, then rename it
into place and hand back the already-open, verified descriptor. Bytes that fail the check are
deleted and never returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from . import resume
from .errors import (
    FolderNotWritableError,
    IntegrityError,
    LocalOnlyError,
    ModelFilerError,
    RemoteError,
    TransferError,
)
from .files import PARTIAL_DIR, internal_dir
from .folder import READ_ONLY_ERRNOS, ModelFolder
from .hashing import CHUNK, HashCache, HashingWriter
from .names import object_key
from .progress import byte_bar, count_bar
from .registry import Entry
from .remotes import Progress, Remote

DEFAULT_JOBS = 16
OFFLOAD_ABOVE = 8 * 1024 * 1024  # transfers are network-bound: overlap round trips, not CPU
# pull fetches models this small without the per-model lock file. That lock only spares a
# second process the same download; installing is atomic and idempotent (verified bytes
# renamed into place), and for a small model the lock file costs more CPU than the duplicate
# download it might save.
UNLOCKED_FETCH = 1024 * 1024


class TransferReport:
    """What a bulk push or pull did: names done, names already fine, and failures."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, ModelFilerError] = {}

    def __repr__(self) -> str:
        return f"TransferReport(done={self.done}, skipped={self.skipped}, failed={self.failed})"

    def raise_failures(self, action: str) -> None:
        """Raise one :class:`TransferError` keeping every failure, if any."""
        if self.failed:
            raise TransferError(action, self.failed)


def _not_pushed(entry: Entry) -> LocalOnlyError:
    return LocalOnlyError(
        f"{entry.name!r} is local: it was never pushed, so its bytes exist only on the "
        f"machine that dumped it. Ask its author to run filer.push({entry.name!r}) and "
        "commit the registry."
    )


class Transfers:
    """Fetch and upload the entries of one folder to and from one remote."""

    def __init__(self, folder: ModelFolder, remote: Remote) -> None:
        self.folder = folder
        self.remote = remote

    # -- one entry ----------------------------------------------------------------------------
    def fetch(
        self, entry: Entry, cache: HashCache, place: Callable[[Path], None] | None = None
    ) -> IO[bytes]:
        """Download ``entry``, verify it, rename it into place; return it open at offset 0.

        ``place`` moves the verified temp file to where it belongs (default: the model file).
        The caller holds the lock of that place. A big download resumes: its partial file
        outlives a kill or a cut connection (:mod:`model_filer.resume`), unless what arrived
        failed verification.
        """
        if entry.state != "synced" or entry.key is None:
            raise _not_pushed(entry)
        resumable = entry.size > resume.RESUMABLE_ABOVE
        if resumable:
            tmp = resume.claim_partial(
                internal_dir(self.folder.local_dir) / PARTIAL_DIR, entry.sha256
            )
            tmp.parent.mkdir(parents=True, exist_ok=True)
        else:
            tmp = self.folder.temp(f"{entry.name}.download")
        keep = False
        try:
            with byte_bar(entry.size, entry.name) as progress:
                if resumable:
                    size, sha = resume.download(
                        self.remote, entry.key, entry.size, entry.sha256, tmp, progress
                    )
                else:
                    size, sha = self._download(entry.key, entry.size, tmp, progress)
            if size != entry.size or sha != entry.sha256:
                raise IntegrityError(
                    f"Downloaded {entry.name!r} from {self.remote.url(entry.key)} does not "
                    f"match the registry: expected {entry.size} bytes, sha256 "
                    f"{entry.sha256}; got {size} bytes, sha256 {sha}. The remote "
                    "object was changed or damaged; it was not loaded. Ask the model's "
                    "author to dump and push it again.",
                    name=entry.name,
                    expected=(entry.size, entry.sha256),
                    actual=(size, sha),
                )
            fh = open(tmp, "rb")  # noqa: SIM115 - returned to the caller: the verified inode
            try:
                if place is None:
                    self.folder.install(tmp, entry, cache)
                else:
                    place(tmp)
            except BaseException:
                fh.close()
                raise
        except IntegrityError:
            raise
        except BaseException:
            keep = resumable  # the next attempt continues from what arrived
            raise
        finally:
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return fh

    def _download(
        self, key: str, size: int, tmp: Path, progress: Progress | None
    ) -> tuple[int, str]:
        """Stream an object into ``tmp``; return the size and sha256 that arrived."""
        with open(tmp, "wb") as fh:
            # A big download is hashed in a thread of its own, off the transfer's single
            # writer thread; for a small one that thread costs more than it saves.
            sink = HashingWriter(fh, offload_bytes=0 if size > OFFLOAD_ABOVE else CHUNK)
            try:
                self.remote.download(key, sink, progress, size)
            finally:
                sha = sink.hexdigest()  # also stops the hashing thread on failure
        return sink.size, sha

    def open(self, entry: Entry, cache: HashCache) -> IO[bytes]:
        """The verified model file of ``entry``, downloaded first when it is missing or stale.

        The local file is hashed at most once; a download happens under the model's lock,
        after checking that another process did not fetch it meanwhile.
        """
        fh = self.folder.open_current(entry, cache)
        if fh is not None:
            return fh
        if entry.state != "synced":
            raise _not_pushed(entry)
        try:
            with self.folder.model_lock(entry.name):
                # Another process may have fetched it while we waited: a stat tells, or a
                # hash of the new file (what we hashed before is remembered by its stat).
                fh = self.folder.open_current(entry, cache)
                return fh if fh is not None else self.fetch(entry, cache)
        except OSError as exc:  # a read-only deployment copy cannot receive a download
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            raise FolderNotWritableError(
                f"{entry.name!r} is not present (or not current) in {self.folder.local_dir}, "
                f"and that folder is read-only ({exc.strerror}), so it cannot be downloaded "
                f"there. Pull it where the folder is writable (`model-filer pull --dir "
                f"{self.folder.local_dir} {entry.name}`), then copy the folder again."
            ) from None

    def upload(self, entry: Entry, cache: HashCache) -> str:
        """Upload a model file that still holds ``entry``'s bytes; return its object key."""
        path = self.folder.model_path(entry.name)
        fh = self.folder.open_current(entry, cache)  # raises when a local file changed
        if fh is None:
            raise LocalOnlyError(
                f"{path} is missing, so local model {entry.name!r} cannot be pushed. "
                f"Dump it again, or filer.remove({entry.name!r})."
            )
        fh.close()
        key = object_key(entry.name, entry.sha256)
        self.remote.ensure_identity()  # recorded in the registry when marked synced
        with byte_bar(entry.size, entry.name) as progress:
            self.remote.upload(path, key, entry.sha256, progress)
        return key

    # -- many entries -------------------------------------------------------------------------
    def pull(
        self,
        entries: Sequence[Entry],
        jobs: int | None = None,
        on_done: Callable[[int], object] | None = None,
    ) -> TransferReport:
        """Download the synced ``entries`` whose file is missing or stale, ``jobs`` at a time."""
        cache = self.folder.cache()
        report = TransferReport()
        todo = []
        for entry in entries:
            if entry.state != "synced":
                continue
            if self.folder.holds(entry, cache):
                report.skipped.append(entry.name)
            else:
                todo.append(entry)

        def one(entry: Entry) -> None:
            if entry.size <= UNLOCKED_FETCH:
                self.fetch(entry, cache).close()
                return
            with self.folder.model_lock(entry.name):
                if not self.folder.holds(entry, cache):  # another process may have won
                    self.fetch(entry, cache).close()

        try:
            if self._reachable(todo, report):
                self.run_parallel(todo, one, report, jobs, "pull", on_done)
        finally:
            cache.save()  # once for all models, not once per download
        return report

    def push(
        self, entries: Sequence[Entry], jobs: int | None = None
    ) -> tuple[dict[str, tuple[str, str]], TransferReport]:
        """Upload ``entries``; return name -> (sha256, key) of those uploaded, and the report."""
        cache = self.folder.cache()
        pushed: dict[str, tuple[str, str]] = {}

        def one(entry: Entry) -> None:
            pushed[entry.name] = (entry.sha256, self.upload(entry, cache))

        report = TransferReport()
        try:
            self.run_parallel(list(entries), one, report, jobs, "push")
        finally:
            cache.save()
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
