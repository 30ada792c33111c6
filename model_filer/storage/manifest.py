"""A big model's manifest: the chunks that make its bytes, as canonical JSON.

A manifest comes from the remote, so nothing in it is trusted: :func:`parse_manifest` bounds
its size and chunk count, checks every hash and size, and that the chunks add up to the
registry's size, before a byte of the model is fetched or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from model_filer.errors import IntegrityError

if TYPE_CHECKING:
    from model_filer.remotes import Remote

FORMAT = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # ~220,000 chunks: 200 GiB at 1 MiB chunks
MAX_CHUNKS = 200_000
MAX_CHUNK_BYTES = 16 * 1024 * 1024  # a chunk is held whole in memory while it moves
_SHA_RE = re.compile(r"[0-9a-f]{64}")


class Chunk(NamedTuple):
    """One chunk of a model: the sha256 of its raw bytes and their length."""

    sha256: str
    size: int


def encode_manifest(sha256: str, size: int, chunks: Sequence[Chunk]) -> bytes:
    """The manifest's canonical bytes: sorted keys, no spaces, chunks in order."""
    doc = {"chunks": [list(c) for c in chunks], "format": FORMAT, "sha256": sha256, "size": size}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _refuse(sha256: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"The remote's manifest of the model with sha256 {sha256} is not a valid one: {why}. "
        "Nothing was written. The remote was changed or damaged. Ask the model's author to "
        "push it again (or push it yourself from a machine that holds it).",
        expected=(None, sha256),
    )


def read_manifest(
    remote: Remote, key: str, sha256: str, size: int | None, hint: int | None = None
) -> tuple[bytes, list[Chunk]]:
    """The manifest ``key`` of the model ``sha256`` from ``remote``: its bytes (read up to
    :data:`MAX_MANIFEST_BYTES`, ``hint`` its likely size) and the chunks it lists, checked
    by :func:`parse_manifest`. The one reader of a remote's manifest: pull, push and gc.

    Raises
    ------
    RemoteError, IntegrityError
    """
    too_big = _refuse(sha256, f"more than {MAX_MANIFEST_BYTES} bytes (it was not read further)")
    data = bytes(remote.read_bytes(key, MAX_MANIFEST_BYTES, hint, too_big))
    return data, parse_manifest(data, sha256, size)


def parse_manifest(data: bytes | bytearray, sha256: str, size: int | None) -> list[Chunk]:
    """The chunks of the model (``sha256``, ``size`` bytes; ``None``: the size the manifest
    itself gives, for gc, which has no registry entry) that manifest ``data`` lists.

    Raises
    ------
    IntegrityError
        When ``data`` is too big, not a manifest of this model, lists too many chunks, a
        malformed hash or size, or chunks whose sizes do not add up to ``size``.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise _refuse(sha256, f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # (nesting: a stack, not a value)
        raise _refuse(sha256, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _refuse(sha256, f"not a manifest of format {FORMAT}")
    if size is None and type(doc.get("size")) is int:
        size = doc["size"]
    if doc.get("sha256") != sha256 or doc.get("size") != size:
        raise _refuse(sha256, "it describes another model")
    raw = doc.get("chunks")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_CHUNKS:
        raise _refuse(sha256, f"it must list 1 to {MAX_CHUNKS} chunks")
    chunks = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and _SHA_RE.fullmatch(item[0])
            and type(item[1]) is int
            and 0 < item[1] <= MAX_CHUNK_BYTES
        ):
            raise _refuse(
                sha256, f"chunk {str(item)[:100]} is not [sha256, size 1..{MAX_CHUNK_BYTES}]"
            )
        chunks.append(Chunk(item[0], item[1]))
    total = sum(c.size for c in chunks)
    if total != size:
        raise _refuse(sha256, f"its chunks hold {total} bytes, the registry says {size}")
    return chunks
