"""Validation of what a registry names before it touches a filesystem or a bucket.

A registry arrives in pull requests, so nothing it says is trusted: model names, object keys
and hashes are checked here so no path can leave the model folder or the remote prefix.
"""

from __future__ import annotations

import re
import reprlib

from model_filer.errors import InvalidNameError

# A model name becomes `<name>.pkl` in the model folder and `<name>/` in the remote: one path
# segment, portable across Linux, macOS and Windows, starting with a letter or digit.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_SEGMENT_RE = re.compile(r"[A-Za-z0-9_.+=-]{1,255}")
_WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlevel = 2
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = 4


def show(value: object) -> str:
    """A short repr for messages: a hostile registry can hold megabytes in one field."""
    return _SHOW.repr(value)


NAME_RULE = "1-128 characters: letters, digits and _ . + - (starting with a letter or digit)"


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str):
        raise InvalidNameError(
            f"Model name must be a string, got {type(name).__name__}. Use {NAME_RULE}."
        )
    if not _NAME_RE.fullmatch(name) or not name_is_safe(name):
        if _NAME_RE.fullmatch(name) and _reserved(name):
            raise InvalidNameError(
                f"Invalid model name {name!r}: a reserved device name on Windows. Use another name."
            )
        raise InvalidNameError(f"Invalid model name {show(name)}. Use {NAME_RULE}.")
    return name


def check_alias(alias: object) -> str:
    """Return ``alias`` (without ``@``) if it follows the model-name rule, else raise
    :class:`InvalidNameError` saying so: the one message of ``Filer.set_alias`` and the CLI."""
    try:
        return check_name(alias)
    except InvalidNameError:
        raise InvalidNameError(
            f"Invalid alias {show(alias)}: an alias follows the model-name rule, {NAME_RULE}."
        ) from None


def _reserved(name: str) -> bool:
    return name.partition(".")[0].lower() in _WINDOWS_RESERVED


def name_is_safe(name: str) -> bool:
    """:func:`check_name`'s answer for a name already known to be 1-128 of its characters,
    starting with a letter or digit (a registry's fast reader matched it): no exception
    raised and caught 10,000 times. The rules beyond the characters live here only."""
    return not (".." in name or name[-1] == "." or _reserved(name))


# A metric, param or tag name: what experiment trackers use (``val/loss``, ``f1.macro``,
# ``lr_schedule-2``: MLflow's rule without spaces), and no more, so that it is one token of the
# CLI's ``k=v`` (no ``=`` or space), always one plain or single-quoted YAML key (no ``:``, ``#``
# or quote: an annotation stays one line a key in review, read by the codec without PyYAML),
# and fits a table's column.
_META_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}")
META_NAME_RULE = "1-64 characters: letters, digits and _ . / - (starting with a letter, digit or _)"


def meta_name_is_valid(name: object) -> bool:
    """Whether ``name`` is a valid metric, param or tag name (:data:`META_NAME_RULE`)."""
    return isinstance(name, str) and _META_NAME_RE.fullmatch(name) is not None


def check_sha256(value: object, where: str) -> str:
    """Return ``value`` if it is a lower-case hex sha256, else raise."""
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidNameError(
            f"{where}: sha256 must be 64 lower-case hex digits, got {show(value)}."
        )
    return value


def check_key(key: object, where: str) -> str:
    """Return ``key`` if it is a safe object key relative to the remote root, else raise.

    Safe means: relative, ``/``-separated, no empty, ``.`` or ``..`` segment, no scheme,
    backslash or control character, so it can name neither another bucket nor a path outside
    the remote folder.
    """
    if not isinstance(key, str) or not 0 < len(key) <= 1024:
        raise InvalidNameError(f"{where}: object key must be a non-empty string, got {show(key)}.")
    segments = key.split("/")
    for segment in segments:
        if segment in (".", "..") or not _KEY_SEGMENT_RE.fullmatch(segment):
            raise InvalidNameError(
                f"{where}: unsafe object key {show(key)}: keys are relative paths of plain "
                "segments. Fix the registry entry or run `git checkout` on the registry file."
            )
    return key


