"""The remote garbage collector: delete only objects no reachable registry names.

An object is garbage only if all of these hold:

- its key has a form model_filer writes: ``<name>/<sha256>.pkl``, or the chunked layout's
  ``.model_filer/{objects,maps,packs,manifests,chunks}/<sha256>`` (anything else on the remote
  is someone else's and is never touched; nor are the repository markers, ``.model_filer/repos/``);
- no version of any registry file of this remote type, at any commit reachable from any ref
  (local branches, tags, remote-tracking refs, stashes, HEAD), nor in the index or the
  working tree's registry, names it (by key, or by the sha256 it is named by); a pack or a
  chunk, no map or manifest that stays on the remote names it;
- it is older than the grace period, which protects what other clones pushed but this one
  has not fetched yet; and its last change, re-read just before the delete, is still the one
  the listing showed (a push that reused it since has renewed it, and wins).

Registries that record another remote are not counted (their keys live elsewhere); a registry
version that does not parse protects every sha256 its text mentions. The protocol, and how
repositories that share a prefix are told apart, is in docs/gc-protocol.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from model_filer.errors import ModelFilerError, SharedPrefixError
from model_filer.fs.layout import registry_filename
from model_filer.git import gitops
from model_filer.git.history import registry_pathspecs, repo_path
from model_filer.registry.codec import Codec
from model_filer.registry.model import Registry
from model_filer.registry.names import (
    MANIFEST_KINDS,
    MODEL_KINDS,
    STORAGE_DIR,
    is_ours,
    key_sha256,
    object_key,
    storage_key,
    storage_key_kind,
)
from model_filer.storage import GC_GRACE

if TYPE_CHECKING:
    from model_filer.filer import Filer
    from model_filer.remotes import Remote, RemoteObject

DEFAULT_GRACE = GC_GRACE  # (a push renews what it reuses past half of it)
_ANY_SHA = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
MARKERS = f"{STORAGE_DIR}/repos/"
MARKER_RENEWED = timedelta(days=1)  # a push renews its repository's marker at most this often
MANIFEST_READS = 16  # manifests read in parallel
_MARKED: set[tuple[str, Path]] = set()  # (remote, repository) marked by this process


class Protected(NamedTuple):
    """What history still needs: object keys, and sha256s from registries that do not parse."""

    keys: frozenset[str]
    shas: frozenset[str]
    registries: int  # distinct registry versions read


class Plan(NamedTuple):
    """What ``gc`` would delete, and what it kept."""

    candidates: list[RemoteObject]  # models and manifests first, then packs and chunks
    kept_named: int  # objects a reachable registry (or a manifest that stays) names
    kept_young: int  # unnamed, but younger than the grace period
    registries: int
    foreign: list[RemoteObject]  # markers of other repositories that share the prefix

    @property
    def total(self) -> int:
        """Bytes the candidates take."""
        return sum(o.size for o in self.candidates)

    @property
    def shared(self) -> bool:
        """Whether a candidate is shared storage while other repositories use the prefix:
        :func:`collect` then refuses unless told ``shared_prefix_ok``."""
        return bool(self.foreign) and any(_shareable(o.key) for o in self.candidates)


def protected(filer: Filer, current: Registry | None = None) -> Protected:
    """Every key named by a registry version reachable in the repository of ``filer``, or
    by its working tree's registry (``current`` when the caller has read it)."""
    where = repo_path(filer, "`gc` cannot tell which objects history still needs")
    if gitops.is_shallow(where.top):
        raise ModelFilerError(
            f"{where.top} is a shallow clone: commits missing here may name remote objects, so "
            "gc will not run. Run `git fetch --unshallow` first."
        )
    pathspecs = registry_pathspecs([registry_filename(filer.remote_type)])
    blobs = gitops.reachable_blobs(where.top, pathspecs)
    texts = {i: b.data for i, b in gitops.blobs(sorted(blobs), where.top).items() if b}
    if len(texts) != len(blobs):
        missing = sorted(set(blobs) - set(texts))
        raise ModelFilerError(
            f"{len(missing)} registry version(s) are missing from the git objects (e.g. blob "
            f"{missing[0]}), so gc cannot tell what they name. Run `git fsck` and "
            "`git fetch --all`."
        )
    if current is None and filer.registry_path.is_file():
        texts["worktree"] = filer.registry_path.read_bytes()
    codec = Codec()  # each distinct entry block of every version is checked once
    regs = [] if current is None else [(where.registry, current)]
    shas: set[str] = set()
    for blob, text in texts.items():
        path = sorted(blobs.get(blob, {where.registry}))[0]
        try:
            regs.append((path, codec.parse(text, f"{path} (blob {blob[:10]})", filename=path)))
        except ModelFilerError:
            shas.update(m.decode() for m in _ANY_SHA.findall(text))  # unreadable: keep all
    keys: set[str] = set()
    for path, reg in regs:
        try:
            filer.remote.check_matches(reg.remote_address, path)
        except ModelFilerError:
            continue  # another bucket or prefix: its keys are not ours
        for entry in reg.entries.values():
            keys.add(object_key(entry.name, entry.sha256))
            if entry.key is not None:
                keys.add(entry.key)
    return Protected(frozenset(keys), frozenset(shas), len(texts) + (current is not None))


