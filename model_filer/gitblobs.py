"""Reading file contents from git's index or a commit with plain ``git`` processes.

The commit-time hook must feel instant, so this module spawns ``git cat-file --batch`` once
for all files instead of importing GitPython (which the post-checkout hook uses).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelFilerError


def _git(args: Sequence[str], cwd: Path | None = None, data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, git from PATH
            ["git", *args],  # noqa: S607 - git from PATH, as git runs hooks
            cwd=cwd,
            input=data,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise ModelFilerError("git is not installed or not on PATH.") from None
    if done.returncode != 0:
        msg = done.stderr.decode(errors="replace").strip().splitlines()
        raise ModelFilerError(f"git {args[0]} failed: {msg[-1] if msg else done.returncode}")
    return done.stdout


def in_git_repo(cwd: Path | None = None) -> bool:
    try:
        _git(["rev-parse", "--git-dir"], cwd)
    except ModelFilerError:
        return False
    return True


def toplevel(cwd: Path | None = None) -> Path:
    """The top folder of the working tree (paths from git are relative to it)."""
    return Path(_git(["rev-parse", "--show-toplevel"], cwd).decode().strip())


def staged_paths(cwd: Path | None = None) -> list[str]:
    """Paths added, copied, modified or renamed in the index (what a commit will record)."""
    out = _git(["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], cwd)
    return [p for p in out.decode().split("\0") if p]


def read_blobs(specs: Sequence[str], cwd: Path | None = None) -> dict[str, bytes | None]:
    """Contents of ``<rev>:<path>`` specs (``:path`` is the index); ``None`` when missing."""
    if not specs:
        return {}
    if any("\n" in s for s in specs):
        raise ModelFilerError("A path with a newline cannot be read from git; rename it.")
    out = _git(["cat-file", "--batch"], cwd, data="".join(f"{s}\n" for s in specs).encode())
    result: dict[str, bytes | None] = {}
    pos = 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            result[spec] = out[pos : pos + size]
            pos += size + 1
        else:
            result[spec] = None  # "<spec> missing" (or not a blob)
    return result


# -- history (issue 10): revisions, path logs and reachable registry blobs ------------------
# Kept together so they can move into the one module that owns every git call.

NULL_BLOB = "0" * 40


_PREFIXES: dict[str, tuple[Path, str]] = {}  # a folder does not move between repositories


def repo_prefix(folder: Path) -> tuple[Path, str] | None:
    """The work tree's top folder and ``folder``'s path inside it; ``None`` outside git."""
    memo = _PREFIXES.get(str(folder.absolute()))
    if memo is not None and memo[0].is_dir():
        return memo
    probe = folder
    while not probe.is_dir():  # a model folder not made yet still belongs to its repo
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        out = _git(["rev-parse", "--show-toplevel", "--show-prefix"], probe).decode()
    except ModelFilerError:
        return None
    top, _, prefix = out.partition("\n")
    rest = folder.resolve().relative_to(probe.resolve()).as_posix()
    prefix = prefix.strip()
    if rest != ".":
        prefix = f"{prefix}{rest}/"
    _PREFIXES[str(folder.absolute())] = (Path(top), prefix)
    return Path(top), prefix


def read_at(rev: str, path: str, cwd: Path) -> tuple[str | None, bytes | None]:
    """The commit ``rev`` names and the blob at ``path`` in it, with one git process.

    ``(None, None)`` when ``rev`` names no commit; ``(sha, None)`` when the path is absent.
    """
    if not rev or any(c in rev for c in "\0\n") or "\n" in path:
        return None, None
    specs = f"{rev}^{{commit}}\n{rev}:{path}\n".encode()
    out = _git(["cat-file", "--batch"], cwd, data=specs)
    found: list[tuple[bytes, bytes] | None] = []
    pos = 0
    for _ in range(2):
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] in (b"commit", b"blob"):
            size = int(header[2])
            found.append((header[0], out[pos : pos + size]))
            pos += size + 1
        else:
            found.append(None)
    commit, blob = found
    if commit is None:
        return None, None
    return commit[0].decode(), blob[1] if blob is not None else None


def commit_of(rev: str, cwd: Path) -> str | None:
    """The full sha of the commit ``rev`` names, or ``None`` if it names none."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n"):
        return None  # never let a revision be read as an option
    try:
        out = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    except ModelFilerError:
        return None
    return out.decode().strip() or None


