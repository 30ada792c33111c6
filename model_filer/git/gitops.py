"""Every git call model_filer makes: plain ``git`` processes, and one ``cat-file --batch`` reader.

Git is called directly, never through GitPython: its import alone costs about 40 ms of a
hook's start, and each ``Repo`` keeps two ``git cat-file`` children alive for as long as it
lives, which a library imported into notebooks must not leave behind. Each function here
starts its processes and waits for them; none outlives the call.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from model_filer.errors import GitError, ModelFilerError
from model_filer.fs.layout import remote_type_of

NULL_REF = NULL_BLOB = "0" * 40
_C_LOCALE = {"LC_ALL": "C"}  # git's messages untranslated, where one is matched


def run(
    args: Sequence[str],
    cwd: Path | None = None,
    data: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` and return the finished process; raise :class:`GitError` on failure."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", *args],  # noqa: S607 - git from PATH, as git runs hooks
            cwd=cwd,
            input=data,
            capture_output=True,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except FileNotFoundError:
        if cwd is not None and not Path(cwd).is_dir():  # the missing file was the folder
            raise ModelFilerError(f"{cwd} is not a folder: pass an existing one.") from None
        raise ModelFilerError("git is not installed or not on PATH. Install git.") from None
    if check and done.returncode != 0:
        raise GitError(args, done.returncode, done.stderr.decode(errors="replace"))
    return done


def _text(args: Sequence[str], cwd: Path | None = None) -> str:
    return run(args, cwd).stdout.decode(errors="replace")


def pin_work_tree() -> None:
    """Make this process's git calls find the work tree from any folder, as git's hook does.

    ``git clone`` runs its checkout hook with ``GIT_DIR`` exported and no ``GIT_WORK_TREE``;
    git then takes the *current* folder as the work tree's top, so a git call made from a model
    folder would see that folder as the repository (and ``models/.s3_registry`` as
    ``.s3_registry``). A hook starts at the top: pin it there. A relative ``GIT_DIR``
    (``git --git-dir=.git commit``) is made absolute too, or a call from a model folder would
    look for ``models/.git``. Call it first thing in a hook.
    """
    if git_dir := os.environ.get("GIT_DIR"):
        os.environ["GIT_DIR"] = os.path.abspath(git_dir)
        if not os.environ.get("GIT_WORK_TREE"):
            os.environ["GIT_WORK_TREE"] = os.getcwd()


# -- where a folder is in git ---------------------------------------------------------------
class Repo(NamedTuple):
    """A folder's repository: the work tree's top, its (per-worktree) git folder, and the
    folder's path below the top (``""`` or ``"models/"``)."""

    top: Path
    git_dir: Path
    prefix: str = ""


def _dot_git(folder: Path) -> Path | None:
    """The ``.git`` (a folder, or a worktree's file) in ``folder`` or a parent, if any.

    Asked only after git failed: only a folder that no repository contains may be treated
    as outside git. Any other failure (git missing, a repository git refuses as owned by
    another user) must stop a trust decision, not skip it.
    """
    for parent in (folder.resolve(), *folder.resolve().parents):
        if (parent / ".git").exists():
            return parent / ".git"
    return None


def _unusable(dot_git: Path, args: Sequence[str], returncode: int, stderr: str) -> GitError:
    """The error for a repository git refuses: git's reason, and which ``.git`` it is."""
    return GitError(args, returncode, f"{stderr}\n({dot_git} is there, but git cannot use it.)")


def locate(folder: Path | None = None) -> Repo | None:
    """The repository holding ``folder`` (default: the current one), with one git process;
    ``None`` outside git. A folder not made yet belongs to its parent's repository."""
    folder = Path.cwd() if folder is None else folder
    probe = folder
    while not probe.is_dir():
        if probe.parent == probe:
            return None
        probe = probe.parent
    args = ["rev-parse", "--show-toplevel", "--absolute-git-dir", "--show-prefix"]
    done = run(args, probe, check=False)
    lines = done.stdout.decode(errors="replace").split("\n")
    if done.returncode != 0 or len(lines) < 3:
        dot_git = _dot_git(probe)
        if dot_git is None:
            return None
        # git refused a repository (unsafe owner, broken .git): never "outside git"
        raise _unusable(dot_git, args, done.returncode, done.stderr.decode(errors="replace"))
    rest = folder.resolve().relative_to(probe.resolve()).as_posix()
    prefix = lines[2] + (f"{rest}/" if rest != "." else "")
    return Repo(Path(lines[0]), Path(lines[1]), prefix)


