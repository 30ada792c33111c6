"""Whether a file holds given bytes: the one freshness check, and its records.

Load, load at a revision, pull, prefetch, push, status and verify all ask :class:`Freshness`;
the object store asks :func:`unchanged` of its own objects that are :func:`recorded`, and
hashes the others (at most :data:`HASHED_UP_TO` bytes) at each use.

The key. A file verified to hold some bytes (hashed, or written from them) is trusted to hold
them, with one ``stat`` and no hashing, while its ``(size, mtime_ns, inode, device, mode)`` are
the recorded ones and so is its ``ctime_ns``, unless its link count moved. Why that is safe:
other bytes put there by a rename or a ``git checkout`` come as a new inode; a write in place
stamps a new mtime; a write whose mtime was set back still moves the ctime, which user space
cannot set. The ctime also moves when a link to the inode is made or removed (model files are
hard links to the store's objects, and another checkout linking the same object touches this
file's inode), so a new ctime is trusted only beside a new link count: a link, not a write.
One rule for model files and store objects alike, so ``load``, ``load(rev=)`` and ``pull`` can
never disagree about a file.

A model folder's records live in ``.model_filer/hashes.json`` plus a journal of later changes
(``hashes.log``, one JSON line each), folded into the JSON when it grows past half its size: a
dump into a folder of 10,000 models then writes one line, not the whole file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from model_filer.errors import IntegrityError
from model_filer.fs.hashing import sha256_stream
from model_filer.fs.layout import INTERNAL_DIR, MODEL_SUFFIX, internal_dir
from model_filer.fs.tempfiles import write_bytes_atomic

if TYPE_CHECKING:
    from model_filer.registry.model import Entry

_RECORD_LEN = 7


def stat_record(st: os.stat_result) -> list[int]:
    """What is remembered of a verified file's stat (see the module's docstring)."""
    return [
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_dev,
        st.st_mode & 0o7777,
        st.st_ctime_ns,
        st.st_nlink,
    ]


def write_stamp(st: os.stat_result) -> tuple[int, ...]:
    """What moves when a file's bytes are written (a push watches it on the file it sends).
    The ctime cannot be set back, so a write that restores the mtime still shows; links made
    by others move it too, which costs only a read-back of what went up."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def changed_while_pushed(name: str, what: str) -> IntegrityError:
    """The error of a push whose file was written to while it was sent; ``what`` it did."""
    return IntegrityError(
        f"{name!r} changed on disk while it was pushed: {what}. Nothing was recorded. Push it "
        "again (if the file no longer holds its bytes, that push says so).",
        name=name,
    )


# A store object this small gets no record: it is hashed at each use instead. That costs more
# than the recorded path (~44 us against ~14 us for 64 KiB), but writing a record is a file
# creation: ~1 ms of CPU when a pull's threads create files on a busy disk, most of a small
# model's pull.
HASHED_UP_TO = 64 * 1024


def recorded(size: int) -> bool:
    """Whether the object store keeps a stat record of an object of ``size`` bytes."""
    return size > HASHED_UP_TO


def unchanged(record: object, st: os.stat_result) -> bool:
    """Whether a file whose stat is now ``st`` still holds what it held when ``record`` was
    taken (:func:`stat_record`): the one freshness rule."""
    if not isinstance(record, list) or len(record) != _RECORD_LEN:
        return False  # also an older version's record: hashed once more
    now = stat_record(st)
    return record[:5] == now[:5] and (record[5] == now[5] or record[6] != now[6])


class ParseMemo:
    """The last parse of a folder's records, by their exact bytes (a folder keeps one: a push
    of 10,000 models asks per model, and parsing 1 MB of JSON each time is what would cost)."""

    def __init__(self) -> None:
        self.raw = self.journal = b""
        self.entries: dict[str, list[Any]] | None = None


