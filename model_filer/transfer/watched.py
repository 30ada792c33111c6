"""Uploads read from a model's file while something else may write to it.

A push trusts the file as it was verified (its :func:`write_stamp`) and hashes nothing twice
while that stamp holds. When the stamp moves during an upload (a write, a touch, a link made
elsewhere), what went up is read back and checked; other bytes are deleted, so that no
object on the remote holds bytes its key does not name, and the push fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from model_filer.errors import ModelFilerError
from model_filer.local.freshness import changed_while_pushed, write_stamp
from model_filer.remotes import Progress, Remote
from model_filer.remotes.sources import Source


def moved(fd: int, stamp: tuple[int, ...]) -> bool:
    """Whether the open file ``fd`` may have been written to since its stamp was ``stamp``."""
    return write_stamp(os.fstat(fd)) != stamp


def send_watched(
    remote: Remote,
    src: Source,
    key: str,
    sha256: str,
    progress: Progress | None,
    watched: tuple[str, int, tuple[int, ...]],
    holds: Callable[[], bool],
) -> None:
    """Upload ``src`` as ``key``; ``watched`` is the model's name, and the descriptor and
    stamp of the file ``src`` reads. When that stamp moved, ``holds()`` reads the object back
    and says whether it is what ``key`` names; if not it is deleted and the push fails. An
    upload that fails while the stamp moved (a file cut short) says the file changed."""
    name, fd, stamp = watched
    try:
        remote.upload(src, key, sha256, progress)
    except (ModelFilerError, OSError) as exc:
        if moved(fd, stamp):
            raise changed_while_pushed(name, f"the upload failed ({exc})") from None
        raise
    if moved(fd, stamp) and not holds():
        with contextlib.suppress(ModelFilerError):
            remote.delete(key)
        raise changed_while_pushed(name, "what went up held other bytes, and was deleted")
