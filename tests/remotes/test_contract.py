"""Every remote type through the same cases (issue 20): a folder, S3, GCS and Azure Blob Storage.

Each type is one entry in :data:`TARGETS`: a function that takes pytest's ``request`` and
returns a :class:`Target` (its remote type, a fresh address, the environment that points its
client at the session's real server, and the few things a case must ask the type itself). A
new type is one function and one entry; every case then runs for it.

Servers are real (a folder, SeaweedFS, fake-gcs-server, Azurite), reached through
tests/support/faultproxy.py where a case needs to count bytes or stop answering.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from model_filer import (
    BucketNotFoundError,
    Filer,
    IntegrityError,
    ModelFilerError,
    Network,
    RemoteError,
    RemoteMismatchError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
    TransferError,
    UnknownRemoteTypeError,
)
from model_filer.registry.names import object_key, storage_key_kind
from model_filer.remotes import STALL_ADVICE, Remote, get_remote
from tests.support.azurite import DEV_KEY, connection_string
from tests.support.faultproxy import FaultProxy, StuckServer
from tests.support.gcsserver import GCS_BUCKET, free_port
from tests.support.gitrepo import environ
from tests.support.machines import kill_when

MB = 1024 * 1024
BIG = 32 * MB  # above every type's single-request size: the resumable paths
#: Gives up on the second silent attempt (see tests/remotes/test_stuck_store.py).
QUICK = Network(
    connect_timeout=0.5, read_timeout=0.5, max_attempts=10, stall_timeout=3.0, notice_after=0.3
)


@dataclass
class Target:
    """One remote type, ready for a case.

    Attributes
    ----------
    remote_type, address
        What ``Filer(local_dir, address, remote_type=...)`` takes; a fresh prefix per test.
    env
        The variables set for this test (what points the client at the server).
    endpoint
        The server's URL (a case puts a proxy in front of it); None for a folder.
    point_at
        ``point_at(url)``: the variables that point the client at another URL instead.
    missing_address
        An address on a bucket (or folder) that does not exist.
    create_hint
        What the missing-bucket message must say to type.
    secret
        A credential value set for this test, never to be seen in a message ("" for none).
    leftovers
        The unfinished uploads the store holds, as names, by the type's own means.
    """

    remote_type: str
    address: str
    env: dict[str, str]
    endpoint: str | None
    missing_address: str
    create_hint: str
    secret: str = ""
    leftovers: Callable[[], list[str]] = field(default=list)
    point_at: Callable[[str], dict[str, str]] = field(default=lambda url: {})

    def filer(self, folder: Path, **kwargs: Any) -> Filer:
        return Filer(folder, self.address, remote_type=self.remote_type, **kwargs)

    def remote(self, network: Network | None = None) -> Remote:
        if network is None:
            return get_remote(self.remote_type, self.address)
        return get_remote(self.remote_type, self.address, network)


def _folder(request: pytest.FixtureRequest) -> Target:
    tmp = request.getfixturevalue("tmp_path")
    root = tmp / "remote"
    root.mkdir()
    return Target(
        "local",
        str(root),
        {},
        None,
        str(tmp / "absent"),
        "mkdir -p",
        leftovers=lambda: [p.name for p in root.rglob("*.tmp")],
    )


def _s3(request: pytest.FixtureRequest) -> Target:
    s3 = request.getfixturevalue("s3_env")
    address = f"s3://{s3.bucket}/c-{uuid.uuid4().hex[:12]}"
    prefix = address.split("/", 3)[3]

    def leftovers() -> list[str]:
        found = s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix)
        return [u["Key"] for u in found.get("Uploads", [])]

    return Target(
        "s3",
        address,
        {"AWS_ENDPOINT_URL": s3.endpoint_url},
        s3.endpoint_url,
        "s3://no-such-bucket-contract/models",
        "aws s3 mb s3://no-such-bucket-contract",
        secret=s3.secret_key,
        leftovers=leftovers,
        point_at=lambda url: {"AWS_ENDPOINT_URL": url},
    )


def _gcs(request: pytest.FixtureRequest) -> Target:
    env = request.getfixturevalue("gcs_env")
    address = f"gs://{GCS_BUCKET}/c-{uuid.uuid4().hex[:12]}"
    prefix = address.split("/", 3)[3]

    def leftovers() -> list[str]:
        from google.cloud import storage

        blobs = storage.Client().list_blobs(GCS_BUCKET, prefix=f"{prefix}/.model_filer_uploads/")
        return [b.name for b in blobs]

    # No credentials go to an emulator; a password in its URL is the secret to keep.
    return Target(
        "gcs",
        address,
        env,
        env["STORAGE_EMULATOR_HOST"],
        "gs://no-such-bucket-contract/models",
        "gcloud storage buckets create gs://no-such-bucket-contract",
        secret="gcs-proxy-pa55word",
        leftovers=leftovers,
        point_at=lambda url: {"STORAGE_EMULATOR_HOST": url},
    )


def _azure(request: pytest.FixtureRequest) -> Target:
    server = request.getfixturevalue("azure_env")
    container = server.create_container()
    address = f"az://{container}/c-{uuid.uuid4().hex[:12]}"
    prefix = address.split("/", 3)[3]

    def leftovers() -> list[str]:
        # Uncommitted blocks: a blob listed only when the listing includes uncommitted ones.
        client = server.service().get_container_client(container)
        every = client.list_blobs(name_starts_with=prefix, include=["uncommittedblobs"])
        committed = {b.name for b in client.list_blobs(name_starts_with=prefix)}
        return [b.name for b in every if b.name not in committed]

    return Target(
        "azure",
        address,
        {"AZURE_STORAGE_CONNECTION_STRING": server.connection_string},
        server.endpoint,
        "az://no-such-container-contract/models",
        "az storage container create --name no-such-container-contract",
        secret=DEV_KEY,
        leftovers=leftovers,
        point_at=lambda url: {"AZURE_STORAGE_CONNECTION_STRING": connection_string(url)},
    )


#: Every remote type the contract holds for: one entry each.
TARGETS: dict[str, Callable[[pytest.FixtureRequest], Target]] = {
    "local": _folder,
    "s3": _s3,
    "gcs": _gcs,
    "azure": _azure,
}


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    """One remote type per run of a case, on its session's server."""
    return TARGETS[request.param](request)


