"""Big transfers resume instead of restarting (issue 12, part 3).

Against the session's SeaweedFS through tests/faultproxy.py, which counts the bytes each way: a
load or push killed (SIGKILL) halfway is finished by the next one, which transfers little more
than the rest. Smaller than the benchmark's 1 GiB (benchmarks/resume.py) to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer
from model_filer.remotes import s3 as s3_module
from model_filer.remotes.local import LocalRemote
from model_filer.remotes.s3 import S3Remote
from model_filer.transfer import resume
from tests.support.faultproxy import FaultProxy
from tests.support.gitrepo import environ
from tests.support.machines import kill_when

MB = 1024 * 1024
SIZE = 96 * MB
_RUN = """
import sys
from model_filer import Filer
filer = Filer(sys.argv[2], sys.argv[3])
filer.load("big") if sys.argv[1] == "load" else filer.push("big")
"""


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(SIZE)


def _kill_at_half(proxy: FaultProxy, action: str, folder: Path, address: str, total: int) -> None:
    """Run ``action`` in a child through the proxy; SIGKILL it once half the bytes passed."""
    counter = "bytes_down" if action == "load" else "bytes_up"
    kill_when(
        [sys.executable, "-c", _RUN, action, str(folder), address],
        environ(AWS_ENDPOINT_URL=proxy.url),
        lambda: getattr(proxy, counter) >= total // 2,
        settle=0.5,  # requests the child left in flight finish in the proxy
    )


def _parts_settled(client: Any, bucket: str, quiet: float = 1.0, limit: float = 30.0) -> int:
    """Wait until the killed push's parts stop arriving in the store (a loaded machine's
    store may still be writing the parts the proxy had received whole); return their count."""
    deadline, last, since = time.monotonic() + limit, -1, time.monotonic()
    while time.monotonic() < deadline:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        count = sum(
            len(
                client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get(
                    "Parts", []
                )
            )
            for u in uploads
        )
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return last


def _through(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)


def test_a_load_killed_halfway_fetches_only_the_rest(
    tmp_path: Path, s3_env: Any, s3_address: str, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Filer(tmp_path / "producer", s3_address)
    producer.dump(payload, "big", push=True)
    entry = producer.list_files()[0]
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    store = tmp_path / "consumer-store"  # another machine: its store lacks the bytes
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(store))
    with FaultProxy(s3_env.endpoint_url, lifetime=600) as proxy:
        _kill_at_half(proxy, "load", consumer, s3_address, entry.size)
        partials = list((store / "partial").iterdir())  # downloads land in the store
        assert len(partials) == 1 and partials[0].stat().st_size >= entry.size * 0.4
        kept = partials[0].stat().st_size
        before = proxy.bytes_down
        _through(monkeypatch, proxy)
        assert Filer(consumer, s3_address).load("big") == payload  # the bytes verified
        fetched = proxy.bytes_down - before
    print(f"resumed load fetched {fetched / entry.size:.1%} of the bytes")
    # Only what the killed load had not kept comes again, plus at most the chunks that were in
    # flight beyond its in-order prefix (a few MiB of 96).
    rest = entry.size - kept
    assert fetched <= rest + 0.08 * entry.size, f"{fetched / entry.size:.0%} fetched again"
    assert list((store / "partial").iterdir()) == []


def test_a_push_killed_halfway_sends_only_the_rest(
    tmp_path: Path,
    s3_env: Any,
    s3_address: str,
    s3_client: Any,
    payload: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = Filer(tmp_path / "producer", s3_address)
    producer.dump(payload, "big")
    entry = producer.list_files()[0]
    with FaultProxy(s3_env.endpoint_url, lifetime=600) as proxy:
        _kill_at_half(proxy, "push", producer.local_dir, s3_address, entry.size)
        _parts_settled(s3_client, s3_env.bucket)
        before = proxy.bytes_up
        _through(monkeypatch, proxy)
        Filer(producer.local_dir, s3_address).push("big")
        sent = proxy.bytes_up - before
    print(f"resumed push sent {sent / entry.size:.1%} of the bytes")
    assert sent <= 0.60 * entry.size, f"{sent / entry.size:.0%} sent again"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint_url)
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    assert Filer(consumer, s3_address).load("big") == payload
    remote = S3Remote(s3_address)
    assert remote._uploads(remote.prefix) == []  # completed: nothing left unfinished


def test_a_resumed_push_resends_a_part_whose_bytes_differ(
    tmp_path: Path, s3_env: Any, s3_address: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(24 * MB)
    producer = Filer(tmp_path / "producer", s3_address, storage="plain")
    producer.dump(data, "big")
    entry = producer.list_files()[0]
    src = producer.model_path("big").read_bytes()
    remote = S3Remote(s3_address)
    full = remote._full_key(f"big/{entry.sha256}.pkl")
    upload = s3_client.create_multipart_upload(Bucket=remote.bucket, Key=full)["UploadId"]
    part = 8 * MB
    bad = bytearray(src[:part])
    bad[100] ^= 1
    s3_client.upload_part(
        Bucket=remote.bucket, Key=full, UploadId=upload, PartNumber=1, Body=bytes(bad)
    )
    s3_client.upload_part(
        Bucket=remote.bucket, Key=full, UploadId=upload, PartNumber=2, Body=src[part : 2 * part]
    )
    with FaultProxy(s3_env.endpoint_url, lifetime=120) as proxy:
        _through(monkeypatch, proxy)
        producer.push("big")
        sent = proxy.bytes_up
    assert len(src) - part <= sent < len(src)  # part 2 kept, part 1 (other bytes) sent again
    body = s3_client.get_object(Bucket=remote.bucket, Key=full)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry.sha256


def test_our_uploads_unfinished_for_a_day_are_aborted(
    tmp_path: Path, s3_env: Any, s3_address: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = S3Remote(s3_address)
    ours = f"{remote.prefix}/old/{'ab' * 32}.pkl"
    theirs = f"{remote.prefix}/someone-elses.bin"
    for key in (ours, theirs):
        s3_client.create_multipart_upload(Bucket=remote.bucket, Key=key)
    producer = Filer(tmp_path / "producer", s3_address, storage="plain")
    producer.dump(os.urandom(17 * MB), "big")
    producer.push("big")  # younger than a day: both kept
    assert sorted(u["Key"] for u in remote._uploads(remote.prefix)) == sorted([ours, theirs])

    monkeypatch.setattr(s3_module, "ABANDONED_AFTER", 0)  # "a day" has passed
    producer = Filer(
        tmp_path / "producer", s3_address, storage="plain"
    )  # a new process, as it were
    producer.dump(os.urandom(17 * MB), "big2")
    producer.push("big2")

    assert [u["Key"] for u in remote._uploads(remote.prefix)] == [theirs]


# -- resuming a download, unit by unit ----------------------------------------------------------
def _object(remote_dir: Path, data: bytes) -> tuple[LocalRemote, str, str]:
    sha = hashlib.sha256(data).hexdigest()
    key = f"m/{sha}.pkl"
    (remote_dir / "m").mkdir(parents=True, exist_ok=True)
    (remote_dir / key).write_bytes(data)
    return LocalRemote(str(remote_dir)), key, sha


def test_a_local_remote_download_continues_from_the_partial_file(
    tmp_path: Path, remote: Path
) -> None:
    data = os.urandom(3 * MB + 17)
    local, key, sha = _object(remote, data)
    partial = resume.claim_partial(tmp_path / "partial", sha)
    partial.write_bytes(data[: 2 * MB])
    # Damage the remote's first half: only a download that reads just the rest still verifies.
    with open(remote / key, "r+b") as fh:
        fh.write(b"\0" * MB)
    assert resume.download(local, key, len(data), sha, partial) == (len(data), sha)
    assert partial.read_bytes() == data


def test_a_damaged_prefix_costs_one_download_from_zero(tmp_path: Path, remote: Path) -> None:
    data = os.urandom(2 * MB)
    local, key, sha = _object(remote, data)
    partial = resume.claim_partial(tmp_path / "partial", sha)
    partial.write_bytes(b"x" + data[1:MB])
    assert resume.download(local, key, len(data), sha, partial) == (len(data), sha)
    assert partial.read_bytes() == data


def test_a_dead_processes_partial_is_adopted_a_live_ones_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    sha = "ab" * 32
    child = subprocess.Popen(["sleep", "30"])
    try:
        host = resume.owned_temp_name("x").split("-", 1)[0]
        live = folder / f"{host}-{child.pid}-0000.{sha}.part.tmp"
        live.write_bytes(b"live")
        assert resume.claim_partial(folder, sha).exists() is False  # a fresh name
        gone = subprocess.Popen(["true"])
        gone.wait()
        left = folder / f"{host}-{gone.pid}-0000.{sha}.part.tmp"
        left.write_bytes(b"half")
        claimed = resume.claim_partial(folder, sha)
        assert claimed.read_bytes() == b"half" and not left.exists() and live.exists()
    finally:
        child.kill()
        child.wait()


class _IgnoresRange(http.server.BaseHTTPRequestHandler):
    """An S3-ish server that answers every GET with the whole object: no 206, no Content-Range."""

    body = b""
    ranges: list[str] = []  # noqa: RUF012 - per-test state, reset by the fixture

    def do_GET(self) -> None:
        type(self).ranges.append(self.headers.get("Range", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("ETag", '"x"')
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # the client hangs up on extra copies
            self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def range_ignoring_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_IgnoresRange]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _IgnoresRange)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _IgnoresRange.ranges = []
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield _IgnoresRange
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_that_ignores_range_is_detected_and_the_download_restarts(
    tmp_path: Path, range_ignoring_store: type[_IgnoresRange]
) -> None:
    data = os.urandom(20 * MB)
    range_ignoring_store.body = data
    sha = hashlib.sha256(data).hexdigest()
    partial = resume.claim_partial(tmp_path / "partial", sha)
    partial.write_bytes(data[: 5 * MB])
    store = S3Remote(f"bucket-{uuid.uuid4().hex[:8]}")
    assert resume.download(store, f"m/{sha}.pkl", len(data), sha, partial) == (len(data), sha)
    assert partial.read_bytes() == data  # not the prefix followed by the whole object
    assert any(r.startswith(f"bytes={5 * MB}-") for r in range_ignoring_store.ranges)  # asked


def test_an_interrupted_resume_keeps_what_arrived(tmp_path: Path, remote: Path) -> None:
    data = os.urandom(2 * MB)
    local, key, sha = _object(remote, data)
    partial = resume.claim_partial(tmp_path / "partial", sha)
    partial.write_bytes(data[:MB])
    (remote / key).unlink()  # the remote vanished mid-way
    with pytest.raises(Exception, match="does not exist"):
        resume.download(local, key, len(data), sha, partial)
    assert partial.read_bytes() == data[:MB]


def test_two_machines_pushing_the_same_bytes_at_once_both_succeed(
    tmp_path: Path, s3_env: Any, s3_address: str, s3_client: Any
) -> None:
    data = os.urandom(40 * MB)
    filers = [Filer(tmp_path / f"machine{i}", s3_address) for i in range(2)]
    for filer in filers:
        filer.dump(data, "big")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def push(filer: Filer) -> None:
        barrier.wait()
        try:
            filer.push("big")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(f,)) for f in filers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(filers[0].registry_path, consumer)
    assert Filer(consumer, s3_address).load("big") == data
