"""End to end through the real ``pre-commit`` framework, against the session's S3 store.

A snapshot of this checkout is committed in a temp repository so that a user's
``.pre-commit-config.yaml`` can name it (``repo: <path>``, ``rev: <sha>``); one
``PRE_COMMIT_HOME`` serves the whole session, so pre-commit builds the hook environment (a
virtualenv with this package and its dependencies) once (tests/support/precommit_team.py).
Then users commit, clone, check out, pull, merge and push with plain ``git`` commands, and
pre-commit runs the hooks as git hooks.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_filer import Filer
from model_filer.local.store import ObjectStore
from model_filer.registry.file import parse
from tests.support.gitrepo import (
    closed_port,
    environ,
    git,
    head,
    init_repo,
    model_files,
)
from tests.support.precommit_team import (
    CHECKOUT,
    MODEL_FILER,
    PRE_COMMIT,
    REGISTRY,
    Team,
    output,
)

pytestmark = pytest.mark.skipif(
    not Path(PRE_COMMIT).exists(), reason="pre-commit is not installed in this environment"
)


def sklearn_model() -> Any:
    linear_model = pytest.importorskip("sklearn.linear_model")
    return linear_model.LinearRegression().fit([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.0, 5.0, 7.0])


# -- commit --------------------------------------------------------------------------------
def test_a_commit_with_a_local_model_is_refused_then_accepted_after_push(team):
    alice = team.founder()
    filer = team.filer(alice)
    filer.dump({"w": 1}, "churn")

    refused = team.commit(alice, "add churn", check=False)

    assert refused.returncode == 1
    assert f"{REGISTRY}: churn is local" in output(refused)
    assert "model-filer push --dir models --all" in output(refused)
    assert git(alice, "rev-list", "--count", "HEAD").stdout.strip() == "2"  # nothing committed

    pushed = team.run(alice, MODEL_FILER, "push", "--dir", "models", "--all")
    assert "Pushed 1 model(s)" in pushed.stdout
    accepted = team.commit(alice, "add churn")
    assert accepted.returncode == 0
    assert "no local-only models in registries" in output(accepted)
    assert REGISTRY in git(alice, "ls-files").stdout
    assert "churn.pkl" not in git(alice, "ls-files").stdout


def test_an_unparsable_registry_is_refused(team):
    alice = team.founder()
    (alice / "models").mkdir()
    (alice / REGISTRY).write_text("<<<<<<< HEAD\nformat: 1\n=======\nformat: 2\n>>>>>>> x\n")

    refused = team.commit(alice, "broken registry", check=False)

    assert refused.returncode == 1
    assert f"{REGISTRY}: unresolved merge conflict markers" in output(refused)


def test_a_staged_model_file_is_refused(team):
    alice = team.founder()
    team.filer(alice).dump({"w": 1}, "churn", push=True)
    team.commit(alice, "add churn")
    git(alice, "add", "-f", "models/churn.pkl")

    refused = team.git(alice, "commit", "-m", "oops", check=False)

    assert refused.returncode == 1
    assert "models/churn.pkl: a model file is staged" in output(refused)
    assert "git rm --cached models/churn.pkl" in output(refused)


# -- checkout, pull ------------------------------------------------------------------------------
def test_a_clone_fetches_a_branchs_models_on_checkout(team):
    alice = team.founder()
    model = sklearn_model()
    team.filer(alice).dump(model, "regression", push=True)
    team.commit(alice, "a scikit-learn model")
    team.git(alice, "push", "-q")
    team.git(alice, "checkout", "-q", "-b", "feature")
    team.filer(alice, "features").dump({"f": [1, 2]}, "encoder", push=True)
    team.commit(alice, "a feature encoder")
    team.git(alice, "push", "-q", "-u", "origin", "feature")

    bob = team.clone("bob")
    assert model_files(bob / "models") == []  # no hooks ran during the clone itself

    pulled = team.run(bob, MODEL_FILER, "pull", "--dir", "models", "--all")
    assert "Fetched 1 model(s)" in pulled.stdout
    loaded = team.filer(bob).load("regression")
    assert loaded.predict([[10.0]]).tolist() == model.predict([[10.0]]).tolist()

    switched = team.git(bob, "checkout", "feature")
    assert "1 model(s) fetched, 0 already present, 0 failed" in output(switched)
    assert model_files(bob / "features") == ["encoder.pkl"]
    assert team.filer(bob, "features").load("encoder") == {"f": [1, 2]}

    carol = team.clone("carol")
    team.git(carol, "checkout", "-q", "feature")
    assert model_files(carol / "features") == ["encoder.pkl"]
    assert model_files(carol / "models") == []  # unchanged between main and feature: lazy


def test_a_new_model_arrives_on_pull_and_on_pull_rebase(team):
    alice = team.founder()
    team.filer(alice).dump({"v": 1}, "first", push=True)
    team.commit(alice, "first")
    team.git(alice, "push", "-q")
    bob = team.clone("bob")

    def publish(name: str, value: int) -> None:
        team.filer(alice).dump({"v": value}, name, push=True)
        team.commit(alice, name)
        team.git(alice, "push", "-q")

    publish("second", 2)
    skipped = team.git(bob, "pull", "--no-rebase", MODEL_FILER_SKIP_PREFETCH="1")
    assert "fetched" not in output(skipped)
    assert model_files(bob / "models") == []  # turned off for that one command
    team.run(bob, MODEL_FILER, "pull", "--dir", "models", "--all")
    assert model_files(bob / "models") == ["first.pkl", "second.pkl"]

    publish("third", 3)
    merged = team.git(bob, "pull", "--no-rebase")
    assert "1 model(s) fetched, 2 already present" in output(merged)
    assert model_files(bob / "models") == ["first.pkl", "second.pkl", "third.pkl"]

    (bob / "notes.txt").write_text("bob's work\n")
    team.commit(bob, "bob's work")
    publish("fourth", 4)
    rebased = team.git(bob, "pull", "--rebase")
    assert "1 model(s) fetched, 3 already present" in output(rebased)
    assert (bob / "notes.txt").exists()
    assert "fourth.pkl" in model_files(bob / "models")
    assert team.filer(bob).load("fourth") == {"v": 4}


def test_a_checkout_completes_while_the_remote_is_unreachable(team):
    alice = team.founder()
    team.empty_registry(alice)
    team.git(alice, "checkout", "-q", "-b", "feature")
    team.filer(alice).dump({"v": 1}, "churn", push=True)
    team.commit(alice, "churn")
    team.git(alice, "push", "-q", "-u", "origin", "feature")
    bob = team.clone("bob")

    offline = f"http://127.0.0.1:{closed_port()}"
    switched = team.git(bob, "checkout", "feature", AWS_ENDPOINT_URL=offline)

    assert switched.returncode == 0
    assert head(bob) == head(alice)
    text = output(switched)
    assert "models/churn not fetched" in text
    assert "Cannot reach the S3 store" in text
    assert "model-filer pull --dir models --all" in text
    assert model_files(bob / "models") == []

    team.run(bob, MODEL_FILER, "pull", "--dir", "models", "--all")  # back online
    assert team.filer(bob).load("churn") == {"v": 1}


# -- push ----------------------------------------------------------------------------------
def test_a_push_is_refused_when_a_remote_object_was_deleted(team, s3_client, s3_env):
    alice = team.founder()
    filer = team.filer(alice)
    filer.dump({"v": 1}, "churn", push=True)
    team.commit(alice, "churn")
    pushed = team.git(alice, "push", "origin", "main")
    assert "pushed registries point at existing remote objects" in output(pushed)

    filer.dump({"v": 2}, "prices", push=True)
    team.commit(alice, "prices")
    entry = {e.name: e for e in filer.list_files()}["prices"]
    prefix = team.address.removeprefix(f"s3://{s3_env.bucket}/")
    s3_client.delete_object(Bucket=s3_env.bucket, Key=f"{prefix}/{entry.key}")

    refused = team.git(alice, "push", "origin", "main", check=False)

    assert refused.returncode != 0
    text = output(refused)
    assert "push refused" in text
    assert f"{REGISTRY} at {head(alice)[:10]}: prices:" in text
    assert "is missing from the remote" in text
    assert "churn" not in text.split("push refused")[1]
    assert head(alice) != git(alice, "rev-parse", "origin/main").stdout.strip()

    filer.push("prices")  # the file is still here: push repairs the remote
    team.git(alice, "push", "origin", "main")


# -- merge -----------------------------------------------------------------------------------
def test_two_branches_that_each_added_a_model_merge_cleanly(team):
    alice = team.founder()
    installed = team.run(alice, MODEL_FILER, "install-hooks", "--merge-driver-only")
    assert "merge driver" in installed.stdout
    team.filer(alice).dump({"v": 0}, "base", push=True)
    team.commit(alice, "merge driver and a first model")
    for branch, name in (("left", "model_b"), ("right", "model_c")):
        team.git(alice, "checkout", "-q", "-b", branch, "main")
        team.filer(alice).dump({"v": name}, name, push=True)
        team.commit(alice, f"add {name}")
    team.git(alice, "checkout", "-q", "left")

    merged = team.git(alice, "merge", "--no-edit", "right", check=False)

    assert merged.returncode == 0, output(merged)
    assert "CONFLICT" not in output(merged)
    names = [e.name for e in team.filer(alice).list_files()]
    assert names == ["base", "model_b", "model_c"]
    assert "<<<<<<<" not in (alice / REGISTRY).read_text()
    assert git(alice, "status", "--porcelain").stdout == ""


def test_a_clean_merge_that_leaves_an_alias_dangling_is_refused_until_it_is_moved(team):
    """One branch re-dumps churn, the other points production at the churn it knew: each
    commit is fine, and the merge is clean, so only the pre-merge-commit hook sees it."""
    alice = team.founder()
    team.run(alice, MODEL_FILER, "install-hooks", "--merge-driver-only")
    team.filer(alice).dump({"v": 1}, "churn", push=True)
    team.commit(alice, "merge driver and churn v1")
    team.git(alice, "checkout", "-q", "-b", "redump", "main")
    team.filer(alice).remove("churn")
    team.filer(alice).dump({"v": 2}, "churn", push=True)
    team.commit(alice, "churn v2")
    team.git(alice, "checkout", "-q", "-b", "alias", "main")
    team.filer(alice).set_alias("production", "churn")
    team.commit(alice, "production is churn v1")
    team.git(alice, "checkout", "-q", "redump")

    merged = team.git(alice, "merge", "--no-edit", "alias", check=False)

    assert merged.returncode != 0, output(merged)
    assert "CONFLICT" not in output(merged)
    assert f"{REGISTRY}: @production names 'churn' as it was" in output(merged)
    assert "model-filer alias --dir models production churn" in output(merged)
    assert git(alice, "rev-parse", "HEAD").stdout == git(alice, "rev-parse", "redump").stdout
    team.filer(alice).set_alias("production", "churn")
    done = team.commit(alice, "merge alias: production is churn v2")
    assert done.returncode == 0, output(done)
    assert git(alice, "rev-list", "--parents", "-n1", "HEAD").stdout.count(" ") == 2  # a merge
    assert team.filer(alice).load("@production") == {"v": 2}


def test_a_clone_through_pre_commits_template_dir_fetches_during_the_clone(team):
    """`pre-commit init-templatedir`: hooks exist before the clone's own checkout."""
    alice = team.founder()
    team.filer(alice).dump({"v": 1}, "churn", push=True)
    team.commit(alice, "churn")
    team.git(alice, "push", "-q")
    template = team.tmp / "git-template"
    team.run(alice, PRE_COMMIT, "init-templatedir", str(template))

    cloned = team.git(team.tmp, "clone", "--template", str(template), str(team.origin), "dave")

    assert "1 model(s) fetched, 0 already present, 0 failed" in output(cloned)
    assert team.filer(team.tmp / "dave").load("churn") == {"v": 1}


