"""How model bytes sit on a remote: whole stored objects, or manifests of stored chunks.

The format is docs/storage-format.md. This package knows bytes only: no remote, no store.
"""

from __future__ import annotations

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

__all__ = [
    "MAX_CHUNKS",
    "MAX_CHUNK_BYTES",
    "MODEL_KINDS",
    "STORAGE_DIR",
    "STORAGE_KINDS",
    "Chunk",
    "encode_manifest",
    "is_storage_key",
    "parse_manifest",
    "storage_key",
    "storage_key_kind",
]
