"""A team's first day, across features: one team walks every path in order.

Alice, Bob and Carol share a bare ``origin``, ``models/`` on the session's S3 store and
``artifacts/`` on a local-folder share; each has an object store of their own (another
machine), the hooks come from the real pre-commit framework, and clones are made through
pre-commit's template folder, so the hooks run during ``git clone``. Each phase below is
what a new team does next; each checks what the user sees (the hooks' output, the CLI's)
and what lands on disk. One team serves the whole day, so the file stays quick.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer, ImmutableEntryError
from model_filer.local.store import ObjectStore
from tests.support.faultproxy import StuckServer
from tests.support.gitrepo import git, head, init_repo, model_files
from tests.support.machines import another_machine
from tests.support.precommit_team import MODEL_FILER, PRE_COMMIT, REGISTRY, Team, output

pytestmark = pytest.mark.skipif(
    not Path(PRE_COMMIT).exists(), reason="pre-commit is not installed in this environment"
)

ARTIFACTS = "artifacts/.local_registry"
PUSH_CHECK = "pushed registries point at existing remote objects"


class Day:
    """The team of the day, its share, and the pre-commit template folder clones use."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.share = team.tmp / "share"
        self.share.mkdir()
        self.template = team.tmp / "git-template"

    def filer(self, repo: Path, folder: str) -> Filer:
        """The filer a user makes with the address typed out (the author's side)."""
        if folder == "artifacts":
            store = ObjectStore(self.team.store(repo))
            return Filer(repo / folder, str(self.share), "local", store=store)
        return self.team.filer(repo, folder)

    def reader(self, repo: Path, folder: str) -> Filer:
        """The filer a teammate makes with no address: read from the registry."""
        return Filer(repo / folder, store=ObjectStore(self.team.store(repo)))

    def clone(self, name: str, **env: str | None) -> tuple[Path, str]:
        """``git clone --template``: the hooks run during the clone. Returns (repo, output)."""
        repo = self.team.tmp / name
        store = str(self.team.store(repo))  # the new machine's, during the clone too
        argv = ["clone", "--template", str(self.template), str(self.team.origin), name]
        cloned = self.team.git(self.team.tmp, *argv, MODEL_FILER_CACHE_DIR=store, **env)
        return repo, output(cloned)


def passed(done: Any, hook: str) -> bool:
    """Whether pre-commit ran ``hook`` and it passed (not skipped for want of files)."""
    return any(
        line.startswith(hook) and line.endswith("Passed") for line in output(done).splitlines()
    )


def sklearn_model() -> Any:
    linear_model = pytest.importorskip("sklearn.linear_model")
    return linear_model.LinearRegression().fit([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.0, 5.0, 7.0])


