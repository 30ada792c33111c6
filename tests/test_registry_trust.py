"""Trust belongs to a registry path, not to the clone (issue 18, items 2 and 10).

A team keeps ``models/`` on S3 and ``artifacts/`` on a shared folder. A producer pushes both;
a consumer clones. Pull requests then add registries, swap them or move their remotes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_filer_hooks.check_remote_models import check
from model_filer_hooks.prefetch_models import main as prefetch

from model_filer import Filer
from model_filer.cli import main as cli
from model_filer.errors import GitError, RegistryError, RemoteMismatchError, UntrustedRemoteError
from model_filer.registry.file import Registry, dumps
from tests.support.gitrepo import (
    NULL_SHA,
    commit,
    git,
    head,
    init_repo,
    model_files,
)
from tests.support.machines import another_machine

EVIL = {"pwned": True}  # stands in for a pickle that runs code


@dataclass
class Team:
    producer: Path
    consumer: Path
    s3: str  # models/ lives here
    share: Path  # artifacts/ lives here
    tmp: Path

    def merge_from_producer(self, branch: str) -> int:
        """The consumer pulls ``branch`` (a merged pull request); the post-merge hook runs."""
        git(self.consumer, "fetch", "-q", "origin", branch)
        git(self.consumer, "merge", "-q", "--no-edit", f"origin/{branch}")
        return prefetch(["--hook-stage", "post-merge", "0"])


@pytest.fixture
def team(tmp_path: Path, s3_address: str, monkeypatch: pytest.MonkeyPatch) -> Team:
    share = tmp_path / "share"
    share.mkdir()
    producer = init_repo(tmp_path / "producer")
    Filer(producer / "models", s3_address, "s3").dump({"model": 1}, "churn", push=True)
    Filer(producer / "artifacts", str(share), "local").dump({"vocab": 2}, "vocab", push=True)
    commit(producer, "models on S3, artifacts on the share")
    consumer = tmp_path / "consumer"
    git(tmp_path, "clone", "-q", str(producer), str(consumer))
    another_machine()  # the consumer is a teammate: its store never held these bytes
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(consumer)
    return Team(producer, consumer, s3_address, share, tmp_path)


def _clone_hook(consumer: Path) -> int:
    """The post-checkout hook as ``git clone`` runs it."""
    return prefetch(["--hook-stage", "post-checkout", NULL_SHA, head(consumer), "1"])


def _pull_request(
    team: Team,
    branch: str,
    folder: str,
    evil: str,
    remote_type: str = "local",
    drop: str | None = None,
) -> None:
    """On the producer: a branch adding ``folder``'s registry naming ``evil``, where the
    attacker pushed a pickle (from a machine of theirs: a folder outside any repository)."""
    if remote_type == "local":
        Path(evil).mkdir(exist_ok=True)
    attacker = team.tmp / f"attacker-{branch}"
    Filer(attacker, evil, remote_type).dump(EVIL, "m", push=True)
    git(team.producer, "checkout", "-q", "-b", branch)
    (team.producer / folder).mkdir(exist_ok=True)
    name = f".{remote_type}_registry"
    (team.producer / folder / name).write_bytes((attacker / name).read_bytes())
    if drop is not None:
        git(team.producer, "rm", "-q", drop)
    commit(team.producer, f"add {folder}")
    git(team.producer, "checkout", "-q", "main")


# -- the clone's own registries ---------------------------------------------------------------
def test_a_fresh_clone_fetches_the_models_of_both_remotes(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _clone_hook(team.consumer) == 0

    out = capsys.readouterr().out
    assert "2 model(s) fetched, 0 already present, 0 failed" in out
    assert model_files(team.consumer / "models") == ["churn.pkl"]
    assert model_files(team.consumer / "artifacts") == ["vocab.pkl"]


def test_the_cli_of_a_fresh_clone_pulls_from_both_remotes(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pull", "--dir", "models", "--all"]) == 0
    assert cli(["pull", "--dir", "artifacts", "--all"]) == 0
    assert model_files(team.consumer / "artifacts") == ["vocab.pkl"]


def test_the_author_pushes_to_both_remotes_the_filer_was_given(
    team: Team, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(team.producer)
    Filer(team.producer / "models", team.s3, "s3").dump({"model": 3}, "churn_v2")
    Filer(team.producer / "artifacts", str(team.share), "local").dump({"vocab": 4}, "vocab_v2")

    assert cli(["push", "--dir", "models", "--all"]) == 0
    assert cli(["push", "--dir", "artifacts", "--all"]) == 0

    assert "Pushed 1 model(s)" in capsys.readouterr().out
    states = {e.name: e.state for e in Filer(team.producer / "artifacts").list_files()}
    assert states == {"vocab": "synced", "vocab_v2": "synced"}


# -- registries first seen through a merge -----------------------------------------------------
@pytest.mark.parametrize("remote_type", ["s3", "local"])
def test_a_pull_request_adding_a_registry_that_names_a_new_remote_is_refused_everywhere(
    team: Team, capsys: pytest.CaptureFixture[str], remote_type: str
) -> None:
    assert _clone_hook(team.consumer) == 0
    evil = team.s3 + "-evil" if remote_type == "s3" else str(team.tmp / "evil-share")
    _pull_request(team, "evil", "evil", evil, remote_type)
    registry = f"evil/.{remote_type}_registry"
    capsys.readouterr()

    assert team.merge_from_producer("evil") == 0  # a merge never fails for it

    out = capsys.readouterr().out
    assert f"{registry} names {remote_type} remote {evil}" in out
    assert "Nothing was fetched from it" in out
    assert "model-filer remote trust --dir evil" in out
    assert not (team.consumer / "evil" / "m.pkl").exists()
    # The CLI, the library and the pre-push check ask the same question.
    assert cli(["pull", "--dir", "evil", "--all"]) == 2
    assert "model-filer remote trust --dir evil" in capsys.readouterr().err
    assert cli(["push", "--dir", "evil", "--all"]) == 2
    assert "Nothing was pushed to it" in capsys.readouterr().err
    with pytest.raises(UntrustedRemoteError, match="remote trust --dir"):
        Filer(team.consumer / "evil")
    problems = check([head(team.consumer)])
    assert len(problems) == 1 and registry in problems[0]
    assert "was not asked whether it holds the pushed models" in problems[0]
    assert "`model-filer remote trust --dir evil`" in problems[0]
    assert not (team.consumer / "evil" / "m.pkl").exists()


def test_a_refused_push_says_nothing_was_pushed(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    _pull_request(team, "evil", "evil", str(team.tmp / "evil-share"))
    team.merge_from_producer("evil")
    capsys.readouterr()

    assert cli(["push", "--dir", "evil", "--all"]) == 2

    err = capsys.readouterr().err
    assert "Nothing was pushed to it" in err
    assert "fetched" not in err


def test_a_pull_request_swapping_the_s3_registry_for_a_local_one_fetches_nothing(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _clone_hook(team.consumer) == 0
    evil = str(team.tmp / "evil-share")
    _pull_request(team, "swap", "models", evil, drop="models/.s3_registry")
    (team.consumer / "models" / "churn.pkl").unlink()
    capsys.readouterr()

    assert team.merge_from_producer("swap") == 0

    out = capsys.readouterr().out
    assert "models/.local_registry names local remote" in out
    assert not (team.consumer / "models" / "m.pkl").exists()
    assert cli(["pull", "--dir", "models", "--all"]) == 2
    with pytest.raises(UntrustedRemoteError):
        Filer(team.consumer / "models")


def test_trusting_a_new_registry_lets_the_cli_fetch_it(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = str(team.tmp / "their-share")
    _pull_request(team, "theirs", "theirs", evil)
    team.merge_from_producer("theirs")

    assert cli(["remote", "trust", "--dir", "theirs"]) == 0
    assert cli(["pull", "--dir", "theirs", "--all"]) == 0

    assert model_files(team.consumer / "theirs") == ["m.pkl"]


def test_a_new_registry_naming_a_trusted_remote_is_fetched(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _clone_hook(team.consumer) == 0
    git(team.producer, "checkout", "-q", "-b", "more")
    Filer(team.producer / "more", str(team.share), "local").dump({"more": 1}, "more", push=True)
    commit(team.producer, "more artifacts on the same share")
    git(team.producer, "checkout", "-q", "main")
    another_machine()
    capsys.readouterr()

    assert team.merge_from_producer("more") == 0

    assert "1 model(s) fetched, 0 already present, 0 failed" in capsys.readouterr().out
    assert model_files(team.consumer / "more") == ["more.pkl"]
    assert Filer("more").load("more") == {"more": 1}


def test_a_merge_moving_a_known_registry_to_another_trusted_remote_stays_refused(
    team: Team, s3_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``models/`` trusts its bucket prefix: another prefix this clone trusts for another
    registry is still not models/' remote."""
    other = s3_address + "-other"
    Filer(team.producer / "extra", other, "s3").dump({"x": 1}, "x", push=True)
    commit(team.producer, "extra on another prefix")
    git(team.consumer, "pull", "-q", "--no-rebase")  # extra/ arrives: not the clone's own
    assert cli(["remote", "trust", "--dir", "extra"]) == 0
    git(team.producer, "checkout", "-q", "-b", "move")
    text = (team.producer / "models" / ".s3_registry").read_text()
    (team.producer / "models" / ".s3_registry").write_text(text.replace(team.s3, other))
    commit(team.producer, "models move to the other prefix")
    git(team.producer, "checkout", "-q", "main")
    capsys.readouterr()

    assert team.merge_from_producer("move") == 0

    out = capsys.readouterr().out
    assert f"models/.s3_registry now names s3 remote {other}" in out
    assert "model-filer remote trust --dir models" in out
    assert cli(["pull", "--dir", "models", "--all"]) == 2


