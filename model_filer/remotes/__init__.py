"""Remote stores behind one small interface.

A remote type ``X`` is the module ``model_filer.remotes.X`` exposing ``REMOTE``, a subclass of
:class:`Remote`: adding GCS or Azure later is one new module, nothing else touched. Modules
are imported only when used, so the hooks that never transfer never import boto3.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ..errors import UnknownRemoteTypeError

Progress = Callable[[int], None]


class Sink(Protocol):
    """Where a download writes, in order: a non-seekable, hashing file wrapper."""

    def write(self, data: Any, /) -> int: ...

    def seekable(self) -> bool: ...


_TYPE_RE = re.compile(r"[a-z][a-z0-9]{0,15}")


# How long a remote keeps trying before it gives up. Library calls can wait for a flaky
# network; git hooks must not hold up a checkout, so they switch to fail_fast().
NETWORK = {"connect_timeout": 5.0, "read_timeout": 60.0, "max_attempts": 5}


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Short timeouts and few retries for the remotes used inside the block (git hooks)."""
    saved = dict(NETWORK)
    NETWORK.update(connect_timeout=2.0, max_attempts=2)
    try:
        yield
    finally:
        NETWORK.update(saved)


class Remote(ABC):
    """Where model bytes live; keys are relative to the remote root."""

    remote_type: str = ""

    def __init__(self, address: str) -> None:
        self.address = address

    @abstractmethod
    def check_matches(self, recorded_address: str, registry_path: str) -> None:
        """Raise :class:`RemoteMismatchError` if ``recorded_address`` is another store."""

    @abstractmethod
    def upload(self, src: Path, key: str, sha256: str, progress: Progress | None) -> None:
        """Store ``src`` under ``key``; a key already holding those bytes is left as is."""

    @abstractmethod
    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        """Write the object's bytes, in order, to ``sink`` (the caller verifies them).

        ``size``, what the registry expects, only helps pick the cheapest way to fetch.
        """

    @abstractmethod
    def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or ``None`` when it does not exist."""

    @abstractmethod
    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every object whose key starts with ``prefix``: key (relative) -> size in bytes.

        One listing answers for many objects: checking 10,000 keys costs ~10 requests, not
        10,000 HEADs. Raises :class:`BucketNotFoundError` when the store itself is missing.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object (absent is fine)."""

    def url(self, key: str) -> str:
        """The object's full address, for messages."""
        return f"{self.address.rstrip('/')}/{key}"


def available_types() -> list[str]:
    """The remote types installed (one module each)."""
    from importlib.resources import files

    return sorted(
        p.name[:-3]
        for p in files(__name__).iterdir()
        if p.name.endswith(".py") and not p.name.startswith("_")
    )


def get_remote(remote_type: str, address: str) -> Remote:
    """Build the remote of ``remote_type`` at ``address``."""
    name = f"{__name__}.{remote_type}" if isinstance(remote_type, str) else ""
    if not _TYPE_RE.fullmatch(str(remote_type)) or importlib.util.find_spec(name) is None:
        raise UnknownRemoteTypeError(
            f"Unknown remote_type {remote_type!r}. Use one of: {', '.join(available_types())}."
        )
    module = importlib.import_module(name)
    remote: Remote = module.REMOTE(address)
    return remote
