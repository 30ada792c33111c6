"""The local object store: each model's bytes once per machine, named by their sha256.

One store per user (:func:`default_root`) serves every checkout, worktree and clone::

    objects/ab/cdef...      the bytes: read-only, entered only once verified, never partial
    meta/ab/cdef....json    the object's stat as it entered, and the checkouts holding a copy;
                            its own mtime is the object's last use (for ``prune``; for an
                            object too small to be recorded, its own atime)
    manifests/ab/cdef....json  a chunked object's manifest (docs/storage-format.md): where
                            each of its chunks sits, so a pull reads them here, not remotely
    places/<remote>/ab/cdef....json  where that object's chunks are in one remote's packs, as
                            a push put them or a pull read them: a push names them, not sends
    locks/objects.lock      a byte of it per object, locked: two processes fetch it once
                            (``locks/<sha256>.lock`` where bytes cannot be locked)
    tmp/                    owner-tagged temp files; those of dead processes are removed

Bytes enter as a temp file inside the store, then one rename gives them their name, so a
SIGKILL at any point leaves either no object or a whole one. An object is trusted with one
``stat`` while :func:`~model_filer.local.freshness.unchanged` says so of the stat recorded on entry
(the rule model files follow too); entry sets its mtime one second back, so any later write
(which stamps the current time) shows, and such an object is hashed again before it is linked,
and deleted if it changed. An object of at most 64 KiB has no record: it is hashed at each use,
which costs no more than reading a record, where writing one costs a file creation.

Model files in a checkout are links to objects: a reflink where the filesystem can, else a
hardlink (the object is read-only, so an in-place write is refused), else a copy (another
filesystem; or ``MODEL_FILER_LINK=copy``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from model_filer.errors import ModelFilerError, StoreError, StoreWarning
from model_filer.fs.layout import ensure_dir
from model_filer.fs.locks import ObjectLocks
from model_filer.fs.tempfiles import owned_temp_name, remove_dead_temps_in
from model_filer.local.freshness import recorded, stat_record, unchanged
from model_filer.local.store_root import default_root

if TYPE_CHECKING:
    from model_filer.storage.manifest import Chunk

LINK_ENV = "MODEL_FILER_LINK"
READ_ONLY = 0o444
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_BACKDATE_NS = 1_000_000_000  # entry's mtime is set this far back: a later write must show
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EXDEV, errno.EPERM}
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES}
# Failures that say the filesystem cannot do it at all, so the next link need not try. (EXDEV
# is left out: a bind mount of the same filesystem gives it for some folders only.)
_NEVER = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EPERM}


def forced_copy() -> bool:
    """Whether ``MODEL_FILER_LINK=copy`` asks for copies instead of links."""
    value = os.environ.get(LINK_ENV, "").strip().lower()
    if value in ("", "auto"):
        return False
    if value == "copy":
        return True
    raise ModelFilerError(
        f"{LINK_ENV}={value!r} is not understood: set it to 'copy' to put copies of the "
        "store's objects in model folders, or unset it to link them."
    )


def warn_skipped(exc: StoreError) -> None:
    """Say once per place that the store was skipped and why (the operation still works)."""
    warnings.warn(f"{exc} Meanwhile models are fetched directly.", StoreWarning, stacklevel=3)


def _trusted(meta: dict[str, Any], st: os.stat_result) -> bool:
    """Whether an object's stat is the one recorded: then it still holds its bytes."""
    # (recorded as "key" and "seen", the two halves of a stat record, as before)
    return unchanged([*(meta.get("key") or []), *(meta.get("seen") or [])], st)


def _open_unused(path: Path) -> IO[bytes]:
    """``path`` opened to read, its atime left as it was where the owner may (``O_NOATIME``):
    a small object's atime is its last use, and a ``cache verify`` reading it is none."""

    def opener(name: str, flags: int) -> int:
        try:
            return os.open(name, flags | getattr(os, "O_NOATIME", 0))
        except PermissionError:  # (not its owner: a shared store)
            return os.open(name, flags)

    return open(path, "rb", opener=opener)


