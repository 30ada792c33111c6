"""The safe substitute for ``torch.storage._load_from_bytes``.

A pickled tensor keeps its storage as ``_load_from_bytes(bytes)``, and in torch that function
is ``torch.load(io.BytesIO(b), weights_only=False)``: a second, unrestricted unpickler. The
safe loader hands the unpickler :func:`load_from_bytes` instead, which loads the same bytes
with torch's own restricted unpickler (``weights_only=True``) and torch's *default*
allowlist only: globals that code in this process added with
``torch.serialization.add_safe_globals`` (or its ``safe_globals`` context) do not widen it.

It imports torch only inside :func:`load_from_bytes`, which runs only when a pickle names
``_load_from_bytes``, so torch is already imported then.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from model_filer.errors import SerializationError
from model_filer.pickles.trust import _Refused

NAME = "torch.storage._load_from_bytes"

_lock = threading.Lock()
_inside = threading.local()  # this thread is inside load_from_bytes
_users = 0  # threads inside load_from_bytes: the hook stays installed while any is
_original: Callable[[], dict[str, Any]] | None = None


BUFFER = "an out-of-band buffer (NEXT_BUFFER)"
MAX_BUFFERS = 1 << 20  # out-of-band buffers a file may hold: a state_dict has thousands


def _user_globals_unless_inside() -> dict[str, Any]:
    """torch's ``_get_user_allowed_globals``, but empty in a thread inside our load."""
    if getattr(_inside, "active", False) or _original is None:  # (None: never installed)
        return {}
    return _original()


@contextlib.contextmanager
def default_allowlist_only() -> Iterator[None]:
    """In this thread, torch's restricted unpickler sees none of ``add_safe_globals``.

    torch keeps those globals in one module-wide set, read through
    ``_weights_only_unpickler._get_user_allowed_globals()`` at each lookup. That function
    is replaced, while any thread is in here, by one that answers nothing to the threads in
    here and delegates to torch's for every other thread: their own ``torch.load`` and
    ``add_safe_globals`` calls behave as before, and none of them can widen ours. The last
    thread out puts torch's function back.
    """
    global _users, _original
    from torch import _weights_only_unpickler as wou

    with _lock:
        if _users == 0:
            _original = wou._get_user_allowed_globals
            wou._get_user_allowed_globals = _user_globals_unless_inside
        _users += 1
    outer = getattr(_inside, "active", False)
    _inside.active = True
    try:
        yield
    finally:
        _inside.active = outer
        with _lock:
            _users -= 1
            # _original stays set: a thread that fetched the wrapper just before this still
            # gets torch's answer through it.
            if _users == 0 and wou._get_user_allowed_globals is _user_globals_unless_inside:
                wou._get_user_allowed_globals = _original  # type: ignore[assignment]


def _why(message: str) -> str:
    """torch's refusal in a few words, without its advice to load unsafely."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if found:
        return f"it names {found.group(1)}, which that allowlist does not admit"
    found = re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", message)
    if found:
        return f"it names {found.group(1)}, whose module torch blocks"
    last = message.strip().split("\n\n")[-1].strip()
    if "TorchScript" in message:  # torch's advice is to load it unsafely: not ours
        return "they are a TorchScript archive (code), not the bytes of a storage"
    advice = r"\s*(?:Please|Check the documentation|WeightsUnpickler error:|In PyTorch \d)"
    return re.split(advice, last)[0]


class FileSlice:
    """``length`` bytes at ``offset`` of a model file: a storage written out of band.

    Handed to the unpickler as a protocol 5 out-of-band buffer; :func:`load_from_bytes`
    reads it as a file, so torch reads the storage straight into the tensor's memory (one
    copy, as ``torch.load`` of a file does) instead of from a bytes object read first.
    The pickle holds it on its stack: it is opaque and immutable (no attribute to set,
    ``BUILD`` refused), and checked against the file's size when made and when read.
    """

    __slots__ = ("_end", "_fd", "_fh", "_length", "_offset")
    _end: int
    _fd: int | None
    _fh: IO[bytes]
    _length: int
    _offset: int

    def __init__(self, fh: IO[bytes], offset: int, length: int, end: int) -> None:
        if not 0 <= offset <= offset + length <= end:
            raise ValueError("an out-of-band buffer outside its file")
        try:
            fd: int | None = fh.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fd = None  # an in-memory file (tests): read through fh, then put it back
        for slot, value in zip(self.__slots__, (end, fd, fh, length, offset), strict=True):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("an out-of-band buffer cannot be changed")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("an out-of-band buffer cannot be changed")

    def __setstate__(self, state: object) -> None:
        """``BUILD`` on a buffer: only a crafted pickle does it."""
        raise _Refused(BUFFER, "a pickle that tries to change an out-of-band buffer")

    @property
    def length(self) -> int:
        """The slice's size in bytes."""
        return self._length

    def pread(self, view: memoryview, at: int) -> int:
        """Fill ``view`` from ``at`` (relative to the slice), never moving the file."""
        n = min(len(view), self._length - at)
        if n <= 0 or at < 0:
            return 0
        start = self._offset + at
        if start + n > self._end:  # the slice was checked against the file: never here
            raise EOFError("model file truncated")
        if self._fd is not None:
            done = 0
            while done < n:
                got = os.preadv(self._fd, [view[done:n]], start + done)
                if got == 0:
                    raise EOFError("model file truncated")
                done += got
            return n
        here = self._fh.tell()
        try:
            self._fh.seek(start)
            data = self._fh.read(n)
        finally:
            self._fh.seek(here)
        view[: len(data)] = data
        return len(data)

    def read_all(self) -> bytearray:
        """The whole slice in memory (what plain ``pickle.load`` gets with ``"*"``)."""
        data = bytearray(self._length)
        self.pread(memoryview(data), 0)
        return data


