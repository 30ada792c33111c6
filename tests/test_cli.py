"""The ``model-filer`` command: ``model_filer.cli.main([...])`` in temporary folders and repos."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.cli import main
from model_filer.git.install import ATTRIBUTES_LINE, DRIVER, MARKER
from tests.support.gitrepo import (
    commit,
    git,
    init_repo,
    model_filer,
    model_files,
    registry_bytes,
    run_counting_registry_opens,
    sample_entry,
)
from tests.support.machines import another_machine

REGISTRY = "models/.local_registry"


@pytest.fixture
def filer(repo: Path, remote: Path) -> Filer:
    """churn (synced), prices (synced), draft (local)."""
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices", push=True)
    filer.dump({"w": 3}, "draft")
    return filer


def states(filer: Filer) -> dict[str, str]:
    return {e.name: e.state for e in filer.list_files()}


def user_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The one-line error a user mistake prints; checks there is nothing else."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("model-filer: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in lines[0]
    return lines[0]


# -- status --------------------------------------------------------------------------------
def test_status_lists_every_registry_and_where_each_model_is(repo, filer, remote, capsys):
    (repo / "models" / "prices.pkl").unlink()
    model_filer(repo / "other", remote)  # no registry until something is dumped
    model_filer(repo / "deep" / "er", remote).dump([1], "nested")
    capsys.readouterr()

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert f"deep/er/.local_registry  ->  {remote}" in out
    assert f"{REGISTRY}  ->  {remote}" in out
    assert "  churn (synced)" in out
    assert "present" in out.split("churn (synced)")[1].splitlines()[0]
    assert "  prices (synced)" in out
    assert "not downloaded" in out.split("prices (synced)")[1].splitlines()[0]
    assert "  draft (local)" in out
    assert "  nested (local)" in out
    assert out.index("deep/er") < out.index(REGISTRY)


def test_status_of_one_registry(repo, filer, capsys):
    (repo / "models" / "draft.pkl").unlink()
    capsys.readouterr()
    assert main(["status", REGISTRY]) == 0
    out = capsys.readouterr().out
    assert "draft (local)" in out
    assert "FILE MISSING" in out


def test_status_calls_a_model_present_after_another_checkout_linked_it(
    repo, remote, tmp_path, capsys
):
    """A second checkout's hardlink to the same store object moves the inode's ctime, which
    the first folder's record of the file keys on: beside a new link count, it still holds."""
    first = Filer(repo / "models", str(remote), "local")
    first.dump({"w": 1}, "m", push=True)
    first.load("m")
    second = tmp_path / "second" / "models"
    second.mkdir(parents=True)
    (second / ".local_registry").write_bytes((repo / REGISTRY).read_bytes())
    assert Filer(second, str(remote), "local").pull().linked == ["m"]
    capsys.readouterr()
    assert main(["status", REGISTRY]) == 0
    out = capsys.readouterr().out
    assert "m (synced)" in out and "present" in out and "unverified" not in out


def test_status_with_no_registries(repo, capsys):
    assert main(["status"]) == 0
    assert "No registries under ." in capsys.readouterr().out


def test_status_of_a_path_that_does_not_exist_is_an_error(repo, capsys):
    assert main(["status", "no-such-folder"]) == 2
    err = capsys.readouterr().err
    assert "no-such-folder does not exist" in err and "Traceback" not in err


def test_status_of_an_empty_registry(repo, remote, capsys):
    (repo / "models").mkdir()
    (repo / REGISTRY).write_bytes(registry_bytes("local", str(remote)))
    assert main(["status"]) == 0
    assert "[no files exist]" in capsys.readouterr().out


# -- push and pull ----------------------------------------------------------------------------
def test_push_names(repo, filer, capsys):
    filer.dump({"w": 4}, "other")
    capsys.readouterr()

    assert main(["push", "--dir", "models", "draft"]) == 0

    assert states(filer) == {
        "churn": "synced",
        "draft": "synced",
        "other": "local",
        "prices": "synced",
    }
    assert f"Pushed 1 model(s). Commit {REGISTRY}." in capsys.readouterr().out


