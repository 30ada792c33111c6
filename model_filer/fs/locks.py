"""Inter-process locks: a model folder's registry and model locks, and the store's object locks.

Every lock is a :class:`FolderLock` (filelock underneath), got through :meth:`FolderLock.at`,
which gives one lock object per lock file in this process. That one table is process-wide on
purpose: an OS file lock cannot tell two threads of one process apart (each would open its
own descriptor and poll), nor see that the thread asking already holds it. So here the
threads of one process queue on a thread lock and hand the file lock over instead of
dropping and taking it again (16 pull threads installing models: most of a 1,000-model pull
was that polling), and a thread asking for a lock it holds gets :class:`BatchError` instead
of waiting on itself. Entries are weak: a lock nobody uses leaves the table.

Lock order: a folder's registry lock, then a model lock, then object locks.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from pathlib import Path

from model_filer.errors import BatchError, StoreError
from model_filer.fs.layout import internal_dir

_TABLE: weakref.WeakValueDictionary[str, FolderLock] = weakref.WeakValueDictionary()
_GUARD = threading.Lock()  # (the table's only: a pull's threads lock objects in parallel)


class FolderLock:
    """An inter-process lock on one file that the threads of one process take in turn.

    Take it with ``with``; get it with :meth:`at` or :meth:`of`, never by constructing it.
    """

    def __init__(self, path: str) -> None:
        from filelock import FileLock as _Os  # imported only when locking

        self.path = path
        mode = _private_mode(os.path.dirname(path))
        self._os = (
            _Os(path, thread_local=False)
            if mode is None
            else _Os(path, mode=mode, thread_local=False)
        )
        self._thread_lock = threading.Lock()
        self._count_lock = threading.Lock()  # guards ``_waiting``
        self._waiting = 0
        self._held = False
        self._owner: int | None = None
        self._pid = os.getpid()
        self.acquisitions = 0  # file-lock acquisitions by this process (a hand-over is none)

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return ``False`` at once if it is taken."""
        if self._owner == threading.get_ident():
            raise BatchError(
                f"This thread already holds {self.path}: a filer.batch() is open on that "
                "folder, and only dump() runs inside it. Call it after the with-block."
            )
        if not blocking:  # (never counted as waiting: a hand-over to it could be lost)
            if not self._thread_lock.acquire(blocking=False):
                return False
        else:
            with self._count_lock:
                self._waiting += 1
            try:
                self._thread_lock.acquire()
            finally:
                with self._count_lock:
                    self._waiting -= 1
        if not self._held:
            from filelock import Timeout

            try:
                self._os.acquire(timeout=-1 if blocking else 0)
            except BaseException as exc:
                self._thread_lock.release()
                if isinstance(exc, Timeout):
                    return False  # (only without blocking)
                raise
            self._held = True
            self.acquisitions += 1
        self._owner = threading.get_ident()
        return True

    def release(self) -> None:
        """Hand the lock to a waiting thread of this process, else release the file lock."""
        self._owner = None
        try:
            with self._count_lock:
                hand_over = self._waiting > 0
            if not hand_over:
                self._held = False
                self._os.release()
        finally:
            self._thread_lock.release()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @classmethod
    def at(cls, path: Path | str) -> FolderLock:
        """The one lock object of this process for the lock file ``path`` (as spelled)."""
        key, pid = str(path), os.getpid()
        lock = _TABLE.get(key)
        if lock is None or lock._pid != pid:  # (a forked child makes its own)
            made = cls(key)  # outside the guard: making one opens nothing, but takes time
            with _GUARD:
                lock = _TABLE.get(key)
                if lock is None or lock._pid != pid:
                    lock = _TABLE[key] = made
        return lock

    @classmethod
    def of(cls, local_dir: Path, name: str) -> FolderLock:
        """The lock ``name`` of a model folder: ``registry`` (every registry change and
        rename into place) or ``model-<name>`` (one download of a model file at a time)."""
        # However the folder is spelled: the thread holding it must be recognised.
        return cls.at(os.path.realpath(internal_dir(local_dir) / f"{name}.lock"))


def _private_mode(directory: str) -> int | None:
    """The mode a new lock file in ``directory`` gets by default (0o666 less the umask) when
    that is private to its owner, else ``None`` (filelock's default, left to decide).

    Said explicitly, it spares filelock a probe of the folder for flock support: a temp file
    made and dropped per new lock file, which is one per object a pull fetches, and as slow
    as any file creation (about 1 ms on some disks). A umask that lets the group write, or a
    default ACL on the folder (which the umask does not govern: a shared store's), keeps
    filelock's default and its probe. The umask is read from /proc for each lock (a notebook
    may change it): about 20 us, the cost of the probe on a fast disk. Elsewhere than Linux
    the default stays.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith(b"Umask:"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    mode = 0o666 & ~umask
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    try:
        os.getxattr(directory, "system.posix_acl_default")
    except OSError:  # none (ENODATA), or no ACLs on this filesystem
        return mode
    return None


def object_lock(root: Path, sha: str) -> FolderLock:
    """The lock of the object ``sha`` of the store at ``root``: one fetch of it at a time."""
    lock_dir = root / "locks"
    try:
        if not os.path.isdir(lock_dir):
            lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(root, "lock an object", exc) from exc
    return FolderLock.at(lock_dir / f"{sha}.lock")
