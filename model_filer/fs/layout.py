"""Where things live in a model folder, and what its files are named.

Everything model_filer writes besides models and the registry lives in ``<local_dir>/.model_filer``
(one folder to ignore, on the same filesystem, so ``os.replace`` from it is atomic).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from model_filer.errors import ModelFilerError

INTERNAL_DIR = ".model_filer"
MODEL_SUFFIX = ".pkl"
STAGED_DIR = "staged"  # dumps between their registry write and their rename (see folder.py)
TMP_DIR = "tmp"
PARTIAL_DIR = "partial"  # big downloads that resume (see resume.py)
REGISTRY_RE = re.compile(r"(?:^|/)\.([a-z0-9]+)_registry$")


def remote_type_of(path: str | os.PathLike[str]) -> str | None:
    """The remote type a registry file's name says (``.s3_registry`` -> ``s3``), else None."""
    match = REGISTRY_RE.search(Path(path).as_posix())
    return match.group(1) if match else None


def registry_filename(remote_type: str) -> str:
    """Name of the registry file for a remote type: ``.s3_registry``, ``.local_registry``."""
    return f".{remote_type}_registry"


def internal_dir(local_dir: Path) -> Path:
    """The folder of locks, temp files and the hash cache; created on demand.

    A symlink there (committed by someone, since git tracks links) is refused: following it
    would write, and clean up, outside the model folder.
    """
    path = local_dir / INTERNAL_DIR
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0  # absent, or unreadable: mkdir says which
    if stat.S_ISDIR(mode):
        return path  # one lstat: a pull asks this once or twice per model
    if stat.S_ISLNK(mode):
        raise ModelFilerError(
            f"{path} is a symbolic link; model_filer will not write through it. Remove it "
            f"(`git rm --cached {path}` and `rm {path}`), then retry."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_dir(path: Path) -> Path:
    """Create the folder ``path`` and its parents unless it exists; return it.

    One ``stat`` when it exists. ``Path.mkdir(exist_ok=True)`` costs a failed ``mkdir``, a
    ``stat`` and a Python exception instead, which a pull paid several times per model.
    """
    if not os.path.isdir(path):
        path.mkdir(parents=True, exist_ok=True)
    return path
