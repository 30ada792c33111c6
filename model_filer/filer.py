"""The Filer: dump, load, push, pull and remove models in one folder with one remote."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from . import serializers
from .errors import (
    ImmutableEntryError,
    IntegrityError,
    LocalOnlyError,
    ModelExistsError,
    ModelFilerError,
    RemoteError,
    UnknownModelError,
    VersionMismatchWarning,
)
from .files import (
    INTERNAL_DIR,
    MODEL_SUFFIX,
    ensure_gitignore,
    folder_lock,
    internal_dir,
    remove_dead_temps,
    temp_path,
)
from .hashing import CHUNK, HashCache, HashingWriter, sha256_stream
from .names import check_name, object_key
from .progress import byte_bar, count_bar
from .registry import Entry, Registry, RegistryFile
from .remotes import Remote, get_remote
from .trust import trusted_set

_STAGED_RE = re.compile(r"(?P<name>.+)\.(?P<sha>[0-9a-f]{64})")
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
        """Raise one error naming every failure, if any."""
        if self.failed:
            errors = list(self.failed.values())
            lines = "; ".join(f"{n}: {e}" for n, e in sorted(self.failed.items()))
            raise type(errors[0])(f"{len(errors)} model(s) failed to {action}: {lines}")


class Filer:
    """Dump and load models in ``local_dir``, with their bytes stored on a remote.

    Parameters
    ----------
    local_dir : str or os.PathLike
        Folder of the model files and the registry (``.<remote_type>_registry``).
    remote_address : str
        Where the bytes live: ``s3://bucket/prefix``, ``bucket/prefix`` or ``bucket`` for
        ``'s3'``; a folder path for ``'local'``.
    remote_type : str, default 's3'
        ``'s3'`` or ``'local'``.

    Raises
    ------
    UnknownRemoteTypeError, InvalidNameError
        For an unknown type or a malformed address.
    RegistryError, RemoteMismatchError
        When an existing registry cannot be read or belongs to another remote.
    """

    def __init__(
        self, local_dir: str | os.PathLike[str], remote_address: str, remote_type: str = "s3"
    ) -> None:
        self.remote: Remote = get_remote(remote_type, remote_address)
        self.remote_type = remote_type
        self.local_dir = Path(local_dir)
        self._registry = RegistryFile(self.local_dir, remote_type)
        self._read()  # fail early on an unreadable registry or another remote's

    # -- registry plumbing ------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        """Path of the registry file: the one file of this folder to commit."""
        return self._registry.path

    def _new_registry(self) -> Registry:
        return Registry(self.remote_type, self.remote.address)

    def _read(self) -> Registry:
        reg = self._registry.read()
        if reg is None:
            return self._new_registry()
        self.remote.check_matches(reg.remote_address, str(self.registry_path))
        return reg

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Registry]:
        with self._registry.transaction(self._new_registry()) as reg:
            self.remote.check_matches(reg.remote_address, str(self.registry_path))
            self._recover(reg)
            yield reg

    def _recover(self, reg: Registry) -> None:
        """Finish or roll back a dump that a killed process left half done (lock held)."""
        remove_dead_temps(self.local_dir)
        staged_dir = internal_dir(self.local_dir) / "staged"
        with contextlib.suppress(FileNotFoundError):
            for staged in staged_dir.iterdir():
                match = _STAGED_RE.fullmatch(staged.name)
                if match is None:
                    continue  # not ours: never delete what we did not write
                entry = reg.entries.get(match["name"])
                if entry is not None and entry.sha256 == match["sha"]:
                    self._install(staged, entry)
                else:
                    staged.unlink()

    def _interrupted(self) -> bool:
        """Whether a dump may be half done (a staged file waits): recovery must run first."""
        try:
            return bool(os.listdir(self.local_dir / INTERNAL_DIR / "staged"))
        except OSError:
            return False

    def _install(self, src: Path, entry: Entry, cache: HashCache | None = None) -> None:
        """Rename verified bytes into place and remember them (saved now, or by the caller)."""
        path = self.model_path(entry.name)
        os.replace(src, path)
        if cache is not None:
            cache.record(path, entry.sha256)
            return
        cache = HashCache(self.local_dir)
        cache.record(path, entry.sha256)
        cache.save()

    def _entry(self, name: str) -> Entry:
        check_name(name)
        try:
            lock = self._registry.lock()
        except OSError:  # a read-only deployment folder: nobody can be writing to it
            reg = self._read()
        else:
            with lock:
                reg = self._read()
                self._recover(reg)
        entry = reg.entries.get(name)
        if entry is None:
            raise UnknownModelError(
                f"No model {name!r} in {self.registry_path}. "
                f"Known: {', '.join(sorted(reg.entries)) or 'none'}. "
                "Run filer.show_files() or `model-filer status` to list them."
            )
        return entry

    def model_path(self, name: str) -> Path:
        """Where the model file of ``name`` lives locally."""
        return self.local_dir / f"{check_name(name)}{MODEL_SUFFIX}"

    # -- dump ---------------------------------------------------------------------------------
    def _check_dump(self, reg: Registry, name: str, overwrite: bool) -> None:
        entry = reg.entries.get(name)
        if entry is not None and entry.state == "synced":
            raise ImmutableEntryError(
                f"{name!r} is synced and cannot be overwritten: a committed registry may point "
                f"at it. Dump under a new name, or filer.remove({name!r}, remove_remote=True) "
                "first if you are sure."
            )
        if entry is not None and not overwrite:
            raise ModelExistsError(
                f"A local model {name!r} already exists. Pass overwrite=True to replace it."
            )
        if entry is None and not overwrite and self.model_path(name).exists():
            raise ModelExistsError(
                f"{self.model_path(name)} exists but is not in the registry (left from another "
                "branch?). Pass overwrite=True to replace it, or delete the file."
            )

    def dump(self, model: Any, name: str, push: bool = False, overwrite: bool = False) -> None:
        """Pickle ``model`` to ``<local_dir>/<name>.pkl`` and record it in the registry.

        Parameters
        ----------
        model : object
            Anything picklable; written with pickle protocol 5, streamed and hashed.
        name : str
            The model's name: letters, digits and ``_ . + -``.
        push : bool, default False
            Also push it to the remote (state ``synced``); else it stays ``local``.
        overwrite : bool, default False
            Replace an existing ``local`` entry. ``synced`` entries are never replaced.

        Raises
        ------
        InvalidNameError, ModelExistsError, ImmutableEntryError
        """
        check_name(name)
        self._check_dump(self._read(), name, overwrite)  # fail before a long pickling
        self.local_dir.mkdir(parents=True, exist_ok=True)
        ensure_gitignore(self.local_dir)
        tmp = temp_path(self.local_dir, f"{name}.dump")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as fh:
                entry = serializers.dump_entry(model, name, fh, self.local_dir)
            sha = entry.sha256
            with self._transaction() as reg:
                self._check_dump(reg, name, overwrite)
                # Staged under its sha: if we die after the registry write, the next
                # operation's _recover completes the rename; before it, it rolls back.
                staged = internal_dir(self.local_dir) / "staged" / f"{name}.{sha}"
                staged.parent.mkdir(exist_ok=True)
                os.replace(tmp, staged)
                reg.entries[name] = entry
                self._registry.write(reg)
                self._install(staged, entry)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if push:
            self.push(name)

    # -- load ---------------------------------------------------------------------------------
    def _open_current(
        self, entry: Entry, cache: HashCache, rehash: bool = True
    ) -> IO[bytes] | None:
        """Open the local file if it holds the entry's bytes: by the cache, else by re-hashing.

        The check runs on the opened file descriptor, so the bytes verified are the bytes
        returned even if the path is replaced meanwhile.
        """
        path = self.model_path(entry.name)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            return None
        st = os.fstat(fh.fileno())
        if cache.lookup_stat(path, st) == entry.sha256:
            return fh
        if not rehash:
            fh.close()
            return None
        sha = sha256_stream(fh)
        if sha == entry.sha256:
            cache.record(path, sha, st)
            cache.save()
            fh.seek(0)
            return fh
        fh.close()
        if entry.state == "local":
            raise IntegrityError(
                f"{path} no longer matches the registry entry {entry.name!r} (sha256 "
                f"{sha}, expected {entry.sha256}): it changed after dump. Dump it again with "
                "overwrite=True, or remove it."
            )
        return None

    def load(self, name: str, trusted: Iterable[str] | None = None) -> Any:
        """Load a model: from the local file when it holds the registry's bytes, else download.

        Downloaded bytes are checked against the registry's size and sha256 before they are
        unpickled; bytes that fail are deleted and never unpickled. The pickle may import
        only the trusted set: the defaults, ``[tool.model_filer] trusted`` in the nearest
        ``pyproject.toml`` and ``trusted`` (patterns; ``["*"]`` trusts everything).

        Raises
        ------
        UnknownModelError, LocalOnlyError, IntegrityError, RemoteError, UntrustedModelError
        """
        check_name(name)
        trust_set = trusted_set(self.local_dir, trusted)  # a bad pattern fails before any I/O
        # Fast path, no lock: the registry is replaced atomically and the file is trusted only
        # if the verified-hash cache vouches for the very descriptor we opened.
        remove_dead_temps(self.local_dir)  # one listdir; no lock needed for the dead's files
        entry = self._read().entries.get(name)
        fh = None
        if entry is not None and not self._interrupted():
            fh = self._open_current(entry, HashCache(self.local_dir), rehash=False)
        if fh is None or entry is None:
            entry = self._entry(name)  # locked: finishes an interrupted dump first
            fh = self.open(entry)
        with fh:
            model = serializers.load(fh, entry.serializer, name, trust_set)
        self._warn_versions(entry)
        return model

    def open(self, entry: Entry) -> IO[bytes]:
        """Open the verified model file of ``entry``, downloading it first when needed."""
        cache = HashCache(self.local_dir)
        fh = self._open_current(entry, cache)
        if fh is not None:
            return fh
        if entry.state == "local":
            raise LocalOnlyError(
                f"{entry.name!r} is local: it was never pushed, so its bytes exist only on the "
                "machine that dumped it. Ask its author to run filer.push "
                f"({entry.name!r}) and commit the registry."
            )
        with folder_lock(self.local_dir, f"model-{entry.name}"):
            fh = self._open_current(entry, HashCache(self.local_dir))  # another process won?
            if fh is None:
                self._fetch(entry)
                fh = open(self.model_path(entry.name), "rb")  # noqa: SIM115
        return fh

    def _download(self, entry: Entry, tmp: Path) -> tuple[int, str]:
        """Stream an entry's object into ``tmp``; return the size and sha256 that arrived."""
        assert entry.key is not None  # noqa: S101 - callers pass synced entries only
        with open(tmp, "wb") as fh, byte_bar(entry.size, entry.name) as progress:
            # A big download is hashed in a thread of its own, off the transfer's single
            # writer thread; for a small one, starting that thread costs more than it saves.
            sink = HashingWriter(fh, offload_bytes=0 if entry.size > OFFLOAD_ABOVE else CHUNK)
            try:
                self.remote.download(entry.key, sink, progress, entry.size)
            finally:
                sha = sink.hexdigest()  # also stops the hashing thread on failure
        return sink.size, sha

    def _fetch(self, entry: Entry, cache: HashCache | None = None) -> None:
        """Download a synced entry into place, verified; bad bytes are never kept."""
        if entry.key is None:
            raise LocalOnlyError(f"{entry.name!r} has no remote object yet: push it first.")
        tmp = temp_path(self.local_dir, f"{entry.name}.download")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            size, sha = self._download(entry, tmp)
            if size != entry.size or sha != entry.sha256:
                raise IntegrityError(
                    f"Downloaded {entry.name!r} from {self.remote.url(entry.key)} does not match "
                    f"the registry: expected {entry.size} bytes, sha256 {entry.sha256}; got "
                    f"{size} bytes, sha256 {sha}. The remote object was changed or damaged; it "
                    "was not loaded. Ask the model's author to dump and push it again."
                )
            with self._registry.lock():
                self._install(tmp, entry, cache)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _warn_versions(self, entry: Entry) -> None:
        now = serializers.python_version()
        if now.split(".")[:2] != entry.python.split(".")[:2]:
            warnings.warn(
                f"{entry.name!r} was dumped with Python {entry.python}, this is {now}: "
                "check the model behaves the same.",
                VersionMismatchWarning,
                stacklevel=3,
            )
        if entry.library is not None:
            lib, then = entry.library["name"], entry.library["version"]
            current = serializers.current_version(lib)
            if current is not None and current != then:
                warnings.warn(
                    f"{entry.name!r} was dumped with {lib} {then}, this is {current}: "
                    "pin that version if the model misbehaves.",
                    VersionMismatchWarning,
                    stacklevel=3,
                )

    # -- push / pull -------------------------------------------------------------------------
    def _upload(self, entry: Entry) -> str:
        path = self.model_path(entry.name)
        cache = HashCache(self.local_dir)
        sha = cache.verified_sha256(path)
        cache.save()
        if sha is None:
            raise LocalOnlyError(
                f"{path} is missing, so local model {entry.name!r} cannot be pushed. "
                f"Dump it again, or filer.remove({entry.name!r})."
            )
        if sha != entry.sha256:
            raise IntegrityError(
                f"{path} changed after dump (sha256 {sha}, registry {entry.sha256}). "
                f"Dump it again with overwrite=True, then push."
            )
        key = object_key(entry.name, sha)
        with byte_bar(entry.size, entry.name) as progress:
            self.remote.upload(path, key, sha, progress)
        return key

    def _mark_synced(self, pushed: dict[str, tuple[str, str]]) -> None:
        with self._transaction() as reg:
            for name, (sha, key) in pushed.items():
                current = reg.entries.get(name)
                if current is not None and current.state == "local" and current.sha256 == sha:
                    reg.entries[name] = current._replace(state="synced", key=key)

    def push(self, name: str) -> None:
        """Upload a ``local`` model and mark it ``synced``.

        A ``synced`` model is uploaded again only if the remote lost its object.

        Raises
        ------
        UnknownModelError, LocalOnlyError, IntegrityError, RemoteError
        """
        entry = self._entry(name)
        if entry.state == "synced":
            # Re-upload only to repair a remote that lost the object and a file we still have.
            if entry.key and self.remote.size_of(entry.key) != entry.size:
                self._upload(entry)
            return
        self._mark_synced({name: (entry.sha256, self._upload(entry))})

    def push_all(self, jobs: int | None = None) -> list[str]:
        """Push every ``local`` model, ``jobs`` at a time; return the names pushed.

        Models that pushed are marked synced even when others fail; then one error lists the
        failures.
        """
        report = TransferReport()
        locals_ = [e for e in self.list_files() if e.state == "local"]
        pushed: dict[str, tuple[str, str]] = {}

        def one(entry: Entry) -> None:
            pushed[entry.name] = (entry.sha256, self._upload(entry))

        self._run_parallel(locals_, one, report, jobs, "push")
        if pushed:
            self._mark_synced(pushed)
        report.raise_failures("push")
        return sorted(pushed)

    def needs_fetch(self, entry: Entry, cache: HashCache) -> bool:
        """Whether a synced entry's local file is missing or stale, by ``stat`` when cached."""
        path = self.model_path(entry.name)
        if cache.lookup(path) == entry.sha256:
            return False
        return cache.verified_sha256(path) != entry.sha256

    def pull(
        self,
        names: Iterable[str] | None = None,
        jobs: int | None = None,
        on_done: Callable[[int], object] | None = None,
    ) -> TransferReport:
        """Download synced models that are missing or stale locally, ``jobs`` at a time.

        Parameters
        ----------
        names : iterable of str, optional
            Models to fetch; all synced entries when omitted.
        jobs : int, optional
            Parallel transfers (default 16).
        on_done : callable, optional
            Called with 1 as each model finishes; replaces the default progress bar.

        Returns
        -------
        TransferReport
            ``done`` fetched, ``skipped`` already current, ``failed`` name -> error.
        """
        entries = {e.name: e for e in self.list_files()}
        wanted = list(entries.values())
        if names is not None:
            names = [check_name(n) for n in names]
            unknown = sorted(set(names) - set(entries))
            if unknown:
                raise UnknownModelError(
                    f"No model(s) {', '.join(unknown)} in "
                    f"{self.registry_path}. "
                    "Run filer.show_files() or `model-filer status` to list them."
                )
            wanted = [entries[n] for n in names]
        cache = HashCache(self.local_dir)
        report = TransferReport()
        todo = []
        for entry in wanted:
            if entry.state != "synced":
                continue
            if self.needs_fetch(entry, cache):
                todo.append(entry)
            else:
                report.skipped.append(entry.name)

        def one(entry: Entry) -> None:
            with folder_lock(self.local_dir, f"model-{entry.name}"):
                if self.needs_fetch(entry, cache):  # another process may have fetched it
                    self._fetch(entry, cache)

        try:
            if self._reachable(todo, report):
                self._run_parallel(todo, one, report, jobs, "pull", on_done)
        finally:
            cache.save()  # once for all models, not once per download
        return report

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

    def _run_parallel(
        self,
        entries: list[Entry],
        fn: Any,
        report: TransferReport,
        jobs: int | None,
        action: str,
        on_done: Callable[[int], object] | None = None,
    ) -> None:
        if not entries:
            return
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

    # -- remove and show ----------------------------------------------------------------------
    def _drop(self, reg: Registry, entry: Entry, remove_remote: bool, cache: HashCache) -> None:
        if remove_remote and entry.key is not None:
            self.remote.delete(entry.key)
        path = self.model_path(entry.name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        cache.forget(path)
        del reg.entries[entry.name]

    def remove(self, name: str, remove_remote: bool = False) -> None:
        """Remove a model from the registry and delete its local file.

        Parameters
        ----------
        name : str
        remove_remote : bool, default False
            Also delete the remote object. Other commits' registries may still name it, so
            this breaks them: use with care.
        """
        check_name(name)
        cache = HashCache(self.local_dir)
        with self._transaction() as reg:
            entry = reg.entries.get(name)
            if entry is None:
                raise UnknownModelError(
                    f"No model {name!r} in {self.registry_path}; "
                    "nothing removed. Run filer.show_files() or `model-filer status` to list them."
                )
            self._drop(reg, entry, remove_remote, cache)
        cache.save()

    def remove_locals(self) -> list[str]:
        """Remove every ``local`` model (registry entry and file); return their names."""
        cache = HashCache(self.local_dir)
        with self._transaction() as reg:
            names = sorted(n for n, e in reg.entries.items() if e.state == "local")
            for name in names:
                self._drop(reg, reg.entries[name], False, cache)
        cache.save()
        return names

    def list_files(self) -> list[Entry]:
        """The registry's entries as data, sorted by name."""
        reg = self._read()
        return [reg.entries[n] for n in sorted(reg.entries)]

    def show_files(self) -> None:
        """Print one ``name (state)`` line per model, or ``[no files exist]``."""
        entries = self.list_files()
        if not entries:
            print("[no files exist]")
        for entry in entries:
            print(f"{entry.name} ({entry.state})")

    def __repr__(self) -> str:
        return f"Filer({str(self.local_dir)!r}, {self.remote.address!r}, {self.remote_type!r})"
