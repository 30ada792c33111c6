"""The registry merge driver in every clone, and what a merge leaves when it cannot run.

``.gitattributes`` is committed, the driver's command is not (it lives in each clone's git
config): the checkout hook sets it up. Its command resolves at merge time, so it outlives the
environment that set it up; when it cannot run, or cannot merge, the registry is left with
conflict markers, which the commit hook refuses with a recovery that keeps both sides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_filer_hooks.no_local_models import main as commit_hook
from model_filer_hooks.prefetch_models import main as checkout_hook

from model_filer.git.install import DRIVER, driver_command, install_hooks
from tests.support.gitrepo import (
    NULL_SHA,
    commit,
    environ,
    git,
    init_repo,
    log_git_calls,
    model_filer,
)

REGISTRY = "models/.local_registry"
BIN = Path(sys.executable).parent
DRIVER_KEY = f"merge.{DRIVER}.driver"


def path_without_model_filer() -> str:
    """PATH minus every folder that holds a ``model-filer`` command (git, sh, grep stay)."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not (Path(f) / "model-filer").exists())


def path_with_model_filer() -> str:
    return os.pathsep.join([str(BIN), path_without_model_filer()])


@pytest.fixture
def producer(tmp_path: Path, remote: Path) -> Path:
    """A repository whose committed .gitattributes names the driver, with one model."""
    repo = init_repo(tmp_path / "producer")
    install_hooks(repo, hooks=False)
    model_filer(repo / "models", remote).dump({"base": 0}, "base_model", push=True)
    commit(repo, "merge driver and a first model")
    return repo


def fresh_clone(producer: Path, tmp_path: Path, name: str = "clone") -> Path:
    """``git clone`` without hooks: a clone's git config has no merge driver."""
    clone = tmp_path / name
    git(tmp_path, "clone", "-q", str(producer), str(clone))
    assert git(clone, "config", "--get", DRIVER_KEY, check=False).returncode == 1
    return clone