class Freshness:
    """What the model files of one folder hold, as far as verified, for one operation.

    Use it as a context manager to :meth:`save` what was learnt at the end.

    Parameters
    ----------
    local_dir : Path
        The model folder.
    memo : ParseMemo, optional
        Kept by the folder across operations, so unchanged records are not parsed again.
    """

    FILENAME = "hashes.json"
    JOURNAL = "hashes.log"
    JOURNAL_MIN = 64 * 1024  # appended to until larger than this and half the JSON

    def __init__(self, local_dir: Path, memo: ParseMemo | None = None) -> None:
        self._dir = local_dir
        self._dir_text = str(local_dir)
        self._path = local_dir / INTERNAL_DIR / self.FILENAME
        self._journal = self._path.with_name(self.JOURNAL)
        self._memo = ParseMemo() if memo is None else memo
        self._cache: dict[str, list[Any]] | None = None
        self._updates: dict[str, list[Any] | None] = {}

    def __enter__(self) -> Freshness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()  # also after a failure: what was verified stays verified

    # -- the check ----------------------------------------------------------------------------
    def _known(self, name: str, st: os.stat_result) -> str | None:
        cached = self._entries.get(name)
        if isinstance(cached, list) and unchanged(cached[:-1], st):
            return str(cached[-1])
        return None

    def lookup(self, path: Path) -> str | None:
        """The sha256 ``path`` was verified to hold if it has not changed since, else None."""
        try:
            return self._known(path.name, os.stat(path))
        except OSError:
            return None

    def open(self, entry: Entry, rehash: bool = True) -> IO[bytes] | None:
        """Open ``entry``'s model file if it holds ``entry``'s bytes, else return ``None``.

        Its record vouches for a file whose stat has not changed since it was verified;
        otherwise (with ``rehash``) the file is hashed once,
        and what it holds is recorded either way. The check runs on the opened descriptor, so
        the bytes verified are the bytes returned even if the path is replaced meanwhile. A
        ``local`` entry whose file changed is an error: nobody else has its bytes.
        """
        path = self._dir / f"{entry.name}{MODEL_SUFFIX}"
        try:
            fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            return None
        st = os.fstat(fh.fileno())
        sha = self._known(path.name, st)
        if sha is None and rehash:
            sha = sha256_stream(fh)
            fh.seek(0)
            self.record(path, sha, st)  # the caller saves once
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

    def holds(self, entry: Entry, rehash: bool = True) -> bool:
        """Whether ``entry``'s model file holds its bytes (a ``stat`` when recorded)."""
        name = entry.name + MODEL_SUFFIX
        try:  # one stat, no path objects: 10,000 present models cost little
            if self._known(name, os.stat(f"{self._dir_text}/{name}")) == entry.sha256:
                return True
        except OSError:
            return False
        try:
            fh = self.open(entry, rehash)
        except IntegrityError:
            return False
        if fh is None:
            return False
        fh.close()
        return True

    def sha256(self, path: Path, recheck: bool = False) -> str | None:
        """sha256 of ``path``: recorded, else hashed (and recorded); None if absent.

        ``recheck`` hashes it whatever the record says (``verify`` trusts nothing).
        """
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None
        with fh:
            st = os.fstat(fh.fileno())
            if not recheck and (sha := self._known(path.name, st)) is not None:
                return sha
            sha = sha256_stream(fh)
        self.record(path, sha, st)
        return sha

    # -- the records --------------------------------------------------------------------------
    @property
    def _entries(self) -> dict[str, list[Any]]:
        if self._cache is None:
            self._cache = self._read()
            _apply(self._cache, self._updates)
        return self._cache

    def _read(self) -> dict[str, list[Any]]:
        raw, journal, memo = _read_bytes(self._path), _read_bytes(self._journal), self._memo
        if memo.entries is None or memo.raw != raw or memo.journal != journal:
            memo.raw, memo.journal, memo.entries = raw, journal, _parse(raw, journal)
        return dict(memo.entries)  # (values are replaced, never changed in place)

    def record(self, path: Path, sha256: str, st: os.stat_result | None = None) -> None:
        """Remember that ``path`` (as ``st`` describes it, default: now) holds ``sha256``."""
        try:
            value = [*stat_record(st or os.stat(path)), sha256]
        except FileNotFoundError:
            return
        self._updates[path.name] = value
        if self._cache is not None:
            self._cache[path.name] = value

    def forget(self, path: Path) -> None:
        """Drop ``path``'s record (it was deleted)."""
        if self._cache is not None:
            self._cache.pop(path.name, None)
        self._updates[path.name] = None

    def save(self) -> None:
        """Merge this instance's updates into the files on disk.

        Appends them to the journal while it is small (one ``write``; a line cut short by
        a crash is skipped when read), else writes the merged JSON atomically and drops the
        journal. No lock: the records are advisory and keyed by stat, so an update lost to a
        concurrent save only costs one re-hash later.
        """
        if not self._updates:
            return
        updates, self._updates = self._updates, {}
        lines = b"".join(
            json.dumps([n, v], separators=(",", ":")).encode() + b"\n" for n, v in updates.items()
        )
        try:  # records that cannot be written (read-only folder) only cost a re-hash
            internal_dir(self._dir)  # made on demand; a symlink there is refused
            if len(lines) + _size(self._journal) <= max(self.JOURNAL_MIN, _size(self._path) // 2):
                # O_NOFOLLOW: a symlink committed as .model_filer/hashes.log must not make
                # us append to a file outside the model folder.
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                with os.fdopen(os.open(self._journal, flags, 0o644), "ab") as fh:
                    fh.write(b"\n" + lines)  # a torn earlier line stays a line of its own
            else:
                merged = self._read()
                _apply(merged, updates)
                data = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()
                write_bytes_atomic(self._path, self._dir, data, "hashes")
                with contextlib.suppress(FileNotFoundError):
                    self._journal.unlink()
        except OSError:
            pass


def _parse(raw: bytes, journal: bytes) -> dict[str, list[Any]]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:  # corrupt: start empty
        data = {}
    entries: dict[str, list[Any]] = data if isinstance(data, dict) else {}
    for line in journal.splitlines():
        try:  # a line cut short by a crash is skipped: it costs a re-hash at most
            name, value = json.loads(line)
        except (ValueError, TypeError):
            continue
        if isinstance(name, str) and (value is None or isinstance(value, list)):
            _apply(entries, {name: value})
    return entries


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # missing or unreadable: nothing recorded
        return b""


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _apply(entries: dict[str, list[Any]], updates: dict[str, list[Any] | None]) -> None:
    for name, value in updates.items():
        if value is None:
            entries.pop(name, None)
        else:
            entries[name] = value
