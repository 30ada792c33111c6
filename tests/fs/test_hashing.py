"""Hashing while writing, and the cache of verified hashes keyed by (size, mtime_ns, inode)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from model_filer import Filer
from model_filer.errors import IntegrityError
from model_filer.fs.hashing import CHUNK, HashingWriter, sha256_file
from model_filer.local.freshness import Freshness

MB = 1024 * 1024


def _chunks() -> list[bytes]:
    rng = np.random.default_rng(0)
    sizes = [0, 1, 10, 2 * MB, 5, 3 * MB + 7, MB, MB - 1, MB + 1, 17, 4 * MB, 0, 3]
    return [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in sizes]


def test_hashing_writer_matches_hashlib_on_mixed_small_and_large_writes():
    chunks = _chunks()
    out = io.BytesIO()
    writer = HashingWriter(out)
    for chunk in chunks:
        assert writer.write(chunk) == len(chunk)
    data = b"".join(chunks)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()
    assert writer.size == len(data)
    assert out.getvalue() == data


def test_hashing_writer_accepts_bytearray_memoryview_and_numpy_buffers():
    arr = np.arange(600_000, dtype=np.float64).reshape(1000, 600)  # 4.8 MB, 2-D
    parts = [bytearray(b"head"), memoryview(arr), b"mid", memoryview(arr[0]), bytearray(3 * MB)]
    out = io.BytesIO()
    writer = HashingWriter(out)
    for part in parts:
        writer.write(part)
    data = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()
    assert out.getvalue() == data


def test_hashing_writer_with_pickle_protocol_5_of_a_large_array():
    model = {"weights": np.random.default_rng(1).random(2_000_000), "name": "m"}
    out = io.BytesIO()
    writer = HashingWriter(out)
    pickle.Pickler(writer, protocol=5).dump(model)
    assert writer.hexdigest() == hashlib.sha256(out.getvalue()).hexdigest()
    loaded = pickle.loads(out.getvalue())
    assert np.array_equal(loaded["weights"], model["weights"])


def test_a_big_buffer_reaches_the_file_in_slices_hashed_in_step():
    """Slices, not one write: the hash thread reads each one while it is in the cache, and
    the slices are views of the caller's buffer (no copy of a big model)."""
    data = np.random.default_rng(2).integers(0, 256, size=5 * MB + 3, dtype=np.uint8)

    class Sink(io.BytesIO):
        sizes: ClassVar[list[int]] = []
        copies = 0

        def write(self, b):  # type: ignore[override]
            view = memoryview(b)
            self.sizes.append(view.nbytes)
            self.copies += not isinstance(b, memoryview) or view.obj is not data
            return super().write(view)

    out = Sink()
    writer = HashingWriter(out)
    writer.write(data)
    assert writer.hexdigest() == hashlib.sha256(data.tobytes()).hexdigest()
    assert out.getvalue() == data.tobytes()
    assert out.sizes == [MB] * 5 + [3]
    assert out.copies == 0


def test_hexdigest_with_no_writes_is_the_empty_hash():
    assert HashingWriter(io.BytesIO()).hexdigest() == hashlib.sha256(b"").hexdigest()


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(CHUNK + 123)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


# -- Freshness --------------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(b"A" * 1000)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lookup_hits_after_record_and_after_save_in_a_new_instance(tmp_path, model_file):
    cache = Freshness(tmp_path)
    assert cache.lookup(model_file) is None
    cache.record(model_file, sha(b"A" * 1000))
    assert cache.lookup(model_file) == sha(b"A" * 1000)
    cache.save()
    assert Freshness(tmp_path).lookup(model_file) == sha(b"A" * 1000)


def test_sha256_hashes_once_then_trusts_the_cache(tmp_path, model_file):
    cache = Freshness(tmp_path)
    assert cache.sha256(model_file) == sha(b"A" * 1000)
    cache.save()
    fresh = Freshness(tmp_path)
    assert fresh.lookup(model_file) == sha(b"A" * 1000)  # no re-hash needed


