"""How model bytes sit on a remote: whole stored objects, or manifests of stored chunks.

The format is docs/storage-format.md. This package knows bytes only: no remote, no store.
"""

from __future__ import annotations

from datetime import timedelta

from model_filer.registry.names import (
    MODEL_KINDS,
    STORAGE_DIR,
    STORAGE_KINDS,
    is_storage_key,
    storage_key,
    storage_key_kind,
)
from model_filer.storage.manifest import (
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    Chunk,
    encode_manifest,
    parse_manifest,
)

#: gc collects an unnamed object only once it is this old (``model-filer gc --grace``'s default).
GC_GRACE = timedelta(days=14)
#: A push that reuses a pack, map or whole object (of 1 MiB or more: a smaller one is sent
#: again) older than this makes it new again (``touch``), so a gc running meanwhile (which
#: re-reads the age just before deleting) never deletes it.
REFRESH_AFTER = GC_GRACE / 2

__all__ = [
    "GC_GRACE",
    "MAX_CHUNKS",
    "MAX_CHUNK_BYTES",
    "MODEL_KINDS",
    "REFRESH_AFTER",
    "STORAGE_DIR",
    "STORAGE_KINDS",
    "Chunk",
    "encode_manifest",
    "is_storage_key",
    "parse_manifest",
    "storage_key",
    "storage_key_kind",
]
