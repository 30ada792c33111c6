"""The checkout/merge/rewrite hook ``prefetch-models``: ``main([...])`` on temporary repos.

A producer repository dumps and pushes models on two branches; a consumer clones it (no hooks,
so no model file arrives) and then calls the hook the way pre-commit (environment variables)
or git (arguments) would after a checkout, a merge or a rebase.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_filer_hooks.prefetch_models import main, parse_size

from model_filer import Filer
from model_filer.git.install import install_hooks
from model_filer.local.store import ObjectStore
from tests.support.gitrepo import (
    NULL_SHA,
    closed_port,
    commit,
    environ,
    git,
    head,
    init_repo,
    log_git_calls,
    model_files,
    run_counting_registry_opens,
)

MODELS = {
    "a": {"model": "a", "weights": [1, 2, 3]},
    "b": {"model": "b", "weights": [4, 5, 6]},
    "c": {"model": "c", "weights": [7, 8, 9]},
    "d": {"model": "d", "weights": [0, 0, 0]},
    "big": {"model": "big", "weights": b"\x01" * 200_000},
}
PREFETCH_ENV = (
    "PRE_COMMIT_FROM_REF",
    "PRE_COMMIT_TO_REF",
    "PRE_COMMIT_CHECKOUT_TYPE",
    "PRE_COMMIT_REWRITE_COMMAND",
    "PRE_COMMIT_IS_SQUASH_MERGE",
)


@dataclass
class World:
    """A producer repo with pushed models on ``main`` and ``feature``, and a fresh clone."""

    remote_type: str
    address: str
    producer: Path
    consumer: Path
    main_sha: str
    feature_sha: str

    def filer(self, repo: Path, folder: str) -> Filer:
        # The producer is another machine: its own object store, so the consumer downloads.
        store = ObjectStore(repo.parent / "producer-store") if repo == self.producer else None
        return Filer(repo / folder, self.address, self.remote_type, store=store)

    def publish(self, folder: str, name: str, message: str | None = None) -> str:
        """The producer dumps, pushes and commits a model on its current branch."""
        self.filer(self.producer, folder).dump(MODELS[name], name, push=True)
        return commit(self.producer, message or f"add {folder}/{name}")

    def files(self, folder: str) -> list[str]:
        return model_files(self.consumer / folder)


def build_world(tmp_path: Path, remote_type: str, address: str) -> World:
    producer = init_repo(tmp_path / "producer")
    world = World(remote_type, address, producer, tmp_path / "consumer", "", "")
    world.filer(producer, "models_x").dump(MODELS["a"], "a", push=True)
    world.main_sha = world.publish("models_y", "b")
    git(producer, "checkout", "-q", "-b", "feature")
    world.feature_sha = world.publish("models_y", "c")
    git(producer, "checkout", "-q", "main")
    git(tmp_path, "clone", "-q", str(producer), str(world.consumer))
    return world


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No pre-commit variables from the outside: each test sets what its event sets."""
    for name in PREFETCH_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def world(tmp_path: Path, hook_env: pytest.MonkeyPatch) -> World:
    remote = tmp_path / "remote"
    remote.mkdir()
    built = build_world(tmp_path, "local", str(remote))
    hook_env.chdir(built.consumer)
    return built


@pytest.fixture
def s3_world(tmp_path: Path, hook_env: pytest.MonkeyPatch, s3_address: str) -> World:
    built = build_world(tmp_path, "s3", s3_address)
    hook_env.chdir(built.consumer)
    return built


def checkout_event(mp: pytest.MonkeyPatch, old: str, new: str, kind: str = "1") -> None:
    """The variables pre-commit sets for a post-checkout hook."""
    mp.setenv("PRE_COMMIT_FROM_REF", old)
    mp.setenv("PRE_COMMIT_TO_REF", new)
    mp.setenv("PRE_COMMIT_CHECKOUT_TYPE", kind)


def switch(world: World, mp: pytest.MonkeyPatch, branch: str) -> tuple[str, str]:
    old = head(world.consumer)
    git(world.consumer, "checkout", "-q", branch)
    new = head(world.consumer)
    checkout_event(mp, old, new)
    return old, new


