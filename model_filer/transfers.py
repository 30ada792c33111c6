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

from .errors import (
    IntegrityError,
    LocalOnlyError,
    ModelFilerError,
    RemoteError,
    TransferError,
)
from .folder import ModelFolder
from .hashing import CHUNK, HashCache, HashingWriter
from .names import object_key
from .progress import byte_bar, count_bar
from .registry import Entry
from .remotes import Remote

DEFAULT_JOBS = 16
OFFLOAD_ABOVE = 8 * 1024 * 1024  # transfers are network-bound: overlap round trips, not CPU


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
        The caller holds the lock of that place.
        """
        if entry.state != "synced" or entry.key is None:
            raise _not_pushed(entry)
        tmp = self.folder.temp(f"{entry.name}.download")
        try:
            fh = open(tmp, "w+b")  # noqa: SIM115 - returned to the caller, verified
            try:
                with byte_bar(entry.size, entry.name) as progress:
                    # A big download is hashed in a thread of its own, off the transfer's
                    # single writer thread; for a small one that thread costs more than it saves.
                    offload = 0 if entry.size > OFFLOAD_ABOVE else CHUNK
                    sink = HashingWriter(fh, offload_bytes=offload)
                    try:
                        self.remote.download(entry.key, sink, progress, entry.size)
                    finally:
                        sha = sink.hexdigest()  # also stops the hashing thread on failure
                if sink.size != entry.size or sha != entry.sha256:
                    raise IntegrityError(
                        f"Downloaded {entry.name!r} from {self.remote.url(entry.key)} does not "
                        f"match the registry: expected {entry.size} bytes, sha256 "
                        f"{entry.sha256}; got {sink.size} bytes, sha256 {sha}. The remote "
                        "object was changed or damaged; it was not loaded. Ask the model's "
                        "author to dump and push it again.",
                        name=entry.name,
                        expected=(entry.size, entry.sha256),
                        actual=(sink.size, sha),
                    )
                fh.flush()
                if place is None:
                    self.folder.install(tmp, entry, cache)
                else:
                    place(tmp)
            except BaseException:
                fh.close()
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fh.seek(0)
        return fh

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
        with self.folder.model_lock(entry.name):
            # Another process may have fetched it while we waited: a stat tells, or a hash
            # of the new file (what we hashed before is remembered by its stat).
            fh = self.folder.open_current(entry, cache)
            return fh if fh is not None else self.fetch(entry, cache)

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
