"""A big model's manifest: the chunks that make its bytes, and where each is stored, as
canonical JSON.

Format 2 (a *map*, what push writes) places every chunk in a pack; format 1 (read only, from
earlier releases) named each chunk's own stored object. A manifest comes from the remote, so
nothing in it is trusted: :func:`parse_manifest` bounds its size and chunk count, checks every
hash, size and place, and that the chunks add up to the registry's size, before a byte of the
model is fetched or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from model_filer.errors import IntegrityError
from model_filer.registry.names import storage_key

if TYPE_CHECKING:
    from model_filer.remotes import Remote

FORMAT = 2
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # ~100,000 chunks listed with their places
MAX_CHUNKS = 200_000
MAX_CHUNK_BYTES = 16 * 1024 * 1024  # a chunk is held whole in memory while it moves
MAX_PACK_BYTES = 1 << 40  # far above what a writer makes (~64 MiB): a bound on offsets
_MAPS = storage_key("maps", "")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


class Chunk(NamedTuple):
    """One chunk of a model: the sha256 of its raw bytes, their length and, in a map, where
    its stored form is: the pack's sha256 and length, the offset there and the stored
    length."""

    sha256: str
    size: int
    pack: str | None = None  # None: its own stored object (format 1)
    offset: int = 0
    stored: int = 0
    pack_size: int = 0

    def key(self) -> str:
        """The remote object that holds this chunk's stored form."""
        if self.pack is None:
            return storage_key("chunks", self.sha256)
        return storage_key("packs", self.pack)


def encode_manifest(sha256: str, size: int, chunks: Sequence[Chunk]) -> bytes:
    """The map's canonical bytes (format 2): sorted keys, no spaces, chunks in order, packs
    (``[sha256, length]``) in the order chunks first name them."""
    packs: dict[tuple[str, int], int] = {}
    rows = []
    for c in chunks:
        place = packs.setdefault((c.pack or "", c.pack_size), len(packs))  # (all are placed)
        rows.append([c.sha256, c.size, place, c.offset, c.stored])
    listed = [list(p) for p in packs]
    doc = {"chunks": rows, "format": FORMAT, "packs": listed, "sha256": sha256, "size": size}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def needs(chunks: Sequence[Chunk]) -> dict[str, tuple[int, int]]:
    """The remote objects ``chunks`` are read from, each with the lengths it may have (a
    pack: its own; a chunk object: a header and 1 to the chunk's size bytes)."""
    need: dict[str, tuple[int, int]] = {}
    for c in chunks:
        need[c.key()] = (2, c.size + 1) if c.pack is None else (c.pack_size, c.pack_size)
    return need


def fits(need: tuple[int, int], size: int | None) -> bool:
    """Whether an object of ``size`` bytes (None: missing) is what :func:`needs` asks."""
    return size is not None and need[0] <= size <= need[1]


def encode_places(chunks: Sequence[Chunk]) -> bytes:
    """Where ``chunks`` (in packs) are, as this machine keeps it for one remote: a JSON list
    of ``[sha256, size, pack, pack length, offset, stored]``."""
    rows = [[c.sha256, c.size, c.pack, c.pack_size, c.offset, c.stored] for c in chunks]
    return json.dumps(rows, separators=(",", ":")).encode()


def parse_places(data: bytes) -> list[Chunk]:
    """The chunks :func:`encode_places` wrote, each checked as a map's are (a damaged file
    must not name a wrong place to a push); :class:`IntegrityError` when one is not."""
    try:
        rows = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        rows = None
    if not isinstance(rows, list):
        raise _refuse("(places)", "not a list")
    chunks = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 6 and isinstance(row[2], str)):
            raise _refuse("(places)", f"row {str(row)[:100]} is not one")
        sha, size, pack, pack_size, offset, stored = row
        packs = _packs({"packs": [[pack, pack_size]]}, "(places)")
        chunks.append(_chunk([sha, size, 0, offset, stored], packs, "(places)"))
    return chunks


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
    fmt = FORMAT if key.startswith(_MAPS) else 1  # (a key's kind says its format)
    return data, parse_manifest(data, sha256, size, fmt)


