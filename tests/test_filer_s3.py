"""The Filer against a real S3 API (SeaweedFS on 127.0.0.1, or the endpoint named in the env)."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import shutil
import socket
import time
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError

from model_filer import (
    BucketNotFoundError,
    CredentialsError,
    Filer,
    IntegrityError,
    InvalidNameError,
    RemoteMismatchError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
)
from model_filer.local.store import ObjectStore
from model_filer.remotes.s3 import _timestamp, parse_address

REGISTRY = ".s3_registry"


class Touch:
    """Unpickling this creates ``marker``: proof that bytes were (not) unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def filer(tmp_path, s3_address):
    return Filer(tmp_path / "models", s3_address)  # remote_type defaults to 's3'


@pytest.fixture
def plain_filer(tmp_path, s3_address):
    """A Filer of the plain layout (each pickle whole at ``<name>/<sha256>.pkl``), for the
    cases that read or damage the remote's objects by their key."""
    return Filer(tmp_path / "models", s3_address, storage="plain")


def bucket_and_key(address: str, key: str) -> tuple[str, str]:
    bucket, prefix = parse_address(address)
    return bucket, f"{prefix}/{key}" if prefix else key


def teammate(tmp_path, author: Filer, address: str | None = None, name="teammate") -> Filer:
    """A fresh clone: a new folder holding only the author's registry."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copyfile(author.registry_path, folder / REGISTRY)
    # Another machine: its own object store, so its bytes come from the remote.
    store = ObjectStore(tmp_path / f"{name}-store")
    return Filer(folder, address or author.remote.address, remote_type="s3", store=store)


def shown(filer: Filer, capsys) -> str:
    capsys.readouterr()
    filer.show_files()
    return capsys.readouterr().out


def is_missing(s3_client, bucket: str, key: str) -> bool:
    try:
        s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the spec's flow --------------------------------------------------------------------------


def test_dump_with_push_and_show_files(plain_filer, s3_address, s3_client, capsys):
    plain_filer.dump({"v": 1}, "my_model", push=True)
    assert shown(plain_filer, capsys) == "my_model (synced)\n"
    assert plain_filer.registry_path.name == REGISTRY
    [entry] = plain_filer.list_files()
    assert entry.key == f"my_model/{entry.sha256}.pkl"
    bucket, key = bucket_and_key(s3_address, entry.key)
    assert key.startswith(s3_address.split("/")[-1] + "/my_model/")
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry.sha256
    assert body == plain_filer.model_path("my_model").read_bytes()


def test_local_dump_push_push_all_remove(filer, s3_address, s3_client, capsys):
    filer.dump({"v": 1}, "my_model", push=False)
    assert shown(filer, capsys) == "my_model (local)\n"
    filer.push("my_model")
    assert shown(filer, capsys) == "my_model (synced)\n"
    filer.dump(2, "b_model")
    filer.dump(3, "c_model")
    assert filer.push_all() == ["b_model", "c_model"]
    assert shown(filer, capsys) == "b_model (synced)\nc_model (synced)\nmy_model (synced)\n"
    [b_entry] = [e for e in filer.list_files() if e.name == "b_model"]
    filer.remove("b_model")  # the remote object stays
    assert not is_missing(s3_client, *bucket_and_key(s3_address, b_entry.key))
    assert not filer.model_path("b_model").exists()
    filer.remove_locals()
    assert shown(filer, capsys) == "c_model (synced)\nmy_model (synced)\n"


def test_remove_remote_deletes_the_object(filer, s3_address, s3_client, capsys):
    filer.dump({"v": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    bucket, key = bucket_and_key(s3_address, entry.key)
    assert not is_missing(s3_client, bucket, key)
    filer.remove("my_model", remove_remote=True)
    assert shown(filer, capsys) == "[no files exist]\n"
    with pytest.raises(ClientError) as info:
        s3_client.head_object(Bucket=bucket, Key=key)
    assert info.value.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")


def test_a_scikit_learn_model_round_trips_through_s3_into_a_fresh_clone(tmp_path, filer):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    filer.dump(model, "iris", push=True)
    [entry] = filer.list_files()
    assert entry.library is not None and entry.library["name"] == "sklearn"

    mate = teammate(tmp_path, filer)
    assert not mate.model_path("iris").exists()
    loaded = mate.load("iris")
    assert type(loaded) is LogisticRegression
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert mate.model_path("iris").read_bytes() == filer.model_path("iris").read_bytes()


def test_pull_fetches_synced_models(tmp_path, filer):
    filer.dump(np.arange(100), "one", push=True)
    filer.dump(np.arange(200), "two", push=True)
    mate = teammate(tmp_path, filer)
    report = mate.pull()
    assert sorted(report.done) == ["one", "two"] and report.failed == {}
    assert mate.load("two").sum() == np.arange(200).sum()


def test_a_multipart_sized_model_round_trips(tmp_path, filer):
    array = np.random.default_rng(0).random(5 * 1024 * 1024)  # 40 MiB: multipart upload
    filer.dump(array, "big", push=True)
    mate = teammate(tmp_path, filer)
    assert np.array_equal(mate.load("big"), array)


def test_old_registries_keep_their_bytes_after_a_redump(tmp_path, filer, s3_address, s3_client):
    filer.dump({"v": 1}, "my_model", push=True)
    old_registry = filer.registry_path.read_bytes()
    filer.remove("my_model")
    filer.dump({"v": 2}, "my_model", push=True)
    old_clone = tmp_path / "old"
    old_clone.mkdir()
    (old_clone / REGISTRY).write_bytes(old_registry)
    assert Filer(old_clone, s3_address).load("my_model") == {"v": 1}
    assert teammate(tmp_path, filer).load("my_model") == {"v": 2}


# -- integrity --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["replaced-same-size", "bit-flip", "truncated"])
def test_a_tampered_s3_object_is_refused_and_never_unpickled(
    tmp_path, plain_filer, s3_address, s3_client, how
):
    marker = tmp_path / "unpickled-marker"
    plain_filer.dump({"payload": b"x" * 2000}, "my_model", push=True)
    [entry] = plain_filer.list_files()
    bucket, key = bucket_and_key(s3_address, entry.key)
    good = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if how == "bit-flip":
        bad = good[:100] + bytes([good[100] ^ 0x80]) + good[101:]
    elif how == "truncated":
        bad = good[:-7]
    else:
        evil = pickle.dumps(Touch(marker), protocol=5)
        bad = evil + b"\0" * (len(good) - len(evil))
        assert len(bad) == len(good)  # only the sha can tell
    s3_client.put_object(Bucket=bucket, Key=key, Body=bad)

    mate = teammate(tmp_path, plain_filer)
    with pytest.raises(IntegrityError) as info:
        mate.load("my_model")
    message = str(info.value)
    assert entry.sha256 in message
    assert hashlib.sha256(bad).hexdigest() in message
    assert not marker.exists()
    assert not mate.model_path("my_model").exists()
    tmp_dir = mate.local_dir / ".model_filer" / "tmp"
    assert not tmp_dir.exists() or list(tmp_dir.iterdir()) == []


def test_a_deleted_s3_object_is_reported(tmp_path, filer, s3_address, s3_client):
    filer.dump({"v": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    s3_client.delete_object(
        Bucket=parse_address(s3_address)[0], Key=bucket_and_key(s3_address, entry.key)[1]
    )
    mate = teammate(tmp_path, filer)
    with pytest.raises(RemoteObjectMissingError) as info:
        mate.load("my_model")
    assert entry.key in str(info.value)
    assert "push" in str(info.value)


# -- which remote -----------------------------------------------------------------------------


def test_a_filer_pointing_at_another_bucket_than_its_registry(tmp_path, filer, s3_address):
    filer.dump({"v": 1}, "my_model", push=True)
    other = "s3://some-other-bucket-zz/models"
    with pytest.raises(RemoteMismatchError) as info:
        Filer(filer.local_dir, other)
    message = str(info.value)
    assert s3_address in message
    assert "s3://some-other-bucket-zz/models" in message
    assert str(filer.registry_path) in message


def test_a_filer_pointing_at_another_prefix_than_its_registry(filer, s3_address):
    filer.dump({"v": 1}, "my_model")
    with pytest.raises(RemoteMismatchError):
        Filer(filer.local_dir, s3_address + "-other")


@pytest.mark.parametrize(
    "form",
    [
        lambda bucket, prefix: f"s3://{bucket}/{prefix}",
        lambda bucket, prefix: f"{bucket}/{prefix}",
        lambda bucket, prefix: f"s3://{bucket}/{prefix}/",
        lambda bucket, prefix: f"{bucket}/{prefix}/",
    ],
    ids=["s3-url", "bucket-slash-prefix", "s3-url-trailing-slash", "bare-trailing-slash"],
)
def test_address_forms_with_a_prefix_name_the_same_remote(tmp_path, s3_env, s3_client, form):
    prefix = f"t-{uuid.uuid4().hex[:12]}/nested"
    address = form(s3_env.bucket, prefix)
    filer = Filer(tmp_path / "models", address)
    filer.dump({"v": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    assert not is_missing(s3_client, s3_env.bucket, f"{prefix}/{entry.key}")
    # every other spelling of the same place opens the same registry and loads
    for other in (f"s3://{s3_env.bucket}/{prefix}", f"{s3_env.bucket}/{prefix}"):
        assert Filer(filer.local_dir, other).load("my_model") == {"v": 1}
        assert teammate(tmp_path, filer, other, name=f"mate-{len(other)}").load("my_model") == {
            "v": 1
        }


@pytest.mark.parametrize("address_of", [lambda b: b, lambda b: f"s3://{b}", lambda b: f"s3://{b}/"])
def test_a_bare_bucket_address_puts_objects_at_the_bucket_root(
    tmp_path, s3_env, s3_client, address_of
):
    name = f"m-{uuid.uuid4().hex[:12]}"  # unique: the bucket root is shared by the session
    filer = Filer(tmp_path / "models", address_of(s3_env.bucket), storage="plain")
    filer.dump({"v": 1}, name, push=True)
    [entry] = filer.list_files()
    assert entry.key == f"{name}/{entry.sha256}.pkl"
    assert not is_missing(s3_client, s3_env.bucket, entry.key)
    assert teammate(tmp_path, filer, s3_env.bucket).load(name) == {"v": 1}
    filer.remove(name, remove_remote=True)
    assert is_missing(s3_client, s3_env.bucket, entry.key)


@pytest.mark.parametrize(
    "address",
    [
        "s3://Bad_Bucket/models",
        "s3://UPPER/x",
        "ab",
        "s3://",
        "",
        "s3:///prefix",
        "a" * 64,
        "s3://-leading/x",
        "s3://trailing-/x",
        "s3://two..dots/x",
        "s3://bucket/../escape",
        "s3://bucket/a//b",
        "s3://bucket/a\\b",
        "s3://bucket name/x",
        "http://bucket/x",
    ],
)
def test_invalid_addresses_are_refused(tmp_path, address):
    with pytest.raises(InvalidNameError) as info:
        Filer(tmp_path, address)
    assert "s3://bucket/prefix" in str(info.value) or "unsafe object key" in str(info.value)


def test_a_non_string_address_is_refused(tmp_path):
    with pytest.raises(InvalidNameError, match="must be a string"):
        Filer(tmp_path, 42)  # (None: read the address from the registry)


# -- times the store sends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 02 Dec 2026 03:50:39 GMT",  # a header (Last-Modified)
        "2026-12-02T03:50:39.000Z",  # a listing (LastModified, Initiated)
        "2026-12-02T03:50:39Z",
        "2026-12-02T03:50:39.123456+00:00",
        "Wed, 02 Dec 2026 03:50:39 +0100",  # the rest: botocore's own parser
        "1700000000",
        "2026-12-02",
    ],
)
def test_times_parse_as_botocore_parses_them(text):
    from botocore.utils import parse_timestamp

    expected = parse_timestamp(text)
    got = _timestamp(text)
    assert (got, got.utcoffset()) == (expected, expected.utcoffset())


def test_the_client_parses_the_stores_times_with_the_quick_parser(filer, monkeypatch):
    from model_filer.remotes import s3

    seen: list[str] = []
    real = s3._timestamp
    monkeypatch.setattr(s3, "_timestamp", lambda value: seen.append(value) or real(value))
    filer.dump({"w": 1}, "timed", push=True)  # (the client is made here, after the patch)
    assert next(iter(filer.remote.list_objects())).modified.tzinfo is not None
    assert any(value.endswith("Z") for value in seen), seen  # the listing's times came here


def test_transfers_report_their_progress_to_the_callback(filer, tmp_path):
    """The transfer manager's progress reaches the callback (a bar on a terminal)."""
    data = os.urandom(5 * 1024 * 1024)  # over SMALL_OBJECT: through the transfer manager
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    key = f"progress/{hashlib.sha256(data).hexdigest()}.pkl"
    sent: list[int] = []
    filer.remote.upload(src, key, hashlib.sha256(data).hexdigest(), sent.append)
    received: list[int] = []

    class Sink:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, chunk: bytes) -> int:
            self.chunks.append(bytes(chunk))
            return len(chunk)

        def seekable(self) -> bool:
            return False

    sink = Sink()
    filer.remote.download(key, sink, received.append, len(data))
    assert b"".join(sink.chunks) == data
    assert sum(sent) == len(data) and sum(received) == len(data)


