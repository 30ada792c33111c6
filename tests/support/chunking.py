"""Chunked storage in tests: thresholds small enough for models of a few MiB, and checks that
what a remote holds is whole and that every ``synced`` entry's bytes are all there."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from model_filer.registry.model import Entry
from model_filer.registry.names import MANIFEST_KINDS
from model_filer.remotes import Remote
from model_filer.storage import parse_manifest, storage_key, storage_key_kind
from model_filer.storage.chunks import cut
from model_filer.storage.manifest import Chunk, fits, needs
from model_filer.storage.stored import RAW, ZSTD, decode, encode

KiB = 1024


def small_chunks(
    monkeypatch: pytest.MonkeyPatch,
    small_max: int = 128 * KiB,
    min_avg: int = 32 * KiB,
    max_avg: int = 64 * KiB,
    pack_target: int = 512 * KiB,
    range_max: int = 256 * KiB,
) -> None:
    """Cut models above ``small_max`` bytes into chunks of ``min_avg``..``max_avg`` on average
    and pack them ``pack_target`` a pack, read back ``range_max`` a GET at most (in this
    process and the children it forks), so a model of a few MiB has dozens of chunks in
    several packs."""
    import model_filer.storage.chunks as chunks
    import model_filer.storage.packs as packs
    import model_filer.transfer.chunked as chunked

    monkeypatch.setattr(chunked, "SMALL_MAX", small_max)
    monkeypatch.setattr(chunked, "PACK_TARGET", pack_target)
    monkeypatch.setattr(packs, "RANGE_MAX", range_max)
    monkeypatch.setattr(chunks, "MIN_AVG", min_avg)
    monkeypatch.setattr(chunks, "MAX_AVG", max_avg)


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: Any) -> int:
        self.data += bytes(data)
        return len(data)

    def seekable(self) -> bool:
        return False


def read(remote: Remote, key: str) -> bytes:
    """The bytes of the object ``key`` on ``remote``, whole."""
    sink = _Sink()
    remote.download(key, sink, None)
    return bytes(sink.data)


def stored_bytes(remote: Remote, key: str) -> bytes:
    """What the stored object (whole object or chunk) ``key`` holds, decoded and checked
    against the sha256 its key names."""
    blob = read(remote, key)
    assert blob[:1] in (bytes([RAW]), bytes([ZSTD])), f"{key}: unknown header {blob[:1]!r}"
    if blob[0] == RAW:
        size = len(blob) - 1
    else:
        import zstandard

        size = zstandard.frame_content_size(blob[1:])
    data = bytes(decode(blob, size, key))
    assert hashlib.sha256(data).hexdigest() == key[-64:], f"{key} holds other bytes"
    return data


def _chunk_bytes(remote: Remote, chunk: Chunk, blobs: dict[str, bytes]) -> bytes:
    """One chunk's raw bytes, from its own stored object (format 1) or its pack (``blobs``
    caches whole objects read), checked against its sha256."""
    if chunk.pack is None:
        return stored_bytes(remote, chunk.key())
    key = chunk.key()
    if key not in blobs:
        blobs[key] = read(remote, key)
    stored = blobs[key][chunk.offset : chunk.offset + chunk.stored]
    data = bytes(decode(stored, chunk.size, key))
    assert hashlib.sha256(data).hexdigest() == chunk.sha256, f"{key}: a chunk is not its bytes"
    return data


def _chunks(remote: Remote, key: str, sha256: str | None = None) -> list[Chunk]:
    data = read(remote, key)
    return parse_manifest(data, sha256 or key[-64:], json.loads(data)["size"])


def check_remote_whole(remote: Remote) -> dict[str, int]:
    """Every object of the chunked layout on ``remote`` is whole: a stored object's bytes
    hash to its name, a map or manifest parses and names only packs or chunks that are there,
    at their length, each chunk where it says. Returns how many objects of each kind there
    are."""
    listed = {o.key: o.size for o in remote.list_objects("")}
    kinds: dict[str, int] = {}
    for key in sorted(listed):
        kind = storage_key_kind(key)
        if kind is None:
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("objects", "chunks"):
            stored_bytes(remote, key)
        elif kind in MANIFEST_KINDS:  # (a pack is checked chunk by chunk, through its maps)
            chunks = _chunks(remote, key)
            for need, sizes in needs(chunks).items():
                assert fits(sizes, listed.get(need)), f"{key} names a lost {need}"
            blobs: dict[str, bytes] = {}
            for chunk in {c.sha256: c for c in chunks}.values():
                _chunk_bytes(remote, chunk, blobs)
    return kinds


def check_synced_present(remote: Remote, entries: dict[str, Entry]) -> None:
    """Every ``synced`` entry's bytes are all on ``remote``: its whole object, or its map
    (manifest) and every pack (chunk) it names (read and checked, never assumed)."""
    listed = {o.key: o.size for o in remote.list_objects("")}
    for name, entry in entries.items():
        if entry.state != "synced":
            continue
        key = entry.key or ""
        assert key in listed, f"{name} says synced but {key} is missing"
        if storage_key_kind(key) in MANIFEST_KINDS:
            for need, sizes in needs(_chunks(remote, key, entry.sha256)).items():
                assert fits(sizes, listed.get(need)), f"{name}: {need} missing or cut short"
        elif storage_key_kind(key) == "objects":
            assert hashlib.sha256(stored_bytes(remote, key)).hexdigest() == entry.sha256


def model_bytes(remote: Remote, key: str) -> bytes | None:
    """The model the registry key ``key`` names, as ``remote`` holds it (a whole stored
    object, the chunks of a map or manifest, or today's plain ``<name>/<sha>.pkl``); ``None``
    when something is missing."""
    listed = {o.key: o.size for o in remote.list_objects("")}
    if key not in listed:
        return None
    kind = storage_key_kind(key)
    if kind == "objects":
        return stored_bytes(remote, key)
    if kind not in MANIFEST_KINDS:
        return read(remote, key)
    chunks = _chunks(remote, key)
    if not all(fits(sizes, listed.get(k)) for k, sizes in needs(chunks).items()):
        return None
    blobs: dict[str, bytes] = {}
    return b"".join(_chunk_bytes(remote, c, blobs) for c in chunks)


def push_format1(remote: Remote, data: bytes) -> str:
    """Store ``data`` as an earlier release did: each chunk its own stored object, then a
    manifest of format 1; return the manifest's key (what its registry entry names)."""
    sha = hashlib.sha256(data).hexdigest()
    rows = []
    for piece, chunk in cut(io.BytesIO(data), len(data)):
        rows.append([piece.sha256, piece.size])
        remote.upload_parts(encode(bytes(chunk)), storage_key("chunks", piece.sha256), piece.sha256)
    doc = {"chunks": rows, "format": 1, "sha256": sha, "size": len(data)}
    key = storage_key("manifests", sha)
    manifest = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    remote.upload_parts([manifest], key, sha)
    return key
