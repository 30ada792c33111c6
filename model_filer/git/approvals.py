"""Remote approval: which remote each registry of this clone may use, and at which address.

A registry committed to git names its remote, and anyone can open a pull request that changes
it. Trust therefore belongs to a registry path, recorded in the clone's own git config
(``git config --local``, never committed):

    [model-filer "local:<id>"]                 address = /mnt/models
    [model-filer "s3:bucket/prefix"]           address = s3://bucket/prefix
    [model-filer "local:<id>"]                 address = /Volumes/models   override = true
    [model-filer-registry "models/.s3_registry"]   remote = s3:bucket/prefix
    [model-filer-clone]                        commit = <sha the clone was made at>

A remote is known by its identity: a local folder's ID (its ID file; a folder from before IDs
by its path), an S3 remote by bucket and prefix. The rule, the one the library, the CLI and
the hooks all ask through :func:`approved_address`:

- each registry path present when the clone was made trusts the remote it named then (the
  commit of git's ``clone:`` reflog entry; in a repository that was not cloned, ``HEAD`` when
  model_filer first looks);
- so does a registry path written through a ``Filer`` given an explicit address (:func:`vouch`);
- a registry path first seen later (a checkout, merge or pull, or a ``Filer`` made without an
  address) is used only if its remote is already trusted in this clone;
- a registry path whose remote, or a trusted remote's address, changed is refused (an ID is no
  secret: anyone can copy the file) until ``model-filer remote trust --dir D``.

``model-filer remote set`` records the address of a share mounted elsewhere on this machine.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from model_filer.errors import ModelFilerError, UntrustedRemoteError
from model_filer.git import gitops
from model_filer.registry.codec import parse
from model_filer.registry.model import Registry
from model_filer.remotes import get_remote

SECTION = "model-filer"
PATHS = "model-filer-registry"  # [model-filer-registry "<path in the repo>"] remote = <key>
CLONE = "model-filer-clone.commit"  # set once the registries of the clone's commit are recorded
#: The git config keys approvals live in (one ``git config`` read takes them all).
CONFIG_KEYS = rf"{SECTION}|{PATHS}|{CLONE.partition('.')[0]}"

Action = Literal["fetch", "push", "use", "check", "delete"]
_NOTHING: dict[str, str] = {
    "fetch": "Nothing was fetched from it",
    "push": "Nothing was pushed to it",
    "use": "Nothing will be fetched from it or pushed to it",
    "check": "It was not asked whether it holds the pushed models",
    "delete": "Nothing was deleted from it",
}


class Approval(NamedTuple):
    """A remote this clone fetches from: its identity key, where, and whether set by hand."""

    key: str
    address: str
    override: bool


class Clone(NamedTuple):
    """What this clone approved: remotes by key, and the remote key of each registry path."""

    repo: gitops.Repo
    remotes: dict[str, Approval]
    paths: dict[str, str]
    since: str | None  # the commit whose registries were taken as the clone's, once recorded

    def path_of(self, registry_path: Path) -> str:
        """The registry's path in the repository, as git names it."""
        return registry_path.resolve().relative_to(self.repo.top.resolve()).as_posix()


def remote_key(remote_type: str, address: str, remote_id: str | None) -> str:
    """The identity of a registry's remote: ``<type>:<id>``, else ``<type>:<address>``."""
    return f"{remote_type}:{remote_id or canonical(remote_type, address)}"


def canonical(remote_type: str, address: str) -> str:
    """The address as the remote spells it (a resolved path, ``s3://bucket/prefix``)."""
    return get_remote(remote_type, address).address


def describe(reg: Registry) -> str:
    """How a registry's remote is shown to people."""
    ident = f" (id {reg.remote_id})" if reg.remote_id else ""
    return f"{reg.remote_type} remote {reg.remote_address}{ident}"


def read_clone(repo: gitops.Repo | None, config: Mapping[str, str] | None = None) -> Clone | None:
    """This clone's approvals, from ``config`` when the caller read it (see
    :data:`CONFIG_KEYS`), else with one ``git config``; ``None`` outside git."""
    if repo is None:
        return None
    if config is None:
        config = gitops.config_read(rf"^({CONFIG_KEYS})\.", repo.top)
        if config is None:
            return None
    remotes: dict[str, Approval] = {}
    paths: dict[str, str] = {}
    for name, value in config.items():
        section, _, rest = name.partition(".")
        sub, _, field = rest.rpartition(".")
        if section == SECTION and field == "address":
            remotes[sub] = Approval(sub, value, config.get(f"{SECTION}.{sub}.override") == "true")
        elif section == PATHS and field == "remote":
            paths[sub] = value
    return Clone(repo, remotes, paths, config.get(CLONE))


