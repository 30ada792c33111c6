"""Remote identity and trust (issue 12, part 1): a checkout cannot redirect where models come
from, and each machine may reach the same share at its own path.

A producer pushes a model to the team's folder; a consumer clones. An attacker's branch
rewrites the registry to point at a folder of theirs holding a pickle whose sha256 it records.
"""

from __future__ import annotations

import pickle
import shutil
import threading
from pathlib import Path

import pytest
from model_filer_hooks.prefetch_models import main as prefetch

from model_filer import Filer
from model_filer.cli import main as cli
from model_filer.errors import RemoteMismatchError, RemoteObjectMissingError, UntrustedRemoteError
from model_filer.fs.hashing import sha256_file
from model_filer.git.approvals import read_clone
from model_filer.git.gitops import locate
from model_filer.hookapi import approved_filer
from model_filer.registry.file import dumps, read
from model_filer.registry.names import object_key
from model_filer.remotes.local import ID_FILE, LocalRemote
from tests.support.gitrepo import commit, git, head, init_repo
from tests.support.machines import another_machine

EVIL = {"pwned": True}  # stands in for a pickle that runs code


def _attack(producer: Path, team: Path, evil: Path, copy_id: bool, move_only: bool) -> str:
    """On branch ``evil``: the registry points at ``evil`` (a folder of the attacker's)."""
    git(producer, "checkout", "-q", "-b", "evil")
    evil.mkdir()
    folder = producer / "models"
    reg = read(folder / ".local_registry")
    assert reg is not None
    if copy_id:  # an ID is no secret: copy it, to pass as the team's remote
        shutil.copy(team / ID_FILE, evil / ID_FILE)
        reg.remote_id = (team / ID_FILE).read_text().strip()
    else:
        reg.remote_id = None
    reg.remote_address = str(evil)
    if not move_only:
        bad = evil / "bad.pkl"
        bad.write_bytes(pickle.dumps(EVIL, protocol=5))
        sha = sha256_file(bad)
        key = object_key("m", sha)
        (evil / key).parent.mkdir(parents=True)
        bad.rename(evil / key)
        reg.entries["m"] = reg.entries["m"]._replace(
            sha256=sha, size=(evil / key).stat().st_size, key=key
        )
    (folder / ".local_registry").write_bytes(dumps(reg))
    sha = commit(producer, "point the models elsewhere")
    git(producer, "checkout", "-q", "main")
    return sha


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    team = tmp_path / "team"
    team.mkdir()
    producer = init_repo(tmp_path / "producer")
    Filer(producer / "models", str(team), "local").dump({"good": 1}, "m", push=True)
    commit(producer, "add m")
    consumer = tmp_path / "consumer"
    git(tmp_path, "clone", "-q", str(producer), str(consumer))
    another_machine()  # the consumer is a teammate: its store never held the producer's bytes
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(consumer)
    return team, producer, consumer


def _checkout(consumer: Path, rev: str, old: str | None = None) -> int:
    before = old if old is not None else head(consumer)
    git(consumer, "checkout", "-q", rev)
    return prefetch(["--hook-stage", "post-checkout", before, head(consumer), "1"])


# -- identity ---------------------------------------------------------------------------------
def test_the_first_push_writes_the_folder_id_and_the_registry_records_it(world) -> None:
    team, producer, _ = world
    ident = (team / ID_FILE).read_text().strip()
    reg = read(producer / "models" / ".local_registry")
    assert reg is not None and reg.remote_id == ident and len(ident) == 32
    assert f"id: {ident}" in (producer / "models" / ".local_registry").read_text()


def test_concurrent_first_pushes_agree_on_one_id(tmp_path: Path) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def first_push() -> None:
        barrier.wait()
        ids.append(LocalRemote(str(folder)).ensure_identity())

    threads = [threading.Thread(target=first_push) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 8
    assert sorted(p.name for p in folder.iterdir()) == [ID_FILE]  # no temp file left


def test_load_refuses_a_registry_of_another_local_folder(world, tmp_path: Path) -> None:
    team, producer, _ = world
    _attack(producer, team, tmp_path / "evil", copy_id=False, move_only=False)
    git(producer, "checkout", "-q", "evil")
    with pytest.raises(RemoteMismatchError, match="another folder"):
        Filer(producer / "models", str(team), "local").load("m")


def test_the_same_share_at_another_path_is_the_same_remote(world, tmp_path: Path) -> None:
    team, producer, _ = world
    elsewhere = tmp_path / "Volumes" / "models"
    elsewhere.parent.mkdir()
    shutil.copytree(team, elsewhere)  # the share, as another machine mounts it
    (producer / "models" / "m.pkl").unlink()
    assert Filer(producer / "models", str(elsewhere), "local").load("m") == {"good": 1}


# -- hooks and CLI fetch only from trusted remotes ---------------------------------------------
@pytest.mark.parametrize("copy_id", [False, True], ids=["other-id", "copied-id"])
def test_a_checkout_that_redirects_the_remote_fetches_nothing(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str], copy_id: bool
) -> None:
    team, producer, consumer = world
    assert prefetch(["--hook-stage", "post-checkout", "0" * 40, head(consumer), "1"]) == 0
    assert (consumer / "models" / "m.pkl").exists()  # the first remote met is trusted
    capsys.readouterr()
    evil = _attack(producer, team, tmp_path / "evil", copy_id=copy_id, move_only=False)
    git(consumer, "fetch", "-q", "origin", "evil")

    assert _checkout(consumer, evil) == 0  # a checkout never fails for it

    out = capsys.readouterr().out
    assert "model-filer remote trust --dir models" in out
    assert str(tmp_path / "evil") in out
    assert "Nothing was fetched" in out or "nothing was fetched" in out
    # The file of the old entry stays; the attacker's bytes never arrived.
    assert pickle.loads((consumer / "models" / "m.pkl").read_bytes()) == {"good": 1}
    assert cli(["pull", "--dir", "models", "--all"]) == 2
    assert "model-filer remote trust --dir models" in capsys.readouterr().err
    with pytest.raises(UntrustedRemoteError, match="remote trust --dir models"):
        approved_filer(consumer / "models" / ".local_registry", "models")
    # The library refuses the other folder's registry outright; with a copied ID it fetches
    # from the folder it was given, the team's, which has no such object.
    with pytest.raises(RemoteObjectMissingError if copy_id else RemoteMismatchError):
        Filer(consumer / "models", str(team), "local").load("m")


