"""The pre-commit team of the end-to-end tests: users sharing a bare ``origin`` and S3.

A committed snapshot of this checkout (``hook_repo``) is what a user's
``.pre-commit-config.yaml`` names; one ``PRE_COMMIT_HOME`` (``pre_commit_home``) holds the hook
environment, built once per session. tests/conftest.py imports these fixtures, so that every
test module shares that one build (a session fixture imported into two test modules is two
fixtures, built twice).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.local.store import ObjectStore
from tests.support.gitrepo import commit, environ, git, init_repo

CHECKOUT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
PRE_COMMIT = str(BIN / "pre-commit")
MODEL_FILER = str(BIN / "model-filer")
HOOK_TYPES = "[pre-commit, pre-merge-commit, post-checkout, post-merge, post-rewrite, pre-push]"
REGISTRY = "models/.s3_registry"
SKIP_PARTS = {".git", "__pycache__", "venv", "node_modules"}


def _snapshot_files(root: Path) -> list[str]:
    """Tracked plus untracked-but-not-ignored files of the checkout (no stray virtualenvs)."""
    out = git(root, "ls-files", "-co", "--exclude-standard", "-z").stdout
    paths = []
    for path in filter(None, out.split("\0")):
        parts = Path(path).parts
        if SKIP_PARTS & set(parts) or any(p.startswith(".venv") for p in parts):
            continue
        if (root / path).is_file():
            paths.append(path)
    return paths


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A committed snapshot of this checkout: (path, sha) for ``repo:`` and ``rev:``."""
    dest = tmp_path_factory.mktemp("hook-repo")
    for path in _snapshot_files(CHECKOUT):
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CHECKOUT / path, target)
    git(dest, "init", "-q", "-b", "main")
    return dest, commit(dest, "snapshot of model_filer for the pre-commit tests")


def config_text(hook_repo: tuple[Path, str]) -> str:
    path, sha = hook_repo
    return (
        f"default_install_hook_types: {HOOK_TYPES}\n"
        "repos:\n"
        f"  - repo: {path}\n"
        f"    rev: {sha}\n"
        "    hooks:\n"
        "      - id: no-local-models\n"
        "      - id: prefetch-models\n"
        "      - id: check-remote-models\n"
    )


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory, hook_repo: tuple[Path, str]) -> Path:
    """One PRE_COMMIT_HOME whose hook environment is built here, once per session."""
    home = tmp_path_factory.mktemp("pre-commit-home")
    scratch = tmp_path_factory.mktemp("env-build")
    git(scratch, "init", "-q", "-b", "main")
    (scratch / ".pre-commit-config.yaml").write_text(config_text(hook_repo))
    started = time.monotonic()
    built = subprocess.run(
        [PRE_COMMIT, "install-hooks"],
        cwd=scratch,
        env=environ(PRE_COMMIT_HOME=str(home)),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr
    (home / "build-seconds.txt").write_text(f"{seconds:.1f}\n")
    print(f"\npre-commit hook environment built in {seconds:.1f} s", file=sys.stderr)
    return home


@dataclass
class Team:
    """Users sharing a bare ``origin`` and an S3 prefix, each repo with pre-commit hooks."""

    tmp: Path
    home: Path
    address: str
    origin: Path
    config: str
    # Each user is a machine of their own, with its own object store, unless mapped here:
    # repo folder name -> machine name.
    machines: dict[str, str] = field(default_factory=dict)

    def store(self, repo: Path) -> Path:
        """The local object store of the machine ``repo`` is on."""
        return self.tmp / "stores" / self.machines.get(repo.name, repo.name)

    def env(self, repo: Path, **changes: str | None) -> dict[str, str]:
        """The test's environment (with the S3 variables) plus PRE_COMMIT_HOME and the store;
        ``changes`` win (a clone's store is its new repository's, not the parent folder's)."""
        ours: dict[str, str | None] = {
            "PRE_COMMIT_HOME": str(self.home),
            "PRE_COMMIT_COLOR": "never",
            "MODEL_FILER_CACHE_DIR": str(self.store(repo)),
        }
        return environ(**{**ours, **changes})

    def git(
        self, repo: Path, *args: str, check: bool = True, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        return git(repo, *args, check=check, env=self.env(repo, **env))

    def run(self, repo: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv), cwd=repo, env=self.env(repo), capture_output=True, text=True, check=False
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def filer(self, repo: Path, folder: str = "models") -> Filer:
        return Filer(repo / folder, self.address, "s3", store=ObjectStore(self.store(repo)))

    def founder(self, name: str = "alice") -> Path:
        """A repository with the config and hooks installed, pushed to origin."""
        repo = init_repo(self.tmp / name)
        (repo / ".pre-commit-config.yaml").write_text(self.config)
        self.run(repo, PRE_COMMIT, "install")
        git(repo, "add", ".pre-commit-config.yaml")
        self.git(repo, "commit", "-qm", "pre-commit hooks")
        git(repo, "remote", "add", "origin", str(self.origin))
        self.git(repo, "push", "-q", "-u", "origin", "main")
        return repo

    def empty_registry(self, repo: Path) -> None:
        """Commit and push an empty ``models/.s3_registry`` on the current branch, so that
        clones made after it trust its remote (a registry first met later is refused)."""
        filer = self.filer(repo)
        filer.dump({}, "placeholder")
        filer.remove("placeholder")
        self.commit(repo, "models/ on S3")
        self.git(repo, "push", "-q")

    def clone(self, name: str) -> Path:
        """``git clone`` then ``pre-commit install``: hooks run from the next command on."""
        repo = self.tmp / name
        git(self.tmp, "clone", "-q", str(self.origin), str(repo))
        self.run(repo, PRE_COMMIT, "install")
        return repo

    def commit(
        self, repo: Path, message: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        git(repo, "add", "-A")
        return self.git(repo, "commit", "-m", message, check=check)


@pytest.fixture
def team(
    tmp_path: Path, pre_commit_home: Path, hook_repo: tuple[Path, str], s3_address: str
) -> Team:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    return Team(tmp_path, pre_commit_home, s3_address, origin, config_text(hook_repo))


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr
