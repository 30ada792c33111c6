"""pre-push hook: refuse to push registries that name objects missing from their remote.

For each pushed commit, every ``synced`` entry of every registry as committed there (not the
working tree) must exist on its remote with the recorded size; otherwise nobody who pulls
could load it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from model_filer.hookapi import (
    FAIL_FAST,
    NULL_REF,
    Entry,
    ModelFilerError,
    Remote,
    get_remote,
    open_repo,
    override_of,
    parse,
    registries_at,
)


def pushed_revisions(stdin_lines: Sequence[str]) -> list[str]:
    """Local commits being pushed: pre-commit's env var, else git's stdin lines."""
    if to_ref := os.environ.get("PRE_COMMIT_TO_REF"):
        return [to_ref]
    revs = []
    for line in stdin_lines:
        parts = line.split()
        if len(parts) == 4 and parts[1] != NULL_REF:  # a deletion pushes nothing
            revs.append(parts[1])
    return revs


def _check_entry(remote: Remote, path: str, entry: Entry) -> str | None:
    if entry.key is None:
        return None
    try:
        size = remote.size_of(entry.key)
    except ModelFilerError as exc:
        return f"{path}: {entry.name}: cannot check {remote.url(entry.key)}: {exc}"
    if size is None:
        return f"{path}: {entry.name}: {remote.url(entry.key)} is missing from the remote"
    if size != entry.size:
        return (
            f"{path}: {entry.name}: {remote.url(entry.key)} has {size} bytes, "
            f"the registry says {entry.size}"
        )
    return None


def check(revisions: Sequence[str], jobs: int = 16) -> list[str]:
    """Problems with the synced entries of registries committed at ``revisions``."""
    repo = open_repo()
    top = Path(repo.working_tree_dir)
    remotes: dict[tuple[str, str], Remote] = {}
    tasks: dict[tuple[str, str, str], tuple[Remote, str, Entry]] = {}
    problems: list[str] = []
    for rev in revisions:
        for path, text in registries_at(repo, rev).items():
            where = f"{path} at {rev[:10]}"
            try:
                reg = parse(text, where, filename=path)
                here = override_of(top / path, reg, top)  # the share's path on this machine
                key = (reg.remote_type, here.address if here else reg.remote_address)
                remote = remotes.get(key) or remotes.setdefault(key, get_remote(*key, FAIL_FAST))
            except ModelFilerError as exc:
                problems.append(str(exc))
                continue
            for entry in reg.entries.values():
                if entry.state == "synced":
                    tasks.setdefault((*key, entry.key or ""), (remote, where, entry))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(lambda t: _check_entry(*t), tasks.values())
        problems.extend(p for p in results if p)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check-remote-models", description=__doc__)
    parser.add_argument("git_args", nargs="*", help=argparse.SUPPRESS)  # remote name and url
    args = parser.parse_args(argv)
    del args
    stdin = [] if os.environ.get("PRE_COMMIT_TO_REF") or sys.stdin.isatty() else sys.stdin
    try:
        problems = check(pushed_revisions(list(stdin)))
    except ModelFilerError as exc:
        print(f"check-remote-models: {exc}", file=sys.stderr)
        return 1
    if problems:
        print("model_filer: push refused: registries name models their remote does not have:")
        print("\n".join(problems))
        print(
            "  fix: on the machine that has them, `model-filer push --dir DIR NAME`, or "
            "remove the entries (`model-filer rm --dir DIR NAME`) and commit."
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
