"""Registry bytes model_filer wrote itself, known by their git blob id: not validated twice.

The commit hook judges every staged registry, and parsing and validating 10,000 entries costs
about 0.1 s on every commit. The bytes the library writes come from validated entries, in the
plain subset of the canonical form (one line a field), so it records their git blob id
(``git hash-object`` of the same bytes) once a write is not followed by a newer one within
50 ms (see :class:`Recorder`). The hook gets the staged blob's
id from git; when that id is recorded, and the bytes hash to it, it reads what it needs (entry
names, local entries, imports) with plain searches over the text. Any other blob, however it
got there, is parsed and validated in full.

The records live in the machine's object store folder (``<store>/verified/v2``), never in the
working tree: a clone or a pull request cannot plant one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import NamedTuple

from .layout import ensure_dir
from .registry import FORMAT_VERSION, HEADER, MAX_REGISTRY_BYTES
from .yamltext import read_scalar

# Versioned: a later model_filer that validates more does not trust what this one recorded.
VERIFIED_DIR = os.path.join("verified", "v2")  # v2: a key must name its sha256
KEEP = 4096  # records kept (most recently written); older ones are removed now and then
_OID_RE = re.compile(r"[0-9a-f]{40}")
# Canonical form (registry_text): entries follow "models:", one block each, its name on a line
# of its own at two spaces, "state" always its first field, list items only under "imports".
# Each pattern starts with a literal, which the regex engine finds fast in 3 MB.
_MODELS = b"\nmodels:\n"
_NO_MODELS = b"\nmodels: {}\n"
_NAME_RE = re.compile(rb"\n  ([^ \n][^\n]*):(?=\n)")
_LOCAL = b"\n    state: local\n"  # (its entry's name is the line before)
_IMPORT_RE = re.compile(rb"\n    - ([^\n]+)")


class Summary(NamedTuple):
    """What the commit hook asks of a registry, read from bytes the library wrote."""

    data: bytes
    start: int  # the newline before the first entry
    local: list[str]
    imports: set[str]

    def names(self) -> list[str]:
        """Every entry's name (asked only when a model file is staged)."""
        return [_scalar(n) for n in _NAME_RE.findall(self.data, self.start)]


def _scalar(text: bytes) -> str:
    return str(read_scalar(text.decode()))


def blob_id(data: bytes) -> str:
    """Git's (SHA-1) blob id of ``data``: what ``git hash-object`` prints for it."""
    import hashlib

    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def record(root: Path, data: bytes) -> None:
    """Note that ``data``, just written as a registry, is canonical and valid.

    Best effort: without a record the hook validates the registry in full, nothing worse.
    """
    folder = root / VERIFIED_DIR
    try:
        ensure_dir(folder)
        path = folder / blob_id(data)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644))
        os.utime(path)  # the newest are kept
        if int.from_bytes(os.urandom(1), "little") < 4:  # ~1 write in 64 looks for old ones
            _prune(folder)
    except OSError:
        pass


