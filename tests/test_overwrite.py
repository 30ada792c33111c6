"""Replacing a synced model as ``ImmutableEntryError`` and the README advise keeps history.

Remote keys hold the content hash, so ``remove(name)`` (the remote object stays) then ``dump``
is a safe overwrite: a fresh clone, on a machine whose local store never saw the old bytes,
still loads the old commit's model. ``remove_remote=True`` is what breaks it, as documented.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model_filer import Filer, ImmutableEntryError, RemoteObjectMissingError
from tests.support.gitrepo import commit, git, init_repo

README = Path(__file__).resolve().parent.parent / "README.md"


def _author(tmp_path: Path) -> tuple[Path, Path, Filer]:
    """Alice's repository (pushed to a bare origin) with 'churn' v1 committed and synced."""
    share = tmp_path / "share"
    share.mkdir()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    alice = init_repo(tmp_path / "alice")
    git(alice, "remote", "add", "origin", str(origin))
    filer = Filer(alice / "models", str(share), remote_type="local")
    filer.dump({"v": 1}, "churn", push=True)
    commit(alice, "churn v1")
    return share, origin, filer


def _fresh_clone(tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bob's clone, on a machine of his own: a new local object store, nothing cached."""
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / "bob-store"))
    git(tmp_path, "clone", "-q", str(origin), "bob")
    return tmp_path / "bob"


def test_following_the_overwrite_advice_keeps_older_commits_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share, origin, filer = _author(tmp_path)
    alice = filer.local_dir.parent

    with pytest.raises(ImmutableEntryError) as info:
        filer.dump({"v": 2}, "churn", push=True)
    message = str(info.value)
    assert message == (
        "'churn' is synced and cannot be overwritten: committed registries may name its bytes. "
        "To replace it, run filer.remove('churn') and dump again: the remote object stays, so "
        "older commits still load their version (`model-filer gc --remote` reclaims the space "
        "later). Or dump under a new name."
    )
    assert "remove_remote=True" not in message
    filer.remove("churn")  # exactly what it says
    filer.dump({"v": 3}, "churn", push=True)
    commit(alice, "churn v3")
    git(alice, "push", "-q", "origin", "main")

    bob = Filer(
        _fresh_clone(tmp_path, origin, monkeypatch) / "models", str(share), remote_type="local"
    )
    assert bob.load("churn", rev="HEAD~1") == {"v": 1}
    assert bob.load("churn") == {"v": 3}


def test_remove_remote_still_deletes_and_costs_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share, origin, filer = _author(tmp_path)
    alice = filer.local_dir.parent
    filer.remove("churn", remove_remote=True)  # the seed's API keeps working
    filer.dump({"v": 3}, "churn", push=True)
    commit(alice, "churn v3")
    git(alice, "push", "-q", "origin", "main")

    bob = Filer(
        _fresh_clone(tmp_path, origin, monkeypatch) / "models", str(share), remote_type="local"
    )
    assert bob.load("churn") == {"v": 3}
    with pytest.raises(RemoteObjectMissingError):
        bob.load("churn", rev="HEAD~1")  # every commit naming the old bytes stops loading
    readme = " ".join(README.read_text().split())
    assert "every commit that names those bytes stops loading" in readme
    assert "`filer.remove(name)` then `filer.dump(model, name)`" in readme