def test_listed_times_are_aware_and_current(filer, s3_address):
    import datetime

    filer.dump({"w": 1}, "timed", push=True)
    listed = list(filer.remote.list_objects())
    assert listed, "the pushed model is listed"
    now = datetime.datetime.now(datetime.UTC)
    for obj in listed:
        assert abs(obj.modified - now) < datetime.timedelta(hours=1)


# -- store errors -----------------------------------------------------------------------------


def test_a_missing_bucket(tmp_path, s3_env):
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    filer = Filer(tmp_path / "models", f"s3://{bucket}/models")
    filer.dump({"v": 1}, "my_model")
    with pytest.raises(BucketNotFoundError) as info:
        filer.push("my_model")
    assert bucket in str(info.value)
    assert f"aws s3 mb s3://{bucket}" in str(info.value)
    assert filer.list_files()[0].state == "local"
    with pytest.raises(BucketNotFoundError):
        filer.dump({"v": 2}, "other", push=True)
    assert [e.state for e in filer.list_files()] == ["local", "local"]


def test_a_wrong_secret_is_refused_and_never_shown(tmp_path, filer, monkeypatch):
    filer.dump({"v": 1}, "synced_one", push=True)
    filer.dump({"v": 2}, "local_one")
    mate = teammate(tmp_path, filer)
    secret = "FAKE-SECRET-zq81x"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for action in (
        lambda: Filer(filer.local_dir, filer.remote.address).push("local_one"),
        lambda: Filer(mate.local_dir, mate.remote.address, store=mate.store).load("synced_one"),
    ):
        with pytest.raises(CredentialsError) as info:
            action()
        message = str(info.value)
        assert secret not in message
        assert "AWS_SECRET_ACCESS_KEY" in message  # says what to check
        assert secret not in repr(info.value)
    assert [e.state for e in filer.list_files()] == ["local", "synced"]


