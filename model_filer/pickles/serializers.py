"""Turning models into bytes and back: pickle protocol 5, streamed and hashed as it writes."""

from __future__ import annotations

import datetime as dt
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from model_filer.errors import RegistryError, SerializationError, VersionMismatchWarning
from model_filer.fs.hashing import HashingWriter
from model_filer.pickles import trust
from model_filer.registry.model import Entry

if TYPE_CHECKING:
    from model_filer.pickles.safe_pickle import Scan
    from model_filer.pickles.torch_weights import Buffers

PROTOCOL = 5  # protocol 4 (3.11's default) copies every numpy buffer; 5 writes them in place
SERIALIZER = f"pickle-{PROTOCOL}"
# A protocol 5 pickle whose torch storages follow it out of band (see docs/model-format.md):
# loading reads each one once, straight into the tensor's memory.
SERIALIZER_BUFFERS = f"pickle-{PROTOCOL}+buffers"
_PICKLE_RE = re.compile(r"pickle-[0-5]")
_MAGIC = b"MFBUF\x00v1"
_WORD = 8


def dump(model: Any, fh: IO[bytes]) -> tuple[str, int]:
    """Pickle ``model`` into ``fh``; return the sha256 and size of what was written."""
    sha256, size, _ = _dump(model, fh)
    return sha256, size


def _dump(model: Any, fh: IO[bytes]) -> tuple[str, int, Scan]:
    # imported when used: every hook imports this module
    from model_filer.pickles import safe_pickle

    writer = HashingWriter(fh)
    pickler = safe_pickle.RecordingPickler(writer, protocol=PROTOCOL, out_of_band=True)
    try:
        pickler.dump(model)
        _write_buffers(writer, pickler.buffers)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise SerializationError(
            f"Cannot pickle {type(model).__name__}: {exc}. Use classes and functions defined "
            "at module level (not lambdas or local classes), or drop the unpicklable parts "
            "(open files, locks, connections) before dump."
        ) from exc
    finally:
        sha256 = writer.hexdigest()  # also ends the hashing thread when pickling fails
    return sha256, writer.size, pickler.scan()


def _write_buffers(writer: HashingWriter, buffers: list[Callable[[], bytes]]) -> None:
    """After the pickle: each out-of-band buffer, their sizes, their count, a magic."""
    if not buffers:
        return  # a plain pickle-5 file, as before
    sizes = []
    for make in buffers:
        data = make()  # one at a time: a model's storages are never all copied at once
        writer.write(data)
        sizes.append(len(data))
        del data
    trailer = b"".join(n.to_bytes(_WORD, "little") for n in sizes)
    writer.write(trailer + len(sizes).to_bytes(_WORD, "little") + _MAGIC)


def _read_buffers(fh: IO[bytes], name: str) -> Buffers:
    """The out-of-band buffers of the file at ``fh``: their sizes, made into lazy slices of
    the file as the unpickler takes them (the load checks it takes as many as listed)."""
    from array import array

    from model_filer.pickles.torch_weights import MAX_BUFFERS, Buffers, unreadable

    start = fh.tell()
    end = fh.seek(0, 2)
    fh.seek(max(start, end - 2 * _WORD))
    tail = fh.read(2 * _WORD)
    count = int.from_bytes(tail[:_WORD], "little")
    sizes_at = end - 2 * _WORD - count * _WORD
    if tail[_WORD:] != _MAGIC or count > MAX_BUFFERS or sizes_at < start:
        raise unreadable(name)
    fh.seek(sizes_at)
    sizes = array("Q", fh.read(count * _WORD))  # 8 bytes each, not a Python object each
    if sys.byteorder != "little":
        sizes.byteswap()
    offset = sizes_at - sum(sizes)
    if len(sizes) != count or offset < start:
        raise unreadable(name)
    fh.seek(start)
    return Buffers(fh, offset, sizes, sizes_at, name)


def dump_entry(model: Any, name: str, fh: IO[bytes], trust_from: Path | None = None) -> Entry:
    """Pickle ``model`` into ``fh`` and describe it as a new ``local`` registry entry.

    The entry lists what the pickle imports, for review; with ``trust_from`` (the model
    folder) it warns with :class:`UntrustedModelWarning` when ``load`` would refuse it.
    """
    sha256, size, found = _dump(model, fh)
    if trust_from is not None:
        from model_filer.pickles.safe_pickle import warn_untrusted

        warn_untrusted(name, found, trust.trusted_set(trust_from), stacklevel=3)
    return Entry(
        name=name,
        state="local",
        sha256=sha256,
        size=size,
        serializer=SERIALIZER_BUFFERS if found.buffers else SERIALIZER,
        python=python_version(),
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        library=library_of(model),
        imports=found.names(),
    )


def load(
    fh: IO[bytes], serializer: str, name: str, trusted: trust.TrustedSet, registry: object = None
) -> Any:
    """Unpickle from ``fh``, importing only ``trusted``: call only on verified bytes.

    ``registry`` is the registry file that records the model (for the error's ``path``).
    """
    buffers = _read_buffers(fh, name) if serializer == SERIALIZER_BUFFERS else None
    if buffers is None and not _PICKLE_RE.fullmatch(serializer):
        raise RegistryError(
            f"Model {name!r} was written with serializer {serializer!r}, which this model_filer "
            "cannot read. Upgrade with `pip install -U ds-model-filer`.",
            path=registry,
        )
    from model_filer.pickles import safe_pickle  # imported when used, as above

    return safe_pickle.load(fh, trusted, name, buffers)


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def library_of(model: Any) -> dict[str, str] | None:
    """The top-level library a model's class comes from and its version, if it has one."""
    top = getattr(type(model), "__module__", None)
    top = plain_text(top.partition(".")[0]) if isinstance(top, str) else None
    if top is None or top in ("builtins", "__main__"):
        return None
    version = current_version(top)
    return None if version is None else {"name": top, "version": version}


def current_version(library: str) -> str | None:
    """The running version of a library already imported (unpickling imported it)."""
    return plain_text(getattr(sys.modules.get(library), "__version__", None))


def plain_text(value: object) -> str | None:
    """``value`` as a plain, short ``str`` for the registry, or ``None``.

    Versions are often ``str`` subclasses (torch's ``TorchVersion``), which the safe YAML
    dumper refuses; anything else is rendered with ``str`` when that gives a sensible line.
    """
    if value is None or isinstance(value, bytes | bytearray):
        return None
    try:
        text = str(value)
    except Exception:  # a __str__ that fails: record no version rather than fail a dump
        return None
    # A str subclass's __str__ may return itself: copy through unbound str methods (no
    # override runs) into an exact str.
    text = str.encode(text, "utf-8", "surrogatepass").decode("utf-8", "surrogatepass").strip()
    return text if 0 < len(text) <= 100 and text.isprintable() else None


def warn_versions(entry: Entry) -> None:
    """Warn when the running Python or model library differs from the one that dumped it."""
    now, said = python_version(), []
    if now.split(".")[:2] != entry.python.split(".")[:2]:
        said.append(f"Python {entry.python}, this is {now}: check the model behaves the same.")
    if entry.library is not None:
        lib, then = entry.library["name"], entry.library["version"]
        current = current_version(lib)
        if current is not None and current != then:
            said.append(
                f"{lib} {then}, this is {current}: pin that version if the model misbehaves."
            )
    for what in said:
        warnings.warn(
            f"{entry.name!r} was dumped with {what}", VersionMismatchWarning, stacklevel=3
        )
