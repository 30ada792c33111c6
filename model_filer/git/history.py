"""The registry through git history: load at a revision, log and diff, with no checkout.

Everything here reads git objects (``git log --raw`` for which blob a commit holds, one
``git cat-file --batch`` for the blobs) and never touches the working tree. Remote objects are
keyed by content, so every committed registry can still load the bytes it names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

from model_filer.errors import (
    LocalOnlyError,
    ModelFilerError,
    UnknownModelError,
    UnknownRevisionError,
)
from model_filer.fs.layout import registry_filename
from model_filer.git import gitops
from model_filer.pickles import serializers
from model_filer.pickles.trust import TrustedSet
from model_filer.registry.codec import Codec
from model_filer.registry.model import META_FIELDS, Entry, Registry
from model_filer.registry.names import check_name

if TYPE_CHECKING:
    from model_filer.remotes import Remote


class Filer(Protocol):
    """What history needs of a Filer (the Filer calls history: history imports no Filer)."""

    local_dir: Path
    remote_type: str
    remote: Remote

    @property
    def registry_path(self) -> Path: ...

    def model_path(self, name: str) -> Path: ...

    def open_bytes(self, entry: Entry) -> IO[bytes]: ...

    def list_files(self, rev: str | None = None) -> list[Entry]: ...

    def registry(self) -> Registry: ...


# -- where the registry lives in git --------------------------------------------------------
class RepoPath(NamedTuple):
    """The repository holding a Filer's folder, and its registry's path inside it."""

    top: Path
    registry: str  # relative to ``top``, as git names it


def repo_path(filer: Filer, why: str) -> RepoPath:
    """Where the Filer's registry is tracked; :class:`ModelFilerError` outside git."""
    repo = gitops.locate(filer.local_dir)
    if repo is None:
        raise ModelFilerError(
            f"{filer.local_dir} is not inside a git repository, so {why}. Run it in the clone "
            "whose history holds the registry (or `git init` and commit the registry first)."
        )
    return RepoPath(repo.top, repo.prefix + registry_filename(filer.remote_type))


def resolve(rev: str, where: RepoPath) -> str:  # for log, which reads no blob at rev
    """The commit sha ``rev`` names, or :class:`UnknownRevisionError`."""
    return _known_rev(rev, where, gitops.commit_of(_rev(rev), where.top))


def _rev(rev: object) -> str:
    if not isinstance(rev, str):
        raise UnknownRevisionError(f"A revision must be a string such as 'main~3', got {rev!r}.")
    return rev


def _known_rev(rev: str, where: RepoPath, sha: str | None) -> str:
    if sha is None:
        raise UnknownRevisionError(
            f"{rev!r} names no commit in {where.top}. Check it with `git log --oneline`, or "
            "`git fetch` if it is on another clone."
        )
    return sha


def _registry_text(filer: Filer, rev: str) -> tuple[bytes | None, str, str]:
    """The registry's bytes at ``rev`` (None if absent), a label for messages, its path."""
    where = repo_path(filer, f"rev={rev!r} cannot be read")
    sha, text = gitops.read_at(_rev(rev), where.registry, where.top)
    _known_rev(rev, where, sha)
    return text, f"{where.registry} at {rev}", where.registry


def registry_at(filer: Filer, rev: str) -> tuple[Registry | None, str]:
    """The Filer's registry as committed at ``rev`` (``None`` if absent), and where it is."""
    reg, label, _ = _registry_at(filer, rev)
    return reg, label


def _registry_at(filer: Filer, rev: str) -> tuple[Registry | None, str, str]:
    text, label, path = _registry_text(filer, rev)
    if text is None:
        return None, label, path
    reg = Codec().parse(text, label, filename=path)
    filer.remote.check_matches(reg.remote_address, label, reg.remote_id)
    return reg, label, path


def list_at(filer: Filer, rev: str) -> list[Entry]:
    """The entries of the Filer's registry at ``rev``, sorted by name (none if absent)."""
    reg, _ = registry_at(filer, rev)
    return [] if reg is None else [reg.entries[n] for n in sorted(reg.entries)]