def test_pushing_a_synced_model_again_asks_for_no_commit(repo, filer, remote, capsys):
    # What the damage advice says to do after deleting its object: the entry stays the same.
    entry = {e.name: e for e in filer.list_files()}["prices"]
    (remote / entry.key).unlink()
    capsys.readouterr()

    assert main(["push", "--dir", "models", "prices"]) == 0

    assert f"Pushed 1 model(s). {REGISTRY} is unchanged." in capsys.readouterr().out
    assert (remote / entry.key).exists()


def test_a_push_of_models_already_on_the_remote_says_so(repo, filer, capsys):
    filer.dump({"w": 4}, "other")
    capsys.readouterr()

    assert main(["push", "--dir", "models", "prices", "other"]) == 0

    out = capsys.readouterr().out
    assert f"Pushed 1 model(s). 1 already on the remote. Commit {REGISTRY}." in out
    assert main(["push", "--dir", "models", "prices"]) == 0
    assert f"Pushed 0 model(s). 1 already on the remote. {REGISTRY} is unchanged." in (
        capsys.readouterr().out
    )


def test_a_push_that_fails_midway_still_says_to_commit_what_it_pushed(repo, filer, capsys):
    filer.dump({"w": 4}, "other")
    (repo / "models" / "other.pkl").write_bytes(b"changed since its dump")
    capsys.readouterr()

    assert main(["push", "--dir", "models", "draft", "other"]) != 0

    assert states(filer)["draft"] == "synced" and states(filer)["other"] == "local"
    out = capsys.readouterr()
    assert f"Commit {REGISTRY}: it records the models that were pushed." in out.out
    assert "Traceback" not in out.out + out.err


def test_push_all(repo, filer, capsys):
    filer.dump({"w": 4}, "other")
    capsys.readouterr()

    assert main(["push", "-d", "models", "--all"]) == 0

    assert set(states(filer).values()) == {"synced"}
    assert "Pushed 2 model(s)" in capsys.readouterr().out


def test_push_follows_the_storage_setting_of_the_environment(repo, filer, monkeypatch, capsys):
    """MODEL_FILER_STORAGE=plain: a CLI push writes each pickle whole, for other tools."""
    monkeypatch.setenv("MODEL_FILER_STORAGE", "plain")
    assert main(["push", "-d", "models", "--all"]) == 0
    draft = next(e for e in filer.list_files() if e.name == "draft")
    assert draft.key == f"draft/{draft.sha256}.pkl"
    assert next(e for e in filer.list_files() if e.name == "churn").key.startswith(".model_filer/")

    monkeypatch.setenv("MODEL_FILER_STORAGE", "zip")
    assert main(["push", "-d", "models", "--all"]) == 2
    user_error(capsys, "$MODEL_FILER_STORAGE='zip' is not a layout", "'plain'")