def test_same_size_replacement_with_other_bytes_misses(tmp_path, model_file):
    """A branch switch swaps in other bytes of the same size: a new inode."""
    cache = Freshness(tmp_path)
    cache.record(model_file, sha(b"A" * 1000))
    cache.save()
    replacement = tmp_path / "new"
    replacement.write_bytes(b"B" * 1000)
    st = model_file.stat()
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the same mtime
    os.replace(replacement, model_file)
    fresh = Freshness(tmp_path)
    assert fresh.lookup(model_file) is None
    assert fresh.sha256(model_file) == sha(b"B" * 1000)


def test_same_size_rewrite_in_place_with_a_new_mtime_misses(tmp_path, model_file):
    cache = Freshness(tmp_path)
    cache.record(model_file, sha(b"A" * 1000))
    st = model_file.stat()
    with open(model_file, "r+b") as fh:
        fh.write(b"C" * 1000)
    os.utime(model_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert model_file.stat().st_ino == st.st_ino
    assert cache.lookup(model_file) is None
    assert cache.sha256(model_file) == sha(b"C" * 1000)


def test_lookup_of_a_missing_file_misses(tmp_path, model_file):
    cache = Freshness(tmp_path)
    cache.record(model_file, sha(b"A" * 1000))
    model_file.unlink()
    assert cache.lookup(model_file) is None
    assert cache.sha256(model_file) is None


def test_forget_drops_the_entry_on_disk_too(tmp_path, model_file):
    cache = Freshness(tmp_path)
    cache.record(model_file, sha(b"A" * 1000))
    cache.save()
    cache.forget(model_file)
    assert cache.lookup(model_file) is None
    cache.save()
    assert Freshness(tmp_path).lookup(model_file) is None


def test_save_merges_updates_of_concurrent_instances(tmp_path):
    paths = {}
    for name in ("a", "b", "c"):
        paths[name] = tmp_path / f"{name}.pkl"
        paths[name].write_bytes(name.encode() * 10)
    seed = Freshness(tmp_path)
    seed.record(paths["c"], sha(b"c" * 10))
    seed.save()

    one, two = Freshness(tmp_path), Freshness(tmp_path)  # both read the same state
    one.record(paths["a"], sha(b"a" * 10))
    two.record(paths["b"], sha(b"b" * 10))
    two.forget(paths["c"])
    one.save()
    two.save()

    merged = Freshness(tmp_path)
    assert merged.lookup(paths["a"]) == sha(b"a" * 10)
    assert merged.lookup(paths["b"]) == sha(b"b" * 10)
    assert merged.lookup(paths["c"]) is None


def test_a_corrupt_cache_file_is_treated_as_empty(tmp_path, model_file):
    (tmp_path / ".model_filer").mkdir()
    (tmp_path / ".model_filer" / Freshness.FILENAME).write_bytes(b"{not json")
    cache = Freshness(tmp_path)
    assert cache.lookup(model_file) is None
    assert cache.sha256(model_file) == sha(b"A" * 1000)
    cache.save()
    assert Freshness(tmp_path).lookup(model_file) == sha(b"A" * 1000)


def test_save_without_updates_writes_nothing(tmp_path):
    Freshness(tmp_path).save()
    assert not (tmp_path / ".model_filer").exists()


def test_a_failed_pickling_leaves_no_hashing_thread_behind():
    """The thread would otherwise wait forever, holding the model's buffers."""
    import threading

    from model_filer.errors import SerializationError
    from model_filer.pickles import serializers

    before = threading.active_count()
    for _ in range(3):
        with pytest.raises(SerializationError):
            serializers.dump([np.ones(1 << 20), lambda: 1], io.BytesIO())
    assert threading.active_count() == before


def test_serializers_dump_returns_the_sha_and_size_of_the_bytes_written():
    from model_filer.pickles import serializers

    out = io.BytesIO()
    sha256, size = serializers.dump({"a": np.ones(1 << 20)}, out)
    assert sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    assert size == len(out.getvalue())


def test_a_same_size_tamper_with_the_mtime_restored_is_caught(tmp_path: Path, remote: Path) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump(b"a" * 1000, "m")
    assert filer.load("m") == b"a" * 1000
    path = filer.model_path("m")
    before = os.stat(path)
    time.sleep(0.05)  # ctime ticks at the kernel's clock granularity
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the pickled bytes object: same size, still unpickles
    with open(path, "r+b") as fh:  # same inode
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert Freshness(filer.local_dir).lookup(path) is None
    with pytest.raises(IntegrityError, match="changed after dump"):
        filer.load("m")