def test_a_fresh_clone_fetches_from_both_remotes_of_the_repository(team):
    """``models/`` on S3 and ``artifacts/`` on a shared folder: the clone's own registries
    are each trusted with their own remote, and the hook fetches both during the clone."""
    alice = team.founder()
    share = team.tmp / "share"
    share.mkdir()
    team.filer(alice).dump({"v": 1}, "churn", push=True)
    Filer(alice / "artifacts", str(share), "local", store=ObjectStore(team.store(alice))).dump(
        {"vocab": ["a"]}, "vocab", push=True
    )
    team.commit(alice, "models on S3, artifacts on the share")
    team.git(alice, "push", "-q")
    template = team.tmp / "git-template"
    team.run(alice, PRE_COMMIT, "init-templatedir", str(template))

    cloned = team.git(team.tmp, "clone", "--template", str(template), str(team.origin), "dave")

    assert "2 model(s) fetched, 0 already present, 0 failed" in output(cloned)
    dave = team.tmp / "dave"
    assert model_files(dave / "models") == ["churn.pkl"]
    assert model_files(dave / "artifacts") == ["vocab.pkl"]
    (dave / "artifacts" / "vocab.pkl").unlink()
    pulled = team.run(dave, MODEL_FILER, "pull", "--all")  # from the root, both registries
    assert "Fetched 1 model(s) into artifacts" in pulled.stdout


