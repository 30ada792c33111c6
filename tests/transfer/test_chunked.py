"""The chunked layout end to end, on every remote type (the contract's targets).

Bytes moved are counted by the contract's proxy (the remote types with a server) and bytes
stored by listing the remote, so "only what the remote lacks" is measured, not assumed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from model_filer import IntegrityError, InvalidNameError
from model_filer.registry.names import object_key
from model_filer.storage import REFRESH_AFTER, encode_manifest, parse_manifest, storage_key
from model_filer.storage.stored import encode
from tests.remotes.test_contract import TARGETS, FaultProxy, Target, _consumer, _networked

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
    assert entries["big"].key == storage_key("manifests", entries["big"].sha256)
    stored = _stored(target)
    assert stored[entries["small"].key] < entries["small"].size / 10  # compressed
    assert b"format: 3\n" in producer.registry_path.read_bytes()

    consumer = target.filer(_consumer(tmp_path, producer))
    assert consumer.load("small") == small and consumer.load("big") == big


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
    assert _stored(target) == before  # same sha256: the same manifest and chunks


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
    with pytest.raises(InvalidNameError, match="storage='zip' is not a layout: pass 'chunked'"):
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


@pytest.mark.parametrize("attack", ["oversize", "wrong-total", "bad-hash", "too-many", "bomb"])
def test_a_hostile_manifest_is_refused_before_anything_is_written(tmp_path, target, attack):
    producer = target.filer(tmp_path / "producer")
    producer.dump(os.urandom(10 * MB), "big", push=True)
    entry = producer.list_files()[0]
    sha, size = entry.sha256, entry.size
    chunk = "ab" * 32
    forged = {
        "oversize": b" " * (16 * MB + 1),
        "wrong-total": encode_manifest(sha, size, [(chunk, size - 1)]),  # type: ignore[list-item]
        "bad-hash": encode_manifest(sha, size, [("XY" * 32, size)]),  # type: ignore[list-item]
        "too-many": encode_manifest(sha, size, [(chunk, 1)] * 200_001),  # type: ignore[list-item]
        "bomb": encode_manifest(sha, size, [(chunk, size)]),  # type: ignore[list-item]
    }[attack]
    if attack == "bomb":  # a valid manifest naming a chunk that inflates beyond its size
        import zstandard

        bomb = b"\x01" + zstandard.ZstdCompressor().compress(b"\0" * (size * 4))
        _forge(target, tmp_path, storage_key("chunks", chunk), bomb)
    _forge(target, tmp_path, entry.key, forged)
    folder = _consumer(tmp_path, producer)
    with pytest.raises(IntegrityError, match="Ask the model's author to push it again"):
        target.filer(folder).load("big")
    _nothing_written(folder, Path(os.environ["MODEL_FILER_CACHE_DIR"]))


def test_a_chunk_whose_bytes_do_not_match_its_hash_is_refused(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    producer.dump(os.urandom(10 * MB), "big", push=True)
    entry = producer.list_files()[0]
    remote = target.remote()
    manifest = bytearray()

    class Sink:
        def write(self, data):
            manifest.extend(data)
            return len(data)

        def seekable(self):
            return False

    remote.download(entry.key, Sink(), None)
    first = parse_manifest(bytes(manifest), entry.sha256, entry.size)[0]
    other = b"".join(bytes(p) for p in encode(os.urandom(first.size)))
    _forge(target, tmp_path, storage_key("chunks", first.sha256), other)
    folder = _consumer(tmp_path, producer)
    with pytest.raises(IntegrityError, match="does not hold the bytes its name says"):
        target.filer(folder).load("big")
    assert not (folder / "big.pkl").exists()


def test_a_push_refreshes_a_reused_chunk_that_gc_could_soon_collect(tmp_path, target):
    if target.endpoint is not None:
        pytest.skip("only a folder lets a test make an object old (touch itself: i21gc's tests)")
    filer = target.filer(tmp_path / "m")
    shared = os.urandom(12 * MB)
    filer.dump(shared, "a", push=True)
    root = Path(target.address)
    old = (datetime.now(UTC) - REFRESH_AFTER - timedelta(days=1)).timestamp()
    chunks = list((root / ".model_filer" / "chunks").iterdir())
    for path in chunks:
        os.utime(path, (old, old))
    filer.dump(shared + b"tail", "b", push=True)  # all but the first and last chunks reused
    assert sum(p.stat().st_mtime > old + 3600 for p in chunks) >= len(chunks) - 2


def test_a_push_of_a_synced_model_restores_a_chunk_the_remote_lost(tmp_path, target):
    filer = target.filer(tmp_path / "m")
    payload = os.urandom(10 * MB)
    filer.dump(payload, "big", push=True)
    lost = next(k for k in _stored(target) if k.startswith(".model_filer/chunks/"))
    target.remote().delete(lost)
    filer.push("big")  # synced, but not all on the remote: checked there, so pushed again
    assert lost in _stored(target)
    assert target.filer(_consumer(tmp_path, filer)).load("big") == payload


def test_a_stored_chunk_cut_short_on_the_remote_is_replaced_before_synced(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    payload = os.urandom(10 * MB)
    producer.dump(payload, "a", push=True)
    chunk = next(k for k in _stored(target) if k.startswith(".model_filer/chunks/"))
    _forge(target, tmp_path, chunk, b"\x00")  # a header alone: holds no chunk
    producer.dump(payload, "b", push=True)  # the same bytes: every chunk checked again
    assert _stored(target)[chunk] > 1
    assert target.filer(_consumer(tmp_path, producer)).load("a") == payload


def test_a_small_model_under_two_names_is_stored_once(tmp_path, target):
    producer = target.filer(tmp_path / "producer")
    producer.dump(b"", "empty", push=True)
    before = _stored(target)
    producer.dump(b"", "again", push=True)
    assert _stored(target) == before
    assert target.filer(_consumer(tmp_path, producer)).load("empty") == b""
