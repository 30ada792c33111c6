"""pre-commit hook: refuse a commit whose registries name models that exist on one machine only.

Checks the staged content (the index, not the working tree) of every staged registry file:
``local`` entries, unparsable files (conflict markers, bad YAML, bad fields), aliases that
name a missing entry, a ``local`` one or other bytes than the entry holds, entries whose
recorded imports fall outside the project's trusted set and model files themselves being
committed are refused with the command that fixes each. Declared for ``pre-merge-commit``
too: a clean merge runs no pre-commit hook, and can join an alias from one branch to a
re-dump from the other. Never imports boto3, GitPython or the
ML libraries (imports are judged by name): it runs on every commit.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import posixpath
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from model_filer.hookapi import (
    MODEL_SUFFIX,
    SERVED,
    Blob,
    ModelFilerError,
    Registry,
    TrustedSet,
    alias_problems,
    available_types,
    can_trust,
    locate,
    never_reason,
    parse,
    pin_work_tree,
    project_patterns,
    read_staged,
    registry_filename,
    remote_type_of,
    staged_paths,
)


def _from_disk(paths: Sequence[str], top: Path) -> dict[str, bytes | None]:
    return {p: (top / p).read_bytes() if (top / p).is_file() else None for p in paths}


def _contents(paths: Sequence[str]) -> dict[str, Blob | None]:
    """The staged blobs of ``paths``; outside a git repository, the files (no blob id)."""
    staged = read_staged(paths) if paths else {}
    if staged is not None:
        return staged
    return {p: None if d is None else Blob("", d) for p, d in _from_disk(paths, Path.cwd()).items()}


def _working_tree_names(paths: Sequence[str]) -> dict[str, list[str]]:
    """Entry names in the working tree's versions of registries ``paths``, where they parse."""
    if not paths:
        return {}
    repo = locate()  # (one git process: asking whether in git first made it two)
    top = repo.top if repo is not None else Path.cwd()
    names = {}
    for path, text in _from_disk(paths, top).items():
        if text is not None:
            with contextlib.suppress(ModelFilerError):
                names[path] = list(parse(text, path, filename=path).entries)
    return names


def _registry_problems(path: str, local: Sequence[str]) -> list[str]:
    folder = shlex.quote(posixpath.dirname(path) or ".")
    if not local:
        return []
    lines = [
        f"{path}: {name} is local (its bytes exist only on this machine)" for name in sorted(local)
    ]
    lines.append(
        f"  fix: model-filer push --dir {folder} --all   (or drop them: model-filer rm --dir "
        f"{folder} --locals), then: git add {shlex.quote(path)}"
    )
    return lines


def _alias_problems(path: str, reg: Registry) -> list[str]:
    if not reg.aliases:
        return []
    # The hook runs at the repository's top: the fix names the registry's folder.
    lines = [f"{path}: {problem}" for problem in alias_problems(reg, posixpath.dirname(path))]
    return [*lines, f"  then: git add {shlex.quote(path)}"] if lines else []


def _trusted(path: str) -> TrustedSet:
    return _trusted_in(posixpath.dirname(path) or ".")


@functools.cache
def _trusted_in(folder: str) -> TrustedSet:
    """The trusted set of a model folder: its pyproject.toml is found and read once a run
    (:func:`check` clears this; a malformed one raises each time: errors are not cached)."""
    return TrustedSet(project=project_patterns(Path(folder)))


def _untrusted_problems(path: str, reg: Registry) -> list[str]:
    """Entries whose recorded imports the project's trusted set does not cover, by name."""
    recorded = {n: e.imports for n, e in reg.entries.items() if e.imports}
    if not recorded:
        return []
    trusted = _trusted(path)
    # Judged once per distinct name: 10,000 entries share a handful of imports.
    judged = {
        i: trusted.covers_name(i) for i in {i for imports in recorded.values() for i in imports}
    }
    lines, names, served = [], set(), set[str]()
    for name, imports in sorted(recorded.items()):
        untrusted = [i for i in imports if not judged[i]]
        if untrusted:
            names.update(untrusted)
            served.update(i for i in imports if i in SERVED)
            lines.append(f"{path}: {name} imports {', '.join(untrusted)}, outside the trusted set")
    never = sorted(n for n in names if not can_trust(n))
    lines.extend(f"  {n} can never be trusted: {never_reason(n)}" for n in never)
    lines.extend(f"  {n}: {SERVED[n]}" for n in sorted(served))  # (earlier advice named it)
    if names - set(never):
        fix = trusted.fix(names).replace("\n", "\n    ")
        lines.append(
            "  fix: if you trust them, set in pyproject.toml (then git add pyproject.toml):\n"
            f"    {fix}"
        )
    return lines


def _model_file_problems(
    models: Sequence[str], registries: Sequence[tuple[str, Sequence[str]]]
) -> list[str]:
    if not models:
        return []  # (10,000 entries need not be joined into paths to find nothing)
    named = {
        posixpath.join(posixpath.dirname(path), name + MODEL_SUFFIX)
        for path, names in registries
        for name in names
    }
    return [
        f"{m}: a model file is staged; its bytes belong on the remote, not in git\n"
        f"  fix: git rm --cached {shlex.quote(m)}"
        for m in models
        if m in named
    ]


def check(paths: Sequence[str]) -> list[str]:
    """Problems found in the staged versions of ``paths`` (registries and model files)."""
    _trusted_in.cache_clear()  # read once a run, and afresh the next run
    registry_paths = [p for p in paths if remote_type_of(p)]
    models = [p for p in paths if p.endswith(MODEL_SUFFIX)]
    # A staged model file is judged against the registry beside it, staged or not.
    beside = {
        posixpath.join(posixpath.dirname(m), registry_filename(t))
        for m in models
        for t in available_types()
    }
    contents = _contents(sorted(set(registry_paths) | beside))
    problems: list[str] = []
    named: dict[str, Sequence[str]] = {}
    for path, blob in contents.items():
        if blob is None:
            continue
        judged = path in registry_paths
        try:
            reg = parse(blob.data, path, filename=path)
        except ModelFilerError as exc:
            if judged:
                problems.append(f"{exc}")
            continue
        named[path] = list(reg.entries)
        if judged:
            local = [n for n, e in reg.entries.items() if e.state == "local"]
            problems.extend(_registry_problems(path, local))
            problems.extend(_alias_problems(path, reg))
            try:
                problems.extend(_untrusted_problems(path, reg))
            except ModelFilerError as exc:  # a malformed [tool.model_filer] trusted
                problems.append(f"{exc}")
    # A model file named only by the working tree's registry (not staged, or staged before
    # the model was dumped) is still a model file: ask both versions.
    named_by = [*named.items(), *_working_tree_names(sorted(beside)).items()]
    return problems + _model_file_problems(models, named_by)


def main(argv: Sequence[str] | None = None) -> int:
    pin_work_tree()  # git clone's hook: GIT_DIR exported, the top is here
    parser = argparse.ArgumentParser(prog="no-local-models", description=__doc__)
    parser.add_argument("filenames", nargs="*", help="staged files (default: ask git)")
    args = parser.parse_args(argv)
    try:
        paths = [Path(f).as_posix() for f in args.filenames] or staged_paths()
        problems = check(paths)
    except ModelFilerError as exc:
        print(f"no-local-models: {exc}", file=sys.stderr)
        return 1
    if problems:
        print("model_filer: commit refused:")
        print("\n".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
