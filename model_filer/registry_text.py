"""The registry's canonical text, written and read per entry instead of through PyYAML.

A registry of 10,000 entries is ~3.5 MB of YAML; building YAML objects from it and back on
every dump and every hook run is what used to cost (seconds). The canonical form, the text
:meth:`Registry.dumps` writes, is one block per entry, so:

- writing joins each entry's text, made once per entry (:func:`entry_text`);
- reading (:func:`parse_canonical`) cuts the text into entry blocks, reads each one loosely,
  validates it with the same checks as the full parser, writes it back and keeps it only if
  that gives the same bytes. Since the writer gives PyYAML's bytes for the same data
  (tests/test_registry_text.py), ``yaml.safe_load`` of the text gives exactly the entries
  returned: nothing is trusted that was not checked. A block already verified in this process
  is recognised by its text.

Anything else (hand-edited spacing, comments, quoting PyYAML would not choose, an invalid
field) makes :func:`parse_canonical` return ``None``, and the caller runs the full YAML parser,
which accepts it or refuses it with its usual message.
"""

from __future__ import annotations

import functools
import gc
import re

from . import yamltext
from .errors import InvalidNameError, RegistryError
from .layout import remote_type_of
from .names import check_key, key_sha256, name_is_safe, object_key
from .registry import (
    _IMPORT_RE,
    FORMAT_VERSION,
    HEADER,
    MAX_MODEL_BYTES,
    Entry,
    Registry,
    _parse_entry,
)

_HEAD_RE = re.compile(
    re.escape(HEADER)
    + rf"format: {FORMAT_VERSION}\nremote:\n  type: ([^\n]*)\n  address: ([^\n]*)\n"
    + r"(?:  id: ([0-9a-f]{32})\n)?"
    + r"models:( \{\})?\n"
)
_BLOCK_START = re.compile(r"(?<=\n)(?=  [^ ])")  # an entry's first line: two spaces, its name
_NEXT_BLOCK = re.compile(r"\n(?=  [^ ])")
# The entry every dump writes, in one match. Captured values are checked below exactly as
# _parse_entry checks them; a block of any other shape takes the per-block path.
_P = r"[A-Za-z0-9_.+-]{1,100}"
_ENTRY_RE = re.compile(
    r"  (?P<name>[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}):\n"
    r"    state: (?P<state>local|synced)\n"
    r"(?:    key: (?P<key>[A-Za-z0-9_.+=/-]{1,1000})\n)?"
    r"    sha256: (?P<sha256>[0-9a-f]{64})\n"
    r"    size: (?P<size>0|[1-9][0-9]{0,15})\n"
    rf"    serializer: (?P<serializer>{_P})\n"
    r"    created: '(?P<created>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+00:00)'\n"
    rf"    python: (?P<python>{_P})\n"
    rf"(?:    library:\n      name: (?P<lib>{_P})\n      version: (?P<version>{_P})\n)?"
    r"(?:    imports:(?P<none> \[\])?\n(?P<imports>(?:    - [A-Za-z_][A-Za-z0-9_.]{0,511}\n)*))?"
)
_EMPTY_MODELS = "models: {}\n"
# Entry blocks this process wrote or verified, by their exact text (bounded, then cleared).
_VERIFIED: dict[str, Entry] = {}
MAX_VERIFIED = 200_000


@functools.lru_cache(maxsize=64)
def header_text(
    remote_type: str, address: str, has_entries: bool, remote_id: str | None = None
) -> str:
    """Everything before the first entry: comment header, format, remote, ``models:``."""
    remote = Registry(remote_type, address, remote_id=remote_id).remote_fields()
    fields = yamltext.block("remote", remote, indent=0)
    if fields is None:  # an address outside the plain subset: PyYAML writes it
        from . import yamlio

        doc = {"format": FORMAT_VERSION, "remote": remote, "models": {}}
        text = HEADER + yamlio.dump(doc)
        if not text.endswith(_EMPTY_MODELS):  # pragma: no cover - PyYAML changed its output
            raise AssertionError(f"unexpected registry header {text!r}")
        text = text[: -len(_EMPTY_MODELS)]
    else:
        text = f"{HEADER}format: {FORMAT_VERSION}\n{fields}"
    return text + ("models:\n" if has_entries else _EMPTY_MODELS)


