"""The registry file: which models exist, in which state, with which bytes.

It is YAML that people read in code review and git merges line by line, so the format is
fixed: entries sorted by name, fields in a fixed order, one entry's change touching only that
entry's lines, and the same content always serialising to the same bytes (libyaml and pure
Python alike). Loading is safe only: no tag can build a Python object, duplicate keys are
refused, and every field is checked before anything else uses it.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .errors import InvalidNameError, RegistryError, about_registry
from .layout import registry_filename, remote_type_of
from .locks import FolderLock
from .names import check_key, check_name, check_sha256, key_sha256, object_key, show
from .tempfiles import write_bytes_atomic

FORMAT_VERSION = 1
MAX_REGISTRY_BYTES = 32 * 1024 * 1024  # ~100,000 entries; a larger file is an attack or an accident
_PIECE = 256 * 1024  # a registry is checked against the memo's bytes this much at a time
MAX_MODEL_BYTES = 1 << 50  # 1 PiB: sizes above this are nonsense, not models
STATES = ("local", "synced")
HEADER = (
    "# model_filer registry: commit this file, not the model files.\n"
    "# Written by model_filer; edit it with model-filer commands, not by hand.\n"
)
REMOTE_ID_RE = re.compile(r"[0-9a-f]{32}")
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


class Entries(dict[str, Entry]):
    """A registry's entries by name, noting which names changed since its text was built.

    A dump into a registry of 10,000 entries then re-sorts and re-joins nothing but the one
    entry it changed. Mutators other than item assignment and deletion mark everything. The
    lower-cased names are counted as they change (once asked for), so the case-twin check of
    a dump costs a lookup, not a pass over every name.
    """

    __slots__ = ("changed", "lower", "version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] | None = None  # since the text was built; None: everything
        self.version = 0  # counts changes, for "changed since?" questions
        self.lower: dict[str, int] | None = None  # lower-cased name -> how many; None: unknown

    def __setitem__(self, name: str, entry: Entry) -> None:
        lower = self.lower
        if lower is not None and name not in self:
            low = name.lower()
            lower[low] = lower.get(low, 0) + 1
        super().__setitem__(name, entry)
        self.version += 1
        if self.changed is not None:
            self.changed.add(name)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        lower = self.lower
        if lower is not None:
            low = name.lower()
            count = lower.pop(low, 0) - 1
            if count > 0:
                lower[low] = count
        self.version += 1
        if self.changed is not None:
            self.changed.add(name)

    def lowered(self) -> dict[str, int]:
        """How many names lower-case to each string (counted once, then kept in step)."""
        if self.lower is None:
            from collections import Counter

            # list() first: one C-level snapshot, even while another thread adds a name.
            self.lower = dict(Counter(map(str.lower, list(self))))
        return self.lower

    def _all_changed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.changed = None
        self.lower = None
        self.version += 1
        return getattr(super(), method)(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._all_changed("update", *args, **kwargs)

    def pop(self, *args: Any) -> Any:
        return self._all_changed("pop", *args)

    def popitem(self) -> tuple[str, Entry]:
        item: tuple[str, Entry] = self._all_changed("popitem")
        return item

    def setdefault(self, *args: Any) -> Any:
        return self._all_changed("setdefault", *args)

    def clear(self) -> None:
        self._all_changed("clear")

    def __ior__(self, other: Any) -> Entries:  # type: ignore[override,misc]
        self._all_changed("update", other)
        return self


class Registry:
    """A registry's content: the remote it belongs to and its entries by name.

    ``remote_id`` is the remote's identity when its address is not one (a local folder's
    ID file), so the same share mounted elsewhere is the same remote and another folder is not.
    """

    __slots__ = (
        "_body",
        "_invalid",
        "_texts",
        "entries",
        "remote_address",
        "remote_id",
        "remote_type",
    )

    def __init__(
        self,
        remote_type: str,
        remote_address: str,
        entries: dict[str, Entry] | None = None,
        remote_id: str | None = None,
    ) -> None:
        self.remote_type = remote_type
        self.remote_address = remote_address
        self.remote_id = remote_id
        self.entries = Entries(entries or ())
        # name -> (entry, its canonical UTF-8 text): an entry is written out once, not per
        # dump. Trusted only for the very Entry object it was made from (entries are immutable).
        self._texts: dict[str, tuple[Entry, bytes, bool]] = {}  # (and whether it validated)
        # The sorted names and their texts as last written, kept in step with ``entries``.
        self._body: tuple[list[str], list[bytes]] | None = None
        # Names in the body whose entry failed validation (only code can build one).
        self._invalid: set[str] = set()

    def _key(self) -> tuple[str, str, dict[str, Entry], str | None]:
        return (self.remote_type, self.remote_address, self.entries, self.remote_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registry) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Registry({self.remote_type!r}, {self.remote_address!r}, {dict(self.entries)!r}, "
            f"{self.remote_id!r})"
        )

    def copy(self) -> Registry:
        """A copy whose entries can change without touching this one."""
        new = Registry(self.remote_type, self.remote_address, self.entries, self.remote_id)
        new._texts = self._texts  # shared: each text is checked against its entry's identity
        if self.entries.lower is not None:
            new.entries.lower = dict(self.entries.lower)
        changed = self.entries.changed
        if self._body is not None and changed is not None:
            new._body = (list(self._body[0]), list(self._body[1]))
            new._invalid = set(self._invalid)
            new.entries.changed = set(changed)
        return new

    def _text(self, name: str) -> bytes:
        entry = self.entries[name]
        cached = self._texts.get(name)
        if cached is None or cached[0] is not entry:
            from .registry_text import entry_text

            text, valid = entry_text(entry)
            cached = self._texts[name] = (entry, text.encode(), valid)
        if cached[2]:
            self._invalid.discard(name)
        else:
            self._invalid.add(name)
        return cached[1]

    def _sorted_texts(self) -> list[bytes]:
        """Every entry's text in name order: rebuilt whole, or patched where names changed."""
        entries = self.entries
        changed = entries.changed
        if self._body is None or changed is None:
            if len(self._texts) > 2 * len(entries) + 64:  # forget removed entries now and then
                self._texts = {n: t for n, t in self._texts.items() if n in entries}
            names = sorted(entries)
            self._invalid = set()
            self._body = (names, [self._text(n) for n in names])
        else:
            names, chunks = self._body
            for name in changed:
                i = bisect.bisect_left(names, name)
                present = i < len(names) and names[i] == name
                if name not in entries:
                    if present:
                        del names[i], chunks[i]
                        self._texts.pop(name, None)
                        self._invalid.discard(name)
                elif present:
                    chunks[i] = self._text(name)
                else:
                    names.insert(i, name)
                    chunks.insert(i, self._text(name))
        entries.changed = set()
        return self._body[1]

    def case_twin(self, name: str) -> str | None:
        """Another entry's name that differs from ``name`` only in case (one file on macOS
        and Windows), if any: a lookup in the entries' lower-cased names."""
        entries = self.entries
        low = name.lower()
        count = entries.lowered().get(low, 0)
        if count == 0 or (count == 1 and name in entries):
            return None
        return next((n for n in list(entries) if n != name and n.lower() == low), None)

    def validated(self) -> bool:
        """Whether every entry of the text last made by :meth:`dumps` passed validation."""
        return self._body is not None and not self._invalid

    def remote_fields(self) -> dict[str, str]:
        """The ``remote:`` mapping as written: type, address, and the ID when known."""
        fields = {"type": self.remote_type, "address": self.remote_address}
        if self.remote_id is not None:
            fields["id"] = self.remote_id
        return fields

    def dumps(self, dumper: type[Any] | None = None) -> bytes:
        """Serialise deterministically: sorted entries, fixed field order, no flow style.

        The bytes are those of PyYAML's block style (``dumper``, default libyaml's), built
        from each entry's cached canonical text; passing ``dumper`` runs PyYAML itself.
        """
        if dumper is not None:
            doc = {
                "format": FORMAT_VERSION,
                "remote": self.remote_fields(),
                "models": {n: self.entries[n].to_yaml_dict() for n in sorted(self.entries)},
            }
            from . import yamlio

            return (HEADER + yamlio.dump(doc, dumper)).encode("utf-8")
        from .registry_text import header_text

        head = header_text(
            self.remote_type, self.remote_address, bool(self.entries), self.remote_id
        )
        parts = [head.encode()]
        parts += self._sorted_texts()
        return b"".join(parts)


