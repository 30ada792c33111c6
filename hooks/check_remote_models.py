"""pre-push hook: refuse to push registries that name objects missing from their remote.

For each pushed commit, every ``synced`` entry of every registry as committed there (not the
working tree) must exist on its remote (today's ``<name>/<sha>.pkl`` with the recorded size);
an entry of the chunked layout's map (or manifest) also needs every pack (or chunk) it names,
at least as long as the chunks placed in it. Otherwise
nobody who pulls could load it. Sizes come from listings (one LIST per key prefix, about a
page each), not from one HEAD per object: 10,000 entries cost about ten requests; manifests
are read a few at a time, then their packs or chunks are listed the same way.

A remote that cannot be checked (down, or a stuck VPN: the hooks' network policy gives up
within 13 s) refuses the push too: an unanswered check proves nothing, and a push that passed
would let teammates clone models they cannot load. The message says how to push anyway.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shlex
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from model_filer.hookapi import (
    FAIL_FAST,
    MANIFEST_KINDS,
    NULL_REF,
    STORAGE_DIR,
    Entry,
    IntegrityError,
    ModelFilerError,
    Remote,
    approved_address,
    get_remote,
    hook_git,
    manifest_needs,
    may_hold,
    parse,
    pin_work_tree,
    registries_at,
    storage_key_kind,
    under_pre_commit,
)


def pushed_revisions(stdin_lines: Sequence[str] | None) -> list[str]:
    """Local commits being pushed: the one pre-commit names, else git's stdin lines.

    ``stdin_lines`` is ``None`` when git's lines are not ours to read (pre-commit read them,
    or a person runs the hook by hand). pre-commit names a sha and a range (``TO_REF``) only
    when the remote has an ancestor; for a push that includes the root commit, the first
    push of a repository, it names only the local ref (``LOCAL_BRANCH``): that ref is checked,
    and ``HEAD`` when nothing is named. Every registry as committed there is checked, as for
    git's own lines: no range is needed.
    """
    env = os.environ
    if stdin_lines is None or under_pre_commit():
        named = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_LOCAL_BRANCH")
        return [named or "HEAD"]
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

    A key ``<name>/<sha>.pkl`` lives in its model's folder ``<name>/``; a key of the chunked
    layout, ``.model_filer/<kind>/<sha>``, in the folder of its first two hex digits (1/256 of
    that kind). A few folders are listed one by one (only that model's versions come back); many
    are grouped by their leading characters, one more character at a time until a group fits
    in about one page, so 10,000 models cost ~10 listings that run side by side.
    """
    folders = sorted({_folder(k) for k in keys})
    if len(folders) <= FEW:
        return folders
    prefixes: list[str] = []

    def split(group: list[str], depth: int) -> None:
        if len(group) <= PAGE:
            prefixes.append(os.path.commonprefix(group))  # noqa: RUF071 - characters, not paths
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


def _folder(key: str) -> str:
    kind = storage_key_kind(key)
    if kind is not None:
        return key[: len(STORAGE_DIR) + len(kind) + 4]  # .model_filer/<kind>/ and 2 hex digits
    return key.rpartition("/")[0] + "/" if "/" in key else key


def _problem(remote: Remote, where: str, entry: Entry, sizes: dict[str, int]) -> str | None:
    key = entry.key or ""
    size = sizes.get(key)
    if size is None:
        return f"{where}: {entry.name}: {remote.url(key)} is missing from the remote"
    kind = storage_key_kind(key)
    if kind == "objects" and not may_hold(size, entry.size):  # (compressed, or raw)
        return (
            f"{where}: {entry.name}: {remote.url(key)} has {size} bytes, not what a stored "
            f"object of the registry's {entry.size} may have"
        )
    if kind is None and size != entry.size:
        return (
            f"{where}: {entry.name}: {remote.url(key)} has {size} bytes, "
            f"the registry says {entry.size}"
        )
    return None


def _listed(
    remote: Remote, keys: list[str], pool: ThreadPoolExecutor
) -> tuple[dict[str, int], list[tuple[str, ModelFilerError]]]:
    """The sizes of what the listings covering ``keys`` found, and the prefixes that failed."""
    sizes: dict[str, int] = {}
    errors: list[tuple[str, ModelFilerError]] = []

    def one(prefix: str) -> None:
        try:
            sizes.update(remote.list_sizes(prefix))
        except ModelFilerError as exc:
            errors.append((prefix, exc))

    list(pool.map(one, list_prefixes(keys)))
    return sizes, errors


def _check_remote(
    remote: Remote, tasks: list[tuple[str, Entry]], pool: ThreadPoolExecutor
) -> list[tuple[str, Entry | None, str]]:
    """Problems with ``tasks`` (where, entry) on one remote: one LIST per prefix, no HEADs.
    Each is (where, the entry a push would repair or ``None``, the text)."""
    sizes, errors = _listed(remote, [entry.key or "" for _, entry in tasks], pool)
    problems: list[tuple[str, Entry | None, str]] = []
    chunked: list[tuple[str, Entry]] = []
    for where, entry in tasks:
        key = entry.key or ""
        failed = next((exc for prefix, exc in errors if key.startswith(prefix)), None)
        if failed is not None:
            text = f"{where}: {entry.name}: {UNCHECKED} {remote.url(key)}: {failed}"
            problems.append((where, None, text))
        elif (problem := _problem(remote, where, entry, sizes)) is not None:
            problems.append((where, entry, problem))
        elif storage_key_kind(key) in MANIFEST_KINDS:
            chunked.append((where, entry))
    return problems + _check_chunks(remote, chunked, pool)


