"""Which remotes this clone fetches from, and at which address (per-machine override).

A registry committed to git names its remote, and anyone can open a pull request that changes
it. The hooks and the CLI therefore fetch only from remotes this clone trusts, recorded in the
clone's own git config (``git config --local``, never committed):

    [model-filer "local:<id>"]            address = /mnt/models
    [model-filer "s3:bucket/prefix"]      address = s3://bucket/prefix
    [model-filer "local:<id>"]            address = /Volumes/models   override = true

A remote is known by its identity: a local folder's ID (its ID file; a folder from before IDs
by its path), an S3 remote by bucket and prefix. The first remote a clone meets is trusted;
any other, or a trusted remote's ID at a changed address (an ID is no secret: anyone can copy
the file), is refused with the command that trusts it. ``model-filer remote set`` records the
address of a share mounted elsewhere on this machine.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import ModelFilerError, UntrustedRemoteError
from .gitops import config_get_regexp, config_set, config_unset
from .registry import Registry
from .remotes import PATIENT, Network, get_remote

if TYPE_CHECKING:
    from .filer import Filer

SECTION = "model-filer"


class Trusted(NamedTuple):
    """A remote this clone fetches from: its identity key, where, and whether set by hand."""

    key: str
    address: str
    override: bool


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


def trusted_remotes(cwd: Path) -> dict[str, Trusted] | None:
    """This clone's trusted remotes by key; ``None`` outside a git repository."""
    raw = config_get_regexp(rf"^{SECTION}\..*\.(address|override)$", cwd)
    if raw is None:
        return None
    found: dict[str, Trusted] = {}
    for name, value in raw.items():
        key, _, field = name[len(SECTION) + 1 :].rpartition(".")
        if field == "address":
            found[key] = Trusted(key, value, raw.get(f"{SECTION}.{key}.override") == "true")
    return found


def _record(cwd: Path, key: str, address: str, override: bool) -> Trusted:
    config_set(f"{SECTION}.{key}.address", address, cwd)
    if override:
        config_set(f"{SECTION}.{key}.override", "true", cwd)
    else:
        config_unset(f"{SECTION}.{key}.override", cwd)
    return Trusted(key, address, override)


def fetch_address(registry_path: Path, reg: Registry, folder: str | None = None) -> str:
    """The address to fetch ``reg``'s models from in this clone, or refuse.

    Outside a git repository there is no clone to protect: the registry's address is used.

    Raises
    ------
    UntrustedRemoteError
        The remote is not one this clone trusts, or its address changed.
    """
    cwd = registry_path.parent
    trusted = trusted_remotes(cwd)
    if trusted is None:
        return reg.remote_address
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    address = canonical(reg.remote_type, reg.remote_address)
    entry = trusted.get(key)
    if entry is None and reg.remote_id is not None:
        # The registry now records the ID of a folder this clone trusted by its path.
        by_path = trusted.get(f"{reg.remote_type}:{address}")
        if by_path is not None:
            entry = _record(cwd, key, by_path.address, by_path.override)
    if entry is None and not trusted:
        entry = _record(cwd, key, address, override=False)  # the first remote this clone meets
    label = shlex.quote(folder if folder is not None else str(cwd))
    trust = f"model-filer remote trust --dir {label}"
    if entry is None:
        known = "; ".join(f"{t.key} at {t.address}" for t in trusted.values())
        raise UntrustedRemoteError(
            f"{registry_path} names {describe(reg)}, which this clone does not trust (it "
            f"trusts: {known}). Nothing was fetched from it. If the change is expected (check "
            f"the commit that made it), trust it: `{trust}`."
        )
    if entry.override or entry.address == address:
        return entry.address
    raise UntrustedRemoteError(
        f"{registry_path} moved {reg.remote_type} remote {key} from {entry.address} to "
        f"{reg.remote_address}; this clone still fetches only from {entry.address}, so nothing "
        f"was fetched. If the move is expected, trust it: `{trust}`; if the share is mounted "
        f"elsewhere on this machine: `model-filer remote set --dir {label} PATH`."
    )


def trust(registry_path: Path, reg: Registry) -> Trusted:
    """Trust the remote ``reg`` names, at the address it records (drops any override)."""
    cwd = registry_path.parent
    if trusted_remotes(cwd) is None:
        raise ModelFilerError(
            f"{cwd} is not inside a git repository: there is no clone to record trust in."
        )
    key = remote_key(reg.remote_type, reg.remote_address, reg.remote_id)
    return _record(cwd, key, canonical(reg.remote_type, reg.remote_address), override=False)


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
    registry_path: Path, folder: str | None = None, network: Network = PATIENT
) -> Filer:
    """The Filer of a registry file, at the address this clone fetches from (or refuse)."""
    from .discovery import filer_for, read_registry

    reg = read_registry(registry_path)
    return filer_for(registry_path, fetch_address(registry_path, reg, folder), network)


def local_filer(registry_path: Path) -> Filer:
    """The Filer of a registry file for work that fetches nothing: this machine's address."""
    from .discovery import filer_for, read_registry

    reg = read_registry(registry_path)
    override = override_of(registry_path, reg)
    return filer_for(registry_path, override.address if override else None)
