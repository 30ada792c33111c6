"""The chunked layout's pieces without a remote: keys, stored objects, manifests, cuts."""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
import zstandard

from model_filer import IntegrityError
from model_filer.registry.names import is_object_key, key_sha256
from model_filer.storage import (
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    Chunk,
    encode_manifest,
    is_storage_key,
    parse_manifest,
    storage_key,
    storage_key_kind,
)
from model_filer.storage.chunks import MAX_AVG, MIN_AVG, average_chunk, cut
from model_filer.storage.manifest import (
    MAX_MANIFEST_BYTES,
    encode_places,
    fits,
    needs,
    parse_places,
)
from model_filer.storage.packs import range_limit, spans
from model_filer.storage.stored import (
    LEVEL,
    PROBE,
    PROBED_FROM,
    SMALL_LEVEL,
    SMALL_MODEL,
    decode,
    encode,
    level_for,
)

SHA = "ab" * 32
MiB = 1024 * 1024


# -- keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["objects", "maps", "packs", "manifests", "chunks"])
def test_storage_keys_have_their_kind_and_never_the_old_form(kind):
    key = storage_key(kind, SHA)
    assert key == f".model_filer/{kind}/{SHA}"
    assert storage_key_kind(key) == kind and is_storage_key(key)
    assert not is_object_key(key) and not key.endswith(".pkl")  # an older gc leaves it alone


def test_a_registry_key_names_a_model_but_a_chunk_key_does_not():
    assert key_sha256(storage_key("objects", SHA)) == SHA
    assert key_sha256(storage_key("maps", SHA)) == SHA
    assert key_sha256(storage_key("manifests", SHA)) == SHA
    assert key_sha256(storage_key("chunks", SHA)) is None  # never an entry's key
    assert key_sha256(storage_key("packs", SHA)) is None
    assert key_sha256(f"m/{SHA}.pkl") == SHA  # today's form still named


@pytest.mark.parametrize(
    "key",
    [
        f"chunks/{SHA}.pkl",
        f".model_filer/objects/{SHA}.pkl",
        f".model_filer/blobs/{SHA}",
        f".model_filer/objects/{SHA[:-1]}",
        f"x/.model_filer/objects/{SHA}",
        f".model_filer/chunks/{SHA.upper()}",
        f".model_filer/manifests/{SHA[:-1]}g",
        f".model_filer/objects/0{SHA}",
        f".model_filer/packs/{SHA}.pkl",
        f"packs/{SHA}.pkl",
    ],
)
def test_other_keys_are_not_storage_keys(key):
    assert storage_key_kind(key) is None


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="not a storage kind"):
        storage_key("blobs", SHA)


# -- stored objects --------------------------------------------------------------------------
def _joined(parts):
    return b"".join(bytes(p) for p in parts)


def test_compressible_bytes_are_stored_compressed_and_come_back():
    data = b"tree node " * 50_000
    stored = _joined(encode(data))
    assert stored[0] == 1 and len(stored) < len(data) // 10
    assert bytes(decode(stored, len(data), "x")) == data


def test_a_model_up_to_32_mib_is_compressed_harder_and_still_reads_back():
    """Its pulls gain the bytes (level 6: 8.5% fewer for a RandomForest); a bigger model keeps
    zstd's default, whose push costs a third of the CPU per GiB."""
    assert level_for(SMALL_MODEL) == SMALL_LEVEL > LEVEL == level_for(SMALL_MODEL + 1)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 40, 400_000).astype(np.float64).tobytes()  # tree-like values
    harder, default = _joined(encode(data, SMALL_LEVEL)), _joined(encode(data, LEVEL))
    assert harder[0] == default[0] == 1 and len(harder) < len(default)
    assert bytes(decode(harder, len(data), "x")) == data


def test_bytes_that_compress_less_than_ten_percent_are_stored_raw():
    data = os.urandom(100_000)
    stored = _joined(encode(data))
    assert stored == b"\x00" + data
    assert bytes(decode(stored, len(data), "x")) == data