def _restore(path: str | None) -> str:
    """How to get a registry back from git: with its real path when known."""
    if not path:
        return "Restore it from git"
    return f"Restore it with `git checkout HEAD -- {shlex.quote(path)}`"


def _fix(path: str | None) -> str:
    return f"{_restore(path)} or fix the entry."


def _field(
    data: dict[str, Any],
    key: str,
    kind: type,
    where: str,
    required: bool = True,
    path: str | None = None,
) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RegistryError(
            f"{where}: field {key!r} must be {kind.__name__}, got {show(value)}. {_fix(path)}"
        )
    return value


def _check_key_names_bytes(name: str, key: str, sha256: str, here: str, path: str | None) -> None:
    """Refuse a key that does not name the entry's bytes: the remote layout (names.py)
    says which hash each key form names, so every form is judged by this one check."""
    named = key_sha256(key)
    if named == sha256:
        return
    if named is None:
        raise RegistryError(
            f"{here}: key {key} is not a key model_filer writes (for these bytes it "
            f"would be {object_key(name, sha256)}). {_fix(path)}"
        )
    raise RegistryError(
        f"{here}: its key {key} holds the bytes with sha256 {named}, but its sha256 field says "
        f"{sha256}: one of them was edited by hand. {_fix(path)}"
    )