# -- the local object store ----------------------------------------------------------------
MIB = 1024 * 1024
SWITCHED = "0 model(s) fetched, 1 linked from the local store, 0 already present, 0 failed."


def two_versions(team: Team, s3_client: Any, bucket: str) -> tuple[Path, bytes, bytes, Any]:
    """Branches A and B each hold a version of ``m``; bob visits both (two downloads).

    Returns bob's checkout, the two versions, and a function that deletes both objects
    from S3, after which any download fails.
    """
    alice = team.founder()
    team.empty_registry(alice)
    versions = {"A": os.urandom(MIB), "B": os.urandom(MIB)}
    for branch, data in versions.items():
        team.git(alice, "checkout", "-q", "-b", branch, "main")
        team.filer(alice).dump(data, "m", push=True, overwrite=True)
        team.commit(alice, f"m, version {branch}")
    team.git(alice, "push", "-q", "origin", "A", "B")
    keys = [
        parse(git(alice, "show", f"{branch}:{REGISTRY}").stdout.encode(), branch).entries["m"].key
        for branch in versions
    ]
    prefix = team.address.removeprefix(f"s3://{bucket}/")

    bob = team.clone("bob")
    for branch in ("A", "B"):
        first = team.git(bob, "checkout", branch)
        assert "1 model(s) fetched, 0 already present, 0 failed." in output(first)

    def delete_remote_objects() -> None:
        for key in keys:
            s3_client.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")

    return bob, versions["A"], versions["B"], delete_remote_objects


