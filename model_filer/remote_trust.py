"""Which remote each registry of this clone uses, and at which address (per-machine override).

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
the hooks all ask through :func:`fetch_address`:

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
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from .errors import ModelFilerError, RemoteMismatchError, UntrustedRemoteError
from .gitops import (
    clone_commit,
    commit_of,
    config_get_regexp,
    config_set,
    config_unset,
    open_repo,
    registries_at,
    repo_prefix,
)
from .registry import Registry, parse
from .remotes import PATIENT, Network, get_remote

if TYPE_CHECKING:
    from .filer import Filer

SECTION = "model-filer"
PATHS = "model-filer-registry"  # [model-filer-registry "<path in the repo>"] remote = <key>
CLONE = "model-filer-clone.commit"  # set once the registries of the clone's commit are recorded

Action = Literal["fetch", "push", "use", "check", "delete"]
_NOTHING: dict[str, str] = {
    "fetch": "Nothing was fetched from it",
    "push": "Nothing was pushed to it",
    "use": "Nothing will be fetched from it or pushed to it",
    "check": "It was not asked whether it holds the pushed models",
    "delete": "Nothing was deleted from it",
}


class Trusted(NamedTuple):
    """A remote this clone fetches from: its identity key, where, and whether set by hand."""

    key: str
    address: str
    override: bool


class Clone(NamedTuple):
    """What this clone trusts: remotes by key, and the remote key of each registry path."""

    top: Path
    remotes: dict[str, Trusted]
    paths: dict[str, str]
    since: str | None  # the commit whose registries were taken as the clone's, once recorded


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


def _read(top: Path) -> Clone | None:
    raw = config_get_regexp(rf"^({SECTION}|{PATHS}|{CLONE.partition('.')[0]})\.", top)
    if raw is None:
        return None
    remotes: dict[str, Trusted] = {}
    paths: dict[str, str] = {}
    for name, value in raw.items():
        section, _, rest = name.partition(".")
        sub, _, field = rest.rpartition(".")
        if section == SECTION and field == "address":
            remotes[sub] = Trusted(sub, value, raw.get(f"{SECTION}.{sub}.override") == "true")
        elif section == PATHS and field == "remote":
            paths[sub] = value
    return Clone(top, remotes, paths, raw.get(CLONE))


def trusted_remotes(cwd: Path) -> dict[str, Trusted] | None:
    """This clone's trusted remotes by key; ``None`` outside a git repository."""
    found = repo_prefix(cwd)
    clone = _read(found[0]) if found is not None else None
    return clone.remotes if clone is not None else None


def _record(cwd: Path, key: str, address: str, override: bool) -> Trusted:
    config_set(f"{SECTION}.{key}.address", address, cwd)
    if override:
        config_set(f"{SECTION}.{key}.override", "true", cwd)
    else:
        config_unset(f"{SECTION}.{key}.override", cwd)
    return Trusted(key, address, override)


def _record_path(clone: Clone, path: str, key: str) -> None:
    config_set(f"{PATHS}.{path}.remote", key, clone.top)
    clone.paths[path] = key


def _bootstrap(clone: Clone) -> Clone:
    """Record, once, the remote each registry of the clone's commit names (the clone's own)."""
    if clone.since is not None:
        return clone
    repo = open_repo(clone.top)
    commit = clone_commit(repo) or commit_of("HEAD", clone.top)
    for path, text in (registries_at(repo, commit) if commit else {}).items():
        if path in clone.paths:
            continue
        try:
            reg = parse(text, f"{path} at {commit}", filename=path)
            key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
            address = canonical(reg.remote_type, reg.remote_address)
        except ModelFilerError:
            continue  # unreadable then: it trusts nothing
        _record_path(clone, path, key)
        if key not in clone.remotes:
            clone.remotes[key] = _record(clone.top, key, address, override=False)
    config_set(CLONE, commit or "none", clone.top)
    return clone._replace(since=commit or "none")


def _clone_of(registry_path: Path, decide: bool = True) -> tuple[Clone, str] | None:
    """This clone's trust and the registry's path in it; ``None`` outside git. Before a
    decision (``decide``) the clone's own registries are recorded, once."""
    found = repo_prefix(registry_path.parent)
    if found is None:
        return None
    clone = _read(found[0])
    if clone is None:
        return None
    return (_bootstrap(clone) if decide else clone), found[1] + registry_path.name


def fetch_address(
    registry_path: Path, reg: Registry, folder: str | None = None, action: Action = "fetch"
) -> str:
    """The address to reach ``reg``'s remote at in this clone, or refuse (see the module).

    Outside a git repository there is no clone to protect: the registry's address is used.

    Parameters
    ----------
    registry_path : Path
        The registry file (its path in the repository is what trust is recorded for).
    reg : Registry
        Its content: the remote it names.
    folder : str, optional
        The model folder as the user typed it, for the command in the message.
    action : {"fetch", "push", "use", "check", "delete"}
        What the caller is about to do, for the message.

    Raises
    ------
    UntrustedRemoteError
        The registry path names a remote this clone does not trust for it, or its address
        changed.
    """
    found = _clone_of(registry_path)
    if found is None:
        return reg.remote_address
    clone, path = found
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


