"""The chunked layout end to end, on every remote type (the contract's targets).

Bytes moved are counted by the contract's proxy (the remote types with a server) and bytes
stored by listing the remote, so "only what the remote lacks" is measured, not assumed.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from model_filer import IntegrityError, InvalidNameError
from model_filer.registry.names import object_key
from model_filer.storage import REFRESH_AFTER, encode_manifest, parse_manifest, storage_key
from model_filer.storage.manifest import Chunk
from model_filer.storage.stored import SMALL_LEVEL, encode, level_for
from tests.remotes.test_contract import TARGETS, FaultProxy, Target, _consumer, _networked
from tests.support import chunking

MB = 1024 * 1024


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    """One remote type per run of a case (the contract's), on its session's server."""
    return TARGETS[request.param](request)


@pytest.fixture(autouse=True)
def _restore_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # _consumer switches the object store; monkeypatch puts the test's back afterwards.
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", os.environ["MODEL_FILER_CACHE_DIR"])


def _layers(seed: int, n: int = 48, retrained: int = 4) -> list[np.ndarray]:
    """A network of ``n`` float32 layers (~24 MiB); the last ``retrained`` drawn from ``seed``."""
    base = np.random.default_rng(0)
    layers = [base.standard_normal((128, 1024), dtype=np.float32) for _ in range(n)]
    new = np.random.default_rng(seed)
    for i in range(n - retrained, n):
        layers[i] = new.standard_normal((128, 1024), dtype=np.float32)
    return layers


def _stored(target: Target) -> dict[str, int]:
    return target.remote().list_sizes(".model_filer/")


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_small_and_big_models_round_trip_in_the_chunked_layout(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    small, big = b"tree " * 100_000, os.urandom(20 * MB)
    producer.dump(small, "small", push=True)
    producer.dump(big, "big", push=True)
    entries = {e.name: e for e in producer.list_files()}
    assert entries["small"].key == storage_key("objects", entries["small"].sha256)
    assert entries["big"].key == storage_key("maps", entries["big"].sha256)
    stored = _stored(target)
    assert stored[entries["small"].key] < entries["small"].size / 10  # compressed
    packs = [k for k in stored if k.startswith(".model_filer/packs/")]
    assert len(packs) == 1 and stored[packs[0]] >= 20 * MB  # ~80 chunks in one object
    assert not [
        k for k in stored if k.startswith((".model_filer/chunks/", ".model_filer/manifests/"))
    ]
    assert b"format: 4\n" in producer.registry_path.read_bytes()

    consumer = target.filer(_consumer(tmp_path, producer))
    assert consumer.load("small") == small and consumer.load("big") == big


def test_a_small_models_stored_object_is_compressed_at_its_level(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    producer.dump(b"tree node " * 50_000 + bytes(range(256)) * 400, "m", push=True)
    [entry] = producer.list_files()
    pickled = producer.model_path("m").read_bytes()
    expected = b"".join(bytes(p) for p in encode(pickled, level_for(entry.size)))
    at_level_3 = b"".join(bytes(p) for p in encode(pickled, 3))
    assert level_for(entry.size) == SMALL_LEVEL and len(expected) != len(at_level_3)
    assert _stored(target)[entry.key] == len(expected)


def test_a_new_version_moves_only_its_changed_chunks(tmp_path, target, monkeypatch):
    v1, v2 = _layers(1), _layers(2)
    producer = target.filer(tmp_path / "producer")
    producer.dump(v1, "net-v1", push=True)
    size = producer.list_files()[0].size
    consumer_dir = _consumer(tmp_path, producer)
    assert _same(target.filer(consumer_dir).load("net-v1"), v1)  # v1 now in its store
    before = _stored(target)

    if target.endpoint is None:  # a folder: what was stored is what was sent
        producer.dump(v2, "net-v2", push=True)
        sent = sum(n for k, n in _stored(target).items() if k not in before)
        (consumer_dir / producer.registry_path.name).write_bytes(
            producer.registry_path.read_bytes()
        )
        assert _same(target.filer(consumer_dir).load("net-v2"), v2)
        received = sent  # (no counter on a folder's reads: the proxy cases measure them)
    else:
        point = _networked(target, monkeypatch)
        with FaultProxy(str(target.endpoint), lifetime=300) as proxy:
            point(proxy.url)
            pusher = target.filer(producer.local_dir)
            pusher.dump(v2, "net-v2", push=True)
            sent = proxy.bytes_up
            (consumer_dir / producer.registry_path.name).write_bytes(
                producer.registry_path.read_bytes()
            )
            mark = proxy.bytes_down
            assert _same(target.filer(consumer_dir).load("net-v2"), v2)
            received = proxy.bytes_down - mark
        point(str(target.endpoint))
    assert sent <= 0.15 * size, f"push of v2 sent {sent / size:.0%} of a version"
    assert received <= 0.15 * size, f"pull of v2 fetched {received / size:.0%} of a version"
    stored_new = sum(n for k, n in _stored(target).items() if k not in before)
    assert stored_new <= 0.15 * size


def test_the_same_bytes_under_another_name_store_nothing_new(tmp_path, target):
    filer = target.filer(tmp_path / "m")
    payload = os.urandom(12 * MB)
    filer.dump(payload, "a", push=True)
    before = _stored(target)
    filer.dump(payload, "b", push=True)
    assert _stored(target) == before  # same sha256: the same map and packs


def test_the_plain_setting_keeps_todays_layout_and_both_load(tmp_path, target):
    plain = target.filer(tmp_path / "plain", storage="plain")
    payload = os.urandom(10 * MB)
    plain.dump(payload, "m", push=True)
    entry = plain.list_files()[0]
    assert entry.key == object_key("m", entry.sha256)
    assert b"format: 1\n" in plain.registry_path.read_bytes()
    assert target.remote().size_of(entry.key) == entry.size  # the pickle itself, readable
    # an object written in today's format loads with the default setting, no migration
    assert target.filer(_consumer(tmp_path, plain)).load("m") == payload


def test_an_unknown_storage_setting_is_refused(tmp_path, target):
    with pytest.raises(InvalidNameError, match="storage='zip' is not a layout: use 'chunked'"):
        target.filer(tmp_path / "m", storage="zip")


def _forge(target: Target, tmp_path: Path, key: str, data: bytes) -> None:
    path = tmp_path / "forged"
    path.write_bytes(data)
    remote = target.remote()
    remote.delete(key)
    remote.upload(path, key, "0" * 64, None)


def _nothing_written(folder: Path, store: Path) -> None:
    assert not (folder / "big.pkl").exists()
    assert not [p for p in store.rglob("*") if p.is_file() and "objects" in p.parts]
    assert not [p for p in (store / "partial").glob("*") if p.stat().st_size]


def _map(remote, entry) -> list[Chunk]:
    return parse_manifest(chunking.read(remote, entry.key), entry.sha256, entry.size)


@pytest.mark.parametrize(
    "attack", ["oversize", "wrong-total", "bad-hash", "too-many", "bomb", "format-1", "past-end"]
)
def test_a_hostile_manifest_is_refused_before_anything_is_written(tmp_path, target, attack):
    producer = target.filer(tmp_path / "producer")
    producer.dump(os.urandom(10 * MB), "big", push=True)
    entry = producer.list_files()[0]
    sha, size = entry.sha256, entry.size
    chunk, pack = "ab" * 32, "cd" * 32
    forged = {
        "oversize": b" " * (16 * MB + 1),
        "wrong-total": encode_manifest(sha, size, [Chunk(chunk, size - 1, pack, 0, 2, 50)]),
        "bad-hash": encode_manifest(sha, size, [Chunk("XY" * 32, size, pack, 0, 2, 50)]),
        "too-many": encode_manifest(sha, size, [Chunk(chunk, 1, pack, 0, 2, 50)] * 200_001),
        "bomb": encode_manifest(sha, size, [Chunk(chunk, size, pack, 0, 50, 50)]),
        # a manifest of the earlier format at a map's key: read as what its key says
        "format-1": b'{"chunks":[["'
        + chunk.encode()
        + b'",%d]],"format":1,"sha256":"%s","size":%d}' % (size, sha.encode(), size),
        # a map placing its chunk past its pack's end
        "past-end": encode_manifest(sha, size, [Chunk(chunk, size, pack, 10, 41, 60)]),
    }[attack]
    if attack in ("bomb", "past-end"):  # a pack whose stored chunk inflates beyond its size
        import zstandard

        bomb = b"\x01" + zstandard.ZstdCompressor().compress(b"\0" * (size * 4))
        _forge(target, tmp_path, storage_key("packs", pack), bomb.ljust(50, b"\0"))
    _forge(target, tmp_path, entry.key, forged)
    folder = _consumer(tmp_path, producer)
    # A map pushed again is replaced; the pack a bomb sits in is kept, so it goes first.
    again = "Ask the model's author to push it again"
    if attack in ("bomb", "past-end"):
        again = f"Delete {re.escape(target.remote().url(storage_key('packs', pack)))} from"
    with pytest.raises(IntegrityError, match=again):
        target.filer(folder).load("big")
    _nothing_written(folder, Path(os.environ["MODEL_FILER_CACHE_DIR"]))


def test_a_whole_object_of_another_length_is_replaced_by_a_push_alone(tmp_path, target):
    # (one of its length is not: see test_contract's tampered object)
    producer = target.filer(tmp_path / "producer")
    model = b"honest bytes" * 100
    producer.dump(model, "m", push=True)
    entry = producer.list_files()[0]
    _forge(target, tmp_path, entry.key, b"\x01" * (entry.size + 50))
    folder = _consumer(tmp_path, producer)
    fix = f"run `model-filer push m`: it replaces {target.remote().url(entry.key)}."
    with pytest.raises(IntegrityError, match=re.escape(fix)):
        target.filer(folder).load("m")
    producer.push("m")
    assert target.filer(folder).load("m") == model


def test_a_chunk_whose_bytes_do_not_match_its_hash_is_refused(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    data = os.urandom(10 * MB)
    producer.dump(data, "big", push=True)
    entry = producer.list_files()[0]
    producer.dump(data + os.urandom(2 * MB), "twin", push=True)
    remote = target.remote()
    first = _map(remote, entry)[0]
    twin = {e.name: e for e in producer.list_files()}["twin"]
    assert first.key() in {c.key() for c in _map(remote, twin)}  # twin keeps chunks in it
    pack = bytearray(chunking.read(remote, first.key()))
    other = b"".join(bytes(p) for p in encode(os.urandom(first.size)))
    assert len(other) == first.stored  # (random bytes: stored raw, as the real chunk)
    pack[first.offset : first.offset + first.stored] = other
    _forge(target, tmp_path, first.key(), bytes(pack))
    folder = _consumer(tmp_path, producer)
    with pytest.raises(IntegrityError, match=f"does not hold the chunk {first.sha256}") as caught:
        target.filer(folder).load("big")
    assert not (folder / "big.pkl").exists()
    # What it says to do: the push alone sees a pack of the right length, so it first goes.
    message = str(caught.value)
    assert f"Delete {remote.url(first.key())} from the remote" in message
    assert "`model-filer push big`" in message and "other chunks in that pack" in message
    remote.delete(first.key())
    producer.push("big")
    assert target.filer(folder).load("big") == producer.load("big")
    # The pack the push makes again holds the same chunks, so it has the same name: the model
    # that shared it loads too, on a machine that holds none of its chunks.
    elsewhere = target.filer(_consumer(tmp_path, producer, "elsewhere"))
    assert elsewhere.load("twin") == producer.load("twin")


def test_a_push_refreshes_a_reused_pack_that_gc_could_soon_collect(tmp_path, target, monkeypatch):
    if target.endpoint is not None:
        # (touch itself is tested on every type: tests/remotes/test_contract.py)
        pytest.skip("only a folder lets a test make an object old")
    chunking.small_chunks(monkeypatch)
    filer = target.filer(tmp_path / "m")
    shared = os.urandom(3 * MB)
    filer.dump(shared, "a", push=True)
    root = Path(target.address)
    old = (datetime.now(UTC) - REFRESH_AFTER - timedelta(days=1)).timestamp()
    young = (datetime.now(UTC) - REFRESH_AFTER + timedelta(days=1)).timestamp()
    packs = sorted((root / ".model_filer" / "packs").iterdir())
    assert len(packs) >= 4
    for i, path in enumerate(packs):
        os.utime(path, (old, old) if i % 2 else (young, young))
    filer.dump(shared + b"tail", "b", push=True)  # every pack holds chunks b reuses
    for i, path in enumerate(packs):  # the old ones renewed, the young ones left alone
        assert path.stat().st_mtime > old + 3600 if i % 2 else path.stat().st_mtime == young


@pytest.mark.parametrize("repair", ["push", "same bytes"])
def test_a_pack_cut_short_on_the_remote_is_not_reused_but_replaced(tmp_path, target, repair):
    producer = target.filer(tmp_path / "producer")
    payload = os.urandom(10 * MB)
    producer.dump(payload, "a", push=True)
    pack = next(k for k in _stored(target) if k.startswith(".model_filer/packs/"))
    _forge(target, tmp_path, pack, b"\x00")  # a header alone: holds no chunk
    fix = "run `model-filer push a`: it stores the model's chunks again, in a pack of the same"
    with pytest.raises(IntegrityError, match=re.escape(fix)):
        target.filer(_consumer(tmp_path, producer, "early")).load("a")

    if repair == "push":
        producer.push("a")  # what the message says
    else:
        producer.dump(payload, "b", push=True)  # the same bytes: the listing shows it short
        assert _stored(target)[pack] > 1  # so its chunks were packed again: the same pack

    assert target.filer(_consumer(tmp_path, producer)).load("a") == payload


def test_a_small_model_under_two_names_is_stored_once(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    producer.dump(b"", "empty", push=True)
    before = _stored(target)
    producer.dump(b"", "again", push=True)
    assert _stored(target) == before
    assert target.filer(_consumer(tmp_path, producer)).load("empty") == b""


def test_a_whole_model_of_a_mib_or_more_already_there_is_not_sent_again(
    tmp_path, target, monkeypatch
):
    """From LOOKUP_FROM up, its bytes cost more than a lookup: one is made first (below it, a
    new model, the usual case, goes straight up: test_contract's one request each)."""
    from model_filer.transfer.chunked import LOOKUP_FROM

    point = _networked(target, monkeypatch)
    payload = os.urandom(LOOKUP_FROM * 2)
    filer = target.filer(tmp_path / "m")
    filer.dump(payload, "a", push=True)
    filer.dump(payload, "b")
    with FaultProxy(str(target.endpoint), lifetime=120) as proxy:
        point(proxy.url)
        target.filer(tmp_path / "m").push("b")
    assert proxy.bytes_up < LOOKUP_FROM // 8  # requests, no model bytes


def test_a_model_pushed_by_an_earlier_release_loads_and_is_repaired_as_a_map(
    tmp_path, target, monkeypatch
):
    from tests.support.gitrepo import registry_bytes

    chunking.small_chunks(monkeypatch)
    producer = target.filer(tmp_path / "producer")
    producer.dump(os.urandom(MB), "old")
    (entry,) = producer.list_files()
    pickled = producer.model_path("old").read_bytes()
    remote = target.remote()
    key = chunking.push_format1(remote, pickled)
    old = entry._replace(state="synced", key=key)  # as the earlier release recorded it
    producer.registry_path.write_bytes(registry_bytes(target.remote_type, remote.address, old))
    assert b"format: 3\n" in producer.registry_path.read_bytes()
    assert target.filer(_consumer(tmp_path, producer)).load("old") == producer.load("old")

    lost = next(k for k in _stored(target) if k.startswith(".model_filer/chunks/"))
    _forge(target, tmp_path, lost, b"\x00" * MB)  # longer than any stored chunk may be
    fix = f"({remote.url(lost)} is then no longer read). It stores it in today's format"
    with pytest.raises(IntegrityError, match=re.escape(fix)):
        target.filer(_consumer(tmp_path, producer, "early")).load("old")
    producer = target.filer(producer.local_dir)
    producer.push("old")  # what check-remote-models advises: it goes up as a map

    (entry,) = producer.list_files()
    assert entry.state == "synced" and entry.key == storage_key("maps", entry.sha256)
    assert b"format: 4\n" in producer.registry_path.read_bytes()  # to commit
    consumer = target.filer(_consumer(tmp_path, producer, "second"))
    assert consumer.load("old") == producer.load("old")


def test_a_pack_gone_from_the_remote_says_which_push_puts_it_back(tmp_path, target):
    from model_filer.errors import RemoteObjectMissingError

    producer = target.filer(tmp_path / "producer")
    payload = os.urandom(10 * MB)
    producer.dump(payload, "big", push=True)
    lost = next(k for k in _stored(target) if k.startswith(".model_filer/packs/"))
    target.remote().delete(lost)
    consumer = target.filer(_consumer(tmp_path, producer))

    with pytest.raises(RemoteObjectMissingError) as caught:
        consumer.load("big")
    said = str(caught.value)
    assert said.startswith("Model 'big': ") and lost in said
    assert "`model-filer push big`" in said and "Dump" not in said

    producer.push("big")  # what it says: synced, but checked on the remote, so pushed again
    assert lost in _stored(target)  # (the same chunks: the same pack)
    assert consumer.load("big") == payload


def test_a_push_replaces_a_damaged_map_of_the_same_length(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    payload = os.urandom(10 * MB)
    producer.dump(payload, "big", push=True)
    (entry,) = producer.list_files()
    remote = target.remote()
    damaged = b"[" + chunking.read(remote, entry.key)[1:]  # its key names the model, not it
    _forge(target, tmp_path, entry.key, damaged)
    consumer = target.filer(_consumer(tmp_path, producer))
    with pytest.raises(IntegrityError, match="not JSON"):
        consumer.load("big")

    producer.push("big")  # what the message says: the map goes up again, whatever its length

    assert chunking.read(remote, entry.key) != damaged
    assert consumer.load("big") == payload


PUSH_WATCHED = """
import json, os, random, sys
import model_filer.storage.chunks as chunks
import model_filer.transfer.chunked as chunked
from model_filer import Filer, ModelFilerError

chunked.SMALL_MAX, chunked.PACK_TARGET = 128 * 1024, 512 * 1024  # several packs of a few MiB
chunks.MIN_AVG, chunks.MAX_AVG = 32 * 1024, 64 * 1024
folder, remote, kind, change = sys.argv[1:5]
plain = change == "swap" or change.startswith("plain")
change = change.removeprefix("plain-")
filer = Filer(folder, remote, "local", storage="plain" if plain else "chunked")
if kind == "random":
    data = random.Random(7).randbytes(3 * 1024 * 1024)
elif kind == "small":  # stored whole
    data = random.Random(7).randbytes(64 * 1024)
else:  # compressible in every chunk
    data = b"".join(i.to_bytes(4, "little") for i in range(768 * 1024))
filer.dump(data, "m")
model = os.path.join(folder, "m.pkl")
made, changed = [], []

def watch(event, args):
    if event == "os.utime" and change == "touch" and "/packs/" in str(args[0]) and not changed:
        changed.append(1)  # a pack already there is renewed: the model is touched meanwhile
        os.utime(model, ns=(1, 1))
    if event == "os.listdir" and change == "swap" and str(args[0]).endswith("remote/m"):
        if not changed:  # the remote's folder is being readied: after the check, before the copy
            changed.append(1)
            with open(model + ".new", "wb") as fh:
                fh.write(b"other bytes")
            os.replace(model + ".new", model)
    if event != "open" or not isinstance(args[0], str) or not isinstance(args[2], int):
        return
    if args[2] & os.O_CREAT:
        made.append(os.path.basename(args[0]))
    if change == "touch" and "/packs/" in args[0] and not changed:
        changed.append(1)  # a new pack goes up: the model is touched meanwhile
        os.utime(model, ns=(1, 1))
    sending = "/packs/" in args[0] or (plain and "upload.tmp" in args[0])
    sending = sending or (kind == "small" and "remote-id" in args[0])  # before it is read
    if change.startswith(("change", "truncate")) and sending and not changed:
        changed.append(1)  # another program writes the model while its first pack goes up
        before = os.stat(model)
        os.chmod(model, 0o644)
        if change == "truncate":
            os.truncate(model, 1000)
        fd = os.open(model, os.O_WRONLY)
        os.pwrite(fd, b"X", len(data) - 1000 if change == "change-late" else 1000)
        os.close(fd)
        if change == "change-restore":  # the mtime set back: only the ctime tells
            os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))

sys.addaudithook(watch)
if change == "fail":  # the remote cannot take packs: a file where their folder goes
    os.makedirs(os.path.join(remote, ".model_filer"), exist_ok=True)
    open(os.path.join(remote, ".model_filer", "packs"), "wb").close()
try:
    filer.push("m")
    error = ""
except ModelFilerError as exc:
    error = str(exc)
sys.addaudithook(lambda *a: None)
tmp = os.path.join(folder, ".model_filer", "tmp")
left = [n for n in os.listdir(tmp) if ".pack." in n] if os.path.isdir(tmp) else []
state = filer.list_files()[0].state
print(json.dumps({"made": made, "error": error, "state": state, "left": left}))
"""


def _watched_push(
    tmp_path: Path, kind: str, change: str = "", folder: str = "m"
) -> dict[str, object]:
    """Dump a model in ``tmp_path/folder`` (a machine of its own) and push it to the folder
    remote ``tmp_path/remote``, ``change`` happening on the way; say what happened."""
    import json
    import subprocess
    import sys

    remote = tmp_path / "remote"
    remote.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", PUSH_WATCHED, str(tmp_path / folder), str(remote), kind, change],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MODEL_FILER_CACHE_DIR": str(tmp_path / f"store-{folder}")},
    ).stdout
    result: dict[str, object] = json.loads(out)
    packs = remote / ".model_filer" / "packs"
    result["packs"] = sorted(packs.glob("*")) if packs.is_dir() else []
    result["maps"] = sorted((remote / ".model_filer" / "maps").glob("*"))
    return result


def test_a_pack_closes_before_the_chunk_that_would_take_it_past_its_target(
    tmp_path, target, monkeypatch
):
    """Packs of at most PACK_TARGET bytes, so each is whole parts of an upload (at 64 MiB,
    eight of 8 MiB): closing after the chunk that passed it made a sliver of a part each."""
    chunking.small_chunks(monkeypatch, pack_target=512 * 1024)
    filer = target.filer(tmp_path / "m")
    filer.dump(np.random.default_rng(3).bytes(3 * MB), "m", push=True)
    packs = sorted(
        size for key, size in _stored(target).items() if key.startswith(".model_filer/packs/")
    )
    biggest = 4 * 64 * 1024 + 1  # FastCDC's largest chunk at this average, and its header
    assert len(packs) >= 6 and packs[-1] <= 512 * 1024
    assert all(size > 512 * 1024 - biggest for size in packs[1:])  # (one may be the last)


def test_a_push_of_incompressible_chunks_writes_no_pack_file(tmp_path):
    """A raw chunk goes up read from the model's own file: a GiB pushed is not a GiB
    written to disk first. Compressed chunks wait in a spill file, smaller than the chunks."""
    raw = _watched_push(tmp_path / "raw", "random")
    assert not [n for n in raw["made"] if ".pack." in n], raw["made"]  # type: ignore[union-attr]
    assert len(raw["packs"]) >= 3 and raw["state"] == "synced"  # type: ignore[arg-type]
    packed = _watched_push(tmp_path / "packed", "compressible")
    assert [n for n in packed["made"] if ".pack." in n]  # type: ignore[union-attr]
    assert packed["state"] == "synced"
    assert not list((tmp_path / "packed" / "m" / ".model_filer" / "tmp").glob("*.pack.*"))


def test_a_push_whose_pack_uploads_fail_leaves_no_spill_file(tmp_path):
    """Compressed chunks wait in a spill file per pack; when an upload fails, the packs not
    yet up (the one being filled, the one waiting for a slot) drop theirs too."""
    result = _watched_push(tmp_path, "compressible", "fail")
    assert result["error"] and result["state"] == "local", result
    assert [n for n in result["made"] if ".pack." in n]  # type: ignore[union-attr]
    assert result["left"] == []


def test_a_model_only_touched_while_its_packs_go_up_is_pushed(tmp_path):
    """A moved mtime with the same bytes (touch, rsync -t, the store re-sealing an object)
    makes the push read its packs back; they hold what their names say, so they stay."""
    result = _watched_push(tmp_path, "random", "touch")
    assert result["error"] == "" and result["state"] == "synced", result
    assert result["packs"] and result["maps"]


def test_a_touched_push_never_deletes_a_pack_another_push_relies_on(tmp_path):
    """Packs are named by what they hold, so another machine's push of the same model finds
    them there and renews them. A touch of its file meanwhile must not delete them."""
    first = _watched_push(tmp_path, "random", folder="first")
    again = _watched_push(tmp_path, "random", "touch", folder="second")
    assert again["error"] == "" and again["state"] == "synced", again
    assert again["packs"] == first["packs"] and first["packs"]


@pytest.mark.parametrize(
    "change",
    ["change", "change-late", "change-restore", "truncate", "plain-change", "plain-truncate"],
)
def test_a_model_changed_while_it_is_pushed_fails_and_leaves_no_pack_of_other_bytes(
    tmp_path, monkeypatch, change
):
    """Packs read the model's file as they are sent, after it was cut: a write meanwhile
    (in bytes already cut or not yet, with its mtime set back, or cutting the file short)
    must fail the push and not leave a pack of other bytes under a name that says which
    chunks it holds (a later push of the model would reuse it), nor a synced entry."""
    import random
    import shutil

    from model_filer import Filer

    result = _watched_push(tmp_path, "random", change)
    assert "changed on disk while it was pushed" in str(result["error"]), result
    assert "Push it again" in str(result["error"])
    assert result["state"] == "local" and result["maps"] == []
    # Another machine pushes the model's true bytes, reusing what is there; a third loads it.
    layout = "plain" if change.startswith("plain") else ""
    clean = _watched_push(tmp_path, "random", layout, folder="clean")
    assert clean["state"] == "synced"
    reader = tmp_path / "reader"
    reader.mkdir()
    shutil.copy(tmp_path / "clean" / ".local_registry", reader)
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / "reader-store"))
    loaded = Filer(reader, str(tmp_path / "remote"), "local").load("m")
    assert loaded == random.Random(7).randbytes(3 * 1024 * 1024)  # noqa: S311 - test data


def test_a_small_model_changed_before_it_is_read_is_not_pushed(tmp_path):
    """A small model goes up whole from memory: its bytes are hashed there first."""
    result = _watched_push(tmp_path, "small", "change")
    assert "changed on disk while it was pushed" in str(result["error"]), result
    assert result["state"] == "local"
    assert not list((tmp_path / "remote" / ".model_filer").glob("objects/*"))


def test_a_plain_push_sends_the_file_it_verified_not_what_its_path_names_later(tmp_path):
    """The plain layout uploads the open file whose stat was checked: a file renamed over
    the model's path meanwhile is not what goes up under the model's sha256."""
    import hashlib

    result = _watched_push(tmp_path, "random", "swap")
    assert result["error"] == "" and result["state"] == "synced", result
    (stored,) = (tmp_path / "remote" / "m").glob("*.pkl")
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.stem