def test_a_bad_stall_timeout_in_the_environment_says_what_to_type(repo, filer, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_FILER_STALL_TIMEOUT", "5min")
    assert main(["pull", "--dir", "models", "--all"]) == 2
    user_error(capsys, "$MODEL_FILER_STALL_TIMEOUT='5min'", "such as 300, or unset it")


def test_push_from_inside_the_model_folder(repo, filer, monkeypatch):
    monkeypatch.chdir(repo / "models")
    assert main(["push", "--all"]) == 0
    assert states(filer)["draft"] == "synced"


def test_push_with_the_registry_path(repo, filer):
    assert main(["push", "--dir", REGISTRY, "draft"]) == 0
    assert states(filer)["draft"] == "synced"


def test_pull_names_and_all(repo, filer, capsys):
    for name in ("churn", "prices"):
        (repo / "models" / f"{name}.pkl").unlink()
    another_machine()  # so pull downloads instead of linking from the local store
    capsys.readouterr()

    assert main(["pull", "--dir", "models", "churn"]) == 0
    assert model_files(repo / "models") == ["churn.pkl", "draft.pkl"]
    assert "Fetched 1 model(s); 0 already present." in capsys.readouterr().out

    assert main(["pull", "--dir", "models", "--all"]) == 0
    assert model_files(repo / "models") == ["churn.pkl", "draft.pkl", "prices.pkl"]
    assert "Fetched 1 model(s); 1 already present." in capsys.readouterr().out
    assert filer.load("prices") == {"w": 2}


def test_pull_from_a_missing_remote_is_a_clear_error(repo, filer, remote, capsys):
    (repo / "models" / "churn.pkl").unlink()
    another_machine()
    remote.rename(remote.with_name("unmounted"))
    capsys.readouterr()

    assert main(["pull", "--dir", "models", "--all"]) == 2
    line = user_error(capsys, "churn", "does not exist", "model-filer remote set --dir")
    assert "mkdir" not in line  # models on an unmounted share: an empty folder is no fix


def test_pull_with_a_remote_address_override(repo, filer, remote, tmp_path, capsys):
    """A share mounted elsewhere on this machine."""
    (repo / "models" / "churn.pkl").unlink()
    moved = tmp_path / "mounted-elsewhere"
    remote.rename(moved)

    assert main(["pull", "--dir", "models", "--remote-address", str(moved), "churn"]) == 0
    assert "churn.pkl" in model_files(repo / "models")


# -- rm and verify ----------------------------------------------------------------------------
def test_rm_keeps_the_remote_object_unless_asked(repo, filer, remote):
    keys = {e.name: e.key for e in filer.list_files()}

    assert main(["rm", "--dir", "models", "churn"]) == 0
    assert "churn" not in states(filer)
    assert not (repo / "models" / "churn.pkl").exists()
    assert (remote / str(keys["churn"])).exists()

    assert main(["rm", "--dir", "models", "prices", "--remote"]) == 0
    assert "prices" not in states(filer)
    assert not (remote / str(keys["prices"])).exists()


def test_rm_of_an_aliased_model_says_the_alias_needs_a_move(repo, filer, capsys):
    filer.dump([1], "a")
    filer.dump([2], "b")
    filer.set_alias("production", "a")
    assert main(["rm", "--dir", "models", "a"]) == 0
    out = capsys.readouterr().out
    assert "@production still names a." in out
    assert "model-filer alias --dir models production MODEL" in out


def test_rm_locals(repo, filer, capsys):
    filer.dump({"w": 4}, "other")
    capsys.readouterr()

    assert main(["rm", "--dir", "models", "--locals"]) == 0

    assert states(filer) == {"churn": "synced", "prices": "synced"}
    assert model_files(repo / "models") == ["churn.pkl", "prices.pkl"]
    assert "Removed 2 local model(s): draft, other." in capsys.readouterr().out


def test_verify_passes_then_fails_on_a_modified_file(repo, filer, capsys):
    assert main(["verify", "--dir", "models"]) == 0
    assert "All present model files match the registry." in capsys.readouterr().out

    path = repo / "models" / "prices.pkl"
    data = bytearray(path.read_bytes())
    data[-2] ^= 1  # same size
    mtime = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(mtime, mtime))  # the stat cache cannot tell: verify must re-hash

    assert main(["verify", "--dir", "models"]) == 1
    out = capsys.readouterr().out
    assert "models/prices.pkl: sha256" in out
    assert "does not match the registry" in out
    assert "1 mismatch(es)." in out


def test_verify_ignores_models_not_downloaded(repo, filer):
    (repo / "models" / "churn.pkl").unlink()
    assert main(["verify", "--dir", "models"]) == 0


