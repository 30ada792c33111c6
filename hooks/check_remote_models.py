"""pre-push hook: refuse to push registries that name objects missing from their remote.

For each pushed commit, every ``synced`` entry of every registry as committed there (not the
working tree) must exist on its remote with the recorded size; otherwise nobody who pulls
could load it. Sizes come from listings (one LIST per key prefix, about a page each), not from
one HEAD per object: 10,000 entries cost about ten requests.

A remote that cannot be checked (down, or a stuck VPN: the hooks' network policy gives up
within 13 s) refuses the push too: an unanswered check proves nothing, and a push that passed
would let teammates clone models they cannot load. The message says how to push anyway.
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


UNCHECKED = "cannot check"  # in the problem of an entry whose remote did not answer
OVERRIDE = (
    "  to push without this check: `git push --no-verify`, or under pre-commit "
    "`SKIP=check-remote-models git push`."
)
FEW = 64  # up to this many models: one listing per model folder (<name>/), in parallel
PAGE = 1000  # keys a LIST request returns: larger groups are split by one more character


def list_prefixes(keys: Sequence[str]) -> list[str]:
    """Key prefixes whose listings together cover ``keys``, few and each about a page.

    A key ``<name>/<sha>.pkl`` lives in its model's folder ``<name>/``. A few folders are listed
    one by one (only that model's versions come back); many are grouped by their leading
    characters, one more character at a time until a group fits in about one page, so 10,000
    models cost ~10 listings that run side by side.
    """
    folders = sorted({k.rpartition("/")[0] + "/" if "/" in k else k for k in keys})
    if len(folders) <= FEW:
        return folders
    prefixes: list[str] = []

    def split(group: list[str], depth: int) -> None:
        if len(group) <= PAGE:
            prefixes.append(group[0][:depth])
            return
        by_char: dict[str, list[str]] = {}
        for folder in group:
            if len(folder) <= depth:  # the folder itself: a prefix of its own
                prefixes.append(folder)
            else:
                by_char.setdefault(folder[: depth + 1], []).append(folder)
        for sub in by_char.values():
            split(sub, depth + 1)

    split(folders, 0)
    return prefixes


def _problem(remote: Remote, where: str, entry: Entry, sizes: dict[str, int]) -> str | None:
    key = entry.key or ""
    size = sizes.get(key)
    if size is None:
        return f"{where}: {entry.name}: {remote.url(key)} is missing from the remote"
    if size != entry.size:
        return (
            f"{where}: {entry.name}: {remote.url(key)} has {size} bytes, "
            f"the registry says {entry.size}"
        )
    return None


def _check_remote(
    remote: Remote, tasks: list[tuple[str, Entry]], pool: ThreadPoolExecutor
) -> list[str]:
    """Problems with ``tasks`` (where, entry) on one remote: one LIST per prefix, no HEADs."""
    prefixes = list_prefixes([entry.key or "" for _, entry in tasks])
    sizes: dict[str, int] = {}
    errors: list[tuple[str, ModelFilerError]] = []

    def one(prefix: str) -> None:
        try:
            sizes.update(remote.list_sizes(prefix))
        except ModelFilerError as exc:
            errors.append((prefix, exc))

    list(pool.map(one, prefixes))
    problems = []
    for where, entry in tasks:
        key = entry.key or ""
        failed = next((exc for prefix, exc in errors if key.startswith(prefix)), None)
        if failed is not None:
            problems.append(f"{where}: {entry.name}: {UNCHECKED} {remote.url(key)}: {failed}")
        elif (problem := _problem(remote, where, entry, sizes)) is not None:
            problems.append(problem)
    return problems


def check(revisions: Sequence[str], jobs: int = 16) -> list[str]:
    """Problems with the synced entries of registries committed at ``revisions``."""
    repo = open_repo()
    top = Path(repo.working_tree_dir)
    remotes: dict[tuple[str, str], Remote] = {}
    tasks: dict[tuple[str, str], dict[str, tuple[str, Entry]]] = {}
    problems: list[str] = []
    for rev in revisions:
        for path, text in registries_at(repo, rev).items():
            where = f"{path} at {rev[:10]}"
            try:
                reg = parse(text, where, filename=path)
                here = override_of(top / path, reg, top)  # the share's path on this machine
                key = (reg.remote_type, here.address if here else reg.remote_address)
                if key not in remotes:
                    remotes[key] = get_remote(*key, FAIL_FAST)
            except ModelFilerError as exc:
                problems.append(str(exc))
                continue
            for entry in reg.entries.values():
                if entry.state == "synced" and entry.key is not None:
                    tasks.setdefault(key, {}).setdefault(entry.key, (where, entry))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for key, found in tasks.items():
            problems.extend(_check_remote(remotes[key], list(found.values()), pool))
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
        unchecked = any(UNCHECKED in problem for problem in problems)
        print(
            "model_filer: push refused: "
            + (
                "cannot check that the remote has the models registries name:"
                if unchecked
                else "registries name models their remote does not have:"
            )
        )
        print("\n".join(problems))
        if unchecked:
            print("  fix: check the network, then push again.")
            print(OVERRIDE)
        else:
            print(
                "  fix: on the machine that has them, `model-filer push --dir DIR NAME`, or "
                "remove the entries (`model-filer rm --dir DIR NAME`) and commit."
            )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
