"""Finding registry files and building the Filer each one belongs to.

Used by the CLI and the hooks, which know a registry file but not its remote: the remote type
is in the file's name and the address inside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelFilerError, RegistryError
from .filer import Filer
from .layout import INTERNAL_DIR, remote_type_of
from .registry import Registry, read
from .remotes import PATIENT, Network

_SKIP_DIRS = {
    ".git",
    INTERNAL_DIR,
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def find_registries(root: Path) -> Iterator[Path]:
    """Registry files under ``root``, skipping git, virtualenv and cache folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if remote_type_of(name):
                yield Path(dirpath) / name


def registries_in(folder: Path) -> list[Path]:
    """The registry files directly in ``folder``."""
    try:
        return sorted(p for p in folder.iterdir() if remote_type_of(p.name) and p.is_file())
    except FileNotFoundError:
        return []


def read_registry(path: Path) -> Registry:
    """Read a registry file that must exist."""
    reg = read(path)
    if reg is None:
        raise _no_registry(path)
    return reg


def _no_registry(path: Path) -> RegistryError:
    return RegistryError(
        f"No registry at {path}. Run `model-filer status` to list them.", path=path
    )


def filer_for(
    path: Path,
    remote_address: str | None = None,
    network: Network = PATIENT,
    typed: bool = False,
) -> Filer:
    """The Filer of a registry file, with the remote it records (or ``remote_address``).

    Its writes vouch for the registry's remote only when ``typed``: the user typed the
    address (``--remote-address``). An address read from the registry, or from this clone's
    trust, is not the user's word.
    """
    rtype = remote_type_of(path)
    if rtype is None:
        raise ModelFilerError(f"{path} is not a registry file (expected .<type>_registry).")
    if remote_address is None:
        remote_address = read_registry(path).remote_address
    elif not path.is_file():  # the Filer reads (and checks) the registry once itself
        raise _no_registry(path)
    return Filer(path.parent, remote_address, remote_type=rtype, network=network, _vouch=typed)
