"""post-checkout / post-merge / post-rewrite hook: fetch the models the new HEAD's registries name.

Only registries that changed between the old and new HEAD are looked at (all of them after a
clone); of those, only ``synced`` models missing or stale locally are linked from the local
object store, or else downloaded, in parallel and verified. A network or credential problem
never fails the checkout: it warns and prints the command to fetch later (``--strict`` makes it
fail). ``MODEL_FILER_SKIP_PREFETCH=1`` turns it off for one command.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import shlex
import sys
from collections.abc import Sequence
from typing import IO

from model_filer.hookapi import (
    FAIL_FAST,
    NULL_REF,
    Entry,
    HookGit,
    ModelFilerError,
    Registry,
    UntrustedRemoteError,
    approved_address,
    changed_registries,
    count_bar,
    filer_for,
    hook_git,
    parse_size,
    pin_work_tree,
    pull_entries,
    read_registry_once,
    rebase_in_progress,
)

SKIP_ENV = "MODEL_FILER_SKIP_PREFETCH"
SHOWN = 10  # models named per cause of failure; the rest are counted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefetch-models", description=__doc__)
    parser.add_argument(
        "--hook-stage",
        choices=["post-checkout", "post-merge", "post-rewrite"],
        help="when run as a plain git hook: which one (pre-commit sets env vars)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="fetch only models whose name (or dir/name) matches; repeatable",
    )
    parser.add_argument(
        "--max-size",
        type=parse_size,
        metavar="SIZE",
        help="skip models larger than SIZE (e.g. 500MB); load() fetches them later",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="parallel downloads (default: 4 per CPU, at most 16)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a model could not be fetched"
    )
    parser.add_argument("git_args", nargs="*", help=argparse.SUPPRESS)
    return parser


def _stage(args: argparse.Namespace) -> str:
    """Which hook this is: ``--hook-stage``, else what pre-commit's variables say."""
    env = os.environ
    if args.hook_stage is not None:
        return str(args.hook_stage)
    if "PRE_COMMIT_CHECKOUT_TYPE" in env or "PRE_COMMIT_TO_REF" in env:
        return "post-checkout"
    if "PRE_COMMIT_REWRITE_COMMAND" in env:
        return "post-rewrite"
    return "post-merge"


def _refs(args: argparse.Namespace, stage: str) -> tuple[str | None, str] | None:
    """(old, new) revisions to compare, or None when this event needs no prefetch."""
    env = os.environ
    if stage == "post-checkout":
        if args.git_args[2:3]:
            old, new, kind = args.git_args[:3]
        else:
            old = env.get("PRE_COMMIT_FROM_REF", "")
            new = env.get("PRE_COMMIT_TO_REF", "HEAD")
            kind = env.get("PRE_COMMIT_CHECKOUT_TYPE", "1")
        return None if kind == "0" else (old or None, new or "HEAD")
    if stage == "post-rewrite":
        command = args.git_args[0] if args.git_args else env.get("PRE_COMMIT_REWRITE_COMMAND")
        if command == "amend":
            return None  # a commit made here, rewritten: it names nothing new
    return ("ORIG_HEAD", "HEAD")


def _terminal() -> contextlib.AbstractContextManager[IO[str] | None]:
    """The user's terminal for live progress: pre-commit captures our stdout and stderr."""
    if sys.stderr.isatty():
        return contextlib.nullcontext(sys.stderr)
    try:
        return open("/dev/tty", "w")
    except OSError:
        return contextlib.nullcontext()


def _wanted(entry: Entry, folder: str, args: argparse.Namespace) -> bool:
    if entry.state != "synced":
        return False
    if args.max_size is not None and entry.size > args.max_size:
        return False
    label = f"{folder}/{entry.name}" if folder not in ("", ".") else entry.name
    return not args.only or any(
        fnmatch.fnmatch(entry.name, g) or fnmatch.fnmatch(label, g) for g in args.only
    )


def _quiet(_: int) -> None:
    """Progress sink when no terminal is attached: the summary line says it all."""


