"""Remote faults and integrity: a flaky S3 store, and remote objects changed after push.

Faults come from ``faultproxy.FaultProxy`` on 127.0.0.1 in front of the session's SeaweedFS:
``AWS_ENDPOINT_URL`` points at the proxy, so boto3 runs unchanged (no mocking) and meets
dropped connections, 500, 503, SlowDown and truncated bodies for a seeded share of requests.
Push, pull, load and prefetch must succeed through botocore's retries or fail with a
:class:`~model_filer.RemoteError`; whatever happens, no entry says ``synced`` unless its object
is whole on the real server (checked with a client that bypasses the proxy), and no partial
download is ever renamed into place.

Integrity: an object changed on the remote after push (bit flip, other bytes, truncated,
appended) is refused before unpickling, the bad bytes are not kept, and the error names the
model, the expected and the actual sha256. The payload's unpickling would create a marker file.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer, IntegrityError, RemoteError
from model_filer.cli import main as cli_main
from model_filer.registry.file import parse
from tests.support.faultproxy import FaultProxy
from tests.support.gitrepo import NULL_SHA, commit, init_repo
from tests.support.machines import another_machine


def seeded(seed: int) -> random.Random:
    """A reproducible RNG for test data and timing (not for secrets)."""
    return random.Random(seed)  # noqa: S311


SEED = 4242
SHARE = 0.3
KB = 1024

#: Totals over the module, for docs/reliability.md (printed at the end with ``-s``).
TOTALS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfault proxy totals: {dict(TOTALS)}")


@pytest.fixture
def proxy(s3_env, monkeypatch) -> Iterator[FaultProxy]:
    """The fault proxy in front of SeaweedFS, as boto3's endpoint; starts with no faults."""
    with FaultProxy(s3_env.endpoint_url, seed=SEED, lifetime=180) as fp:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fp.url)
        yield fp
        TOTALS["requests"] += fp.requests
        for kind, n in fp.injected.items():
            TOTALS[f"fault {kind}"] += n


