"""Three-way merge of registries, entry by entry: git's merge driver for registry files.

Two branches that each added or changed different models merge cleanly; the same model
changed two different ways is a conflict, reported by name and written with git's conflict
markers around its two versions (:meth:`MergeResult.text`): a plain ``git add`` of the result
cannot keep one side silently, since no registry with markers parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model_filer.errors import RegistryError, about_registry
from model_filer.registry.codec import Codec
from model_filer.registry.model import Entry, Registry


@dataclass
class MergeResult:
    """The merged registry and the names that conflicted (ours kept for those in
    ``registry``; ``theirs`` holds their side of each conflicting name, ``None`` if deleted)."""

    registry: Registry
    conflicts: list[str] = field(default_factory=list)
    theirs: dict[str, Entry | None] = field(default_factory=dict)

    def text(self, ours_label: str = "ours", theirs_label: str = "theirs") -> bytes:
        """The merged registry's bytes; each conflicting entry's two versions (a deleted one
        is empty) between git's conflict markers, one whole entry block a side."""
        reg, codec = self.registry, Codec()
        if not self.conflicts:
            return codec.dumps(reg)
        parts = [codec.header(reg, True)]
        for name in sorted(set(reg.entries) | set(self.theirs)):
            ours = reg.entries.get(name)
            mine = codec.entry_text(ours) if ours is not None else ""
            if name not in self.theirs:
                parts.append(mine)
                continue
            theirs = self.theirs[name]
            yours = codec.entry_text(theirs) if theirs is not None else ""
            parts += [f"<<<<<<< {ours_label}\n", mine, "=======\n", yours]
            parts.append(f">>>>>>> {theirs_label}\n")
        return "".join(parts).encode()


def _pick(
    base: Entry | None, ours: Entry | None, theirs: Entry | None
) -> tuple[Entry | None, bool]:
    """The merged entry and whether the two sides conflict."""
    if ours == theirs or theirs == base:
        return ours, False
    if ours == base:
        return theirs, False
    if ours is not None and theirs is not None and ours.sha256 == theirs.sha256:
        # Same bytes on both sides: one side pushed it. Synced wins (it is on the remote).
        return (ours if ours.state == "synced" else theirs), False
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
    return MergeResult(result, conflicts, {n: theirs.entries.get(n) for n in conflicts})


def merge_texts(base: bytes, ours: bytes, theirs: bytes, where: str) -> MergeResult:
    """Parse and merge three versions; an empty ``base`` means no common ancestor."""
    codec = Codec()  # the three share most entry blocks: each is verified once
    with about_registry(where):
        base_reg = codec.parse(base, f"{where} (ancestor)") if base.strip() else None
        ours_reg = codec.parse(ours, f"{where} (ours)")
        return merge(base_reg, ours_reg, codec.parse(theirs, f"{where} (theirs)"))