def _by_path(clone: Clone, path: str, known: str | None, key: str, by_path: str) -> Trusted | None:
    """A folder this clone trusted by its path whose registry now records the folder's ID."""
    entry = clone.remotes.get(by_path)
    if entry is None or known not in (None, by_path):
        return None
    _record_path(clone, path, key)
    clone.remotes[key] = _record(clone.top, key, entry.address, entry.override)
    return clone.remotes[key]


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


def trust(registry_path: Path, reg: Registry) -> Trusted:
    """Trust the remote ``reg`` names for its registry path, at the address it records (drops
    any override)."""
    found = _clone_of(registry_path)
    if found is None:
        raise ModelFilerError(
            f"{registry_path.parent} is not inside a git repository: there is no clone to "
            "record trust in."
        )
    clone, path = found
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    _record_path(clone, path, key)
    return _record(clone.top, key, canonical(reg.remote_type, reg.remote_address), override=False)


def vouch(registry_path: Path, reg: Registry, address: str) -> None:
    """Trust a registry written through a ``Filer`` given ``address`` explicitly (its remote).

    The Filer has checked that ``address`` is the registry's remote. The address is recorded
    only when it is the one the registry records (not a per-machine path), and never replaces
    an override set with ``model-filer remote set``.
    """
    found = _clone_of(registry_path, decide=False)  # (a dump need not wait for that)
    if found is None:
        return
    clone, path = found
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    if clone.paths.get(path) != key:
        _record_path(clone, path, key)
    entry = clone.remotes.get(key)
    here = canonical(reg.remote_type, address)
    if here == canonical(reg.remote_type, reg.remote_address) and (
        entry is None or (not entry.override and entry.address != here)
    ):
        _record(clone.top, key, here, override=False)


def registry_of(folder: Path, remote_type: str | None) -> tuple[Path, Registry]:
    """The one registry of ``folder`` (of ``remote_type`` if given), for ``Filer(folder)``.

    Raises
    ------
    RegistryError
        None, or several, are there.
    RemoteMismatchError
        ``remote_type`` disagrees with the folder's registry.
    """
    from .discovery import read_registry, registries_in
    from .errors import RegistryError
    from .layout import registry_filename, remote_type_of

    found = registries_in(folder)
    chosen = [p for p in found if remote_type in (None, remote_type_of(p.name))]
    if len(chosen) == 1:
        return chosen[0], read_registry(chosen[0])
    if remote_type is not None and len(found) == 1:
        raise RemoteMismatchError(
            f"{found[0]} is a {remote_type_of(found[0].name)} registry, but remote_type="
            f"{remote_type!r} was passed. Drop remote_type to use it, or pass the address "
            f"of the {remote_type} remote to start {folder / registry_filename(remote_type)}."
        )
    if not chosen:
        raise RegistryError(
            f"No registry in {folder}, so Filer({str(folder)!r}) has no remote to read. Pass "
            f"the address: Filer({str(folder)!r}, 's3://bucket/prefix') or "
            f"Filer({str(folder)!r}, '/path/to/folder', 'local')."
        )
    kinds = ", ".join(repr(remote_type_of(p.name)) for p in chosen)
    raise RegistryError(
        f"{folder} holds {len(chosen)} registries ({', '.join(p.name for p in chosen)}), so "
        f"Filer({str(folder)!r}) cannot tell which remote to use. Pass remote_type= (one of "
        f"{kinds})."
    )


def require_per_machine(reg: Registry) -> None:
    """Refuse a remote whose address cannot differ between machines (all but a folder)."""
    if reg.remote_type != "local":
        raise ModelFilerError(
            f"An {reg.remote_type} address is the same on every machine; only a local-folder "
            "remote can have a per-machine address. For another S3 endpoint set "
            "AWS_ENDPOINT_URL."
        )


def set_address(registry_path: Path, reg: Registry, address: str) -> Trusted:
    """Record where this machine reaches ``reg``'s remote; the caller has checked the folder."""
    cwd = registry_path.parent
    if trusted_remotes(cwd) is None:
        raise ModelFilerError(
            f"{cwd} is not inside a git repository: pass the address to Filer() instead."
        )
    require_per_machine(reg)
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    return _record(cwd, key, canonical(reg.remote_type, address), override=True)


def override_of(registry_path: Path, reg: Registry, cwd: Path | None = None) -> Trusted | None:
    """This machine's address override for ``reg``'s remote, if one was set (``cwd``: a
    folder of the clone, default the registry's)."""
    trusted = trusted_remotes(cwd or registry_path.parent) or {}
    entry = trusted.get(remote_key(reg.remote_type, reg.remote_address, reg.remote_id))
    return entry if entry is not None and entry.override else None


def trusted_filer(
    registry_path: Path,
    folder: str | None = None,
    network: Network = PATIENT,
    action: Action = "fetch",
) -> Filer:
    """The Filer of a registry file, at the address this clone uses for it (or refuse)."""
    from .discovery import filer_for, read_registry

    reg = read_registry(registry_path)
    address = fetch_address(registry_path, reg, folder, action)
    return filer_for(registry_path, address, network)


def local_filer(registry_path: Path) -> Filer:
    """The Filer of a registry file for work that fetches nothing: this machine's address."""
    from .discovery import filer_for, read_registry

    reg = read_registry(registry_path)
    override = override_of(registry_path, reg)
    return filer_for(registry_path, override.address if override else None)
