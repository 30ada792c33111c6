"""The model folder's layout, atomic writes and owner-tagged temp files.

Everything model_filer writes besides models and the registry lives in ``<local_dir>/.model_filer``
(one folder to ignore, on the same filesystem, so ``os.replace`` from it is atomic). Temp files
carry their owner's host and pid: cleaning up after a dead process never removes a file that a
live writer on this machine is still filling.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import ModelFilerError

if TYPE_CHECKING:
    from filelock import FileLock

INTERNAL_DIR = ".model_filer"
MODEL_SUFFIX = ".pkl"
STAGED_DIR = "staged"  # dumps between their registry write and their rename (see folder.py)
TMP_DIR = "tmp"
PARTIAL_DIR = "partial"  # big downloads that resume (see resume.py)
GITIGNORE_TEXT = (
    "# Written by model_filer: commit the registry file, not the models.\n"
    f"*{MODEL_SUFFIX}\n"
    f"{INTERNAL_DIR}\n"  # no trailing slash: a file or symlink of that name is ignored too
)
_HOST = os.uname().nodename.replace("-", "_")[:40] or "host"


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


def owned_temp_name(purpose: str) -> str:
    """A fresh temp file name tagged with this host and process, so cleanup can tell whether
    its owner is still alive (:func:`remove_dead_temps_in`)."""
    return f"{_HOST}-{os.getpid()}-{os.urandom(4).hex()}.{purpose}.tmp"


def temp_path(local_dir: Path, purpose: str) -> Path:
    """A fresh temp file path owned by this process, beside its final place's filesystem."""
    return internal_dir(local_dir) / TMP_DIR / owned_temp_name(purpose)


def folder_lock(local_dir: Path, name: str) -> FileLock:
    """An inter-process lock in the model folder (filelock is imported only when locking)."""
    from filelock import FileLock

    return FileLock(str(internal_dir(local_dir) / f"{name}.lock"))


@contextlib.contextmanager
def atomic_write(final: Path, local_dir: Path, purpose: str) -> Iterator[IO[bytes]]:
    """Open a temp file that replaces ``final`` only if the block completes."""
    tmp = temp_path(local_dir, purpose)
    ensure_dir(tmp.parent)
    try:
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(final: Path, local_dir: Path, data: bytes, purpose: str) -> None:
    """Replace ``final`` with ``data`` all at once: readers see the old or the new bytes."""
    with atomic_write(final, local_dir, purpose) as fh:
        fh.write(data)


def _owner_alive(name: str) -> bool:
    host, _, rest = name.partition("-")
    pid_text = rest.partition("-")[0]
    if host != _HOST or not pid_text.isdigit():
        return True  # another machine's file on a shared drive: not ours to judge
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_owner(name: str) -> str:
    """Who owns an owner-tagged temp file: ``"self"`` (this process), ``"alive"`` or ``"dead"``."""
    if name.startswith(f"{_HOST}-{os.getpid()}-"):
        return "self"
    return "alive" if _owner_alive(name) else "dead"


def remove_dead_temps(local_dir: Path) -> int:
    """Delete the model folder's temp files whose owner on this host is gone."""
    return remove_dead_temps_in(local_dir / INTERNAL_DIR / TMP_DIR)


def remove_dead_temps_in(tmp_dir: Path) -> int:
    """Delete ``*.tmp`` files in ``tmp_dir`` whose owning process on this host is gone."""
    removed = 0
    try:
        names = os.listdir(tmp_dir)
    except OSError:  # none yet, or a folder we cannot read: nothing of ours to clean
        return 0
    for name in names:
        if name.endswith(".tmp") and not _owner_alive(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_dir / name)
                removed += 1
    return removed


def ensure_gitignore(local_dir: Path) -> None:
    """Keep a ``.gitignore`` in the model folder so only the registry gets committed."""
    path = local_dir / ".gitignore"
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    missing = [line for line in GITIGNORE_TEXT.splitlines()[1:] if line not in current.splitlines()]
    if not current:
        write_bytes_atomic(path, local_dir, GITIGNORE_TEXT.encode(), "gitignore")
    elif missing:
        text = current if current.endswith("\n") else current + "\n"
        text += "".join(f"{line}\n" for line in missing)
        write_bytes_atomic(path, local_dir, text.encode(), "gitignore")