def test_branch_ping_pong_after_the_first_visit_never_downloads(team, s3_client, s3_env):
    bob, a, b, delete_remote_objects = two_versions(team, s3_client, s3_env.bucket)
    delete_remote_objects()  # a download would now fail

    offline = f"http://127.0.0.1:{closed_port()}"
    for round_ in range(3):
        for branch, data in (("A", a), ("B", b)):
            if round_ == 2:  # the last round with the remote unreachable
                switched = team.git(bob, "checkout", branch, AWS_ENDPOINT_URL=offline)
            else:
                switched = team.git(bob, "checkout", branch)
            assert SWITCHED in output(switched)
            assert data in (bob / "models" / "m.pkl").read_bytes()
            assert team.filer(bob).load("m") == data


def test_worktrees_and_clones_on_this_machine_link_and_share_the_bytes(team, s3_client, s3_env):
    bob, a, b, delete_remote_objects = two_versions(team, s3_client, s3_env.bucket)
    delete_remote_objects()
    team.machines.update({"bob-A": "bob", "bob-B": "bob", "bob2": "bob"})

    added = team.git(bob, "worktree", "add", str(team.tmp / "bob-A"), "A")
    assert SWITCHED in output(added)
    assert team.filer(team.tmp / "bob-A").load("m") == a

    bob2 = team.clone("bob2")
    switched = team.git(bob2, "checkout", "B")
    assert SWITCHED in output(switched)
    assert team.filer(bob2).load("m") == b

    team.git(bob, "worktree", "add", "--detach", str(team.tmp / "bob-B"), "B")
    folders = [bob / "models", team.tmp / "bob-B" / "models", bob2 / "models"]
    inodes = {os.stat(folder / "m.pkl").st_ino for folder in folders}
    assert len(inodes) == 1  # one copy of the bytes for three checkouts
    used = subprocess.run(
        ["du", "-s", "-B1", "--total", *map(str, folders)],
        capture_output=True,
        text=True,
        check=True,
    )
    total = int(used.stdout.splitlines()[-1].split()[0])
    assert MIB <= total < 1.5 * MIB, used.stdout