def loaded(world: World, folder: str, name: str) -> object:
    return world.filer(world.consumer, folder).load(name)


# -- post-checkout ----------------------------------------------------------------------------
def test_a_branch_switch_fetches_the_changed_registries_models(world, hook_env, capsys):
    assert world.files("models_x") == world.files("models_y") == []
    switch(world, hook_env, "feature")

    assert main([]) == 0

    assert world.files("models_y") == ["b.pkl", "c.pkl"]
    assert world.files("models_x") == []  # its registry did not change: load() stays lazy
    assert loaded(world, "models_y", "c") == MODELS["c"]
    assert "2 model(s) fetched, 0 already present, 0 failed" in capsys.readouterr().out


def test_a_second_run_fetches_nothing(world, hook_env, capsys):
    switch(world, hook_env, "feature")
    assert main([]) == 0
    capsys.readouterr()

    assert main([]) == 0
    assert "fetched" not in capsys.readouterr().out


def test_a_file_checkout_does_nothing(world, hook_env, capsys):
    old, new = switch(world, hook_env, "feature")
    checkout_event(hook_env, old, new, kind="0")

    assert main([]) == 0

    assert world.files("models_y") == []
    assert capsys.readouterr().out == ""


def test_a_clone_fetches_every_registry(world, hook_env, capsys):
    checkout_event(hook_env, NULL_SHA, head(world.consumer))

    assert main([]) == 0

    assert world.files("models_x") == ["a.pkl"]
    assert world.files("models_y") == ["b.pkl"]
    assert loaded(world, "models_x", "a") == MODELS["a"]
    assert "2 model(s) fetched" in capsys.readouterr().out


def test_a_fresh_clone_reads_each_registry_once_with_three_git_processes(
    tmp_path, hook_env, monkeypatch
):
    """A real 20-model clone and a real hook process: every git call is logged by a wrapper
    on PATH, every open of a registry file by an audit hook in the hook's process."""
    remote = tmp_path / "remote"
    remote.mkdir()
    producer = init_repo(tmp_path / "producer")
    filer = Filer(producer / "models", str(remote), "local")
    for i in range(20):
        filer.dump({"model": i}, f"m{i:02}", push=True)
    (producer / ".gitattributes").write_text(".*_registry merge=model-filer-registry\n")
    commit(producer, "20 models")
    consumer = tmp_path / "consumer"
    git(tmp_path, "clone", "-q", str(producer), str(consumer))
    argv = ["--hook-stage", "post-checkout", NULL_SHA, head(consumer), "1"]
    calls = log_git_calls(tmp_path, monkeypatch)
    hook, opened = run_counting_registry_opens(consumer, "model_filer_hooks.prefetch_models", argv)

    assert hook.returncode == 0, hook.stdout + hook.stderr
    assert "20 linked from the local store" in hook.stdout, hook.stdout
    assert model_files(consumer / "models") == [f"m{i:02}.pkl" for i in range(20)]
    assert opened == [str(consumer / "models" / ".local_registry")]
    logged = calls.read_text().splitlines()
    writes = [c for c in logged if c.startswith("config --local ") and "--get-regexp" not in c]
    others = [c for c in logged if c not in writes]
    assert len(others) <= 3, others
    assert not [c for c in others if c.startswith("cat-file")], others  # (no 2nd read)
    # The merge driver's two keys, and this clone's approval of the registry's remote.
    assert len(writes) == 5, writes


def test_a_new_branch_at_the_same_commit_fetches_nothing(world, hook_env):
    """``git checkout -b``: old and new are the same commit, so no registry changed and the
    models left lazy stay lazy."""
    sha = head(world.consumer)
    checkout_event(hook_env, sha, sha)
    assert main([]) == 0
    assert world.files("models_x") == []


def test_git_arguments_as_a_plain_hook(world, hook_env):
    old = head(world.consumer)
    git(world.consumer, "checkout", "-q", "feature")
    new = head(world.consumer)

    assert main(["--hook-stage", "post-checkout", old, new, "0"]) == 0
    assert world.files("models_y") == []

    assert main(["--hook-stage", "post-checkout", old, new, "1"]) == 0
    assert world.files("models_y") == ["b.pkl", "c.pkl"]
    assert world.files("models_x") == []


