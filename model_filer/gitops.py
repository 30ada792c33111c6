"""Every git call model_filer makes, in one place and one style.

Plain ``git`` processes through :func:`run` (as pre-commit's ``cmd_output``): the hooks must
feel instant, so they spawn ``git cat-file --batch`` once for all files and ``git diff-tree``
for two revisions instead of importing GitPython (which alone costs more than a branch switch
linked from the local object store).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .errors import ModelFilerError
from .files import remote_type_of

NULL_REF = "0" * 40


class GitError(ModelFilerError):
    """A git command failed; ``args`` and ``stderr`` say which and why."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.git_args = list(args)
        self.returncode = returncode
        self.stderr = stderr
        lines = stderr.strip().splitlines()
        super().__init__(f"git {args[0]} failed: {lines[-1] if lines else returncode}")


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
        raise ModelFilerError("git is not installed or not on PATH. Install git.") from None
    if check and done.returncode != 0:
        raise GitError(args, done.returncode, done.stderr.decode(errors="replace"))
    return done


def output(args: Sequence[str], cwd: Path | None = None) -> str:
    """The stripped text ``git ARGS`` prints."""
    return run(args, cwd).stdout.decode(errors="replace").strip()


def in_git_repo(cwd: Path | None = None) -> bool:
    """Whether ``cwd`` (default: the current directory) is inside a git working tree."""
    return run(["rev-parse", "--git-dir"], cwd, check=False).returncode == 0


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


def set_config(top: Path, key: str, value: str) -> None:
    """Set a value in the repository's own git config (never a committed file)."""
    run(["config", key, value], top)


def show_at_head(top: Path, path: str) -> str | None:
    """The content of ``path`` in the HEAD commit, or None (untracked, or no commit yet)."""
    done = run(["show", f"HEAD:{path}"], top, check=False)
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def staged_paths(cwd: Path | None = None) -> list[str]:
    """Paths added, copied, modified or renamed in the index (what a commit will record)."""
    out = run(["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], cwd).stdout
    return [p for p in out.decode().split("\0") if p]


def read_blobs(specs: Sequence[str], cwd: Path | None = None) -> dict[str, bytes | None]:
    """Contents of ``<rev>:<path>`` specs (``:path`` is the index); ``None`` when missing."""
    if not specs:
        return {}
    if any("\n" in s for s in specs):
        raise ModelFilerError("A path with a newline cannot be read from git; rename it.")
    out = run(["cat-file", "--batch"], cwd, data="".join(f"{s}\n" for s in specs).encode()).stdout
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


# -- revisions and the repository (plain git: the checkout hook must start fast) -----------


class Repo(NamedTuple):
    """The repository a hook runs in: its working tree and its (per-worktree) git folder."""

    working_tree_dir: str
    git_dir: str


def open_repo(path: Path | None = None) -> Repo:
    """The repository containing ``path`` (default: the current directory)."""
    done = run(["rev-parse", "--show-toplevel", "--absolute-git-dir"], path, check=False)
    lines = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0 or len(lines) != 2:
        raise ModelFilerError(f"{path or Path.cwd()} is not inside a git repository.")
    return Repo(lines[0], lines[1])


def _commit(repo: Repo, rev: str) -> str:
    """The commit sha ``rev`` names."""
    done = run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], _top(repo), check=False)
    if done.returncode != 0:
        raise ModelFilerError(f"Unknown git revision {rev!r}.")
    return done.stdout.decode().strip()


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