def manifest_needs(
    remote: Remote, key: str, sha256: str, size: int | None = None
) -> dict[str, tuple[int, int]]:
    """The packs (or chunks) the manifest ``key`` of the model ``sha256`` names, each with
    the lengths it may have (:func:`needs`), read and checked (``size``: the model's, as its
    registry entry says; None takes the manifest's own). For gc and the pre-push hook.

    Raises
    ------
    RemoteError, IntegrityError
        When the manifest cannot be read, or is not a valid one of that model.
    """
    return needs(read_manifest(remote, key, sha256, size)[1])


def parse_manifest(
    data: bytes | bytearray, sha256: str, size: int | None, fmt: int | None = None
) -> list[Chunk]:
    """The chunks of the model (``sha256``, ``size`` bytes; ``None``: the size the manifest
    itself gives, for gc, which has no registry entry) that manifest ``data`` lists, of
    format ``fmt`` (``None``: either).

    Raises
    ------
    IntegrityError
        When ``data`` is too big, not a manifest of this model, lists too many chunks, a
        malformed hash, size or place, or chunks whose sizes do not add up to ``size``.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise _refuse(sha256, f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # (nesting: a stack, not a value)
        raise _refuse(sha256, "not JSON") from None
    found = doc.get("format") if isinstance(doc, dict) else None
    if found not in ((1, FORMAT) if fmt is None else (fmt,)):
        raise _refuse(sha256, f"not a manifest of format {fmt or f'1 or {FORMAT}'}")
    if size is None and type(doc.get("size")) is int:
        size = doc["size"]
    if doc.get("sha256") != sha256 or doc.get("size") != size:
        raise _refuse(sha256, "it describes another model")
    raw = doc.get("chunks")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_CHUNKS:
        raise _refuse(sha256, f"it must list 1 to {MAX_CHUNKS} chunks")
    packs = _packs(doc, sha256) if found == FORMAT else []
    chunks = [_chunk(item, packs, sha256) for item in raw]
    total = sum(c.size for c in chunks)
    if total != size:
        raise _refuse(sha256, f"its chunks hold {total} bytes, the registry says {size}")
    return chunks


def _packs(doc: dict[str, object], sha256: str) -> list[list[Any]]:
    packs = doc.get("packs")
    if not (
        isinstance(packs, list)
        and 0 < len(packs) <= MAX_CHUNKS
        and all(
            isinstance(p, list)
            and len(p) == 2
            and isinstance(p[0], str)
            and _SHA_RE.fullmatch(p[0])
            and type(p[1]) is int
            and 0 < p[1] <= MAX_PACK_BYTES
            for p in packs
        )
    ):
        raise _refuse(sha256, f"it must list 1 to {MAX_CHUNKS} packs, each [sha256, length]")
    return packs


def _chunk(item: object, packs: list[list[Any]], sha256: str) -> Chunk:
    """One listed chunk: ``[sha256, size]`` (format 1) or ``[sha256, size, pack, offset,
    stored]`` (format 2, ``packs`` given), checked: in a map, within its pack."""
    width = 5 if packs else 2
    if (
        isinstance(item, list)
        and len(item) == width
        and all(type(n) is int for n in item[1:])
        and isinstance(item[0], str)
        and _SHA_RE.fullmatch(item[0])
        and 0 < item[1] <= MAX_CHUNK_BYTES
    ):
        if not packs:
            return Chunk(item[0], item[1])
        _, size, pack, offset, stored = item
        # A stored form is a header byte and at most the raw bytes (stored.py).
        if 0 <= pack < len(packs) and offset >= 0 and 2 <= stored <= size + 1:
            name, length = packs[pack]
            if offset + stored <= length:
                return Chunk(item[0], size, name, offset, stored, length)
    place = ", pack, offset, stored" if packs else ""
    form = f"[sha256, size 1..{MAX_CHUNK_BYTES}{place}]"
    raise _refuse(sha256, f"chunk {str(item)[:100]} is not {form}")
