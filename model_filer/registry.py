"""The registry file: which models exist, in which state, with which bytes.

It is YAML that people read in code review and git merges line by line, so the format is
fixed: entries sorted by name, fields in a fixed order, one entry's change touching only that
entry's lines, and the same content always serialising to the same bytes (libyaml and pure
Python alike). Loading is safe only: no tag can build a Python object, duplicate keys are
refused, and every field is checked before anything else uses it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import InvalidNameError, RegistryError
from .files import folder_lock, registry_filename, remote_type_of, write_bytes_atomic
from .names import check_key, check_name, check_sha256, show

if TYPE_CHECKING:
    from filelock import FileLock

FORMAT_VERSION = 1
MAX_REGISTRY_BYTES = 32 * 1024 * 1024  # ~100,000 entries; a larger file is an attack or an accident
MAX_MODEL_BYTES = 1 << 50  # 1 PiB: sizes above this are nonsense, not models
STATES = ("local", "synced")
HEADER = (
    "# model_filer registry: commit this file, not the model files.\n"
    "# Written by model_filer; edit it with model-filer commands, not by hand.\n"
)
_FIX = "Restore the file with `git checkout -- <registry>` or fix the entry."
_ENTRY_FIELDS = (
    "state",
    "key",
    "sha256",
    "size",
    "serializer",
    "created",
    "python",
    "library",
    "imports",
)
_IMPORT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


class Entry(NamedTuple):
    """One model in a registry.

    Immutable: derive a changed copy with ``entry._replace(state="synced", ...)``. (A
    NamedTuple rather than a dataclass: ``dataclasses`` costs ~10 ms of import time in every
    hook run.)

    Attributes
    ----------
    name : str
        The model's name: ``<name>.pkl`` in the model folder.
    state : str
        ``"local"`` (only on the machine that dumped it) or ``"synced"`` (on the remote).
    sha256, size : str, int
        The bytes of the pickle file.
    key : str or None
        Object key relative to the remote root; set once synced.
    serializer : str
        How the bytes were made, e.g. ``"pickle-5"``.
    created : str
        UTC time of the dump, ISO 8601.
    python : str
        The Python version that dumped it.
    library : dict or None
        ``{"name": ..., "version": ...}`` of the model's top-level library, when it has one.
    imports : list of str or None
        The sorted ``module.qualname`` globals its pickle imports, for review in diffs;
        loading never trusts it (it checks the bytes).
    """

    name: str
    state: str
    sha256: str
    size: int
    serializer: str
    created: str
    python: str
    key: str | None = None
    library: dict[str, str] | None = None
    imports: list[str] | None = None

    def to_yaml_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in _ENTRY_FIELDS}
        return {k: v for k, v in data.items() if v is not None}


class Registry:
    """A registry's content: the remote it belongs to and its entries by name."""

    __slots__ = ("entries", "remote_address", "remote_type")

    def __init__(
        self, remote_type: str, remote_address: str, entries: dict[str, Entry] | None = None
    ) -> None:
        self.remote_type = remote_type
        self.remote_address = remote_address
        self.entries: dict[str, Entry] = {} if entries is None else entries

    def _key(self) -> tuple[str, str, dict[str, Entry]]:
        return (self.remote_type, self.remote_address, self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registry) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Registry({self.remote_type!r}, {self.remote_address!r}, {self.entries!r})"

    def copy(self) -> Registry:
        """A copy whose entries can change without touching this one."""
        return Registry(self.remote_type, self.remote_address, dict(self.entries))

    def dumps(self, dumper: type[Any] | None = None) -> bytes:
        """Serialise deterministically: sorted entries, fixed field order, no flow style."""
        doc = {
            "format": FORMAT_VERSION,
            "remote": {"type": self.remote_type, "address": self.remote_address},
            "models": {n: self.entries[n].to_yaml_dict() for n in sorted(self.entries)},
        }
        from . import yamlio

        return (HEADER + yamlio.dump(doc, dumper)).encode("utf-8")


