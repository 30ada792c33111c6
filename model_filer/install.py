"""Plain git hooks and the registry merge driver, for teams without the pre-commit framework."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

from . import gitops
from .errors import ModelFilerError

MARKER = "# installed by model-filer install-hooks"
DRIVER = "model-filer-registry"
ATTRIBUTES_LINE = f".*_registry merge={DRIVER}"
# hook -> (module, extra args, whether git feeds it stdin)
HOOKS = {
    "pre-commit": ("model_filer_hooks.no_local_models", "", False),
    "post-checkout": ("model_filer_hooks.prefetch_models", "--hook-stage post-checkout", False),
    "post-merge": ("model_filer_hooks.prefetch_models", "--hook-stage post-merge", False),
    "post-rewrite": ("model_filer_hooks.prefetch_models", "--hook-stage post-rewrite", True),
    "pre-push": ("model_filer_hooks.check_remote_models", "", True),
}


def _script(hook: str, previous: Path) -> str:
    module, extra, reads_stdin = HOOKS[hook]
    python = shlex.quote(sys.executable)
    run_previous = f'"{previous}" "$@"'
    ours = f'{python} -m {module} {extra} "$@"'.replace("  ", " ")
    if reads_stdin:  # both hooks need git's stdin: keep a copy
        run_previous = f'printf "%s\\n" "$input" | {run_previous}'
        ours = f'printf "%s\\n" "$input" | {ours}'
    return "\n".join(
        [
            "#!/bin/sh",
            MARKER,
            "input=$(cat)" if reads_stdin else "",
            f'if [ -x "{previous}" ]; then {run_previous} || exit $?; fi',
            ours,
            "",
        ]
    )


def install_hooks(root: Path, hooks: bool = True, merge_driver: bool = True) -> list[str]:
    """Install the hooks (keeping any already there) and the merge driver; return what was done."""
    top = gitops.toplevel(root)
    done = [install_merge_driver(top)] if merge_driver else []
    if not hooks:
        return done
    return done + write_hooks(gitops.git_path(top, "hooks"))


def write_hooks(hooks_dir: Path) -> list[str]:
    """Write our hook scripts into ``hooks_dir`` (a repository's, or a ``git clone
    --template`` folder's), keeping any other hook already there; return what was done."""
    done = []
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        path = hooks_dir / hook
        previous = hooks_dir / f"{hook}.pre-model-filer"
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            if previous.exists():
                raise ModelFilerError(f"Both {path} and {previous} exist: merge them by hand.")
            os.replace(path, previous)
            done.append(f"kept your {hook} hook as {previous.name}; it runs first")
        path.write_text(_script(hook, previous))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        done.append(f"installed {hook} hook")
    return done


def install_merge_driver(top: Path) -> str:
    """Register the registry merge driver in git config and ``.gitattributes``."""
    command = f"{shlex.quote(sys.executable)} -m model_filer merge-registry %O %A %B %P"
    gitops.config_set(f"merge.{DRIVER}.name", "model_filer registry merge (entry by entry)", top)
    gitops.config_set(f"merge.{DRIVER}.driver", command, top)
    attributes = top / ".gitattributes"
    at_head = None if attributes.exists() else gitops.show_at_head(top, ".gitattributes")
    if at_head is not None:
        # Not checked out yet (`git clone --no-checkout`): a file written now would make
        # the checkout fail; the committed one arrives with it.
        if ATTRIBUTES_LINE in at_head.splitlines():
            return "merge driver for registry files set (git config; .gitattributes at HEAD)"
        return (
            "merge driver set in git config; .gitattributes is not checked out: check out, "
            "then run `model-filer install-hooks --merge-driver-only` again"
        )
    text = attributes.read_text() if attributes.exists() else ""
    if ATTRIBUTES_LINE not in text.splitlines():
        sep = "" if not text or text.endswith("\n") else "\n"
        attributes.write_text(f"{text}{sep}{ATTRIBUTES_LINE}\n")
    return "merge driver for registry files set (git config + .gitattributes; commit the latter)"