def plan(
    filer: Filer,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    current: Registry | None = None,
) -> Plan:
    """List the objects ``gc`` may delete: one git walk, one LIST of the remote, and a read
    of each manifest that stays (``current``: the working tree's registry, when the caller
    has read it)."""
    if grace < timedelta(0):
        raise ModelFilerError(f"The grace period must not be negative, got {grace}.")
    keep = protected(filer, current)
    cutoff = (now or datetime.now(UTC)) - grace
    by_kind: dict[str | None, list[RemoteObject]] = {}
    for obj in _listing(filer):
        if is_ours(obj.key):
            by_kind.setdefault(storage_key_kind(obj.key), []).append(obj)
    candidates: list[RemoteObject] = []
    kept = [0, 0]  # named, young

    def judge(objs: list[RemoteObject], keys: set[str] | frozenset[str]) -> None:
        for obj in objs:
            named = obj.key in keys or key_sha256(obj.key) in keep.shas
            if named or obj.modified > cutoff:
                kept[not named] += 1
            else:
                candidates.append(obj)

    for kind in (None, *MODEL_KINDS):
        judge(by_kind.get(kind, []), keep.keys)
    going = {o.key for o in candidates}
    staying = [o for k in MANIFEST_KINDS for o in by_kind.get(k, []) if o.key not in going]
    named = _named_by(filer.remote, staying)
    judge(by_kind.get("packs", []) + by_kind.get("chunks", []), named)
    foreign = _foreign(filer, by_kind.get("repos", []))
    return Plan(candidates, kept[0], kept[1], keep.registries, foreign)


def _shareable(key: str) -> bool:
    """Whether ``key`` is of the chunked layout, whose objects any repository may reuse."""
    return storage_key_kind(key) not in (None, "repos")


def _listing(filer: Filer) -> Iterator[RemoteObject]:
    return filer.remote.list_objects("")


def _named_by(remote: Remote, manifests: list[RemoteObject]) -> set[str]:
    """The packs and chunks ``manifests`` name, read a few at a time (they are small).

    A manifest that cannot be read or parsed stops gc: what it needs is unknown.
    """
    from concurrent.futures import ThreadPoolExecutor

    from model_filer.storage.manifest import manifest_needs

    def needed_by(obj: RemoteObject) -> dict[str, tuple[int, int]]:
        try:
            return manifest_needs(remote, obj.key, obj.key.rpartition("/")[2])
        except ModelFilerError as exc:
            raise ModelFilerError(
                f"{remote.url(obj.key)} is not a readable manifest ({exc}), so gc cannot tell "
                "which packs or chunks it needs and deletes none. Push the model again from a "
                "machine that holds it; if no registry names it, delete that manifest by hand."
            ) from None

    with ThreadPoolExecutor(MANIFEST_READS) as pool:
        return {key for keys in pool.map(needed_by, manifests) for key in keys}