def test_pull_refuses_an_untrusted_remote_with_a_model_filer_error(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team, producer, consumer = world
    assert cli(["pull", "--dir", "models", "--all"]) == 0  # trusted on first use
    evil = _attack(producer, team, tmp_path / "evil", copy_id=True, move_only=True)
    git(consumer, "fetch", "-q", "origin", "evil")
    git(consumer, "checkout", "-q", evil)
    (consumer / "models" / "m.pkl").unlink()
    capsys.readouterr()

    assert cli(["pull", "--dir", "models", "--all"]) == 2

    err = capsys.readouterr().err
    assert "moved local remote" in err and "model-filer remote trust --dir models" in err
    assert not (consumer / "models" / "m.pkl").exists()


def test_trusting_the_change_lets_the_hook_fetch(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team, producer, consumer = world
    assert cli(["pull", "--dir", "models", "--all"]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(team, moved)  # the team really moved its share
    git(producer, "checkout", "-q", "-b", "moved")
    reg = read(producer / "models" / ".local_registry")
    assert reg is not None
    reg.remote_address = str(moved)
    (producer / "models" / ".local_registry").write_bytes(dumps(reg))
    sha = commit(producer, "move the share")
    git(consumer, "fetch", "-q", "origin", "moved")
    (consumer / "models" / "m.pkl").unlink()
    assert _checkout(consumer, sha) == 0
    assert not (consumer / "models" / "m.pkl").exists()

    assert cli(["remote", "trust", "--dir", "models"]) == 0
    assert cli(["pull", "--dir", "models", "--all"]) == 0

    assert (consumer / "models" / "m.pkl").exists()
    clone = read_clone(locate(consumer))
    assert clone is not None and [t.address for t in clone.remotes.values()] == [str(moved)]
    assert "model-filer" not in git(consumer, "status", "--porcelain").stdout


# -- per-machine address ----------------------------------------------------------------------
def test_remote_set_records_this_machines_path_for_hooks_cli_and_status(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team, _, consumer = world
    bobs = tmp_path / "Volumes" / "models"
    bobs.parent.mkdir()
    team.rename(bobs)  # on Bob's machine the share is mounted elsewhere
    assert cli(["pull", "--dir", "models", "--all"]) == 2
    capsys.readouterr()

    assert cli(["remote", "set", "--dir", "models", str(bobs)]) == 0
    assert cli(["pull", "--dir", "models", "--all"]) == 0
    assert (consumer / "models" / "m.pkl").exists()
    (consumer / "models" / "m.pkl").unlink()
    assert prefetch(["--hook-stage", "post-checkout", "0" * 40, head(consumer), "1"]) == 0
    assert (consumer / "models" / "m.pkl").exists()
    capsys.readouterr()
    assert cli(["status"]) == 0
    assert f"(this machine: {bobs})" in capsys.readouterr().out
    assert git(consumer, "status", "--porcelain").stdout == ""  # nothing to commit


def test_remote_set_refuses_another_folder(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    LocalRemote(str(other)).ensure_identity()
    assert cli(["remote", "set", "--dir", "models", str(other)]) == 2
    assert "another folder" in capsys.readouterr().err
    assert cli(["remote", "set", "--dir", "models", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_remote_set_on_an_s3_registry_says_only_a_folder_can_differ(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.gitrepo import registry_bytes, sample_entry

    (repo / "models").mkdir()
    (repo / "models" / ".s3_registry").write_bytes(
        registry_bytes("s3", "s3://bucket/models", sample_entry("m"))
    )
    assert cli(["remote", "set", "--dir", "models", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "only a local-folder remote can have a per-machine address" in err
    assert "Traceback" not in err


def test_a_merge_keeps_the_remote_id_one_side_recorded(tmp_path: Path) -> None:
    from model_filer.errors import RegistryError
    from model_filer.registry.file import Registry
    from model_filer.registry.merge import merge

    ident = "ab" * 16
    base = Registry("local", "/mnt/models")
    with_id = Registry("local", "/mnt/models", remote_id=ident)
    assert merge(base, base.copy(), with_id).registry.remote_id == ident
    assert merge(base, with_id, base.copy()).registry.remote_id == ident
    with pytest.raises(RegistryError, match="different remote IDs"):
        merge(base, with_id, Registry("local", "/mnt/models", remote_id="cd" * 16))


def test_the_pre_push_check_uses_this_machines_path(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_filer_hooks.check_remote_models import check

    team, _, consumer = world
    bobs = tmp_path / "Volumes" / "models"
    bobs.parent.mkdir()
    team.rename(bobs)
    assert check([head(consumer)]) != []  # the recorded path does not exist here
    assert cli(["remote", "set", "--dir", "models", str(bobs)]) == 0
    assert check([head(consumer)]) == []
