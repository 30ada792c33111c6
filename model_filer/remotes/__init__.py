"""Remote stores behind one small interface.

A remote type ``X`` is the module ``model_filer.remotes.X`` exposing ``REMOTE``, a subclass of
:class:`Remote`: a new type is one new module (and its address scheme in :data:`SCHEMES`). Modules
are imported only when used, so the hooks that never transfer never import boto3.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from model_filer.errors import (
    InvalidNameError,
    RemoteObjectMissingError,
    UnknownRemoteTypeError,
)
from model_filer.remotes.sources import BufferSource, Source, source_of

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
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(?:\d+|\*)")


def check_range(start: int, length: int) -> None:
    """Refuse the arguments of a :meth:`Remote.read_range` no caller should pass."""
    if start < 0 or length < 1:
        raise ValueError(f"read_range needs start >= 0 and length >= 1, got {start}, {length}")


class Network(NamedTuple):
    """How long a remote waits on a store that does not answer; passed to each remote built.

    Every bound counts seconds in which no byte arrives (a stall), never the length of a
    transfer: a download that keeps moving finishes however long it takes. A store that
    accepts connections and never answers (a stuck VPN or proxy) costs at most
    ``stall_timeout`` seconds per call.

    Attributes
    ----------
    connect_timeout : float
        Seconds to wait for a connection to open (urllib3 also applies it to each write of a
        request body while it is sent).
    read_timeout : float
        Seconds one attempt waits for its next byte (botocore's read timeout, which applies
        to each socket read) before that attempt is dropped and retried.
    max_attempts : int
        Attempts of one request, by botocore's retries and by s3transfer's retries of a
        download's streamed body alike.
    stall_timeout : float
        Seconds a store may stay silent across all the retries of a call before it gives up
        with :class:`~model_filer.RemoteUnreachableError`: a retry that could end later than
        that is not started. The first attempt always runs, so a call waits at most
        ``max(stall_timeout, connect_timeout + read_timeout)``.
    notice_after : float
        Seconds of silence after which a terminal (stderr is a tty) shows a line saying what
        is being waited for.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_attempts: int = 5
    stall_timeout: float = 80.0
    notice_after: float = 5.0

    def gives_up(self, silent: float, backoff: float) -> bool:
        """Whether a store ``silent`` for that many seconds is given up on: another attempt,
        after ``backoff`` seconds, could end past the stall bound."""
        worst = self.connect_timeout + self.read_timeout
        return bool(silent) and silent + backoff + worst > max(self.stall_timeout, worst)


#: Library calls can wait out a flaky network: a stuck store costs them at most 80 s (about
#: 62 s: after three attempts of 20 s silence, a fourth could end past 80 s).
PATIENT = Network()
#: Git hooks must not hold up a checkout or a push: a stuck store costs them at most 13 s (about
#: 5 s: after one attempt of 5 s silence, a second could end past 13 s).
FAIL_FAST = Network(connect_timeout=2.0, read_timeout=5.0, max_attempts=3, stall_timeout=13.0)

#: Seconds of silence after which the default policies give up, for users who cannot pass a
#: Network (the CLI, the hooks): it replaces the ``stall_timeout`` of PATIENT and FAIL_FAST.
STALL_ENV = "MODEL_FILER_STALL_TIMEOUT"

#: The end of every remote's "no answer" error: how to wait longer, from the CLI or a hook
#: (the environment) as well as from Python.
STALL_ADVICE = (
    f"To wait longer, set {STALL_ENV}=300 (seconds), or pass "
    "network=model_filer.Network(stall_timeout=300) to Filer."
)


def network_from_env(network: Network) -> Network:
    """``network``, its ``stall_timeout`` from ``$MODEL_FILER_STALL_TIMEOUT`` when it is one
    of the default policies (:data:`PATIENT`, :data:`FAIL_FAST`) and the variable is set; a
    policy the caller chose is kept as is.

    Raises :class:`InvalidNameError` for a value that is not a finite positive number.
    """
    if network not in (PATIENT, FAIL_FAST):
        return network
    raw = os.environ.get(STALL_ENV, "").strip()
    if not raw:
        return network
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidNameError(
            f"${STALL_ENV}={raw!r} is not a positive number of seconds: set it to a number "
            "of seconds such as 300, or unset it."
        )
    return network._replace(stall_timeout=seconds)


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^\]\)'\"]+)")


