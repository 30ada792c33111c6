"""The registry codec: bytes to :class:`Registry` and back, one writer and one fast reader.

A registry of 10,000 entries is ~3.5 MB of YAML; building YAML objects from it and back on
every dump and every hook run is what used to cost (seconds). The canonical form, the text
:meth:`Codec.dumps` writes, is one block per entry, exactly as PyYAML's safe dumper writes the
same data (tests/registry/test_codec.py), so:

- writing joins each entry's text, made once per entry, and a dump re-makes only the entries
  that changed since the text was last built;
- reading (:meth:`Codec.parse_canonical`) cuts the text into entry blocks, matches each one
  against the one shape the writer makes, and checks its fields with the same checks as the
  full parser, each written exactly as PyYAML would write it, so ``yaml.safe_load`` of the
  text would give exactly the entries returned. A block with an unusual value is read alone
  by PyYAML and kept only if writing its entry back gives the same bytes. A :class:`Codec`
  remembers the blocks it verified, by their exact text, so the versions of a registry that
  history, gc, a merge or a long-lived folder read are checked once.

Anything else (hand-edited spacing, comments, quoting PyYAML would not choose, an invalid
field, an unusual value) is read by PyYAML (:mod:`model_filer.registry.yamlio`: safe, libyaml when
present, duplicate keys refused), which accepts it or refuses it with its usual message.
"""

from __future__ import annotations

import bisect
import gc
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from model_filer.errors import InvalidNameError, RegistryError, about_registry
from model_filer.fs.layout import remote_type_of
from model_filer.registry.model import (
    HEADER,
    IMPORT_RE,
    MAX_METADATA_BYTES,
    MAX_METADATA_NAMES,
    MAX_MODEL_BYTES,
    MAX_REGISTRY_BYTES,
    Entries,
    Entry,
    Registry,
    alias_text,
    conflict_advice,
    format_needed,
    from_doc,
    metadata_size,
    parse_entry,
    restore,
)
from model_filer.registry.names import (
    MODEL_KINDS,
    STORAGE_DIR,
    check_key,
    check_name,
    key_sha256,
    meta_name_is_valid,
    name_is_safe,
    object_key,
)