def open_repo(folder: Path | None = None) -> Repo:
    """The repository holding ``folder``; :class:`ModelFilerError` outside git."""
    repo = locate(folder)
    if repo is None:
        raise ModelFilerError(
            f"{folder or Path.cwd()} is not inside a git repository. Run `git init` first, "
            "or run this inside your repository."
        )
    return repo


def git_path(top: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME``, absolute (hooks folder, state files)."""
    path = Path(_text(["rev-parse", "--git-path", name], top).strip())
    return path if path.is_absolute() else top / path


def clone_commit(repo: Repo) -> str | None:
    """The commit ``git clone`` checked out, from the oldest entry of HEAD's reflog; ``None``
    for a repository that was not cloned (or whose reflog is gone)."""
    try:
        with (repo.git_dir / "logs" / "HEAD").open("rb") as fh:
            first = fh.readline().decode(errors="replace")
    except OSError:
        return None
    fields, _, message = first.partition("\t")
    parts = fields.split()
    return parts[1] if len(parts) > 1 and message.startswith("clone: ") else None


def rebase_in_progress(repo: Repo) -> bool:
    """Whether a rebase is under way (its checkouts are not the user's)."""
    return (repo.git_dir / "rebase-merge").exists() or (repo.git_dir / "rebase-apply").exists()


def is_shallow(cwd: Path) -> bool:
    """Whether the repository is a shallow clone (part of its history is missing)."""
    return _text(["rev-parse", "--is-shallow-repository"], cwd).strip() == "true"


def commit_of(rev: str, cwd: Path) -> str | None:
    """The full sha of the commit ``rev`` names, or ``None`` if it names none."""
    if not _safe_rev(rev):
        return None
    try:
        out = _text(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    except ModelFilerError:
        return None
    return out.strip() or None


def merge_base(commits: Sequence[str], cwd: Path) -> str | None:
    """The best common ancestor of ``commits`` (full shas: a merge's parents), or ``None``."""
    done = run(["merge-base", "--octopus", *commits], cwd, check=False)
    return done.stdout.decode().strip() or None if done.returncode == 0 else None


def _safe_rev(rev: str) -> bool:
    """Whether ``rev`` can be passed to git (never read as an option, one line)."""
    return bool(rev) and not rev.startswith("-") and not any(c in rev for c in "\0\n")


# -- the one object reader ------------------------------------------------------------------
class Blob(NamedTuple):
    """A git blob: its id and its bytes."""

    oid: str
    data: bytes


def blob_id(data: bytes) -> str:
    """Git's (SHA-1) blob id of ``data``: what ``git hash-object`` prints for it."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def cat(
    specs: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, bytes] | None]:
    """(id, type, bytes) of each object spec (``<rev>:<path>``, ``:<path>`` for the index, an
    id), from one ``git cat-file --batch``; ``None`` for a missing one."""
    if not specs:
        return []
    if any("\n" in s for s in specs):
        raise ModelFilerError("A path with a newline cannot be read from git; rename it.")
    query = "".join(f"{s}\n" for s in specs).encode()
    out = run(["cat-file", "--batch"], cwd, data=query, env=env).stdout
    found: list[tuple[str, str, bytes] | None] = []
    pos = 0
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[2].isdigit():  # (else "<spec> missing")
            size = int(header[2])
            found.append((header[0].decode(), header[1].decode(), out[pos : pos + size]))
            pos += size + 1  # every object's bytes are stepped over, whatever its type
        else:
            found.append(None)
    return found


def blobs(
    specs: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Blob | None]:
    """The blob each spec names; ``None`` when missing (or not a blob)."""
    specs = list(dict.fromkeys(specs))
    return {
        spec: Blob(got[0], got[2]) if got is not None and got[1] == "blob" else None
        for spec, got in zip(specs, cat(specs, cwd, env), strict=True)
    }


def read_staged(paths: Sequence[str], cwd: Path | None = None) -> dict[str, Blob | None] | None:
    """The index's blobs of ``paths`` (``None`` for one not staged), or ``None`` outside a
    git working tree: one git process, where asking first would be two."""
    try:
        found = blobs([f":{p}" for p in paths], cwd, env=_C_LOCALE)
    except GitError as exc:
        if exc.returncode == 128 and "not a git repository" in exc.stderr:
            return None
        raise
    return {p: found[f":{p}"] for p in paths}


def read_at(rev: str, path: str, cwd: Path) -> tuple[str | None, bytes | None]:
    """The commit ``rev`` names and the blob at ``path`` in it, with one git process.

    ``(None, None)`` when ``rev`` names no commit; ``(sha, None)`` when the path is absent.
    """
    if not _safe_rev(rev) or "\n" in path:
        return None, None
    commit, blob = cat([f"{rev}^{{commit}}", f"{rev}:{path}"], cwd)
    if commit is None or commit[1] != "commit":
        return None, None
    return commit[0], blob[2] if blob is not None and blob[1] == "blob" else None


def staged_paths(cwd: Path | None = None) -> list[str]:
    """Paths added, copied, modified or renamed in the index (what a commit will record)."""
    out = run(["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], cwd).stdout
    return [p for p in out.decode().split("\0") if p]


# -- registries at revisions ----------------------------------------------------------------
def registry_ids(top: Path, rev: str) -> dict[str, str]:
    """Every registry file tracked at ``rev``: path -> blob id, from one ``git ls-tree``
    (walking the tree object by object costs seconds in a large repository)."""
    args = ["ls-tree", "-r", "-z", "--full-tree", f"{rev}^{{commit}}"]
    done = run(args, top, check=False) if _safe_rev(rev) else None
    if done is None or done.returncode != 0:
        raise ModelFilerError(f"Unknown git revision {rev!r}.")
    found = {}
    for record in filter(None, done.stdout.decode().split("\0")):
        meta, _, path = record.partition("\t")
        _, kind, oid = meta.split()
        if kind == "blob" and remote_type_of(path):
            found[path] = oid
    return found


def registries_at(top: Path, rev: str) -> dict[str, bytes]:
    """Every registry file tracked at ``rev``: path -> content (two git processes)."""
    ids = registry_ids(top, rev)
    found = blobs(list(ids.values()), top)
    return {p: blob.data for p, oid in ids.items() if (blob := found[oid]) is not None}


def changed_registries(top: Path, old: str | None, new: str) -> dict[str, str]:
    """Registry paths present at ``new`` that differ from ``old`` (all of them without
    ``old``), each with its blob id at ``new``: one git process."""
    if not old or old == NULL_REF:  # after a clone
        return registry_ids(top, new)
    # One plumbing call (user diff settings do not apply; a rename counts as its new path).
    args = ["diff-tree", "-r", "-z", "--no-renames", "--diff-filter=d"]
    done = run([*args, f"{old}^{{commit}}", f"{new}^{{commit}}", "--"], top, check=False)
    if done.returncode != 0:  # e.g. an old ref from a discarded history: look at them all
        return registry_ids(top, new)
    fields = done.stdout.decode().split("\0")
    # Records are ":<modes> <old id> <new id> <status>" then the path.
    return {
        path: meta.split()[3]
        for meta, path in zip(fields[0::2], fields[1::2], strict=False)
        if meta.startswith(":") and remote_type_of(path)
    }


def head_and_tag_commits(top: Path) -> list[str]:
    """The commits that local branch heads and tags point at (annotated tags peeled)."""
    fields = "%(objectname) %(objecttype) %(*objectname) %(*objecttype)"
    out = _text(["for-each-ref", f"--format={fields}", "refs/heads", "refs/tags"], top)
    commits = set()
    for line in out.splitlines():
        direct, kind, *peeled = line.split()
        if peeled:  # an annotated tag: what it points at
            direct, kind = peeled[0], peeled[1] if len(peeled) > 1 else ""
        if kind == "commit":  # (a tag may name a tree or a blob: no registry there)
            commits.add(direct)
    return sorted(commits)


# -- history: path logs and reachable registry blobs ----------------------------------------
class PathChange:
    """One commit's change of files under a pathspec, as ``git log --raw`` reports it."""

    __slots__ = ("author", "blobs", "commit", "parents", "time")

    def __init__(self, commit: str, parents: list[str], time: int, author: str) -> None:
        self.commit = commit
        self.parents = parents
        self.time = time
        self.author = author
        #: (path, blob before, blob after) per parent diff; NULL_BLOB for "absent".
        self.blobs: list[tuple[str, str, str]] = []


def _raw_log(cwd: Path, args: Sequence[str], pathspecs: Sequence[str]) -> str:
    log_args = ["log", *args, "--raw", "--no-abbrev", "--no-renames", "-m"]
    return _text([*log_args, "--", *pathspecs], cwd)


def path_log(cwd: Path, pathspecs: Sequence[str], revs: Sequence[str]) -> list[PathChange]:
    """Commits under ``revs`` that change ``pathspecs``, newest first, with their blob ids.

    One ``git log`` for the whole history (never a process per commit). A merge is diffed
    against each parent (``-m``), so it carries one line per parent it differs from.
    """
    out = _raw_log(cwd, ["--format=%x1e%H %P%x1f%ct%x1f%an", *revs], pathspecs)
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
    out = _raw_log(cwd, ["--all", "--full-history", "--format="], pathspecs)
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith(":"):
            meta, _, path = line.partition("\t")
            for blob in meta.split()[2:4]:  # the version before is reachable too (a parent)
                if blob != NULL_BLOB:
                    found.setdefault(blob, set()).add(path)
    staged = _text(["ls-files", "-s", "-z", "--", *pathspecs], cwd)
    for record in filter(None, staged.split("\0")):
        meta, _, path = record.partition("\t")
        found.setdefault(meta.split()[1], set()).add(path)
    return found


# -- this clone's git config (`git config --local`: never committed) ------------------------
def config_read(pattern: str, cwd: Path | None = None) -> dict[str, str] | None:
    """Local config entries whose key matches ``pattern``: key -> value (the last one wins).

    ``None`` when ``cwd`` is not inside a git repository: there is no clone to configure.
    """
    done = run(["config", "--local", "-z", "--get-regexp", pattern], cwd, check=False)
    if done.returncode == 1:  # nothing matches
        return {}
    if done.returncode != 0:
        dot_git = None if cwd is None else _dot_git(cwd)
        if dot_git is None:
            return None
        why = run(["rev-parse", "--git-dir"], cwd, check=False)  # says why git refuses it
        stderr = (why.stderr or done.stderr).decode("utf-8", "replace")
        raise _unusable(dot_git, ["config", "--get-regexp", pattern], done.returncode, stderr)
    items = (item.partition(b"\n") for item in done.stdout.split(b"\0") if item)
    return {key.decode(): value.decode() for key, _, value in items}


_CONFIG_LOCK_WAIT = 10.0  # seconds: git config writes are quick, so this is contention


def _config_write(args: list[str], cwd: Path | None, ok: tuple[int, ...]) -> None:
    """``git config ARGS``, again while another process holds the config's lock: git refuses
    at once rather than wait, and parallel processes record trust at the same moment."""
    deadline = time.monotonic() + _CONFIG_LOCK_WAIT
    while True:
        done = run(["config", "--local", *args], cwd, env=_C_LOCALE, check=False)
        if done.returncode in ok:
            return
        stderr = done.stderr.decode(errors="replace")
        if "could not lock config file" not in stderr or time.monotonic() > deadline:
            raise GitError(["config", *args], done.returncode, stderr)
        time.sleep(random.uniform(0.005, 0.03))  # noqa: S311 - jitter, not a secret


def config_set(key: str, value: str, cwd: Path | None = None) -> None:
    """Set ``key`` in this clone's own config (``.git/config``)."""
    _config_write([key, value], cwd, (0,))


def config_unset(key: str, cwd: Path | None = None) -> None:
    """Remove ``key`` from this clone's config (absent is fine)."""
    _config_write(["--unset-all", key], cwd, (0, 5))  # 5: no such key