def _check_chunks(
    remote: Remote, tasks: list[tuple[str, Entry]], pool: ThreadPoolExecutor
) -> list[tuple[str, Entry | None, str]]:
    """Problems with the chunks the manifests of ``tasks`` name: each manifest read (a few
    at a time), then one LIST per prefix of their chunks."""

    def read(task: tuple[str, Entry]) -> dict[str, tuple[int, int]] | ModelFilerError:
        try:
            return manifest_needs(remote, task[1].key or "", task[1].sha256, task[1].size)
        except ModelFilerError as exc:
            return exc

    named = list(pool.map(read, tasks))
    wanted = sorted({k for keys in named if isinstance(keys, dict) for k in keys})
    sizes, errors = _listed(remote, wanted, pool) if wanted else ({}, [])
    problems: list[tuple[str, Entry | None, str]] = []
    for (where, entry), keys in zip(tasks, named, strict=True):
        start = f"{where}: {entry.name}: {remote.url(entry.key or '')}"
        if not isinstance(keys, dict):
            unchecked = not isinstance(keys, LookupError | IntegrityError)
            what = UNCHECKED + " its chunks" if unchecked else "is not a valid manifest"
            problems.append((where, None if unchecked else entry, f"{start} {what}: {keys}"))
            continue
        failed = next((e for p, e in errors for k in keys if k.startswith(p)), None)
        missing = [k for k, (least, most) in keys.items() if not least <= sizes.get(k, -1) <= most]
        if failed is not None:
            problems.append((where, None, f"{start}: {UNCHECKED} its chunks: {failed}"))
        elif missing:
            text = (
                f"{start}: {len(missing)} of the {len(keys)} packs or chunks it names are "
                f"missing from the remote or of another length (e.g. {remote.url(missing[0])})"
            )
            problems.append((where, entry, text))
    return problems


def _fixes(folders: dict[str, set[str]]) -> list[str]:
    """The commands that repair missing objects, with the real folders and names."""
    lines = []
    for folder, names in sorted(folders.items()):
        args = f"--dir {shlex.quote(folder)} {' '.join(sorted(names))}"
        lines.append(
            f"  fix: on the machine that has them: model-filer push {args}   (or drop the "
            f"entries: model-filer rm {args}, then commit)"
        )
    return lines


def check(revisions: Sequence[str], jobs: int = 16) -> list[str]:
    """Problems with the synced entries of registries committed at ``revisions``."""
    git = hook_git()
    top = git.repo.top
    remotes: dict[tuple[str, str], Remote] = {}
    tasks: dict[tuple[str, str], dict[str, tuple[str, Entry]]] = {}
    folder_of: dict[str, str] = {}  # where -> the registry's folder
    problems: list[str] = []
    for rev in revisions:
        shown = rev[:10] if len(rev) == 40 and set(rev) <= set("0123456789abcdef") else rev
        for path, text in registries_at(top, rev).items():
            where = f"{path} at {shown}"
            folder_of[where] = posixpath.dirname(path) or "."
            try:
                reg = parse(text, where, filename=path)
                # Where this clone reaches the remote (the share's path on this machine),
                # or a refusal: an untrusted remote is not asked about the pushed models.
                folder = os.path.dirname(path) or "."
                address = approved_address(top / path, reg, folder, "check", git.clone())
                key = (reg.remote_type, address)
                if key not in remotes:
                    remotes[key] = get_remote(*key, FAIL_FAST)
            except ModelFilerError as exc:
                problems.append(str(exc))
                continue
            for entry in reg.entries.values():
                if entry.state == "synced" and entry.key is not None:
                    tasks.setdefault(key, {}).setdefault(entry.key, (where, entry))
    repairable: dict[str, set[str]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for key, found in tasks.items():
            for where, broken, message in _check_remote(remotes[key], list(found.values()), pool):
                problems.append(message)
                if broken is not None:
                    repairable.setdefault(folder_of[where], set()).add(broken.name)
    return problems + _fixes(repairable)


def main(argv: Sequence[str] | None = None) -> int:
    pin_work_tree()  # git clone's hook: GIT_DIR exported, the top is here
    parser = argparse.ArgumentParser(prog="check-remote-models", description=__doc__)
    parser.add_argument("git_args", nargs="*", help=argparse.SUPPRESS)  # remote name and url
    args = parser.parse_args(argv)
    del args
    theirs = under_pre_commit() or sys.stdin is None or sys.stdin.isatty()
    try:
        problems = check(pushed_revisions(None if theirs else list(sys.stdin)))
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
                else "registries name models their remote does not have, or remotes this "
                "clone does not trust:"
            )
        )
        print("\n".join(problems))
        if unchecked:
            print("  fix: check the network, then push again.")
            print(OVERRIDE)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