# -- user mistakes: exit 2, one line ----------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["push", "--dir", "models", "nosuch"], ["'nosuch'", "Known there: churn, draft, prices"]),
        (["pull", "--dir", "models", "nosuch"], ["nosuch"]),
        (["rm", "--dir", "models", "nosuch"], ["'nosuch'", "nothing removed"]),
        (["push", "--dir", "models", "../x"], ["Invalid model name '../x'"]),
        (["push", "--dir", "models", "draft", "--all"], ["not both"]),
        (["pull", "--dir", "models", "churn", "--all"], ["not both"]),
        (["push", "--dir", "models"], ["Pass the names of the models to push, or --all"]),
        (["pull", "--dir", "models"], ["Pass the names of the models to pull, or --all"]),
        (["rm", "--dir", "models"], ["Pass the names of the models to remove, or --locals"]),
        (["rm", "--dir", "models", "--locals", "draft"], ["without names or --remote"]),
        (["rm", "--dir", "models", "--locals", "--remote"], ["without names or --remote"]),
        (["push", "--all", "--remote-type", "s3"], ["No registry under"]),
        (["push", "--dir", "nowhere", "--all"], ["No registry in nowhere"]),
        (["verify", "--dir", "README"], ["README is neither a model folder nor a registry"]),
        (["status", "nowhere/.local_registry"], ["No registry at nowhere/.local_registry"]),
        (["push", "--dir", "models", "--remote-type", "s3", "--all"], ["No registry in models"]),
    ],
)
def test_a_user_mistake_exits_2_with_one_line(repo, filer, capsys, argv, words):
    capsys.readouterr()
    assert main(argv) == 2
    user_error(capsys, *words)


def test_a_local_model_cannot_be_pulled(repo, filer, capsys):
    (repo / "models" / "draft.pkl").unlink()
    capsys.readouterr()
    assert main(["pull", "--dir", "models", "--all"]) == 0  # pull skips local entries
    assert main(["push", "--dir", "models", "draft"]) == 2
    user_error(capsys, "draft", "missing")


@pytest.mark.parametrize(
    "text",
    [
        "<<<<<<< HEAD\nformat: 1\n=======\nformat: 1\n>>>>>>> other\n",
        "format: 1\nremote: [unclosed\n",
        "format: 1\nremote: {type: local, address: /srv}\nmodels: {'../x': {}}\n",
        "format: 1\nmodels: !!python/object/apply:os.system ['true']\n",
    ],
    ids=["conflict", "yaml", "name", "python-tag"],
)
@pytest.mark.parametrize("command", [["status"], ["push", "--all"], ["verify"], ["rm", "--locals"]])
def test_a_bad_registry_exits_2_with_one_line(repo, capsys, text, command):
    (repo / "models").mkdir()
    (repo / REGISTRY).write_text(text)
    argv = command if command == ["status"] else [*command, "--dir", "models"]

    assert main(argv) == 2

    user_error(capsys, REGISTRY)
    assert (repo / REGISTRY).read_text() == text  # nothing rewrote it


def test_two_registries_in_one_folder_need_a_remote_type(repo, filer, capsys):
    (repo / "models" / ".s3_registry").write_bytes(
        registry_bytes("s3", "s3://bucket/models", sample_entry("x"))
    )
    capsys.readouterr()

    assert main(["push", "--dir", "models", "--all"]) == 2
    user_error(capsys, "holds 2 registries", "--remote-type")

    assert main(["push", "--dir", "models", "--remote-type", "local", "--all"]) == 0