def _clone_at(folder: Path) -> Clone | None:
    return read_clone(gitops.locate(folder))


def _clone_to_record(registry_path: Path, instead: str) -> Clone:
    """The clone to record an approval in; refuse outside git, saying what to do ``instead``."""
    clone = _clone_at(registry_path.parent)
    if clone is None:
        raise ModelFilerError(f"{registry_path.parent} is not inside a git repository: {instead}")
    return clone


def _record(clone: Clone, key: str, address: str, override: bool) -> Approval:
    top = clone.repo.top
    gitops.config_set(f"{SECTION}.{key}.address", address, top)
    if override:
        gitops.config_set(f"{SECTION}.{key}.override", "true", top)
    elif key in clone.remotes:  # (a remote recorded first has no override to drop)
        gitops.config_unset(f"{SECTION}.{key}.override", top)
    clone.remotes[key] = Approval(key, address, override)
    return clone.remotes[key]


def _record_path(clone: Clone, path: str, key: str) -> None:
    gitops.config_set(f"{PATHS}.{path}.remote", key, clone.repo.top)
    clone.paths[path] = key


def bootstrap(
    clone: Clone,
    listed: tuple[str, Mapping[str, str]] | None = None,
    read: Mapping[str, tuple[str, Registry]] | None = None,
) -> Clone:
    """Record, once, the remote each registry of the clone's commit names (the clone's own).

    A caller that has listed a commit's registries (``listed``: the commit and its registry
    paths' blob ids) and read some of them (``read``: path -> blob id and registry) passes
    them: a registry read from the working tree with the committed blob id is not read
    again, and the clone's commit is not listed again.
    """
    if clone.since is not None:
        return clone
    top = clone.repo.top
    commit = gitops.clone_commit(clone.repo) or gitops.commit_of("HEAD", top)
    if commit is None:
        ids: Mapping[str, str] = {}
    elif listed is not None and listed[0] == commit:
        ids = listed[1]
    else:
        ids = gitops.registry_ids(top, commit)
    known = {p: reg for p, (oid, reg) in (read or {}).items() if ids.get(p) == oid}
    rest = gitops.blobs([oid for p, oid in ids.items() if p not in known], top)
    for path, oid in ids.items():
        if path in clone.paths:
            continue
        try:
            reg = known[path] if path in known else _parse(rest[oid], f"{path} at {commit}", path)
            key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
            address = canonical(reg.remote_type, reg.remote_address)
        except ModelFilerError:
            continue  # unreadable then: it trusts nothing
        _record_path(clone, path, key)
        if key not in clone.remotes:
            _record(clone, key, address, override=False)
    gitops.config_set(CLONE, commit or "none", top)
    return clone._replace(since=commit or "none")


def _parse(blob: gitops.Blob | None, where: str, path: str) -> Registry:
    if blob is None:
        raise ModelFilerError(f"{where} cannot be read")
    return parse(blob.data, where, filename=path)


def approved_address(
    registry_path: Path,
    reg: Registry,
    folder: str | None = None,
    action: Action = "fetch",
    clone: Clone | None = None,
) -> str:
    """The address to reach ``reg``'s remote at in this clone, or refuse (see the module).

    Outside a git repository there is no clone to protect: the registry's address is used.

    Parameters
    ----------
    registry_path : Path
        The registry file (its path in the repository is what approval is recorded for).
    reg : Registry
        Its content: the remote it names.
    folder : str, optional
        The model folder as the user typed it, for the command in the message.
    action : {"fetch", "push", "use", "check", "delete"}
        What the caller is about to do, for the message.
    clone : Clone, optional
        This clone's approvals, already read and bootstrapped (a hook's whole run);
        read here when not given.

    Raises
    ------
    UntrustedRemoteError
        The registry path names a remote this clone has not approved for it, or its
        address changed.
    """
    if clone is None:
        clone = _clone_at(registry_path.parent)
        if clone is None:
            return reg.remote_address
        clone = bootstrap(clone)
    path = clone.path_of(registry_path)
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    address = canonical(reg.remote_type, reg.remote_address)
    known = clone.paths.get(path)
    entry = clone.remotes.get(key) if known in (None, key) else None
    if entry is None and reg.remote_id is not None:
        entry = _by_path(clone, path, known, key, f"{reg.remote_type}:{address}")
    elif entry is not None and known is None:
        _record_path(clone, path, key)  # first seen, naming a remote this clone trusts
    label = shlex.quote(folder if folder is not None else str(registry_path.parent))
    trust = f"model-filer remote trust --dir {label}"
    nothing = _NOTHING[action]
    if entry is None:
        raise UntrustedRemoteError(_untrusted(registry_path, reg, clone, known, nothing, trust))
    if entry.override or entry.address == address:
        return entry.address
    raise UntrustedRemoteError(
        f"{registry_path} moved {reg.remote_type} remote {key} from {entry.address} to "
        f"{reg.remote_address}; this clone still uses only {entry.address}. {nothing}. If "
        f"the move is expected, trust it: `{trust}`; if the share is mounted elsewhere on "
        f"this machine: `model-filer remote set --dir {label} PATH`."
    )