def collect(
    filer: Filer, candidates: list[RemoteObject], shared_prefix_ok: bool = False
) -> list[str]:
    """Delete the ``candidates`` of a :func:`plan`; return the keys deleted.

    Each object's last change is re-read just before its delete: one that changed since the
    listing (a push reused and renewed it) is kept. Shared storage (the chunked layout) is
    deleted only when no other repository's marker is on the prefix, or ``shared_prefix_ok``.
    """
    for obj in candidates:  # a plan built by hand must not widen what gc may touch
        if not is_ours(obj.key) or storage_key_kind(obj.key) == "repos":
            raise ModelFilerError(f"{obj.key!r} was not written by model_filer; not deleted.")
    if not shared_prefix_ok and any(_shareable(o.key) for o in candidates):
        foreign = _foreign(filer, list(filer.remote.list_objects(MARKERS)))
        if foreign:
            raise SharedPrefixError(shared_warning(filer, foreign))
    deleted = []
    for obj in candidates:
        now = filer.remote.modified_of(obj.key)
        if now is None or _second(now) > _second(obj.modified):
            continue  # gone, or renewed by a push since the listing: still needed
        filer.remote.delete(obj.key)
        deleted.append(obj.key)
    return deleted


def _second(when: datetime) -> datetime:
    """``when`` to the second: a listing and a HEAD may tell it at different precisions."""
    return when.replace(microsecond=0)


# -- repositories that share a prefix -----------------------------------------------------------
def _roots(top: Path) -> list[str]:
    """The root commits of the repository at ``top`` (none before its first commit)."""
    out = gitops.run(["rev-list", "--max-parents=0", "--all"], top, check=False).stdout
    return sorted(out.decode().split())


def _foreign(filer: Filer, markers: Iterable[RemoteObject]) -> list[RemoteObject]:
    """The markers of repositories other than the Filer's: named by a commit it lacks (a
    root commit since rewritten, an amended first commit, is still its own while it holds
    the old commit)."""
    markers = list(markers)
    repo = gitops.locate(filer.local_dir)
    if not markers or repo is None:
        return markers
    names = "".join(f"{m.key.rpartition('/')[2]}^{{commit}}\n" for m in markers).encode()
    out = gitops.run(["cat-file", "--batch-check"], repo.top, data=names, check=False).stdout
    known = {f[0] for f in map(str.split, out.decode().splitlines()) if f[1:2] == ["commit"]}
    return [m for m in markers if m.key.rpartition("/")[2] not in known]


def shared_warning(filer: Filer, foreign: list[RemoteObject]) -> str:
    """Why gc will not delete shared storage on the Filer's remote, and what to type."""
    shown = ", ".join(
        f"{m.key.rpartition('/')[2][:12]} (last push {m.modified:%Y-%m-%d})" for m in foreign[:5]
    )
    return (
        f"{len(foreign)} other repositor{'y' if len(foreign) == 1 else 'ies'} push to "
        f"{filer.remote.address} too ({shown}): chunks and models there may be theirs, and "
        "this repository's history cannot tell which they still need, so gc deletes none of "
        "them. Give each repository its own remote prefix; or, if those repositories are gone "
        "or you accept deleting what only they name, run again with --shared-prefix-ok "
        "(see docs/gc-protocol.md)."
    )


def mark_repository(filer: Filer) -> None:
    """Put this repository's marker on the Filer's remote (a push of the chunked layout).

    The marker, ``.model_filer/repos/<root commit>``, tells the gc of any other repository
    that shares the prefix that this one needs objects there; it is written once and renewed
    at most daily (so its age says when the repository last pushed), once per process (a
    notebook's many pushes pay one ``git rev-list`` and one HEAD). Nothing is written outside
    git or before a first commit: gc cannot run there either.
    """
    repo = gitops.locate(filer.local_dir)
    if repo is None or (filer.remote.address, repo.top) in _MARKED:
        return
    roots = _roots(repo.top)
    if not roots:
        return
    key = storage_key("repos", roots[0])
    modified = filer.remote.modified_of(key)
    if modified is None:
        data = json.dumps({"format": 1, "roots": roots}, sort_keys=True).encode()
        filer.remote.upload_parts([data], key, hashlib.sha256(data).hexdigest())
    elif modified < datetime.now(UTC) - MARKER_RENEWED:
        filer.remote.touch(key)
    _MARKED.add((filer.remote.address, repo.top))


UNFETCHED_WARNING = (
    "Objects pushed from other clones whose commits are not fetched here are protected only "
    "by the grace period. Run `git fetch --all` first."
)