def _networked(target: Target, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """What points this test's client at another URL (a folder has no server: skipped)."""
    if target.endpoint is None:
        pytest.skip(
            "a folder has no server: no network to stall or cut (tests/transfer/test_resume.py)"
        )

    def point(url: str) -> None:
        for name, value in target.point_at(url).items():
            monkeypatch.setenv(name, value)

    return point


def _consumer(tmp_path: Path, producer: Filer, name: str = "consumer") -> Path:
    """Another machine's clone: the producer's registry, an empty object store."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(producer.registry_path, folder)
    os.environ["MODEL_FILER_CACHE_DIR"] = str(tmp_path / f"{name}-store")
    return folder


@pytest.fixture(autouse=True)
def _restore_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # _consumer switches the object store; monkeypatch puts the test's back afterwards.
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", os.environ["MODEL_FILER_CACHE_DIR"])


class _Collect:
    """A RangeSink that keeps what it is given and where it started."""

    def __init__(self) -> None:
        self.offset: int | None = None
        self.data = bytearray()

    def restart(self, offset: int) -> None:
        self.offset, self.data = offset, bytearray()

    def write(self, data: Any) -> int:
        self.data += bytes(data)
        return len(data)


def _file(tmp_path: Path, data: bytes, name: str = "src.bin") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


# -- the cases ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1000, BIG], ids=["small", "big"])
def test_a_pushed_model_loads_on_another_machine(tmp_path, target, size):
    payload = os.urandom(size)
    producer = target.filer(tmp_path / "producer")
    producer.dump(payload, "m", push=True)

    assert target.filer(_consumer(tmp_path, producer)).load("m") == payload
    assert target.leftovers() == []  # a finished upload leaves nothing behind


def test_keys_are_content_addressed(tmp_path, target):
    filer = target.filer(tmp_path / "m", storage="plain")  # (the chunked layout's: test_chunked)
    filer.dump(b"first", "m", push=True)
    first = filer.list_files()[0].sha256
    filer.remove("m")  # the remote object stays
    filer.dump(b"second", "m", push=True)
    second = filer.list_files()[0].sha256

    keys = target.remote().list_sizes("m/")
    assert set(keys) == {object_key("m", first), object_key("m", second)}


def test_a_tampered_object_is_refused(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    producer.dump(b"honest bytes", "m", push=True)
    entry = producer.list_files()[0]
    remote = target.remote()
    forged, _ = _file(tmp_path, b"forged bytes" + b"\0" * (entry.size - 12))
    remote.delete(entry.key)
    remote.upload(forged, entry.key, entry.sha256, None)

    consumer = target.filer(_consumer(tmp_path, producer))
    with pytest.raises(IntegrityError) as info:
        consumer.load("m")

    # Damaged at its length, it would stay through any push: the message says to delete it
    # first, and following it repairs the remote.
    assert f"Delete {remote.url(entry.key)} from the remote" in str(info.value)
    assert "`model-filer push m`" in str(info.value)
    remote.delete(entry.key)
    producer.push("m")
    assert consumer.load("m") == b"honest bytes"


@pytest.mark.parametrize("size", [3 * MB, 9 * MB])
def test_a_ranged_read_continues_from_an_offset(tmp_path, target, size):
    data = os.urandom(size)
    src, sha = _file(tmp_path, data)
    remote = target.remote()
    remote.upload(src, "m/" + sha + ".pkl", sha, None)
    sink = _Collect()

    remote.download_from("m/" + sha + ".pkl", size // 3, sink, None, size)

    assert sink.offset == size // 3 and bytes(sink.data) == data[size // 3 :]


def _stored(tmp_path: Path, target: Target, data: bytes) -> tuple[Remote, str]:
    """A remote of ``target`` holding ``data``, and its key."""
    src, sha = _file(tmp_path, data)
    remote, key = target.remote(), f"m/{sha}.pkl"
    remote.upload(src, key, sha, None)
    return remote, key


def test_read_range_reads_the_bytes_asked_and_stops_at_the_end(tmp_path, target):
    size = MB + 123
    data = os.urandom(size)
    remote, key = _stored(tmp_path, target, data)
    spans = [
        (1000, 300_000),  # in the middle, over more than one piece of a body read (256 KiB)
        (0, 1),
        (0, size),  # the whole object
        (size - 10, 4096),  # running past the end: the tail
        (size - 1, 1),
    ]
    for start, length in spans:
        assert remote.read_range(key, start, length) == data[start : start + length], start

    assert remote.read_range(key, size, 10) == b""  # starting at the end
    assert remote.read_range(key, size + 5000, 10) == b""  # and past it


def test_read_range_of_an_empty_object_is_empty(tmp_path, target):
    remote, key = _stored(tmp_path, target, b"")

    assert remote.read_range(key, 0, 1) == b""
    assert remote.read_range(key, 0, MB) == b""
    assert remote.read_range(key, 7, 3) == b""


def test_read_range_of_a_missing_object_or_bucket_is_a_typed_error(target):
    absent = "m/" + "0" * 64 + ".pkl"
    remote = target.remote()
    remote.list_sizes("")  # the bucket exists (the session made it)

    with pytest.raises(RemoteObjectMissingError) as info:
        remote.read_range(absent, 0, 10)
    assert isinstance(info.value, ModelFilerError) and info.value.key == absent
    assert info.value.address == remote.address
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        get_remote(target.remote_type, target.missing_address).read_range(absent, 0, 10)


@pytest.mark.parametrize(("start", "length"), [(-1, 10), (0, 0), (5, -1)])
def test_read_range_refuses_what_no_caller_should_ask(target, start, length):
    with pytest.raises(ValueError, match="read_range"):
        target.remote().read_range("m/" + "0" * 64 + ".pkl", start, length)


def test_read_range_is_one_get_and_no_head_from_many_threads(tmp_path, target, monkeypatch):
    """Packs are read back by ranged GETs, several in flight: each read is one request."""
    from concurrent.futures import ThreadPoolExecutor

    point = _networked(target, monkeypatch)
    data = os.urandom(MB)
    _, key = _stored(tmp_path, target, data)
    spans = [(n * 40_000, 50_000) for n in range(24)] + [(MB - 100, 4096), (MB, 10), (0, MB)]
    with FaultProxy(str(target.endpoint), lifetime=120) as proxy:
        point(proxy.url)
        remote = target.remote()
        remote._connect()  # type: ignore[attr-defined] # (whatever building the client asks)
        before = len(proxy.log)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda span: remote.read_range(key, *span), spans))
        methods = [method for method, _, _ in proxy.log[before:]]

    assert got == [data[start : start + length] for start, length in spans]
    assert methods == ["GET"] * len(spans)  # no HEAD, no retry, nothing else


def test_a_range_whose_body_stops_midway_costs_the_stall_bound(tmp_path, target, monkeypatch):
    point = _networked(target, monkeypatch)
    _, key = _stored(tmp_path, target, os.urandom(MB))
    only_gets = lambda method, path: method == "GET"  # noqa: E731
    with FaultProxy(
        str(target.endpoint), share=1.0, faults=["stall"], applies=only_gets, lifetime=60
    ) as proxy:
        point(proxy.url)
        # After the body's stall (0.5 s), one more attempt could end past the bound:
        # 0.5 + (0.5 + 0.5) > 1.4. Without the bound: up to 10 GETs of 0.5 s silence each.
        remote = target.remote(QUICK._replace(stall_timeout=1.4))
        with pytest.raises(RemoteUnreachableError, match="No answer from"):
            remote.read_range(key, 0, MB)

    assert proxy.injected["stall"] == 1 and proxy.count("GET") == 1


def test_an_object_of_the_wrong_size_at_a_key_is_replaced_before_synced(tmp_path, target):
    producer = target.filer(tmp_path / "producer", storage="plain")
    payload = os.urandom(BIG)
    producer.dump(payload, "m")
    entry = producer.list_files()[0]
    key = object_key("m", entry.sha256)
    short, _ = _file(tmp_path, payload[: BIG // 2])  # a partial upload at the final key
    target.remote().upload(short, key, entry.sha256, None)

    producer.push("m")

    assert target.remote().size_of(key) == entry.size
    assert target.filer(_consumer(tmp_path, producer)).load("m") == payload


def test_listing_and_delete(tmp_path, target):
    remote = target.remote()
    keys = []
    for n in range(3):
        src, sha = _file(tmp_path, f"model {n}".encode() * (n + 1), f"{n}.bin")
        keys.append(object_key(f"m{n}", sha))
        remote.upload(src, keys[-1], sha, None)

    assert remote.list_sizes("m1/") == {keys[1]: 14}
    assert {o.key: o.size for o in remote.list_objects("")} == dict(
        zip(keys, (7, 14, 21), strict=True)
    )
    assert all(o.modified.tzinfo is not None for o in remote.list_objects(""))

    remote.delete(keys[0])
    remote.delete(keys[0])  # absent is fine

    assert remote.size_of(keys[0]) is None
    assert set(remote.list_sizes("")) == set(keys[1:])


def test_a_registry_of_another_remote_is_refused(tmp_path, target):
    target.filer(tmp_path / "m").dump(b"x", "m", push=True)
    other = target.address + "-other"  # another store of the same type, in use
    if target.remote_type == "local":
        os.mkdir(other)
    Filer(tmp_path / "o", other, remote_type=target.remote_type).dump(b"y", "y", push=True)

    with pytest.raises(RemoteMismatchError):
        Filer(tmp_path / "m", other, remote_type=target.remote_type)


def test_a_missing_bucket_says_how_to_create_it(tmp_path, target):
    filer = Filer(tmp_path / "m", target.missing_address, remote_type=target.remote_type)
    filer.dump(b"x", "m")

    with pytest.raises(TransferError) as info:
        filer.push_all()

    (error,) = info.value.failures.values()
    assert isinstance(error, BucketNotFoundError)
    assert target.create_hint in str(error)
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        filer.remote.list_sizes("")


def test_an_address_of_another_type_names_the_right_one(tmp_path, target):
    if target.remote_type == "local":
        pytest.skip("a folder path has no scheme")
    scheme = target.address.split("://")[0]
    other = "gcs" if target.remote_type != "gcs" else "s3"

    with pytest.raises(UnknownRemoteTypeError, match=f"remote_type={target.remote_type!r}"):
        Filer(tmp_path / "m", target.address, remote_type=other)
    assert scheme in ("s3", "gs", "az")


def test_an_unreachable_server_is_a_typed_error_with_the_fix(tmp_path, target, monkeypatch):
    point = _networked(target, monkeypatch)
    point(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(RemoteUnreachableError, match="Check the network"):
        target.remote(QUICK).size_of("m/" + "0" * 64 + ".pkl")


@pytest.mark.parametrize("call", ["stat", "read_range"])
def test_a_stuck_server_costs_the_stall_bound_not_attempts_multiplied(target, monkeypatch, call):
    point = _networked(target, monkeypatch)
    key = "m/" + "0" * 64 + ".pkl"
    with StuckServer(lifetime=60) as stuck:
        point(stuck.url)
        remote, other = target.remote(QUICK), target.remote(QUICK)
        other._connect()  # type: ignore[attr-defined] # built now: a busy machine takes a while

        with pytest.raises(RemoteUnreachableError, match="No answer from") as info:
            remote.stat(key) if call == "stat" else remote.read_range(key, 0, MB)
        assert stuck.connections <= 2  # QUICK would allow 10 attempts
        # what a CLI or hook user can type too, not only a Filer argument
        assert str(info.value).endswith(STALL_ADVICE)
        assert "MODEL_FILER_STALL_TIMEOUT=300" in STALL_ADVICE

        seen = stuck.connections
        with pytest.raises(RemoteUnreachableError, match="the last call gave up"):
            other.list_sizes("")  # the same endpoint: its silence is known
        assert stuck.connections == seen


_RUN = """
import sys
import model_filer.storage.packs as packs
from model_filer import Filer
# Runs of chunks read 512 KiB at a time (16 MiB in the product): two reads of 16 MiB would
# fetch all of BIG at once, leaving no moment when half is written and half is not.
packs.RANGE_MAX = 512 * 1024
filer = Filer(sys.argv[2], sys.argv[3], remote_type=sys.argv[4], storage=sys.argv[5])
filer.load("big") if sys.argv[1] == "load" else filer.push("big")
"""


def _kill_at_half(
    target: Target,
    action: str,
    folder: Path,
    via: FaultProxy,
    moved: Callable[[], int],
    storage: str = "chunked",
) -> None:
    """Run ``action`` in a child through the proxy ``via``; SIGKILL it once ``moved()``
    passes half of :data:`BIG`."""
    argv = [action, str(folder), target.address, target.remote_type, storage]
    kill_when(
        [sys.executable, "-c", _RUN, *argv],
        environ(**target.point_at(via.url)),
        lambda: moved() >= BIG // 2,
        settle=1.0,  # what the child left in flight reaches the store
    )


def _partial_bytes(store: Path) -> int:
    """What a download in progress holds: the proxy counts a body only once it is all sent."""
    return sum(p.stat().st_size for p in (store / "partial").glob("*") if p.is_file())


@pytest.fixture
def big_model(tmp_path: Path, target: Target) -> tuple[Filer, bytes]:
    payload = os.urandom(BIG)
    producer = target.filer(tmp_path / "producer")
    producer.dump(payload, "big")
    return producer, payload


def test_a_load_killed_halfway_fetches_only_the_rest(tmp_path, target, big_model, monkeypatch):
    point = _networked(target, monkeypatch)
    producer, payload = big_model
    producer.push("big")
    assert storage_key_kind(producer.list_files()[0].key or "") == "maps"  # chunks resume
    consumer = _consumer(tmp_path, producer)
    store = Path(os.environ["MODEL_FILER_CACHE_DIR"])
    with FaultProxy(str(target.endpoint), lifetime=300) as proxy:
        _kill_at_half(target, "load", consumer, proxy, lambda: _partial_bytes(store))
        kept = _partial_bytes(store)
        assert BIG // 2 <= kept < BIG  # killed halfway, the bytes kept
        before = proxy.bytes_down
        point(proxy.url)
        assert target.filer(consumer).load("big") == payload
        fetched = proxy.bytes_down - before
    # What the killed load had not kept comes again, plus the holes below the furthest chunk
    # it wrote: runs of chunks up to 16 MiB are read whole, two in flight for 32 MiB.
    # Starting over would fetch 100%.
    assert fetched <= BIG - kept + 0.2 * BIG, f"{fetched / BIG:.0%} fetched again"


def test_a_push_killed_halfway_sends_only_the_rest(tmp_path, target, big_model, monkeypatch):
    point = _networked(target, monkeypatch)
    producer, payload = big_model
    with FaultProxy(str(target.endpoint), lifetime=300) as proxy:
        _kill_at_half(target, "push", producer.local_dir, proxy, lambda: proxy.bytes_up)
        before = proxy.bytes_up
        point(proxy.url)
        producer.push("big")
        sent = proxy.bytes_up - before
    assert sent <= 0.6 * BIG, f"{sent / BIG:.0%} sent again"
    point(str(target.endpoint))
    assert target.filer(_consumer(tmp_path, producer)).load("big") == payload
    assert target.leftovers() == []


@pytest.mark.parametrize("storage", ["plain", "chunked"])
def test_an_upload_abandoned_for_a_day_is_cleaned_up(
    tmp_path, target, big_model, monkeypatch: pytest.MonkeyPatch, storage
):
    _networked(target, monkeypatch)
    if target.remote_type == "azure":
        pytest.skip(
            "Azure keeps a killed push's uncommitted blocks out of reads and listings, and "
            "deletes them itself after a week; no call removes them sooner without writing a "
            "blob at the final key (the push after a kill reuses them: see the case above)"
        )
    # One big object's unfinished upload: the pickle itself, or the one pack of its chunks.
    producer, _ = big_model
    with FaultProxy(str(target.endpoint), lifetime=300) as proxy:
        moved = lambda: proxy.bytes_up  # noqa: E731
        _kill_at_half(target, "push", producer.local_dir, proxy, moved, storage=storage)
    assert target.leftovers() != []
    module = sys.modules[type(target.remote()).__module__]
    monkeypatch.setattr(module, "ABANDONED_AFTER", 0)  # a day is now
    other = target.filer(tmp_path / "other", storage="plain")
    other.dump(os.urandom(BIG), "next", push=True)  # the next big push sweeps

    assert target.leftovers() == []


def test_secrets_never_reach_a_message(tmp_path, target, monkeypatch):
    point = _networked(target, monkeypatch)
    if target.remote_type == "gcs":  # an emulator behind a proxy that takes a password
        point(str(target.endpoint).replace("://", f"://user:{target.secret}@"))
    messages = []
    for call in (
        lambda: target.remote(QUICK).size_of("m/" + "0" * 64 + ".pkl"),
        lambda: target.remote(QUICK).read_range("m/" + "0" * 64 + ".pkl", 0, 10),
        lambda: target.filer(tmp_path / "a").load("absent"),
        lambda: get_remote(target.remote_type, target.missing_address, QUICK).list_sizes(""),
    ):
        try:
            call()
        except Exception as exc:
            messages.append(repr(exc) + str(exc))
    point(f"http://user:{target.secret}@127.0.0.1:{free_port()}")
    try:
        target.remote(QUICK).size_of("m/" + "0" * 64 + ".pkl")
    except RemoteError as exc:
        messages.append(repr(exc) + str(exc))

    assert messages and target.secret
    assert not [m for m in messages if target.secret in m]


@pytest.mark.parametrize(
    ("address", "named"), [("gs://bucket/models", "gcs"), ("az://container/models", "azure")]
)
def test_the_default_type_refuses_an_address_of_another_and_names_it(tmp_path, address, named):
    with pytest.raises(UnknownRemoteTypeError, match=f"remote_type={named!r}"):
        Filer(tmp_path / "m", address)


def test_the_pre_push_hook_finds_a_missing_object(tmp_path, target, repo, monkeypatch, capsys):
    from model_filer_hooks.check_remote_models import main

    from tests.support.gitrepo import commit, head

    filer = target.filer(repo / "models")
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices", push=True)
    commit(repo, "two models")
    target.remote().delete(filer.list_files()[1].key)
    monkeypatch.setenv("PRE_COMMIT_FROM_REF", "0" * 40)
    monkeypatch.setenv("PRE_COMMIT_TO_REF", head(repo))
    monkeypatch.setenv("PRE_COMMIT_REMOTE_NAME", "origin")

    assert main(["origin", "/srv/git/repo.git"]) == 1
    out = capsys.readouterr().out
    assert "prices" in out and "is missing from the remote" in out and "churn" not in out


def test_gc_deletes_only_what_no_commit_names(tmp_path, target, repo):
    from datetime import timedelta

    from model_filer.git import gc
    from tests.support.gitrepo import commit

    filer = target.filer(repo / "models")
    filer.dump(b"kept", "kept", push=True)
    filer.dump(b"dropped", "dropped", push=True)
    dropped = filer.list_files()[0].key
    filer.remove("dropped")
    commit(repo, "one model")

    found = gc.plan(filer, grace=timedelta(0))
    assert [o.key for o in found.candidates] == [dropped]
    assert gc.collect(filer, found.candidates) == [dropped]
    left = {o.key for o in target.remote().list_objects("")}
    assert left - {o.key for o in target.remote().list_objects(".model_filer/repos/")} == {
        filer.list_files()[0].key
    }  # (and the repository's marker)


def test_touch_renews_last_modified_and_keeps_the_bytes(tmp_path, target):
    import time

    from model_filer.errors import RemoteObjectMissingError

    remote = target.remote()
    data = os.urandom(5000)
    src, sha = _file(tmp_path, data)
    key = f".model_filer/packs/{sha}"
    remote.upload(src, key, sha, None)
    before = remote.modified_of(key)
    (listed,) = remote.list_objects(".model_filer/")
    assert before is not None and before.tzinfo is not None and listed.modified == before
    time.sleep(1.1)  # S3 and Azure keep Last-Modified to the second

    remote.touch(key)

    after = remote.modified_of(key)
    assert after is not None and after > before
    (listed,) = remote.list_objects(".model_filer/")
    assert listed.modified == after and listed.size == len(data)  # what gc lists
    assert remote.read_bytes(key, len(data)) == data
    with pytest.raises(RemoteError, match=f"more than {len(data) - 1} bytes"):
        remote.read_bytes(key, len(data) - 1)  # a manifest is read whole only up to its bound
    absent = f".model_filer/packs/{'0' * 64}"
    assert remote.modified_of(absent) is None
    with pytest.raises(RemoteObjectMissingError):
        remote.touch(absent)


def test_gc_collects_packs_no_staying_map_names_and_keeps_renewed_ones(tmp_path, target, repo):
    import time
    from datetime import UTC, datetime, timedelta

    from model_filer.git import gc
    from model_filer.registry.names import storage_key
    from model_filer.storage.manifest import Chunk, encode_manifest
    from tests.support.gitrepo import commit, registry_bytes, sample_entry

    remote = target.remote()

    def put(key: str, data: bytes) -> str:
        src, _ = _file(tmp_path, data, "obj.bin")
        remote.upload(src, key, hashlib.sha256(data).hexdigest(), None)
        return key

    def pack(*chunks: bytes) -> dict[bytes, Chunk]:
        body = b"".join(b"\0" + c for c in chunks)
        name = hashlib.sha256(body).hexdigest()
        put(storage_key("packs", name), body)
        at = [sum(len(x) + 1 for x in chunks[:i]) for i in range(len(chunks))]
        return {
            c: Chunk(hashlib.sha256(c).hexdigest(), len(c), name, at[i], len(c) + 1, len(body))
            for i, c in enumerate(chunks)
        }

    def model(*chunks: bytes) -> tuple[str, str, int]:
        whole = b"".join(chunks)
        sha = hashlib.sha256(whole).hexdigest()
        placed = [places[c] for c in chunks]
        return (
            put(storage_key("maps", sha), encode_manifest(sha, len(whole), placed)),
            sha,
            len(whole),
        )

    a, b, c = (bytes([n]) * 3000 for n in range(3))
    first, second = pack(a, b), pack(c)
    places = {**first, **second}
    kept, sha, size = model(a)  # b's pack kept whole for a
    dropped, _, _ = model(b, c)
    registry = repo / "models" / f".{target.remote_type}_registry"
    registry.parent.mkdir()
    entry = sample_entry("big", key=kept, sha256=sha, size=size)
    registry.write_bytes(registry_bytes(target.remote_type, remote.address, entry))
    commit(repo, "one big model")
    filer = target.filer(repo / "models")
    pack_c = second[c].key()

    found = gc.plan(filer, now=datetime.now(UTC) + timedelta(days=30))  # all are past grace

    assert {o.key for o in found.candidates} == {dropped, pack_c}
    time.sleep(1.1)  # a store keeps Last-Modified to the second
    remote.touch(pack_c)  # a push reused it meanwhile
    assert gc.collect(filer, found.candidates) == [dropped]
    assert {o.key for o in remote.list_objects(".model_filer/")} == {kept, pack_c, first[a].key()}


@pytest.mark.parametrize("size", [1000, BIG], ids=["small", "big"])
def test_an_upload_onto_the_same_bytes_renews_them(tmp_path, target, size):
    import time

    remote = target.remote()
    src, sha = _file(tmp_path, os.urandom(size))
    key = f".model_filer/packs/{sha}"
    remote.upload(src, key, sha, None)
    before = remote.modified_of(key)
    time.sleep(1.1)  # S3 and Azure keep Last-Modified to the second

    remote.upload(src, key, sha, None)  # a push that makes it again: gc must see it is needed

    after = remote.modified_of(key)
    assert before is not None and after is not None and after > before
    assert remote.size_of(key) == size


def test_the_pre_push_hook_finds_a_missing_pack(tmp_path, target, repo, monkeypatch, capsys):
    import json

    from model_filer_hooks.check_remote_models import main

    from tests.support.gitrepo import commit, head

    filer = target.filer(repo / "models")
    filer.dump(os.urandom(10 * MB), "big", push=True)
    commit(repo, "a big model")
    remote = target.remote()
    (entry,) = filer.list_files()
    packs = json.loads(remote.read_bytes(entry.key, MB))["packs"]
    monkeypatch.setenv("PRE_COMMIT_FROM_REF", "0" * 40)
    monkeypatch.setenv("PRE_COMMIT_TO_REF", head(repo))
    assert main([]) == 0

    remote.delete(f".model_filer/packs/{packs[-1][0]}")

    assert main([]) == 1
    out = capsys.readouterr().out
    said = f"big: {remote.url(entry.key)}: 1 of the {len(packs)} packs or chunks it names are"
    assert said in out and "missing from the remote or of another length" in out


def test_a_store_that_refuses_connections_is_one_short_cause_for_every_model(
    tmp_path, target, monkeypatch
):
    point = _networked(target, monkeypatch)
    producer = target.filer(tmp_path / "producer")
    for name in ("a", "b", "c"):
        producer.dump({"name": name}, name, push=True)
    consumer = _consumer(tmp_path, producer)
    point(f"http://127.0.0.1:{free_port()}")  # nothing listens there: refused at once
    report = target.filer(consumer).pull(jobs=1)  # (a report; the CLI raises its failures)
    with pytest.raises(TransferError) as info:
        report.raise_failures("pull")
    message = str(info.value)
    # One sentence for the three models (the remote's address, not each object's URL),
    # with why in a few words instead of the client library's 500 characters of URL and pool.
    assert message.startswith("3 models failed to pull: Cannot reach ")
    assert message.count("Cannot reach") == 1 and message.endswith("(a, b, c)")
    assert "connection refused" in message and "HTTPConnectionPool" not in message
    assert len(message) < 400, message


def test_missing_objects_ask_the_store_about_its_bucket_once(target, monkeypatch):
    """A 404 may mean a missing bucket, so the first one asks the store; once it has said the
    bucket exists, a 404 means the key: a lookup of a key not there is one request."""
    point = _networked(target, monkeypatch)
    absent = ["m/" + f"{n:064x}" + ".pkl" for n in range(5)]
    with FaultProxy(str(target.endpoint), lifetime=120) as proxy:
        point(proxy.url)
        remote = target.remote()
        remote._connect()  # type: ignore[attr-defined] # (whatever building the client asks)
        before = len(proxy.log)
        assert [remote.stat(key) for key in absent] == [None] * 5
        asked = len(proxy.log) - before
        gone = get_remote(target.remote_type, target.missing_address)
        for _ in range(2):  # a bucket never found is asked about again
            with pytest.raises(BucketNotFoundError, match="does not exist"):
                gone.stat(absent[0])

    assert asked == len(absent) + 1  # a lookup each, and one question about the bucket


def test_a_push_of_new_small_models_is_one_request_each(tmp_path, target, monkeypatch):
    """A small model goes up with one PUT and no lookup first: through 20 ms of latency, a
    lookup per model doubled the time a push of many new models takes."""
    point = _networked(target, monkeypatch)

    def requests(count: int) -> int:
        filer = Filer(
            tmp_path / f"m{count}",
            f"{target.address}-{count}",
            remote_type=target.remote_type,
        )
        for n in range(count):
            filer.dump({"tree": n}, f"model_{n}")
        with FaultProxy(str(target.endpoint), lifetime=120) as proxy:
            point(proxy.url)
            assert (
                len(Filer(filer.local_dir, filer.remote.address, target.remote_type).push_all())
                == count
            )
            return len(proxy.log)

    assert requests(12) - requests(4) == 8  # (the same fixed cost, then one request a model)
