"""Chunked storage in tests: thresholds small enough for models of a few MiB, and checks that
what a remote holds is whole and that every ``synced`` entry's bytes are all there."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from model_filer.registry.model import Entry
from model_filer.remotes import Remote
from model_filer.storage import parse_manifest, storage_key, storage_key_kind
from model_filer.storage.stored import RAW, ZSTD, decode

KiB = 1024


def small_chunks(
    monkeypatch: pytest.MonkeyPatch,
    small_max: int = 128 * KiB,
    min_avg: int = 32 * KiB,
    max_avg: int = 64 * KiB,
) -> None:
    """Cut models above ``small_max`` bytes into chunks of ``min_avg``..``max_avg`` on average
    (in this process and the children it forks), so a model of a few MiB has dozens."""
    import model_filer.storage.chunks as chunks
    import model_filer.transfer.chunked as chunked

    monkeypatch.setattr(chunked, "SMALL_MAX", small_max)
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


def check_remote_whole(remote: Remote) -> dict[str, int]:
    """Every object of the chunked layout on ``remote`` is whole: a stored object's bytes
    hash to its name, a manifest parses and names only chunks that are there. Returns how
    many objects of each kind there are."""
    listed = {o.key for o in remote.list_objects("")}
    kinds: dict[str, int] = {}
    for key in sorted(listed):
        kind = storage_key_kind(key)
        if kind is None:
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("objects", "chunks"):
            stored_bytes(remote, key)
        elif kind == "manifests":
            data = read(remote, key)
            size = json.loads(data)["size"]
            for chunk in parse_manifest(data, key[-64:], size):
                assert storage_key("chunks", chunk.sha256) in listed, f"{key} names a lost chunk"
    return kinds


def check_synced_present(remote: Remote, entries: dict[str, Entry]) -> None:
    """Every ``synced`` entry's bytes are all on ``remote``: its whole object, or its
    manifest and every chunk the manifest names (read and checked, never assumed)."""
    listed = {o.key for o in remote.list_objects("")}
    for name, entry in entries.items():
        if entry.state != "synced":
            continue
        key = entry.key or ""
        assert key in listed, f"{name} says synced but {key} is missing"
        if storage_key_kind(key) == "manifests":
            data = read(remote, key)
            for chunk in parse_manifest(data, entry.sha256, entry.size):
                assert storage_key("chunks", chunk.sha256) in listed, f"{name}: chunk missing"
        elif storage_key_kind(key) == "objects":
            assert hashlib.sha256(stored_bytes(remote, key)).hexdigest() == entry.sha256


def model_bytes(remote: Remote, key: str) -> bytes | None:
    """The model the registry key ``key`` names, as ``remote`` holds it (a whole stored
    object, the chunks of a manifest, or today's plain ``<name>/<sha>.pkl``); ``None`` when
    something is missing."""
    listed = {o.key for o in remote.list_objects("")}
    if key not in listed:
        return None
    kind = storage_key_kind(key)
    if kind == "objects":
        return stored_bytes(remote, key)
    if kind != "manifests":
        return read(remote, key)
    data = read(remote, key)
    chunks = parse_manifest(data, key[-64:], json.loads(data)["size"])
    if any(storage_key("chunks", c.sha256) not in listed for c in chunks):
        return None
    return b"".join(stored_bytes(remote, storage_key("chunks", c.sha256)) for c in chunks)