# -- the README's configuration, as a user pastes it ------------------------------------------
def test_the_readme_config_works_as_pasted_and_autoupdate_pins_it(
    tmp_path: Path, pre_commit_home: Path, hook_repo: tuple[Path, str]
) -> None:
    """Pasted with only its repository URL replaced (the one thing it says to change),
    the README's config installs; the README's ``pre-commit autoupdate`` line then pins
    ``rev:`` to the commit (this snapshot has no tags), and the hooks install from that."""
    path, sha = hook_repo
    readme = (CHECKOUT / "README.md").read_text()
    block = re.search(r"```yaml\n(default_install_hook_types.*?)```", readme, re.S)
    assert block is not None
    url = re.search(r"repo: (\S+)", block.group(1))
    assert url is not None
    user = init_repo(tmp_path / "user")
    config = user / ".pre-commit-config.yaml"
    config.write_text(block.group(1).replace(url.group(1), str(path)))
    env = environ(PRE_COMMIT_HOME=str(pre_commit_home), PRE_COMMIT_COLOR="never")

    def pre_commit(*argv: str) -> str:
        done = subprocess.run(
            [PRE_COMMIT, *argv], cwd=user, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, output(done)
        return output(done)

    pre_commit("install-hooks")  # as pasted
    command = re.search(r"^pre-commit autoupdate [^#\n]*", readme, re.M)
    assert command is not None and url.group(1) in command.group(0)
    words = shlex.split(command.group(0).replace(url.group(1), str(path)))
    pre_commit(*words[1:])
    pinned = yaml.safe_load(config.read_text())["repos"][0]
    assert pinned["rev"] == sha
    assert pinned["repo"] == str(path)
    assert "mutable reference" not in pre_commit("install-hooks")
    pre_commit("install")
    assert (user / ".git" / "hooks" / "post-checkout").is_file()


# -- a repository's first push (issue 18, item 5) ----------------------------------------------
def test_a_first_push_of_a_registry_naming_a_missing_model_is_refused(team, s3_client, s3_env):
    """pre-commit gives no range for a push that includes the root commit: only the ref."""
    alice = init_repo(team.tmp / "alice")
    (alice / ".pre-commit-config.yaml").write_text(team.config)
    team.run(alice, PRE_COMMIT, "install")
    filer = team.filer(alice)
    filer.dump({"v": 1}, "churn", push=True)
    team.commit(alice, "hooks and a model")
    entry = filer.list_files()[0]
    prefix = team.address.removeprefix(f"s3://{s3_env.bucket}/")
    s3_client.delete_object(Bucket=s3_env.bucket, Key=f"{prefix}/{entry.key}")
    git(alice, "remote", "add", "origin", str(team.origin))

    refused = team.git(alice, "push", "-u", "origin", "main", check=False)

    assert refused.returncode != 0, output(refused)
    text = output(refused)
    assert "push refused" in text
    assert f"{REGISTRY} at refs/heads/main: churn: " in text
    assert "churn:" in text and "is missing from the remote" in text
    assert git(team.origin, "branch", "--list", "main").stdout.strip() == ""

    filer.push("churn")  # the file is still here: push repairs the remote
    team.git(alice, "push", "-u", "origin", "main")


# -- the merge driver in a fresh clone (issue 18, item 3) --------------------------------------
def _fresh_clone_with_two_branches(team: Team) -> tuple[Path, str]:
    """bob's clone, made through pre-commit's template folder (the hooks run during the
    clone), with branches left and right that each add a model; and a PATH that has no
    model-filer command."""
    alice = team.founder()
    team.run(alice, MODEL_FILER, "install-hooks", "--merge-driver-only")
    team.filer(alice).dump({"v": 0}, "base", push=True)
    team.commit(alice, "merge driver and a first model")
    team.git(alice, "push", "-q")
    template = team.tmp / "git-template"
    team.run(alice, PRE_COMMIT, "init-templatedir", str(template))
    cloned = team.git(team.tmp, "clone", "--template", str(template), str(team.origin), "bob")
    assert "set up the registry merge driver in this clone" in output(cloned)
    bob = team.tmp / "bob"
    for branch, name in (("left", "model_b"), ("right", "model_c")):
        team.git(bob, "checkout", "-q", "-b", branch, "main")
        team.filer(bob).dump({"v": name}, name, push=True)
        team.commit(bob, f"add {name}")
    team.git(bob, "checkout", "-q", "left")
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "model-filer").exists()
    )
    return bob, path


