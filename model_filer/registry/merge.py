"""Three-way merge of registries, entry by entry: git's merge driver for registry files.

Two branches that each added or changed different models merge cleanly; the same model
changed two different ways is a conflict, reported by name and written with git's conflict
markers around its two versions (:meth:`MergeResult.text`): a plain ``git add`` of the result
cannot keep one side silently, since no registry with markers parses. Metadata merges name by
name within an entry (one branch's new metric beside the other's new tag), and aliases alias
by alias; an alias moved to different models on both branches is a conflict named ``@alias``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from model_filer.errors import RegistryError, about_registry
from model_filer.registry.codec import Codec
from model_filer.registry.model import META_FIELDS, Entry, Registry, format_needed

T = TypeVar("T")
_ABSENT: Any = object()  # a name one side does not have
_NO_METADATA = dict.fromkeys(META_FIELDS)


@dataclass
class MergeResult:
    """The merged registry and the names that conflicted (ours kept for those in
    ``registry``; ``theirs`` holds their side of each conflicting name, ``None`` if deleted)."""

    registry: Registry
    conflicts: list[str] = field(default_factory=list)  # model names, then ``@alias`` ones
    theirs: dict[str, Entry | None] = field(default_factory=dict)
    theirs_aliases: dict[str, tuple[str, str] | None] = field(default_factory=dict)

    def text(self, ours_label: str = "ours", theirs_label: str = "theirs") -> bytes:
        """The merged registry's bytes; each conflicting entry's (or alias's) two versions
        (a deleted one is empty) between git's conflict markers, one whole entry block (or
        alias line) a side."""
        reg, codec = self.registry, Codec()
        if not self.conflicts:
            return codec.dumps(reg)
        ours_mark, theirs_mark = f"<<<<<<< {ours_label}\n", f">>>>>>> {theirs_label}\n"

        def alias_line(alias: str, target: tuple[str, str] | None) -> str:
            return codec.alias_line(alias, target) if target is not None else ""

        plain = Registry(reg.remote_type, reg.remote_address, reg.entries, reg.remote_id)
        # Either side may be the one kept: the format holds both (metadata or an alias only
        # theirs has, under ``format: 1``, is what the release before format 2 would drop).
        their_side = Registry(
            reg.remote_type,
            reg.remote_address,
            {n: e for n, e in self.theirs.items() if e is not None},
            aliases={a: t for a, t in self.theirs_aliases.items() if t is not None},
        )
        fmt = max(format_needed(reg), format_needed(their_side))
        parts = [codec.header(plain, True, fmt).removesuffix("models:\n")]
        aliases = sorted(set(reg.aliases) | set(self.theirs_aliases))
        parts.append("aliases:\n" if aliases else "")
        for alias in aliases:
            mine = alias_line(alias, reg.aliases.get(alias))
            if alias in self.theirs_aliases:
                yours = alias_line(alias, self.theirs_aliases[alias])
                parts += [ours_mark, mine, "=======\n", yours, theirs_mark]
            else:
                parts.append(mine)
        parts.append("models:\n")
        for name in sorted(set(reg.entries) | set(self.theirs)):
            ours = reg.entries.get(name)
            mine = codec.entry_text(ours) if ours is not None else ""
            if name not in self.theirs:
                parts.append(mine)
                continue
            theirs = self.theirs[name]
            yours = codec.entry_text(theirs) if theirs is not None else ""
            parts += [ours_mark, mine, "=======\n", yours, theirs_mark]
        return "".join(parts).encode()


def _three_way(base: T, ours: T, theirs: T) -> tuple[T, bool]:
    """The merged value and whether the two sides conflict (each changed it its own way)."""
    if ours == theirs or theirs == base:
        return ours, False
    if ours == base:
        return theirs, False
    return ours, True


def _metadata(entry: Entry | None) -> dict[str, Any]:
    return _NO_METADATA if entry is None else {f: getattr(entry, f) for f in META_FIELDS}


def _merge_metadata(base: Entry | None, ours: Entry, theirs: Entry) -> Entry | None:
    """``ours`` with both sides' metadata merged name by name (the description as one
    value); ``None`` if a name was changed two ways."""
    merged = {}
    for f, old, mine, yours in zip(
        META_FIELDS, *(_metadata(e).values() for e in (base, ours, theirs)), strict=True
    ):
        if f == "description":
            merged[f], conflict = _three_way(old, mine, yours)
            if conflict:
                return None
            continue
        old, mine, yours = old or {}, mine or {}, yours or {}
        values = {}
        for name in sorted({*old, *mine, *yours}):
            value, conflict = _three_way(*(m.get(name, _ABSENT) for m in (old, mine, yours)))
            if conflict:
                return None
            if value is not _ABSENT:
                values[name] = value
        merged[f] = values or None
    return ours._replace(**merged)


def _pick(
    base: Entry | None, ours: Entry | None, theirs: Entry | None
) -> tuple[Entry | None, bool]:
    """The merged entry and whether the two sides conflict."""
    entry, conflict = _three_way(base, ours, theirs)
    if not conflict or ours is None or theirs is None:
        return entry, conflict
    if ours.sha256 == theirs.sha256:
        # Same bytes on both sides: one side pushed it (synced wins: it is on the remote), or
        # annotated it: the metadata merges name by name.
        synced = ours if ours.state == "synced" else theirs
        merged = _merge_metadata(base, synced, theirs if synced is ours else ours)
        return (ours, True) if merged is None else (merged, False)
    # Other bytes on each side, or a re-dump on one side and an annotation of the bytes it
    # replaced on the other (which would be lost): the user chooses.
    return ours, True


def merge(base: Registry | None, ours: Registry, theirs: Registry) -> MergeResult:
    """Merge ``theirs`` into ``ours`` relative to their common ancestor ``base``."""
    if (ours.remote_type, ours.remote_address) != (theirs.remote_type, theirs.remote_address):
        raise RegistryError(
            f"The two branches' registries point at different remotes ({ours.remote_address!r} "
            f"and {theirs.remote_address!r}): merge by hand and keep one remote."
        )
    if None not in (ours.remote_id, theirs.remote_id) and ours.remote_id != theirs.remote_id:
        raise RegistryError(
            f"The two branches' registries name different remote IDs ({ours.remote_id} and "
            f"{theirs.remote_id}) for {ours.remote_address!r}: merge by hand and keep one."
        )
    base_entries = base.entries if base else {}
    # One side may record the remote's ID (its first push since IDs exist): keep it.
    result = Registry(
        ours.remote_type, ours.remote_address, remote_id=ours.remote_id or theirs.remote_id
    )
    conflicts = []
    for name in sorted(set(base_entries) | set(ours.entries) | set(theirs.entries)):
        entry, conflict = _pick(
            base_entries.get(name), ours.entries.get(name), theirs.entries.get(name)
        )
        if conflict:
            conflicts.append(name)
        if entry is not None:
            result.entries[name] = entry
    theirs_aliases = {}
    base_aliases = base.aliases if base else {}
    for alias in sorted({*base_aliases, *ours.aliases, *theirs.aliases}):
        target, conflict = _three_way(
            base_aliases.get(alias), ours.aliases.get(alias), theirs.aliases.get(alias)
        )
        if conflict:
            theirs_aliases[alias] = theirs.aliases.get(alias)
        if target is not None:
            result.aliases[alias] = target
    return MergeResult(
        result,
        conflicts + [f"@{a}" for a in theirs_aliases],
        {n: theirs.entries.get(n) for n in conflicts},
        theirs_aliases,
    )


def merge_texts(base: bytes, ours: bytes, theirs: bytes, where: str) -> MergeResult:
    """Parse and merge three versions; an empty ``base`` means no common ancestor."""
    codec = Codec()  # the three share most entry blocks: each is verified once
    with about_registry(where):
        base_reg = codec.parse(base, f"{where} (ancestor)") if base.strip() else None
        ours_reg = codec.parse(ours, f"{where} (ours)")
        return merge(base_reg, ours_reg, codec.parse(theirs, f"{where} (theirs)"))