def _text_of(entry: Entry, fields: dict[str, object]) -> str:
    return _text_and_kind(entry, fields)[0]


def _text_and_kind(entry: Entry, fields: dict[str, object]) -> tuple[str, bool]:
    """The entry's text, and whether it is of the plain subset (one line a field, a simple
    key): what :mod:`model_filer.verified` reads without a parser."""
    text = yamltext.block(entry.name, fields)
    if text is not None:
        return text, True
    from . import yamlio  # an unusual value (a long name or field): PyYAML writes it

    return yamlio.dump({"models": {entry.name: fields}}).partition("\n")[2], False


def entry_text(entry: Entry) -> tuple[str, bool]:
    """The entry's block under ``models:``, exactly as PyYAML writes it there, and whether
    the entry is valid (an Entry can be built in code with any values) and its text in the
    plain subset: only registries of such entries are recorded as verified."""
    fields = entry.to_yaml_dict()
    text, plain = _text_and_kind(entry, fields)
    try:
        valid = _parse_entry(entry.name, fields, "") == entry
    except RegistryError:
        valid = False
    if valid:
        _remember(text, entry)
    return text, valid and plain


def _remember(text: str, entry: Entry) -> None:
    if len(_VERIFIED) >= MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED[text] = entry


def _verified_entry(block: str, where: str) -> Entry | None:
    entry = _VERIFIED.get(block)
    if entry is not None:
        return entry
    read = yamltext.read_block(block)
    if read is None:
        return None
    name, data = read
    try:
        entry = _parse_entry(name, data, where)
    except RegistryError:
        return None  # the full parser reports it, with its own words
    if _text_of(entry, entry.to_yaml_dict()) != block:
        return None
    _remember(block, entry)
    return entry


_RESOLVED_FIRST = yamltext.RESOLVED_FIRST


def _plain(value: str) -> bool:
    """Whether PyYAML writes ``value`` (of the characters _ENTRY_RE allows) plain."""
    return value[0] not in _RESOLVED_FIRST or yamltext.scalar(value) == value


def plain_sha256(sha: str) -> bool:
    """Whether PyYAML surely writes a 64-hex-digit ``sha`` plain, without its resolver
    (``False`` for the all-digit ones, 1 in 10^13, which then take the exact path).

    Of YAML 1.1's implicit types only int can claim such a string (float needs a dot, a
    timestamp a dash, bool and null are words), and int only all-decimal digits or 0b[01]*
    (tests/test_registry_text.py checks this against the resolver).
    """
    return not (sha.isdigit() or (sha.startswith("0b") and not sha[2:].strip("01")))


_PLAIN_SEEN: dict[str, bool] = {}  # serializer, python and library values repeat: judged once
_new_entry = tuple.__new__  # Entry's fields in order, without NamedTuple's Python __new__


def _plain_seen(value: str) -> bool:
    known = _PLAIN_SEEN.get(value)
    if known is None:
        if len(_PLAIN_SEEN) > 4096:
            _PLAIN_SEEN.clear()
        known = _PLAIN_SEEN[value] = _plain(value)
    return known