def test_plain_hook_after_a_clone(world, hook_env):
    assert main(["--hook-stage", "post-checkout", NULL_SHA, head(world.consumer), "1"]) == 0
    assert world.files("models_x") == ["a.pkl"]
    assert world.files("models_y") == ["b.pkl"]


@pytest.mark.parametrize(
    ("only", "expected_x", "expected_y"),
    [
        (["b"], [], ["b.pkl"]),
        (["models_x/*"], ["a.pkl"], []),
        (["a", "models_y/b"], ["a.pkl"], ["b.pkl"]),
        (["nothing*"], [], []),
    ],
)
def test_only_narrows_by_name_or_folder(world, hook_env, only, expected_x, expected_y):
    checkout_event(hook_env, NULL_SHA, head(world.consumer))
    argv = [arg for glob in only for arg in ("--only", glob)]

    assert main(argv) == 0

    assert world.files("models_x") == expected_x
    assert world.files("models_y") == expected_y


def test_max_size_skips_big_models(world, hook_env, capsys):
    git(world.producer, "checkout", "-q", "feature")
    world.publish("models_y", "big")
    git(world.consumer, "fetch", "-q")
    old = head(world.consumer)
    git(world.consumer, "checkout", "-q", "-b", "feature", "origin/feature")
    checkout_event(hook_env, old, head(world.consumer))
    sizes = {e.name: e.size for e in world.filer(world.consumer, "models_y").list_files()}
    assert sizes["big"] > 100_000 > sizes["c"]

    assert main(["--max-size", "10KB"]) == 0
    assert world.files("models_y") == ["b.pkl", "c.pkl"]

    assert main(["--max-size", "1MiB"]) == 0
    assert world.files("models_y") == ["b.pkl", "big.pkl", "c.pkl"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("10KB", 10_000),
        ("10kb", 10_000),
        ("500MB", 500_000_000),
        ("2GiB", 2 * 1024**3),
        ("1.5M", 1_500_000),
        ("3 KiB", 3072),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1MB", "10XB", "1e9"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        parse_size(text)


def test_a_bad_max_size_is_a_usage_error(world, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--max-size", "lots"])
    assert exc.value.code == 2
    assert "invalid size 'lots'" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "fetches"), [("1", False), ("yes", False), ("0", True)])
def test_the_skip_variable_turns_it_off(world, hook_env, value, fetches):
    hook_env.setenv("MODEL_FILER_SKIP_PREFETCH", value)
    checkout_event(hook_env, NULL_SHA, head(world.consumer))

    assert main([]) == 0

    assert world.files("models_x") == (["a.pkl"] if fetches else [])


def test_a_missing_remote_folder_warns_and_never_fails(world, hook_env, capsys):
    shutil.move(world.address, world.address + ".unmounted")
    switch(world, hook_env, "feature")

    assert main([]) == 0

    out = capsys.readouterr().out
    assert "models_y/b not fetched" in out
    assert "models_y/c not fetched" in out
    assert out.count("does not exist") == 1  # one cause, said once
    assert "model-filer pull --dir models_y --all" in out
    assert "0 model(s) fetched, 0 already present, 2 failed" in out
    assert world.files("models_y") == []

    assert main(["--strict"]) == 1


