"""Every git call model_filer makes, in one place and one style.

Plain ``git`` processes through :func:`run` (as pre-commit's ``cmd_output``): the hooks must
feel instant, so they spawn ``git cat-file --batch`` once for all files and ``git diff-tree``
for two revisions instead of importing GitPython (which alone costs more than a branch switch
linked from the local object store).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .errors import GitError, ModelFilerError
from .layout import remote_type_of

NULL_REF = "0" * 40


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


def output(args: Sequence[str], cwd: Path | None = None) -> str:
    """The stripped text ``git ARGS`` prints."""
    return run(args, cwd).stdout.decode(errors="replace").strip()


_C_LOCALE = {"LC_ALL": "C"}  # git's messages untranslated, where one is matched


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


def toplevel(cwd: Path | None = None) -> Path:
    """The top folder of the working tree (paths from git are relative to it)."""
    try:
        return Path(output(["rev-parse", "--show-toplevel"], cwd))
    except GitError:
        raise ModelFilerError(
            f"{cwd or Path.cwd()} is not a git repository. Run `git init` first, "
            "or run this inside your repository."
        ) from None


def git_path(top: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME``, absolute (hooks folder, state files)."""
    path = Path(output(["rev-parse", "--git-path", name], top))
    return path if path.is_absolute() else top / path


