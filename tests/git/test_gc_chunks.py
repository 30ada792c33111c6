"""``gc --remote`` on the chunked layout (issue 21): maps and packs (and the manifests and
chunks of format 1), renewal, shared prefixes.

Real git repositories and a real folder remote whose objects are aged with ``os.utime`` (a
store's clock cannot be set back; tests/remotes/test_contract.py runs the same rules on
every remote type by moving gc's clock forward instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.cli import main
from model_filer.errors import ModelFilerError, SharedPrefixError
from model_filer.git import gc
from model_filer.registry.names import storage_key
from model_filer.storage.manifest import Chunk, encode_manifest
from tests.support.chunking import small_chunks
from tests.support.gitrepo import commit, git, registry_bytes, sample_entry

OLD = time.time() - 30 * 86400  # past the default grace period of 14 days


class Remote:
    """A folder remote the test writes the chunked layout into by hand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def put(self, key: str, data: bytes, age: float | None = OLD) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if age is not None:
            os.utime(path, (age, age))
        return key

    def chunk(self, data: bytes) -> str:
        return self.put(storage_key("chunks", _sha(data)), b"\x00" + data)

    def model(self, *chunks: bytes, age: float | None = OLD) -> tuple[str, str, int]:
        """A big model made of ``chunks``: its manifest key, sha256 and size."""
        whole = b"".join(chunks)
        rows = [[_sha(c), len(c)] for c in chunks]
        for c in chunks:
            self.chunk(c)
        sha = _sha(whole)
        doc = {"chunks": rows, "format": 1, "sha256": sha, "size": len(whole)}
        key = self.put(storage_key("manifests", sha), json.dumps(doc).encode(), age)
        return key, sha, len(whole)

    def pack(self, *chunks: bytes) -> dict[bytes, Chunk]:
        """A pack of ``chunks`` (stored raw); where each chunk is in it."""
        body, places = b"", {}
        for c in chunks:
            places[c] = (len(body), len(c) + 1)
            body += b"\x00" + c
        name = _sha(body)
        self.put(storage_key("packs", name), body)
        return {c: Chunk(_sha(c), len(c), name, *places[c], len(body)) for c in chunks}

    def mapped(
        self, *chunks: bytes, places: dict[bytes, Chunk], age: float | None = OLD
    ) -> tuple[str, str, int]:
        """A big model made of ``chunks``, placed as ``places`` says: its map's key, sha256 and
        size."""
        whole = b"".join(chunks)
        sha = _sha(whole)
        listed = [places[c] for c in chunks]
        key = self.put(storage_key("maps", sha), encode_manifest(sha, len(whole), listed), age)
        return key, sha, len(whole)

    def stored(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit_registry(repo: Path, address: str, *models: tuple[str, str, str, int]) -> Filer:
    """Commit a registry naming ``models`` (name, key, sha256, size) on ``address``."""
    entries = [sample_entry(n, key=k, sha256=s, size=z) for n, k, s, z in models]
    (repo / "models").mkdir(exist_ok=True)
    (repo / "models" / ".local_registry").write_bytes(registry_bytes("local", address, *entries))
    commit(repo, "models")
    return Filer(repo / "models", address, remote_type="local")


def _second_repo(path: Path) -> Path:
    """A repository of its own: another root commit than :func:`init_repo`'s."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("another team's models\n")
    commit(path, "their first")
    return path


A, B, C, D = (bytes([n]) * (1000 + n) for n in range(4))


def test_chunks_live_while_a_manifest_that_stays_names_them(repo: Path, tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote")
    named, sha, size = remote.model(A, B)
    remote.model(B, C, age=None)  # unnamed but young: another clone's fresh push
    dropped, _, _ = remote.model(C, D)  # unnamed and old
    whole = remote.put(storage_key("objects", "e" * 64), b"\x00old small model")
    kept_whole = remote.put(storage_key("objects", "f" * 64), b"\x00named small model")
    filer = _commit_registry(
        repo, str(remote.root), ("big", named, sha, size), ("small", kept_whole, "f" * 64, 17)
    )

    found = gc.plan(filer)

    chunk_d = storage_key("chunks", _sha(D))
    assert {o.key for o in found.candidates} == {dropped, whole, chunk_d}
    assert found.candidates[-1].key == chunk_d  # manifests and models go before chunks
    assert (found.kept_named, found.kept_young) == (5, 1)  # named, kept_whole, A, B, C | young
    before = remote.stored()
    assert sorted(gc.collect(filer, found.candidates)) == sorted([dropped, whole, chunk_d])
    assert remote.stored() == before - {dropped, whole, chunk_d}


def test_packs_live_while_a_map_that_stays_names_any_chunk_in_them(
    repo: Path, tmp_path: Path
) -> None:
    remote = Remote(tmp_path / "remote")
    first, second, third = remote.pack(A, B), remote.pack(C), remote.pack(D)
    places = {**first, **second, **third}
    named, sha, size = remote.mapped(A, C, places=places)  # B's pack kept whole for A
    remote.mapped(C, places=places, age=None)  # unnamed but young: another clone's fresh push
    dropped, _, _ = remote.mapped(D, B, places=places)  # unnamed and old
    filer = _commit_registry(repo, str(remote.root), ("big", named, sha, size))

    found = gc.plan(filer)

    only_d = storage_key("packs", third[D].pack or "")
    assert {o.key for o in found.candidates} == {dropped, only_d}
    assert found.candidates[-1].key == only_d  # maps before packs
    assert (found.kept_named, found.kept_young) == (3, 1)  # named, A+B, C | young map
    before = remote.stored()
    assert sorted(gc.collect(filer, found.candidates)) == sorted([dropped, only_d])
    assert remote.stored() == before - {dropped, only_d}


def test_an_unreadable_map_stops_gc_before_any_delete(repo: Path, tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote")
    places = remote.pack(A)
    key, sha, size = remote.mapped(A, places=places)
    remote.put(key, encode_manifest(sha, size + 1, list(places.values())))  # sizes disagree
    filer = _commit_registry(repo, str(remote.root), ("big", key, sha, size))
    before = remote.stored()

    with pytest.raises(ModelFilerError, match=r"not a readable manifest.*deletes none"):
        gc.plan(filer)
    assert remote.stored() == before


def test_an_unreadable_manifest_stops_gc_before_any_delete(repo: Path, tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote")
    sha = "c" * 64
    broken = remote.put(storage_key("manifests", sha), b'{"chunks": "nope"}')
    remote.chunk(A)
    filer = _commit_registry(repo, str(remote.root), ("big", broken, sha, 10))
    before = remote.stored()

    with pytest.raises(ModelFilerError, match=r"not a readable manifest.*deletes none"):
        gc.plan(filer)
    assert remote.stored() == before


def test_an_object_renewed_after_the_plan_is_kept(repo: Path, tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote")
    dropped, _, _ = remote.model(C, D)
    filer = _commit_registry(repo, str(remote.root))
    found = gc.plan(filer)
    chunk_c = storage_key("chunks", _sha(C))
    assert chunk_c in {o.key for o in found.candidates}

    filer.remote.touch(chunk_c)  # a push reused it between the plan and the delete

    deleted = gc.collect(filer, found.candidates)
    assert chunk_c not in deleted and dropped in deleted
    assert chunk_c in remote.stored()


def test_a_push_marks_its_repository_once_and_renews_the_mark_daily(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = Remote(tmp_path / "remote")
    filer = _commit_registry(repo, str(remote.root))
    root = git(repo, "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    marker = remote.root / storage_key("repos", root)

    gc.mark_repository(filer)

    assert json.loads(marker.read_text()) == {"format": 1, "roots": [root]}
    os.utime(marker, (OLD, OLD))
    gc.mark_repository(filer)  # this process marked it already: nothing asked
    assert marker.stat().st_mtime == OLD
    monkeypatch.setattr(gc, "_MARKED", set())  # another process: a push days later
    gc.mark_repository(filer)
    assert marker.stat().st_mtime > OLD  # renewed: its age says when the repository last pushed
    outside = Filer(tmp_path / "not-git", str(remote.root), remote_type="local")
    gc.mark_repository(outside)  # outside git: no repository to name, nothing written
    assert [p.name for p in (remote.root / ".model_filer" / "repos").iterdir()] == [root]


def test_two_repositories_on_one_prefix(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = Remote(tmp_path / "remote")
    theirs, sha, size = remote.model(A, B)
    ours = _commit_registry(repo, str(remote.root))  # names nothing
    other = _second_repo(tmp_path / "other")
    theirs_filer = _commit_registry(other, str(remote.root), ("big", theirs, sha, size))
    theirs_filer.dump({"w": 1}, "fresh", push=True)  # a real push: it leaves their marker
    gc.mark_repository(ours)
    mine = gc.plan(ours)
    chunks = {storage_key("chunks", _sha(c)) for c in (A, B)}
    assert {o.key for o in mine.candidates} == {theirs, *chunks}
    assert mine.shared and len(mine.foreign) == 1

    with pytest.raises(SharedPrefixError, match="--shared-prefix-ok"):
        gc.collect(ours, mine.candidates)
    os.chdir(repo)
    assert main(["gc", "--remote", "--dir", "models", "--delete"]) == 2
    err = capsys.readouterr().err
    assert "1 other repository push to" in err and "--shared-prefix-ok" in err
    assert "Traceback" not in err
    assert theirs in remote.stored()  # nothing deleted

    # The other repository's own gc sees only its own marker: it may collect.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(other), str(clone))
    assert not gc.plan(Filer(clone / "models", str(remote.root), remote_type="local")).shared

    # The user who knows the other repository is gone says so.
    assert main(["gc", "--remote", "--dir", "models", "--delete", "--shared-prefix-ok"]) == 0
    assert "Deleted 3." in capsys.readouterr().out
    assert theirs not in remote.stored()


def test_a_marker_written_after_the_plan_still_stops_the_delete(repo: Path, tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote")
    remote.model(A, B)
    ours = _commit_registry(repo, str(remote.root))
    found = gc.plan(ours)
    assert found.candidates and not found.foreign
    other = _second_repo(tmp_path / "other")

    gc.mark_repository(_commit_registry(other, str(remote.root)))  # joins meanwhile

    with pytest.raises(SharedPrefixError):
        gc.collect(ours, found.candidates)


def test_gc_never_deletes_a_marker(repo: Path, tmp_path: Path) -> None:
    from model_filer.remotes import RemoteObject

    remote = Remote(tmp_path / "remote")
    filer = _commit_registry(repo, str(remote.root))
    gc.mark_repository(filer)
    (marker,) = remote.stored()
    assert gc.plan(filer, now=datetime.now(UTC) + timedelta(days=400)).candidates == []
    with pytest.raises(ModelFilerError, match="not written by model_filer"):
        gc.collect(filer, [RemoteObject(marker, 1, datetime.now(UTC))])


def _age_everything(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))


@pytest.mark.parametrize("reuse", ["shared chunks", "the same model"])
def test_a_push_that_reuses_chunks_between_plan_and_delete_stays_loadable(
    repo: Path, tmp_path: Path, reuse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_chunks(monkeypatch)  # a few MiB in several packs
    remote = tmp_path / "remote"
    remote.mkdir()
    filer = Filer(repo / "models", str(remote), remote_type="local")
    first = os.urandom(3 * 1024 * 1024)
    filer.dump(first, "v1", push=True)
    filer.remove("v1")  # no registry names it any more: all of it is garbage...
    commit(repo, "v1 dropped")
    _age_everything(remote)  # ...and past the grace period
    found = gc.plan(filer)
    assert len(found.candidates) > 3  # its map and its packs

    # Another clone pushes, between gc's plan and its delete, a model reusing those chunks.
    second = first if reuse == "the same model" else first[: 2 * 1024 * 1024] + os.urandom(3000)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    pusher = Filer(other / "models", str(remote), remote_type="local")
    pusher.dump(second, "v2", push=True)

    deleted = gc.collect(filer, found.candidates)

    assert deleted or reuse == "the same model"  # what v2 does not reuse is collected
    (entry,) = pusher.list_files()
    assert entry.state == "synced"
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / ".local_registry").write_bytes(pusher.registry_path.read_bytes())
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / "consumer-store"))
    assert Filer(consumer, str(remote), remote_type="local").load("v2") == second


def test_a_rewritten_root_commit_leaves_a_marker_that_is_still_ours(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = Remote(tmp_path / "remote")
    remote.model(A, B)
    filer = _commit_registry(repo, str(remote.root))
    gc.mark_repository(filer)
    git(repo, "checkout", "-q", "--orphan", "fresh")  # history rewritten from its root
    commit(repo, "a new first commit")
    git(repo, "branch", "-q", "-D", "main")
    monkeypatch.setattr(gc, "_MARKED", set())  # a later push, in another process
    gc.mark_repository(filer)

    found = gc.plan(filer)

    assert len(list((remote.root / ".model_filer" / "repos").iterdir())) == 2
    assert found.foreign == [] and not found.shared
