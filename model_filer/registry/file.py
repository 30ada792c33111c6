"""The registry file of a model folder: read, written atomically, changed under its lock.

The registry's content is :mod:`model_filer.registry.model`, its text
:mod:`model_filer.registry.codec`; this module keeps them in step with one file. A
:class:`RegistryFile` keeps the registry it last read or wrote with the exact bytes it came
from, so repeated reads and a dump's transaction do not parse 3 MB again.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from model_filer.errors import RegistryError
from model_filer.fs.layout import registry_filename
from model_filer.fs.locks import FolderLock
from model_filer.fs.tempfiles import write_bytes_atomic
from model_filer.registry.codec import Codec, dumps, parse
from model_filer.registry.model import MAX_REGISTRY_BYTES, Entry, Registry

__all__ = [
    "Codec",
    "Entry",
    "FolderLock",
    "OnWrite",
    "Registry",
    "RegistryFile",
    "dumps",
    "parse",
    "read",
]

OnWrite = Callable[[bytes], None]  # told the bytes of each registry write
_PIECE = 256 * 1024  # a registry is checked against known bytes this much at a time


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _holds(fh: io.BufferedReader, data: bytes) -> bool:
    """Whether the open file holds exactly ``data`` from where it is to its end.

    Compared a piece at a time: reading a 4 MB registry whole allocates 4 MB of fresh pages
    on every transaction, ~1 ms of page faults here, just to find the bytes we wrote.
    """
    view = memoryview(bytearray(_PIECE))
    at = 0
    while n := fh.readinto(view):
        if not data.startswith(view[:n], at):
            return False
        at += n
    return at == len(data)


def _stat_if_holds(path: Path, data: bytes) -> os.stat_result | None:
    """The file's stat if it holds exactly ``data`` (a size that differs needs no read)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            return st if st.st_size == len(data) and _holds(fh, data) else None
    except FileNotFoundError:
        return None


