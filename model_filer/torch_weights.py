"""The safe substitute for ``torch.storage._load_from_bytes``.

A pickled tensor keeps its storage as ``_load_from_bytes(bytes)``, and in torch that function
is ``torch.load(io.BytesIO(b), weights_only=False)``: a second, unrestricted unpickler. The
safe loader hands the unpickler :func:`load_from_bytes` instead, which loads the same bytes
with torch's own restricted unpickler (``weights_only=True``) and torch's *default*
allowlist only: globals that code in this process added with
``torch.serialization.add_safe_globals`` (or its ``safe_globals`` context) do not widen it.

Imported only when a pickle names ``_load_from_bytes``, so torch is already imported.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

NAME = "torch.storage._load_from_bytes"

_lock = threading.Lock()
_inside = threading.local()  # this thread is inside load_from_bytes
_users = 0  # threads inside load_from_bytes: the hook stays installed while any is
_original: Callable[[], dict[str, Any]] | None = None


class NestedRefusal(pickle.UnpicklingError):
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
        return f"it names {found.group(1)}, which torch's default allowlist does not admit"
    found = re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", message)
    if found:
        return f"it names {found.group(1)}, whose module torch blocks"
    last = message.strip().split("\n\n")[-1].strip()
    return re.split(r"\s*(?:Please|Check the documentation|WeightsUnpickler error:)", last)[0]


def load_from_bytes(b: bytes) -> Any:
    """``torch.storage._load_from_bytes`` through torch's restricted unpickler.

    Returns what torch stored (a storage, read into memory it owns: writable, no view of
    ``b``). Raises :class:`NestedRefusal` when torch's unpickler refuses the bytes.
    """
    import torch

    with default_allowlist_only():
        try:
            return torch.load(io.BytesIO(b), weights_only=True, mmap=False)
        except pickle.UnpicklingError as exc:
            raise NestedRefusal(
                "its nested torch.save bytes were refused by torch.load(weights_only=True) with "
                f"torch's default allowlist: {_why(str(exc))}; nothing in them ran"
            ) from None