def test_a_fresh_clone_merges_two_branches_that_each_added_a_model(team):
    """No `model-filer install-hooks` in the clone, no model-filer on PATH: the checkout hook
    that `git clone` runs sets the driver up from the committed .gitattributes."""
    bob, path = _fresh_clone_with_two_branches(team)
    driver = git(bob, "config", "merge.model-filer-registry.driver").stdout
    assert str(team.home) in driver  # the hook environment's Python, found again at merge time

    merged = team.git(bob, "merge", "--no-edit", "right", check=False, PATH=path)

    assert merged.returncode == 0, output(merged)
    assert "CONFLICT" not in output(merged)
    assert [e.name for e in team.filer(bob).list_files()] == ["base", "model_b", "model_c"]


def test_a_clone_whose_driver_is_gone_gets_markers_the_commit_hook_refuses(team):
    """The driver's Python deleted (`pre-commit gc`), none on PATH: markers, never "ours"."""
    bob, path = _fresh_clone_with_two_branches(team)
    driver = git(bob, "config", "merge.model-filer-registry.driver").stdout.strip()
    gone = driver.replace(str(team.home), str(team.tmp / "deleted-pre-commit-home"))
    git(bob, "config", "merge.model-filer-registry.driver", gone)

    merged = team.git(bob, "merge", "--no-edit", "right", check=False, PATH=path)

    assert merged.returncode != 0
    assert f"git checkout -m -- {REGISTRY}" in output(merged)
    assert "<<<<<<< " in (bob / REGISTRY).read_text()
    git(bob, "add", REGISTRY)
    refused = team.git(bob, "commit", "--no-edit", check=False, PATH=path)
    assert refused.returncode != 0
    assert "unresolved merge conflict markers" in output(refused)
    assert f"git checkout -m -- {REGISTRY}" in output(refused)

    team.run(bob, MODEL_FILER, "install-hooks", "--merge-driver-only")  # the recovery
    # (pre-commit's post-checkout hook refuses to run while a path is unmerged, so the
    # command's status is 1; the file is merged again all the same.)
    team.git(bob, "checkout", "-m", "--", REGISTRY, check=False)
    assert "<<<<<<<" not in (bob / REGISTRY).read_text()
    git(bob, "add", REGISTRY)
    team.git(bob, "commit", "--no-edit")
    assert [e.name for e in team.filer(bob).list_files()] == ["base", "model_b", "model_c"]


def test_metrics_after_the_push_and_an_alias_travel_between_two_machines(team):
    """Alice dumps with metrics and pushes; Bob, on another machine, annotates the synced
    model and points production at it through the real hooks (commit, push); Alice pulls and
    loads @production, and both see its history."""
    alice = team.founder()
    team.empty_registry(alice)
    team.filer(alice).dump({"v": 3}, "churn_v3", push=True, metrics={"auc": 0.91})
    team.commit(alice, "churn_v3")
    team.git(alice, "push", "-q")
    bob = team.clone("bob")
    annotated = team.run(bob, MODEL_FILER, "annotate", "churn_v3", "--metric", "auc_test=0.89")
    assert "auc=0.91 auc_test=0.89" in annotated.stdout
    team.run(bob, MODEL_FILER, "alias", "production", "churn_v3")
    git(bob, "add", "-A")
    done = team.git(bob, "commit", "-m", "production is churn_v3", GIT_AUTHOR_NAME="Bo")
    assert "no local-only models in registries....." in output(done), output(done)  # (ran)
    pushed = team.git(bob, "push", "-q", check=False)
    assert pushed.returncode == 0, output(pushed)
    team.git(alice, "pull", "-q")
    assert team.filer(alice).load("@production") == {"v": 3}
    [entry] = [e for e in team.filer(alice).list_files() if e.name == "churn_v3"]
    assert entry.metrics == {"auc": 0.91, "auc_test": 0.89}
    log = team.run(alice, MODEL_FILER, "log", "@production").stdout
    assert re.search(r"Bo\s+@production\s+set\s+-\s+->\s+churn_v3", log), log