def reflink(src: Path, dest: Path) -> None:
    """Clone ``src`` into a new file ``dest`` sharing its blocks (copy-on-write)."""
    import fcntl

    with open(src, "rb") as s, open(dest, "xb") as d:
        try:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        except OSError:
            os.unlink(dest)
            raise


class StoreInfo(NamedTuple):
    """What ``model-filer cache info`` prints."""

    root: Path
    objects: int
    bytes: int
    linked: int
    link: str


class PruneReport(NamedTuple):
    """What ``prune`` did: objects evicted and bytes freed; bytes kept and objects in use."""

    evicted: int
    freed: int
    remaining: int
    in_use: int


class ObjectStore:
    """A content-addressed folder of verified, read-only model bytes.

    Parameters
    ----------
    root : Path, optional
        The store's folder; :func:`default_root` when omitted. Created on first use.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = default_root() if root is None else Path(root)
        self._swept = False  # dead processes' temp files removed yet (once per instance)
        self._locks = ObjectLocks(self.root)
        # Per filesystem (st_dev): the best link that worked, so a failed reflink is tried once.
        self._modes: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"ObjectStore({str(self.root)!r})"

    # -- paths --------------------------------------------------------------------------------
    def object_path(self, sha: str) -> Path:
        """Where the object of ``sha`` lives (whether or not it is there)."""
        if not _SHA_RE.fullmatch(sha):
            raise ModelFilerError(f"{sha!r} is not a sha256 hex digest.")
        return self.root / "objects" / sha[:2] / sha[2:]

    def _meta_path(self, sha: str) -> Path:
        return self.root / "meta" / sha[:2] / f"{sha[2:]}.json"

    def _dir(self, path: Path, action: str) -> Path:
        try:
            return ensure_dir(path)
        except OSError as exc:
            raise StoreError(self.root, action, exc) from exc

    def temp(self, purpose: str) -> Path:
        """A fresh temp file path in the store, owned by this process.

        Dead processes' temp files are removed on this process's first use of the store (a
        ``listdir`` per temp file cost more than the download of a small model).
        """
        tmp_dir = self._dir(self.root / "tmp", "create its temp folder")
        if not self._swept:
            remove_dead_temps_in(tmp_dir)
            self._swept = True
        return tmp_dir / owned_temp_name(purpose)

    @contextlib.contextmanager
    def locked(self, sha: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock of one object (across processes) for the block; yield whether it is
        held (``blocking=False``: ``False`` at once when someone else holds it)."""
        lock = self._locks.of(sha)
        try:
            got = lock.acquire(blocking)
        except OSError as exc:
            raise StoreError(self.root, "lock an object", exc) from exc
        try:
            yield got
        finally:
            if got:
                lock.release()

    # -- records ------------------------------------------------------------------------------
    def _read_meta(self, sha: str) -> dict[str, Any]:
        try:
            data = json.loads(self._meta_path(sha).read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_meta(self, sha: str, data: dict[str, Any]) -> None:
        self._write(self._meta_path(sha), json.dumps(data, sort_keys=True).encode())

    def _write(self, path: Path, text: bytes) -> None:
        """Replace ``path`` with ``text`` atomically (a temp file in the store, renamed)."""
        self._dir(path.parent, "record an object")
        tmp = self.temp("meta")
        done = False
        try:
            # os-level calls: a pull writes one record per model, and a Python file object
            # adds three syscalls to each (fstat, isatty, lseek).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                if os.write(fd, text) != len(text):  # a regular file: only when the disk is full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
            finally:
                os.close(fd)
            os.replace(tmp, path)
            done = True
        except OSError as exc:
            raise StoreError(self.root, "record an object", exc) from exc
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    @staticmethod
    def _seal(path: Path) -> None:
        """Make ``path`` read-only and back-date its mtime, so a later write shows."""
        os.chmod(path, READ_ONLY)
        now = time.time_ns()
        os.utime(path, ns=(now, now - _BACKDATE_NS))

    def _record(self, sha: str, **changes: Any) -> None:
        """Record the object's stat now as the one to trust (and ``changes``); lock held.

        Not for an object that is not :func:`~model_filer.local.freshness.recorded`: it is
        hashed at each use.
        """
        st = os.stat(self.object_path(sha))
        if not recorded(st.st_size):
            return
        record = stat_record(st)
        meta = self._read_meta(sha)
        self._write_meta(sha, {**meta, "key": record[:5], "seen": record[5:], **changes})

    def _manifest_path(self, sha: str) -> Path:
        return self.root / "manifests" / sha[:2] / f"{sha[2:]}.json"

    def record_manifest(self, sha: str, manifest: bytes) -> None:
        """Keep the manifest of the object ``sha`` (its chunks then serve other pulls)."""
        with contextlib.suppress(StoreError):  # bookkeeping only: at worst chunks download
            self._write(self._manifest_path(sha), manifest)

    def chunk_index(self) -> dict[str, tuple[Path, int, int]]:
        """Where the chunks of this store's objects are: chunk sha256 -> (object, offset,
        size), from the manifests of objects present (the caller checks the bytes)."""
        from model_filer.storage.manifest import parse_manifest

        index: dict[str, tuple[Path, int, int]] = {}
        top = self.root / "manifests"
        with contextlib.suppress(OSError):
            for path in top.glob("??/*.json"):
                sha = path.parent.name + path.name[:-5]
                if not _SHA_RE.fullmatch(sha) or not self.has(sha):
                    continue
                try:
                    data = path.read_bytes()
                    chunks = parse_manifest(data, sha, None)
                except (OSError, ValueError, AttributeError, ModelFilerError):
                    continue
                offset = 0
                for chunk in chunks:
                    index.setdefault(chunk.sha256, (self.object_path(sha), offset, chunk.size))
                    offset += chunk.size
        return index

    def _places_path(self, remote: str, sha: str) -> Path:
        import hashlib

        tag = hashlib.sha256(remote.encode()).hexdigest()[:32]
        return self.root / "places" / tag / sha[:2] / f"{sha[2:]}.json"

    def record_places(self, remote: str, sha: str, chunks: list[Chunk]) -> None:
        """Keep where on ``remote`` (its address) chunks of the object ``sha`` are: places a
        push made or reused there, or a pull read there and checked (never places a map
        merely names: a damaged map would spread into every model pushed after it)."""
        from model_filer.storage.manifest import encode_places

        if chunks:
            with contextlib.suppress(StoreError):  # bookkeeping only: at worst chunks go up
                self._write(self._places_path(remote, sha), encode_places(chunks))

    def pack_index(self, remote: str) -> dict[str, Chunk]:
        """Where chunks are on ``remote``, as this store has seen them: chunk sha256 -> the
        chunk, in its pack (a push checks that the remote still lists that pack, at that
        length, before naming it)."""
        from model_filer.storage.manifest import parse_places

        index: dict[str, Chunk] = {}
        top = self._places_path(remote, "0" * 64).parent.parent
        with contextlib.suppress(OSError):
            for path in top.glob("??/*.json"):
                try:
                    index.update((c.sha256, c) for c in parse_places(path.read_bytes()))
                except (OSError, ModelFilerError):
                    continue
        return index

    def verify_manifests(self) -> list[str]:
        """Delete the manifests that do not describe their object's bytes (chunk by chunk),
        or whose object is gone; return their sha256s. (A wrong one never yields wrong bytes,
        each chunk is checked when used, but its chunks would be downloaded again.)"""
        import hashlib  # (not on the hooks' path, which import this)

        from model_filer.storage.manifest import parse_manifest

        bad = []
        for path in sorted((self.root / "manifests").glob("??/*.json")):
            sha = path.parent.name + path.name[:-5]
            if not _SHA_RE.fullmatch(sha):  # (no object's: nothing to lock, nothing it names)
                path.unlink(missing_ok=True)
                bad.append(sha)
                continue
            # Under the object's lock, skipped when busy: a download records the manifest
            # before its object enters the store, and holds that lock across both.
            with self.locked(sha, blocking=False) as held:
                if not held:
                    continue
                try:
                    size = self.object_path(sha).stat().st_size
                    chunks = parse_manifest(path.read_bytes(), sha, size)
                    with open(self.object_path(sha), "rb") as fh:
                        fits = all(
                            hashlib.sha256(fh.read(c.size)).hexdigest() == c.sha256 for c in chunks
                        )
                except (OSError, ModelFilerError):
                    fits = False
                if not fits:
                    path.unlink(missing_ok=True)
                    bad.append(sha)
        return bad

    def _evict(self, sha: str) -> None:
        places = self.root.glob(f"places/*/{sha[:2]}/{sha[2:]}.json")  # (every remote's)
        for path in (
            self.object_path(sha),
            self._meta_path(sha),
            self._manifest_path(sha),
            *places,
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def has(self, sha: str) -> bool:
        """Whether an object of that name exists (one ``stat``, no lock, no trust)."""
        try:
            return self.object_path(sha).is_file()
        except OSError:
            return False

    # -- entering and finding objects (the object's lock held) ------------------------------
    def lookup(self, sha: str, size: int) -> Path | None:
        """The object of ``sha`` if it holds those bytes, else ``None``; lock held.

        One ``stat`` when it is as it entered; else (or when it is small) it is hashed again,
        and deleted if its bytes changed.
        """
        obj = self.object_path(sha)
        try:
            st = os.stat(obj)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(self.root, "read an object", exc) from exc
        if st.st_size == size and recorded(size) and _trusted(self._read_meta(sha), st):
            with contextlib.suppress(OSError):
                os.utime(self._meta_path(sha))  # its last use, for prune
            return obj
        # A small object's read moves its atime (its last use, for prune) as the kernel does:
        # setting it here would move the ctime that checkouts' hash records hold of the inode.
        return obj if self.recheck(sha, size) else None

    def recheck(self, sha: str, size: int | None = None, use: bool = True) -> bool:
        """Hash the object again: keep and re-seal it if it holds ``sha``, else delete it.

        ``use``: the read is a use of it, whose atime the kernel may move (a small object's
        last use, for prune); ``cache verify``'s is not.
        """
        obj = self.object_path(sha)
        try:
            from model_filer.fs.hashing import (
                sha256_stream,  # (not on the hooks' path, which import this)
            )

            with open(obj, "rb") if use else _open_unused(obj) as fh:
                got, got_size = sha256_stream(fh), os.fstat(fh.fileno()).st_size
            if got == sha and size in (None, got_size):
                st, kept = os.stat(obj), recorded(got_size)  # (small: hashed at each use)
                if st.st_mode & 0o222 or (
                    kept and self._read_meta(sha).get("key") != stat_record(st)[:5]
                ):
                    self._seal(obj)  # moves the mtime: checkouts' hash caches re-hash once
                if kept:
                    self._record(sha)
                return True
            self._evict(sha)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(self.root, "check an object", exc) from exc
        return False

    def enter(self, tmp: Path, sha: str, size: int, record: bool = True) -> Path:
        """Give verified bytes in the store temp file ``tmp`` their name; lock held.

        When the object is already there, ``tmp`` is dropped and the object kept. Without
        ``record`` the caller records it (:meth:`settle` after linking): until then it has
        no record and would be hashed again before use, never trusted unchecked.
        """
        obj = self.object_path(sha)
        try:
            if self.lookup(sha, size) is not None:
                tmp.unlink()
                return obj
            self._seal(tmp)
            self._dir(obj.parent, "enter an object")
            os.replace(tmp, obj)  # the one step that makes it an object: whole or absent
            if record:
                self._record(sha, copies=[])  # killed before this: hashed again on first use
        except OSError as exc:
            raise StoreError(self.root, "enter an object", exc) from exc
        return obj

    # -- linking into checkouts (the object's lock held) ------------------------------------
    def link_mode(self, dest_dir: Path, dev: int | None = None) -> str:
        """How an object would reach ``dest_dir``: ``reflink``, ``hardlink`` or ``copy``.

        ``dev`` is the device of the object to link, when the caller has its ``stat``.
        """
        if forced_copy():
            return "copy"
        try:
            if dev is None:
                dev = os.stat(self.root).st_dev
            if os.stat(dest_dir).st_dev != dev:
                return "copy"
        except OSError:
            return "copy"
        return self._modes.get(dev, "reflink")

    def link(self, sha: str, dest: Path, final: Path | None = None) -> str:
        """Make the new file ``dest`` hold the object of ``sha``; return how it was made.

        ``final`` is where ``dest`` will be renamed to: recorded for copies, so ``prune``
        knows a checkout uses the object. The object must be trusted (:meth:`lookup`).
        """
        obj = self.object_path(sha)
        mode = "link"
        try:
            dev = os.stat(obj).st_dev
            mode = self.link_mode(dest.parent, dev)
            if mode == "reflink":
                mode = self._try(dev, mode, "hardlink", _NO_REFLINK, lambda: reflink(obj, dest))
            if mode == "hardlink":
                mode = self._try(dev, mode, "copy", _NO_HARDLINK, lambda: os.link(obj, dest))
            if mode == "copy":
                import shutil  # only for copies: hooks start faster without it

                shutil.copyfile(obj, dest)
        except OSError as exc:
            raise StoreError(self.root, f"{mode} an object into {dest.parent}", exc) from exc
        if mode != "hardlink":  # a copy: prune needs to know a checkout uses the object
            with contextlib.suppress(OSError, StoreError):  # bookkeeping only
                meta = self._read_meta(sha)
                copies = {*(meta.get("copies") or []), os.path.abspath(final or dest)}
                self._write_meta(sha, {**meta, "copies": sorted(copies)})
        return mode

    def link_new(self, sha: str, final: Path) -> bool:
        """Hard-link the object of ``sha`` as ``final`` if nothing is there; whether it did.

        One atomic step where hard links are how objects reach ``final``'s folder (a fresh
        clone's pull): no temp name and rename. ``False`` when a file is there already or
        another kind of link is due: the caller goes the way of :meth:`link` and a rename.
        """
        obj = self.object_path(sha)
        try:
            dev = os.stat(obj).st_dev
            if self.link_mode(final.parent, dev) != "hardlink":  # (not yet learned: reflink)
                return False
            os.link(obj, final)
        except OSError:
            return False  # (the long way says what is wrong, if anything is)
        return True

    def _try(
        self, dev: int, mode: str, fallback: str, unable: set[int], make: Callable[[], None]
    ) -> str:
        """Make a link of kind ``mode``; the kind to try next when the filesystem cannot.

        A failure that says the filesystem never can is remembered for its device.
        """
        try:
            make()
        except OSError as exc:
            if exc.errno not in unable:
                raise
            if exc.errno in _NEVER:
                self._modes[dev] = fallback
            return fallback
        return mode

    def settle(self, sha: str) -> None:
        """Record the object's stat after a link and its renames into place; lock held.

        Links and renames move its ctime: without this, the next use would hash it again.
        """
        with contextlib.suppress(OSError, StoreError):  # at worst a re-hash later
            self._record(sha)

    # -- the cache command --------------------------------------------------------------------
    def objects(self) -> Iterator[tuple[str, os.stat_result]]:
        """Every object's sha256 and stat."""
        top = self.root / "objects"
        try:
            prefixes = sorted(os.listdir(top))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(self.root, "list its objects", exc) from exc
        for prefix in prefixes:
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                for rest in sorted(os.listdir(top / prefix)):
                    sha = prefix + rest
                    if _SHA_RE.fullmatch(sha):
                        with contextlib.suppress(FileNotFoundError):
                            yield sha, os.stat(top / prefix / rest)

    def in_use(self, sha: str, st: os.stat_result) -> bool:
        """Whether a checkout holds the object: a hardlink, or a recorded copy still there."""
        if st.st_nlink > 1:
            return True
        for path in self._read_meta(sha).get("copies") or []:
            with contextlib.suppress(OSError):
                if os.stat(path).st_size == st.st_size:
                    return True
        return False

    def _last_use(self, sha: str, st: os.stat_result) -> int:
        if not recorded(st.st_size):  # its last read, as the filesystem keeps it
            return max(st.st_atime_ns, st.st_mtime_ns)
        try:
            return os.stat(self._meta_path(sha)).st_mtime_ns
        except OSError:
            return st.st_mtime_ns

    def describe_link(self, dest_dir: Path) -> str:
        """The link type in use for ``dest_dir``, tried for real on a probe file."""
        if forced_copy():
            return f"copy ({LINK_ENV}=copy)"
        if self.link_mode(dest_dir) == "copy":
            return f"copy ({dest_dir} is on another filesystem than the store)"
        probe, twin = self.temp("probe"), self.temp("probe")
        try:
            probe.write_bytes(b"model_filer")
            for mode, make in (("reflink", reflink), ("hardlink", os.link)):
                try:
                    make(probe, twin)
                    return mode
                except OSError:
                    continue
            return "copy (the filesystem supports neither reflinks nor hardlinks)"
        except OSError as exc:
            raise StoreError(self.root, "try a link", exc) from exc
        finally:
            for path in (probe, twin):
                with contextlib.suppress(OSError):
                    path.unlink()

    def info(self, dest_dir: Path) -> StoreInfo:
        """Location, object count, bytes, objects in use and the link type for ``dest_dir``."""
        found = list(self.objects())
        return StoreInfo(
            root=self.root,
            objects=len(found),
            bytes=sum(st.st_size for _, st in found),
            linked=sum(self.in_use(sha, st) for sha, st in found),
            link=self.describe_link(dest_dir),
        )

    def prune(self, max_bytes: int, keep: frozenset[str] = frozenset()) -> PruneReport:
        """Evict least recently used objects no checkout holds until at most ``max_bytes``.

        Objects in ``keep`` (those a registry names at a branch head or tag) go last: only
        when evicting every other idle object still leaves the store over ``max_bytes``.
        """
        found = list(self.objects())
        total = sum(st.st_size for _, st in found)
        idle = [
            (sha in keep, self._last_use(sha, st), sha, st)
            for sha, st in found
            if not self.in_use(sha, st)
        ]
        evicted = freed = 0
        for _, _, sha, st in sorted(idle):
            if total <= max_bytes:
                break
            try:
                with self.locked(sha, blocking=False) as got:  # one in use now is skipped
                    if not got or self.in_use(sha, os.stat(self.object_path(sha))):
                        continue
                    self._evict(sha)
            except (OSError, StoreError):
                continue
            evicted += 1
            freed += st.st_size
            total -= st.st_size
        remove_dead_temps_in(self.root / "tmp")
        return PruneReport(evicted, freed, total, len(found) - len(idle))

    def verify(self) -> tuple[int, list[str]]:
        """Hash every object again; delete bad ones. Return (good count, bad sha256s)."""
        good, bad = 0, []
        for sha, _ in list(self.objects()):
            with self.locked(sha):
                if self.recheck(sha, use=False):
                    good += 1
                else:
                    bad.append(sha)
        remove_dead_temps_in(self.root / "tmp")
        return good, bad
