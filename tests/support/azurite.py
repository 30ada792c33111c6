"""Azurite, the Azure Storage emulator, as a blob service on 127.0.0.1 for the tests.

Azurite comes from npm, pinned to :data:`AZURITE_VERSION`; ``.ci/run`` installs it into
``.ci/node_modules`` (ignored by git). Only its blob service runs, with telemetry off, on a free
port, its data in a temp folder and its log in a file there; it is stopped by its PID. Two
accounts exist: Azurite's well-known development account and :data:`OTHER_ACCOUNT`, whose key
is made up per session (the secrets tests look for it in messages and logs).

Run ``python -m tests.support.azurite`` to start one by hand and print its connection string.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import pytest

AZURITE_VERSION = "3.37.0"
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / ".ci" / "node_modules" / ".bin" / "azurite-blob"
INSTALL = f"npm install --prefix .ci --no-save azurite@{AZURITE_VERSION}"
DEV_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every copy: no secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
OTHER_ACCOUNT = "mfotheraccount"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3

#: Variables that would let azure-identity or azure-storage-blob find the machine's accounts,
#: credentials or identity services: removed in tests.
AZURE_VARIABLES_TO_REMOVE = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "MSI_SECRET",
    "IDENTITY_HEADER",
    "IMDS_ENDPOINT",
)
#: Identity endpoints pointed at a dead loopback port, so no token request leaves 127.0.0.1.
DEAD = "http://127.0.0.1:9"
AZURE_DEAD_ENDPOINTS = {
    "IDENTITY_ENDPOINT": DEAD,
    "MSI_ENDPOINT": DEAD,
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": DEAD,
    "AZURE_IDENTITY_DISABLE_MULTITENANTAUTH": "1",
    "AZURE_CORE_COLLECT_TELEMETRY": "false",
    "AZURE_CONFIG_DIR": "/nonexistent/azure-config",  # no `az login` cache of the machine
}


class AzuriteError(RuntimeError):
    """Azurite could not be found or started (the message says how to fix it)."""


def connection_string(endpoint: str, account: str = DEV_ACCOUNT, key: str = DEV_KEY) -> str:
    """A connection string for ``account`` at ``endpoint`` (``http://host:port``)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{account};"
    )


@dataclass
class Azurite:
    """A running Azurite blob service."""

    port: int
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    other_key: str
    _containers: set[str] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def connection_string(self) -> str:
        """The development account's connection string."""
        return connection_string(self.endpoint)

    def service(self, conn: str | None = None) -> Any:
        """A ``BlobServiceClient`` of the SDK (for set-up and inspection)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(conn or self.connection_string)

    def create_container(self, name: str | None = None, conn: str | None = None) -> str:
        """Create a container (a fresh name by default) and return its name."""
        name = name or f"mf-{uuid.uuid4().hex[:16]}"
        self.service(conn).create_container(name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def find_azurite() -> Path:
    """The pinned ``azurite-blob``, installed from npm on first use (as ``.ci/run`` does), so
    the README's test command needs only Node.js; :class:`AzuriteError` saying how if that fails.
    """
    if not AZURITE_BIN.exists() and shutil.which("npm"):
        # Each test worker (pytest -n 2) may get here first: one installs, the other waits.
        (ROOT / ".ci").mkdir(exist_ok=True)
        with filelock.FileLock(ROOT / ".ci" / "azurite-install.lock"):
            if not AZURITE_BIN.exists():
                subprocess.run([*INSTALL.split(), "--no-audit", "--no-fund"], cwd=ROOT, check=False)
    if not AZURITE_BIN.exists():
        raise AzuriteError(
            f"Azurite is not installed at {AZURITE_BIN}. Install it (Node.js and npm needed) "
            f"from the repository root: `{INSTALL}` (.ci/run does this)."
        )
    return AZURITE_BIN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Azurite, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AzuriteError(
                f"Azurite exited with code {server.process.returncode} during startup; log "
                f"{server.log_path}:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 0.5):
            return
        time.sleep(0.1)
    raise AzuriteError(
        f"Azurite on {server.endpoint} not ready after {timeout:.0f} s; log "
        f"{server.log_path}:\n{server.log_tail()}"
    )


def start_azurite(tmp_root: Path, timeout: float = START_TIMEOUT) -> Azurite:
    """Start Azurite's blob service with its data under ``tmp_root``; ready when returned."""
    binary = find_azurite()
    tmp_root.mkdir(parents=True, exist_ok=True)
    other_key = base64.b64encode(secrets.token_bytes(64)).decode()
    for attempt in range(1, START_ATTEMPTS + 1):
        workdir = Path(tempfile.mkdtemp(prefix="azurite-", dir=tmp_root))
        port = _free_port()
        log_path = workdir / "azurite.log"
        command = [
            str(binary),
            "--blobHost",
            HOST,
            "--blobPort",
            str(port),
            "--location",
            str(workdir / "data"),
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        # Both accounts: Azurite drops its default one when given a list.
        accounts = f"{DEV_ACCOUNT}:{DEV_KEY};{OTHER_ACCOUNT}:{other_key}"
        env = dict(os.environ, AZURITE_ACCOUNTS=accounts)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        server = Azurite(port, workdir, log_path, process, other_key)
        try:
            _wait_ready(server, timeout)
        except BaseException:
            server.stop()
            if attempt < START_ATTEMPTS and "EADDRINUSE" in server.log_tail(200):
                continue
            raise
        return server
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def azurite(tmp_root: Path) -> Iterator[Azurite]:
    """Context manager: a running Azurite, stopped on exit."""
    server = start_azurite(tmp_root)
    try:
        yield server
    finally:
        server.stop()


def isolated_azure_env(conn: str | None = None) -> dict[str, str | None]:
    """The environment changes that keep the SDKs on loopback (None: remove the variable)."""
    changes: dict[str, str | None] = dict.fromkeys(AZURE_VARIABLES_TO_REMOVE)
    changes.update(AZURE_DEAD_ENDPOINTS)
    changes["AZURE_STORAGE_CONNECTION_STRING"] = conn
    return changes


def azure_remote_case(server: Azurite) -> tuple[str, str, dict[str, str | None]]:
    """``(remote_type, address, env)`` for a fresh container of a live Azurite.

    For the contract suite: apply ``env`` (a value of None removes the variable), then
    ``Filer(local_dir, address, remote_type=remote_type)``.
    """
    container = server.create_container()
    address = f"az://{container}/t-{uuid.uuid4().hex[:8]}"
    return "azure", address, isolated_azure_env(server.connection_string)


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """The session's Azurite; a test using it fails (never skips) when it cannot start."""
    try:
        server = start_azurite(tmp_path_factory.mktemp("azurite"))
    except AzuriteError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def azure_env(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """The environment of one test: Azurite's development account, identity endpoints dead."""
    for name, value in isolated_azure_env(azurite_server.connection_string).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return azurite_server


@pytest.fixture
def azure_address(azure_env: Azurite) -> str:
    """``az://container/prefix`` of a fresh container no other test uses."""
    return f"az://{azure_env.create_container()}/t-{uuid.uuid4().hex[:8]}"


def main() -> int:
    """Start Azurite in a temp folder and wait; print its connection string."""
    with tempfile.TemporaryDirectory() as tmp, azurite(Path(tmp)) as server:
        print(f"Azurite {AZURITE_VERSION} pid {server.pid}; log {server.log_path}")
        print(f"AZURE_STORAGE_CONNECTION_STRING='{server.connection_string}'")
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