# -- scalars as PyYAML writes them ----------------------------------------------------------
#
# YAML 1.1's implicit types exactly as PyYAML's Resolver declares them (yaml/resolver.py):
# (tag, pattern, first characters). A plain scalar that one matches is read as that type, so
# it must be quoted. Kept here so writing and reading a registry import no PyYAML (~20 ms of
# every hook run); tests/registry/test_codec.py checks it against PyYAML's own table.
_X = re.X
IMPLICIT: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "tag:yaml.org,2002:bool",
        re.compile(
            r"""^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$""",
            _X,
        ),
        "yYnNtTfFoO",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
            _X,
        ),
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:int",
        re.compile(
            r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""",
            _X,
        ),
        "-+0123456789",
    ),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), "<"),
    (
        "tag:yaml.org,2002:null",
        re.compile(
            r"""^(?: ~
                    |null|Null|NULL
                    | )$""",
            _X,
        ),
        "~nN",  # (and the empty string, which never reaches scalar())
    ),
    (
        "tag:yaml.org,2002:timestamp",
        re.compile(
            r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
            _X,
        ),
        "0123456789",
    ),
    ("tag:yaml.org,2002:value", re.compile(r"^(?:=)$"), "="),
    ("tag:yaml.org,2002:yaml", re.compile(r"^(?:!|&|\*)$"), "!&*"),
)
# First characters of the values some implicit tag may claim: any other is a plain string.
RESOLVED_FIRST = frozenset("".join(firsts for _, _, firsts in IMPLICIT))
# A one-line value of printable ASCII: PyYAML writes it plain or single-quoted (never wraps:
# yamlio's width is 65,536), and plain unless one of these blocks plain style in a block
# mapping (its emitter's analyze_scalar), or a reader would take it for a number, a date...
_ONE_LINE_RE = re.compile(r"[\x20-\x7e]+")
_INDICATOR_FIRST = frozenset("#,[]{}&*!|>'\"%@`")


def _plain_blocked(value: str) -> bool:
    return (
        value[0] in _INDICATOR_FIRST
        or " " in (value[0], value[-1])
        or value.startswith(("---", "..."))  # a document's start or end
        or (value[0] in "?:-" and value[1:2] in ("", " "))
        or ": " in value
        or value[-1] == ":"
        or " #" in value  # a comment
    )


_QUOTED_FIRST = RESOLVED_FIRST | {"'"}
MAX_PLAIN = 1000  # longer strings take PyYAML's path (no line wrapping questions)
MAX_KEY = 100  # PyYAML writes keys of 128+ characters as complex keys ('? ')


def scalar(value: str) -> str | None:
    """``value`` as PyYAML writes it (plain or single-quoted), or ``None`` if unsure."""
    if len(value) > MAX_PLAIN or not _ONE_LINE_RE.fullmatch(value):
        return None
    first = value[0]
    # Plain only when a reader would not take it for a number, a date, a bool...
    if _plain_blocked(value) or (
        first in RESOLVED_FIRST and any(p.match(value) for _, p, f in IMPLICIT if first in f)
    ):
        return "'" + value.replace("'", "''") + "'"
    return value


def float_text(value: float) -> str | None:
    """A finite float as PyYAML's representer writes it (``None`` for NaN and infinities):
    its repr, lower-cased, with ``.0`` before an exponent that has no dot (``1e+20`` becomes
    ``1.0e+20``), which YAML 1.1's float pattern needs. repr round-trips exactly."""
    if not math.isfinite(value):
        return None
    text = repr(value).lower()
    return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text


def value_text(value: Any, quote: Callable[[str], str | None]) -> str | None:
    """A str, int, float, bool or None as PyYAML writes it; ``None`` if unsure or another type."""
    kind = type(value)
    if kind is str:
        return quote(value)
    if kind is int:
        return str(value)
    if kind is float:
        return float_text(value)
    if kind is bool:
        return "true" if value else "false"
    return "null" if value is None else None


def plain_sha256(sha: str) -> bool:
    """Whether PyYAML surely writes a 64-hex-digit ``sha`` plain, without its resolver
    (``False`` for the all-digit ones, 1 in 10^13, which then take the exact path).

    Of YAML 1.1's implicit types only int can claim such a string (float needs a dot, a
    timestamp a dash, bool and null are words), and int only all-decimal digits or 0b[01]*
    (tests/registry/test_codec.py checks this against the resolver).
    """
    return not (sha.isdigit() or (sha.startswith("0b") and not sha[2:].strip("01")))


def _unquote(text: str) -> str:
    """A plain or single-quoted scalar's value, read loosely: callers write it back and
    compare, so anything this gets wrong is caught there."""
    return text[1:-1] if len(text) >= 2 and text[0] == "'" == text[-1] else text


# -- the canonical text ---------------------------------------------------------------------
_HEAD_RE = re.compile(
    re.escape(HEADER)
    + r"format: (?P<format>[1-9])\nremote:\n  type: ([^\n]*)\n  address: ([^\n]*)\n"
    + r"(?:  id: ([0-9a-f]{32})\n)?"
    + r"(?:aliases:\n(?P<aliases>(?:  [^\n]*\n)+))?"
    + r"models:( \{\})?\n"
)
# The newline before an entry's first line (two spaces, its name). Not zero-width: a search
# for a literal newline is what makes splitting 10,000 entries fast.
_BEFORE_BLOCK = re.compile(r"\n(?=  [^ ])")
_EMPTY_MODELS = "models: {}\n"
# The entry every dump writes, in one match (``other_time``: a time of another form, written by
# other tools). Captured values are checked below exactly as parse_entry checks them; a block
# of any other shape is read alone by PyYAML.
_P = r"'?[A-Za-z0-9_.+-]{1,100}'?"
_REST = (  # an entry's params, tags and description: they repeat from entry to entry
    r"(?:    params:\n(?P<params>(?:      [^\n]*\n)+))?"
    r"(?:    tags:\n(?P<tags>(?:      [^\n]*\n)+))?"
    r"(?:    description: (?P<description>[^\n]*)\n)?"
)
_REST_RE = re.compile(_REST)
_ENTRY_RE = re.compile(
    r"  (?P<name>'?[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}'?):\n"
    r"    state: (?P<state>local|synced)\n"
    r"(?:    key: (?P<key>[A-Za-z0-9_.+=/-]{1,1000})\n)?"
    r"    sha256: (?P<sha256>[0-9a-f]{64})\n"
    r"    size: (?P<size>0|[1-9][0-9]{0,15})\n"
    rf"    serializer: (?P<serializer>{_P})\n"
    r"    created: (?:'(?P<created>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+00:00)'"
    r"|(?P<other_time>'?[0-9A-Za-z_.+:-]{1,64}'?))\n"
    rf"    python: (?P<python>{_P})\n"
    rf"(?:    library:\n      name: (?P<lib>{_P})\n      version: (?P<version>{_P})\n)?"
    r"(?:    imports:(?P<none> \[\])?\n(?P<imports>(?:    - [A-Za-z_][A-Za-z0-9_.]{0,511}\n)*))?"
    r"(?P<meta>(?:    metrics:\n(?P<metrics>(?:      [^\n]*\n)+))?(?P<rest>" + _REST + "))"
)
# A metric as the writer makes it: a plain name, an int or a float (with its dot).
_METRIC_LINE = re.compile(
    r"      ([A-Za-z0-9_][A-Za-z0-9_./-]{0,63}): "
    r"(?:(-?(?:0|[1-9][0-9]*))|(-?(?:0|[1-9][0-9]*)\.[0-9]+(?:e[-+][0-9]+)?))\n"
)
_INT_TEXT = re.compile(r"0|-?[1-9][0-9]*")  # an int as PyYAML writes it
_PARAM_WORDS: dict[str, bool | None] = {"true": True, "false": False, "null": None}
_BAD = object()  # not a value as PyYAML writes it
_NO_REST = (None, None, None)
# The chunked layout's keys an entry may have: a prefix, then the entry's own sha256 (a plain
# string test: 10,000 entries of a default registry carry one).
_KEYS_OF_SHA = frozenset(f"{STORAGE_DIR}/{kind}/" for kind in MODEL_KINDS)
MAX_REMEMBERED = 200_000  # blocks, tails and scalars a Codec keeps of each kind, then starts over
_new_entry = tuple.__new__  # Entry's fields in order, without NamedTuple's Python __new__


def _yaml_dump(doc: dict[str, Any]) -> str:
    from model_filer.registry import yamlio  # PyYAML (~15 ms) only for what the subset cannot write

    return yamlio.dump(doc)


def block(
    key: str, fields: dict[str, Any], indent: int, quote: Callable[[str], str | None]
) -> str | None:
    """One mapping entry ``key: {fields}`` at ``indent``, as PyYAML writes it inside a block
    mapping there; ``None`` when a value is not of the plain kinds (then PyYAML writes it)."""

    head = quote(key) if len(key) <= MAX_KEY else None
    if head is None or not fields:
        return None
    pad = " " * (indent + 2)
    out = [f"{' ' * indent}{head}:\n"]
    for key_text, value in fields.items():
        field = quote(key_text) if len(key_text) <= MAX_KEY else None
        if field is None:
            return None
        kind = type(value)
        if kind is dict and value:
            out.append(f"{pad}{field}:\n")
            for sub, item in value.items():
                sub_text = quote(sub) if type(sub) is str and len(sub) <= MAX_KEY else None
                item_text = value_text(item, quote)
                if sub_text is None or item_text is None:
                    return None
                out.append(f"{pad}  {sub_text}: {item_text}\n")
        elif kind is list:
            out.append(f"{pad}{field}:{' []' if not value else ''}\n")
            for item in value:  # PyYAML does not indent a sequence inside a mapping
                item_text = value_text(item, quote)
                if item_text is None:
                    return None
                out.append(f"{pad}- {item_text}\n")
        else:
            text = value_text(value, quote)
            if text is None:
                return None
            out.append(f"{pad}{field}: {text}\n")
    return "".join(out)


class _Tail(NamedTuple):
    """The fields of an entry block from ``python`` on, read and judged."""

    python: str
    library: dict[str, str] | None
    imports: list[str] | None


class _Body(NamedTuple):
    """The sorted entry texts last made for one :class:`Entries` (at its ``mark``)."""

    entries: Entries
    version: int
    names: list[str]
    chunks: list[bytes]


class Codec:
    """Registry text to :class:`Registry` and back, remembering what it verified and wrote.

    Owned by whoever reads or writes registries for a while (a registry file, a ``log``, a
    ``gc``): an entry block verified once, keyed by its exact text, is not checked again,
    an entry's text is made once, and the text of the registry last read or written is
    patched, not rebuilt, when a few entries change. Nothing is shared between codecs.
    """

    def __init__(self) -> None:
        self._verified: dict[str, Entry] = {}  # entry block text -> its validated entry
        self._texts: dict[str, tuple[Entry, bytes]] = {}  # name -> (entry, its text)
        self._quoted: dict[str, str | None] = {}  # value -> scalar(value)
        self._tails: dict[str, _Tail | tuple[()]] = {}  # an entry's text from python on
        self._rests: dict[str, Any] = {}  # params, tags, description text -> them, or None
        self._plain_names: set[str] = set()  # metric names known valid and plain
        self._body: _Body | None = None

    # -- writing ----------------------------------------------------------------------------
    def quote(self, value: str) -> str | None:
        """:func:`scalar`, remembered: serializer, python and library values repeat."""
        quoted = self._quoted.get(value, "")
        if quoted == "":
            if len(self._quoted) >= MAX_REMEMBERED:
                self._quoted.clear()
            quoted = self._quoted[value] = scalar(value)
        return quoted

    def header(self, reg: Registry, has_entries: bool, fmt: int | None = None) -> str:
        """Everything before the first entry: comment header, format (``fmt``, else the one
        the content needs), remote, ``models:``."""
        fmt = format_needed(reg) if fmt is None else fmt
        remote = reg.remote_fields()
        aliases = {a: alias_text(reg.aliases[a]) for a in sorted(reg.aliases)}
        fields = block("remote", remote, 0, self.quote)
        if aliases and fields is not None:
            fields += "aliases:\n" + "".join(self.alias_line(a, reg.aliases[a]) for a in aliases)
        if fields is None:  # an address outside the plain subset: PyYAML writes it
            doc = {"format": fmt, "remote": remote, **({"aliases": aliases} if aliases else {})}
            text = HEADER + _yaml_dump({**doc, "models": {}})
            if not text.endswith(_EMPTY_MODELS):  # pragma: no cover - PyYAML changed its output
                raise AssertionError(f"unexpected registry header {text!r}")
            text = text[: -len(_EMPTY_MODELS)]
        else:
            text = f"{HEADER}format: {fmt}\n{fields}"
        return text + ("models:\n" if has_entries else _EMPTY_MODELS)

    def alias_line(self, alias: str, target: tuple[str, str]) -> str:
        """One alias's line under ``aliases:`` (a move changes this line only)."""
        value = alias_text(target)
        text = block("aliases", {alias: value}, 0, self.quote)
        if text is None:  # (not for valid names: they are plain or single-quoted)
            text = _yaml_dump({"aliases": {alias: value}})
        return text.partition("\n")[2]

    def entry_text(self, entry: Entry) -> str:
        """The entry's block under ``models:``, exactly as PyYAML writes it there."""
        fields = entry.to_yaml_dict()
        text = block(entry.name, fields, 2, self.quote)
        if text is None:  # an unusual value (a long name or field): PyYAML writes it
            text = _yaml_dump({"models": {entry.name: fields}}).partition("\n")[2]
        return text

    def _chunk(self, entries: Entries, name: str) -> bytes:
        entry = entries[name]
        known = self._texts.get(name)
        if known is None or known[0] is not entry:  # (entries are immutable: identity holds)
            known = self._texts[name] = (entry, self.entry_text(entry).encode())
        return known[1]

    def dumps(self, reg: Registry) -> bytes:
        """Serialise deterministically: sorted entries, fixed field order, no flow style.

        The bytes are those of PyYAML's safe dumper in block style over the whole document
        (tests/support/registries.py), built from each entry's text.
        """
        head = self.header(reg, bool(reg.entries), format_needed(reg)).encode()
        return b"".join([head, *self._sorted_chunks(reg.entries)])

    def _sorted_chunks(self, entries: Entries) -> list[bytes]:
        """Every entry's text in name order: patched where names changed since this codec
        last made the text of these very entries, else rebuilt whole."""
        body = self._body
        changed = None
        if body is not None and body.entries is entries:
            changed = entries.changed_since(body.version)
        if body is None or changed is None:
            if len(self._texts) > 2 * len(entries) + 64:  # forget removed entries now and then
                self._texts = {n: t for n, t in self._texts.items() if n in entries}
            names = sorted(entries)
            body = _Body(entries, 0, names, [self._chunk(entries, n) for n in names])
        else:
            names, chunks = body.names, body.chunks
            for name in changed:
                i = bisect.bisect_left(names, name)
                present = i < len(names) and names[i] == name
                if name not in entries:
                    if present:
                        del names[i], chunks[i]
                        self._texts.pop(name, None)
                elif present:
                    chunks[i] = self._chunk(entries, name)
                else:
                    names.insert(i, name)
                    chunks.insert(i, self._chunk(entries, name))
        self._body = body._replace(version=entries.mark())
        return body.chunks

    # -- reading ----------------------------------------------------------------------------
    def parse(
        self,
        text: bytes,
        where: str,
        loader: type[Any] | None = None,
        filename: str | None = None,
    ) -> Registry:
        """Parse and validate a registry's bytes; raise :class:`RegistryError` on anything odd.

        Canonical text takes the fast reader; any other text, or any ``loader`` (a PyYAML
        loader class, for tests), takes PyYAML. ``filename`` (the file's path) must then name
        the remote type the content records: a ``.local_registry`` that says ``s3`` is
        refused, not trusted. The error's ``path`` is ``filename``, else ``where``.
        """
        with about_registry(filename or where):
            if len(text) > MAX_REGISTRY_BYTES:
                raise RegistryError(
                    f"{where}: {len(text)} bytes is too large for a registry "
                    f"(limit {MAX_REGISTRY_BYTES}). Restore it from git."
                )
            if b"\n<<<<<<< " in b"\n" + text or b"\n>>>>>>> " in text:
                raise RegistryError(conflict_advice(where, filename, text))
            fast = self.parse_canonical(text, filename) if loader is None else None
            return fast if fast is not None else _parse_yaml(text, where, loader, filename)

    def parse_canonical(self, text: bytes, filename: str | None = None) -> Registry | None:
        """The registry in ``text`` if it is in canonical form and valid, else ``None``."""
        try:
            doc = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
        match = _HEAD_RE.match(doc)
        if match is None:
            return None
        reg = Registry(_unquote(match[2]), _unquote(match[3]), remote_id=match[4])
        if match["aliases"] is not None:
            found_aliases = self._aliases(match["aliases"])
            if found_aliases is None:
                return None
            reg.aliases = found_aliases
        has_entries, fmt = match[6] is None, int(match["format"])
        head = self.header(reg, has_entries, fmt)
        if not doc.startswith(head):
            return None
        if filename and remote_type_of(filename) not in (None, reg.remote_type):
            return None
        body = doc[len(head) :]
        if not has_entries:
            return reg if not body and fmt == format_needed(reg) else None
        collecting = gc.isenabled()
        gc.disable()  # 10,000 entries of new objects: the collector would walk them all, often
        try:
            found = self._entries(body, reg.entries)
        finally:
            if collecting:
                gc.enable()
        if found is None or fmt != format_needed(reg):  # another format: PyYAML's path judges
            return None
        entries = reg.entries
        self._body = _Body(entries, entries.mark(), *found)  # the text is this body
        return reg

    def _aliases(self, text: str) -> dict[str, tuple[str, str]] | None:
        """The ``aliases:`` lines, if valid (the header written back must then equal them)."""
        aliases = {}
        for line in text[2:-1].split("\n  "):
            raw_alias, colon, raw = line.partition(": ")
            alias, value = self._string(raw_alias), self._string(raw) if colon else None
            model, _, sha = (value or "").rpartition("@")
            if alias is None or not (_valid_name(alias) and _valid_name(model) and _plain_hex(sha)):
                return None
            aliases[alias] = (model, sha)
        return aliases

    def _entries(self, body: str, entries: Entries) -> tuple[list[str], list[bytes]] | None:
        """Each entry block of ``body`` verified into the registry's entries, in order."""
        names: list[str] = []
        chunks: list[bytes] = []
        verified, fullmatch = self._verified, _ENTRY_RE.fullmatch
        texts, put = self._texts, dict.__setitem__
        previous = ""
        blocks = _BEFORE_BLOCK.split(body)
        last = len(blocks) - 1
        for i, cut in enumerate(blocks):
            block = cut if i == last else cut + "\n"
            entry = verified.get(block)
            if entry is None:
                match = fullmatch(block)
                entry = self._matched(match, block) if match is not None else None
                if entry is None:  # an unusual value: the block alone goes through PyYAML
                    entry = self._odd_block(block)
            if entry is None or entry.name <= previous:  # sorted, no duplicates: canonical
                return None
            previous = entry.name
            put(entries, previous, entry)  # (Entries' own bookkeeping is for later changes)
            chunk = block.encode()
            texts[previous] = (entry, chunk)
            names.append(previous)
            chunks.append(chunk)
        return names, chunks

    def _remember(self, block: str, entry: Entry) -> Entry:
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()
        self._verified[block] = entry
        return entry

    def _plain(self, raw: str) -> str | None:
        """The value of a scalar of _ENTRY_RE's characters that PyYAML would write as ``raw``,
        else ``None``. Those characters are all plain ones: only the first and the last (a
        quote) may say otherwise."""
        if raw[0] not in _QUOTED_FIRST and raw[-1] != "'":
            return raw
        value = raw[1:-1] if raw[0] == "'" else raw
        return value if self.quote(value) == raw else None

    def _matched(self, match: re.Match[str], block: str) -> Entry | None:
        """The entry of a block _ENTRY_RE matched, if valid and written as PyYAML would.

        The regex fixed each field's characters; what it cannot say is checked here, as
        parse_entry would (10,000 times per read of a big registry, so without raising).
        """
        raw_name, state, key, sha, size_text, serializer, created, other_time = match.group(
            1, 2, 3, 4, 5, 6, 7, 8
        )  # (not groups(): its ~25 strings, 10,000 times)
        size = int(size_text)
        if size > MAX_MODEL_BYTES or not plain_sha256(sha):
            return None
        if created is None:  # (the library's own times need no check: always quoted)
            created = other_time[1:-1] if other_time[0] == "'" else other_time
            if self.quote(created) != other_time:
                return None
        name, serializer = self._plain(raw_name), self._plain(serializer)
        if name is None or serializer is None or not name_is_safe(name):
            return None
        if (key is None) == (state == "synced"):
            return None  # (a local entry with a key is valid, but rare: PyYAML reads it)
        # The usual keys, object_key(name, sha) and the chunked layout's two forms, are safe,
        # plain and name these bytes once the name is valid; another form (an older layout's)
        # is checked as parse_entry checks it.
        if (
            key is not None
            and key != object_key(name, sha)
            and not (key[:-64] in _KEYS_OF_SHA and key[-64:] == sha)
        ):
            try:
                check_key(key, "")
            except InvalidNameError:
                return None
            if self.quote(key) != key or key_sha256(key) != sha:
                return None
        metadata: tuple[Any, ...] = (None, None, None, None)
        if match.start("meta") != match.end("meta"):
            found = self._metadata(match)
            if found is None:
                return None
            metadata = found
        # From python to the metadata, entries repeat each other: that part is judged once.
        tail = block[match.start("python") : match.start("meta")]
        fields = self._tails.get(tail)
        if fields is None:
            if len(self._tails) >= MAX_REMEMBERED:
                self._tails.clear()
            fields = self._tails[tail] = self._tail(match)
        if not fields:
            return None
        python, library, imports = fields
        entry = _new_entry(
            Entry,
            (
                name,
                state,
                sha,
                size,
                serializer,
                created,
                python,
                key,
                None if library is None else dict(library),
                None if imports is None else list(imports),
                *metadata,
            ),
        )
        return self._remember(block, entry)

    def _metadata(self, match: re.Match[str]) -> tuple[Any, ...] | None:
        """metrics, params, tags and description of a matched block, checked as
        :func:`~model_filer.registry.model.check_metadata` checks them; ``None`` if invalid
        or not as PyYAML writes them (then PyYAML reads the block, and the checker says why)."""
        metrics_text, rest_text = match.group("metrics", "rest")
        metrics = None
        if metrics_text is not None:
            metrics = self._metrics(metrics_text)
            if metrics is None:
                return None
        rest = self._rest(rest_text) if rest_text else _NO_REST
        if rest is None:
            return None
        params, tags, description = rest
        names = len(metrics or ()) + len(params or ()) + len(tags or ())
        # The bound counts a name's and a value's characters, fewer than their line's (all
        # plain ASCII here): metadata text within the bound is within it.
        if names > MAX_METADATA_NAMES or (
            match.end("meta") - match.start("meta") > MAX_METADATA_BYTES
            and metadata_size((metrics, params, tags), description)[1] > MAX_METADATA_BYTES
        ):
            return None
        copy = dict  # (each entry its own mappings, as the full parser gives)
        return (metrics, params and copy(params), tags and copy(tags), description)

    def _rest(self, text: str) -> tuple[Any, Any, str | None] | None:
        """params, tags and description (:data:`_REST`), each distinct text judged once."""
        known = self._rests.get(text, _BAD)
        if known is _BAD:
            if len(self._rests) >= MAX_REMEMBERED:
                self._rests.clear()
            known = self._rests[text] = self._read_rest(text)
        return known  # type: ignore[no-any-return]

    def _read_rest(self, text: str) -> tuple[Any, Any, str | None] | None:
        match = _REST_RE.fullmatch(text)
        if match is None:
            return None
        params, tags, description = match.group("params", "tags", "description")
        if params is not None and (params := self._lines(params, "params")) is None:
            return None
        if tags is not None and (tags := self._lines(tags, "tags")) is None:
            return None
        if description is not None and (description := self._string(description)) is None:
            return None
        return params, tags, description

    def _metrics(self, text: str) -> dict[str, Any] | None:
        """A metrics mapping of plain names and numbers, in one regex pass (each entry's
        metrics differ: nothing to remember); any other form line by line."""
        pairs = _METRIC_LINE.findall(text)
        if len(pairs) != text.count("\n"):
            return self._lines(text, "metrics")
        metrics: dict[str, Any] = {}
        previous, plain = "", self._plain_names
        for name, int_text, number in pairs:
            if name <= previous or (name not in plain and not self._plain_name(name)):
                return None
            if int_text:
                metrics[name] = int(int_text)
            else:
                value = metrics[name] = float(number)
                if repr(value) != number and float_text(value) != number:
                    return None  # (not as PyYAML writes it: PyYAML's path reads the block)
            previous = name
        return metrics

    def _plain_name(self, name: str) -> bool:
        """Whether ``name`` is a valid metadata name PyYAML writes plain (remembered)."""
        if not (meta_name_is_valid(name) and self.quote(name) == name):
            return False
        if len(self._plain_names) >= MAX_REMEMBERED:
            self._plain_names.clear()
        self._plain_names.add(name)
        return True

    def _lines(self, text: str, field: str) -> dict[str, Any] | None:
        """A metadata mapping read line by line: names plain or quoted, values of any kind
        :func:`value_text` writes."""
        section: dict[str, Any] = {}
        previous = ""
        for line in text[6:-1].split("\n      "):
            raw_name, colon, raw = line.partition(": ")
            name = self._string(raw_name) if colon else None
            if name is None or name <= previous or not meta_name_is_valid(name):
                return None
            value = self._meta_value(raw, field)
            if value is _BAD:
                return None
            section[name] = value
            previous = name
        return section

    def _string(self, raw: str) -> str | None:
        """The str PyYAML writes as ``raw`` (plain or single-quoted), else ``None``."""
        quoted = len(raw) >= 2 and raw[0] == "'" == raw[-1]
        value = raw[1:-1].replace("''", "'") if quoted else raw
        return value if value and self.quote(value) == raw else None

    def _meta_value(self, raw: str, field: str) -> Any:
        """The value PyYAML reads from ``raw`` if it writes it so and ``field`` takes it,
        else ``_BAD``: a number as :func:`value_text` writes it, a param's true, false or
        null, or a str (printable by construction: only plain characters)."""
        if not raw:
            return _BAD
        if field != "tags" and raw[0] != "'":
            if _INT_TEXT.fullmatch(raw):
                return int(raw)
            if field == "params" and raw in _PARAM_WORDS:
                return _PARAM_WORDS[raw]
            try:
                number = float(raw)
            except ValueError:
                number = None
            if number is not None and float_text(number) == raw:
                return number
        value = self._string(raw)
        return _BAD if value is None or field == "metrics" else value

    def _tail(self, match: re.Match[str]) -> _Tail | tuple[()]:
        """python, library and imports of a matched block; ``()`` if not as PyYAML writes."""
        python, lib, version, none, listed = match.group(
            "python", "lib", "version", "none", "imports"
        )
        python = self._plain(python)
        library = None
        if lib is not None:
            lib, version = self._plain(lib), self._plain(version)
            if lib is None or version is None:
                return ()
            library = {"name": lib, "version": version}
        imports = None
        if none is not None:
            if listed:
                return ()  # "imports: []" followed by items
            imports = []
        elif listed is not None:
            imports = [line[6:] for line in listed.splitlines()]
            if not imports or not all(
                IMPORT_RE.fullmatch(i) and self.quote(i) == i for i in imports
            ):
                return ()  # "imports:" with no items, or an odd name: PyYAML judges
        return () if python is None else _Tail(python, library, imports)

    def _odd_block(self, block: str) -> Entry | None:
        """The entry of a block of another shape, if valid and exactly as written here."""
        if not block.startswith("  ") or not block.partition("\n")[0].endswith(":"):
            return None
        from model_filer.registry import (
            yamlio,  # unusual values only: written by hand or by older tools
        )

        try:
            doc = yamlio.load(block.encode())
            if not isinstance(doc, dict) or len(doc) != 1:
                return None
            ((name, data),) = doc.items()
            entry = parse_entry(name, data, "")
        except (yamlio.YAMLError, RegistryError):
            return None  # the full parser reports it, with its own words
        return self._remember(block, entry) if self.entry_text(entry) == block else None


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except InvalidNameError:
        return False
    return True


def _plain_hex(sha: str) -> bool:
    """Whether ``sha`` is 64 lower-case hex digits PyYAML writes plain (see plain_sha256)."""
    return len(sha) == 64 and not sha.strip("0123456789abcdef") and plain_sha256(sha)


def _parse_yaml(
    text: bytes, where: str, loader: type[Any] | None, filename: str | None
) -> Registry:
    """The full parser: PyYAML's safe loader, then every field checked."""
    from model_filer.registry import yamlio

    try:
        doc = yamlio.load(text, loader)
    except yamlio.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise RegistryError(
            f"{where}: not valid registry YAML ({detail}). {restore(filename)}."
        ) from None
    return from_doc(doc, where, filename)


def parse(
    text: bytes, where: str, loader: type[Any] | None = None, filename: str | None = None
) -> Registry:
    """:meth:`Codec.parse` with a codec of its own: for one registry read once."""
    return Codec().parse(text, where, loader, filename)


def dumps(reg: Registry) -> bytes:
    """:meth:`Codec.dumps` with a codec of its own: for one registry written once."""
    return Codec().dumps(reg)