def _parse_entry(name: Any, data: Any, where: str, path: str | None = None) -> Entry:
    """Validate one entry; ``path`` (the registry's real path, when known) goes into the fix."""
    fix = _fix(path)
    try:
        check_name(name)
    except InvalidNameError as exc:
        raise RegistryError(f"{where}: {exc} {fix}") from None
    here = f"{where}: entry {show(name)}"
    if not isinstance(data, dict):
        raise RegistryError(f"{here} must be a mapping of fields. {fix}")
    unknown = set(data) - set(_ENTRY_FIELDS)
    if unknown:
        raise RegistryError(
            f"{here} has unknown fields {sorted(map(str, unknown))}. "
            "Upgrade model_filer (`pip install -U ds-model-filer`) or fix the file."
        )
    state = _field(data, "state", str, here, path=path)
    if state not in STATES:
        raise RegistryError(f"{here}: state must be 'local' or 'synced', got {show(state)}. {fix}")
    size = _field(data, "size", int, here, path=path)
    if not 0 <= size <= MAX_MODEL_BYTES:
        raise RegistryError(f"{here}: size {size} is out of range (0 to 1 PiB). {fix}")
    key = _field(data, "key", str, here, required=state == "synced", path=path)
    library = _field(data, "library", dict, here, required=False, path=path)
    try:
        check_sha256(data.get("sha256"), here)
    except InvalidNameError as exc:
        raise RegistryError(f"{exc} {fix}") from None
    try:
        if key is not None:
            check_key(key, here)  # its message already says how to fix it
    except InvalidNameError as exc:
        raise RegistryError(str(exc)) from None
    if key is not None:
        _check_key_names_bytes(name, key, data["sha256"], here, path)
    if library is not None and (
        set(library) != {"name", "version"}
        or not all(isinstance(library[k], str) for k in ("name", "version"))
    ):
        raise RegistryError(f"{here}: library must be {{name: str, version: str}}. {fix}")
    imports = _field(data, "imports", list, here, required=False, path=path)
    if imports is not None and not all(
        isinstance(i, str) and len(i) <= 512 and _IMPORT_RE.fullmatch(i) for i in imports
    ):
        raise RegistryError(f"{here}: imports must be a list of module.qualname names. {fix}")
    return Entry(
        name=name,
        state=state,
        sha256=data["sha256"],
        size=size,
        key=key,
        serializer=_field(data, "serializer", str, here, path=path),
        created=_field(data, "created", str, here, path=path),
        python=_field(data, "python", str, here, path=path),
        library=library,
        imports=imports,
    )


