"""Inter-process locks: a model folder's registry and model locks, and the store's object locks.

Every lock is a :class:`FolderLock` (filelock underneath, or a byte of a shared file: below),
got through :meth:`FolderLock.at`, which gives one lock object per lock file (or byte) in this
process. That one table is process-wide on purpose: an OS file lock cannot tell two threads of
one process apart (each would open its own descriptor and poll), nor see that the thread
asking already holds it. So here the
threads of one process queue on a thread lock and hand the file lock over instead of
dropping and taking it again (16 pull threads installing models: most of a 1,000-model pull
was that polling), and a thread asking for a lock it holds gets :class:`BatchError` instead
of waiting on itself. Entries are weak: a lock nobody uses leaves the table.

The store's object locks share one file, ``locks/objects.lock``: each object's lock is one byte
of it, taken with a Linux open-file-description lock (``F_OFD_SETLK``), which the threads of one
process hold apart as other processes do, and which goes with the descriptor when its process
dies. A pull locks every object it fetches, and a lock file per object was a file creation per
object: on a busy disk, with a pull's threads creating files in one folder, that cost ~1 ms of
CPU each. Where such locks are missing (not Linux, or a filesystem that refuses them), each
object has its own lock file, ``locks/<sha256>.lock``, as before.

Lock order: a folder's registry lock, then a model lock, then object locks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
import threading
import weakref
from pathlib import Path
from typing import Protocol

from model_filer.errors import BatchError, StoreError
from model_filer.fs.layout import internal_dir

_TABLE: weakref.WeakValueDictionary[str, FolderLock] = weakref.WeakValueDictionary()
_GUARD = threading.Lock()  # (the table's only: a pull's threads lock objects in parallel)


class FolderLock:
    """An inter-process lock on one file (or one byte of it) that the threads of one process
    take in turn.

    Take it with ``with``; get it with :meth:`at` or :meth:`of`, never by constructing it.
    """

    def __init__(self, path: str, byte: int | None = None) -> None:
        self.path = path
        self._os: _OsLock
        if byte is not None:
            self._os = _ByteLock(path, byte)
        else:
            from filelock import FileLock as _Os  # imported only when locking

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
    def at(cls, path: Path | str, byte: int | None = None) -> FolderLock:
        """The one lock object of this process for the lock file ``path`` (as spelled), or
        for its ``byte``."""
        pid = os.getpid()
        key = str(path) if byte is None else f"{path}@{byte}"
        lock = _TABLE.get(key)
        if lock is None or lock._pid != pid:  # (a forked child makes its own)
            made = cls(str(path), byte)  # outside the guard: making one opens nothing
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
    made and dropped per new lock file, which is one per model a pull links from the store,
    and as slow as any file creation (about 1 ms on some disks). A umask that lets the group
    write, or a default ACL on the folder (which the umask does not govern: a shared store's),
    keeps filelock's default and its probe. The umask is read from /proc for each lock (a notebook
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


class _OsLock(Protocol):
    """The inter-process half of a :class:`FolderLock` (filelock's interface)."""

    def acquire(self, timeout: float) -> object: ...

    def release(self) -> None: ...


# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
_FLOCK = "hhqqi4x"
_NO_BYTE_LOCKS = {errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
_BYTE_LOCKS = sys.platform == "linux" and struct.calcsize("P") == 8


def _flock(kind: int, byte: int) -> bytes:
    """A ``struct flock`` of ``kind`` (``F_WRLCK``, ``F_UNLCK``) over one ``byte``."""
    return struct.pack(_FLOCK, kind, os.SEEK_SET, byte, 1, 0)


class _ByteLock:
    """One byte of a shared lock file, locked with an open-file-description lock: its own
    descriptor per acquisition, so threads exclude each other too; closing it unlocks."""

    def __init__(self, path: str, byte: int) -> None:
        self.path, self.byte = path, byte
        self._fd: int | None = None
        self._pid = 0  # the process that took it

    def acquire(self, timeout: float) -> None:
        """Take the byte: wait with ``timeout`` -1, else ``filelock.Timeout`` if it is held."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            command = fcntl.F_OFD_SETLKW if timeout < 0 else fcntl.F_OFD_SETLK
            fcntl.fcntl(fd, command, _flock(fcntl.F_WRLCK, self.byte))
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EACCES):
                from filelock import Timeout

                raise Timeout(self.path) from None
            raise
        self._fd, self._pid = fd, os.getpid()

    def release(self) -> None:
        """Let the byte go, then close its descriptor.

        Unlocked first: a child forked while it was held shares the descriptor's open file
        description, and closing alone would leave the byte locked until that child exits.
        (Only by the process that took it: that child's own release just closes its copy.)
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        import fcntl

        try:
            if self._pid == os.getpid():
                with contextlib.suppress(OSError):  # (the close lets it go too, unforked)
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, self.byte))
        finally:
            os.close(fd)


class ObjectLocks:
    """The object locks of the store at ``root``: one fetch of an object at a time.

    Each is a byte of ``locks/objects.lock`` where Linux locks bytes of it on that
    filesystem (tried once, on the first lock), else a file of its own.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._bytes: bool | None = None  # unknown until the first lock

    def of(self, sha: str) -> FolderLock:
        """The lock of the object ``sha`` (a sha256 hex digest: the caller checked it)."""
        if len(sha) != 64 or sha.strip("0123456789abcdef"):
            raise ValueError(f"{sha!r} is not a sha256 hex digest")  # (a caller's bug)
        lock_dir = self.root / "locks"
        shared = lock_dir / "objects.lock"
        try:
            if self._bytes is None:
                lock_dir.mkdir(parents=True, exist_ok=True)
                self._bytes = _BYTE_LOCKS and _locks_bytes(shared)
            elif not os.path.isdir(lock_dir):  # (removed meanwhile: the next lock remakes it)
                lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.root, "lock an object", exc) from exc
        if self._bytes:
            # The first 60 bits of the sha256: two objects sharing a byte is ~2**-60.
            return FolderLock.at(shared, int(sha[:15], 16))
        return FolderLock.at(lock_dir / f"{sha}.lock")


def _locks_bytes(path: Path) -> bool:
    """Whether the filesystem of ``path`` takes open-file-description locks: byte 0 (no
    object's, but for a 2**-60 chance) locked and let go, as a lock will be."""
    from filelock import Timeout

    probe = _ByteLock(str(path), 0)
    try:
        probe.acquire(0)
    except Timeout:  # (held: another probe's)
        return True
    except OSError as exc:
        if exc.errno in _NO_BYTE_LOCKS:
            return False
        raise
    probe.release()
    return True