# The remote layout, said once: every key model_filer writes is ``<name>/<sha256><suffix>``,
# named by the sha256 of the bytes it holds. A new form (say a chunk manifest's suffix) is added
# to KEY_SUFFIXES, and gc's "is it ours?" and the registry's "does the key name the entry's
# bytes?" (:func:`key_sha256`) follow without another edit.
KEY_SUFFIXES = (".pkl",)
_OBJECT_KEY_RE = re.compile(
    r"(?P<name>[^/]+)/(?P<sha>[0-9a-f]{64})(?:" + "|".join(map(re.escape, KEY_SUFFIXES)) + ")"
)


def object_key(name: str, sha256: str, suffix: str = ".pkl") -> str:
    """Key of a model's bytes relative to the remote root: never reused for other bytes."""
    if suffix not in KEY_SUFFIXES:
        raise ValueError(f"{suffix!r} is not a key form of the remote layout ({KEY_SUFFIXES}).")
    return f"{name}/{sha256}{suffix}"


def key_sha256(key: str) -> str | None:
    """The sha256 of the model ``key`` holds, as the key itself names it; ``None`` for a key
    of no form a registry entry may name (:func:`object_key`, or a storage key of a whole
    object or a manifest)."""
    match = _OBJECT_KEY_RE.fullmatch(key)
    if match is not None:
        return match["sha"]
    kind = storage_key_kind(key)
    return key[-64:] if kind in MODEL_KINDS else None


# The chunked layout (docs/storage-format.md): ``.model_filer/<kind>/<sha256>``, never ending
# in ``.pkl``, so an older model_filer's gc (which deletes only ``<name>/<sha>.pkl``) never
# touches them. ``objects``, ``maps`` and (read only, from earlier releases) ``manifests`` are
# named by the model's sha256 (a registry entry's key); ``packs`` by the sha256 of the pack's
# contents and (read only) ``chunks`` by the sha256 of the chunk's raw bytes; ``repos`` holds
# gc's markers of the repositories that share the remote.
STORAGE_DIR = ".model_filer"
STORAGE_KINDS = ("objects", "maps", "manifests", "packs", "chunks", "repos")
MODEL_KINDS = ("objects", "maps", "manifests")
#: The kinds whose object lists what a model needs besides itself (packs, or chunks).
MANIFEST_KINDS = ("maps", "manifests")
_SHA_KEY_DIRS = {f"{STORAGE_DIR}/{kind}/": kind for kind in STORAGE_KINDS[:5]}
_HEX = "0123456789abcdef"
_STORAGE_KEY_RE = re.compile(
    re.escape(STORAGE_DIR)
    + r"/(objects|maps|manifests|packs|chunks)/[0-9a-f]{64}|"
    + re.escape(STORAGE_DIR)
    + r"/(repos)/[A-Za-z0-9_.+=-]{1,255}"
)


def storage_key(kind: str, sha256: str) -> str:
    """Key of a whole object, a map, a pack, (read only) a manifest or a chunk named by
    ``sha256``."""
    if kind not in STORAGE_KINDS:
        raise ValueError(f"{kind!r} is not a storage kind ({STORAGE_KINDS}).")
    return f"{STORAGE_DIR}/{kind}/{sha256}"


def storage_key_kind(key: str) -> str | None:
    """The kind (one of :data:`STORAGE_KINDS`) of a storage key; ``None``
    for any other key (today's ``<name>/<sha>.pkl`` included)."""
    kind = _SHA_KEY_DIRS.get(key[:-64])  # the usual keys by string tests (10,000 per read)
    if kind is not None and not key[-64:].strip(_HEX):
        return kind
    match = _STORAGE_KEY_RE.fullmatch(key)
    return None if match is None else match[1] or match[2]


def is_storage_key(key: str) -> bool:
    """Whether ``key`` is a key of the chunked layout (:func:`storage_key_kind` knows it)."""
    return storage_key_kind(key) is not None


def is_ours(key: str) -> bool:
    """Whether model_filer writes keys of this form (``<name>/<sha256>.pkl``, or one of the
    chunked layout): the only objects (and unfinished uploads) it may ever delete."""
    return is_object_key(key) or storage_key_kind(key) is not None


def is_object_key(key: str) -> bool:
    """Whether ``key`` has a form :func:`object_key` writes (``<name>/<sha256>.pkl``, with a
    valid name): only such objects are model_filer's to delete or abort."""
    match = _OBJECT_KEY_RE.fullmatch(key)
    return (
        match is not None
        and bool(_NAME_RE.fullmatch(match["name"]))
        and name_is_safe(match["name"])
    )