def _read_bytes(path: Path, known: bytes | None = None) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes (bounded: a huge file is refused, not loaded) and its stat.

    When the file holds exactly ``known`` (the bytes last read or written), ``known`` itself
    is returned, so recognising them is an identity test.
    """
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if known is not None and st.st_size == len(known):
                if _holds(fh, known):
                    return known, st
                fh.seek(0)
            # Sized to the file: asking for the whole bound allocates 32 MiB on every read.
            text = fh.read(min(st.st_size, MAX_REGISTRY_BYTES) + 1)
            if len(text) > st.st_size:  # it grew meanwhile (written in place by someone)
                text += fh.read(MAX_REGISTRY_BYTES + 1 - len(text))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(
            f"{path}: cannot read the registry ({exc.strerror}).", path=path
        ) from None
    return text, st


def read(path: Path, codec: Codec | None = None) -> Registry | None:
    """Read the registry at ``path``; ``None`` when the file does not exist."""
    got = _read_bytes(path)
    if got is None:
        return None
    return (codec or Codec()).parse(got[0], str(path), filename=str(path))


class _Last(NamedTuple):
    """The registry last read or written, with the exact bytes it came from."""

    data: bytes
    reg: Registry
    state: tuple[Any, ...]  # reg.state() then: any change to reg since makes this void
    stat: tuple[int, ...]  # the file's stat then, for peek only


class RegistryFile:
    """The registry of one model folder, with locked read-modify-write.

    It keeps the registry it last read or wrote, with those exact bytes: a read of the same
    bytes is a copy, not a parse, and a dump's transaction takes it over instead of parsing
    3 MB again. Keyed by the bytes themselves, so never stale.
    """

    def __init__(self, local_dir: Path, remote_type: str, on_write: OnWrite | None = None) -> None:
        self.local_dir = local_dir
        self.path = local_dir / registry_filename(remote_type)
        self.remote_type = remote_type
        self.codec = Codec()
        self._on_write = on_write  # told the bytes of each write
        self._written: tuple[Any, ...] | None = None  # state() of the registry last written
        self._last: _Last | None = None
        # Orders hand-overs between threads: a transaction takes the registry out under it,
        # and a reader copies it under it, so no reader copies (or puts back) what a
        # transaction is changing.
        self._guard = threading.Lock()

    def lock(self) -> FolderLock:
        """The folder's lock: held for every registry change and file rename."""
        return FolderLock.of(self.local_dir, "registry")

    def _remember(self, data: bytes, reg: Registry, st: os.stat_result) -> None:
        """Make ``reg`` the registry of ``data`` (``reg`` is then shared: not to change)."""
        reg.entries.lowered()  # built by its owner now: peekers in other threads only look
        last = _Last(data, reg, reg.state(), _stat_key(st))
        with self._guard:
            self._last = last

    def _recall(self, data: bytes | None) -> Registry | None:
        """The registry last seen if it is of ``data`` (any bytes when ``None``), unchanged."""
        last = self._last
        if last is None or (data is not None and last.data != data):
            return None
        return last.reg if last.reg.state() == last.state else None

    def _parse(self, data: bytes) -> Registry:
        return self.codec.parse(data, str(self.path), filename=str(self.path))

    def read(self) -> Registry | None:
        """The registry in the file (a copy, free to change); ``None`` when there is none."""
        last = self._last
        got = _read_bytes(self.path, last.data if last is not None else None)
        if got is None:
            return None
        data, st = got
        with self._guard:
            reg = self._recall(data)
            if reg is not None:
                return reg.copy()
        reg = self._parse(data)
        self._remember(data, reg, st)
        return reg.copy()

    def peek(self) -> Registry | None:
        """The registry for an early, advisory look: not to change, not to trust.

        When the file's stat is that of the bytes last read or written here, the registry
        they held is returned without reading 3 MB again; else the file is read. Only for
        checks that are made again under the lock on bytes read then (a dump's early refusal).
        """
        last, reg = self._last, self._recall(None)
        if last is not None and reg is not None:
            with contextlib.suppress(OSError):
                if _stat_key(os.stat(self.path)) == last.stat:
                    return reg
        return self.read()

    def write(self, reg: Registry) -> None:
        """Replace the file with ``reg`` (call with the lock held); unchanged bytes are kept."""
        data = self.codec.dumps(reg)
        st = _stat_if_holds(self.path, data)  # unchanged bytes: keep the mtime, skip the write
        if st is None:
            write_bytes_atomic(self.path, self.local_dir, data, "registry")
            st = os.stat(self.path)
        # The next read of these bytes needs no parse, nor a copy: we made them from ``reg``
        # (a change to ``reg`` after this voids it; the lock is held for the stat).
        self._remember(data, reg, st)
        self._written = reg.state()
        if self._on_write is not None:
            self._on_write(data)

    @contextlib.contextmanager
    def transaction(self, new: Registry) -> Iterator[Registry]:
        """Lock, read (or start from ``new``), yield for changes, write back on success.

        The registry read is the one last read or written here when the file still holds
        its bytes, taken over rather than copied (10,000 entries); it is given back if
        nothing changed. A block that already wrote ``reg`` itself (to order the write before
        a rename) and changed nothing since is not written again. Whether anything changed is
        known from the entries' change count, without copying and comparing 10,000 entries.
        """
        with self.lock():
            last = self._last
            got = _read_bytes(self.path, last.data if last is not None else None)
            reg = new
            if got is not None:
                with self._guard:
                    taken = self._recall(got[0])
                    self._last = None  # no reader may share what this changes
                reg = taken or self._parse(got[0])
            state = reg.state()
            self._written = None
            try:
                yield reg
            except BaseException:
                if got is not None and reg.state() == state:  # untouched: still those bytes
                    self._remember(got[0], reg, got[1])
                raise
            now = reg.state()
            if now != state and now != self._written:
                self.write(reg)
            elif self._written is None and got is not None:
                self._remember(got[0], reg, got[1])
