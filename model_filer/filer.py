"""The Filer: dump, load, push, pull and remove models in one folder with one remote.

A thin facade: the folder (:mod:`model_filer.local.folder`) keeps the registry and the files,
the transfers (:mod:`model_filer.transfer.transfers`) move bytes, the serializers turn models
into bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from model_filer.errors import (
    AliasError,
    ImmutableEntryError,
    IntegrityError,
    InvalidNameError,
    ModelExistsError,
    ModelFilerError,
    StoreError,
    UnknownModelError,
)
from model_filer.local.dumping import Dump
from model_filer.local.folder import ModelFolder, ensure_gitignore
from model_filer.local.freshness import Freshness, recorded
from model_filer.local.store import ObjectStore
from model_filer.pickles import serializers
from model_filer.pickles.trust import trusted_set
from model_filer.registry.model import (
    META_FIELDS,
    Alias,
    Entry,
    Registry,
    aliased,
    annotated,
    check_metadata,
)
from model_filer.registry.names import check_alias, check_name, is_storage_key
from model_filer.registry.table import Table
from model_filer.remotes import PATIENT, Network, Remote, check_type, get_remote
from model_filer.transfer.transfers import STORAGES, TransferReport, Transfers

_READS = 3  # reads of the registry by a load that meets a concurrent re-dump (see load)
STORAGE_ENV = "MODEL_FILER_STORAGE"  # the layout pushes write when no storage= is given

if TYPE_CHECKING:
    from model_filer.git.history import AliasMove, LogRow


class ModelStatus(NamedTuple):
    """One model of :meth:`Filer.status`: its entry, and what its file holds.

    ``where`` is ``"present"`` (it holds the entry's bytes), ``"unverified"`` (a file whose
    bytes are not known without hashing: :meth:`Filer.verify` tells), ``"not downloaded"``
    (a synced model without its file) or ``"missing"`` (a local model without its file).
    """

    entry: Entry
    where: str


class Mismatch(NamedTuple):
    """A model file of :meth:`Filer.verify` that does not hold its entry's bytes."""

    entry: Entry
    path: Path
    sha256: str  # what it holds


