"""The registry through git history: load at a revision, log and diff, with no checkout.

Everything here reads git objects (``git log --raw`` for which blob a commit holds, one
``git cat-file --batch`` for the blobs) and never touches the working tree. Remote objects are
keyed by content, so every committed registry can still load the bytes it names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
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
from model_filer.registry.model import Entry, Registry
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
    """One change of one model in one commit."""

    commit: str
    time: int  # seconds since the epoch
    author: str
    name: str
    change: str  # added, replaced, removed or pushed
    entry: Entry  # the new entry; the old one for ``removed``

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "date": iso_date(self.time),
            "author": self.author,
            "name": self.name,
            "change": self.change,
            "sha256": self.entry.sha256,
            "size": self.entry.size,
            "state": self.entry.state,
        }


def iso_date(seconds: int) -> str:
    """A commit time as ISO 8601 UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


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
    return None


def log(filer: Filer, name: str | None = None, rev: str = "HEAD") -> list[LogRow]:
    """Every change of ``name`` (every model when ``None``) in ``rev``'s history, newest first.

    A merge shows a change only when the merged entry differs from every parent's (a change
    made on a branch is shown once, where it was made).
    """
    if name is not None:
        check_name(name)
    where = repo_path(filer, "there is no history to read")
    resolve(rev, where)
    changes = gitops.path_log(where.top, [f":(top,literal){where.registry}"], [rev])
    ids = {b for c in changes for _, *pair in c.blobs for b in pair} - {gitops.NULL_BLOB}
    versions = _parse_blobs(filer, where, ids, name)
    rows: list[LogRow] = []
    for change in changes:
        pairs = [(versions.get(old), versions.get(new)) for _, old, new in change.blobs]
        pairs = [(o, n) for o, n in pairs if o is not _UNREADABLE and n is not _UNREADABLE]
        if not pairs or len(pairs) < len(change.parents):
            continue  # a merge equal to one parent: the change is listed on that side
        new = pairs[0][1]
        names = {name} if name is not None else _names(p for pair in pairs for p in pair)
        for model in sorted(names):
            after = _get(new, model)
            kinds = [change_of(_get(old, model), after) for old, _ in pairs]
            if all(kinds) and kinds[0] is not None:
                entry = after if after is not None else _get(pairs[0][0], model)
                assert entry is not None  # noqa: S101 - a change has a side with the entry
                rows.append(
                    LogRow(change.commit, change.time, change.author, model, kinds[0], entry)
                )
    return rows


_UNREADABLE = Registry("", "")  # a version that does not parse: skipped, never guessed at


def _parse_blobs(
    filer: Filer, where: RepoPath, ids: Iterable[str], name: str | None
) -> dict[str, Registry]:
    """Each distinct registry version, parsed once (only ``name``'s entry when given)."""
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


def _names(regs: Iterable[Registry | None]) -> set[str]:
    return {n for reg in regs if reg is not None for n in reg.entries}


# -- diff -----------------------------------------------------------------------------------
class DiffRow(NamedTuple):
    """A model added, removed or changed between two revisions."""

    name: str
    change: str  # added, removed or changed
    old: Entry | None
    new: Entry | None

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
        }


def diff(filer: Filer, rev1: str, rev2: str | None = None) -> list[DiffRow]:
    """Models added, removed and changed from ``rev1`` to ``rev2`` (default: working tree)."""
    old = {e.name: e for e in filer.list_files(rev1)}
    new = {e.name: e for e in filer.list_files(rev2)}
    rows = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            rows.append(DiffRow(name, "added" if a is None else "removed", a, b))
        elif (a.sha256, a.size) != (b.sha256, b.size):
            rows.append(DiffRow(name, "changed", a, b))
    return rows


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
