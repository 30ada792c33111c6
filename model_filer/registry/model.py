"""The registry's model: its entries, the remote it belongs to, and the checks on every field.

A registry is YAML that people read in code review and git merges line by line; this module
knows its content, not its text (:mod:`model_filer.registry.codec` reads and writes that). Every
field is checked here before anything else uses it, whichever way the text was read.
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

from model_filer.errors import AliasError, InvalidMetadataError, InvalidNameError, RegistryError
from model_filer.fs.layout import remote_type_of
from model_filer.registry.names import (
    META_NAME_RULE,
    STORAGE_DIR,
    check_key,
    check_name,
    check_sha256,
    is_storage_key,
    key_sha256,
    meta_name_is_valid,
    object_key,
    show,
)

# Registry formats: 1, entries only; 2, entry metadata and aliases (issue 22); 3, entries whose
# key is a chunked-layout key (issue 21, docs/storage-format.md); 4, entries whose key is a map
# of chunks in packs (the layout's second form: a release that reads format 3 would take such a
# key for a manifest it cannot parse, so it must refuse the file). A file is written in the oldest
# format that holds its content (format_needed), so a team that uses no newer feature stays
# readable by older releases, and one that does is refused by them, never rewritten without what
# they cannot read (or, for format 3, made to load a wrong model).
NEWEST_FORMAT = 4
_MAPS = f"{STORAGE_DIR}/maps/"
TOP_LEVEL_KEYS = ("format", "remote", "aliases", "models")
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
    "metrics",
    "params",
    "tags",
    "description",
)
META_FIELDS = ENTRY_FIELDS[-4:]  # metrics, params, tags, description
# Metadata an entry may carry: 64 names and 2 KiB of names and values (a paragraph of description
# and a few dozen metrics). Its YAML (~10 bytes more a line) then stays under ~2.7 KiB, so a
# registry of 10,000 entries that all use it (~0.35 KiB each without) stays under
# MAX_REGISTRY_BYTES (32 MiB), which a registry must fit to be read at all.
MAX_METADATA_NAMES = 64
MAX_METADATA_BYTES = 2048
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
    metrics : dict or None
        How good the model is: name -> finite int or float, sorted by name.
    params : dict or None
        How it was made: name -> str, int, float, bool or None, sorted by name.
    tags : dict or None
        name -> str, sorted by name.
    description : str or None
        Free text.
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
    metrics: dict[str, int | float] | None = None
    params: dict[str, str | int | float | bool | None] | None = None
    tags: dict[str, str] | None = None
    description: str | None = None

    def has_metadata(self) -> bool:
        """Whether it carries metrics, params, tags or a description (registry format 2)."""
        return self[-4:] != _NO_METADATA

    def format(self) -> int:
        """The oldest registry format that can hold this entry: 4 when its key is a map of
        packed chunks, 3 when it is another chunked-layout key, 2 when it carries metadata,
        else 1."""
        if self.key is not None and is_storage_key(self.key):
            return 4 if self.key.startswith(_MAPS) else 3
        return 2 if self[-4:] != _NO_METADATA else 1

    def to_yaml_dict(self) -> dict[str, Any]:
        """The fields as written, in order; metadata mappings sorted by name."""
        data = {f: getattr(self, f) for f in ENTRY_FIELDS}
        for field in META_FIELDS[:3]:
            if isinstance(data[field], dict):
                data[field] = dict(sorted(data[field].items()))
        return {k: v for k, v in data.items() if v is not None}


class Entries(dict[str, Entry]):
    """A registry's entries by name, noting which names changed since a writer marked them.

    A dump into a registry of 10,000 entries then re-sorts and re-joins nothing but the one
    entry it changed (:mod:`model_filer.registry.codec`). Mutators other than item assignment
    and deletion mark everything. The lower-cased names are counted as they change (once asked
    for), so the case-twin check of a dump costs a lookup, not a pass over every name.
    """

    __slots__ = ("changed", "formats", "lower", "marked", "version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] | None = None  # names changed since ``marked``; None: everything
        self.version = 0  # counts changes, for "changed since?" questions
        self.marked = -1  # the version at the last mark()
        self.lower: dict[str, int] | None = None  # lower-cased name -> how many; None: unknown
        # How many entries need each registry format (index 1-4); None: not counted yet.
        self.formats: list[int] | None = None

    def mark(self) -> int:
        """Start noting changed names afresh (a writer's text is now of this version)."""
        self.changed = set()
        self.marked = self.version
        return self.version

    def changed_since(self, version: int) -> set[str] | None:
        """The names changed since ``version``, when that was the last :meth:`mark`."""
        return self.changed if self.marked == version else None

    def __setitem__(self, name: str, entry: Entry) -> None:
        formats = self.formats
        if formats is not None:
            old = self.get(name)
            if old is not None:
                formats[old.format()] -= 1
            formats[entry.format()] += 1
        lower = self.lower
        if lower is not None and name not in self:
            low = name.lower()
            lower[low] = lower.get(low, 0) + 1
        super().__setitem__(name, entry)
        self.version += 1
        if self.changed is not None:
            self.changed.add(name)

    def __delitem__(self, name: str) -> None:
        if self.formats is not None and name in self:
            self.formats[self[name].format()] -= 1
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

    def format(self) -> int:
        """The oldest registry format that holds every entry (the entries' formats counted
        once, then kept in step): a dump's format_needed is a lookup, not a pass over 10,000
        entries."""
        if self.formats is None:
            counts = Counter(map(Entry.format, list(self.values())))
            self.formats = [0, counts[1], counts[2], counts[3], counts[4]]
        formats = self.formats
        return next(f for f in (4, 3, 2) if formats[f]) if any(formats[2:]) else 1

    def _all_changed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.changed = None
        self.lower = None
        self.formats = None
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

    __slots__ = ("aliases", "entries", "remote_address", "remote_id", "remote_type")

    def __init__(
        self,
        remote_type: str,
        remote_address: str,
        entries: dict[str, Entry] | None = None,
        remote_id: str | None = None,
        aliases: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.remote_type = remote_type
        self.remote_address = remote_address
        self.remote_id = remote_id
        self.entries = Entries(entries or ())
        # alias -> (model name, sha256): the bytes it named when set, so that other bytes
        # under the same name later are noticed, not silently followed (registry format 2)
        self.aliases: dict[str, tuple[str, str]] = dict(aliases or ())

    def _key(self) -> tuple[Any, ...]:
        return (self.remote_type, self.remote_address, self.entries, self.remote_id, self.aliases)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registry) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Registry({self.remote_type!r}, {self.remote_address!r}, {dict(self.entries)!r}, "
            f"{self.remote_id!r}, {self.aliases!r})"
        )

    def copy(self) -> Registry:
        """A copy whose entries can change without touching this one."""
        new = Registry(
            self.remote_type, self.remote_address, self.entries, self.remote_id, self.aliases
        )
        if self.entries.lower is not None:
            new.entries.lower = dict(self.entries.lower)
        if self.entries.formats is not None:
            new.entries.formats = list(self.entries.formats)
        return new

    def state(self) -> tuple[Any, ...]:
        """Changes whenever the content may have: compared, not read."""
        aliases = tuple(self.aliases.items())
        return (id(self.entries), self.entries.version, self.remote_fields(), aliases)

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


_NO_METADATA = (None, None, None, None)


def format_needed(reg: Registry) -> int:
    """The oldest registry format that holds ``reg``'s content: one line per feature."""
    needed = reg.entries.format()  # 2: metadata; 3: chunked-layout keys; 4: maps
    return max(needed, 2) if reg.aliases else needed


def plain_value(value: object) -> object:
    """A numpy scalar (``np.float64(0.9)``, ``np.int64(3)``, ``np.bool_``) as the Python value
    it holds; anything else as it is. (numpy is never imported: its scalars say who they are.)"""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def _finite(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _printable(value: object) -> bool:
    # A tag or a param is one short value on its own line: no control character hides in it,
    # and no newline or tab (str.isprintable refuses them all, and U+2028).
    return type(value) is str and value.isprintable()


def _paragraph(value: object) -> bool:
    # A description may be a paragraph: lines and tabs, but no other control character.
    return type(value) is str and value.replace("\n", "").replace("\t", "").isprintable()


_EXAMPLES = {"metrics": "{'auc': 0.91}", "params": "{'lr': 0.01}", "tags": "{'team': 'growth'}"}
# Each field's values: (accepted?, what it takes, how to fix another value).
_KINDS = {
    "metrics": (_finite, "a finite int or float (not a bool, NaN or infinity)", "float(x)"),
    "params": (
        lambda v: v is None or type(v) is bool or _finite(v) or _printable(v),
        "a str of printable characters (no newline or tab), int, finite float, bool or None",
        "str(x)",
    ),
    "tags": (
        _printable,
        "a str of printable characters (no newline, tab or other control character)",
        "str(x) on one line",
    ),
}


def _checked_mapping(field: str, given: object, where: str) -> dict[str, Any] | None:
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise InvalidMetadataError(
            f"{where}{field} must be a dict of name -> value, got {show(given)}. Pass e.g. "
            f"{field}={_EXAMPLES[field]}."
        )
    accepted, kind, fix = _KINDS[field]
    checked = {}
    for name, raw in given.items():
        if not meta_name_is_valid(name):
            raise InvalidMetadataError(
                f"{where}{field}: invalid name {show(name)}. Use {META_NAME_RULE}."
            )
        value = plain_value(raw)
        if not accepted(value):
            raise InvalidMetadataError(
                f"{where}{field}[{name!r}] is {show(raw)}: a {field[:-1]} is {kind}. "
                f"Pass e.g. {fix}, or leave it out."
            )
        checked[name] = value
    return dict(sorted(checked.items())) or None


def metadata_size(
    mappings: tuple[dict[str, Any] | None, ...], description: object
) -> tuple[int, int]:
    """How many names, and how many bytes of names and values, checked metadata holds."""
    names = size = 0
    for mapping in mappings:
        if mapping:
            names += len(mapping)
            size += sum(len(k) + len(str(v).encode("utf-8", "replace")) for k, v in mapping.items())
    if isinstance(description, str):
        size += len(description.encode("utf-8", "replace"))
    return names, size


def check_metadata(
    metrics: object = None,
    params: object = None,
    tags: object = None,
    description: object = None,
    where: str = "",
) -> tuple[Any, Any, Any, str | None]:
    """Metrics, params, tags and description as an :class:`Entry` holds them, or raise.

    The one check of metadata, whether it comes from a caller or from a registry's text:
    names follow :data:`META_NAME_RULE`; numpy scalars become plain numbers; mappings are
    sorted by name, and an empty one (or description) is ``None``; at most
    :data:`MAX_METADATA_NAMES` names and :data:`MAX_METADATA_BYTES` of names and values.
    ``where`` prefixes the messages.

    Raises
    ------
    InvalidMetadataError
        Naming the field, the name and what it takes.
    """
    given = (metrics, params, tags)
    checked = tuple(_checked_mapping(f, v, where) for f, v in zip(_KINDS, given, strict=True))
    if description is not None and not _paragraph(description):
        raise InvalidMetadataError(
            f"{where}description must be a str of printable characters, got {show(description)}."
            " Pass e.g. str(x), without control characters (newlines and tabs may stay)."
        )
    names, size = metadata_size(checked, description)
    if names > MAX_METADATA_NAMES or size > MAX_METADATA_BYTES:
        raise InvalidMetadataError(
            f"{where}metadata of {names} names and {size} bytes is over the bound of an entry "
            f"({MAX_METADATA_NAMES} names, {MAX_METADATA_BYTES} bytes of names and values, "
            "which keeps a registry of 10,000 models readable). Keep the few that say which "
            "model is better, and the rest in your experiment tracker."
        )
    text = description if isinstance(description, str) and description else None  # "": none
    return (*checked, text)  # type: ignore[return-value]


def _without_deletions(given: object) -> object:
    if not isinstance(given, Mapping):
        return given  # (checked, and refused with its message, as it is)
    return {k: v for k, v in given.items() if v is not None}


def _merged(current: dict[str, Any] | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(current or {})
    for name, value in (given or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def annotated(
    entry: Entry,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Entry:
    """``entry`` with metadata merged in per name: a value of ``None`` deletes its name, a
    description of ``""`` deletes it, ``None`` leaves a field as it is. The given values are
    checked before anything is merged, then the merged whole (its bound). Bytes untouched.

    Raises
    ------
    InvalidMetadataError
    """
    kept = [_without_deletions(given) for given in (metrics, params, tags)]
    check_metadata(kept[0], kept[1], kept[2], description)
    merged = [
        _merged(entry.metrics, metrics),
        _merged(entry.params, params),
        _merged(entry.tags, tags),
    ]
    text = entry.description if description is None else description or None
    checked = check_metadata(merged[0], merged[1], merged[2], text)
    return entry._replace(**dict(zip(META_FIELDS, checked, strict=True)))


def newer_release(where: str, found: str) -> RegistryError:
    """The refusal of content only a newer model_filer writes: what was found, and how to upgrade
    (the library, and the ``rev:`` that pins the hooks for pre-commit users)."""
    return RegistryError(
        f"{where}: written by a newer model_filer ({found}); upgrade: "
        "`pip install -U ds-model-filer`; pre-commit users: bump `rev:` for model_filer in "
        ".pre-commit-config.yaml."
    )


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
        raise newer_release(here, f"unknown fields {show(sorted(map(str, unknown)))}")
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
    try:
        metrics, params, tags, description = (data.get(f) for f in META_FIELDS)
        metadata = check_metadata(metrics, params, tags, description, f"{here}: ")
    except InvalidMetadataError as exc:
        raise RegistryError(f"{exc} {fix}") from None
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
    )._replace(**dict(zip(META_FIELDS, metadata, strict=True)))


def alias_text(target: tuple[str, str]) -> str:
    """An alias's value as written: ``<model>@<sha256>``, one line, so a move is one line."""
    return f"{target[0]}@{target[1]}"


def parse_aliases(aliases: Any, where: str, path: str | None = None) -> dict[str, tuple[str, str]]:
    """Validate the ``aliases:`` mapping: alias -> ``<model>@<sha256>``, both names following
    the model-name rule. (Whether the entry is there with those bytes is the commit hook's and
    ``load``'s question: the file itself may hold a dangling alias.)"""
    if not isinstance(aliases, dict):
        raise RegistryError(f"{where}: 'aliases' must be a mapping. {restore(path)}.")
    checked = {}
    for alias, value in aliases.items():
        model, _, sha = value.rpartition("@") if isinstance(value, str) else ("", "", "")
        try:
            check_name(alias)
            check_name(model)
            check_sha256(sha, f"alias {show(alias)}")
        except InvalidNameError as exc:
            raise RegistryError(
                f"{where}: alias {show(alias)} must be `<model>@<sha256>`, got {show(value)} "
                f"({exc}). {restore(path)}, or set the alias again."
            ) from None
        checked[alias] = (model, sha)
    return dict(sorted(checked.items()))


class Alias(NamedTuple):
    """An alias (``@name`` where it is used): the model it names and the bytes it named when set.

    Attributes
    ----------
    name : str
        The alias, without ``@``.
    model : str
        The entry's name.
    sha256 : str
        The sha256 of the bytes the alias was set to: other bytes under the same name later
        are not followed silently (see :func:`alias_problem`).
    """

    name: str
    model: str
    sha256: str


def alias_fix(alias: str, model: str | None, folder: str | None = None) -> str:
    """How to point an alias again (at ``model``; at another one when ``None``) or drop it,
    in Python and on the command line. ``folder``: the model folder as the reader would pass
    it from where they stand; the command names it with ``--dir`` (shell-quoted) unless it is
    ``None`` or the current folder, so that it works when pasted."""
    again, shown = ("again", repr(model)) if model else ("at another model", "MODEL")
    where = f" --dir {shlex.quote(folder)}" if folder not in (None, "", ".") else ""
    return (
        f"Point it {again} with `filer.set_alias({alias!r}, {shown})` or `model-filer alias"
        f"{where} {alias} {model or 'MODEL'}` (or drop it: `filer.set_alias({alias!r}, None)`)."
    )


def alias_problem(reg: Registry, alias: str, folder: str | None = None) -> str | None:
    """Why ``@alias`` cannot be used in ``reg`` (no entry, or the entry holds other bytes
    than the alias named), ending with the fix (its command with ``--dir folder``, see
    :func:`alias_fix`); ``None`` when it can."""
    model, sha = reg.aliases[alias]
    entry = reg.entries.get(model)
    if entry is None:
        problem = f"@{alias} names {model!r}, which the registry no longer has."
    elif entry.sha256 != sha:
        problem = (
            f"@{alias} names {model!r} as it was (sha256 {sha[:12]}...), but {model!r} now "
            f"holds other bytes ({entry.sha256[:12]}...): an alias does not follow a new "
            "dump silently."
        )
    else:
        return None
    return f"{problem} {alias_fix(alias, model if entry is not None else None, folder)}"


def alias_problems(reg: Registry, folder: str | None = None) -> list[str]:
    """Why each alias a commit must not record cannot be used: gone or other bytes
    (:func:`alias_problem`, its fix naming ``--dir folder``), or a ``local`` model, which no
    other clone can load."""
    found = []
    for alias in sorted(reg.aliases):
        problem = alias_problem(reg, alias, folder)
        model = reg.aliases[alias][0]
        if problem is None and reg.entries[model].state == "local":
            problem = f"@{alias} names {model!r}, which is local: push it, and the alias holds."
        if problem is not None:
            found.append(problem)
    return found


def aliased(reg: Registry, name: str, where: str) -> Entry:
    """The entry ``@alias`` (``name`` with its ``@``) names in ``reg``; :class:`AliasError`
    if the alias is unknown or dangling (see :func:`alias_problem`)."""
    alias = name[1:]
    if alias not in reg.aliases:
        known = ", ".join(f"@{a}" for a in sorted(reg.aliases)) or "none"
        raise AliasError(
            f"{where} has no alias {show(name)} (its aliases: {known}). Set one with "
            f"`filer.set_alias({alias!r}, MODEL)` or `model-filer alias {alias} MODEL`."
        )
    problem = alias_problem(reg, alias)
    if problem is not None:
        raise AliasError(f"{where}: {problem}")
    return reg.entries[reg.aliases[alias][0]]


_DRIVER_MARKS = re.compile(rb"^(<<<<<<<|=======|>>>>>>>)( .*)?$", re.M)


def conflict_advice(where: str, path: str | None, text: bytes = b"") -> str:
    """What to do about a registry left with conflict markers (``text``): merge it again
    with the driver, which keeps both sides' models (``git checkout --ours`` would drop
    theirs); when the driver itself left them (its ``ours``/``theirs`` labels, where git's
    own merge writes ``HEAD`` and a branch), only the choice between two versions is left."""
    quoted = shlex.quote(path) if path else "the registry"
    marks = {m.group(0) for m in _DRIVER_MARKS.finditer(text)}
    if marks == {b"<<<<<<< ours", b"=======", b">>>>>>> theirs"}:
        return (
            f"{where}: a model or alias was changed differently on both branches; the merge "
            "driver kept both versions between conflict markers. Keep one of the two versions "
            f"of each, delete the marker lines, then `git add {quoted}`."
        )
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
    fmt = doc.get("format")
    if type(fmt) is int and fmt > NEWEST_FORMAT:
        raise newer_release(where, f"registry format {fmt}; this one reads 1 to {NEWEST_FORMAT}")
    if type(fmt) is not int or fmt < 1:
        raise RegistryError(
            f"{where}: unsupported registry format {show(fmt)} (this model_filer reads 1 to "
            f"{NEWEST_FORMAT}). {restore(filename)}."
        )
    unknown = set(doc) - set(TOP_LEVEL_KEYS)
    if unknown:  # (an older release dropped these on its next write: refused, not dropped)
        raise newer_release(where, f"unknown top-level keys {show(sorted(map(str, unknown)))}")
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
    aliases = parse_aliases(doc.get("aliases") or {}, where, filename)
    return Registry(rtype, address, entries, remote_id, aliases)