class Filer:
    """Dump and load models in ``local_dir``, with their bytes stored on a remote.

    Parameters
    ----------
    local_dir : str or os.PathLike
        Folder of the model files and the registry (``.<remote_type>_registry``). ``~`` is
        expanded and a relative path is resolved once, here: a later ``os.chdir`` does not
        move it.
    remote_address : str, optional
        Where the bytes live: ``s3://bucket/prefix``, ``bucket/prefix`` or ``bucket`` for
        ``'s3'``; a folder path for ``'local'``. An address given here is trusted, and so is
        the registry written with it. Omitted, it is read from the folder's one registry,
        whose remote must be one this clone trusts (see ``model-filer remote trust``).
    remote_type : str, optional
        ``'s3'`` (the default with an address) or ``'local'``; without an address, the
        registry's type, which this must match if given.
    network : Network, optional
        How long the remote waits on a store that does not answer: stall timeouts (seconds
        without a byte) and retries. Default :data:`PATIENT` (a stuck store costs at most
        80 s); git hooks pass :data:`FAIL_FAST` (13 s).
    storage : {'chunked', 'plain'}, optional
        How a push lays out new bytes on the remote. ``'chunked'`` (the default) stores a
        small model as one zstd-compressed object and a big one as deduplicated, compressed
        chunks (docs/storage-format.md). ``'plain'`` stores each pickle whole under
        ``<name>/<sha256>.pkl``, for a remote that other tools read directly. Both load.
        Default: ``$MODEL_FILER_STORAGE`` when set (so the CLI and hooks follow it too),
        else ``'chunked'``.
    store : ObjectStore, optional
        The local object store the model files link to; default: the user's
        (``MODEL_FILER_CACHE_DIR``, else ``$XDG_CACHE_HOME/model_filer``, else
        ``~/.cache/model_filer``).

    Raises
    ------
    UnknownRemoteTypeError, InvalidNameError
        For an unknown type or a malformed address.
    RegistryError, RemoteMismatchError
        When an existing registry cannot be read or belongs to another remote; without an
        address, when the folder holds no registry, several, or one of another type.
    UntrustedRemoteError
        Without an address, when the registry names a remote this clone does not trust.
    """

    def __init__(
        self,
        local_dir: str | os.PathLike[str],
        remote_address: str | None = None,
        remote_type: str | None = None,
        *,
        network: Network = PATIENT,
        store: ObjectStore | None = None,
        storage: str | None = None,
        _vouch: bool = True,
        _registry: Registry | None = None,
    ) -> None:
        if not isinstance(local_dir, str | os.PathLike):
            raise InvalidNameError(
                f"local_dir must be a folder path (a str or a Path), not {local_dir!r}. Pass "
                "the folder of the models, e.g. Filer('models', 's3://bucket/prefix')."
            )
        if remote_type is not None:
            check_type(remote_type)  # before a registry is read for it
        # Once, here: a relative folder must not follow a later os.chdir.
        self.local_dir = Path(os.path.abspath(Path(local_dir).expanduser()))
        # Whether writes vouch for the registry's remote: an address the user typed (not one
        # the CLI or a hook read from the registry: ``_vouch=False``).
        self._vouch = _vouch and remote_address is not None
        if remote_address is None:
            remote_type, remote_address = self._registry_remote(remote_type)
        remote_type = "s3" if remote_type is None else remote_type
        self.remote: Remote = get_remote(remote_type, remote_address, network)
        self.remote_type = remote_type
        self.store = ObjectStore() if store is None else store
        self.folder = ModelFolder(self.local_dir, self.remote, self._written)
        given = "storage=" if storage is not None else f"${STORAGE_ENV}="
        if storage is None:
            storage = os.environ.get(STORAGE_ENV, "").strip() or "chunked"
        if storage not in STORAGES:
            raise InvalidNameError(
                f"{given}{storage!r} is not a layout: use 'chunked' (the default: compressed, "
                "deduplicated chunks) or 'plain' (each pickle whole, for tools that read the "
                "remote directly)."
            )
        self.transfers = Transfers(self.folder, self.remote, self.store, storage)
        # Fail early on an unreadable registry or another remote's (a caller that has just
        # read it passes it: a hook reads each registry once).
        if _registry is None:
            self.folder.read()
        else:
            self.folder.check(_registry)

    def _registry_remote(self, remote_type: str | None) -> tuple[str, str]:
        """The type and the address this clone uses for the folder's one registry."""
        from model_filer.git.approvals import approved_address
        from model_filer.registry.discovery import registry_of

        path, reg = registry_of(self.local_dir, remote_type)
        return reg.remote_type, approved_address(path, reg, str(self.local_dir), action="use")

    def _written(self, data: bytes) -> None:
        if self._vouch:  # once per Filer: the user gave the address, so its registry is trusted
            from model_filer.git.approvals import vouch

            self._vouch = False
            # The registry is written: a git config that cannot take the record must not
            # turn the done dump into an error (`model-filer remote trust` records it later).
            with contextlib.suppress(ModelFilerError):
                vouch(self.registry_path, self.folder.peek(), self.remote.address)

    @property
    def registry_path(self) -> Path:
        """Path of the registry file: the one file of this folder to commit."""
        return self.folder.registry_path

    def model_path(self, name: str) -> Path:
        """Where the model file of ``name`` lives locally."""
        return self.folder.model_path(name)

    # -- dump and load ------------------------------------------------------------------------
    def _check_dump(self, reg: Registry, name: str, overwrite: bool) -> None:
        entry = reg.entries.get(name)
        twin = reg.case_twin(name)
        if twin is not None:
            raise ModelExistsError(
                f"{name!r} differs only in case from {twin!r}: on macOS and Windows both are "
                f"one file, so one would silently replace the other. Use {twin!r} or another "
                "name."
            )
        if entry is not None and entry.state == "synced":
            raise ImmutableEntryError(
                f"{name!r} is synced and cannot be overwritten: committed registries may name "
                f"its bytes. To replace it, run filer.remove({name!r}) and dump again: the "
                "remote object stays, so older commits still load their version (`model-filer "
                "gc --remote` reclaims the space later). Or dump under a new name."
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

    def dump(
        self,
        model: Any,
        name: str,
        push: bool = False,
        overwrite: bool = False,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
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
            Replace an existing ``local`` entry. ``synced`` entries are never replaced. The
            new entry has only the metadata given here.
        metrics : dict, optional
            How good the model is: name -> finite int or float (numpy scalars are stored as
            plain numbers; a bool is not a metric).
        params : dict, optional
            How it was made: name -> str, int, float, bool or None.
        tags : dict, optional
            name -> str.
        description : str, optional
            Free text.

        Names of metrics, params and tags: 1-64 letters, digits and ``_ . / -``, starting
        with a letter, digit or ``_`` (``val/loss``, ``f1.macro``). An entry holds at most
        64 names and 2 KiB of names and values. Add or change them later with
        :meth:`annotate`.

        Raises
        ------
        InvalidNameError, InvalidMetadataError, ModelExistsError, ImmutableEntryError,
        SerializationError
            Each before anything is written.
        """
        check_name(name)
        metadata = dict(
            zip(META_FIELDS, check_metadata(metrics, params, tags, description), strict=True)
        )
        self._check_dump(self.folder.peek(), name, overwrite)  # fail before a long pickling
        self.local_dir.mkdir(parents=True, exist_ok=True)
        ensure_gitignore(self.local_dir)
        with Dump(model, name, self.folder, self.store) as dump:
            dump.entry = dump.entry._replace(**metadata)
            held = self.folder.commit_dump(
                dump.entry, lambda reg: self._check_dump(reg, name, overwrite), push, dump.placing
            )
        if push and not held:  # (held by an open batch: pushed when it ends)
            self.push(name)

    def annotate(
        self,
        name: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str | None] | None = None,
        description: str | None = None,
    ) -> Entry:
        """Add, replace or delete metadata of an entry, a synced one included.

        Metadata is not the bytes: a synced model's bytes stay as they are. Merged per name:
        ``annotate("m", metrics={"auc": 0.91})`` keeps the other metrics; a value of ``None``
        deletes its name (``params={"lr": None}``), ``description=""`` deletes the
        description, and an argument left out leaves its field as it is. Values and names
        follow :meth:`dump`'s rules.

        Returns
        -------
        Entry
            The entry as now recorded.

        Raises
        ------
        UnknownModelError, InvalidMetadataError
            Before the registry is written.
        """
        check_name(name)
        with self.folder.transaction() as reg:  # (refused: nothing written)
            entry = self.folder.entry(name, reg)
            new = annotated(entry, metrics, params, tags, description)
            if new != entry:
                reg.entries[name] = new
        return new

    def set_alias(self, alias: str, name: str | None) -> Alias | None:
        """Point ``alias`` at the model ``name`` as it is now (its sha256), or drop it (``None``).

        ``filer.load("@alias")`` then loads that model. When other bytes are dumped under
        the name later, the alias does not follow them: ``load("@alias")`` and the commit
        hook refuse it until it is set again. An alias name follows the model-name rule;
        ``@`` is written where it is used, and may be given here.

        Returns
        -------
        Alias or None
            The alias as recorded; ``None`` when dropped.

        Raises
        ------
        InvalidNameError, UnknownModelError, AliasError
            AliasError: dropping an alias that does not exist.
        """
        alias = alias[1:] if isinstance(alias, str) and alias.startswith("@") else alias
        check_alias(alias)
        with self.folder.transaction() as reg:
            if name is None:
                if reg.aliases.pop(alias, None) is None:
                    known = ", ".join(f"@{a}" for a in sorted(reg.aliases)) or "none"
                    raise AliasError(
                        f"{self.registry_path} has no alias @{alias} to drop (its aliases: "
                        f"{known}). Nothing changed."
                    )
                return None
            entry = self.folder.entry(name, reg)
            reg.aliases[alias] = (entry.name, entry.sha256)
        return Alias(alias, entry.name, entry.sha256)

    def aliases(self) -> dict[str, Alias]:
        """The registry's aliases by name (without ``@``), sorted."""
        reg = self.folder.read()
        return {a: Alias(a, *reg.aliases[a]) for a in sorted(reg.aliases)}

    def _settle(self, entry: Entry) -> None:
        # A batch's renames into place come at its end, after the dump released the lock.
        if not recorded(entry.size):  # (no record to renew: no lock to take)
            return
        with contextlib.suppress(StoreError), self.store.locked(entry.sha256):
            self.store.settle(entry.sha256)  # the renames into place moved its ctime

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write the registry once for all the dumps of a ``with`` block.

        Each plain ``dump`` rewrites the whole registry: at 10,000 entries that is 4 MB per
        call. Inside ``with filer.batch():`` a dump pickles its model as usual and the
        registry is written once when the block ends; then every model file is moved into
        place, and the models dumped with ``push=True`` are pushed, in parallel.

        An exception raised in the block, or a kill before its end, records none of its
        dumps. Once the registry is written they are all recorded: if moving a file into
        place fails after that, the next operation finishes it (the pushes are then not
        made: ``push_all()`` later); a failed push raises :class:`TransferError` with the
        dumps recorded as ``local``.

        The registry stays locked for the block: other processes' changes wait for its end
        (their reads do not). The batch is this Filer's (no process-wide state): a
        ``filer.dump`` from any other thread joins it (a thread pool in a notebook, as one
        expects): it is recorded, or dropped, with the block, and its push is made at the
        end. Any other registry call from another thread (``push``, ``remove``, a ``load``
        of a model dumped in the block) waits for the end, as a dump from another process
        does: inside the block, wait only on threads that just dump. Another Filer of the
        folder reads the file as it is, as another process would. In the thread that opened
        it, whatever else would read or change the registry (``load``, ``push``, ``remove``,
        ``list_files``, ``show_files``, a change through another Filer of the folder, a
        nested ``batch``) raises :class:`BatchError` rather than wait for its own lock.

        Examples
        --------
        >>> with filer.batch():  # doctest: +SKIP
        ...     for store_id, model in models.items():
        ...         filer.dump(model, f"store-{store_id}")
        """
        with self.folder.batch() as batch:
            yield
        for entry in batch.done:
            self._settle(entry)
        if batch.pushes:
            self._push_entries([e for e in batch.done if e.name in batch.pushes])

    def load(self, name: str, rev: str | None = None, trusted: Iterable[str] | None = None) -> Any:
        """Load a model: from the local file when it holds the registry's bytes, else download.

        Downloaded bytes are checked against the registry's size and sha256 before they are
        unpickled; bytes that fail are deleted and never unpickled. The pickle may import
        only the trusted set: the defaults, ``[tool.model_filer] trusted`` in the nearest
        ``pyproject.toml`` and ``trusted`` (patterns; ``["*"]`` trusts everything).

        Parameters
        ----------
        name : str
            A model's name, or ``"@alias"``: the model the alias names (refused with
            :class:`AliasError` when that model now holds other bytes, or is gone).
        rev : str, optional
            A git revision (``"v1.2"``, ``"main~3"``, a sha): load the model as the registry
            committed there recorded it, without a checkout (an alias as it was there).
        trusted : iterable of str, optional
            More patterns to trust for this call: exact ``module.qualname`` names, or module
            globs (``"mypkg.models.*"``) that trust classes only.

        Raises
        ------
        UnknownModelError, AliasError, LocalOnlyError, IntegrityError, RemoteError,
        UntrustedModelError
        """
        is_alias = isinstance(name, str) and name.startswith("@")
        check_name(name[1:] if is_alias else name)
        trust_set = trusted_set(self.local_dir, trusted)  # a bad pattern fails before any I/O
        if rev is not None:
            from model_filer.git import history

            if not is_alias:
                return history.load_at(self, name, rev, trust_set)
            reg, where = history.registry_at(self, rev)
            entry = aliased(reg or Registry("", ""), name, where)
            with history.open_verified(self, entry, rev) as fh:
                model = serializers.load(fh, entry.serializer, entry.name, trust_set, where)
            serializers.warn_versions(entry)
            return model
        self.folder.clean_dead_temps()
        for attempt in range(_READS):
            if is_alias:
                entry = aliased(self.folder.read(), name, str(self.registry_path))
            else:
                entry = self.folder.entry(name)
            try:
                fh = self.open(entry)
                break
            except IntegrityError:
                # A re-dump (overwrite=True) in another process writes the registry, then
                # renames the file into place: the entry read and the file opened can be of
                # two versions. A fresh read (which waits for a dump half done) settles it;
                # a file that still differs was changed by something else.
                if entry.state != "local" or attempt == _READS - 1:
                    raise
        with fh:
            model = serializers.load(
                fh, entry.serializer, entry.name, trust_set, self.registry_path
            )
        serializers.warn_versions(entry)
        return model

    def open(self, entry: Entry) -> IO[bytes]:
        """Open the verified model file of ``entry``, downloading it first when needed."""
        with self.folder.freshness() as fresh:
            return self.transfers.open(entry, fresh)

    def open_bytes(self, entry: Entry) -> IO[bytes]:
        """A readable file holding exactly ``entry``'s bytes, of any version.

        The model file when it holds them (the check :meth:`load` makes), else the local
        object store's object, downloaded into it first when it lacks it. The model file is
        never replaced: ``entry`` may be a version the working tree does not name.

        Raises
        ------
        LocalOnlyError, IntegrityError, RemoteError
        """
        with self.folder.freshness() as fresh:
            try:
                fh = fresh.open(entry)
            except IntegrityError:  # the model file holds another version of a local model
                fh = None
        return self.transfers.fetch(entry) if fh is None else fh

    def registry(self) -> Registry:
        """The folder's registry as it is now (for reading; changes go through the Filer)."""
        return self.folder.read()

    # -- status and verify --------------------------------------------------------------------
    def status(self) -> list[ModelStatus]:
        """Each model and what its file holds, without hashing (see :class:`ModelStatus`)."""
        with self.folder.freshness() as fresh:
            return [ModelStatus(e, self._where(e, fresh)) for e in self.list_files()]

    def _where(self, entry: Entry, fresh: Freshness) -> str:
        if not self.model_path(entry.name).exists():
            return "not downloaded" if entry.state == "synced" else "missing"
        return "present" if fresh.holds(entry, rehash=False) else "unverified"

    def verify(self) -> list[Mismatch]:
        """Hash every present model file again, trusting nothing; return those that do not
        hold their entry's bytes (what is learnt is remembered for later loads)."""
        bad = []
        with self.folder.freshness() as fresh:
            for entry in self.list_files():
                path = self.model_path(entry.name)
                sha = fresh.sha256(path, recheck=True)
                if sha is not None and sha != entry.sha256:
                    bad.append(Mismatch(entry, path, sha))
        return bad

    # -- push and pull ------------------------------------------------------------------------
    def _mark_synced(self, pushed: dict[str, tuple[str, str]]) -> None:
        if any(is_storage_key(key) for _, key in pushed.values()):
            from model_filer.git.gc import mark_repository

            mark_repository(self)  # other repositories' gc must know this one uses the prefix
        with self.folder.transaction() as reg:
            reg.remote_id = reg.remote_id or self.remote.identity()
            for name, (sha, key) in pushed.items():
                current = reg.entries.get(name)
                # A synced entry pushed again (its remote lost something) may come back under
                # another key: an earlier layout's manifest is pushed again as a map.
                if (
                    current is not None
                    and current.sha256 == sha
                    and (current.state == "local" or current.key != key)
                ):
                    reg.entries[name] = current._replace(state="synced", key=key)

    def push(self, name: str) -> None:
        """Upload a ``local`` model and mark it ``synced``.

        A ``synced`` model is uploaded again only if the remote lacks some of its bytes, or
        holds an object of them at another length.

        Raises
        ------
        UnknownModelError, LocalOnlyError, IntegrityError, RemoteError
        """
        self.upload(name)

    def upload(self, name: str) -> bool:
        """:meth:`push`, saying whether it uploaded anything.

        Returns
        -------
        bool
            False when the model was ``synced`` and all its bytes were on the remote.
        """
        entry = self.folder.entry(name)
        if entry.state == "synced" and (entry.key is None or self.transfers.present(entry)):
            return False  # re-upload a synced model only to repair a remote that lost it
        with self.folder.freshness() as fresh:
            key = self.transfers.upload(entry, fresh)
        self._mark_synced({name: (entry.sha256, key)})
        return True

    def push_all(self, jobs: int | None = None) -> list[str]:
        """Push every ``local`` model, ``jobs`` at a time; return the names pushed.

        Models that pushed are marked synced even when others fail; then one
        :class:`TransferError` keeps every failure.
        """
        return self._push_entries([e for e in self.list_files() if e.state == "local"], jobs)

    def _push_entries(self, entries: list[Entry], jobs: int | None = None) -> list[str]:
        pushed, report = self.transfers.push(entries, jobs)
        if pushed:
            self._mark_synced(pushed)
        report.raise_failures("push")
        return sorted(pushed)

    def pull(
        self,
        names: Iterable[str] | None = None,
        jobs: int | None = None,
        on_done: Callable[[int], object] | None = None,
        where: Callable[[Entry], bool] | None = None,
    ) -> TransferReport:
        """Download synced models that are missing or stale locally, ``jobs`` at a time.

        Parameters
        ----------
        names : iterable of str, optional
            Models to fetch; all synced entries when omitted.
        jobs : int, optional
            Parallel transfers (default: 4 per CPU, at most 16).
        on_done : callable, optional
            Called with 1 as each model finishes; replaces the default progress bar.
        where : callable, optional
            Fetch only the entries for which it returns true (e.g. a size limit).

        Returns
        -------
        TransferReport
            ``done`` fetched, ``skipped`` already current, ``failed`` name -> error.
        """
        entries = self.folder.read().entries
        wanted = [entries[n] for n in sorted(entries)]
        if names is not None:
            names = [check_name(n) for n in names]
            unknown = set(names) - set(entries)
            if unknown:
                raise UnknownModelError(unknown, self.registry_path, entries)
            wanted = [entries[n] for n in names]
        if where is not None:
            wanted = [e for e in wanted if where(e)]
        return self.transfers.pull(wanted, jobs, on_done)

    # -- remove and show ----------------------------------------------------------------------
    def _remove(self, names: Callable[[Registry], list[str]], remove_remote: bool) -> list[str]:
        with self.folder.freshness() as fresh, self.folder.transaction() as reg:
            chosen = names(reg)
            if remove_remote:
                # Keys name bytes, not models: one that a model kept here still names stays.
                going = set(chosen)
                kept = {e.key for n, e in reg.entries.items() if n not in going}
                for name in chosen:
                    key = reg.entries[name].key
                    if key is not None and key not in kept:
                        self.remote.delete(key)
                        kept.add(key)  # (deleted once)
            for name in chosen:
                self.folder.drop(reg, reg.entries[name], fresh)
        return chosen

    def remove(self, name: str, remove_remote: bool = False) -> None:
        """Remove a model from the registry and delete its local file.

        Parameters
        ----------
        name : str
        remove_remote : bool, default False
            Also delete the remote object, unless another model of this registry holds the same
            bytes (keys name bytes, not models). Every commit whose registry names those bytes
            then stops loading them (``RemoteObjectMissingError``), in every clone. To replace a
            synced model, ``remove(name)`` and dump again: remote keys hold the content hash,
            so the old bytes stay for the old commits, and ``model-filer gc --remote`` deletes
            what no commit names any more.
        """
        check_name(name)

        def only(reg: Registry) -> list[str]:
            if name not in reg.entries:
                raise UnknownModelError(
                    name, self.registry_path, reg.entries, consequence="; nothing removed"
                )
            return [name]

        self._remove(only, remove_remote)

    def remove_locals(self) -> list[str]:
        """Remove every ``local`` model (registry entry and file); return their names."""
        return self._remove(
            lambda reg: sorted(n for n, e in reg.entries.items() if e.state == "local"), False
        )

    def list_files(self, rev: str | None = None) -> Table[Entry]:
        """The registry's entries as data, sorted by name; at git revision ``rev`` if given.

        A list of :class:`Entry` that a notebook shows as a table; ``.to_pandas()`` makes it a
        DataFrame (``metrics.auc``, ``params.lr``, ... columns).
        """
        if rev is not None:
            from model_filer.git.history import list_at

            return Table(list_at(self, rev))
        reg = self.folder.read()
        return Table(reg.entries[n] for n in sorted(reg.entries))

    def log(self, name: str | None = None, rev: str = "HEAD") -> Table[LogRow] | Table[AliasMove]:
        """The git history of a model, of every model, or of an alias: what ``model-filer
        log`` prints, newest first, as a :class:`Table` (``.to_pandas()``).

        Parameters
        ----------
        name : str, optional
            A model: one :class:`~model_filer.git.history.LogRow` per commit that added,
            replaced, pushed, annotated or removed it, or merged two branches that had both
            changed it (``merged``: the version kept), with its metrics and params then.
            ``"@production"``: one :class:`~model_filer.git.history.AliasMove` per commit
            that set, moved or removed the alias. ``None``: every model's changes.
        rev : str
            Whose history: a branch, tag or commit (default ``HEAD``).

        Raises
        ------
        UnknownRevisionError, InvalidNameError, ModelFilerError (outside git)
        """
        from model_filer.git.history import alias_log, log

        if name is not None and name.startswith("@"):
            return Table(alias_log(self, name[1:], rev))
        return Table(log(self, name, rev))

    def show_files(self) -> None:
        """Print one ``name (state)`` line per model, or ``[no files exist]``."""
        entries = self.list_files()
        if not entries:
            print("[no files exist]")
        for entry in entries:
            print(f"{entry.name} ({entry.state})")

    def __repr__(self) -> str:
        return f"Filer({str(self.local_dir)!r}, {self.remote.address!r}, {self.remote_type!r})"
