"""Owner-tagged temp files, and atomic writes through them.

Temp files carry their owner's host and pid: cleaning up after a dead process never removes a
file that a live writer on this machine is still filling.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from model_filer.fs.layout import INTERNAL_DIR, TMP_DIR, ensure_dir, internal_dir

_ALLOCATE_FROM = 64 * 1024  # below this a rename's writeout is too small to matter
_EXT4: dict[int, bool] = {}  # device -> whether it is mounted as ext4 (asked once a process)
_HOST = os.uname().nodename.replace("-", "_")[:40] or "host"


def owned_temp_name(purpose: str) -> str:
    """A fresh temp file name tagged with this host and process, so cleanup can tell whether
    its owner is still alive (:func:`remove_dead_temps_in`)."""
    return f"{_HOST}-{os.getpid()}-{os.urandom(4).hex()}.{purpose}.tmp"


def temp_path(local_dir: Path, purpose: str) -> Path:
    """A fresh temp file path owned by this process, beside its final place's filesystem."""
    return internal_dir(local_dir) / TMP_DIR / owned_temp_name(purpose)


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
        if len(data) >= _ALLOCATE_FROM and _on_ext4(fh.fileno()):
            # Blocks allocated up front: ext4 (auto_da_alloc) otherwise writes out a renamed-over
            # file's delayed blocks inside rename(), 3.6 of a 4.7 MB registry write's 5 ms.
            with contextlib.suppress(OSError):  # no space is then reported by the write
                os.posix_fallocate(fh.fileno(), 0, len(data))
        fh.write(data)


def _on_ext4(fd: int) -> bool:
    """Whether the open file is on ext4, by the mount table (``False`` when unsure): the
    filesystem whose rename was measured writing data out (auto_da_alloc). Not elsewhere:
    where a filesystem lacks fallocate (NFSv3, FUSE, 9p) glibc writes a byte per block."""
    if not sys.platform.startswith("linux"):
        return False
    dev = os.fstat(fd).st_dev
    known = _EXT4.get(dev)
    if known is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
                kind = mount_type(f"{os.major(dev)}:{os.minor(dev)}", fh)
        except OSError:
            kind = None
        known = _EXT4[dev] = kind == "ext4"
    return known


def mount_type(device: str, mountinfo: Iterable[str]) -> str | None:
    """The filesystem type of the mount of ``device`` (``major:minor``) in the lines of a
    ``/proc/<pid>/mountinfo`` table; ``None`` when none is that device's."""
    for line in mountinfo:  # id parent major:minor root point options [tags...] - type ...
        fields = line.split()
        if len(fields) > 2 and fields[2] == device and "-" in fields[6:]:
            at = fields.index("-", 6) + 1
            return fields[at] if at < len(fields) else None
    return None


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