def entry_at(filer: Filer, name: str, rev: str) -> Entry:
    """The entry ``name`` at ``rev``; :class:`UnknownModelError` naming the revision.

    The registry is read by the same fast reader as the working tree's (about 0.1 s at
    10,000 entries).
    """
    check_name(name)
    reg, label, path = _registry_at(filer, rev)
    if reg is None:
        raise UnknownModelError(
            name,
            path,
            rev=rev,
            consequence=f" (no registry {label}: no model was committed there)",
            hint=f"Run `model-filer log --all --dir {filer.local_dir}` to see where models exist.",
        )
    entry = reg.entries.get(name)
    if entry is None:
        raise UnknownModelError(
            name,
            path,
            reg.entries,
            rev=rev,
            hint=f"Run `model-filer log {name} --dir {filer.local_dir}` to see its history.",
        )
    return entry


def load_at(filer: Filer, name: str, rev: str, trusted: TrustedSet) -> Any:
    """Load ``name`` as the registry at ``rev`` recorded it (see :meth:`Filer.load`).

    ``trusted`` comes from the working tree's configuration and the caller, never from the
    revision: an old commit cannot widen what a pickle may import.
    """
    entry = entry_at(filer, name, rev)
    with open_verified(filer, entry, rev) as fh:
        model = serializers.load(fh, entry.serializer, name, trusted, filer.registry_path)
    serializers.warn_versions(entry)
    return model


# -- bytes of any version -------------------------------------------------------------------
def open_verified(filer: Filer, entry: Entry, rev: str = "") -> IO[bytes]:
    """A readable file holding exactly ``entry``'s bytes, fetched and verified if needed.

    The working tree's ``<name>.pkl`` when it holds them (the one check ``load`` makes), else
    the local object store, which downloads a version it lacks first. A version the working
    tree does not name never replaces ``<name>.pkl``.
    """
    try:
        return filer.open_bytes(entry)
    except LocalOnlyError:
        raise LocalOnlyError(
            f"{entry.name!r} at {rev or 'that revision'} is local: it was never pushed, and "
            "this machine's store does not have its bytes. Load it on the machine that "
            "dumped it."
        ) from None


# -- log ------------------------------------------------------------------------------------
class LogRow(NamedTuple):
    """One change of one model in one commit, with the metadata its entry had then."""

    commit: str
    time: int  # seconds since the epoch
    author: str
    name: str
    change: str  # added, replaced, removed, pushed, annotated, or merged (one side kept)
    entry: Entry  # the new entry; the old one for ``removed``

    def as_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "commit": self.commit,
            "date": iso_date(self.time),
            "author": self.author,
            "name": self.name,
            "change": self.change,
            "sha256": e.sha256,
            "size": e.size,
            "state": e.state,
            "metrics": e.metrics,
            "params": e.params,
            "tags": e.tags,
            "description": e.description,
        }


Target = tuple[str, str]  # what an alias names: (model name, sha256)


class AliasMove(NamedTuple):
    """An alias set, moved or removed: in one commit (log), or between two revisions (diff,
    where ``commit`` is empty)."""

    alias: str
    old: Target | None
    new: Target | None
    commit: str = ""
    time: int = 0
    author: str = ""

    @property
    def change(self) -> str:
        """``set``, ``moved`` or ``removed``."""
        return "set" if self.old is None else "removed" if self.new is None else "moved"

    def as_dict(self) -> dict[str, Any]:
        def side(target: Target | None) -> dict[str, str] | None:
            return None if target is None else {"model": target[0], "sha256": target[1]}

        when = {"commit": self.commit, "date": iso_date(self.time), "author": self.author}
        return {
            **(when if self.commit else {}),
            "alias": self.alias,
            "change": self.change,
            "from": side(self.old),
            "to": side(self.new),
        }