def test_a_stale_local_file_is_replaced(world, hook_env, capsys):
    """Same name, other bytes of the same size on another branch: fetched again."""
    checkout_event(hook_env, NULL_SHA, head(world.consumer))
    assert main([]) == 0
    old_bytes = (world.consumer / "models_x" / "a.pkl").read_bytes()

    git(world.producer, "checkout", "-q", "-b", "retrained")
    producer_filer = world.filer(world.producer, "models_x")
    producer_filer.remove("a")
    retrained = {"model": "a", "weights": [3, 2, 1]}
    producer_filer.dump(retrained, "a", push=True)
    commit(world.producer, "retrain a")
    new_bytes = (world.producer / "models_x" / "a.pkl").read_bytes()
    assert len(new_bytes) == len(old_bytes) and new_bytes != old_bytes

    git(world.consumer, "fetch", "-q")
    old = head(world.consumer)
    git(world.consumer, "checkout", "-q", "-b", "retrained", "origin/retrained")
    checkout_event(hook_env, old, head(world.consumer))
    capsys.readouterr()

    assert main([]) == 0

    assert (world.consumer / "models_x" / "a.pkl").read_bytes() == new_bytes
    assert loaded(world, "models_x", "a") == retrained
    assert "1 model(s) fetched" in capsys.readouterr().out

    switch(world, hook_env, "main")
    assert main([]) == 0
    assert (world.consumer / "models_x" / "a.pkl").read_bytes() == old_bytes
    assert pickle.loads(old_bytes) == MODELS["a"]


def test_an_unparsable_registry_at_the_new_head_warns(world, hook_env, capsys):
    git(world.producer, "checkout", "-q", "feature")
    registry = world.producer / "models_y" / ".local_registry"
    registry.write_text("<<<<<<< HEAD\n")
    commit(world.producer, "break the registry")
    git(world.consumer, "fetch", "-q")
    old = head(world.consumer)
    git(world.consumer, "checkout", "-q", "-b", "feature", "origin/feature")
    checkout_event(hook_env, old, head(world.consumer))

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "models_y/.local_registry" in out
    assert "merge conflict markers" in out
    assert main(["--strict"]) == 1


def test_outside_a_repository_it_does_nothing_harmful(tmp_path, hook_env, capsys):
    hook_env.chdir(tmp_path)
    checkout_event(hook_env, NULL_SHA, "HEAD")
    assert main([]) == 0
    assert "not inside a git repository" in capsys.readouterr().out
    assert main(["--strict"]) == 1


# -- post-merge and post-rewrite ------------------------------------------------------------
@pytest.mark.parametrize("argv", [[], ["--hook-stage", "post-merge", "0"]])
def test_a_pull_fetches_the_new_model(world, hook_env, capsys, argv):
    checkout_event(hook_env, NULL_SHA, head(world.consumer))
    assert main([]) == 0
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        hook_env.delenv(name)
    world.publish("models_x", "d")
    git(world.consumer, "pull", "-q", "--no-rebase")
    capsys.readouterr()

    assert main(argv) == 0

    assert world.files("models_x") == ["a.pkl", "d.pkl"]
    assert loaded(world, "models_x", "d") == MODELS["d"]
    assert "1 model(s) fetched, 1 already present" in capsys.readouterr().out


def test_a_merge_fetches_the_merged_branchs_models(world, hook_env):
    git(world.consumer, "merge", "-q", "--no-edit", "origin/feature")
    assert main(["--hook-stage", "post-merge", "0"]) == 0
    assert world.files("models_y") == ["b.pkl", "c.pkl"]
    assert world.files("models_x") == []


@pytest.mark.parametrize("plain_hook", [False, True])
def test_a_pull_rebase_fetches_the_new_model(world, hook_env, plain_hook):
    (world.consumer / "notes.txt").write_text("local work\n")
    commit(world.consumer, "local work")
    world.publish("models_x", "d")
    git(world.consumer, "pull", "-q", "--rebase")
    assert (world.consumer / "notes.txt").exists()

    if plain_hook:
        assert main(["--hook-stage", "post-rewrite", "rebase"]) == 0
    else:
        hook_env.setenv("PRE_COMMIT_REWRITE_COMMAND", "rebase")
        assert main([]) == 0

    assert world.files("models_x") == ["a.pkl", "d.pkl"]
    assert world.files("models_y") == []


def test_an_amend_fetches_nothing(world, hook_env, capsys):
    world.publish("models_x", "d")
    git(world.consumer, "pull", "-q")
    git(world.consumer, "commit", "-q", "--amend", "--no-edit", "--no-verify")

    assert main(["--hook-stage", "post-rewrite", "amend"]) == 0
    hook_env.setenv("PRE_COMMIT_REWRITE_COMMAND", "amend")
    assert main([]) == 0

    assert world.files("models_x") == []
    assert capsys.readouterr().out == ""


