"""The registry's model: its entries, the remote it belongs to, and the checks on every field.

A registry is YAML that people read in code review and git merges line by line; this module
knows its content, not its text (:mod:`model_filer.registry.codec` reads and writes that). Every
field is checked here before anything else uses it, whichever way the text was read.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import Any, NamedTuple

from model_filer.errors import InvalidNameError, RegistryError
from model_filer.fs.layout import remote_type_of
from model_filer.registry.names import (
    check_key,
    check_name,
    check_sha256,
    is_storage_key,
    key_sha256,
    object_key,
    show,
)

FORMAT_VERSION = 1  # a registry is written with the lowest format that holds its content
STORAGE_FORMAT = 3  # entries whose key is a chunked-layout key (docs/storage-format.md)
MAX_FORMAT = STORAGE_FORMAT  # the newest format this model_filer reads
MAX_REGISTRY_BYTES = 32 * 1024 * 1024  # ~100,000 entries; a larger file is an attack or an accident
MAX_MODEL_BYTES = 1 << 50  # 1 PiB: sizes above this are nonsense, not models
STATES = ("local", "synced")
HEADER = (
    "# model_filer registry: commit this file, not the model files.\n"
    "# Written by model_filer; edit it with model-filer commands, not by hand.\n"
)
REMOTE_ID_RE = re.compile(r"[0-9a-f]{32}")
ENTRY_FIELDS = (
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
IMPORT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


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
        data = {f: getattr(self, f) for f in ENTRY_FIELDS}
        return {k: v for k, v in data.items() if v is not None}


class Entries(dict[str, Entry]):
    """A registry's entries by name, noting which names changed since a writer marked them.

    A dump into a registry of 10,000 entries then re-sorts and re-joins nothing but the one
    entry it changed (:mod:`model_filer.registry.codec`). Mutators other than item assignment
    and deletion mark everything. The lower-cased names are counted as they change (once asked
    for), so the case-twin check of a dump costs a lookup, not a pass over every name.
    """

    __slots__ = ("changed", "lower", "marked", "version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] | None = None  # names changed since ``marked``; None: everything
        self.version = 0  # counts changes, for "changed since?" questions
        self.marked = -1  # the version at the last mark()
        self.lower: dict[str, int] | None = None  # lower-cased name -> how many; None: unknown

    def mark(self) -> int:
        """Start noting changed names afresh (a writer's text is now of this version)."""
        self.changed = set()
        self.marked = self.version
        return self.version

    def changed_since(self, version: int) -> set[str] | None:
        """The names changed since ``version``, when that was the last :meth:`mark`."""
        return self.changed if self.marked == version else None

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

    __slots__ = ("entries", "remote_address", "remote_id", "remote_type")

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
        if self.entries.lower is not None:
            new.entries.lower = dict(self.entries.lower)
        return new

    def state(self) -> tuple[Any, ...]:
        """Changes whenever the content may have: compared, not read."""
        return (id(self.entries), self.entries.version, self.remote_fields())

    def case_twin(self, name: str) -> str | None:
        """Another entry's name that differs from ``name`` only in case (one file on macOS
        and Windows), if any: a lookup in the entries' lower-cased names."""
        entries = self.entries
        low = name.lower()
        count = entries.lowered().get(low, 0)
        if count == 0 or (count == 1 and name in entries):
            return None
        return next((n for n in list(entries) if n != name and n.lower() == low), None)

    def remote_fields(self) -> dict[str, str]:
        """The ``remote:`` mapping as written: type, address, and the ID when known."""
        fields = {"type": self.remote_type, "address": self.remote_address}
        if self.remote_id is not None:
            fields["id"] = self.remote_id
        return fields


def format_needed(reg: Registry) -> int:
    """The registry format ``reg`` must be written with: :data:`STORAGE_FORMAT` once an entry
    names chunked-layout bytes (an older model_filer then refuses the whole file, never
    loading a wrong model), else :data:`FORMAT_VERSION`."""
    entries = list(reg.entries.values())  # (a snapshot: another thread may add an entry)
    if any(e.key is not None and is_storage_key(e.key) for e in entries):
        return STORAGE_FORMAT
    return FORMAT_VERSION


def restore(path: str | None) -> str:
    """How to get a registry back from git: with its real path when known."""
    if not path:
        return "Restore it from git"
    return f"Restore it with `git checkout HEAD -- {shlex.quote(path)}`"


def _fix(path: str | None) -> str:
    return f"{restore(path)} or fix the entry."


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


def parse_entry(name: Any, data: Any, where: str, path: str | None = None) -> Entry:
    """Validate one entry; ``path`` (the registry's real path, when known) goes into the fix."""
    fix = _fix(path)
    try:
        check_name(name)
    except InvalidNameError as exc:
        raise RegistryError(f"{where}: {exc} {fix}") from None
    here = f"{where}: entry {show(name)}"
    if not isinstance(data, dict):
        raise RegistryError(f"{here} must be a mapping of fields. {fix}")
    unknown = set(data) - set(ENTRY_FIELDS)
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
        isinstance(i, str) and len(i) <= 512 and IMPORT_RE.fullmatch(i) for i in imports
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


def from_doc(doc: Any, where: str, filename: str | None = None) -> Registry:
    """Validate a registry parsed as plain data; raise :class:`RegistryError` on anything odd.

    ``filename`` (the file's path) must then name the remote type the content records:
    a ``.local_registry`` that says ``s3`` is refused, not trusted.
    """
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: a registry must be a YAML mapping. Restore it from git.")
    if type(doc.get("format")) is not int or not FORMAT_VERSION <= doc["format"] <= MAX_FORMAT:
        raise RegistryError(
            f"{where}: unsupported registry format {show(doc.get('format'))} "
            f"(this model_filer reads {FORMAT_VERSION} to {MAX_FORMAT}). "
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
            f"{restore(filename)}."
        )
    entries = {name: parse_entry(name, data, where, filename) for name, data in models.items()}
    return Registry(rtype, address, entries, remote_id)