def test_a_big_chunk_is_tried_whole_only_when_samples_of_it_compress():
    # Three samples (start, middle, end) decide whether a chunk is worth a full zstd trial:
    # float weights cost a twentieth of one. A chunk compressible only between the samples
    # is stored raw: a missed saving, never a wrong byte.
    size = PROBED_FROM * 4
    data = bytearray(b"tree node " * (size // 10 + 1))[:size]
    assert _joined(encode(data))[0] == 1
    middle = (size - PROBE) // 2
    for at in (0, middle, size - PROBE):
        data[at : at + PROBE] = os.urandom(PROBE)
    stored = _joined(encode(data))
    assert stored == b"\x00" + bytes(data)
    assert bytes(decode(stored, size, "x")) == data
    # The bound: just below PROBED_FROM random samples are tried whole; at it, probed, raw.
    for n, kind in ((PROBED_FROM - 1, 1), (PROBED_FROM, 0)):
        sampled = bytearray(b"tree node " * (n // 10 + 1))[:n]
        for at in (0, (n - PROBE) // 2, n - PROBE):
            sampled[at : at + PROBE] = os.urandom(PROBE)
        assert _joined(encode(sampled))[0] == kind


def test_float_weights_are_stored_raw_for_the_cost_of_the_probe_alone(monkeypatch):
    """Float arrays save under 10% (kept raw), and their samples say so: no full trial of
    them, which held a 1 GiB push of uniform float64s at 0.64x upload_file's rate (0.78x
    without)."""
    compressed: list[int] = []
    real = zstandard.ZstdCompressor

    class Counting:
        def __init__(self, **kwargs: object) -> None:
            self._real = real(**kwargs)

        def compress(self, data: object) -> bytes:
            compressed.append(memoryview(data).nbytes)  # type: ignore[arg-type]
            return self._real.compress(data)

    monkeypatch.setattr(zstandard, "ZstdCompressor", Counting)
    rng = np.random.default_rng(0)
    for weights in (rng.random(1 << 17), rng.standard_normal(1 << 18, dtype=np.float32)):
        compressed.clear()
        data = weights.tobytes()  # 1 MiB: uniform float64 saves 6%, normal float32 7.5%
        assert _joined(encode(data)) == b"\x00" + data
        assert compressed == [3 * PROBE]
    compressed.clear()
    data = rng.random(1 << 18, dtype=np.float32).tobytes()  # uniform float32: saves 10.8%
    assert _joined(encode(data))[0] == 1 and compressed == [3 * PROBE, len(data)]


def test_a_zstd_bomb_is_refused_by_its_declared_size_before_decompressing():
    bomb = b"\x01" + zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    with pytest.raises(IntegrityError, match="declares 67108864 bytes, not 5000"):
        decode(bomb, 5000, "chunk")  # (fits the stored-size bound: the frame is 2 KB)


def test_a_frame_without_its_size_is_refused():
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 1000)
    with pytest.raises(IntegrityError, match="declares"):
        decode(b"\x01" + frame, 1000, "chunk")


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "0 stored bytes"),
        (b"\x02abc", "unknown header"),
        (b"\x00ab", "holds 2 bytes"),
        (b"\x00" + b"a" * 5, "stored bytes for 3"),
    ],
)
def test_damaged_stored_objects_are_refused(blob, match):
    with pytest.raises(IntegrityError, match=match):
        decode(blob, 3, "chunk")


def test_a_truncated_frame_is_refused():
    frame = zstandard.ZstdCompressor().compress(b"abc" * 10_000)
    with pytest.raises(IntegrityError, match="damaged"):
        decode(b"\x01" + frame[:-8], 30_000, "chunk")


# -- manifests -------------------------------------------------------------------------------
P1, P2 = "11" * 32, "22" * 32


def test_a_map_is_canonical_json_and_parses_back():
    chunks = [
        Chunk(SHA, 10, P1, 0, 11, 11),
        Chunk("cd" * 32, 5, P2, 7, 4, 20),
        Chunk(SHA, 10, P1, 0, 11, 11),
    ]
    data = encode_manifest("ef" * 32, 25, chunks)
    assert data == (
        b'{"chunks":[["' + SHA.encode() + b'",10,0,0,11],["' + b"cd" * 32 + b'",5,1,7,4],'
        b'["' + SHA.encode() + b'",10,0,0,11]],"format":2,"packs":[["' + P1.encode() + b'",11],'
        b'["' + P2.encode() + b'",20]],"sha256":"' + b"ef" * 32 + b'","size":25}'
    )
    assert parse_manifest(data, "ef" * 32, 25) == chunks
    assert needs(chunks) == {storage_key("packs", P1): (11, 11), storage_key("packs", P2): (20, 20)}
    assert fits((11, 11), 11) and not fits((11, 11), 12) and not fits((11, 11), None)


def test_places_this_machine_keeps_round_trip_and_are_checked_like_a_maps():
    chunks = [Chunk(SHA, 10, P1, 0, 11, 11), Chunk("cd" * 32, 5, P2, 7, 4, 20)]
    assert parse_places(encode_places(chunks)) == chunks
    for bad in (
        b"{",
        b"{}",
        b"[[1]]",
        b'[["' + SHA.encode() + b'",10,"' + P1.encode() + b'",11,5,11]]',
    ):
        with pytest.raises(IntegrityError):  # the last: a chunk past its pack's end
            parse_places(bad)


def test_a_manifest_of_format_1_still_parses():
    # written by the releases before packs: each chunk its own stored object
    chunks = parse_manifest(_doc(format=1), SHA, 10)
    assert chunks == [Chunk(SHA, 10)] and chunks[0].key() == storage_key("chunks", SHA)
    assert needs(chunks) == {storage_key("chunks", SHA): (2, 11)}


def _doc(**changes):
    doc = {"chunks": [[SHA, 10, 0, 0, 11]], "format": 2, "packs": [[P1, 11]], "sha256": SHA}
    doc["size"] = 10
    if changes.get("format") == 1:
        doc = {"chunks": [[SHA, 10]], "format": 1, "sha256": SHA, "size": 10}
    return json.dumps({**doc, **changes}).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"x" * (MAX_MANIFEST_BYTES + 1), "more than"),
        (b"{not json", "not JSON"),
        (_doc(format=3), "not a manifest of format 1 or 2"),
        (_doc(sha256="cd" * 32), "another model"),
        (_doc(size=11, chunks=[[SHA, 11, 0, 0, 12]]), "another model"),
        (_doc(chunks=[[SHA, 4, 0, 0, 5], [SHA, 4, 0, 0, 5]]), "hold 8 bytes, the registry says 10"),
        (_doc(chunks=[["AB" * 32, 10, 0, 0, 11]]), "is not"),
        (_doc(chunks=[[SHA, 0, 0, 0, 1], [SHA, 10, 0, 0, 11]]), "is not"),
        (_doc(chunks=[[SHA, True, 0, 0, 11]]), "is not"),
        (_doc(chunks=[[SHA, MAX_CHUNK_BYTES + 1, 0, 0, 11]]), "is not"),
        (_doc(chunks=[]), "1 to"),
        (_doc(chunks=[[SHA, 1, 0, 0, 2]] * (MAX_CHUNKS + 1)), "1 to"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # deeper than Python's stack
        (_doc(chunks=[[SHA, 10]]), "is not"),  # a format 1 row in a map
        (_doc(chunks=[[SHA, 10, 1, 0, 11]]), "is not"),  # no such pack
        (_doc(chunks=[[SHA, 10, -1, 0, 11]]), "is not"),
        (_doc(chunks=[[SHA, 10, 0, -5, 11]]), "is not"),  # before the pack's start
        (_doc(chunks=[[SHA, 10, 0, 1, 11]]), "is not"),  # past its pack's end
        (_doc(chunks=[[SHA, 10, 0, 0, 12]]), "is not"),  # stored longer than raw + header
        (_doc(chunks=[[SHA, 10, 0, 0, 1]]), "is not"),
        (_doc(chunks=[[SHA, 10, 0.0, 0, 11]]), "is not"),
        (_doc(packs=[]), "packs"),
        (_doc(packs=[["x" * 64, 11]]), "packs"),
        (_doc(packs="11" * 32), "packs"),
        (_doc(packs=[P1]), "packs"),  # no length
        (_doc(packs=[[P1, 0]]), "packs"),
        (_doc(packs=[[P1, 1 << 41]]), "packs"),
        (_doc(format=1, chunks=[[SHA, 10, 0, 0, 11]]), "is not"),  # a map row in format 1
    ],
    ids=[
        "oversize",
        "json",
        "format",
        "sha",
        "size",
        "total",
        "hash",
        "zero",
        "bool",
        "big-chunk",
        "empty",
        "too-many",
        "nested",
        "short-row",
        "pack-index",
        "negative-pack",
        "negative-offset",
        "past-pack",
        "stored-long",
        "stored-short",
        "float-pack",
        "no-packs",
        "bad-pack",
        "packs-not-list",
        "pack-no-length",
        "pack-empty",
        "pack-huge",
        "long-row-v1",
    ],
)
def test_hostile_manifests_are_refused(data, match):
    with pytest.raises(IntegrityError, match=match) as caught:
        parse_manifest(data, SHA, 10)
    assert "Nothing was written" in str(caught.value)