def _by_path(clone: Clone, path: str, known: str | None, key: str, by_path: str) -> Approval | None:
    """A folder this clone approved by its path whose registry now records the folder's ID."""
    entry = clone.remotes.get(by_path)
    if entry is None or known not in (None, by_path):
        return None
    _record_path(clone, path, key)
    return _record(clone, key, entry.address, entry.override)


def _untrusted(
    registry_path: Path, reg: Registry, clone: Clone, known: str | None, nothing: str, trust: str
) -> str:
    if known is not None:
        was = clone.remotes.get(known)
        before = f"{known} at {was.address}" if was is not None else known
        what = f"now names {describe(reg)}; this clone knows it as the registry of {before}"
    else:
        trusted = "; ".join(f"{t.key} at {t.address}" for t in clone.remotes.values())
        what = (
            f"names {describe(reg)}, a remote this clone does not trust (it trusts: "
            f"{trusted or 'none'})"
        )
    return (
        f"{registry_path} {what}. {nothing}. If the change is expected (check the commit "
        f"that made it), trust it: `{trust}`."
    )


def approve(registry_path: Path, reg: Registry) -> Approval:
    """Approve the remote ``reg`` names for its registry path, at the address it records
    (drops any override)."""
    clone = bootstrap(_clone_to_record(registry_path, "there is no clone to record trust in."))
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    _record_path(clone, clone.path_of(registry_path), key)
    return _record(clone, key, canonical(reg.remote_type, reg.remote_address), override=False)


def vouch(registry_path: Path, reg: Registry, address: str) -> None:
    """Approve a registry written through a ``Filer`` given ``address`` explicitly.

    The Filer has checked that ``address`` is the registry's remote. The address is recorded
    only when it is the one the registry records (not a per-machine path), and never replaces
    an override set with ``model-filer remote set``.
    """
    clone = _clone_at(registry_path.parent)  # (not bootstrapped: a dump need not wait)
    if clone is None:
        return
    path = clone.path_of(registry_path)
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    if clone.paths.get(path) != key:
        _record_path(clone, path, key)
    entry = clone.remotes.get(key)
    here = canonical(reg.remote_type, address)
    if here == canonical(reg.remote_type, reg.remote_address) and (
        entry is None or (not entry.override and entry.address != here)
    ):
        _record(clone, key, here, override=False)


def require_per_machine(reg: Registry) -> None:
    """Refuse a remote whose address cannot differ between machines (all but a folder)."""
    if reg.remote_type != "local":
        raise ModelFilerError(
            f"An {reg.remote_type} address is the same on every machine; only a local-folder "
            "remote can have a per-machine address. For another S3 endpoint set "
            "AWS_ENDPOINT_URL."
        )


def set_address(registry_path: Path, reg: Registry, address: str) -> Approval:
    """Record where this machine reaches ``reg``'s remote; the caller has checked the folder."""
    clone = _clone_to_record(registry_path, "pass the address to Filer() instead.")
    require_per_machine(reg)
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    return _record(clone, key, canonical(reg.remote_type, address), override=True)


def override_of(registry_path: Path, reg: Registry, clone: Clone | None = None) -> Approval | None:
    """This machine's address override for ``reg``'s remote, if one was set."""
    clone = clone or _clone_at(registry_path.parent)
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    entry = clone.remotes.get(key) if clone is not None else None
    return entry if entry is not None and entry.override else None
