"""A directory as the remote: one machine, a shared drive, the demo and most tests."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import (
    BucketNotFoundError,
    InvalidNameError,
    RemoteError,
    RemoteObjectMissingError,
)
from ..files import owned_temp_name, remove_dead_temps_in
from ..hashing import CHUNK
from . import Progress, Remote, Sink


def _copy(src: Path, dest: Path, progress: Progress | None) -> None:
    if progress is None:
        shutil.copyfile(src, dest)  # sendfile fast path
        return
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            progress(len(chunk))


class LocalRemote(Remote):
    """Objects are files under a root folder, at ``<root>/<key>``.

    The registry records the root it was made with, but keys are relative, so the same
    share mounted at another path on another machine works: a different root is not an error.
    """

    remote_type = "local"

    def __init__(self, address: str) -> None:
        if not isinstance(address, str | os.PathLike) or not str(address).strip():
            raise InvalidNameError(
                f"A local remote needs a folder path, got {address!r}. "
                "Pass e.g. Filer('models', '/mnt/share/models', remote_type='local')."
            )
        root = Path(address).expanduser().resolve()
        super().__init__(str(root))
        self.root = root

    def check_matches(self, recorded_address: str, registry_path: str) -> None:
        return None  # a share may be mounted anywhere: keys are relative to the root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise InvalidNameError(f"Object key {key!r} escapes the remote folder {self.root}.")
        return path

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise BucketNotFoundError(
                f"Remote folder {self.root} does not exist (is the share mounted?). "
                f"Create it with `mkdir -p {self.root}` or pass the right path."
            )

    def upload(self, src: Path, key: str, sha256: str, progress: Progress | None) -> None:
        self._require_root()
        dest = self._path(key)
        if dest.is_file() and dest.stat().st_size == src.stat().st_size:
            return  # keys embed the sha256: same key, same bytes
        tmp = dest.with_name(owned_temp_name("upload"))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            remove_dead_temps_in(dest.parent)  # left by a push killed mid-copy
            _copy(src, tmp, progress)
            os.replace(tmp, dest)
        except OSError as exc:
            raise RemoteError(
                f"Cannot write {dest}: {exc.strerror}. "
                "Check the folder's permissions and free space."
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        self._require_root()
        try:
            with open(self._path(key), "rb") as fin:
                while chunk := fin.read(CHUNK):
                    sink.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except FileNotFoundError:
            raise RemoteObjectMissingError(
                f"{self.url(key)} does not exist on the remote. Was it removed with "
                "remove_remote=True? Dump and push the model again."
            ) from None
        except OSError as exc:
            raise RemoteError(f"Cannot read {self.url(key)}: {exc.strerror}.") from None

    def size_of(self, key: str) -> int | None:
        self._require_root()
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list_sizes(self, prefix: str) -> dict[str, int]:
        self._require_root()
        folder, _, start = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        sizes: dict[str, int] = {}
        try:
            with os.scandir(base) as found:
                tops = [e for e in found if e.name.startswith(start)]
        except (FileNotFoundError, NotADirectoryError):
            return sizes
        except OSError as exc:
            raise RemoteError(f"Cannot list {base}: {exc.strerror}.") from None
        stack = tops
        while stack:
            item = stack.pop()
            if item.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError), os.scandir(item.path) as inner:
                    stack.extend(inner)
            elif item.is_file(follow_symlinks=False) and not item.name.endswith(".tmp"):
                # (a push in progress writes to an owned ``*.tmp`` beside its object)
                key = Path(item.path).relative_to(self.root).as_posix()
                sizes[key] = item.stat(follow_symlinks=False).st_size
        return sizes

    def delete(self, key: str) -> None:
        self._require_root()
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty


REMOTE = LocalRemote