def unreadable(name: str) -> SerializationError:
    """The error for model ``name`` whose out-of-band buffers are not as its file lists."""
    return SerializationError(
        f"Model {name!r}: its out-of-band buffers are unreadable (its registry entry says "
        "its tensors follow the pickle, and they do not). The file was not written by "
        "model_filer's dump: ask its author to dump it again and push it."
    )


class Buffers:
    """Model ``name``'s out-of-band buffers, made one at a time as the unpickler takes them.

    ``sizes`` are the trailer's (at most :data:`MAX_BUFFERS`); the first buffer starts at
    ``offset``.
    """

    def __init__(self, fh: IO[bytes], offset: int, sizes: Sequence[int], end: int, name: str):
        self._fh, self._offset, self._sizes, self._end, self._name = fh, offset, sizes, end, name

    def expect(self, count: int) -> None:
        """Raise unless the pickle takes exactly as many buffers as the trailer lists."""
        if count != len(self._sizes):
            raise unreadable(self._name)

    def __iter__(self) -> Iterator[FileSlice]:
        offset = self._offset
        for size in self._sizes:
            yield FileSlice(self._fh, offset, size, self._end)
            offset += size


class _SliceReader(io.RawIOBase):
    """A read-only, seekable file over a :class:`FileSlice`, for ``torch.load``."""

    def __init__(self, part: FileSlice) -> None:
        self.part, self.pos = part, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            n = self.part.pread(out, self.pos)
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.part.length}[whence]  # (length: read-only)
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


def load_from_bytes(b: bytes | bytearray | FileSlice) -> Any:
    """``torch.storage._load_from_bytes`` through torch's restricted unpickler.

    Returns what torch stored (a storage, read into memory it owns: writable, no view of
    ``b``). Raises :class:`~model_filer.pickles.trust._Refused` when torch's unpickler
    refuses the bytes.
    """
    import torch

    if isinstance(b, FileSlice):
        source: IO[bytes] = io.BufferedReader(_SliceReader(b), 64 * 1024)
    elif isinstance(b, bytes | bytearray):
        source = io.BytesIO(b)
    else:  # what only a crafted pickle passes (a memoryview of another buffer...)
        raise _Refused(NAME, f"its argument is a {type(b).__name__}, not the bytes of a storage")
    with default_allowlist_only():
        try:
            return torch.load(source, weights_only=True, mmap=False)
        except _Refused:
            raise
        except Exception as exc:  # not a storage torch reads: typed, not raw
            why = _why(str(exc)) or f"{type(exc).__name__}: they end too early"
            raise _Refused(
                NAME,
                "served by model_filer's safe substitute, which refused its nested torch.save "
                "bytes (read by torch.load(weights_only=True) with torch's default allowlist "
                f"only): {why}; nothing in them ran. Dump tensors or "
                "model.state_dict(), not objects that pickle code",
            ) from None