def test_argparse_mistakes_exit_2_without_a_traceback(repo, capsys):
    for argv in ([], ["frobnicate"], ["push", "--jobs", "many"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "model-filer" in err
        assert "Traceback" not in err


# -- install-hooks ---------------------------------------------------------------------------
EXISTING_HOOK = """#!/bin/sh
echo "theirs ran" >> "$(git rev-parse --git-dir)/hook.log"
[ ! -e "$(git rev-parse --git-dir)/fail-theirs" ]
"""


def test_install_hooks_writes_the_merge_driver(repo, capsys):
    assert main(["install-hooks"]) == 0

    out = capsys.readouterr().out
    assert "merge driver" in out
    driver = git(repo, "config", f"merge.{DRIVER}.driver").stdout.strip()
    assert "-m model_filer merge-registry %O %A %B %P" in driver
    assert git(repo, "config", f"merge.{DRIVER}.name").stdout.strip()
    assert ATTRIBUTES_LINE in (repo / ".gitattributes").read_text().splitlines()
    attrs = git(repo, "check-attr", "merge", "--", REGISTRY, "models/.s3_registry").stdout
    assert f"{REGISTRY}: merge: {DRIVER}" in attrs
    assert f"models/.s3_registry: merge: {DRIVER}" in attrs
    for hook in ("pre-commit", "post-checkout", "post-merge", "post-rewrite", "pre-push"):
        path = repo / ".git" / "hooks" / hook
        assert MARKER in path.read_text()
        assert path.stat().st_mode & stat.S_IXUSR


def test_install_hooks_keeps_an_existing_gitattributes(repo):
    (repo / ".gitattributes").write_text("*.png binary")  # no final newline
    assert main(["install-hooks", "--merge-driver-only"]) == 0
    assert main(["install-hooks", "--merge-driver-only"]) == 0
    assert (repo / ".gitattributes").read_text() == f"*.png binary\n{ATTRIBUTES_LINE}\n"
    assert not (repo / ".git" / "hooks" / "pre-push").exists()


def test_install_hooks_keeps_an_existing_hook_which_runs_first(repo, remote, capsys):
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-commit").write_text(EXISTING_HOOK)
    (hooks / "pre-commit").chmod(0o755)

    assert main(["install-hooks"]) == 0
    assert main(["install-hooks"]) == 0  # again: no double wrapping, theirs still kept

    assert "kept your pre-commit hook" in capsys.readouterr().out
    assert (hooks / "pre-commit.pre-model-filer").read_text() == EXISTING_HOOK
    log = repo / ".git" / "hook.log"

    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    git(repo, "add", "-A")
    refused = git(repo, "commit", "-qm", "local model", check=False)
    assert refused.returncode == 1
    assert f"{REGISTRY}: churn is local" in refused.stdout + refused.stderr
    assert log.read_text() == "theirs ran\n"  # theirs ran, then ours refused

    filer.push("churn")
    git(repo, "add", "-A")
    (repo / ".git" / "fail-theirs").touch()
    refused = git(repo, "commit", "-qm", "synced model", check=False)
    assert refused.returncode == 1  # their failure stops the commit
    assert log.read_text() == "theirs ran\n" * 2

    (repo / ".git" / "fail-theirs").unlink()
    git(repo, "commit", "-qm", "synced model")
    assert log.read_text() == "theirs ran\n" * 3


def test_install_hooks_from_a_subfolder(repo, monkeypatch):
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")
    assert main(["install-hooks"]) == 0
    assert (repo / ".gitattributes").is_file()
    assert not (repo / "src" / ".gitattributes").exists()
    assert (repo / ".git" / "hooks" / "post-checkout").is_file()


def test_install_hooks_outside_a_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["install-hooks"]) == 2
    user_error(capsys, "not inside a git repository", "git init")


def test_plain_hooks_end_to_end(tmp_path, repo, remote, monkeypatch):
    """Commit refused then accepted; clone + checkout fetches; push refused on a lost object."""
    assert main(["install-hooks"]) == 0
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    git(repo, "add", "-A")
    assert git(repo, "commit", "-qm", "model", check=False).returncode == 1
    filer.push("churn")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "model")

    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    pushed = git(repo, "push", "-q", str(bare), "main")
    assert pushed.returncode == 0

    clone = tmp_path / "clone"
    template = tmp_path / "git-template"
    assert main(["install-hooks", "--template-dir", str(template)]) == 0
    another_machine()  # the clone downloads, as a teammate's would
    cloned = git(tmp_path, "clone", "-q", f"--template={template}", str(bare), str(clone))
    assert "1 model(s) fetched" in cloned.stdout + cloned.stderr
    assert model_files(clone / "models") == ["churn.pkl"]

    monkeypatch.chdir(repo)
    filer.dump({"w": 2}, "prices", push=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "another model")
    for key in {e.key for e in filer.list_files()}:
        (remote / str(key)).unlink()
    refused = git(repo, "push", "-q", str(bare), "main", check=False)
    assert refused.returncode != 0
    assert "push refused" in refused.stdout + refused.stderr
    assert "prices" in refused.stdout + refused.stderr