class Recorder:
    """Records written registries from a background thread, so a dump does not wait for it.

    The thread records a registry once it has gone ``QUIET`` seconds without a newer write:
    a loop of 10,000 dumps hashes its last registry, not each of them (SHA-1 of 3 MB is ~2 ms
    a write, and the thread started for each one contended with the loop for the GIL). Only
    the newest bytes of each registry wait. At exit, and on :meth:`flush`, whatever is
    pending is recorded at once. A commit made within ``QUIET`` of a write, or after a
    process that ended with ``os._exit`` (no exit handlers), only takes the hook's full check.
    """

    QUIET = 0.05

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):  # the thread does not survive a fork
            os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Path, bytes]] = {}
        self._written: dict[str, float] = {}  # time.monotonic() of each pending write
        self._thread: threading.Thread | None = None
        self._now = threading.Event()  # set while a flush() waits: record without waiting
        self._flushing = 0

    def __call__(self, root: Path, registry: Path, data: bytes) -> None:
        with self._lock:
            self._pending[str(registry)] = (root, data)
            self._written[str(registry)] = time.monotonic()
            if self._thread is not None:
                return  # the running thread takes it
            self._thread = threading.Thread(target=self._run, name="model_filer-verified")
            self._thread.daemon = True  # (flush() at exit waits for it)
            try:
                self._thread.start()
                return
            except RuntimeError:  # the interpreter is shutting down: record it now
                self._thread = None
                del self._pending[str(registry)], self._written[str(registry)]
        record(root, data)

    def _next(self) -> tuple[tuple[Path, bytes] | None, float]:
        """A pending write whose time has come (lock held), else how long to wait for one."""
        now, wait = time.monotonic(), self.QUIET
        for key, written in self._written.items():
            left = written + self.QUIET - now
            if left <= 0 or self._now.is_set():
                del self._written[key]
                return self._pending.pop(key), 0.0
            wait = min(wait, left)
        return None, wait

    def _run(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._thread = None  # (in the same hold: a write now starts a thread)
                        return
                    item, wait = self._next()
                if item is None:
                    self._now.wait(wait)  # a newer write meanwhile pushes its time on
                    continue
                with contextlib.suppress(Exception):  # best effort, like record() itself
                    record(*item)
        finally:
            with self._lock:
                if self._thread is me:  # (an error ended it early)
                    self._thread = None

    def flush(self) -> None:
        """Record everything pending, now (at exit, and for tests and benchmarks)."""
        with self._lock:
            thread = self._thread
            self._flushing += 1
            self._now.set()
        try:
            if thread is not None:
                thread.join()
        finally:
            with self._lock:
                self._flushing -= 1
                if not self._flushing:
                    self._now.clear()


record_later = Recorder()


def _prune(folder: Path) -> None:
    entries = []
    with os.scandir(folder) as found:
        for item in found:
            with contextlib.suppress(OSError):
                entries.append((item.stat(follow_symlinks=False).st_mtime_ns, item.path))
    entries.sort(reverse=True)
    for _, path in entries[KEEP:]:
        with contextlib.suppress(OSError):
            os.unlink(path)


def known(root: Path, oid: str) -> bool:
    """Whether the blob ``oid`` holds registry bytes this user's model_filer wrote here.

    Only an absolute store folder counts (a relative one could lie inside the repository),
    and only a record the current user owns.
    """
    if not _OID_RE.fullmatch(oid) or not root.is_absolute():
        return False  # (a SHA-256 repository's ids are never recorded: full validation)
    try:
        st = os.stat(root / VERIFIED_DIR / oid, follow_symlinks=False)
    except OSError:
        return False
    owner = os.getuid() if hasattr(os, "getuid") else st.st_uid
    return stat.S_ISREG(st.st_mode) and st.st_uid == owner


def summarize(data: bytes, remote_type: str | None = None) -> Summary | None:
    """Local entries and imports of canonical registry bytes (``None`` if not that shape, too
    large for a registry, or of another remote type than ``remote_type``, its file's).
    Only for bytes :func:`known` vouches for: this reads, it does not validate."""
    if len(data) > MAX_REGISTRY_BYTES:
        return None
    if remote_type is not None:
        head = f"{HEADER}format: {FORMAT_VERSION}\nremote:\n  type: {remote_type}\n"
        if not data.startswith(head.encode()):
            return None
    found = data.find(_MODELS)
    if found < 0:
        return Summary(b"", 0, [], set()) if data.endswith(_NO_MODELS) else None
    start = found + len(_MODELS) - 1
    try:
        local = []
        at = data.find(_LOCAL, start)
        while at >= 0:  # rare in a registry being committed: found by a plain search
            line = data[data.rfind(b"\n", start, at) + 1 : at]
            if not (line.startswith(b"  ") and line.endswith(b":")):
                return None
            local.append(_scalar(line[2:-1]))
            at = data.find(_LOCAL, at + 1)
        imports = {_scalar(i) for i in _IMPORT_RE.findall(data, start)}
    except UnicodeDecodeError:
        return None
    return Summary(data, start, local, imports)