def _field(data: dict[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RegistryError(
            f"{where}: field {key!r} must be {kind.__name__}, got {show(value)}. {_FIX}"
        )
    return value


def _parse_entry(name: Any, data: Any, where: str) -> Entry:
    try:
        check_name(name)
    except InvalidNameError as exc:
        raise RegistryError(f"{where}: {exc} {_FIX}") from None
    here = f"{where}: entry {show(name)}"
    if not isinstance(data, dict):
        raise RegistryError(f"{here} must be a mapping of fields. {_FIX}")
    unknown = set(data) - set(_ENTRY_FIELDS)
    if unknown:
        raise RegistryError(
            f"{here} has unknown fields {sorted(map(str, unknown))}. "
            "Upgrade model_filer (`pip install -U ds-model-filer`) or fix the file."
        )
    state = _field(data, "state", str, here)
    if state not in STATES:
        raise RegistryError(f"{here}: state must be 'local' or 'synced', got {show(state)}. {_FIX}")
    size = _field(data, "size", int, here)
    if not 0 <= size <= MAX_MODEL_BYTES:
        raise RegistryError(f"{here}: size {size} is out of range (0 to 1 PiB). {_FIX}")
    key = _field(data, "key", str, here, required=state == "synced")
    library = _field(data, "library", dict, here, required=False)
    try:
        check_sha256(data.get("sha256"), here)
    except InvalidNameError as exc:
        raise RegistryError(f"{exc} {_FIX}") from None
    try:
        if key is not None:
            check_key(key, here)  # its message already says how to fix it
    except InvalidNameError as exc:
        raise RegistryError(str(exc)) from None
    if library is not None and (
        set(library) != {"name", "version"}
        or not all(isinstance(library[k], str) for k in ("name", "version"))
    ):
        raise RegistryError(f"{here}: library must be {{name: str, version: str}}. {_FIX}")
    imports = _field(data, "imports", list, here, required=False)
    if imports is not None and not all(
        isinstance(i, str) and len(i) <= 512 and _IMPORT_RE.fullmatch(i) for i in imports
    ):
        raise RegistryError(f"{here}: imports must be a list of module.qualname names. {_FIX}")
    return Entry(
        name=name,
        state=state,
        sha256=data["sha256"],
        size=size,
        key=key,
        serializer=_field(data, "serializer", str, here),
        created=_field(data, "created", str, here),
        python=_field(data, "python", str, here),
        library=library,
        imports=imports,
    )


def parse(
    text: bytes, where: str, loader: type[Any] | None = None, filename: str | None = None
) -> Registry:
    """Parse and validate a registry's bytes; raise :class:`RegistryError` on anything odd.

    ``filename`` (the file's path) must then name the remote type the content records:
    a ``.local_registry`` that says ``s3`` is refused, not trusted.
    """
    if len(text) > MAX_REGISTRY_BYTES:
        raise RegistryError(
            f"{where}: {len(text)} bytes is too large for a registry "
            f"(limit {MAX_REGISTRY_BYTES}). Restore it from git."
        )
    if b"\n<<<<<<< " in b"\n" + text or b"\n>>>>>>> " in text:
        raise RegistryError(
            f"{where}: unresolved merge conflict markers. Resolve with "
            "`git checkout --theirs/--ours` or set up `model-filer install-hooks` (merge driver)."
        )
    from . import yamlio

    try:
        doc = yamlio.load(text, loader)
    except yamlio.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise RegistryError(
            f"{where}: not valid registry YAML ({detail}). "
            "Restore it with `git checkout -- <file>`."
        ) from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: a registry must be a YAML mapping. Restore it from git.")
    if type(doc.get("format")) is not int or doc["format"] != FORMAT_VERSION:
        raise RegistryError(
            f"{where}: unsupported registry format {show(doc.get('format'))} "
            f"(this model_filer reads {FORMAT_VERSION}). "
            "Upgrade with `pip install -U ds-model-filer`."
        )
    remote = _field(doc, "remote", dict, where)
    rtype = _field(remote, "type", str, where + " remote")
    address = _field(remote, "address", str, where + " remote")
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise RegistryError(f"{where}: 'models' must be a mapping. Restore it from git.")
    named = remote_type_of(filename) if filename else None
    if named is not None and named != rtype:
        raise RegistryError(
            f"{where}: records remote type {show(rtype)} but its name is for {named!r}. "
            "Restore it with `git checkout -- <file>`."
        )
    entries = {name: _parse_entry(name, data, where) for name, data in models.items()}
    return Registry(remote_type=rtype, remote_address=address, entries=entries)


# Last parse of each registry path: a hook or CLI command reads the same file several
# times, and parsing (not reading) is what costs. Keyed by the exact bytes, so never stale.
_PARSED: dict[str, tuple[bytes, Registry]] = {}


def read(path: Path) -> Registry | None:
    """Read the registry at ``path``; ``None`` when the file does not exist."""
    try:
        with open(path, "rb") as fh:  # bounded read: a huge file is refused, not loaded
            text = fh.read(MAX_REGISTRY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry ({exc.strerror}).") from None
    memo = _PARSED.get(str(path))
    if memo is not None and memo[0] == text:
        return memo[1].copy()
    reg = parse(text, str(path), filename=str(path))
    _PARSED[str(path)] = (text, reg.copy())
    return reg


class RegistryFile:
    """The registry of one model folder, with locked read-modify-write."""

    def __init__(self, local_dir: Path, remote_type: str) -> None:
        self.local_dir = local_dir
        self.path = local_dir / registry_filename(remote_type)
        self.remote_type = remote_type

    def lock(self) -> FileLock:
        """The folder's lock: held for every registry change and file rename."""
        return folder_lock(self.local_dir, "registry")

    def read(self) -> Registry | None:
        return read(self.path)

    def write(self, reg: Registry) -> None:
        data = reg.dumps()
        with contextlib.suppress(FileNotFoundError):
            if self.path.read_bytes() == data:
                return  # unchanged: keep mtime, skip the write
        write_bytes_atomic(self.path, self.local_dir, data, "registry")

    @contextlib.contextmanager
    def transaction(self, new: Registry) -> Iterator[Registry]:
        """Lock, read (or start from ``new``), yield for changes, write back on success."""
        with self.lock():
            reg = self.read() or new
            before = reg.copy()
            yield reg
            if reg != before:
                self.write(reg)