def after_clone_hook(clone: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """The post-checkout hook as ``git clone`` runs it (old ref: the null sha)."""
    monkeypatch.chdir(clone)
    return checkout_hook(["--hook-stage", "post-checkout", NULL_SHA, "HEAD", "1"])


def two_branches(clone: Path, remote: Path, names: tuple[str, str] = ("model_b", "model_c")):
    for branch, name in zip(("left", "right"), names, strict=True):
        git(clone, "checkout", "-q", "-b", branch, "main")
        model_filer(clone / "models", remote).dump({"model": name}, name, push=True)
        commit(clone, f"add {name}")
    git(clone, "checkout", "-q", "left")


def merge(clone: Path, path: str) -> subprocess.CompletedProcess[str]:
    return git(clone, "merge", "--no-edit", "right", check=False, env=environ(PATH=path))


def names_in(clone: Path, remote: Path) -> list[str]:
    return [e.name for e in model_filer(clone / "models", remote).list_files()]


def test_the_checkout_hook_sets_up_the_driver_in_a_fresh_clone(
    producer, remote, tmp_path, monkeypatch, capsys
):
    clone = fresh_clone(producer, tmp_path)

    assert after_clone_hook(clone, monkeypatch) == 0

    assert "set up the registry merge driver in this clone" in capsys.readouterr().out
    assert git(clone, "config", DRIVER_KEY).stdout.strip() == driver_command()
    two_branches(clone, remote)
    merged = merge(clone, path_without_model_filer())  # the Python that set it up runs it
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert names_in(clone, remote) == ["base_model", "model_b", "model_c"]


def test_a_clone_whose_gitattributes_names_no_driver_gets_none(tmp_path, remote, monkeypatch):
    repo = init_repo(tmp_path / "plain")
    clone = fresh_clone(repo, tmp_path)
    assert after_clone_hook(clone, monkeypatch) == 0
    assert git(clone, "config", "--get", DRIVER_KEY, check=False).returncode == 1


def test_a_driver_of_the_users_own_is_left_alone(producer, tmp_path, monkeypatch):
    clone = fresh_clone(producer, tmp_path)
    git(clone, "config", DRIVER_KEY, "my-merger %O %A %B")
    assert after_clone_hook(clone, monkeypatch) == 0
    assert git(clone, "config", DRIVER_KEY).stdout.strip() == "my-merger %O %A %B"


def test_once_set_up_a_checkout_writes_no_git_config(producer, tmp_path, monkeypatch):
    """A real git behind a logging wrapper on PATH: the hook's git processes are counted.
    The driver's check shares the hook's one config read (with the remote approvals)."""
    clone = fresh_clone(producer, tmp_path)
    assert after_clone_hook(clone, monkeypatch) == 0
    log = log_git_calls(tmp_path, monkeypatch)
    git(clone, "checkout", "-q", "-b", "topic")
    log.write_text("")

    assert checkout_hook(["--hook-stage", "post-checkout", "HEAD", "HEAD", "1"]) == 0

    config = [c for c in log.read_text().splitlines() if c.startswith("config")]
    assert len(config) == 1 and "--get-regexp" in config[0], config


def test_an_old_command_is_replaced_by_the_checkout_hook(producer, tmp_path, monkeypatch):
    """A clone set up by an older model_filer: the path of a Python that is gone."""
    clone = fresh_clone(producer, tmp_path)
    git(clone, "config", DRIVER_KEY, "/gone/venv/bin/python -m model_filer merge-registry %O")
    assert after_clone_hook(clone, monkeypatch) == 0
    assert git(clone, "config", DRIVER_KEY).stdout.strip() == driver_command()


def test_a_driver_that_cannot_run_leaves_markers_the_commit_hook_refuses(
    producer, remote, tmp_path, monkeypatch, capsys
):
    clone = fresh_clone(producer, tmp_path)
    git(clone, "config", f"merge.{DRIVER}.name", "model_filer registry merge")
    git(clone, "config", DRIVER_KEY, driver_command(str(tmp_path / "gone" / "python")))
    two_branches(clone, remote)

    merged = merge(clone, path_without_model_filer())

    assert merged.returncode != 0
    out = merged.stdout + merged.stderr
    assert "the registry merge driver cannot run here" in out
    assert f"git checkout -m -- {REGISTRY}" in out  # the real path, from git's %P
    assert "<<<<<<< " in (clone / REGISTRY).read_text()  # not "ours" silently
    git(clone, "add", REGISTRY)  # a plain `git add` of the conflicted file...
    monkeypatch.chdir(clone)
    assert commit_hook([REGISTRY]) == 1  # ...is refused at commit
    refused = capsys.readouterr().out
    assert "unresolved merge conflict markers" in refused
    assert "model-filer install-hooks --merge-driver-only" in refused
    assert f"git checkout -m -- {REGISTRY}" in refused

    # The recovery the message gives keeps both sides.
    env = environ(PATH=path_with_model_filer())
    subprocess.run(
        [str(BIN / "model-filer"), "install-hooks", "--merge-driver-only"], cwd=clone, check=True
    )
    git(clone, "checkout", "-m", "--", REGISTRY, env=env)
    assert "<<<<<<<" not in (clone / REGISTRY).read_text()
    assert names_in(clone, remote) == ["base_model", "model_b", "model_c"]
    git(clone, "add", REGISTRY)
    assert commit_hook([REGISTRY]) == 0


def throwaway_env(where: Path) -> Path:
    """A virtual environment of its own that imports this checkout's model_filer."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    pth = next(where.glob("lib/python*/site-packages")) / "model_filer_tests.pth"
    pth.write_text(f"import site; site.addsitedir({ours!r})\n")
    return where / "bin" / "python"


def driver_set_up_from_a_throwaway_env(clone: Path, env: Path) -> Path:
    """The merge driver set up in ``clone`` by the Python of a new environment at ``env``."""
    python = throwaway_env(env)
    subprocess.run(
        [str(python), "-m", "model_filer", "install-hooks", "--merge-driver-only"],
        cwd=clone,
        check=True,
    )
    return python


def test_the_driver_outlives_the_environment_that_set_it_up(producer, remote, tmp_path):
    """As `pre-commit gc` deletes a hook environment after a `rev:` bump."""
    clone = fresh_clone(producer, tmp_path)
    python = driver_set_up_from_a_throwaway_env(clone, tmp_path / "env")
    assert str(python) in git(clone, "config", DRIVER_KEY).stdout
    two_branches(clone, remote)
    shutil.rmtree(tmp_path / "env")

    merged = merge(clone, path_with_model_filer())  # resolved at merge time: PATH's

    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert names_in(clone, remote) == ["base_model", "model_b", "model_c"]


def test_a_driver_whose_python_lost_model_filer_falls_back_to_path(producer, remote, tmp_path):
    """The Python is still there but model_filer is not (uninstalled, or an interpreter link
    that now points at another environment): PATH's model-filer merges, no markers."""
    clone = fresh_clone(producer, tmp_path)
    driver_set_up_from_a_throwaway_env(clone, tmp_path / "env")
    two_branches(clone, remote)
    for pth in (tmp_path / "env").glob("lib/python*/site-packages/model_filer_tests.pth"):
        pth.unlink()  # the interpreter stays; model_filer is gone from it

    merged = merge(clone, path_with_model_filer())

    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert names_in(clone, remote) == ["base_model", "model_b", "model_c"]


def test_a_model_filer_folder_on_a_branch_is_not_what_the_driver_runs(producer, remote, tmp_path):
    """git runs the driver in the work tree's top folder: a branch that commits a
    ``model_filer/`` package there must not be imported in place of the installed one."""
    clone = fresh_clone(producer, tmp_path)
    install_hooks(clone, hooks=False)
    two_branches(clone, remote)
    marker = tmp_path / "ran"
    (clone / "model_filer").mkdir()  # committed on the branch being merged into
    (clone / "model_filer" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    commit(clone, "a package named model_filer")

    merged = merge(clone, path_without_model_filer())

    assert not marker.exists()
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert names_in(clone, remote) == ["base_model", "model_b", "model_c"]


def test_the_plain_hooks_never_import_a_checked_out_hooks_package(producer, tmp_path):
    """git runs hooks in the top folder: checking out a branch that commits a
    ``model_filer_hooks/`` package must not run it (the installed hooks run)."""
    clone = fresh_clone(producer, tmp_path)
    install_hooks(clone)
    marker = tmp_path / "ran"
    git(clone, "checkout", "-q", "-b", "evil")
    package = clone / "model_filer_hooks"
    package.mkdir()
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (package / "prefetch_models.py").write_text("")
    commit(clone, "a package named model_filer_hooks")
    git(clone, "checkout", "-q", "main")

    git(clone, "checkout", "-q", "evil")

    assert not marker.exists()


def test_a_driver_that_refuses_leaves_a_line_merge_with_markers(producer, remote, tmp_path):
    """Two remotes cannot be merged entry by entry: git's line merge, markers, conflict."""
    clone = fresh_clone(producer, tmp_path)
    install_hooks(clone, hooks=False)
    for branch, address in (("left", tmp_path / "one"), ("right", tmp_path / "two")):
        git(clone, "checkout", "-q", "-b", branch, "main")
        text = (clone / REGISTRY).read_text().replace(str(remote), str(address))
        (clone / REGISTRY).write_text(text)
        commit(clone, f"move to {address}")
    git(clone, "checkout", "-q", "left")

    merged = merge(clone, path_without_model_filer())

    assert merged.returncode != 0
    assert "different remotes" in merged.stdout + merged.stderr
    text = (clone / REGISTRY).read_text()
    assert "<<<<<<< " in text and str(tmp_path / "one") in text and str(tmp_path / "two") in text


def test_skipping_the_prefetch_still_sets_up_the_driver(producer, tmp_path, monkeypatch):
    """`MODEL_FILER_SKIP_PREFETCH=1 git clone ...`: the clone's first merge needs it anyway."""
    clone = fresh_clone(producer, tmp_path)
    (clone / "models" / "base_model.pkl").unlink(missing_ok=True)
    monkeypatch.setenv("MODEL_FILER_SKIP_PREFETCH", "1")

    assert after_clone_hook(clone, monkeypatch) == 0

    assert git(clone, "config", DRIVER_KEY).stdout.strip() == driver_command()
    assert not (clone / "models" / "base_model.pkl").exists()  # nothing fetched
