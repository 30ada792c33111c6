"""One model folder: its registry, its batch of dumps, and the renames of bytes into place.

Everything that changes ``local_dir`` goes through :class:`ModelFolder`: the registry
transaction and the recovery of a dump a killed process left half done, the open batch (state
of this object, not of the process), and the rename of verified bytes into place. Whether a
file holds an entry's bytes is :mod:`model_filer.local.freshness`'s answer. It knows nothing of
remotes beyond the check that a registry belongs to the Filer's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from model_filer.errors import BatchError, UnknownModelError
from model_filer.fs.layout import (
    INTERNAL_DIR,
    MODEL_SUFFIX,
    STAGED_DIR,
    ensure_dir,
    internal_dir,
)
from model_filer.fs.locks import FolderLock
from model_filer.fs.tempfiles import remove_dead_temps, temp_path, write_bytes_atomic
from model_filer.local.freshness import Freshness, ParseMemo
from model_filer.registry.file import OnWrite, RegistryFile
from model_filer.registry.model import Entry, Registry
from model_filer.registry.names import check_name

if TYPE_CHECKING:
    from model_filer.remotes import Remote

READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
GITIGNORE_TEXT = (
    "# Written by model_filer: commit the registry file, not the models.\n"
    f"*{MODEL_SUFFIX}\n"
    f"{INTERNAL_DIR}\n"  # no trailing slash: a file or symlink of that name is ignored too
)
_STAGED_RE = re.compile(r"(?P<name>.+)\.(?P<sha>[0-9a-f]{64})")
#: A dump's bytes as a folder temp file, for the block (its object's lock held); the flag
#: says whether the block puts them in place (then the object is settled at its end).
Placing = Callable[[bool], contextlib.AbstractContextManager[Path]]


class _Batch:
    """An open batch: the registry it holds, and its dumps so far (by name: the last wins).

    Dumps wait as owner-tagged temp files, not staged ones: a reader elsewhere sees no
    half-done dump (and takes no lock), and a killed batch's files are a dead process's
    temps, which the next operation deletes.
    """

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        reg.entries.lowered()  # counted now: case-twin checks read it while threads add
        # The thread that opened it: only it may not use the registry. (A forked child has
        # a copy of the folder object, but is not in the batch: the pid tells.)
        self.thread, self.pid = threading.get_ident(), os.getpid()
        self.lock = threading.Lock()  # dumps from other threads of the process join it
        self.closed = False
        self.held: dict[str, tuple[Path, Entry]] = {}
        self.pushes: set[str] = set()  # names dumped with push=True (the last dump says)
        self.done: list[Entry] = []  # in place once the block ended

    def owned(self) -> bool:
        """Whether the calling thread opened it."""
        return self.thread == threading.get_ident() and self.pid == os.getpid()

    def add(
        self,
        entry: Entry,
        check: Callable[[Registry], None],
        push: bool,
        placing: Placing,
        temp: Callable[[str], Path],
    ) -> bool:
        """Hold a dump for the end of the block; ``False`` when the block has ended."""
        with self.lock:
            if self.closed or self.pid != os.getpid():
                return False
            check(self.reg)
            held = temp(f"{entry.name}.batch")
            with placing(False) as src:
                os.replace(src, held)
            earlier = self.held.get(entry.name)
            self.held[entry.name] = (held, entry)
            self.reg.entries[entry.name] = entry
            (self.pushes.add if push else self.pushes.discard)(entry.name)
            if earlier is not None:  # the same name dumped again (``held`` is a new name)
                with contextlib.suppress(OSError):
                    earlier[0].unlink()
            return True


class ModelFolder:
    """The model files and the registry of one folder, for one remote.

    Parameters
    ----------
    local_dir : Path
        The folder.
    remote : Remote
        The remote its registry must name (checked at every read) and a new one records.
    on_write : callable, optional
        Given the bytes of every registry write.
    """

    def __init__(self, local_dir: Path, remote: Remote, on_write: OnWrite | None = None) -> None:
        self.local_dir = local_dir
        self.registry_file = RegistryFile(local_dir, remote.remote_type, on_write)
        self._remote = remote
        self._memo = ParseMemo()  # the freshness records' last parse
        self._batch: _Batch | None = None  # the open batch, whichever thread's

    # -- paths --------------------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        """The registry file: the one file of this folder to commit."""
        return self.registry_file.path

    def model_path(self, name: str) -> Path:
        """Where the model file of ``name`` lives."""
        return self.local_dir / f"{check_name(name)}{MODEL_SUFFIX}"

    def freshness(self) -> Freshness:
        """What the model files hold, read once for the operation that asks (it saves)."""
        return Freshness(self.local_dir, self._memo)

    # -- registry -----------------------------------------------------------------------------
    def new_registry(self) -> Registry:
        """The empty registry of this folder's remote (for the first write)."""
        remote = self._remote
        return Registry(remote.remote_type, remote.address, remote_id=remote.identity())

    def check(self, reg: Registry) -> Registry:
        """``reg`` itself, once its remote is this folder's (else RemoteMismatchError)."""
        self._remote.check_matches(reg.remote_address, str(self.registry_path), reg.remote_id)
        return reg

    def _own_batch(self) -> _Batch | None:
        """The open batch if this thread opened it."""
        batch = self._batch
        return batch if batch is not None and batch.owned() else None

    def _refuse_in_batch(self, what: str) -> None:
        """Refuse ``what`` in the thread holding a batch (a change would wait on its own
        lock; a read would miss the block's dumps).

        Other threads are not refused: they wait for the block to end, as other processes do.
        """
        if self._own_batch() is not None:
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
        return self.new_registry() if found is None else self.check(found)

    def peek(self) -> Registry:
        """The registry for an early, advisory look (not to change): no re-read of bytes this
        process last read or wrote while the file's stat is unchanged. Whatever is decided
        from it is checked again under the lock."""
        batch = self._own_batch()
        if batch is not None:
            return batch.reg  # (its own, with its dumps so far; read-only here)
        found = self.registry_file.peek()
        return self.new_registry() if found is None else self.check(found)

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
        # (another Filer of the folder, or its other registry, shares the lock the batch holds:
        # the lock itself refuses this thread then)
        self._refuse_in_batch("A registry change other than a dump (remove, push, ...)")
        with self.registry_file.transaction(self.new_registry()) as reg:
            self._recover(self.check(reg))
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
        self, entry: Entry, check: Callable[[Registry], None], push: bool, placing: Placing
    ) -> bool:
        """Record a freshly pickled model as ``entry`` and move its bytes into place.

        ``placing`` gives them as a folder temp file. It is staged under its sha256 before the
        registry is written: if the process dies after the write, the next operation's
        recovery completes the rename; before it, the recovery rolls it back. Inside this
        folder's open batch (any thread), the dump is held for the block's end instead;
        returns whether it was.
        """
        batch = self._batch
        if batch is not None and batch.add(entry, check, push, placing, self.temp):
            return True
        with self.transaction() as reg:
            check(reg)
            with placing(True) as src:  # (lock order: the registry's, then the object's)
                staged = self._stage(src, entry)
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
        if self._own_batch() is not None:
            raise BatchError(
                "filer.batch() is already open on this folder in this thread: batches do not "
                "nest. Dump inside the open one."
            )
        with self.transaction() as reg:  # (another thread's batch: wait for its end)
            batch = self._batch = _Batch(reg)
            staged: list[tuple[Path, Entry]] = []
            written = False
            try:
                try:
                    yield batch
                finally:
                    with batch.lock:  # a dump still under way joins; later ones commit alone
                        batch.closed = True
                    self._batch = None
                for held, entry in batch.held.values():
                    staged.append((self._stage(held, entry), entry))
                if staged:
                    self.registry_file.write(reg)
                written = True
                fresh = self.freshness()
                try:
                    for path, entry in staged:
                        self.install(path, entry, fresh)
                        batch.done.append(entry)
                finally:
                    fresh.save()
            except BaseException:
                for held, _ in batch.held.values():
                    with contextlib.suppress(OSError):
                        held.unlink(missing_ok=True)  # (gone already once staged)
                # Staged files: moved into place if the file names them, else deleted. If
                # this fails too, the next operation's recovery does it.
                with contextlib.suppress(Exception):
                    on_disk = reg if written else self.registry_file.read()
                    self._recover(on_disk or self.new_registry())
                raise

    def temp(self, purpose: str) -> Path:
        """A fresh temp file path owned by this process, on this folder's filesystem."""
        path = temp_path(self.local_dir, purpose)
        ensure_dir(path.parent)
        return path

    def model_lock(self, name: str) -> FolderLock:
        """The lock of one model file: one download of it at a time, across processes."""
        return FolderLock.of(self.local_dir, f"model-{name}")

    def install(self, src: Path, entry: Entry, fresh: Freshness | None = None) -> None:
        """Rename verified bytes into place and remember them (saved now, or by the caller)."""
        path = self.model_path(entry.name)
        os.replace(src, path)
        # rename(2) does nothing when both names are hard links of one file (the same bytes
        # dumped again, or another process linked the same object first): drop ``src``.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src)
        own = fresh is None
        fresh = self.freshness() if fresh is None else fresh
        fresh.record(path, entry.sha256)
        if own:
            fresh.save()

    def drop(self, reg: Registry, entry: Entry, fresh: Freshness) -> None:
        """Delete a model's file and its registry entry (transaction held)."""
        path = self.model_path(entry.name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fresh.forget(path)
        del reg.entries[entry.name]

    def clean_dead_temps(self) -> None:
        """Delete temp files of processes that died (one ``listdir``, no lock)."""
        remove_dead_temps(self.local_dir)


def ensure_gitignore(local_dir: Path) -> None:
    """Keep a ``.gitignore`` in the model folder so only the registry gets committed."""
    path = local_dir / ".gitignore"
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    missing = [line for line in GITIGNORE_TEXT.splitlines()[1:] if line not in current.splitlines()]
    if not current:
        write_bytes_atomic(path, local_dir, GITIGNORE_TEXT.encode(), "gitignore")
    elif missing:
        text = current if current.endswith("\n") else current + "\n"
        text += "".join(f"{line}\n" for line in missing)
        write_bytes_atomic(path, local_dir, text.encode(), "gitignore")
