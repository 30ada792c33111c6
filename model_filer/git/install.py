"""Plain git hooks and the registry merge driver, for teams without the pre-commit framework."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from model_filer.errors import ModelFilerError
from model_filer.git import gitops

MARKER = "# installed by model-filer install-hooks"
DRIVER = "model-filer-registry"
ATTRIBUTES_LINE = f".*_registry merge={DRIVER}"
_AT_HEAD = "HEAD:.gitattributes"
DRIVER_CONFIG = rf"merge\.{DRIVER}"  # its git config keys (read with the approvals: one read)
# hook -> (module, extra args, whether git feeds it stdin)
HOOKS = {
    "pre-commit": ("model_filer_hooks.no_local_models", "", False),
    "pre-merge-commit": ("model_filer_hooks.no_local_models", "", False),  # a clean merge
    "post-checkout": ("model_filer_hooks.prefetch_models", "--hook-stage post-checkout", False),
    "post-merge": ("model_filer_hooks.prefetch_models", "--hook-stage post-merge", False),
    "post-rewrite": ("model_filer_hooks.prefetch_models", "--hook-stage post-rewrite", True),
    "pre-push": ("model_filer_hooks.check_remote_models", "", True),
}


def _script(hook: str, previous: Path) -> str:
    module, extra, reads_stdin = HOOKS[hook]
    feed = 'printf "%s\\n" "$input" | ' if reads_stdin else ""  # both hooks need git's stdin
    # -P: git runs hooks in the work tree's top folder; without it a checked-out branch's
    # own model_filer_hooks/ folder would be imported (run) in place of the installed one.
    ours = f'{feed}{shlex.quote(sys.executable)} -P -m {module} {extra} "$@"'.replace("  ", " ")
    return "\n".join(
        [
            "#!/bin/sh",
            MARKER,
            "input=$(cat)" if reads_stdin else "",
            f'if [ -x "{previous}" ]; then {feed}"{previous}" "$@" || exit $?; fi',
            ours,
            "",
        ]
    )


def install_hooks(root: Path, hooks: bool = True, merge_driver: bool = True) -> list[str]:
    """Install the hooks (keeping any already there) and the merge driver; return what was done."""
    top = gitops.open_repo(root).top
    done = [install_merge_driver(top)] if merge_driver else []
    return done + (write_hooks(gitops.git_path(top, "hooks")) if hooks else [])


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


NAME = "model_filer registry merge (entry by entry)"


def driver_command(python: str | None = None) -> str:
    """The shell command git runs to merge a registry (git fills in ``%O %A %B %P``).

    It is resolved at merge time: the Python that set it up while it still imports
    model_filer (under pre-commit, a cache environment that ``pre-commit gc`` deletes after a
    ``rev:`` bump; the checkout hook then sets its own), else ``model-filer`` on PATH. When
    neither can run, or the driver refuses (an unreadable side, two remotes), the registry
    gets git's line merge with conflict markers, which no registry parse accepts: git itself
    would keep "ours" without a marker. The exit status then says "conflict". Its markers
    say ``HEAD`` and ``MERGE_HEAD`` as git's own do: ``ours``/``theirs`` are the driver's,
    whose conflicts need only a choice (see ``conflict_advice``).
    """
    # -P: git runs the driver in the work tree's top folder, which Python would otherwise put
    # first on sys.path, so a branch committing a model_filer/ folder would run its code.
    py = shlex.quote(python or sys.executable).replace("%", "%%")  # git expands %
    run = "merge-registry %O %A %B %P"
    return (
        f'py={py}; if "$py" -P -c "import model_filer" 2>/dev/null; '
        f'then "$py" -P -m model_filer {run}; '
        f"elif command -v model-filer >/dev/null 2>&1; then model-filer {run}; "
        "else echo 'model-filer: the registry merge driver cannot run here (neither' \"$py\" "
        "'nor model-filer on PATH); install it (pip install ds-model-filer), then run: git "
        "checkout -m --' %P >&2; false; fi || { grep -q '^<<<<<<< ' %A || "
        "git merge-file -L HEAD -L base -L MERGE_HEAD %A %O %B; exit 1; }"
    )


def _configure_driver(top: Path) -> None:
    gitops.config_set(f"merge.{DRIVER}.name", NAME, top)
    gitops.config_set(f"merge.{DRIVER}.driver", driver_command(), top)


def ensure_merge_driver(repo: gitops.Repo, config: Mapping[str, str]) -> str | None:
    """Set up the merge driver in this clone when its ``.gitattributes`` names it; say so.

    The checkout hook's job: ``.gitattributes`` is committed but the driver's command lives
    in each clone's git config (``config``: what the hook read of it), and a clone made with
    the hooks runs this on ``git clone``. A driver of the user's own (a command that is not
    model_filer's) is left alone.
    """
    try:
        attributes = (repo.top / ".gitattributes").read_text(errors="replace")
    except OSError:
        return None
    if f"merge={DRIVER}" not in attributes:
        return None
    current = config.get(f"merge.{DRIVER}.driver")
    if current == driver_command() or (current is not None and "merge-registry" not in current):
        return None
    _configure_driver(repo.top)
    return f"set up the registry merge driver in this clone (git config merge.{DRIVER}.driver)"


def install_merge_driver(top: Path) -> str:
    """Register the registry merge driver in git config and ``.gitattributes``."""
    _configure_driver(top)
    attributes = top / ".gitattributes"
    at_head = None if attributes.exists() else gitops.blobs([_AT_HEAD], top)[_AT_HEAD]
    if at_head is not None:
        # Not checked out yet (`git clone --no-checkout`): a file written now would make
        # the checkout fail; the committed one arrives with it.
        if ATTRIBUTES_LINE in at_head.data.decode(errors="replace").splitlines():
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