def is_shallow(cwd: Path) -> bool:
    """Whether the repository is a shallow clone (part of its history is missing)."""
    return _git(["rev-parse", "--is-shallow-repository"], cwd).decode().strip() == "true"


class PathChange:
    """One commit's change of files under a pathspec, as ``git log --raw`` reports it."""

    __slots__ = ("author", "blobs", "commit", "parents", "time")

    def __init__(self, commit: str, parents: list[str], time: int, author: str) -> None:
        self.commit = commit
        self.parents = parents
        self.time = time
        self.author = author
        #: path -> (blob before, blob after) per parent diff; NULL_BLOB for "absent".
        self.blobs: list[tuple[str, str, str]] = []


def path_log(cwd: Path, pathspecs: Sequence[str], revs: Sequence[str]) -> list[PathChange]:
    """Commits under ``revs`` that change ``pathspecs``, newest first, with their blob ids.

    One ``git log`` for the whole history (never a process per commit). A merge is diffed
    against each parent (``-m``), so it carries one line per parent it differs from.
    """
    out = _git(
        [
            "log",
            "--format=%x1e%H %P%x1f%ct%x1f%an",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "-m",
            *revs,
            "--",
            *pathspecs,
        ],
        cwd,
    ).decode("utf-8", errors="replace")
    changes: list[PathChange] = []
    by_commit: dict[str, PathChange] = {}
    for record in out.split("\x1e")[1:]:
        head, _, raw = record.partition("\n")
        ids, when, author = head.split("\x1f", 2)
        commit, *parents = ids.split()
        change = by_commit.get(commit)
        if change is None:  # -m repeats a merge's header once per parent
            change = by_commit[commit] = PathChange(commit, parents, int(when), author)
            changes.append(change)
        for line in raw.splitlines():
            if line.startswith(":"):
                meta, _, path = line.partition("\t")
                fields = meta.split()
                change.blobs.append((path, fields[2], fields[3]))
    return changes


def reachable_blobs(cwd: Path, pathspecs: Sequence[str]) -> dict[str, set[str]]:
    """Every blob id a file under ``pathspecs`` has at any commit reachable from any ref.

    Returns blob id -> paths. ``--full-history -m`` walks every commit and diffs a merge
    against each parent, so every version of a file shows up where it first differs from a
    parent (or at a root commit). The index's versions are included: a staged registry may
    name objects no commit names yet.
    """
    out = _git(
        [
            "log",
            "--all",
            "--full-history",
            "-m",
            "--format=",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "--",
            *pathspecs,
        ],
        cwd,
    ).decode("utf-8", errors="replace")
    blobs: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith(":"):
            meta, _, path = line.partition("\t")
            for blob in meta.split()[2:4]:  # the version before is reachable too (a parent)
                if blob != NULL_BLOB:
                    blobs.setdefault(blob, set()).add(path)
    staged = _git(["ls-files", "-s", "-z", "--", *pathspecs], cwd).decode()
    for record in filter(None, staged.split("\0")):
        meta, _, path = record.partition("\t")
        blobs.setdefault(meta.split()[1], set()).add(path)
    return blobs


def read_objects(ids: Sequence[str], cwd: Path) -> dict[str, bytes]:
    """Contents of blobs by id, with one ``git cat-file --batch``; missing ones are left out."""
    found = read_blobs(list(dict.fromkeys(ids)), cwd)
    return {i: data for i, data in found.items() if data is not None}
