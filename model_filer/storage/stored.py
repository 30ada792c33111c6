"""A stored object (a whole small model, or a chunk): one header byte, then raw or zstd bytes.

Compressed only when that saves at least :data:`MIN_SAVING`, so a stored object is never
more than one byte longer than what it holds: a download larger than that is refused before
it is read whole. Decompression is bounded by the size the object must produce.
"""

from __future__ import annotations

from typing import Any

from model_filer.errors import IntegrityError

RAW = 0
ZSTD = 1
LEVEL = 3  # zstd's default: 240-500 MB/s per core; for a big model, higher costs more than it saves
# A model up to SMALL_MODEL is compressed harder: level 6 stores a 21 MB RandomForest in 8.5%
# fewer bytes than level 3 (4.09 MB against 4.47), which every pull over a slow link gains, for
# ~0.15 s more at its push (94 MB/s against 331, one core); past it the seconds per GiB add up.
SMALL_LEVEL = 6
SMALL_MODEL = 32 * 1024 * 1024
MIN_SAVING = 0.10
# The probe: three samples of PROBE bytes; a chunk of 1 MiB costs 5% of a full trial to probe.
# Float64 and normal float32 weights, most of a big model's bytes, save 4-8% (under MIN_SAVING:
# kept raw), and their samples save what the whole does to 0.3 points (uniform float64: 6.1%
# and 6.0%; uniform float32 saves 10.8%, and is tried and kept): a threshold of half
# MIN_SAVING tried them all in full for nothing (a 1 GiB push at 0.64x upload_file's rate).
# PROBE_SAVING leaves 2 points for a sample's shorter history; bytes whose repeats lie further
# apart than a sample are missed by any threshold (a saving lost, never a wrong byte).
PROBED_FROM = 256 * 1024
PROBE = 16 * 1024
PROBE_SAVING = 0.08
MAX_WINDOW = 1 << 27  # zstd's own default bound on a frame's window (memory while decoding)


def level_for(size: int) -> int:
    """The zstd level for the chunks (or whole stored object) of a model of ``size`` bytes."""
    return SMALL_LEVEL if size <= SMALL_MODEL else LEVEL


def encode(data: Any, level: int = LEVEL) -> list[Any]:
    """The stored form of ``data`` (a bytes-like) as buffers to write in order, compressed at
    ``level`` (:func:`level_for` the model) when that saves :data:`MIN_SAVING`.

    Data of :data:`PROBED_FROM` bytes or more is tried whole only when three samples of it
    (start, middle, end) save :data:`PROBE_SAVING` together: random-looking bytes such as
    float weights are stored raw for a twentieth of a full trial's CPU (chunks of 1 MiB).
    """
    import zstandard  # (not on the hooks' path)

    view = memoryview(data).cast("B")
    size = view.nbytes
    if size >= PROBED_FROM:
        sample = b"".join(view[at : at + PROBE] for at in (0, (size - PROBE) // 2, size - PROBE))
        probed = zstandard.ZstdCompressor(level=level).compress(sample)
        if len(probed) > len(sample) * (1 - PROBE_SAVING):
            return [bytes([RAW]), view]
    packed = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(view)
    if len(packed) <= size * (1 - MIN_SAVING):
        return [bytes([ZSTD]), packed]
    return [bytes([RAW]), view]


def max_stored_size(size: int) -> int:
    """The largest stored object that may hold ``size`` bytes."""
    return size + 1


def may_hold(stored: int, size: int) -> bool:
    """Whether a stored object of ``stored`` bytes may hold ``size`` bytes: its header and
    at least one byte more (unless ``size`` is 0), at most :func:`max_stored_size`. A push
    replaces one that may not; the pre-push check refuses it."""
    return min(2, size + 1) <= stored <= max_stored_size(size)


def decode(blob: bytes | bytearray | memoryview, size: int, what: str) -> Any:
    """The ``size`` bytes a stored object ``blob`` holds; ``what`` names it in errors.

    Raises
    ------
    IntegrityError
        An unknown header, a frame that declares another size (checked before anything is
        allocated), or bytes that do not come to ``size``.
    """
    if not blob or len(blob) > max_stored_size(size):
        raise _bad(what, f"{len(blob)} stored bytes for {size}")
    kind, body = blob[0], memoryview(blob)[1:]
    if kind == RAW:
        out: Any = body
    elif kind == ZSTD:
        import zstandard

        try:
            declared = zstandard.frame_content_size(body)
            if declared != size:
                raise _bad(what, f"its zstd frame declares {declared} bytes, not {size}")
            out = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(
                body, max_output_size=size
            )
        except zstandard.ZstdError as exc:
            raise _bad(what, f"a damaged zstd frame ({exc})") from None
    else:
        raise _bad(what, f"unknown header byte {kind}")
    if len(out) != size:
        raise _bad(what, f"it holds {len(out)} bytes, not {size}")
    return out


def _bad(what: str, why: str) -> IntegrityError:
    # (the caller, who knows the model and the object's address, says how to repair it)
    return IntegrityError(f"The remote's {what} is damaged: {why}. Nothing was written.")