def iso_date(seconds: int) -> str:
    """A commit time as ISO 8601 UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


_META = slice(-len(META_FIELDS), None)  # an Entry's metadata: its last fields


def change_of(old: Entry | None, new: Entry | None) -> str | None:
    """How an entry changed between two versions, or ``None`` when it did not matter."""
    if old is None:
        return None if new is None else "added"
    if new is None:
        return "removed"
    if (old.sha256, old.size) != (new.sha256, new.size):
        return "replaced"
    if old.key is None and new.key is not None:
        return "pushed"
    return "annotated" if old[_META] != new[_META] else None


def log(filer: Filer, name: str | None = None, rev: str = "HEAD") -> list[LogRow]:
    """Every change of ``name`` (every model when ``None``) in ``rev``'s history, newest first.

    A merge shows a change when the merged version differs from every parent's, or when
    both branches had changed it and the merge kept one side's version (``merged``): a
    change made on one branch only is shown once, where it was made.
    """
    if name is not None:
        check_name(name)
    rows: list[LogRow] = []
    bases = _Bases(filer)
    for change, pairs in _versions(filer, rev):
        new = pairs[0][1]
        names = {name} if name is not None else _names(p for pair in pairs for p in pair)
        for model in sorted(names):
            after = _get(new, model)
            olds = [_get(old, model) for old, _ in pairs]
            kinds = [change_of(old, after) for old in olds]
            kind = kinds[0] if all(kinds) else None
            if kind is None and any(kinds) and bases.both_changed(change, olds, _get, model):
                kind = "merged" if after is not None else "removed"
            if kind is not None:
                entry = after if after is not None else next(o for o in olds if o is not None)
                rows.append(LogRow(change.commit, change.time, change.author, model, kind, entry))
    return rows


def alias_log(filer: Filer, alias: str, rev: str = "HEAD") -> list[AliasMove]:
    """Every move of ``alias`` (set, moved to other bytes or another model, removed) in
    ``rev``'s history, newest first; a merge as in :func:`log`."""
    check_name(alias)
    rows = []
    bases = _Bases(filer)
    for change, pairs in _versions(filer, rev):
        new = _target(pairs[0][1], alias)
        olds = [_target(old, alias) for old, _ in pairs]
        differ = [old != new for old in olds]
        if all(differ) or (any(differ) and bases.both_changed(change, olds, _target, alias)):
            rows.append(AliasMove(alias, olds[0], new, change.commit, change.time, change.author))
    return rows


class _Bases:
    """The registry at each merge's base, read only for merges that may have kept one side
    of a change made on both (one ``git merge-base`` and one blob read each)."""

    def __init__(self, filer: Filer) -> None:
        self._filer = filer
        self._where: RepoPath | None = None
        self._regs: dict[str, Registry | None] = {}

    def both_changed(
        self, change: gitops.PathChange, olds: Sequence[Any], get: Any, key: str
    ) -> bool:
        """Whether every parent's ``get(reg, key)`` differs from the merge base's: each
        branch changed it, so the merge chose (``olds`` are the parents' values)."""
        if len(change.parents) < 2:
            return False
        if change.commit not in self._regs:
            self._regs[change.commit] = self._base(change.parents)
        base = self._regs[change.commit]
        return base is not _UNREADABLE and all(old != get(base, key) for old in olds)

    def _base(self, parents: Sequence[str]) -> Registry | None:
        if self._where is None:
            self._where = repo_path(self._filer, "there is no history to read")
        top, path = self._where
        commit = gitops.merge_base(parents, top)
        if commit is None:  # unrelated histories: nothing both sides started from
            return None
        _, text = gitops.read_at(commit, path, top)
        if text is None:
            return None
        try:
            return Codec().parse(text, f"{path} at {commit[:10]}", filename=path)
        except ModelFilerError:
            return _UNREADABLE


Versions = list[tuple[Registry | None, Registry | None]]  # (before, after) per parent


def _versions(filer: Filer, rev: str) -> Iterator[tuple[gitops.PathChange, Versions]]:
    """Each commit of ``rev``'s history that changes the registry, newest first, with the
    registry before and after it per parent; a merge equal to one parent is left out (the
    change is listed on that side), and so is a version that does not parse."""
    where = repo_path(filer, "there is no history to read")
    resolve(rev, where)
    changes = gitops.path_log(where.top, [f":(top,literal){where.registry}"], [rev])
    ids = {b for c in changes for _, *pair in c.blobs for b in pair} - {gitops.NULL_BLOB}
    versions = _parse_blobs(filer, where, ids)
    for change in changes:
        pairs = [(versions.get(old), versions.get(new)) for _, old, new in change.blobs]
        pairs = [(o, n) for o, n in pairs if o is not _UNREADABLE and n is not _UNREADABLE]
        if pairs and len(pairs) >= len(change.parents):
            yield change, pairs


_UNREADABLE = Registry("", "")  # a version that does not parse: skipped, never guessed at


def _parse_blobs(filer: Filer, where: RepoPath, ids: Iterable[str]) -> dict[str, Registry]:
    """Each distinct registry version, read with one ``git cat-file`` and parsed once."""
    codec = Codec()  # consecutive versions share all but an entry or two: each checked once
    out: dict[str, Registry] = {}
    for blob, got in gitops.blobs(sorted(ids), where.top).items():
        if got is None:
            continue
        text = got.data
        label = f"{where.registry} (blob {blob[:10]})"
        try:
            reg = codec.parse(text, label, filename=where.registry)
            filer.remote.check_matches(reg.remote_address, where.registry, reg.remote_id)
        except ModelFilerError:
            reg = _UNREADABLE
        out[blob] = reg
    return out