def state_dict() -> dict[str, Any] | None:
    """A small network's weights, or None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2).state_dict()


# -- 1. alice starts the repository -------------------------------------------------------------
def alice_starts(day: Day, model: Any, weights: dict[str, Any] | None) -> Path:
    team = day.team
    alice = init_repo(team.tmp / "alice")
    (alice / ".pre-commit-config.yaml").write_text(team.config)
    team.run(alice, PRE_COMMIT, "install")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no configuration: nothing to warn about
        day.filer(alice, "models").dump(model, "churn", push=True)
        if weights is not None:
            day.filer(alice, "models").dump(weights, "weights", push=True)
        day.filer(alice, "artifacts").dump({"vocab": ["a", "b"]}, "vocab")  # left local

    refused = team.commit(alice, "models on S3, artifacts on the share", check=False)
    assert refused.returncode == 1
    assert f"{ARTIFACTS}: vocab is local" in output(refused)
    assert "model-filer push --dir artifacts --all" in output(refused)

    pushed = team.run(alice, MODEL_FILER, "push", "--dir", "artifacts", "--all")
    assert "Pushed 1 model(s)" in pushed.stdout
    team.commit(alice, "models on S3, artifacts on the share")
    git(alice, "remote", "add", "origin", str(team.origin))

    # The first push is checked, both registries: the share's object gone, it is refused.
    vocab = day.share / day.filer(alice, "artifacts").list_files()[0].key
    vocab.rename(vocab.with_name("moved-away"))
    refused = team.git(alice, "push", "-u", "origin", "main", check=False)
    assert refused.returncode != 0
    assert f"{ARTIFACTS} at refs/heads/main: vocab: " in output(refused), output(refused)
    assert "churn" not in output(refused).split("push refused")[1]  # S3's are there
    vocab.with_name("moved-away").rename(vocab)
    first = team.git(alice, "push", "-u", "origin", "main")
    assert passed(first, PUSH_CHECK)

    installed = team.run(alice, MODEL_FILER, "install-hooks", "--merge-driver-only")
    assert "merge driver" in installed.stdout
    team.commit(alice, "the registry merge driver")
    team.git(alice, "push", "-q")
    team.run(alice, PRE_COMMIT, "init-templatedir", str(day.template))
    return alice


# -- 2. bob clones ------------------------------------------------------------------------------
def bob_clones(day: Day, model: Any, weights: dict[str, Any] | None) -> Path:
    bob, text = day.clone("bob")
    assert "2 model(s) fetched" in text or "3 model(s) fetched" in text, text
    assert "0 failed" in text, text
    assert "set up the registry merge driver in this clone" in text
    assert model_files(bob / "artifacts") == ["vocab.pkl"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = day.reader(bob, "models").load("churn")
        assert loaded.predict([[10.0]]).tolist() == model.predict([[10.0]]).tolist()
        if weights is not None:
            import torch

            got = day.reader(bob, "models").load("weights")
            assert got.keys() == weights.keys()
            assert all(torch.equal(got[k], weights[k]) for k in weights)
        assert day.reader(bob, "artifacts").load("vocab") == {"vocab": ["a", "b"]}
    return bob


# -- 3. both add models on branches; bob merges ------------------------------------------------
def both_add_and_bob_merges(day: Day, alice: Path, bob: Path) -> None:
    team = day.team
    team.git(alice, "checkout", "-q", "-b", "prices")
    day.filer(alice, "models").dump({"p": 1}, "prices", push=True)
    day.filer(alice, "artifacts").dump({"stop": ["the"]}, "stopwords", push=True)
    team.commit(alice, "prices and stopwords")
    team.git(alice, "checkout", "-q", "main")
    team.git(alice, "merge", "-q", "--no-edit", "prices")
    team.git(alice, "push", "-q")

    team.git(bob, "checkout", "-q", "-b", "tokens")
    day.filer(bob, "artifacts").dump({"t": [1, 2]}, "tokens", push=True)
    day.filer(bob, "models").dump({"r": 2}, "retention", push=True)
    team.commit(bob, "tokens and retention")
    team.git(bob, "checkout", "-q", "main")
    pulled = team.git(bob, "pull", "-q")
    assert "2 model(s) fetched" in output(pulled), output(pulled)

    merged = team.git(bob, "merge", "--no-edit", "tokens", check=False)
    assert merged.returncode == 0, output(merged)
    assert "CONFLICT" not in output(merged)
    assert set(names(day, bob, "models")) >= {"churn", "prices", "retention"}
    assert names(day, bob, "artifacts") == ["stopwords", "tokens", "vocab"]
    assert git(bob, "status", "--porcelain").stdout == ""

    pushed = team.git(bob, "push")
    assert passed(pushed, PUSH_CHECK)

    # alice has a commit of her own meanwhile: her pull rebases it, the driver merges.
    day.filer(alice, "models").dump({"s": 3}, "segments", push=True)
    team.commit(alice, "segments")
    got = team.git(alice, "pull", "--rebase", check=False)
    assert got.returncode == 0, output(got)
    assert "CONFLICT" not in output(got)
    assert "2 model(s) fetched" in output(got), output(got)
    assert "segments" in names(day, alice, "models")
    team.git(alice, "push", "-q")
    team.git(bob, "pull", "-q")
    assert "tokens.pkl" in model_files(alice / "artifacts")
    assert "retention.pkl" in model_files(alice / "models")


def names(day: Day, repo: Path, folder: str) -> list[str]:
    return [e.name for e in day.reader(repo, folder).list_files()]


# -- 4. alice re-trains a synced model ---------------------------------------------------------
def alice_retrains(day: Day, alice: Path, bob: Path) -> None:
    team = day.team
    filer = day.filer(alice, "models")
    with pytest.raises(ImmutableEntryError) as refused:
        filer.dump({"p": 2}, "prices", push=True)
    assert "filer.remove('prices')" in str(refused.value)
    filer.remove("prices")  # the advice: the remote object stays
    filer.dump({"p": 2}, "prices", push=True)
    team.commit(alice, "prices re-trained")
    team.git(alice, "push", "-q")

    pulled = team.git(bob, "pull", "-q")
    assert "1 model(s) fetched" in output(pulled), output(pulled)
    reader = day.reader(bob, "models")
    assert reader.load("prices") == {"p": 2}
    assert reader.load("prices", rev="HEAD~1") == {"p": 1}

    log = team.run(bob, MODEL_FILER, "log", "--dir", "models", "prices")
    assert "replaced" in log.stdout, log.stdout
    diff = team.run(bob, MODEL_FILER, "diff", "HEAD~1", "HEAD")
    assert "prices" in diff.stdout, diff.stdout


# -- 5. a registry naming a new share ----------------------------------------------------------
def alice_adds_a_new_share(day: Day, alice: Path, bob: Path) -> None:
    team = day.team
    other = team.tmp / "other-share"
    other.mkdir()
    store = ObjectStore(team.store(alice))
    Filer(alice / "extra", str(other), "local", store=store).dump({"x": 1}, "lexicon", push=True)
    team.commit(alice, "extra/ on another share")
    team.git(alice, "push", "-q")

    pulled = team.git(bob, "pull")
    assert pulled.returncode == 0
    assert head(bob) == head(alice)
    assert "model-filer remote trust --dir extra" in output(pulled), output(pulled)
    assert model_files(bob / "extra") == []
    status = team.run(bob, MODEL_FILER, "status")  # says which remote waits for trust
    shown = status.stdout.split("extra/.local_registry", 1)[1].splitlines()[0]
    assert "not trusted in this clone: `model-filer remote trust --dir extra`" in shown
    assert "trust" not in status.stdout.split("extra/.local_registry", 1)[0]

    # Meanwhile bob pushes his own model from the root: the share he has not trusted yet,
    # with nothing to push, is no reason to fail (nor to be told to commit it).
    day.filer(bob, "models").dump({"c": 1}, "campaign")
    pushed = team.run(bob, MODEL_FILER, "push", "--all")
    assert pushed.stdout == f"Pushed 1 model(s). Commit {REGISTRY}.\n", output(pushed)

    team.run(bob, MODEL_FILER, "remote", "trust", "--dir", "extra")
    fetched = team.run(bob, MODEL_FILER, "pull", "--all")
    assert "Fetched 1 model(s) into extra" in fetched.stdout, fetched.stdout
    assert model_files(bob / "extra") == ["lexicon.pkl"]
    team.commit(bob, "campaign")
    assert passed(team.git(bob, "push"), PUSH_CHECK)


# -- 6. carol clones while S3 is stuck ----------------------------------------------------------
def carol_clones_while_s3_is_stuck(day: Day) -> None:
    with StuckServer() as stuck:
        carol, text = day.clone("carol", AWS_ENDPOINT_URL=stuck.url)
    assert head(carol) == head(day.team.origin, "main"), text
    assert model_files(carol / "artifacts") == ["stopwords.pkl", "tokens.pkl", "vocab.pkl"]
    assert model_files(carol / "extra") == ["lexicon.pkl"], text  # a second share, same type
    assert model_files(carol / "models") == []
    assert "model-filer pull --dir models --all" in text, text
    assert day.reader(carol, "models").load("prices") == {"p": 2}  # the store is back
    day.team.run(carol, MODEL_FILER, "pull", "--dir", "models", "--all")  # the advice
    wanted = [f"{name}.pkl" for name in names(day, carol, "models")]
    assert model_files(carol / "models") == wanted


# -- 7. a filer without an address, and the CLI from the root ---------------------------------
def bob_reads_from_anywhere(day: Day, bob: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    team = day.team
    monkeypatch.chdir(bob)
    filer = Filer("models", store=ObjectStore(team.store(bob)))
    monkeypatch.chdir(team.tmp)
    assert filer.load("retention") == {"r": 2}
    assert filer.registry_path == bob / REGISTRY

    (bob / "models" / "prices.pkl").unlink()
    status = team.run(bob, MODEL_FILER, "status")
    assert "models" in status.stdout and "artifacts" in status.stdout and "extra" in status.stdout
    pulled = team.run(bob, MODEL_FILER, "pull", "--all")
    assert "into models; 1 linked from the local store" in pulled.stdout, pulled.stdout
    verified = team.run(bob, MODEL_FILER, "verify")
    for folder in ("artifacts", "extra", "models"):  # which registry each line is about
        assert f"{folder}: all present model files match the registry." in verified.stdout


def test_a_team_day(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    day = Day(team)
    model = sklearn_model()
    weights = state_dict()
    alice = alice_starts(day, model, weights)
    bob = bob_clones(day, model, weights)
    both_add_and_bob_merges(day, alice, bob)
    alice_retrains(day, alice, bob)
    alice_adds_a_new_share(day, alice, bob)
    carol_clones_while_s3_is_stuck(day)
    bob_reads_from_anywhere(day, bob, monkeypatch)


def test_a_clone_by_template_fetches_two_registries_of_one_type_on_two_shares(tmp_path):
    """git clone exports GIT_DIR to its checkout hook (and no GIT_WORK_TREE), so a git call
    from a model folder took that folder for the repository: trust was recorded for
    ``.local_registry``, and the second share's registry was refused as a changed remote."""
    author = init_repo(tmp_path / "author")
    for folder in ("artifacts", "extra"):
        share = tmp_path / f"{folder}-share"
        share.mkdir()
        Filer(author / folder, str(share), "local").dump({"in": folder}, folder, push=True)
    git(author, "add", "-A")
    git(author, "commit", "-qm", "two folders, two shares")
    template = tmp_path / "git-template"
    done = subprocess.run(
        [MODEL_FILER, "install-hooks", "--template-dir", str(template)],
        cwd=author,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    another_machine()  # the teammate downloads

    cloned = git(tmp_path, "clone", f"--template={template}", str(author), "teammate")

    text = cloned.stdout + cloned.stderr
    assert "2 model(s) fetched" in text and "0 failed" in text, text
    assert model_files(tmp_path / "teammate" / "extra") == ["extra.pkl"]
    recorded = git(tmp_path / "teammate", "config", "--get-regexp", "^model-filer-registry\\.")
    assert sorted(line.split()[0] for line in recorded.stdout.splitlines()) == [
        "model-filer-registry.artifacts/.local_registry.remote",
        "model-filer-registry.extra/.local_registry.remote",
    ]


def test_hooks_under_a_relative_git_dir_find_the_repository(tmp_path):
    """``git --git-dir=.git checkout`` (or ``GIT_DIR=.git git ...``) exports a *relative*
    GIT_DIR to the hooks: a git call from a model folder then looked for ``models/.git``."""
    author = init_repo(tmp_path / "author")
    git(author, "commit", "-q", "--allow-empty", "-m", "before the models")
    share = tmp_path / "share"
    share.mkdir()
    Filer(author / "models", str(share), "local").dump({"v": 1}, "churn", push=True)
    git(author, "add", "-A")
    git(author, "commit", "-qm", "a model")
    git(tmp_path, "clone", "-q", str(author), "teammate")
    teammate = tmp_path / "teammate"
    another_machine()
    done = subprocess.run(
        [MODEL_FILER, "install-hooks"], cwd=teammate, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (teammate / "models" / "churn.pkl").unlink(missing_ok=True)
    git(teammate, "checkout", "-q", "HEAD~1")  # no registry there

    switched = git(teammate, "--git-dir=.git", "checkout", "main")

    text = switched.stdout + switched.stderr
    assert "not a git repository" not in text, text
    assert model_files(teammate / "models") == ["churn.pkl"], text