def conflict_advice(where: str, path: str | None) -> str:
    """What to do about a registry left with conflict markers: merge it again with the
    driver, which keeps both sides' models (``git checkout --ours`` would drop theirs)."""
    quoted = shlex.quote(path) if path else "the registry"
    return (
        f"{where}: unresolved merge conflict markers. To merge it entry by entry, keeping both "
        "branches' models: set up the registry merge driver (`model-filer install-hooks "
        "--merge-driver-only`; if `model-filer` is not found, `pip install ds-model-filer` "
        f"first), then `git checkout -m -- {quoted}` (pre-commit's checkout hook then reports "
        "'Unmerged files' until `git add`: expected). Markers left after that surround a model "
        "changed differently on both branches: keep one of its two versions, delete the marker "
        f"lines, then `git add {quoted}`."
    )


def parse(
    text: bytes, where: str, loader: type[Any] | None = None, filename: str | None = None
) -> Registry:
    """Parse and validate a registry's bytes; raise :class:`RegistryError` on anything odd.

    ``filename`` (the file's path) must then name the remote type the content records:
    a ``.local_registry`` that says ``s3`` is refused, not trusted. The error's ``path`` is
    ``filename``, else ``where``.
    """
    with about_registry(filename or where):
        return _parse(text, where, loader, filename)


def _parse(text: bytes, where: str, loader: type[Any] | None, filename: str | None) -> Registry:
    if len(text) > MAX_REGISTRY_BYTES:
        raise RegistryError(
            f"{where}: {len(text)} bytes is too large for a registry "
            f"(limit {MAX_REGISTRY_BYTES}). Restore it from git."
        )
    if b"\n<<<<<<< " in b"\n" + text or b"\n>>>>>>> " in text:
        raise RegistryError(conflict_advice(where, filename))
    if loader is None:
        from .registry_text import parse_canonical

        fast = parse_canonical(text, where, filename)
        if fast is not None:
            return fast
    from . import yamlio

    try:
        doc = yamlio.load(text, loader)
    except yamlio.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise RegistryError(
            f"{where}: not valid registry YAML ({detail}). {_restore(filename)}."
        ) from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: a registry must be a YAML mapping. Restore it from git.")
    if type(doc.get("format")) is not int or doc["format"] != FORMAT_VERSION:
        raise RegistryError(
            f"{where}: unsupported registry format {show(doc.get('format'))} "
            f"(this model_filer reads {FORMAT_VERSION}). "
            "Upgrade with `pip install -U ds-model-filer`."
        )
    remote = _field(doc, "remote", dict, where, path=filename)
    rtype = _field(remote, "type", str, where + " remote", path=filename)
    address = _field(remote, "address", str, where + " remote", path=filename)
    remote_id = _field(remote, "id", str, where + " remote", required=False, path=filename)
    if remote_id is not None and not REMOTE_ID_RE.fullmatch(remote_id):
        raise RegistryError(f"{where}: remote id {show(remote_id)} is malformed. {_fix(filename)}")
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise RegistryError(f"{where}: 'models' must be a mapping. Restore it from git.")
    named = remote_type_of(filename) if filename else None
    if named is not None and named != rtype:
        raise RegistryError(
            f"{where}: records remote type {show(rtype)} but its name is for {named!r}. "
            f"{_restore(filename)}."
        )
    entries = {name: _parse_entry(name, data, where, filename) for name, data in models.items()}
    return Registry(rtype, address, entries, remote_id)


