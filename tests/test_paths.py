"""Paths (issue 18, item 7): ``~`` and relative folders in the library, and which registries
each CLI command acts on when it is not given ``--dir``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.cli import main as cli
from model_filer.registry.file import Registry, dumps
from tests.support.gitrepo import commit, git, init_repo, model_files
from tests.support.machines import another_machine


# -- the library --------------------------------------------------------------------------------
def test_a_filer_expands_the_home_folder(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)

    filer = Filer("~/x", str(remote), "local")
    filer.dump({"w": 1}, "m")

    assert (home / "x" / "m.pkl").is_file()
    assert not (work / "~").exists()
    assert filer.local_dir == home / "x"


def test_a_relative_folder_is_resolved_once_when_the_filer_is_made(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    first.mkdir()
    (elsewhere / "models").mkdir(parents=True)
    monkeypatch.chdir(first)
    filer = Filer("models", str(remote), "local")
    filer.dump({"w": 1}, "one")

    os.chdir(elsewhere)  # (monkeypatch restores the first chdir's origin)

    assert filer.load("one") == {"w": 1}
    filer.dump({"w": 2}, "two")
    assert model_files(first / "models") == ["one.pkl", "two.pkl"]
    assert model_files(elsewhere / "models") == []


# -- the CLI: commands that read or fetch find registries the way status does --------------------
@pytest.fixture
def clone(tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of a repository with ``models/`` and ``nested/artifacts/``, nothing fetched."""
    producer = init_repo(tmp_path / "producer")
    Filer(producer / "models", str(remote), "local").dump({"m": 1}, "churn", push=True)
    Filer(producer / "nested" / "artifacts", str(remote), "local").dump({"a": 2}, "vocab", True)
    commit(producer, "two model folders")
    consumer = tmp_path / "consumer"
    git(tmp_path, "clone", "-q", str(producer), str(consumer))
    another_machine()
    monkeypatch.chdir(consumer)
    return consumer


def test_pull_all_from_the_repository_root_fetches_every_registry_in_subfolders(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pull", "--all"]) == 0

    assert model_files(clone / "models") == ["churn.pkl"]
    assert model_files(clone / "nested" / "artifacts") == ["vocab.pkl"]
    out = capsys.readouterr().out
    assert "Fetched 1 model(s) into models" in out
    assert "Fetched 1 model(s) into nested/artifacts" in out


def test_pull_by_name_from_the_root_fetches_from_the_registry_that_holds_it(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pull", "vocab"]) == 0
    assert model_files(clone / "nested" / "artifacts") == ["vocab.pkl"]
    assert model_files(clone / "models") == []

    assert cli(["pull", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "holds nosuch" in err and "model-filer status" in err


def test_verify_log_and_push_from_the_root_read_every_registry(
    clone: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pull", "--all"]) == 0
    Filer("nested/artifacts", str(remote), "local").dump({"a": 3}, "draft")
    capsys.readouterr()

    assert cli(["verify"]) == 0
    out = capsys.readouterr().out
    assert "models: all present model files match the registry." in out
    assert "nested/artifacts: all present model files match the registry." in out
    assert cli(["log", "--all"]) == 0
    out = capsys.readouterr().out
    assert "== models/.local_registry" in out and "churn" in out
    assert "== nested/artifacts/.local_registry" in out and "vocab" in out
    assert cli(["push", "--all"]) == 0
    assert "Pushed 1 model(s). Commit nested/artifacts/.local_registry." in capsys.readouterr().out


# -- commands that delete or trust act only on registries they are told about ---------------------
def test_rm_locals_without_dir_lists_what_it_would_remove_and_asks_for_all(
    clone: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Filer("models", str(remote), "local").dump({"d": 1}, "draft")
    Filer("nested/artifacts", str(remote), "local").dump({"d": 2}, "scratch")
    capsys.readouterr()

    assert cli(["rm", "--locals"]) == 2

    err = capsys.readouterr().err
    assert "models/.local_registry: draft" in err
    assert "nested/artifacts/.local_registry: scratch" in err
    assert "--dir" in err and "`model-filer rm --locals --all`" in err
    assert {e.name for e in Filer("models", str(remote), "local").list_files()} == {
        "churn",
        "draft",
    }
    assert cli(["rm", "--locals", "--all"]) == 0
    assert {e.name for e in Filer("models", str(remote), "local").list_files()} == {"churn"}
    assert {e.name for e in Filer("nested/artifacts", str(remote), "local").list_files()} == {
        "vocab"
    }


def test_rm_inside_a_model_folder_still_needs_dir(
    clone: Path, remote: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clone / "models")

    assert cli(["rm", "churn"]) == 2

    assert "`model-filer rm churn --all`" in capsys.readouterr().err
    assert cli(["rm", "--dir", ".", "churn"]) == 0
    assert Filer(".", str(remote), "local").list_files() == []


def test_gc_delete_without_dir_lists_the_objects_and_asks_for_all(
    clone: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filer = Filer("models", str(remote), "local")
    filer.dump({"tmp": 1}, "tmp", push=True)
    key = {e.name: e.key for e in filer.list_files()}["tmp"]
    assert key is not None
    filer.remove("tmp")  # never committed: no registry names it
    capsys.readouterr()

    assert cli(["gc", "--remote", "--delete", "--grace", "0"]) == 2

    out, err = capsys.readouterr()
    assert key in out
    assert f"1 object(s) on {remote}" in err and "--all" in err
    assert (remote / key).is_file()
    assert cli(["gc", "--remote", "--delete", "--grace", "0", "--all"]) == 0
    assert not (remote / key).exists()


def test_remote_trust_without_dir_lists_the_registries_and_asks_for_all(
    clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (clone / "extra").mkdir()
    (clone / "extra" / ".local_registry").write_bytes(dumps(Registry("local", str(other))))
    capsys.readouterr()

    assert cli(["remote", "trust"]) == 2

    err = capsys.readouterr().err
    assert "extra/.local_registry: local remote" in err
    assert "`model-filer remote trust --all`" in err
    assert cli(["pull", "--dir", "extra", "--all"]) == 2  # still untrusted
    assert cli(["remote", "trust", "--all"]) == 0
    assert "for extra/.local_registry's models" in capsys.readouterr().out


def test_remote_set_without_dir_names_a_real_folder_to_pass(
    clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["remote", "set", str(tmp_path)]) == 2

    err = capsys.readouterr().err
    assert "remote set needs --dir" in err
    assert f"`model-filer remote set --dir models {tmp_path}`" in err
    assert "Traceback" not in err


def test_a_remote_address_with_several_registries_found_needs_dir(
    clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pull", "--all", "--remote-address", str(tmp_path)]) == 2

    err = capsys.readouterr().err
    assert "--remote-address names one remote, but 2 registries were found" in err
    assert "models/.local_registry, nested/artifacts/.local_registry" in err
    assert model_files(clone / "models") == []
