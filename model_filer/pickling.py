"""Pickling a model into the local object store, linked into its model folder.

The bytes are written once, into a store temp file that is renamed to its sha256 once the
hash is known; the model folder gets a link to it (no second copy on the same filesystem).
When the store cannot be used, the model is pickled straight into the folder, as before the
store existed, with a :class:`StoreWarning` that says why.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from typing import Any

from . import serializers
from .errors import StoreError
from .folder import ModelFolder
from .hashing import CHUNK
from .registry import Entry
from .store import ObjectStore, warn_skipped


def pickle_into_store(
    model: Any, name: str, folder: ModelFolder, store: ObjectStore
) -> tuple[Path, Entry]:
    """Pickle ``model``; return a folder temp file holding its bytes (to commit) and its entry."""
    try:
        tmp = store.temp(f"{name}.dump")
    except StoreError as exc:
        warn_skipped(exc)
        return _pickle_into(folder.temp(f"{name}.dump"), model, name, folder.local_dir)
    src = folder.temp(f"{name}.dump")
    try:
        with open(tmp, "w+b") as fh:
            try:
                entry = serializers.dump_entry(model, name, fh, folder.local_dir)
                fh.flush()
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                warn_skipped(StoreError(store.root, "write a model", exc))
                with contextlib.suppress(OSError):
                    fh.close()  # its buffer cannot be flushed either: drop it
                return _pickle_into(src, model, name, folder.local_dir)
            try:
                with store.locked(entry.sha256):
                    # Recorded once, by the dump's settle after the renames into place.
                    store.enter(tmp, entry.sha256, entry.size, record=False)
                    store.link(entry.sha256, src, folder.model_path(name))
            except StoreError as exc:  # e.g. the store was deleted meanwhile
                import shutil

                warn_skipped(exc)
                fh.seek(0)
                src.unlink(missing_ok=True)
                with open(src, "wb") as out:
                    shutil.copyfileobj(fh, out, CHUNK)
        return src, entry
    except BaseException:
        src.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _pickle_into(path: Path, model: Any, name: str, local_dir: Path) -> tuple[Path, Entry]:
    """Pickle ``model`` straight into ``path`` (no store)."""
    try:
        with open(path, "wb") as fh:
            return path, serializers.dump_entry(model, name, fh, local_dir)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
