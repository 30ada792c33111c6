"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a loopback S3 server.

Point ``AWS_ENDPOINT_URL`` at :attr:`FaultProxy.url` and every request boto3 makes passes through
it. For a configurable share of requests, decided by a seeded RNG, it injects one fault:

``drop``        close the connection without forwarding (the server never sees the request)
``drop_after``  forward, then close without answering (the server acted; the client cannot know)
``500``         answer ``500 InternalError``
``503``         answer ``503 ServiceUnavailable``
``slowdown``    answer ``503 SlowDown`` (S3's throttling answer, an XML error body)
``truncate``    forward, then send the headers and only part of the body, and close
``stall``       forward, then send the headers and only part of the body; from then on answer
                nothing, on any connection, holding them open (a link that stopped moving);
                not in ``FAULTS``
``echo``        answer ``400 InvalidArgument`` whose message echoes the request's credential
                headers (``Authorization``, ``X-Amz-Security-Token``): a server that puts request
                details into errors, for the secrets tests

Other requests are forwarded unchanged (the ``Host`` header too, so SigV4 signatures verify).
With ``throttle=(n, seconds)`` every forwarded response body goes out ``n`` bytes at a time, one
piece every ``seconds``: a slow link that never stalls for longer than ``seconds`` (a truncated
or stalled body too, up to its cut).

:class:`StuckServer` is the other kind of bad network: a stuck VPN or proxy that accepts TCP
connections, reads what is sent and never answers a byte.
The proxy is bounded: it listens on loopback only, refuses a non-loopback upstream, serves at
most ``max_requests`` requests and stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FAULTS = ("drop", "drop_after", "500", "503", "slowdown", "truncate")
_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Service Unavailable", "ServiceUnavailable", "Please try again."),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}
_NO_BODY_STATUS = {204, 304}
SOCKET_TIMEOUT = 30.0


class _Closed(Exception):
    """The peer closed the connection (or it timed out) before a whole message arrived."""


@dataclass
class Request:
    method: str
    path: str
    head: bytes  # request line and headers, as forwarded (no ``Expect``), ending in CRLF CRLF
    body: bytes
    headers: dict[str, str]  # lower-case names


def _read_line(fh: IO[bytes]) -> bytes:
    line = fh.readline(65537)
    if not line.endswith(b"\n"):
        raise _Closed
    return line


def _read_headers(fh: IO[bytes]) -> tuple[bytes, list[bytes], dict[str, str]]:
    first = _read_line(fh)
    lines: list[bytes] = []
    headers: dict[str, str] = {}
    while (line := _read_line(fh)) not in (b"\r\n", b"\n"):
        lines.append(line)
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, lines, headers


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Closed
    return data


def _read_chunked(fh: IO[bytes]) -> bytes:
    """The raw bytes of a chunked body, trailers included, to forward unchanged."""
    parts = []
    while True:
        size_line = _read_line(fh)
        parts.append(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while (line := _read_line(fh)) not in (b"\r\n", b"\n"):
                parts.append(line)
            parts.append(line)
            return b"".join(parts)
        parts.append(_read_exact(fh, size + 2))


def _read_body(fh: IO[bytes], headers: dict[str, str], until_close: bool) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(fh)
    if "content-length" in headers:
        return _read_exact(fh, int(headers["content-length"]))
    return fh.read() if until_close else b""


def _error_response(status: int, reason: str, code: str, message: str, head_only: bool) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        "<RequestId>faultproxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class FaultProxy:
    """A threaded proxy that injects faults into a share of the requests it forwards.

    Parameters
    ----------
    upstream : str
        ``http://127.0.0.1:PORT`` of the real server (loopback only).
    share : float
        Probability that a request gets a fault; may be changed while running.
    faults : sequence of str
        The kinds to choose from, uniformly (see the module docstring).
    seed : int
        Seed of the RNG that picks which requests fail, how, and where bodies are cut.
    applies : callable, optional
        ``applies(method, path) -> bool``: only matching requests may get a fault.
    budget : int, optional
        Inject at most this many faults, then forward everything (``None``: no limit).
    lifetime, max_requests
        Bounds after which the proxy stops by itself.
    """

    def __init__(
        self,
        upstream: str,
        *,
        share: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        applies: Callable[[str, str], bool] | None = None,
        budget: int | None = None,
        lifetime: float = 300.0,
        max_requests: int = 100_000,
        throttle: tuple[int, float] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
            raise ValueError(f"upstream must be http://127.0.0.1:PORT, got {upstream!r}")
        unknown = set(faults) - {*FAULTS, "echo", "stall"}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.upstream = (parts.hostname, parts.port)
        self.share = share
        self.faults = tuple(faults)
        self.applies = applies
        self.budget = budget
        self.max_requests = max_requests
        self.throttle = throttle
        self.stuck = False  # set by a ``stall``: nothing is answered any more
        self.cuts: list[int] = []  # where ``truncate`` and ``stall`` cut bodies, in order
        self.deadline = time.monotonic() + lifetime
        self.requests = 0
        self.bytes_up = 0  # request bodies received whole (what clients sent)
        self.bytes_down = 0  # response body bytes handed to clients
        self.injected: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or "ok")
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def count(self, method: str, path_part: str = "") -> int:
        """Requests seen with ``method`` whose path contains ``path_part``."""
        with self._lock:
            return sum(1 for m, p, _ in self.log if m == method and path_part in p)

    # -- serving ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while self._running():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(SOCKET_TIMEOUT)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._conns.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()
        with contextlib.suppress(OSError):
            self._server.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as fh:
                while self._running() and self._one(conn, fh):
                    pass
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _add(self, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.bytes_up += up
            self.bytes_down += down

    def _decide(self, request: Request) -> str | None:
        with self._lock:
            self.requests += 1
            if self.requests > self.max_requests:
                self._stop.set()
                return "drop"
            roll = self._rng.random()
            kind = self._rng.choice(self.faults)
            eligible = self.applies is None or self.applies(request.method, request.path)
            spent = self.budget is not None and sum(self.injected.values()) >= self.budget
            fault = kind if eligible and roll < self.share and not spent else None
            self.log.append((request.method, request.path, fault or "ok"))
            if fault:
                self.injected[fault] += 1
            return fault

    def _cut(self, length: int) -> int:
        """Where to cut a body: at least one byte sent, at least one byte missing."""
        with self._lock:
            return self._rng.randrange(1, length) if length > 1 else 0

    def _read_request(self, conn: socket.socket, fh: IO[bytes]) -> Request | None:
        try:
            first, lines, headers = _read_headers(fh)
        except _Closed:
            return None
        method, path, _ = first.decode("latin-1").split(" ", 2)
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            lines = [ln for ln in lines if not ln.lower().startswith(b"expect:")]
        body = _read_body(fh, headers, until_close=False)
        head = first + b"".join(lines) + b"\r\n"
        return Request(method, path, head, body, headers)

    def _forward(self, request: Request) -> tuple[bytes, bytes, dict[str, str]]:
        with (
            socket.create_connection(self.upstream, timeout=SOCKET_TIMEOUT) as up,
            up.makefile("rb") as ufh,
        ):
            up.sendall(request.head + request.body)
            first, lines, headers = _read_headers(ufh)
            status = int(first.split()[1])
            no_body = request.method == "HEAD" or status in _NO_BODY_STATUS or status < 200
            body = b"" if no_body else _read_body(ufh, headers, until_close=True)
        return first + b"".join(lines) + b"\r\n", body, headers

    def _one(self, conn: socket.socket, fh: IO[bytes]) -> bool:
        """Serve one request; return whether to keep the connection open."""
        request = self._read_request(conn, fh)
        if request is None:
            return False
        self._add(up=len(request.body))
        fault = self._decide(request)
        if self.stuck:
            self._stop.wait(max(0.0, self.deadline - time.monotonic()))
            return False
        head_only = request.method == "HEAD"
        if fault == "drop":
            return False
        if fault in _ERRORS:
            conn.sendall(_error_response(*_ERRORS[fault], head_only))
            return False
        if fault == "echo":
            message = (
                "Invalid argument: the request carried the security token "
                f"{request.headers.get('x-amz-security-token', '(none)')} and the authorization "
                f"{request.headers.get('authorization', '(none)')}"
            )
            conn.sendall(_error_response(400, "Bad Request", "InvalidArgument", message, head_only))
            return False
        head, body, headers = self._forward(request)
        if fault == "drop_after" or (fault in ("truncate", "stall") and not body):
            return False
        if fault in ("truncate", "stall"):
            cut = self._cut(len(body))
            with self._lock:
                self.cuts.append(cut)
            self._send(conn, head, body[:cut])
            if fault == "stall":
                self.stuck = True
                self._stop.wait(max(0.0, self.deadline - time.monotonic()))
            return False
        self._send(conn, head, body)
        return "close" not in headers.get("connection", "").lower()

    def _send(self, conn: socket.socket, head: bytes, body: bytes) -> None:
        """Send a response, its body ``throttle``d if set."""
        if self.throttle is None:
            conn.sendall(head + body)
        else:
            conn.sendall(head)
            step, pause = self.throttle
            for start in range(0, len(body), step):
                time.sleep(pause)
                conn.sendall(body[start : start + step])
        self._add(down=len(body))


class StuckServer:
    """A listener on 127.0.0.1 that accepts connections, reads them and never answers.

    ``connections`` counts the connections accepted: one per attempt a client made. It holds
    every connection open until :meth:`stop` (or ``lifetime`` seconds), as a stuck proxy does.
    """

    def __init__(self, lifetime: float = 600.0) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="stuck", daemon=True)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> StuckServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> StuckServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        with self._server:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    conn, _ = self._server.accept()
                except TimeoutError:
                    self._drain()
                    continue
                conn.setblocking(False)
                with self._lock:
                    self._conns.append(conn)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()

    def _drain(self) -> None:
        """Read what clients sent, so that their writes never block: only answers are missing."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                while conn.recv(65536):
                    pass