def _matched_entry(match: re.Match[str]) -> Entry | None:
    """The entry of a block _ENTRY_RE matched, if valid and written as PyYAML would.

    The regex fixed each field's characters; what it cannot say is checked here, as
    _parse_entry would (10,000 times per read of a big registry, so without raising).
    """
    (name, state, key, sha, size_text, serializer, created, python, lib, version, none, listed) = (
        match.groups()
    )
    size = int(size_text)
    if size > MAX_MODEL_BYTES or not plain_sha256(sha):
        return None
    if name[0] in _RESOLVED_FIRST and not _plain(name):
        return None
    if not (_plain_seen(serializer) and _plain_seen(python) and name_is_safe(name)):
        return None
    if (key is None) == (state == "synced"):
        return None  # (a local entry with a key is valid, but rare: the full path reads it)
    library = None
    if lib is not None:
        if not (_plain_seen(lib) and _plain_seen(version)):
            return None
        library = {"name": lib, "version": version}
    # The usual key, object_key(name, sha), is safe, plain and names these bytes once the
    # name is valid; any other key is judged by the full path (it may be refused there).
    if key is not None and key != object_key(name, sha):
        try:
            check_key(key, "")
        except InvalidNameError:
            return None
        if not _plain(key) or key_sha256(key) != sha:
            return None
    imports = None
    if none is not None:
        if listed:
            return None  # "imports: []" followed by items
        imports = []
    elif listed is not None:
        imports = [line[6:] for line in listed.splitlines()]
        if not imports or not all(_IMPORT_RE.fullmatch(i) and _plain(i) for i in imports):
            return None  # "imports:" with no items, or an odd name: the generic path judges
    return _new_entry(
        Entry, (name, state, sha, size, serializer, created, python, key, library, imports)
    )


def parse_canonical(text: bytes, where: str, filename: str | None = None) -> Registry | None:
    """The registry in ``text`` if it is in canonical form and valid, else ``None``."""
    try:
        doc = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _HEAD_RE.match(doc)
    if match is None:
        return None
    remote_type, address = yamltext.read_scalar(match[1]), yamltext.read_scalar(match[2])
    if not isinstance(remote_type, str) or not isinstance(address, str):
        return None
    remote_id, has_entries = match[3], match[4] is None
    head = header_text(remote_type, address, has_entries, remote_id)
    if not doc.startswith(head):
        return None
    named = remote_type_of(filename) if filename else None
    if named is not None and named != remote_type:
        return None
    reg = Registry(remote_type, address, remote_id=remote_id)
    body = doc[len(head) :]
    if not has_entries:
        return reg if not body else None
    entries, texts = reg.entries, reg._texts
    names: list[str] = []
    chunks: list[bytes] = []
    previous = ""
    pos, end, match_at, put = 0, len(body), _ENTRY_RE.match, dict.__setitem__
    collecting = gc.isenabled()
    gc.disable()  # 10,000 entries of new objects: the collector would walk them all, often
    try:
        while pos < end:
            match = match_at(body, pos)
            entry = None
            if match is not None:
                stop = match.end()  # the next line must start the next entry (or nothing)
                nxt = body[stop : stop + 3]
                if stop == end or (nxt[:2] == "  " and nxt[2:] != " "):
                    entry = _matched_entry(match)
            plain = entry is not None
            if entry is not None:
                block = match[0]  # type: ignore[index]
            else:  # another shape: cut the block out and check it the generic way
                stop = _next(body, pos)
                block = body[pos:stop]
                entry = _verified_entry(block, where)
            if entry is None or entry.name <= previous:  # sorted, no duplicates: canonical
                return None
            previous = entry.name
            put(entries, previous, entry)  # (Entries' own bookkeeping is for later changes)
            chunk = block.encode()
            if not plain:  # (a long value PyYAML wrote is not what verified.py reads)
                plain = yamltext.block(previous, entry.to_yaml_dict()) is not None
                if not plain:
                    reg._invalid.add(previous)
            texts[previous] = (entry, chunk, plain)
            names.append(previous)
            chunks.append(chunk)
            pos += len(block)
    finally:
        if collecting:
            gc.enable()
    reg._body = (names, chunks)
    reg.entries.changed = set()  # the body is this text
    return reg


def _next(body: str, pos: int) -> int:
    """Where the entry block after the one at ``pos`` starts (the end of the text if none)."""
    found = _NEXT_BLOCK.search(body, pos)
    return found.end() if found else len(body)