def test_without_a_registry_size_a_manifest_is_held_to_its_own():
    # gc reads manifests no registry entry describes: the size is the manifest's, still
    # checked against its chunks, and a size that is not a number is refused.
    assert parse_manifest(_doc(), SHA, None) == [(SHA, 10, P1, 0, 11, 11)]
    with pytest.raises(IntegrityError, match="hold 8 bytes"):
        parse_manifest(_doc(chunks=[[SHA, 4, 0, 0, 5], [SHA, 4, 0, 0, 5]]), SHA, None)
    with pytest.raises(IntegrityError, match="another model"):
        parse_manifest(_doc(size="10"), SHA, None)


# -- packs -----------------------------------------------------------------------------------
def test_back_to_back_chunks_of_a_pack_are_one_read_up_to_its_bound():
    a, b, c = (Chunk(f"{i}" * 64, 30, P1, 40 * i, 31) for i in range(3))
    far = Chunk("9" * 64, 5, P1, 500, 6)  # a gap before it: its own read
    other = Chunk("8" * 64, 5, P2, 0, 6)
    legacy = Chunk("7" * 64, 5)  # format 1: its own object, read whole
    reads = spans([far, c, a, other, legacy, b], 100)
    got = sorted((r.key[-64:], r.start, r.length, [x.sha256[0] for x in r.chunks]) for r in reads)
    assert got == sorted(
        [
            (P1, 0, 31, ["0"]),  # a..b are not back to back: a is 31 long, b starts at 40
            (P1, 40, 31, ["1"]),
            (P1, 80, 31, ["2"]),
            (P1, 500, 6, ["9"]),
            (P2, 0, 6, ["8"]),
            ("7" * 64, 0, 6, ["7"]),
        ]
    )
    tight = [Chunk(f"{i}" * 64, 30, P1, 31 * i, 31) for i in range(5)]
    assert [len(r.chunks) for r in spans(tight, 100)] == [3, 2]  # 3 x 31 <= 100 < 4 x 31
    assert [(r.start, r.length) for r in spans(tight, 100)] == [(0, 93), (93, 62)]


def test_a_read_is_about_a_128th_of_the_model_within_bounds():
    assert [range_limit(n) for n in (0, 100 * MiB, 1 << 30, 100 << 30)] == [
        1 * MiB,
        1 * MiB,
        8 * MiB,
        16 * MiB,
    ]


# -- cuts ------------------------------------------------------------------------------------
def test_the_average_chunk_grows_with_the_model_within_bounds():
    sizes = [average_chunk(n) for n in (1, 10 << 20, 100 << 20, 1 << 30, 1 << 40)]
    assert sizes == sorted(sizes) and sizes[0] == MIN_AVG and sizes[-1] == MAX_AVG


def test_bytes_shared_by_two_models_give_the_same_chunks():
    shared = os.urandom(6 << 20)
    first = {p.sha256 for p, _ in cut(io.BytesIO(os.urandom(1 << 20) + shared), 7 << 20)}
    reused = 0
    for piece, data in cut(io.BytesIO(os.urandom(3 << 20) + shared), 9 << 20):
        assert hashlib.sha256(data).hexdigest() == piece.sha256 and len(data) == piece.size
        reused += piece.size if piece.sha256 in first else 0
    assert reused >= 5 << 20