def _report_failures(folder: str, failed: dict[str, BaseException], retry: str) -> None:
    """One line per cause: a stuck or dead store is one sentence, not one per model."""
    by_cause: dict[str, list[str]] = {}
    for name, error in sorted(failed.items()):
        by_cause.setdefault(str(error), []).append(f"{folder}/{name}")
    for cause, names in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        print(f"prefetch-models: {names[0]} not fetched: {cause}")
        for name in names[1:SHOWN]:
            print(f"prefetch-models: {name} not fetched: the same")
        if len(names) > SHOWN:
            print(f"prefetch-models: ... and {len(names) - SHOWN} more, the same")
    print(f"  fetch them later with: {retry}   (or filer.load() fetches on use)")


def prefetch(
    git: HookGit,
    registries: dict[str, str],
    args: argparse.Namespace,
    listed: tuple[str, dict[str, str]] | None = None,
) -> int:
    """Fetch what ``registries`` (path -> blob id) need; print a summary; return the number
    of failures. Each registry is read once, and this clone's approvals once (``listed``:
    every registry of a commit, when ``registries`` are all of them)."""
    root = git.repo.top
    read: dict[str, tuple[str, Registry]] = {}
    unreadable: dict[str, ModelFilerError] = {}  # (said below, where its models are)
    for rel in sorted(registries):
        try:
            read[rel] = read_registry_once(root / rel)
        except ModelFilerError as exc:
            unreadable[rel] = exc
    fetched = linked = failed = current = 0
    with _terminal() as tty:
        for rel in sorted(registries):
            folder = os.path.dirname(rel) or "."
            retry = f"model-filer pull --dir {shlex.quote(folder)} --all"
            try:
                if rel in unreadable:
                    raise unreadable[rel]
                reg = read[rel][1]
                clone = git.clone(listed, read)
                address = approved_address(root / rel, reg, folder, "fetch", clone)
                filer = filer_for(root / rel, address, FAIL_FAST, registry=reg)
                wanted = [e for _, e in sorted(reg.entries.items()) if _wanted(e, folder, args)]
                with count_bar(len(wanted), f"prefetch {folder}", tty) as bar:
                    on_done = bar.update if bar is not None else _quiet
                    report = pull_entries(filer, wanted, args.jobs, on_done)
            except UntrustedRemoteError as exc:  # its message says how to trust it
                print(f"prefetch-models: {exc}")
                failed += 1
                continue
            except ModelFilerError as exc:
                print(f"prefetch-models: {rel}: {exc}\n  models not fetched; later run: {retry}")
                failed += 1
                continue
            fetched += len(report.done)
            linked += len(report.linked)
            current += len(report.skipped)
            if report.failed:
                _report_failures(folder, dict(report.failed), retry)
                failed += len(report.failed)
    if fetched or failed or linked:
        from_store = f"{linked} linked from the local store, " if linked else ""
        print(
            f"prefetch-models: {fetched} model(s) fetched, {from_store}{current} already "
            f"present, {failed} failed."
        )
    return failed


def _merge_driver(git: HookGit) -> None:
    """Set up the registry merge driver when the clone lacks it (never fails the checkout)."""
    try:
        done = git.merge_driver()
    except (ModelFilerError, OSError) as exc:
        done = (
            f"the registry merge driver is not set up ({exc}): run "
            "`model-filer install-hooks --merge-driver-only`"
        )
    if done is not None:
        print(f"prefetch-models: {done}")


def main(argv: Sequence[str] | None = None) -> int:
    pin_work_tree()  # git clone's hook: GIT_DIR exported, the top is here
    args = _parser().parse_args(argv)
    skip = os.environ.get(SKIP_ENV, "").strip() not in ("", "0")
    stage = _stage(args)
    refs = _refs(args, stage)
    if refs is None:
        return 0
    try:
        git = hook_git()  # (the repository and this clone's config: two git processes)
        _merge_driver(git)  # (even when skipping: a clone's first merge needs it)
        if skip:
            return 0
        # Mid-rebase checkouts are skipped: post-rewrite runs once the rebase is done (git
        # runs it before removing its rebase state, so that hook must not be skipped).
        if stage != "post-rewrite" and rebase_in_progress(git.repo):
            return 0
        old, new = refs
        registries = changed_registries(git.repo.top, old, new)  # (the third)
        listed = (new, registries) if old in (None, NULL_REF) else None  # all of them
        failures = prefetch(git, registries, args, listed)
    except ModelFilerError as exc:
        print(f"prefetch-models: {exc}")
        return 1 if args.strict else 0
    return 1 if failures and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