def test_as_plain_git_hooks_pull_and_pull_rebase_fetch(world, hook_env):
    """Real git runs the hooks: post-rewrite runs while git's rebase state still exists."""
    install_hooks(world.consumer, merge_driver=False)
    world.publish("models_x", "d")
    pulled = git(world.consumer, "pull", "--no-rebase")
    assert "2 model(s) fetched" in pulled.stdout + pulled.stderr
    assert world.files("models_x") == ["a.pkl", "d.pkl"]

    (world.consumer / "notes.txt").write_text("local work\n")
    commit(world.consumer, "local work")
    git(world.producer, "checkout", "-q", "main")
    world.filer(world.producer, "models_y").dump(MODELS["c"], "c2", push=True)
    commit(world.producer, "c2")
    rebased = git(world.consumer, "pull", "--rebase")
    assert "2 model(s) fetched" in rebased.stdout + rebased.stderr
    assert world.files("models_y") == ["b.pkl", "c2.pkl"]


def test_nothing_happens_in_the_middle_of_a_rebase(world, hook_env, capsys):
    (world.consumer / "README").write_text("ours\n")
    commit(world.consumer, "ours")
    (world.producer / "README").write_text("theirs\n")
    world.publish("models_x", "d", "theirs, and a model")
    stopped = git(world.consumer, "pull", "-q", "--rebase", check=False)
    assert stopped.returncode != 0
    assert (world.consumer / ".git" / "rebase-merge").is_dir()

    assert main(["--hook-stage", "post-checkout", NULL_SHA, head(world.consumer), "1"]) == 0
    assert main(["--hook-stage", "post-rewrite", "amend"]) == 0  # `commit --amend` mid-rebase
    assert world.files("models_x") == []
    assert capsys.readouterr().out == ""
    hook_env.setenv("PRE_COMMIT_REWRITE_COMMAND", "rebase")

    (world.consumer / "README").write_text("both\n")
    git(world.consumer, "add", "README")
    git(world.consumer, "rebase", "--continue", env=environ(GIT_EDITOR="true"))
    assert main([]) == 0
    assert world.files("models_x") == ["a.pkl", "d.pkl"]


# -- S3 ------------------------------------------------------------------------------------
def test_s3_a_branch_switch_fetches_the_new_branchs_models(s3_world, hook_env, capsys):
    switch(s3_world, hook_env, "feature")

    assert main([]) == 0

    assert s3_world.files("models_y") == ["b.pkl", "c.pkl"]
    assert s3_world.files("models_x") == []
    assert loaded(s3_world, "models_y", "c") == MODELS["c"]
    assert "2 model(s) fetched" in capsys.readouterr().out


def test_s3_a_clone_fetches_everything(s3_world, hook_env):
    assert main(["--hook-stage", "post-checkout", NULL_SHA, head(s3_world.consumer), "1"]) == 0
    assert s3_world.files("models_x") == ["a.pkl"]
    assert s3_world.files("models_y") == ["b.pkl"]


def test_s3_an_unreachable_store_warns_and_never_fails(s3_world, hook_env, capsys):
    hook_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    switch(s3_world, hook_env, "feature")

    assert main([]) == 0

    out = capsys.readouterr().out
    assert "models_y/b not fetched" in out
    assert "models_y/c not fetched" in out
    assert out.count("Cannot reach the S3 store") == 1  # one cause, said once
    assert "model-filer pull --dir models_y --all" in out
    assert s3_world.files("models_y") == []

    assert main(["--strict"]) == 1


def test_s3_missing_credentials_warn_and_never_fail(s3_world, hook_env, capsys):
    hook_env.delenv("AWS_ACCESS_KEY_ID")
    hook_env.delenv("AWS_SECRET_ACCESS_KEY")
    switch(s3_world, hook_env, "feature")

    assert main([]) == 0

    out = capsys.readouterr().out
    assert "models_y/c not fetched" in out
    assert "credentials" in out
    assert "model-filer pull --dir models_y --all" in out
