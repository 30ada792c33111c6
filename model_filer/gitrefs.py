"""Registries between git revisions, through GitPython (used by prefetch and pre-push hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ModelFilerError
from .files import remote_type_of
from .gitblobs import read_blobs

NULL_REF = "0" * 40


def open_repo(path: Path | None = None) -> Any:
    """The git repository containing ``path`` (default: the current directory)."""
    import git

    try:
        return git.Repo(path or Path.cwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ModelFilerError(f"{path or Path.cwd()} is not inside a git repository.") from None


def _commit(repo: Any, rev: str) -> Any:
    import git

    try:
        return repo.commit(rev)
    except (git.BadName, ValueError, git.GitCommandError):
        raise ModelFilerError(f"Unknown git revision {rev!r}.") from None


def registries_at(repo: Any, rev: str) -> dict[str, bytes]:
    """Every registry file tracked at ``rev``: path -> content."""
    sha = _commit(repo, rev).hexsha
    # One `git ls-tree` and one `git cat-file --batch`: walking the tree object by object in
    # Python costs seconds in a large repository.
    listing = repo.git.ls_tree("-r", "-z", "--full-tree", "--name-only", sha)
    paths = [p for p in listing.split("\0") if p and remote_type_of(p)]
    blobs = read_blobs([f"{sha}:{p}" for p in paths], Path(repo.working_tree_dir))
    return {p: blob for p in paths if (blob := blobs[f"{sha}:{p}"]) is not None}


def changed_registries(repo: Any, old: str | None, new: str) -> list[str]:
    """Registry paths present at ``new`` that differ from ``old`` (all of them without ``old``)."""
    if not old or old == NULL_REF:  # after a clone
        return sorted(registries_at(repo, new))
    try:
        old_commit = _commit(repo, old)
    except ModelFilerError:
        return sorted(registries_at(repo, new))  # e.g. a ref from a discarded history
    diffs = old_commit.diff(_commit(repo, new))
    return sorted(
        {d.b_path for d in diffs if d.b_path and not d.deleted_file and remote_type_of(d.b_path)}
    )