def network_reason(exc: BaseException) -> str:
    """Why a call could not reach a store, in a few words ("connection refused", "host not
    found", "timed out"), from the first OS error in ``exc``'s causes; else its own text,
    cut short. An SDK's text repeats the request's URL and pool (urllib3's runs to 500
    characters), which says nothing more to the reader and keeps the same cause from being
    said once for all the models it stopped."""
    import socket

    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror):
            return "host not found"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, TimeoutError):
            return "timed out"
        more = [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
        todo += [m for m in more if isinstance(m, BaseException)]
    text = str(exc)
    found = _ERRNO_TEXT.search(text)
    if found:
        return found.group(1).strip().lower()
    return text if len(text) <= 200 else text[:200] + "..."


class Silence:
    """How long a store has sent nothing while calls wait on it; shared by threads.

    A call waits inside :meth:`waiting`; every answer or body byte that arrives calls
    :meth:`heard`. The clock starts when a call begins with no other call waiting and restarts
    at each sign of life, so it measures a stall, never how long a moving transfer takes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = 0.0
        self._waiting = 0
        self._gave_up = -math.inf

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Count the calling thread as waiting on the store until the block ends."""
        with self._lock:
            if not self._waiting:
                self._since = time.monotonic()
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    def heard(self) -> None:
        """The store sent something: the silence, and a recent give-up, are over."""
        self._since = time.monotonic()  # (one float store: no lock needed)
        self._gave_up = -math.inf

    def seconds(self) -> float:
        """Seconds of silence so far; 0 when no call is waiting."""
        return time.monotonic() - self._since if self._waiting else 0.0

    def give_up(self) -> None:
        """A call gave up on the silence: calls starting soon need not wait for it again."""
        self._gave_up = time.monotonic()

    def gave_up_within(self, seconds: float) -> bool:
        """Whether a call gave up less than ``seconds`` ago, with no sign of life since."""
        return time.monotonic() - self._gave_up < seconds


class _Stalled(Exception):
    """The store stayed silent past the policy's ``stall_timeout``: no layer may retry.

    No SDK retries an exception of this type (botocore, s3transfer, the GCS client and
    azure-core retry only their own), so raising it from any layer stops every layer at once.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer for {seconds:.0f} s")
        self.seconds = seconds


def check_stall(silence: Silence, network: Network, backoff: float) -> None:
    """Raise :class:`_Stalled` if another attempt, after ``backoff`` s, could end past the bound."""
    silent = silence.seconds()
    if network.gives_up(silent, backoff):
        silence.give_up()
        raise _Stalled(silent)


class Sending(io.BytesIO):
    """A part's bytes as a body whose every read, as they are sent, is a sign of life.

    The store answers an upload only at its end; on a slow uplink, 8 parts in flight may take
    minutes each. A stuck store stops taking bytes (the socket's buffer fills), so the reads
    stop, and the silence then counts.
    """

    def __init__(self, data: bytes, silence: Silence) -> None:
        super().__init__(data)
        self._silence = silence

    def read(self, size: int | None = -1, /) -> bytes:
        self._silence.heard()
        return super().read(size)


class SendingPart(io.RawIOBase):
    """``length`` bytes of ``source`` from ``start``, as a body read from it as it is sent
    (every read a sign of life, as :class:`Sending`, told to ``heard``): 8 parts of 8 MiB in
    flight then hold a few reads' worth of memory, not 64 MiB. Seekable, so an SDK can
    checksum it and send it again. Closing it leaves ``source`` open."""

    def __init__(
        self, source: Source, start: int, length: int, heard: Callable[[], object]
    ) -> None:
        super().__init__()
        self._source, self._start, self._length, self._heard = source, start, length, heard
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(view.nbytes, self._length - self._at))
        got = self._source.read_into(view[:n], self._start + self._at) if n else 0
        self._at += got
        self._heard()
        return got

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._length}[whence]
        self._at = max(0, min(self._length, base + offset))
        return self._at

    def tell(self) -> int:
        return self._at

    def __len__(self) -> int:
        return self._length


# One silence clock per endpoint: every bucket of a stuck endpoint is stuck alike.
_SILENCES: dict[str, Silence] = {}
_SILENCES_LOCK = threading.Lock()


def silence_of(endpoint: str) -> Silence:
    """The silence clock shared by every remote of ``endpoint``."""
    with _SILENCES_LOCK:
        return _SILENCES.setdefault(endpoint, Silence())


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
        #: How long the store has been silent; a remote that can tell updates it.
        self.silence = Silence()
        self._store_found = False  # see _store_exists
        self._store_lock = threading.Lock()

    @abstractmethod
    def check_matches(
        self, recorded_address: str, registry_path: str, recorded_id: str | None = None
    ) -> None:
        """Raise :class:`RemoteMismatchError` if the registry's remote is another store."""

    @abstractmethod
    def _check_store(self) -> None:
        """Raise the type's missing-bucket error if its bucket or container is gone."""

    def _store_exists(self) -> None:
        """:meth:`_check_store`, asked once per remote where a 404 is the common answer: a
        lookup of a key a push is about to send (one round trip per new object saved), and
        before an upload (some stores make a missing bucket on PUT). A failed read or delete
        asks every time: it is rare, and its error must name a bucket deleted meanwhile."""
        if self._store_found:
            return
        with self._store_lock:  # (a push's threads ask at once: one asks, the rest wait)
            if not self._store_found:
                self._check_store()
                self._store_found = True

    def identity(self) -> str | None:
        """The ID a registry records beside the address; None when the address is the ID."""
        return None

    def ensure_identity(self) -> str | None:
        """:meth:`identity`, created first where the remote has none yet (on push)."""
        return self.identity()

    def upload(self, src: Path | Source, key: str, sha256: str, progress: Progress | None) -> None:
        """Store ``src`` (a file, or a :class:`Source`: a pack is never written out) under
        ``key``; a key already holding an object of that size ends with its last change
        renewed (kept and :meth:`touch`-ed where a lookup first pays, else written again):
        gc, which re-reads it before deleting, must see that a push relies on it."""
        with source_of(src) as source:
            self.put(source, key, sha256, progress)

    @abstractmethod
    def put(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        """:meth:`upload`, of a source: what each remote type implements."""

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

    def read_bytes(
        self, key: str, limit: int, size: int | None = None, too_big: Exception | None = None
    ) -> bytes:
        """A small object's bytes (a manifest, a marker, a chunk), read into memory; past
        ``limit`` it is cut off and ``too_big`` raised (default :class:`RemoteError`).
        ``size`` is a hint, as for :meth:`download`."""
        from model_filer.errors import RemoteError

        too_big = too_big or RemoteError(
            f"{self.url(key)} holds more than {limit} bytes, too many for what it should be.",
            key=key,
            address=self.address,
        )
        sink = _Bounded(limit, too_big)
        self.download(key, sink, None, size)
        return sink.getvalue()

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes | bytearray:
        """``length`` bytes of the object ``key`` from byte ``start``: one ranged GET, as one
        bounded wait on the store (the network policy's timeouts, retries and stall bound, as
        every other call). Fewer bytes when the object ends first, ``b""`` when it ends before
        ``start`` (the caller checks the length); :class:`RemoteObjectMissingError` when there
        is no such object."""

    def _range_body(
        self, key: str, start: int, length: int, status: int, content_range: str, size: str
    ) -> int:
        """How many bytes of a ranged GET's body to read for :meth:`read_range`, from its
        answer: the ``status``, ``Content-Range`` and ``Content-Length`` headers (``""`` when
        absent). A 206 must start at ``start``; a 200 is the whole object (a store that ignores
        ``Range``), whose first bytes serve a read from 0, and nothing one past its end.

        Raises :class:`RemoteError` for any other answer: reading a whole pack to keep a
        slice of it would cost every read the whole object.
        """
        from model_filer.errors import RemoteError

        found = _CONTENT_RANGE.fullmatch(content_range.strip())
        total = int(size) if size.isdigit() else -1
        if status == 206 and found and int(found[1]) == start:
            return max(0, min(length, int(found[2]) - start + 1))
        if status == 200 and total >= 0 and (start == 0 or start >= total):
            return max(0, min(length, total - start))
        raise RemoteError(
            f"The store answered a read of bytes {start}-{start + length - 1} of "
            f"{self.url(key)} with HTTP {status} and Content-Range {content_range!r}: "
            "it does not serve byte ranges, which reading packed chunks needs. Check the "
            "store's endpoint (a proxy in front of it?).",
            key=key,
            address=self.address,
        )

    def upload_parts(self, parts: Iterable[Any], key: str, sha256: str) -> None:
        """Upload the buffers ``parts`` (a chunk, a marker, a map) as the one object ``key``."""
        self.put(BufferSource(parts), key, sha256, None)

    @abstractmethod
    def stat(self, key: str) -> RemoteObject | None:
        """The object's size and last change (one HEAD), or ``None`` when it does not exist."""

    def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or ``None`` when it does not exist."""
        found = self.stat(key)
        return None if found is None else found.size

    def modified_of(self, key: str) -> datetime | None:
        """The object's last change as the store tells it now, or ``None`` when it is gone.

        ``gc`` re-reads it just before each delete: a push that reused the object since the
        listing has refreshed it (:meth:`touch`), and wins.
        """
        found = self.stat(key)
        return None if found is None else found.modified

    @abstractmethod
    def touch(self, key: str) -> None:
        """Make the object's last change now, its bytes unchanged (a push that reuses it).

        :class:`RemoteObjectMissingError` when it does not exist.
        """

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

    def _gone(self, key: str) -> RemoteObjectMissingError:
        """The error for an object ``key`` the store does not hold."""
        return RemoteObjectMissingError(
            f"{self.url(key)} does not exist on the remote. Was it removed with "
            "remove_remote=True? Dump and push the model again.",
            key=key,
            address=self.address,
        )

    # -- listing for the garbage collector (issue 10) ------------------------------------------
    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        """Every object whose key starts with ``prefix``, with its size and age (one LIST)."""
        from model_filer.errors import RemoteError

        raise RemoteError(
            f"The {self.remote_type!r} remote cannot list its objects, so `model-filer gc` "
            "cannot run on it.",
            address=self.address,
        )


class RangedRemote(Remote):
    """A store whose resumed downloads are ranged GETs through its own bounded calls.

    A 404 there may also mean the bucket (or container) is gone: the store is then asked, so
    the error says which, and how to create it.
    """

    @abstractmethod
    def _call(self, action: str, key: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` as one bounded wait on the store; its errors become typed ones."""

    @abstractmethod
    def _download_ranges(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        """Ranged GETs of ``offset..size``, written to ``sink`` in order."""

    @abstractmethod
    def _read_range(self, key: str, start: int, length: int) -> bytes | bytearray:
        """One ranged GET of :meth:`read_range`, run as one bounded wait on the store."""

    def read_range(self, key: str, start: int, length: int) -> bytes | bytearray:
        from model_filer.errors import RemoteObjectMissingError

        check_range(start, length)
        try:
            data: bytes | bytearray = self._call("read", key, self._read_range, key, start, length)
        except RemoteObjectMissingError:
            self._check_store()  # a missing bucket or container also answers 404
            raise
        return data

    def download_from(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        from model_filer.errors import RemoteObjectMissingError

        try:
            self._call("download", key, self._download_ranges, key, offset, sink, progress, size)
        except RemoteObjectMissingError:
            self._check_store()  # a missing bucket or container also answers 404
            raise


class _Bounded:
    """A :class:`Sink` that keeps at most ``limit`` bytes, else raises ``error`` (ours: no
    SDK retries it)."""

    def __init__(self, limit: int, error: Exception) -> None:
        self.limit, self.error = limit, error
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if self.size + n > self.limit:  # cut off before it is kept, not after
            raise self.error
        self.parts.append(bytes(data))  # (no copy of a bytes object: one GET's body)
        self.size += n
        return n

    def getvalue(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    def seekable(self) -> bool:
        return False


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


#: The address scheme of each remote type whose addresses have one: ``gs://...`` passed
#: with another ``remote_type`` is refused, naming the right one.
SCHEMES = {"s3": "s3", "gs": "gcs", "az": "azure"}


def check_scheme(remote_type: str, address: object) -> None:
    """Refuse an address whose scheme names another remote type than ``remote_type``."""
    scheme, sep, _ = address.partition("://") if isinstance(address, str) else ("", "", "")
    named = SCHEMES.get(scheme.lower()) if sep else None
    if named is not None and named != remote_type:
        raise UnknownRemoteTypeError(
            f"{address!r} is a {scheme}:// address, which is the {named!r} remote's, but "
            f"remote_type={remote_type!r}. Pass remote_type={named!r}, e.g. "
            f"Filer(local_dir, {address!r}, remote_type={named!r})."
        )


def check_type(remote_type: object) -> str:
    """The module of ``remote_type``; :class:`UnknownRemoteTypeError` when none is installed."""
    name = f"{__name__}.{remote_type}" if isinstance(remote_type, str) else ""
    if not _TYPE_RE.fullmatch(str(remote_type)) or importlib.util.find_spec(name) is None:
        raise UnknownRemoteTypeError(
            f"Unknown remote_type {remote_type!r}. Use one of: {', '.join(available_types())}."
        )
    return name


def get_remote(remote_type: str, address: str, network: Network = PATIENT) -> Remote:
    """Build the remote of ``remote_type`` at ``address``, with its ``network`` policy
    (a default one adjusted by ``$MODEL_FILER_STALL_TIMEOUT``: :func:`network_from_env`)."""
    module = importlib.import_module(check_type(remote_type))
    check_scheme(remote_type, address)
    remote: Remote = module.REMOTE(address, network_from_env(network))
    return remote
