"""A dump's bytes: pickled into the local object store, then placed in the model folder.

The bytes are written once, into a store temp file that becomes the object named by their
sha256 once the registry lock is held; the model folder gets a link to it (no second copy on
the same filesystem). The object's lock is taken once per dump, inside the registry's (the
lock order), and held until the renames into place are done and the object's stat is
recorded. When the store cannot be used, the model is pickled straight into the folder, as
before the store existed, with a :class:`StoreWarning` that says why.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from model_filer.errors import StoreError
from model_filer.fs.hashing import CHUNK
from model_filer.local.folder import ModelFolder
from model_filer.local.store import ObjectStore, warn_skipped
from model_filer.pickles import serializers
from model_filer.registry.model import Entry


class Dump:
    """One pickled model on its way into place: its entry, and where its bytes wait.

    Use it as a context manager: whatever was not placed is deleted at its end.
    """

    def __init__(self, model: Any, name: str, folder: ModelFolder, store: ObjectStore) -> None:
        self._folder, self._store = folder, store
        self._fh: IO[bytes] | None = None  # the store temp file, open: bytes to enter
        self._src = folder.temp(f"{name}.dump")  # the folder temp file that gets renamed
        try:
            self._tmp = store.temp(f"{name}.dump")
        except StoreError as exc:
            warn_skipped(exc)
            self.entry = self._pickle_into_folder(model, name)
            return
        self.entry = self._pickle_into_store(model, name)

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)
        self._src.unlink(missing_ok=True)

    def _pickle_into_store(self, model: Any, name: str) -> Entry:
        fh = self._fh = open(self._tmp, "w+b")  # noqa: SIM115 - closed at the dump's end
        try:
            try:
                entry = serializers.dump_entry(model, name, fh, self._folder.local_dir)
                fh.flush()
                return entry
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                warn_skipped(StoreError(self._store.root, "write a model", exc))
            with contextlib.suppress(OSError):
                fh.close()  # its buffer cannot be flushed either: drop it
            self._tmp.unlink(missing_ok=True)
            self._fh = None
            return self._pickle_into_folder(model, name)
        except BaseException:
            self.__exit__()
            raise

    def _pickle_into_folder(self, model: Any, name: str) -> Entry:
        try:
            with open(self._src, "wb") as fh:
                return serializers.dump_entry(model, name, fh, self._folder.local_dir)
        except BaseException:
            self._src.unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def placing(self, settle: bool) -> Iterator[Path]:
        """Yield a folder temp file holding the bytes, for the block to rename into place.

        From the store: the object is entered and linked with its lock held for the block;
        with ``settle`` its stat is recorded at the block's end, after the renames (which
        move its ctime). Without the store, the temp file the model was pickled into.
        """
        if self._fh is None:
            yield self._src
            return
        sha, store = self.entry.sha256, self._store
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(store.locked(sha))
                # Recorded once, by the settle after the renames into place.
                store.enter(self._tmp, sha, self.entry.size, record=False)
                store.link(sha, self._src, self._folder.model_path(self.entry.name))
            except StoreError as exc:  # e.g. the store was deleted meanwhile: copy the bytes
                held.close()
                warn_skipped(exc)
                self._copy_out(self._fh)
                settle = False
            yield self._src
            if settle:
                store.settle(sha)

    def _copy_out(self, fh: IO[bytes]) -> None:
        fh.seek(0)
        self._src.unlink(missing_ok=True)
        with open(self._src, "wb") as out:
            shutil.copyfileobj(fh, out, CHUNK)