class _Memo(NamedTuple):
    """The registry last read or written at a path, with the exact bytes it came from."""

    data: bytes
    reg: Registry
    state: tuple[Any, ...]  # _state(reg) then: any change to reg since makes the memo void
    stat: tuple[int, ...]  # the file's stat then, for peek only


# A hook or CLI command reads the same file several times, and parsing (not reading) is
# what costs; a dump's transaction takes the registry over instead of parsing 3 MB again.
# Keyed by the exact bytes, so never stale.
_MEMO: dict[str, _Memo] = {}
# Orders the memo's hand-overs between threads: a transaction takes the registry out under it,
# and a reader copies it under it, so no reader copies (or puts back) what a transaction is
# changing.
_MEMO_LOCK = threading.Lock()


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _state(reg: Registry) -> tuple[Any, ...]:
    entries = reg.entries
    return (id(entries), entries.version, reg.remote_fields())


def _remember(path: Path, data: bytes, reg: Registry, st: os.stat_result) -> None:
    """Make ``reg`` the memo of ``path`` (``reg`` is then shared: not to change)."""
    reg.entries.lowered()  # built by its owner now: peekers in other threads only look
    memo = _Memo(data, reg, _state(reg), _stat_key(st))
    with _MEMO_LOCK:
        _MEMO[str(path)] = memo


def _take(path: Path, data: bytes) -> Registry | None:
    """The memo of ``path`` if it is of ``data``, removed: the caller now owns it."""
    with _MEMO_LOCK:
        reg = _recall(path, data)
        _MEMO.pop(str(path), None)  # no reader may share what the taker changes
    return reg


def _recall(path: Path, data: bytes | None = None) -> Registry | None:
    """The memo of ``path`` if it is of ``data`` (any bytes when ``None``) and unchanged."""
    memo = _MEMO.get(str(path))
    if memo is None or (data is not None and memo.data != data) or _state(memo.reg) != memo.state:
        return None
    return memo.reg


def _holds(fh: io.BufferedReader, data: bytes) -> bool:
    """Whether the open file holds exactly ``data`` from where it is to its end.

    Compared a piece at a time: reading a 4 MB registry whole allocates 4 MB of fresh pages
    on every transaction, ~1 ms of page faults here, just to find the bytes we wrote.
    """
    view = memoryview(bytearray(_PIECE))
    at = 0
    while n := fh.readinto(view):
        if not data.startswith(view[:n], at):
            return False
        at += n
    return at == len(data)


def _stat_if_holds(path: Path, data: bytes) -> os.stat_result | None:
    """The file's stat if it holds exactly ``data`` (a size that differs needs no read)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            return st if st.st_size == len(data) and _holds(fh, data) else None
    except FileNotFoundError:
        return None


def _read_bytes(path: Path, known: bytes | None = None) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes (bounded: a huge file is refused, not loaded) and its stat.

    When the file holds exactly ``known`` (the memo's bytes), ``known`` itself is returned,
    so the memo's check is an identity test.
    """
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if known is not None and st.st_size == len(known):
                if _holds(fh, known):
                    return known, st
                fh.seek(0)
            # Sized to the file: asking for the whole bound allocates 32 MiB on every read.
            text = fh.read(min(st.st_size, MAX_REGISTRY_BYTES) + 1)
            if len(text) > st.st_size:  # it grew meanwhile (written in place by someone)
                text += fh.read(MAX_REGISTRY_BYTES + 1 - len(text))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(
            f"{path}: cannot read the registry ({exc.strerror}).", path=path
        ) from None
    return text, st