def show_at_head(top: Path, path: str) -> str | None:
    """The content of ``path`` in the HEAD commit, or None (untracked, or no commit yet)."""
    done = run(["show", f"HEAD:{path}"], top, check=False)
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def staged_paths(cwd: Path | None = None) -> list[str]:
    """Paths added, copied, modified or renamed in the index (what a commit will record)."""
    out = run(["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], cwd).stdout
    return [p for p in out.decode().split("\0") if p]


class Blob(NamedTuple):
    """A git blob: its id and its bytes."""

    oid: str
    data: bytes


def _cat(
    specs: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, bytes] | None]:
    """(id, type, bytes) of each object spec, from one ``git cat-file --batch``; ``None``
    for a missing one. Every object's bytes are stepped over, whatever its type."""
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
            pos += size + 1
        else:
            found.append(None)
    return found


def cat_blobs(
    specs: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Blob | None]:
    """The blobs of ``<rev>:<path>`` specs (``:path`` is the index); ``None`` when missing
    (or not a blob)."""
    if not specs:
        return {}
    return {
        spec: Blob(got[0], got[2]) if got is not None and got[1] == "blob" else None
        for spec, got in zip(specs, _cat(specs, cwd, env), strict=True)
    }


def read_blobs(specs: Sequence[str], cwd: Path | None = None) -> dict[str, bytes | None]:
    """Contents of ``<rev>:<path>`` specs (``:path`` is the index); ``None`` when missing."""
    return {s: None if b is None else b.data for s, b in cat_blobs(specs, cwd).items()}


def read_staged(paths: Sequence[str], cwd: Path | None = None) -> dict[str, Blob | None] | None:
    """The index's blobs of ``paths`` (``None`` for one not staged), or ``None`` outside a
    git working tree: one git process, where asking first would be two."""
    try:
        blobs = cat_blobs([f":{p}" for p in paths], cwd, env=_C_LOCALE)
    except GitError as exc:
        if exc.returncode == 128 and "not a git repository" in exc.stderr:
            return None
        raise
    return {p: blobs[f":{p}"] for p in paths}


# -- revisions and the repository (plain git: the checkout hook must start fast) -----------


class Repo(NamedTuple):
    """The repository a hook runs in: its working tree and its (per-worktree) git folder."""

    working_tree_dir: str
    git_dir: str


def open_repo(path: Path | None = None) -> Repo:
    """The repository containing ``path`` (default: the current directory)."""
    done = run(["rev-parse", "--show-toplevel", "--absolute-git-dir"], path, check=False)
    lines = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0 and (dot_git := _dot_git(path or Path.cwd())) is not None:
        raise _unusable(
            dot_git, ["rev-parse"], done.returncode, done.stderr.decode("utf-8", "replace")
        )
    if done.returncode != 0 or len(lines) != 2:
        raise ModelFilerError(f"{path or Path.cwd()} is not inside a git repository.")
    return Repo(lines[0], lines[1])


def clone_commit(repo: Repo) -> str | None:
    """The commit ``git clone`` checked out, from the oldest entry of HEAD's reflog; ``None``
    for a repository that was not cloned (or whose reflog is gone)."""
    try:
        with (Path(repo.git_dir) / "logs" / "HEAD").open("rb") as fh:
            first = fh.readline().decode(errors="replace")
    except OSError:
        return None
    fields, _, message = first.partition("\t")
    parts = fields.split()
    return parts[1] if len(parts) > 1 and message.startswith("clone: ") else None


def _commit(repo: Repo, rev: str) -> str:
    """The commit sha ``rev`` names (see :func:`commit_of`)."""
    sha = commit_of(rev, _top(repo))
    if sha is None:
        raise ModelFilerError(f"Unknown git revision {rev!r}.")
    return sha


def _top(repo: Repo) -> Path:
    return Path(repo.working_tree_dir)


def registries_at(repo: Repo, rev: str) -> dict[str, bytes]:
    """Every registry file tracked at ``rev``: path -> content."""
    sha = _commit(repo, rev)
    top = _top(repo)
    # One `git ls-tree` and one `git cat-file --batch`: walking the tree object by object in
    # Python costs seconds in a large repository.
    listing = run(["ls-tree", "-r", "-z", "--full-tree", "--name-only", sha], top).stdout
    paths = [p for p in listing.decode().split("\0") if p and remote_type_of(p)]
    blobs = read_blobs([f"{sha}:{p}" for p in paths], top)
    return {p: blob for p in paths if (blob := blobs[f"{sha}:{p}"]) is not None}


def head_and_tag_commits(repo: Repo) -> list[str]:
    """The commits that local branch heads and tags point at (annotated tags peeled)."""
    fields = "%(objectname) %(objecttype) %(*objectname) %(*objecttype)"
    out = run(
        ["for-each-ref", f"--format={fields}", "refs/heads", "refs/tags"], _top(repo)
    ).stdout.decode()
    commits = set()
    for line in out.splitlines():
        direct, kind, *peeled = line.split()
        if peeled:  # an annotated tag: what it points at
            direct, kind = peeled[0], peeled[1] if len(peeled) > 1 else ""
        if kind == "commit":  # (a tag may name a tree or a blob: no registry there)
            commits.add(direct)
    return sorted(commits)


def changed_registries(repo: Repo, old: str | None, new: str) -> list[str]:
    """Registry paths present at ``new`` that differ from ``old`` (all of them without ``old``)."""
    if not old or old == NULL_REF:  # after a clone
        return sorted(registries_at(repo, new))
    # One plumbing call (user diff settings do not apply; a rename counts as its new path).
    args = ["diff-tree", "-r", "-z", "--name-only", "--no-renames", "--diff-filter=d"]
    done = run([*args, f"{old}^{{commit}}", f"{new}^{{commit}}", "--"], _top(repo), check=False)
    if done.returncode != 0:  # e.g. an old ref from a discarded history: look at them all
        return sorted(registries_at(repo, new))
    return sorted({p for p in done.stdout.decode().split("\0") if p and remote_type_of(p)})


def rebase_in_progress(repo: Repo) -> bool:
    """Whether a rebase is under way (its checkouts are not the user's)."""
    git_dir = Path(repo.git_dir)
    return (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()


# -- history: revisions, path logs and reachable registry blobs ----------------------------

NULL_BLOB = "0" * 40


_PREFIXES: dict[str, tuple[Path, str]] = {}  # a folder does not move between repositories


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
        out = run(["rev-parse", "--show-toplevel", "--show-prefix"], probe).stdout.decode()
    except ModelFilerError as exc:
        dot_git = _dot_git(probe)
        if dot_git is None:
            return None
        if isinstance(exc, GitError):  # git refused a repository (unsafe owner, broken .git)
            raise _unusable(dot_git, exc.git_args, exc.returncode, exc.stderr) from None
        raise  # git is missing: never "outside git" either
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
    commit, blob = _cat([f"{rev}^{{commit}}", f"{rev}:{path}"], cwd)
    if commit is None or commit[1] != "commit":
        return None, None
    return commit[0], blob[2] if blob is not None and blob[1] == "blob" else None


def commit_of(rev: str, cwd: Path) -> str | None:
    """The full sha of the commit ``rev`` names, or ``None`` if it names none."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n"):
        return None  # never let a revision be read as an option
    try:
        out = run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd).stdout
    except ModelFilerError:
        return None
    return out.decode().strip() or None


def is_shallow(cwd: Path) -> bool:
    """Whether the repository is a shallow clone (part of its history is missing)."""
    return run(["rev-parse", "--is-shallow-repository"], cwd).stdout.decode().strip() == "true"


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
    out = run(
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
    ).stdout.decode("utf-8", errors="replace")
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
    out = run(
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
    ).stdout.decode("utf-8", errors="replace")
    blobs: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith(":"):
            meta, _, path = line.partition("\t")
            for blob in meta.split()[2:4]:  # the version before is reachable too (a parent)
                if blob != NULL_BLOB:
                    blobs.setdefault(blob, set()).add(path)
    staged = run(["ls-files", "-s", "-z", "--", *pathspecs], cwd).stdout.decode()
    for record in filter(None, staged.split("\0")):
        meta, _, path = record.partition("\t")
        blobs.setdefault(meta.split()[1], set()).add(path)
    return blobs


def read_objects(ids: Sequence[str], cwd: Path) -> dict[str, bytes]:
    """Contents of blobs by id, with one ``git cat-file --batch``; missing ones are left out."""
    found = read_blobs(list(dict.fromkeys(ids)), cwd)
    return {i: data for i, data in found.items() if data is not None}


# -- this clone's git config (`git config --local`: never committed) -------------------------
# Plain `git config` processes: the hooks read it on every checkout, so no GitPython.


def config_get_regexp(pattern: str, cwd: Path | None = None) -> dict[str, str] | None:
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


def config_file_text(repo: Repo) -> str:
    """This clone's own config file (what ``git config --local`` reads) as text; ``""`` when
    unreadable. Read without a git process, for a look on every checkout before asking git."""
    common = Path(repo.git_dir)
    try:  # a linked worktree's git folder points at the shared one
        common = common / (common / "commondir").read_text().strip()
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    try:
        return (common / "config").read_text(errors="replace")
    except OSError:
        return ""


def config_line(key: str, value: str) -> str:
    """The line ``git config`` writes for ``key = value`` in its section (git's quoting: a
    value with ``;``, ``#``, CR or edge spaces in double quotes; ``"``, ``\\``, tab and
    newline escaped)."""
    quote = '"' if value[:1] == " " or value[-1:] == " " or any(c in value for c in ";#\r") else ""
    escaped = value.translate({ord("\\"): "\\\\", ord('"'): '\\"', 9: "\\t", 10: "\\n"})
    return f"\t{key} = {quote}{escaped}{quote}\n"
