"""Helpers for tests on real git repositories: run git, build repos, write registries.

Plain functions (no fixtures): the hook, CLI, merge and end-to-end tests import them.
Everything runs the real ``git`` binary; the session's isolated environment (conftest.py)
gives it an empty global config, an identity and ``main`` as the default branch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_filer import Filer
from model_filer.registry.file import Entry, Registry, dumps

NULL_SHA = "0" * 40


def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; raise with its output when ``check`` and it fails."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def log_git_calls(tmp_path: Path, monkeypatch: Any) -> Path:
    """Put a wrapper first on PATH that logs each git call's arguments (one line each) to
    the returned file, then runs the real git."""
    log = tmp_path / "git-calls.log"
    shim = tmp_path / "git-shim"
    shim.mkdir()
    real_git = shutil.which("git")
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real_git}" "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return log


_COUNT_OPENS = """
import runpy, sys
from pathlib import Path
opened = []
def audit(event, args):
    if event == "open" and str(args[0]).endswith("_registry"):
        opened.append(str(args[0]))
sys.addaudithook(audit)
log, module = sys.argv[1:3]
sys.argv = [module, *sys.argv[3:]]
try:
    runpy.run_module(module, run_name="__main__")
finally:
    Path(log).write_text("\\n".join(opened))
"""


def run_counting_registry_opens(
    cwd: Path, module: str, argv: list[str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``python -m module argv`` in ``cwd`` as its own process; also return every
    registry file it opened, in order (an audit hook sees each ``open``)."""
    log = cwd.parent / f"opened-{os.getpid()}-{len(argv)}.log"
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_OPENS, str(log), module, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    opened = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return done, opened


def init_repo(path: Path) -> Path:
    """A new, empty git repository at ``path`` (branch ``main``) with one first commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("a repo with models\n")
    commit(path, "first")
    return path


def commit(repo: Path, message: str = "commit", *paths: str) -> str:
    """Stage ``paths`` (default: everything) and commit without hooks; return the new sha."""
    git(repo, "add", "-A", *paths)
    git(repo, "commit", "-q", "--no-verify", "--allow-empty", "-m", message)
    return head(repo)


def head(repo: Path, rev: str = "HEAD") -> str:
    """The commit sha that ``rev`` names."""
    return git(repo, "rev-parse", rev).stdout.strip()


def staged(repo: Path, *paths: str, force: bool = False) -> None:
    """``git add`` (``-f`` to stage ignored files such as model files)."""
    git(repo, "add", *(["-f"] if force else []), *paths)


def model_filer(folder: Path, remote: str | Path, remote_type: str = "local") -> Filer:
    """A Filer for ``folder`` on ``remote``."""
    return Filer(folder, str(remote), remote_type=remote_type)


def sample_entry(name: str, state: str = "synced", size: int = 10, **fields: Any) -> Entry:
    """A well-formed registry entry that points at no real bytes."""
    values: dict[str, Any] = {
        "name": name,
        "state": state,
        "sha256": "ab" * 32,
        "size": size,
        "serializer": "pickle-5",
        "created": "2024-01-01T00:00:00+00:00",
        "python": "3.11.9",
    }
    values.update(fields)
    if "key" not in fields:  # the key names the bytes' hash, as every key model_filer writes
        values["key"] = f"{name}/{values['sha256']}.pkl" if state == "synced" else None
    return Entry(**values)


def registry_bytes(remote_type: str, address: str, *entries: Entry) -> bytes:
    """The bytes of a registry holding ``entries``."""
    return dumps(Registry(remote_type, address, {e.name: e for e in entries}))


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_files(folder: Path) -> list[str]:
    """Names of the model files in ``folder``."""
    return sorted(p.name for p in folder.glob("*.pkl")) if folder.is_dir() else []


def environ(**changes: str | None) -> dict[str, str]:
    """A copy of this process's environment with ``changes`` (None removes a variable)."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
