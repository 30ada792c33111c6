"""Finding registry files: under a folder, in a model folder, the one a ``Filer`` uses.

The remote type is in a registry file's name and the address inside it; building a Filer for
one is :mod:`model_filer.hookapi`'s (this module imports no Filer, which imports it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from model_filer.errors import RegistryError, RemoteMismatchError
from model_filer.fs.layout import INTERNAL_DIR, registry_filename, remote_type_of
from model_filer.registry.file import Registry, read

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


def registry_of(folder: Path, remote_type: str | None) -> tuple[Path, Registry]:
    """The one registry of ``folder`` (of ``remote_type`` if given), for ``Filer(folder)``.

    Raises
    ------
    RegistryError
        None, or several, are there.
    RemoteMismatchError
        ``remote_type`` disagrees with the folder's registry.
    """
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
