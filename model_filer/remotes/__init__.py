"""Remote stores behind one small interface.

A remote type ``X`` is the module ``model_filer.remotes.X`` exposing ``REMOTE``, a subclass of
:class:`Remote`: adding GCS or Azure later is one new module, nothing else touched. Modules
are imported only when used, so the hooks that never transfer never import boto3.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..errors import UnknownRemoteTypeError

Progress = Callable[[int], None]


class Sink(Protocol):
    """Where a download writes, in order: a non-seekable, hashing file wrapper."""

    def write(self, data: Any, /) -> int: ...

    def seekable(self) -> bool: ...


class RangeSink(Protocol):
    """Where a resumed download writes: told first where the bytes that follow begin."""

    def restart(self, offset: int, /) -> None:
        """The next bytes start at ``offset``: the asked offset, or 0 when the server sent the
        whole object instead (it ignored ``Range``)."""

    def write(self, data: Any, /) -> int: ...


_TYPE_RE = re.compile(r"[a-z][a-z0-9]{0,15}")


class Network(NamedTuple):
    """How long a remote keeps trying before it gives up, passed to each remote it builds."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 5


#: Library calls can wait out a flaky network.
PATIENT = Network()
#: Git hooks must not hold up a checkout or a push for minutes on a dead network.
FAIL_FAST = Network(connect_timeout=2.0, max_attempts=2)


class RemoteObject(NamedTuple):
    """An object on a remote: its key (relative to the remote root), size and last change."""

    key: str
    size: int
    modified: datetime  # timezone-aware


class Remote(ABC):
    """Where model bytes live; keys are relative to the remote root."""

    remote_type: str = ""

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        self.address = address
        self.network = network

    @abstractmethod
    def check_matches(
        self, recorded_address: str, registry_path: str, recorded_id: str | None = None
    ) -> None:
        """Raise :class:`RemoteMismatchError` if the registry's remote is another store."""

    def identity(self) -> str | None:
        """The ID a registry records beside the address; None when the address is the ID."""
        return None

    def ensure_identity(self) -> str | None:
        """:meth:`identity`, created first where the remote has none yet (on push)."""
        return self.identity()

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

    def download_from(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        """Write the object's bytes from ``offset`` on (``size`` is the registry's), in order.

        Calls ``sink.restart`` once with where the bytes begin. This default cannot seek: it
        starts over, which a remote that can should override.
        """
        sink.restart(0)
        self.download(key, _Unseekable(sink), progress, size)

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

    # -- listing for the garbage collector (issue 10) ------------------------------------------
    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        """Every object whose key starts with ``prefix``, with its size and age (one LIST)."""
        from ..errors import RemoteError

        raise RemoteError(
            f"The {self.remote_type!r} remote cannot list its objects, so `model-filer gc` "
            "cannot run on it.",
            address=self.address,
        )


class _Unseekable:
    """A :class:`RangeSink` as a plain in-order :class:`Sink`."""

    def __init__(self, sink: RangeSink) -> None:
        self._sink = sink

    def write(self, data: Any) -> int:
        return self._sink.write(data)

    def seekable(self) -> bool:
        return False


def available_types() -> list[str]:
    """The remote types installed (one module each)."""
    from importlib.resources import files

    return sorted(
        p.name[:-3]
        for p in files(__name__).iterdir()
        if p.name.endswith(".py") and not p.name.startswith("_")
    )


def get_remote(remote_type: str, address: str, network: Network = PATIENT) -> Remote:
    """Build the remote of ``remote_type`` at ``address``, with its ``network`` policy."""
    name = f"{__name__}.{remote_type}" if isinstance(remote_type, str) else ""
    if not _TYPE_RE.fullmatch(str(remote_type)) or importlib.util.find_spec(name) is None:
        raise UnknownRemoteTypeError(
            f"Unknown remote_type {remote_type!r}. Use one of: {', '.join(available_types())}."
        )
    module = importlib.import_module(name)
    remote: Remote = module.REMOTE(address, network)
    return remote
