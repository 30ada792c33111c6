"""A directory as the remote: one machine, a shared drive, the demo and most tests."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from model_filer.errors import (
    BucketNotFoundError,
    InvalidNameError,
    RemoteError,
    RemoteMismatchError,
)
from model_filer.fs.hashing import CHUNK
from model_filer.fs.tempfiles import owned_temp_name, remove_dead_temps_in
from model_filer.remotes import (
    PATIENT,
    Network,
    Progress,
    RangeSink,
    Remote,
    RemoteObject,
    Sink,
    check_range,
)
from model_filer.remotes.sources import FileSource, Source, ended

ID_FILE = ".model_filer_remote_id"
ID_RE = re.compile(r"[0-9a-f]{32}")


def _same_path(address: str, root: Path) -> bool:
    try:
        return Path(address).expanduser().resolve() == root
    except (OSError, RuntimeError):
        return False


def _copy(src: Source, dest: Path, progress: Progress | None) -> None:
    with open(dest, "wb") as fout:
        done = 0
        if isinstance(src, FileSource) and progress is None and sys.platform == "linux":
            while done < src.size:  # in the kernel, as shutil.copyfile would
                sent = os.sendfile(fout.fileno(), src.fd, done, src.size - done)
                if sent == 0:
                    raise ended(done, src.size)
                done += sent
            return
        buffer = memoryview(bytearray(CHUNK))
        while done < src.size:
            got = src.read_into(buffer, done)
            if got == 0:
                raise ended(done, src.size)
            fout.write(buffer[:got])
            done += got
            if progress is not None:
                progress(got)


class LocalRemote(Remote):
    """Objects are files under a root folder, at ``<root>/<key>``.

    The registry records the root it was made with, but keys are relative, so the same
    share mounted at another path on another machine works: a different root is not an error.
    """

    remote_type = "local"

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        if not isinstance(address, str | os.PathLike) or not str(address).strip():
            raise InvalidNameError(
                f"A local remote needs a folder path, got {address!r}. "
                "Pass e.g. Filer('models', '/mnt/share/models', remote_type='local')."
            )
        root = Path(address).expanduser().resolve()
        super().__init__(str(root), network)
        self.root = root
        self._id: str | None = None

    def check_matches(
        self, recorded_address: str, registry_path: str, recorded_id: str | None = None
    ) -> None:
        # A share may be mounted anywhere (keys are relative to the root), so the folder's ID
        # file, not its path, says whether it is the registry's remote.
        if not self.root.is_dir():
            return  # not mounted: nothing can come from it, present models still load
        mine = self.identity()
        if recorded_id is not None and mine == recorded_id:
            return
        if recorded_id is None and (mine is None or _same_path(recorded_address, self.root)):
            return  # a registry from before remote IDs: its path is all there is to compare
        theirs = f"remote {recorded_id}" if recorded_id else "a remote without an ID"
        raise RemoteMismatchError(
            f"{registry_path} belongs to {theirs} at {recorded_address!r}, but {self.root} is "
            f"{'remote ' + mine if mine else 'a folder without a remote ID'} ({ID_FILE}): "
            f"another folder. Pass the registry's remote folder (the share it names, wherever "
            "it is mounted here), or use another local_dir."
        )

    def identity(self) -> str | None:
        if self._id is None:
            path = self.root / ID_FILE
            try:
                text = path.read_text(encoding="ascii").strip()
            except (FileNotFoundError, NotADirectoryError):
                return None
            except (OSError, UnicodeDecodeError) as exc:
                raise RemoteError(
                    f"Cannot read the remote ID {path}: {exc}.", key=ID_FILE, address=self.address
                ) from None
            if not ID_RE.fullmatch(text):
                raise RemoteError(
                    f"{path} is not a model_filer remote ID (32 hex digits). Restore it from "
                    "a backup of the share, or remove it if this folder holds no models.",
                    key=ID_FILE,
                    address=self.address,
                )
            self._id = text
        return self._id

    def ensure_identity(self) -> str:
        """The folder's ID, written on first push: atomically, and the first writer wins."""
        if (existing := self.identity()) is not None:
            return existing
        self._require_root(writing=True)
        final = self.root / ID_FILE
        tmp = self.root / owned_temp_name("remote-id")
        data = f"{uuid.uuid4().hex}\n".encode()
        with self._writing(
            tmp, f"the remote ID {final}", ID_FILE, "Check the folder's permissions."
        ):
            tmp.write_bytes(data)
            try:
                os.link(tmp, final)  # never replaces: a concurrent first push keeps its ID
            except FileExistsError:
                pass
            except OSError:  # a share without hard links: exclusive create instead
                with contextlib.suppress(FileExistsError), open(final, "xb") as fh:
                    fh.write(data)
        for _ in range(50):  # an exclusive create may be seen before its bytes
            with contextlib.suppress(RemoteError):
                if (created := self.identity()) is not None:
                    return created
            time.sleep(0.01)
        raise RemoteError(
            f"{final} stays empty or malformed. Remove it, then push again.",
            key=ID_FILE,
            address=self.address,
        )

    @contextlib.contextmanager
    def _writing(self, tmp: Path, what: str, key: str, fix: str) -> Iterator[None]:
        """Write ``what`` through ``tmp``: an OSError becomes the remote's error; ``tmp`` goes."""
        try:
            yield
        except OSError as exc:
            raise RemoteError(
                f"Cannot write {what}: {exc.strerror or exc}. {fix}", key=key, address=self.address
            ) from None
        finally:
            with contextlib.suppress(OSError):  # (never made, or its folder never could be)
                tmp.unlink()

    def _check_store(self) -> None:
        """Nothing to ask: a folder's root is checked where it is used (``_require_root``)."""

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise InvalidNameError(f"Object key {key!r} escapes the remote folder {self.root}.")
        return path

    def _require_root(self, writing: bool = False) -> None:
        """Raise :class:`BucketNotFoundError` when the root folder is missing.

        Only a write (a push, whose first may start a new remote) is told to create it: to a
        read of models a share that is not mounted holds, an empty folder would only change
        the error.
        """
        if self.root.is_dir():
            return
        root = shlex.quote(str(self.root))
        if writing:
            fix = (
                "Mount it; if this is a new remote, create it with "
                f"`mkdir -p {root}`; or pass the right path."
            )
        else:
            fix = (
                "Mount it; if this machine mounts it elsewhere, run "
                "`model-filer remote set --dir MODEL_FOLDER PATH`."
            )
        raise BucketNotFoundError(
            f"Remote folder {self.root} does not exist (is the share mounted?). {fix}",
            address=self.address,
        )

    def put(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        self._require_root(writing=True)
        dest = self._path(key)
        if dest.is_file() and dest.stat().st_size == src.size:
            self.touch(key)  # keys embed the sha256: same key, same bytes
            return
        tmp = dest.with_name(owned_temp_name("upload"))
        with self._writing(tmp, str(dest), key, "Check the folder's permissions and free space."):
            dest.parent.mkdir(parents=True, exist_ok=True)
            remove_dead_temps_in(dest.parent)  # left by a push killed mid-copy
            _copy(src, tmp, progress)
            os.replace(tmp, dest)

    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        self._read(key, sink, progress)

    def download_from(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        self._read(key, sink, progress, (offset, sink.restart))

    def _read(
        self,
        key: str,
        sink: Sink | RangeSink,
        progress: Progress | None,
        resume: tuple[int, Callable[[int], object]] | None = None,
    ) -> None:
        """Copy the object into ``sink``, in order; with ``resume`` (offset, restart), from
        that offset (or from 0 when the object is shorter), told to the sink first."""
        self._require_root()
        with self._file_errors(key, "read"), open(self._path(key), "rb") as fin:
            if resume is not None:
                offset, restart = resume
                start = offset if os.fstat(fin.fileno()).st_size >= offset else 0
                fin.seek(start)
                restart(start)
            while chunk := fin.read(CHUNK):
                sink.write(chunk)
                if progress is not None:
                    progress(len(chunk))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        self._require_root()
        parts = []
        with self._file_errors(key, "read"), open(self._path(key), "rb") as fh:
            # (a network share's read may return less than asked before the end)
            while length > 0 and (data := os.pread(fh.fileno(), length, start)):
                parts.append(data)
                start += len(data)
                length -= len(data)
        return b"".join(parts)  # (one part: that object, not a copy)

    @contextlib.contextmanager
    def _file_errors(self, key: str, verb: str) -> Iterator[None]:
        """A file operation's errors on ``key`` as the remote's: gone, or cannot ``verb``."""
        try:
            yield
        except FileNotFoundError:
            raise self._gone(key) from None
        except OSError as exc:
            raise RemoteError(
                f"Cannot {verb} {self.url(key)}: {exc.strerror}.", key=key, address=self.address
            ) from None

    def stat(self, key: str) -> RemoteObject | None:
        self._require_root()
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return RemoteObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def touch(self, key: str) -> None:
        self._require_root()
        with self._file_errors(key, "touch"):
            os.utime(self._path(key))

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
            raise RemoteError(
                f"Cannot list {base}: {exc.strerror}.", key=prefix or None, address=self.address
            ) from None
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

    # -- listing for the garbage collector (issue 10) ------------------------------------------
    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        self._require_root()
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel}/{name}"
                if key == ID_FILE or not key.startswith(prefix):
                    continue  # the folder's identity is no object
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    st = os.stat(Path(dirpath) / name)
                    yield RemoteObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))


REMOTE = LocalRemote
