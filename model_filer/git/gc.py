"""The remote garbage collector: delete only objects no reachable registry names.

An object is garbage only if all of these hold:

- its key has the form model_filer writes, ``<name>/<sha256>.pkl`` under the remote root
  (anything else on the remote is someone else's and is never touched);
- no version of any registry file of this remote type, at any commit reachable from any ref
  (local branches, tags, remote-tracking refs, stashes, HEAD), nor in the index or the
  working tree's registry, names it (by key, or by the name and sha256 it is made of);
- it is older than the grace period, which protects what other clones pushed but this one
  has not fetched yet.

Registries that record another remote are not counted (their keys live elsewhere); a registry
version that does not parse protects every sha256 its text mentions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from model_filer.errors import ModelFilerError
from model_filer.fs.layout import registry_filename
from model_filer.git import gitops
from model_filer.git.history import registry_pathspecs, repo_path
from model_filer.registry.codec import Codec
from model_filer.registry.model import Registry
from model_filer.registry.names import is_object_key, key_sha256, object_key

if TYPE_CHECKING:
    from model_filer.filer import Filer
    from model_filer.remotes import RemoteObject

DEFAULT_GRACE = timedelta(days=14)
_ANY_SHA = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


class Protected(NamedTuple):
    """What history still needs: object keys, and sha256s from registries that do not parse."""

    keys: frozenset[str]
    shas: frozenset[str]
    registries: int  # distinct registry versions read


class Plan(NamedTuple):
    """What ``gc`` would delete, and what it kept."""

    candidates: list[RemoteObject]
    kept_named: int  # objects a reachable registry names
    kept_young: int  # unnamed, but younger than the grace period
    registries: int

    @property
    def total(self) -> int:
        """Bytes the candidates take."""
        return sum(o.size for o in self.candidates)


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
    """List the objects ``gc`` may delete: one git walk, then one LIST of the remote
    (``current``: the working tree's registry, when the caller has read it)."""
    if grace < timedelta(0):
        raise ModelFilerError(f"The grace period must not be negative, got {grace}.")
    keep = protected(filer, current)
    cutoff = (now or datetime.now(UTC)) - grace
    candidates: list[RemoteObject] = []
    named = young = 0
    for obj in _listing(filer):
        if not is_object_key(obj.key):
            continue  # not written by model_filer: never ours to delete
        if obj.key in keep.keys or key_sha256(obj.key) in keep.shas:
            named += 1
        elif obj.modified > cutoff:
            young += 1
        else:
            candidates.append(obj)
    return Plan(candidates, named, young, keep.registries)


def _listing(filer: Filer) -> Iterator[RemoteObject]:
    return filer.remote.list_objects("")


def collect(filer: Filer, candidates: list[RemoteObject]) -> list[str]:
    """Delete the ``candidates`` of a :func:`plan`; return the keys deleted."""
    deleted = []
    for obj in candidates:
        if not is_object_key(obj.key):  # a plan built by hand must not widen what gc may touch
            raise ModelFilerError(f"{obj.key!r} was not written by model_filer; not deleted.")
        filer.remote.delete(obj.key)
        deleted.append(obj.key)
    return deleted


UNFETCHED_WARNING = (
    "Objects pushed from other clones whose commits are not fetched here are protected only "
    "by the grace period. Run `git fetch --all` first."
)
