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
import pickle
import re
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

NAME = "torch.storage._load_from_bytes"

_lock = threading.Lock()
_inside = threading.local()  # this thread is inside load_from_bytes
_users = 0  # threads inside load_from_bytes: the hook stays installed while any is
_original: Callable[[], dict[str, Any]] | None = None


class _NestedRefusal(pickle.UnpicklingError):
    """torch's restricted unpickler refused the nested bytes; ``reason`` says what it met."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    return re.split(r"\s*(?:Please|Check the documentation|WeightsUnpickler error:)", last)[0]


class FileSlice:
    """``length`` bytes at ``offset`` of a model file: a storage written out of band.

    Handed to the unpickler as a protocol 5 out-of-band buffer; :func:`load_from_bytes`
    reads it as a file, so torch reads the storage straight into the tensor's memory (one
    copy, as ``torch.load`` of a file does) instead of from a bytes object read first.
    """

    def __init__(self, fh: IO[bytes], offset: int, length: int) -> None:
        self.fh, self.offset, self.length = fh, offset, length
        try:
            self.fd: int | None = fh.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self.fd = None  # an in-memory file (tests): read through fh, then put it back

    def pread(self, view: memoryview, at: int) -> int:
        """Fill ``view`` from ``at`` (relative to the slice), never moving ``fh``."""
        n = min(len(view), self.length - at)
        if n <= 0:
            return 0
        if self.fd is not None:
            done = 0
            while done < n:
                got = os.preadv(self.fd, [view[done:n]], self.offset + at + done)
                if got == 0:
                    raise EOFError("model file truncated")
                done += got
            return n
        here = self.fh.tell()
        try:
            self.fh.seek(self.offset + at)
            data = self.fh.read(n)
        finally:
            self.fh.seek(here)
        view[: len(data)] = data
        return len(data)

    def read_all(self) -> bytearray:
        """The whole slice in memory (what plain ``pickle.load`` gets with ``"*"``)."""
        data = bytearray(self.length)
        self.pread(memoryview(data), 0)
        return data


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
        base = {0: 0, 1: self.pos, 2: self.part.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


def load_from_bytes(b: bytes | bytearray | FileSlice) -> Any:
    """``torch.storage._load_from_bytes`` through torch's restricted unpickler.

    Returns what torch stored (a storage, read into memory it owns: writable, no view of
    ``b``). Raises :class:`_NestedRefusal` when torch's unpickler refuses the bytes.
    """
    import torch

    if isinstance(b, FileSlice):
        source: IO[bytes] = io.BufferedReader(_SliceReader(b), 64 * 1024)
    elif isinstance(b, bytes | bytearray):
        source = io.BytesIO(b)
    else:  # what only a crafted pickle passes (a memoryview of another buffer...)
        raise _NestedRefusal(f"its argument is a {type(b).__name__}, not the bytes of a storage")
    with default_allowlist_only():
        try:
            return torch.load(source, weights_only=True, mmap=False)
        except pickle.UnpicklingError as exc:
            raise _NestedRefusal(
                "served by model_filer's safe substitute, which refused its nested torch.save "
                "bytes (read by torch.load(weights_only=True) with torch's default allowlist "
                f"only): {_why(str(exc))}; nothing in them ran. Dump tensors or "
                "model.state_dict(), not objects that pickle code"
            ) from None