def _get(reg: Registry | None, name: str) -> Entry | None:
    return None if reg is None else reg.entries.get(name)


def _target(reg: Registry | None, alias: str) -> Target | None:
    return None if reg is None else reg.aliases.get(alias)


def _names(regs: Iterable[Registry | None]) -> set[str]:
    return {n for reg in regs if reg is not None for n in reg.entries}


# -- diff -----------------------------------------------------------------------------------
class DiffRow(NamedTuple):
    """A model added, removed, changed (its bytes) or annotated between two revisions."""

    name: str
    change: str  # added, removed, changed or annotated
    old: Entry | None
    new: Entry | None

    def changes(self, field: str) -> dict[str, list[Any]]:
        """``field``'s (``"metrics"``, ``"params"``, ``"tags"``) keys that differ: key ->
        [old, new]."""
        a, b = (getattr(e, field) or {} if e is not None else {} for e in (self.old, self.new))
        return {
            k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
        }

    def as_dict(self) -> dict[str, Any]:
        def side(entry: Entry | None) -> dict[str, Any] | None:
            if entry is None:
                return None
            library = entry.library or {}
            return {
                "sha256": entry.sha256,
                "size": entry.size,
                "state": entry.state,
                "library": f"{library['name']} {library['version']}" if library else None,
            }

        return {
            "name": self.name,
            "change": self.change,
            "old": side(self.old),
            "new": side(self.new),
            "metrics": self.changes("metrics"),
            "params": self.changes("params"),
            "tags": self.changes("tags"),
            "description": self.description_change(),
        }

    def description_change(self) -> list[str | None] | None:
        """[old, new] description when it changed, else ``None``."""
        a, b = (e.description if e is not None else None for e in (self.old, self.new))
        return [a, b] if a != b else None


def diff(filer: Filer, rev1: str, rev2: str | None = None) -> list[DiffRow | AliasMove]:
    """Models added, removed, changed and annotated from ``rev1`` to ``rev2`` (default: the
    working tree), by name, then the aliases set, moved or removed, by name."""
    before, after = (_registry_or_tree(filer, rev) for rev in (rev1, rev2))
    old, new = before.entries, after.entries
    rows: list[DiffRow | AliasMove] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            rows.append(DiffRow(name, "added" if a is None else "removed", a, b))
        elif (a.sha256, a.size) != (b.sha256, b.size):
            rows.append(DiffRow(name, "changed", a, b))
        elif a[_META] != b[_META]:
            rows.append(DiffRow(name, "annotated", a, b))
    for alias in sorted(before.aliases.keys() | after.aliases.keys()):
        was, now = before.aliases.get(alias), after.aliases.get(alias)
        if was != now:
            rows.append(AliasMove(alias, was, now))
    return rows


def _registry_or_tree(filer: Filer, rev: str | None) -> Registry:
    """The registry at ``rev`` (empty where there is none), or the working tree's."""
    if rev is None:
        return filer.registry()
    reg, _ = registry_at(filer, rev)
    return Registry(filer.remote_type, "") if reg is None else reg


def registry_pathspecs(names: Sequence[str]) -> list[str]:
    """Pathspecs matching every file called one of ``names``, anywhere in the repository."""
    return [f":(top,glob)**/{n}" for n in names]


def named_at_heads_and_tags(folder: Path) -> frozenset[str]:
    """The sha256s that any registry names at any local branch head or tag of the git
    repository containing ``folder`` (none outside git): what ``cache prune`` evicts last."""
    try:
        repo = gitops.locate(folder)
    except ModelFilerError:  # git missing or refusing: nothing to protect by
        repo = None
    if repo is None:
        return frozenset()
    named: set[str] = set()
    codec = Codec()
    for commit in gitops.head_and_tag_commits(repo.top):
        for path, text in gitops.registries_at(repo.top, commit).items():
            with contextlib.suppress(ModelFilerError):  # an unreadable one protects nothing
                reg = codec.parse(text, path, filename=path)
                named.update(e.sha256 for e in reg.entries.values())
    return frozenset(named)