# -- merge-registry ----------------------------------------------------------------------------
def test_merge_registry_writes_the_merge_to_ours(tmp_path, remote, capsys):
    base = registry_bytes("local", str(remote), sample_entry("a"))
    ours = registry_bytes("local", str(remote), sample_entry("a"), sample_entry("b"))
    theirs = registry_bytes("local", str(remote), sample_entry("a"), sample_entry("c"))
    paths = []
    for name, data in (("base", base), ("ours", ours), ("theirs", theirs)):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))

    assert main(["merge-registry", *paths, REGISTRY]) == 0

    expected = registry_bytes(
        "local", str(remote), sample_entry("a"), sample_entry("b"), sample_entry("c")
    )
    assert (tmp_path / "ours").read_bytes() == expected
    assert capsys.readouterr().err == ""


def test_merge_registry_reports_a_conflict(tmp_path, remote, capsys):
    base = registry_bytes("local", str(remote))
    ours = registry_bytes("local", str(remote), sample_entry("a", sha256="1" * 64))
    theirs = registry_bytes("local", str(remote), sample_entry("a", sha256="2" * 64))
    for name, data in (("base", base), ("ours", ours), ("theirs", theirs)):
        (tmp_path / name).write_bytes(data)

    argv = ["merge-registry", *(str(tmp_path / n) for n in ("base", "ours", "theirs"))]
    assert main([*argv, REGISTRY]) == 1

    err = capsys.readouterr().err
    assert f"model-filer: {REGISTRY}: a changed differently on both branches" in err
    assert f"git add {REGISTRY}" in err


def test_merge_registry_of_unreadable_files_exits_2(tmp_path, remote, capsys):
    good = tmp_path / "good"
    good.write_bytes(registry_bytes("local", str(remote)))
    (tmp_path / "bad").write_text("format: [\n")

    assert main(["merge-registry", str(good), str(good), str(tmp_path / "bad"), REGISTRY]) == 2
    user_error(capsys, "theirs", "not valid registry YAML")

    assert main(["merge-registry", str(good), str(tmp_path / "gone"), str(good)]) == 2
    user_error(capsys, "gone")


# -- demo ------------------------------------------------------------------------------------
def test_demo(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "commit refused" in out
    assert "house_prices is local" in out
    assert "1 model(s) fetched" in out
    assert "its metrics: {'rmse': " in out  # Bob's load('@production') found Alice's alias
    assert "identical" in out


def test_demo_when_git_fails_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """A git the demo cannot run (here a broken global config) is a user error, not a crash."""
    broken = tmp_path / "gitconfig"
    broken.write_text("[core\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(broken))
    assert main(["demo"]) == 2
    user_error(capsys, "git init failed")


def test_run_as_a_module(repo, filer):
    done = subprocess.run(
        [sys.executable, "-m", "model_filer", "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "churn (synced)" in done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "model_filer", "push", "nosuch"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("model-filer: error: ")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["log", "--all"], ["gc", "--remote", "--all"]])
def test_a_command_reads_each_registry_it_acts_on_once(tmp_path, argv):
    """Each step of a command is handed the registry read first: one read of each (an
    audit hook in the CLI's own process sees every open)."""
    repo = init_repo(tmp_path / "repo")
    for folder in ("a", "b"):
        remote = tmp_path / f"remote-{folder}"
        remote.mkdir()
        Filer(repo / folder, str(remote), "local").dump({"m": folder}, "m", push=True)
    commit(repo, "two registries")

    done, opened = run_counting_registry_opens(repo, "model_filer", argv)

    assert done.returncode == 0, done.stderr
    read = sorted((repo / p).resolve() for p in opened)
    assert read == [(repo / f / ".local_registry").resolve() for f in ("a", "b")]


def test_a_reader_that_stops_early_is_no_error(repo, filer):
    # `model-filer status | head -1`: the pipe closes before the output is written.
    filer.dump([1], "a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_filer", "status"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command prints
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
