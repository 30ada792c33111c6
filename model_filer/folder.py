"""One model folder: its registry, its model files, and whether a file holds an entry's bytes.

Everything that reads or writes ``local_dir`` goes through :class:`ModelFolder`: the registry
transaction and the recovery of a dump a killed process left half done, the verified open of a
model file, and the rename of verified bytes into place. It knows nothing of remotes beyond
the check that a registry belongs to the Filer's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import BatchError, IntegrityError, UnknownModelError
from .files import (
    INTERNAL_DIR,
    MODEL_SUFFIX,
    STAGED_DIR,
    ensure_dir,
    folder_lock,
    internal_dir,
    remove_dead_temps,
    temp_path,
)
from .hashing import HashCache, sha256_stream
from .names import check_name
from .registry import Entry, Registry, RegistryFile

READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
_STAGED_RE = re.compile(r"(?P<name>.+)\.(?P<sha>[0-9a-f]{64})")

#: Raises RemoteMismatchError when a registry records another remote than the Filer's.
RemoteCheck = Callable[[Registry, str], None]
#: Whether a file (its stat) is a verified store object holding the entry's bytes.
Vouch = Callable[[Entry, os.stat_result], bool]


class _Batch:
    """An open batch: the registry it holds, and its dumps so far (by name: the last wins).

    Dumps wait as owner-tagged temp files, not staged ones: a reader elsewhere sees no
    half-done dump (and takes no lock), and a killed batch's files are a dead process's
    temps, which the next operation deletes.
    """

    def __init__(self, reg: Registry, thread: int, registry: str) -> None:
        self.reg = reg
        reg.entries.lowered()  # counted now: case-twin checks read it while threads add
        self.thread = thread  # the one that opened it: only it may not use the registry
        self.registry = registry  # the registry file's name (a folder may hold two kinds)
        self.lock = threading.Lock()  # dumps from other threads of the process join it
        self.closed = False
        self.held: dict[str, tuple[Path, Entry]] = {}
        self.pushes: set[str] = set()  # names dumped with push=True (the last dump says)
        self.done: list[Entry] = []  # in place once the block ended

    def add(
        self,
        tmp: Path,
        entry: Entry,
        check: Callable[[Registry], None],
        push: bool,
        temp: Callable[[str], Path],
    ) -> bool:
        """Hold a dump for the end of the block; ``False`` when the block has ended."""
        with self.lock:
            if self.closed:
                return False
            check(self.reg)
            held = temp(f"{entry.name}.batch")
            os.replace(tmp, held)
            earlier = self.held.get(entry.name)
            self.held[entry.name] = (held, entry)
            self.reg.entries[entry.name] = entry
            (self.pushes.add if push else self.pushes.discard)(entry.name)
            if earlier is not None:  # the same name dumped again (``held`` is a new name)
                with contextlib.suppress(OSError):
                    earlier[0].unlink()
            return True


_OPEN: dict[str, _Batch] = {}  # open batches of this process, by the folder's real path
if hasattr(os, "register_at_fork"):  # a forked child is not in its parent's batch
    os.register_at_fork(after_in_child=_OPEN.clear)


class ModelFolder:
    """The model files and the registry of one folder, for one remote type.

    Parameters
    ----------
    local_dir : Path
        The folder.
    new_registry : callable
        Makes the empty registry of this folder's remote (for the first write).
    check_remote : callable
        Called with every registry read; raises when it belongs to another remote.
    vouch : callable, optional
        Whether a file is the local store's verified object of an entry (a hardlink to it).
    on_write : callable, optional
        Given the bytes of every registry write.
    """

    def __init__(
        self,
        local_dir: Path,
        remote_type: str,
        new_registry: Callable[[], Registry],
        check_remote: RemoteCheck,
        vouch: Vouch | None = None,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.local_dir = local_dir
        self._vouch = vouch
        self.registry_file = RegistryFile(local_dir, remote_type, on_write)
        self._new_registry = new_registry
        self._check_remote = check_remote

    # -- paths --------------------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        """The registry file: the one file of this folder to commit."""
        return self.registry_file.path

    def model_path(self, name: str) -> Path:
        """Where the model file of ``name`` lives."""
        return self.local_dir / f"{check_name(name)}{MODEL_SUFFIX}"

    def cache(self) -> HashCache:
        """The verified-hash cache, read once for the operation that asks."""
        return HashCache(self.local_dir)

    # -- registry -----------------------------------------------------------------------------
    @functools.cached_property
    def _key(self) -> str:
        """The folder's real path: how the process's open batches are found."""
        return os.path.realpath(self.local_dir)

    def _own_batch(self, same_registry: bool = True) -> _Batch | None:
        """The open batch if this thread opened it."""
        batch = self._open_batch(same_registry)
        return batch if batch is not None and batch.thread == threading.get_ident() else None

    def _open_batch(self, same_registry: bool = True) -> _Batch | None:
        """The batch open on this folder in this process, if any (whichever thread's); with
        ``same_registry``, only one of this registry (a folder may hold an S3 and a local one).
        """
        if not _OPEN:
            return None
        batch = _OPEN.get(self._key)
        if batch is None or (same_registry and batch.registry != self.registry_path.name):
            return None
        return batch

    def _refuse_in_batch(self, what: str, same_registry: bool = True) -> None:
        """Refuse ``what`` in the thread holding a batch (a change would wait on its own
        lock; a read would miss the block's dumps).

        Other threads are not refused: they wait for the block to end, as other processes do.
        """
        if self._own_batch(same_registry) is not None:
            raise BatchError(
                f"{what} cannot run inside filer.batch(): the block holds the registry until "
                "it ends, and only dump() is batched. Call it after the with-block."
            )

    def read(self) -> Registry:
        """The registry as it is now (empty when none exists yet), without a lock.

        The file is replaced atomically, so a reader sees a whole version. A dump that a
        killed process left half done is finished first, under the lock, when one waits.
        """
        self._refuse_in_batch("Reading the registry (load, pull, push, list_files, ...)")
        if self.interrupted():
            try:
                with self.transaction() as reg:
                    return reg.copy()
            except OSError as exc:  # a read-only copy: nobody can be writing to it
                if exc.errno not in READ_ONLY_ERRNOS:
                    raise
        found = self.registry_file.read()
        if found is None:
            return self._new_registry()
        self._check_remote(found, str(self.registry_path))
        return found

    def peek(self) -> Registry:
        """The registry for an early, advisory look (not to change): no re-read of bytes this
        process last read or wrote while the file's stat is unchanged. Whatever is decided
        from it is checked again under the lock."""
        batch = self._own_batch()
        if batch is not None:
            return batch.reg  # (its own, with its dumps so far; read-only here)
        found = self.registry_file.peek()
        if found is None:
            return self._new_registry()
        self._check_remote(found, str(self.registry_path))
        return found

    def entry(self, name: str, reg: Registry | None = None) -> Entry:
        """The entry of ``name``; :class:`UnknownModelError` names the known ones if none."""
        reg = self.read() if reg is None else reg
        entry = reg.entries.get(check_name(name))
        if entry is None:
            raise UnknownModelError(name, self.registry_path, reg.entries)
        return entry

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Registry]:
        """Lock, recover, yield the registry for changes, write it back if it changed."""
        # (any registry of the folder: they share the lock the batch holds)
        self._refuse_in_batch("A registry change other than a dump (remove, push, ...)", False)
        with self.registry_file.transaction(self._new_registry()) as reg:
            self._check_remote(reg, str(self.registry_path))
            self._recover(reg)
            yield reg

    def interrupted(self) -> bool:
        """Whether a dump may be half done (a staged file waits): recovery must run first."""
        try:
            return bool(os.listdir(self._staged_dir))
        except OSError:
            return False

    def _recover(self, reg: Registry) -> None:
        """Finish or roll back a dump that a killed process left half done (lock held)."""
        remove_dead_temps(self.local_dir)
        staged_dir = self._staged_dir
        with contextlib.suppress(FileNotFoundError):
            for staged in staged_dir.iterdir():
                match = _STAGED_RE.fullmatch(staged.name)
                if match is None:
                    continue  # not ours: never delete what we did not write
                entry = reg.entries.get(match["name"])
                if entry is not None and entry.sha256 == match["sha"]:
                    self.install(staged, entry)
                else:
                    staged.unlink()

    def commit_dump(
        self, tmp: Path, entry: Entry, check: Callable[[Registry], None], push: bool = False
    ) -> bool:
        """Record a freshly pickled ``tmp`` as ``entry`` and move it into place.

        The file is staged under its sha256 before the registry is written: if the process
        dies after the write, the next operation's recovery completes the rename; before it,
        the recovery rolls it back. Inside an open batch (any thread of this process), the
        dump is held for the block's end instead; returns whether it was.
        """
        batch = self._open_batch()
        if batch is not None and batch.add(tmp, entry, check, push, self.temp):
            return True
        with self.transaction() as reg:
            check(reg)
            staged = self._stage(tmp, entry)
            reg.entries[entry.name] = entry
            self.registry_file.write(reg)
            self.install(staged, entry)
        return False

    @property
    def _staged_dir(self) -> Path:
        """Dumps between their registry write and their rename (see :meth:`commit_dump`)."""
        return self.local_dir / INTERNAL_DIR / STAGED_DIR

    def _stage(self, tmp: Path, entry: Entry) -> Path:
        internal_dir(self.local_dir)  # (refuses a symlinked folder)
        staged = ensure_dir(self._staged_dir) / f"{entry.name}.{entry.sha256}"
        os.replace(tmp, staged)
        return staged

    @contextlib.contextmanager
    def batch(self) -> Iterator[_Batch]:
        """Hold the registry for a block of dumps (see :meth:`Filer.batch`).

        At the block's end the held dumps are staged, the registry is written once, and each
        file is moved into place: a plain dump's crash protocol, for all of them at once.
        Before that write nothing of the block is recorded; after it, all of it is, and a
        failure while moving files is followed by the recovery at once (or, if that fails
        too, by the next operation's).
        """
        key = self._key
        if self._own_batch(same_registry=False) is not None:
            raise BatchError(
                "filer.batch() is already open on this folder in this thread: batches do not "
                "nest. Dump inside the open one."
            )
        with self.transaction() as reg:  # (another thread's batch: wait for its end)
            batch = _Batch(reg, threading.get_ident(), self.registry_path.name)
            _OPEN[key] = batch  # (one dict operation: atomic under the GIL)
            staged: list[tuple[Path, Entry]] = []
            written = False
            try:
                try:
                    yield batch
                finally:
                    with batch.lock:  # a dump still under way joins; later ones commit alone
                        batch.closed = True
                    _OPEN.pop(key, None)
                for held, entry in batch.held.values():
                    staged.append((self._stage(held, entry), entry))
                if staged:
                    self.registry_file.write(reg)
                written = True
                cache = self.cache()
                try:
                    for path, entry in staged:
                        self.install(path, entry, cache)
                        batch.done.append(entry)
                finally:
                    cache.save()
            except BaseException:
                for held, _ in batch.held.values():
                    with contextlib.suppress(OSError):
                        held.unlink(missing_ok=True)  # (gone already once staged)
                # Staged files: moved into place if the file names them, else deleted. If
                # this fails too, the next operation's recovery does it.
                with contextlib.suppress(Exception):
                    on_disk = reg if written else self.registry_file.read()
                    self._recover(on_disk or self._new_registry())
                raise

    def temp(self, purpose: str) -> Path:
        """A fresh temp file path owned by this process, on this folder's filesystem."""
        path = temp_path(self.local_dir, purpose)
        ensure_dir(path.parent)
        return path

    def model_lock(self, name: str) -> contextlib.AbstractContextManager[object]:
        """The lock of one model file: one download of it at a time, across processes."""
        return folder_lock(self.local_dir, f"model-{name}")

    # -- does this file hold the entry's bytes? ----------------------------------------------
    def open_current(self, entry: Entry, cache: HashCache, rehash: bool = True) -> IO[bytes] | None:
        """Open the model file if it holds ``entry``'s bytes, else return ``None``.

        The cache vouches for a file whose stat has not changed since it was hashed; otherwise
        (with ``rehash``) the file is hashed once, and what it holds is remembered either way.
        The check runs on the opened descriptor, so the bytes verified are the bytes returned
        even if the path is replaced meanwhile. A ``local`` entry whose file changed is an
        error: nobody else has its bytes.
        """
        path = self.model_path(entry.name)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            return None
        st = os.fstat(fh.fileno())
        sha = cache.lookup_stat(path, st)
        if sha is None and self._vouch is not None and self._vouch(entry, st):
            sha = entry.sha256  # a link to the store's object: current without hashing
            cache.record(path, sha, st)
        if sha is None and rehash:
            sha = sha256_stream(fh)
            fh.seek(0)
            cache.record(path, sha, st)  # the caller saves the cache once
        if sha == entry.sha256:
            return fh
        fh.close()
        if sha is not None and entry.state == "local":
            raise IntegrityError(
                f"{path} no longer matches the registry entry {entry.name!r} (sha256 "
                f"{sha}, expected {entry.sha256}): it changed after dump. Dump it again with "
                "overwrite=True, or remove it.",
                name=entry.name,
                expected=(entry.size, entry.sha256),
                actual=(None, sha),
            )
        return None

    def holds(self, entry: Entry, cache: HashCache) -> bool:
        """Whether the model file holds ``entry``'s bytes (a ``stat`` when the cache knows)."""
        if cache.lookup_name(entry.name + MODEL_SUFFIX) == entry.sha256:
            return True  # one stat, no path objects: 10,000 present models cost little
        try:  # (the cache by stat, the store's vouch, else one hash: open_current decides)
            fh = self.open_current(entry, cache)
        except IntegrityError:
            return False
        if fh is None:
            return False
        fh.close()
        return True

    def install(self, src: Path, entry: Entry, cache: HashCache | None = None) -> None:
        """Rename verified bytes into place and remember them (saved now, or by the caller)."""
        path = self.model_path(entry.name)
        os.replace(src, path)
        # rename(2) does nothing when both names are hard links of one file (the same bytes
        # dumped again, or another process linked the same object first): drop ``src``.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src)
        own = cache is None
        cache = self.cache() if cache is None else cache
        cache.record(path, entry.sha256)
        if own:
            cache.save()

    def drop(self, reg: Registry, entry: Entry, cache: HashCache) -> None:
        """Delete a model's file and its registry entry (transaction held)."""
        path = self.model_path(entry.name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        cache.forget(path)
        del reg.entries[entry.name]

    def clean_dead_temps(self) -> None:
        """Delete temp files of processes that died (one ``listdir``, no lock)."""
        remove_dead_temps(self.local_dir)
