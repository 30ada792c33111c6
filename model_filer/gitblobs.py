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


# -- this clone's git config (`git config --local`: never committed) ----------------------------
# Plain `git config` processes: the hooks read it on every checkout, so no GitPython.


def config_get_regexp(pattern: str, cwd: Path | None = None) -> dict[str, str] | None:
    """Local config entries whose key matches ``pattern``: key -> value (the last one wins).

    ``None`` when ``cwd`` is not inside a git repository: there is no clone to configure.
    """
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "config", "--local", "-z", "--get-regexp", pattern],  # noqa: S607
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if done.returncode == 1:  # nothing matches
        return {}
    if done.returncode != 0:
        return None
    items = (item.partition(b"\n") for item in done.stdout.split(b"\0") if item)
    return {key.decode(): value.decode() for key, _, value in items}


def config_set(key: str, value: str, cwd: Path | None = None) -> None:
    """Set ``key`` in this clone's own config (``.git/config``)."""
    _git(["config", "--local", key, value], cwd)


def config_unset(key: str, cwd: Path | None = None) -> None:
    """Remove ``key`` from this clone's config (absent is fine)."""
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "config", "--local", "--unset-all", key],  # noqa: S607
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if done.returncode not in (0, 5):  # 5: no such key
        raise ModelFilerError(f"git config --unset-all {key} failed: {done.stderr.decode()}")