def test_no_credentials_at_all(tmp_path, filer, monkeypatch):
    filer.dump({"v": 1}, "my_model")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fresh = Filer(filer.local_dir, filer.remote.address)
    with pytest.raises(CredentialsError) as info:
        fresh.push("my_model")
    message = str(info.value)
    assert "No AWS credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message and "aws configure" in message
    assert fresh.list_files()[0].state == "local"


def test_an_unreachable_endpoint(tmp_path, filer, monkeypatch):
    filer.dump({"v": 1}, "my_model")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    fresh = Filer(filer.local_dir, filer.remote.address)
    started = time.monotonic()
    with pytest.raises(RemoteUnreachableError) as info:
        fresh.push("my_model")
    elapsed = time.monotonic() - started
    assert "AWS_ENDPOINT_URL" in str(info.value)
    assert fresh.list_files()[0].state == "local"
    assert elapsed < 60, f"took {elapsed:.1f} s to give up"
    print(f"unreachable endpoint reported after {elapsed:.1f} s")


def test_the_registry_never_holds_credentials(tmp_path, filer, s3_env):
    filer.dump({"v": 1}, "my_model", push=True)
    filer.dump({"v": 2}, "local_one")
    mate = teammate(tmp_path, filer)
    mate.load("my_model")
    for folder in (filer.local_dir, mate.local_dir):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".pkl":
                data = path.read_bytes()
                assert s3_env.access_key.encode() not in data, path
                assert s3_env.secret_key.encode() not in data, path
    text = filer.registry_path.read_text()
    assert "secret" not in text.lower() and "access" not in text.lower()
    assert s3_env.endpoint_url not in text