def _known(path: Path) -> bytes | None:
    memo = _MEMO.get(str(path))
    return None if memo is None else memo.data


def read(path: Path) -> Registry | None:
    """Read the registry at ``path``; ``None`` when the file does not exist."""
    got = _read_bytes(path, _known(path))
    if got is None:
        return None
    text, st = got
    with _MEMO_LOCK:  # (a transaction takes the memo out under this lock before changing it)
        reg = _recall(path, text)
        if reg is not None:
            _MEMO[str(path)] = _MEMO[str(path)]._replace(stat=_stat_key(st))
            return reg.copy()
    reg = parse(text, str(path), filename=str(path))
    _remember(path, text, reg, st)
    return reg.copy()


def peek(path: Path) -> Registry | None:
    """The registry at ``path`` for an early, advisory look: not to change, not to trust.

    When the file's stat is that of the bytes last read or written here, the registry they
    held is returned without reading 3 MB again; else the file is read. Only for checks that
    are made again under the lock on bytes read then (a dump's early refusal).
    """
    memo, reg = _MEMO.get(str(path)), _recall(path)
    if memo is not None and reg is not None:
        with contextlib.suppress(OSError):
            if _stat_key(os.stat(path)) == memo.stat:
                return reg
    return read(path)


class RegistryFile:
    """The registry of one model folder, with locked read-modify-write."""

    def __init__(
        self,
        local_dir: Path,
        remote_type: str,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.local_dir = local_dir
        self.path = local_dir / registry_filename(remote_type)
        self.remote_type = remote_type
        self._on_write = on_write  # told the bytes of each write made from validated entries
        self._written: tuple[Any, ...] | None = None  # _state() of the registry last written

    def lock(self) -> FolderLock:
        """The folder's lock: held for every registry change and file rename."""
        return FolderLock.of(self.local_dir, "registry")

    def read(self) -> Registry | None:
        return read(self.path)

    def peek(self) -> Registry | None:
        """See :func:`peek`."""
        return peek(self.path)

    def write(self, reg: Registry) -> None:
        """Replace the file with ``reg`` (call with the lock held); unchanged bytes are kept."""
        data = reg.dumps()
        st = _stat_if_holds(self.path, data)  # unchanged bytes: keep the mtime, skip the write
        if st is None:
            write_bytes_atomic(self.path, self.local_dir, data, "registry")
            st = os.stat(self.path)
        # The next read of these bytes needs no parse, nor a copy: we made them from ``reg``
        # (a change to ``reg`` after this voids the memo; the lock is held for the stat).
        _remember(self.path, data, reg, st)
        self._written = _state(reg)
        if self._on_write is not None and reg.validated():
            self._on_write(data)

    @contextlib.contextmanager
    def transaction(self, new: Registry) -> Iterator[Registry]:
        """Lock, read (or start from ``new``), yield for changes, write back on success.

        The registry read is this process's memo of those exact bytes when it has one, taken
        over rather than copied (10,000 entries); it is given back if nothing changed. A
        block that already wrote ``reg`` itself (to order the write before a rename) and
        changed nothing since is not written again. Whether anything changed is known from
        :class:`Entries`' change count, without copying and comparing 10,000 entries.
        """
        with self.lock():
            got = _read_bytes(self.path, _known(self.path))
            reg = new
            if got is not None:
                taken = _take(self.path, got[0])
                reg = taken or parse(got[0], str(self.path), filename=str(self.path))
            state = _state(reg)
            self._written = None
            try:
                yield reg
            except BaseException:
                if got is not None and _state(reg) == state:  # untouched: still those bytes
                    _remember(self.path, got[0], reg, got[1])
                raise
            now = _state(reg)
            if now != state and now != self._written:
                self.write(reg)
            elif self._written is None and got is not None:
                _remember(self.path, got[0], reg, got[1])