# -- the library: an explicit address is the user's word ----------------------------------------
def test_a_filer_given_an_address_pushes_without_asking_and_vouches_for_the_registry(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = str(team.tmp / "their-share")
    _pull_request(team, "theirs", "theirs", evil)
    team.merge_from_producer("theirs")
    assert cli(["pull", "--dir", "theirs", "--all"]) == 2

    Filer(team.consumer / "theirs", evil, "local").dump({"mine": 1}, "mine", push=True)

    assert cli(["pull", "--dir", "theirs", "--all"]) == 0
    assert cli(["push", "--dir", "theirs", "--all"]) == 0


def test_a_filer_without_an_address_uses_the_registrys_remote(team: Team) -> None:
    assert _clone_hook(team.consumer) == 0
    (team.consumer / "artifacts" / "vocab.pkl").unlink()

    filer = Filer("artifacts")

    assert filer.remote_type == "local" and filer.remote.address == str(team.share)
    assert filer.load("vocab") == {"vocab": 2}
    assert Filer("models").remote_type == "s3"
    assert Filer("models", remote_type="s3").load("churn") == {"model": 1}


def test_a_filer_without_an_address_refuses_a_folder_without_one_registry(
    team: Team, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match=r"No registry in .*empty.*Pass the address"):
        Filer(tmp_path / "empty")
    (team.consumer / "models" / ".local_registry").write_bytes(
        dumps(Registry("local", str(team.share)))
    )
    with pytest.raises(RegistryError, match=r"holds 2 registries .*Pass remote_type="):
        Filer(team.consumer / "models")
    with pytest.raises(RemoteMismatchError, match=r"is a local registry, but remote_type='s3'"):
        Filer(team.consumer / "artifacts", remote_type="s3")


def test_the_seed_signature_keeps_working(team: Team, tmp_path: Path) -> None:
    assert Filer(tmp_path / "new", "s3://bucket/x").remote_type == "s3"  # the default type
    assert Filer(tmp_path / "new", "s3://bucket/x", None).remote_type == "s3"
    filer = Filer(str(team.consumer / "models"), team.s3, remote_type="s3")
    assert filer.load("churn") == {"model": 1}
    assert Filer(str(team.consumer / "artifacts"), str(team.share), "local").load("vocab") == {
        "vocab": 2
    }


# -- recording trust never fails the work it follows -------------------------------------------
def test_first_dumps_from_many_processes_of_a_fresh_clone_all_succeed_and_vouch(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process's first write records trust in the clone's git config at once; git
    refuses a config write while another holds its lock, which must not fail a dump."""
    from tests.test_concurrency import run_together

    repo = init_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    folders = [f"models{i}" for i in range(8)]

    def dump(folder: str) -> str:
        Filer(folder, str(remote), "local").dump({"f": folder}, "m")
        return folder

    assert sorted(run_together([lambda f=f: dump(f) for f in folders])) == folders

    for folder in folders:
        assert Filer(folder).remote.address == str(remote)  # every registry was vouched for


def test_a_cli_command_writing_an_untrusted_registry_does_not_make_it_trusted(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only an address the user typed vouches: ``rm`` writes the registry with the address
    the registry itself records."""
    _pull_request(team, "evil", "evil", str(team.tmp / "evil-share"))
    team.merge_from_producer("evil")

    assert cli(["rm", "--dir", "evil", "m"]) == 0  # the registry is written

    assert cli(["pull", "--dir", "evil", "--all"]) == 2
    assert "model-filer remote trust --dir evil" in capsys.readouterr().err


def test_a_filer_without_an_address_uses_this_machines_path_of_the_share(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    mounted = team.tmp / "Volumes" / "share"
    mounted.parent.mkdir()
    team.share.rename(mounted)  # this machine mounts the team's share elsewhere
    assert cli(["remote", "set", "--dir", "artifacts", str(mounted)]) == 0

    filer = Filer("artifacts")

    assert filer.remote.address == str(mounted)
    assert filer.load("vocab") == {"vocab": 2}


def test_registries_merged_before_model_filer_first_runs_are_not_the_clones_own(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    """The clone's own registries are those of the commit ``git clone`` checked out (its
    reflog), not whatever HEAD holds when model_filer first looks."""
    _pull_request(team, "evil", "evil", str(team.tmp / "evil-share"))
    git(team.consumer, "pull", "-q", "--no-rebase", "origin", "evil")  # no hooks installed

    assert cli(["pull", "--all"]) == 2  # the first model_filer command in this clone

    err = capsys.readouterr().err
    assert "evil/.local_registry names local remote" in err
    assert model_files(team.consumer / "models") == ["churn.pkl"]
    assert model_files(team.consumer / "artifacts") == ["vocab.pkl"]
    assert model_files(team.consumer / "evil") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the clone to another user")
def test_a_clone_git_refuses_to_read_is_refused_not_treated_as_outside_git(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clone owned by another user (CI containers, a shared checkout): git refuses it as
    'dubious ownership'. The trust rule must stop there, never use whatever address a
    registry names as if there were no clone to protect."""
    _pull_request(team, "evil", "evil", str(team.tmp / "evil-share"))
    team.merge_from_producer("evil")
    capsys.readouterr()
    checked_out = head(team.consumer)
    for path in [team.consumer, *team.consumer.rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)

    with pytest.raises(GitError, match=r"safe\.directory") as refused:
        Filer(team.consumer / "evil")
    assert "dubious ownership" in str(refused.value)
    assert cli(["pull", "--dir", "evil", "--all"]) == 2
    assert "safe.directory" in capsys.readouterr().err
    clone_hook = ["--hook-stage", "post-checkout", NULL_SHA, checked_out, "1"]
    assert prefetch(clone_hook) == 0  # the checkout is never failed for it
    assert "safe.directory" in capsys.readouterr().out
    assert not (team.consumer / "evil" / "m.pkl").exists()


def test_a_broken_git_folder_is_refused_not_treated_as_outside_git(team: Team) -> None:
    """git cannot read the repository at all (a damaged .git): a trust decision fails."""
    _pull_request(team, "evil", "evil", str(team.tmp / "evil-share"))
    team.merge_from_producer("evil")
    (team.consumer / ".git" / "HEAD").write_text("garbage\n")

    with pytest.raises(GitError) as refused:
        Filer(team.consumer / "evil")
    assert f"{team.consumer / '.git'} is there, but git cannot use it" in str(refused.value)
    assert not (team.consumer / "evil" / "m.pkl").exists()