def test_a_deleted_bucket_is_reported_on_load(tmp_path, s3_env, s3_client):
    bucket = f"mf-gone-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    filer = Filer(tmp_path / "models", f"s3://{bucket}/models")
    filer.dump({"v": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    s3_client.delete_object(Bucket=bucket, Key=f"models/{entry.key}")
    s3_client.delete_bucket(Bucket=bucket)
    mate = teammate(tmp_path, filer)
    with pytest.raises(BucketNotFoundError) as info:
        mate.load("my_model")
    assert bucket in str(info.value)


def test_an_unreachable_endpoint_on_load(tmp_path, filer, monkeypatch):
    filer.dump({"v": 1}, "my_model", push=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    mate = teammate(tmp_path, filer)
    with pytest.raises(RemoteUnreachableError, match="AWS_ENDPOINT_URL"):
        mate.load("my_model")
    assert not mate.model_path("my_model").exists()


PULL_IN_CHILD = """
import sys
from model_filer import Filer
print(Filer(sys.argv[1], sys.argv[2]).pull().done)
"""


def test_a_model_of_many_parts_downloads_without_hanging(tmp_path, filer):
    """More parts than s3transfer keeps in memory at once (10): the in-order path must flow."""
    import subprocess
    import sys

    data = np.random.default_rng(3).integers(0, 255, size=100 * 1024 * 1024, dtype=np.uint8)
    filer.dump(data, "many_parts", push=True)
    mate = teammate(tmp_path, filer)
    result = subprocess.run(
        [sys.executable, "-c", PULL_IN_CHILD, str(mate.local_dir), mate.remote.address],
        capture_output=True,
        text=True,
        env={**os.environ, "MODEL_FILER_CACHE_DIR": str(mate.store.root)},
        timeout=120,  # seconds of work at most; a deadlock would wait forever
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['many_parts']"
    assert np.array_equal(mate.load("many_parts"), data)


def test_a_bucket_deleted_after_it_was_found_is_named_by_a_failed_read(s3_env):
    """A lookup asks about the bucket once per remote (then a 404 means the key); a failed
    read asks every time, so a bucket deleted meanwhile is named, not taken for a lost key."""
    from model_filer.remotes import get_remote

    bucket = f"gone-{uuid.uuid4().hex[:10]}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket)
    remote = get_remote("s3", f"s3://{bucket}/m")
    absent = "m/" + "0" * 64 + ".pkl"
    assert remote.stat(absent) is None  # (the bucket is asked about, and found)
    client.delete_bucket(Bucket=bucket)

    with pytest.raises(BucketNotFoundError, match="does not exist"):
        remote.read_range(absent, 0, 10)
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        remote.download(absent, io.BytesIO(), None)