def model(i: int, size: int = 200 * KB) -> dict[str, Any]:
    return {"i": i, "w": seeded(i).randbytes(size + 4099 * i)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def object_on_server(s3_client: Any, address: str, key: str) -> bytes | None:
    """The object's bytes, read from the real server (not through the proxy)."""
    bucket, _, prefix = address[5:].partition("/")
    try:
        return bytes(s3_client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())
    except s3_client.exceptions.NoSuchKey:
        return None


def check_synced_are_whole(folder: Path, address: str, s3_client: Any) -> dict[str, Any]:
    """No entry says synced unless its object is on the remote with its size and sha256."""
    path = folder / ".s3_registry"
    entries = parse(path.read_bytes(), str(path)).entries
    for name, entry in entries.items():
        if entry.state == "synced":
            data = object_on_server(s3_client, address, entry.key or "")
            assert data is not None, f"{name} says synced, its object is missing"
            assert len(data) == entry.size, f"{name} says synced, its object is partial"
            assert sha256(data) == entry.sha256, f"{name} says synced, its object differs"
    return entries


def check_no_partial_file(folder: Path) -> None:
    """Every model file in place is whole; no temp file is left by a finished operation."""
    path = folder / ".s3_registry"
    entries = parse(path.read_bytes(), str(path)).entries
    for name, entry in entries.items():
        file = folder / f"{name}.pkl"
        if file.exists():
            data = file.read_bytes()
            assert (len(data), sha256(data)) == (entry.size, entry.sha256), f"{name} is partial"
    tmp = folder / ".model_filer" / "tmp"
    assert not tmp.is_dir() or os.listdir(tmp) == [], f"temp files left: {os.listdir(tmp)}"


def fresh_clone(source: Filer, folder: Path) -> Filer:
    """A teammate's clone, on another machine (its object store never saw these bytes)."""
    another_machine()
    folder.mkdir()
    (folder / ".s3_registry").write_bytes(source.registry_path.read_bytes())
    return Filer(folder, source.remote.address)


@pytest.fixture
def pushed(tmp_path, s3_address, proxy) -> Filer:
    """Eight models pushed without faults."""
    source = Filer(tmp_path / "source", s3_address)
    for i in range(8):
        source.dump(model(i), f"m{i}", push=True)
    another_machine()  # the tests fetch them as a teammate would
    return source


# -- push, pull, load and prefetch through faults ----------------------------------------------
def test_push_through_faults_marks_synced_only_what_is_whole(
    tmp_path, s3_address, s3_client, proxy
):
    filer = Filer(tmp_path / "models", s3_address, storage="plain")
    for i in range(12):
        filer.dump(model(i), f"m{i}")
    proxy.share = SHARE
    outcomes: collections.Counter[str] = collections.Counter()
    for i in range(6):  # one by one
        try:
            filer.push(f"m{i}")
            outcomes["push ok"] += 1
        except RemoteError:
            outcomes["push failed with RemoteError"] += 1
        check_synced_are_whole(filer.local_dir, s3_address, s3_client)
    for _ in range(6):  # the rest in parallel, again until everything is synced
        try:
            filer.push_all(jobs=4)
            outcomes["push_all ok"] += 1
            break
        except RemoteError:
            outcomes["push_all failed with RemoteError"] += 1
        check_synced_are_whole(filer.local_dir, s3_address, s3_client)
    entries = check_synced_are_whole(filer.local_dir, s3_address, s3_client)
    print(f"\npush through faults: {dict(outcomes)}; {dict(proxy.injected)}")
    assert sum(proxy.injected.values()) > 0
    assert all(e.state == "synced" for e in entries.values())
    proxy.share = 0.0
    for i in range(12):
        assert fresh_clone(filer, tmp_path / f"check{i}").load(f"m{i}") == model(i)


def test_pull_through_faults_never_renames_a_partial_download_into_place(tmp_path, pushed, proxy):
    proxy.share = SHARE
    proxy.faults = ("truncate", "truncate", "truncate", "drop", "500", "slowdown")
    for attempt in range(4):  # four fresh clones, each pulled until it has every model
        clone = fresh_clone(pushed, tmp_path / f"clone{attempt}")
        fetched: set[str] = set()
        for _ in range(6):
            report = clone.pull(jobs=4)
            fetched |= set(report.done)
            for name, error in report.failed.items():
                assert isinstance(error, RemoteError), f"{name}: {type(error).__name__}: {error}"
            check_no_partial_file(clone.local_dir)
            if not report.failed:
                break
        assert fetched == {f"m{i}" for i in range(8)}
        for i in range(8):
            assert clone.load(f"m{i}") == model(i)
    print(f"\npull through faults: {dict(proxy.injected)}")
    assert proxy.injected["truncate"] > 0


def test_load_through_faults_gives_the_model_or_a_remote_error(tmp_path, pushed, proxy):
    proxy.share = SHARE
    outcomes: collections.Counter[str] = collections.Counter()
    for attempt in range(3):
        clone = fresh_clone(pushed, tmp_path / f"clone{attempt}")
        for i in range(8):
            try:
                assert clone.load(f"m{i}") == model(i)
                outcomes["loaded"] += 1
            except RemoteError:
                outcomes["RemoteError"] += 1
            check_no_partial_file(clone.local_dir)
    print(f"\nload through faults: {dict(outcomes)}; {dict(proxy.injected)}")
    assert outcomes["loaded"] > 0
    assert sum(proxy.injected.values()) > 0


def test_prefetch_through_faults_never_fails_the_checkout(tmp_path, pushed, proxy, monkeypatch):
    from model_filer_hooks.prefetch_models import main as prefetch

    repo = init_repo(tmp_path / "repo")
    folder = repo / "models"
    folder.mkdir()
    (folder / ".s3_registry").write_bytes(pushed.registry_path.read_bytes())
    commit(repo, "models")
    monkeypatch.chdir(repo)
    proxy.share = SHARE
    for _ in range(4):
        assert prefetch(["--hook-stage", "post-checkout", NULL_SHA, "HEAD", "1"]) == 0
        check_no_partial_file(folder)
    proxy.share = 0.0
    assert prefetch(["--hook-stage", "post-checkout", NULL_SHA, "HEAD", "1"]) == 0
    filer = Filer(folder, pushed.remote.address)
    assert {p.name for p in folder.glob("*.pkl")} == {f"m{i}.pkl" for i in range(8)}
    for i in range(8):
        assert filer.load(f"m{i}") == model(i)


def test_one_truncated_body_is_retried_and_the_model_loads(tmp_path, pushed, proxy):
    clone = fresh_clone(pushed, tmp_path / "clone")
    proxy.faults, proxy.budget, proxy.share = ("truncate",), 1, 1.0
    proxy.applies = lambda method, path: method == "GET"
    try:
        assert clone.load("m2") == model(2)
    finally:
        check_no_partial_file(clone.local_dir)
    assert proxy.injected["truncate"] == 1


# -- every request failing: a clear error, nothing changed -------------------------------------
def test_push_when_every_request_drops_fails_clearly_and_stays_local(
    tmp_path, s3_address, s3_client, proxy
):
    filer = Filer(tmp_path / "models", s3_address)
    filer.dump(model(1), "m")
    before = filer.registry_path.read_bytes()
    proxy.share, proxy.faults = 1.0, ("drop",)
    with pytest.raises(RemoteError) as info:
        filer.push("m")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert "AWS_ENDPOINT_URL" in message or "try again" in message.lower()
    assert filer.registry_path.read_bytes() == before
    check_synced_are_whole(filer.local_dir, s3_address, s3_client)


def test_a_download_that_always_fails_leaves_no_file(tmp_path, pushed, proxy, capsys):
    clone = fresh_clone(pushed, tmp_path / "clone")
    proxy.faults = ("truncate",)
    proxy.applies = lambda method, path: method == "GET"  # HEAD answers, the body never comes
    proxy.share = 1.0
    with pytest.raises(RemoteError) as info:
        clone.load("m3")
    assert "m3" in str(info.value)
    check_no_partial_file(clone.local_dir)
    assert not (clone.local_dir / "m3.pkl").exists()

    assert cli_main(["pull", "--dir", str(clone.local_dir), "m4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("model-filer: error: ") and err.count("\n") == 1
    assert not (clone.local_dir / "m4.pkl").exists()
    check_no_partial_file(clone.local_dir)


# -- integrity: the remote object changed after push --------------------------------------------
class Touch:
    """Unpickling this creates ``marker``: proof that bytes were (not) unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def tamper(good: bytes, how: str, marker: Path) -> bytes:
    """The object's bytes, changed after push; each variant would create ``marker`` if loaded."""
    if how == "bit-flip":  # in the padding, after the Touch: unpickling would still work
        pos = len(good) - 100
        return good[:pos] + bytes([good[pos] ^ 0x01]) + good[pos + 1 :]
    if how == "replaced-same-size":
        evil = pickle.dumps([Touch(marker)], protocol=5)
        return evil + b"\0" * (len(good) - len(evil))  # only the sha256 can tell
    if how == "replaced-other-size":
        return pickle.dumps([Touch(marker), b"other"], protocol=5)
    if how == "truncated":  # the Touch comes first: a partial unpickle would still run it
        return good[: len(good) // 2]
    if how == "appended":
        return good + b"trailing bytes pickle.load would ignore"
    raise AssertionError(how)


TAMPERINGS = ["bit-flip", "replaced-same-size", "replaced-other-size", "truncated", "appended"]


def _check_refused(clone: Filer, name: str, expected_sha: str, bad: bytes, marker: Path) -> None:
    with pytest.raises(IntegrityError) as info:
        clone.load(name)
    message = str(info.value)
    assert info.value.name == name
    assert info.value.expected is not None and info.value.expected[1] == expected_sha
    assert info.value.actual == (len(bad), hashlib.sha256(bad).hexdigest())
    assert not marker.exists(), "the tampered bytes were unpickled"
    assert not (clone.local_dir / f"{name}.pkl").exists(), "the bad bytes were kept"
    tmp = clone.local_dir / ".model_filer" / "tmp"
    assert not tmp.is_dir() or os.listdir(tmp) == []
    assert repr(name) in message or name in message
    assert expected_sha in message
    assert sha256(bad) in message
    assert "\n" not in message


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_s3_object_is_refused_before_unpickling(
    tmp_path, s3_address, s3_client, how, monkeypatch, s3_env
):
    marker = tmp_path / "marker"
    source = Filer(tmp_path / "source", s3_address, storage="plain")
    payload = [Touch(marker), b"x" * 5000]
    source.dump(payload, "victim", push=True)
    assert not marker.exists()  # pickling does not run the payload; unpickling would
    [entry] = source.list_files()
    bucket, _, prefix = s3_address[5:].partition("/")
    good = object_on_server(s3_client, s3_address, entry.key or "")
    assert good is not None
    bad = tamper(good, how, marker)
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{entry.key}", Body=bad)

    clone = fresh_clone(source, tmp_path / "clone")
    _check_refused(clone, "victim", entry.sha256, bad, marker)
    report = clone.pull()  # pull refuses it as well, and keeps nothing
    assert isinstance(report.failed["victim"], IntegrityError)
    assert not (clone.local_dir / "victim.pkl").exists() and not marker.exists()


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_local_remote_object_is_refused_before_unpickling(tmp_path, how):
    marker = tmp_path / "marker"
    remote = tmp_path / "remote"
    remote.mkdir()
    source = Filer(tmp_path / "source", str(remote), "local", storage="plain")
    source.dump([Touch(marker), b"x" * 5000], "victim", push=True)
    [entry] = source.list_files()
    obj = remote / (entry.key or "")
    bad = tamper(obj.read_bytes(), how, marker)
    obj.write_bytes(bad)

    another_machine()
    clone_dir = tmp_path / "clone"
    clone_dir.mkdir()
    (clone_dir / ".local_registry").write_bytes(source.registry_path.read_bytes())
    _check_refused(
        Filer(clone_dir, str(remote), "local", storage="plain"), "victim", entry.sha256, bad, marker
    )


def test_a_synced_models_local_file_changed_in_place_is_fetched_again(tmp_path):
    marker = tmp_path / "marker"
    remote = tmp_path / "remote"
    remote.mkdir()
    filer = Filer(tmp_path / "models", str(remote), "local")
    filer.dump({"w": b"y" * 5000}, "m", push=True)
    path = filer.model_path("m")
    good = path.read_bytes()
    evil = pickle.dumps([Touch(marker)], protocol=5)
    path.write_bytes(evil + b"\0" * (len(good) - len(evil)))  # same size, new mtime
    assert filer.load("m") == {"w": b"y" * 5000}
    assert not marker.exists()
    assert path.read_bytes() == good


def test_a_local_models_file_changed_after_dump_is_refused(tmp_path):
    marker = tmp_path / "marker"
    filer = Filer(tmp_path / "models", str(tmp_path / "remote"), "local")
    filer.dump({"w": b"y" * 5000}, "m")
    path = filer.model_path("m")
    good = path.read_bytes()
    evil = pickle.dumps([Touch(marker)], protocol=5)
    path.write_bytes(evil + b"\0" * (len(good) - len(evil)))
    with pytest.raises(IntegrityError) as info:
        filer.load("m")
    assert "'m'" in str(info.value) and sha256(good) in str(info.value)
    assert not marker.exists()
