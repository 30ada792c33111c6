"""The pre-push hook ``check-remote-models``: ``main([...])`` on temporary git repositories."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from model_filer_hooks.check_remote_models import main, pushed_revisions

from model_filer import Filer
from tests.support.gitrepo import (
    NULL_SHA,
    closed_port,
    commit,
    git,
    head,
    init_repo,
    model_filer,
    registry_bytes,
    sample_entry,
)

REGISTRY = "models/.local_registry"


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_REMOTE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return monkeypatch


@pytest.fixture
def repo(tmp_path: Path, hook_env: pytest.MonkeyPatch) -> Path:
    path = init_repo(tmp_path / "repo")
    hook_env.chdir(path)
    return path


@pytest.fixture
def filer(repo: Path, remote: Path) -> Filer:
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices", push=True)
    commit(repo, "two models")
    return filer


def pre_commit_push(mp: pytest.MonkeyPatch, sha: str) -> None:
    """What pre-commit sets for a pre-push hook."""
    mp.setenv("PRE_COMMIT_FROM_REF", NULL_SHA)
    mp.setenv("PRE_COMMIT_TO_REF", sha)
    mp.setenv("PRE_COMMIT_REMOTE_NAME", "origin")


def git_push_stdin(mp: pytest.MonkeyPatch, *lines: str) -> None:
    """What git writes to a plain pre-push hook's stdin."""
    mp.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))


def object_of(filer: Filer, name: str) -> Path:
    entry = {e.name: e for e in filer.list_files()}[name]
    assert entry.key is not None
    return Path(filer.remote.address) / entry.key


def test_all_objects_present(repo, filer, hook_env, capsys):
    pre_commit_push(hook_env, head(repo))
    assert main(["origin", "/srv/git/repo.git"]) == 0
    assert capsys.readouterr().out == ""


def test_a_deleted_object_is_refused_and_listed(repo, filer, hook_env, capsys):
    object_of(filer, "prices").unlink()
    pre_commit_push(hook_env, head(repo))

    assert main(["origin", "/srv/git/repo.git"]) == 1

    out = capsys.readouterr().out
    assert "push refused" in out
    assert f"{REGISTRY} at {head(repo)[:10]}: prices:" in out
    assert "is missing from the remote" in out
    assert "churn" not in out
    assert "model-filer push --dir models prices " in out  # real folder and name
    assert "model-filer rm --dir models prices," in out


def test_a_size_mismatch_is_refused(repo, remote, hook_env, capsys):
    # In the plain layout an object holds the pickle as it is: its size is the registry's.
    filer = Filer(repo / "models", str(remote), remote_type="local", storage="plain")
    filer.dump({"w": 1}, "churn", push=True)
    commit(repo, "a plain model")
    obj = object_of(filer, "churn")
    size = obj.stat().st_size
    obj.write_bytes(b"truncated")
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1

    out = capsys.readouterr().out
    assert f"churn: {obj} has" in out
    assert f"has 9 bytes, the registry says {size}" in out


def test_local_entries_are_not_the_push_hooks_business(repo, remote, hook_env):
    model_filer(repo / "models", remote).dump({"w": 1}, "draft")
    pre_commit_push(hook_env, commit(repo, "a local entry, committed with --no-verify"))
    assert main([]) == 0


def test_only_committed_content_counts(repo, filer, remote, hook_env):
    pushed = head(repo)
    # The working tree names a model that was never uploaded: not what is pushed.
    (repo / REGISTRY).write_bytes(
        registry_bytes("local", str(remote), sample_entry("ghost", size=123))
    )
    pre_commit_push(hook_env, pushed)
    assert main([]) == 0

    # The pushed commit names one; the working tree is fixed but not committed.
    git(repo, "checkout", "-q", "--", REGISTRY)
    object_of(filer, "churn").unlink()
    filer.remove("churn")
    assert not any(e.name == "churn" for e in filer.list_files())
    assert main([]) == 1


def test_an_older_missing_object_no_longer_named_is_fine(repo, filer, hook_env):
    object_of(filer, "churn").unlink()
    filer.remove("churn")
    pre_commit_push(hook_env, commit(repo, "drop churn"))
    assert main([]) == 0


def test_every_registry_of_the_pushed_commit_is_checked(repo, filer, remote, hook_env, capsys):
    other = model_filer(repo / "deep" / "er", remote)
    other.dump([1, 2], "nested", push=True)
    pre_commit_push(hook_env, commit(repo, "nested model"))
    object_of(other, "nested").unlink()

    assert main([]) == 1
    assert "deep/er/.local_registry at" in capsys.readouterr().out


def test_an_unparsable_committed_registry_is_refused(repo, filer, hook_env, capsys):
    (repo / REGISTRY).write_text("<<<<<<< HEAD\n=======\n>>>>>>> other\n")
    pre_commit_push(hook_env, commit(repo, "broken"))

    assert main([]) == 1
    assert "merge conflict markers" in capsys.readouterr().out


def test_git_stdin_lines_as_a_plain_hook(repo, filer, hook_env, capsys):
    good = head(repo)
    object_of(filer, "churn").unlink()
    filer.remove("churn")
    fixed = commit(repo, "drop churn")

    git_push_stdin(hook_env, f"refs/heads/main {fixed} refs/heads/main {good}")
    assert main(["origin", "/srv/git/repo.git"]) == 0

    git_push_stdin(
        hook_env,
        f"refs/heads/main {fixed} refs/heads/main {good}",
        f"refs/heads/old {good} refs/heads/old {NULL_SHA}",
    )
    assert main(["origin", "/srv/git/repo.git"]) == 1
    assert "churn" in capsys.readouterr().out


def test_a_deleted_ref_pushes_nothing(repo, filer, hook_env):
    object_of(filer, "churn").unlink()
    git_push_stdin(hook_env, f"(delete) {NULL_SHA} refs/heads/old {head(repo)}")
    assert main([]) == 0


def test_pushed_revisions_prefers_pre_commits_variable(hook_env):
    lines = [f"refs/heads/a {'1' * 40} refs/heads/a {NULL_SHA}"]
    assert pushed_revisions(lines) == ["1" * 40]
    hook_env.setenv("PRE_COMMIT_TO_REF", "2" * 40)
    assert pushed_revisions(lines) == ["2" * 40]


def test_a_missing_remote_folder_is_refused(repo, filer, remote, hook_env, capsys):
    remote.rename(remote.with_name("unmounted"))
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1
    assert "cannot check" in capsys.readouterr().out


# -- S3 ------------------------------------------------------------------------------------
@pytest.fixture
def s3_filer(repo: Path, s3_address: str) -> Filer:
    filer = model_filer(repo / "models", s3_address, "s3")
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices", push=True)
    commit(repo, "two models")
    return filer


@pytest.fixture
def s3_plain(repo: Path, s3_address: str) -> Filer:
    filer = Filer(repo / "models", s3_address, remote_type="s3", storage="plain")
    filer.dump({"w": 1}, "churn", push=True)
    commit(repo, "a plain model")
    return filer


def s3_key(filer: Filer, name: str) -> str:
    entry = {e.name: e for e in filer.list_files()}[name]
    return f"{filer.remote.prefix}/{entry.key}"  # type: ignore[attr-defined]


def test_s3_all_present_then_one_deleted(repo, s3_filer, s3_client, s3_env, hook_env, capsys):
    pre_commit_push(hook_env, head(repo))
    assert main([]) == 0

    s3_client.delete_object(Bucket=s3_env.bucket, Key=s3_key(s3_filer, "prices"))

    assert main([]) == 1
    out = capsys.readouterr().out
    assert "prices:" in out
    assert "is missing from the remote" in out
    assert "churn" not in out


def test_s3_a_size_mismatch_is_refused(repo, s3_plain, s3_client, s3_env, hook_env, capsys):
    s3_client.put_object(Bucket=s3_env.bucket, Key=s3_key(s3_plain, "churn"), Body=b"x")
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1
    assert "has 1 bytes, the registry says" in capsys.readouterr().out


def test_s3_an_unreachable_store_refuses_the_push(repo, s3_filer, hook_env, capsys):
    hook_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1
    assert "Cannot reach the S3 store" in capsys.readouterr().out


# -- one LIST per prefix instead of one HEAD per object ------------------------------------
def test_list_prefixes_cover_every_key_with_few_listings():
    from model_filer_hooks.check_remote_models import list_prefixes

    few = [f"m{i}/{'ab' * 32}.pkl" for i in range(3)]
    assert list_prefixes(few) == ["m0/", "m1/", "m2/"]  # only those models' versions
    many = [f"m{i:05d}/{'ab' * 32}.pkl" for i in range(10_000)] + ["z/x.pkl", "flat.pkl"]
    prefixes = list_prefixes(many)
    assert all(any(k.startswith(p) for p in prefixes) for k in many)
    assert len(prefixes) <= 20  # ~one page each, not one request per key
    assert all(sum(k.startswith(p) for k in many) <= 1000 for p in prefixes)


def grouped(hook_env: pytest.MonkeyPatch) -> None:
    """Make a handful of models take the grouped-listing path meant for thousands."""
    from model_filer_hooks import check_remote_models

    hook_env.setattr(check_remote_models, "FEW", 0)
    hook_env.setattr(check_remote_models, "PAGE", 2)


def dump_five(filer: Filer) -> None:
    for i in range(5):
        filer.dump({"w": i, "pad": b"x" * 1000}, f"m{i}", push=True)


def wrong_size(filer: Filer, short: bool = False) -> tuple[bytes, str]:
    """Bytes m3's object may not have in the Filer's layout, and what the hook then says
    (``short``: a stored object of one byte, its header alone, which a push also replaces)."""
    if filer.transfers.storage == "plain":
        return b"xyz", "has 3 bytes, the registry says"
    bad = b"\x00" if short else b"x" * 5000
    return bad, f"has {len(bad)} bytes, not what a stored object of the registry's"


@pytest.mark.parametrize("storage", ["plain", "chunked", "chunked-short"])
@pytest.mark.parametrize("grouping", [False, True], ids=["per-model", "grouped"])
def test_listing_finds_a_missing_object_and_a_wrong_size_local(
    repo, remote, hook_env, capsys, grouping, storage
):
    layout = storage.removesuffix("-short")
    filer = Filer(repo / "models", str(remote), remote_type="local", storage=layout)
    dump_five(filer)
    bad, said = wrong_size(filer, short=storage.endswith("-short"))
    pre_commit_push(hook_env, commit(repo, "five models"))
    if grouping:
        grouped(hook_env)
    assert main([]) == 0
    object_of(filer, "m1").unlink()
    object_of(filer, "m3").write_bytes(bad)
    (object_of(filer, "m4").parent / "left-by-a-push.upload.tmp").write_bytes(b"partial")

    assert main([]) == 1
    out = capsys.readouterr().out
    assert "m1: " in out and "is missing from the remote" in out
    assert "m3: " in out and said in out
    assert "m0:" not in out and "m2:" not in out and "m4:" not in out


@pytest.mark.parametrize("storage", ["plain", "chunked"])
@pytest.mark.parametrize("grouping", [False, True], ids=["per-model", "grouped"])
def test_listing_finds_a_missing_object_and_a_wrong_size_s3(
    repo, s3_address, s3_client, s3_env, hook_env, capsys, grouping, storage
):
    filer = Filer(repo / "models", s3_address, remote_type="s3", storage=storage)
    dump_five(filer)
    bad, said = wrong_size(filer)
    pre_commit_push(hook_env, commit(repo, "five models"))
    if grouping:
        grouped(hook_env)
    assert main([]) == 0
    s3_client.delete_object(Bucket=s3_env.bucket, Key=s3_key(filer, "m1"))
    s3_client.put_object(Bucket=s3_env.bucket, Key=s3_key(filer, "m3"), Body=bad)

    assert main([]) == 1
    out = capsys.readouterr().out
    assert "m1: " in out and "is missing from the remote" in out
    assert "m3: " in out and said in out
    assert "m0:" not in out and "m2:" not in out and "m4:" not in out


def test_list_sizes_on_both_remote_types(remote, s3_address, s3_client, s3_env):
    local, s3 = model_filer(remote / "unused", remote).remote, Filer("unused", s3_address).remote
    (remote / "ab" / "x").mkdir(parents=True)
    (remote / "ab" / "x" / "1.pkl").write_bytes(b"12")
    (remote / "abc").mkdir()
    (remote / "abc" / "2.pkl").write_bytes(b"123")
    (remote / "b").mkdir()
    (remote / "b" / "3.pkl").write_bytes(b"1")
    for key, body in [("ab/x/1.pkl", b"12"), ("abc/2.pkl", b"123"), ("b/3.pkl", b"1")]:
        s3_client.put_object(Bucket=s3_env.bucket, Key=f"{s3.prefix}/{key}", Body=body)  # type: ignore[attr-defined]
    for r in (local, s3):
        assert r.list_sizes("ab") == {"ab/x/1.pkl": 2, "abc/2.pkl": 3}
        assert r.list_sizes("ab/") == {"ab/x/1.pkl": 2}
        assert r.list_sizes("") == {"ab/x/1.pkl": 2, "abc/2.pkl": 3, "b/3.pkl": 1}
        assert r.list_sizes("nothing/") == {}


def test_list_sizes_of_a_missing_store_says_so(tmp_path, s3_env):
    from model_filer.errors import BucketNotFoundError

    with pytest.raises(BucketNotFoundError, match="does not exist"):
        model_filer(tmp_path / "m", tmp_path / "unmounted").remote.list_sizes("")
    with pytest.raises(BucketNotFoundError, match="Create it"):
        Filer(tmp_path / "m", "s3://no-such-bucket-mf13/p").remote.list_sizes("a")


def test_pre_commits_first_push_names_only_the_local_ref(hook_env):
    """A push that includes the root commit: pre-commit sets no TO_REF, only the ref."""
    hook_env.setenv("PRE_COMMIT", "1")
    hook_env.setenv("PRE_COMMIT_LOCAL_BRANCH", "refs/heads/main")
    assert pushed_revisions(None) == ["refs/heads/main"]
    hook_env.delenv("PRE_COMMIT_LOCAL_BRANCH")
    assert pushed_revisions(None) == ["HEAD"]  # pre-commit named none


def test_a_first_push_under_pre_commit_checks_the_registries_at_the_ref(
    repo, filer, hook_env, capsys
):
    object_of(filer, "churn").unlink()
    hook_env.setenv("PRE_COMMIT", "1")
    hook_env.setenv("PRE_COMMIT_LOCAL_BRANCH", "refs/heads/main")

    assert main(["origin", "/srv/git/repo.git"]) == 1

    out = capsys.readouterr().out
    assert f"{REGISTRY} at refs/heads/main: churn: " in out
    assert "prices" not in out


# -- the chunked layout: a map and every pack it names (or a manifest and its chunks) --------
@pytest.fixture
def big(repo: Path, remote: Path, monkeypatch: pytest.MonkeyPatch) -> Filer:
    import os

    from tests.support.chunking import small_chunks

    small_chunks(monkeypatch)  # a few MiB in several packs
    filer = model_filer(repo / "models", remote)
    filer.dump(os.urandom(3 * 1024 * 1024), "big", push=True)
    filer.dump({"w": 1}, "small", push=True)
    commit(repo, "a big model")
    return filer


def packs_of(filer: Filer) -> list[Path]:
    import json

    doc = json.loads(object_of(filer, "big").read_bytes())
    root = Path(filer.remote.address) / ".model_filer" / "packs"
    return [root / name for name, _ in doc["packs"]]


def test_a_big_model_is_checked_pack_by_pack(repo, big, hook_env, capsys):
    pre_commit_push(hook_env, head(repo))
    assert main([]) == 0
    packs = packs_of(big)
    assert len(packs) > 2 and all(p.is_file() for p in packs)

    packs[1].unlink()  # gone (a gc of another repository sharing the prefix?)

    assert main([]) == 1
    out = capsys.readouterr().out
    said = f"big: {object_of(big, 'big')}: 1 of the {len(packs)} packs or chunks it names are "
    assert said + "missing from the remote or of another length" in out
    assert str(packs[1]) in out and "small" not in out
    assert "model-filer push --dir models big" in out


def test_a_pack_cut_short_is_refused(repo, big, hook_env, capsys):
    last = packs_of(big)[-1]
    last.write_bytes(last.read_bytes()[:-1])  # one byte short of the last chunk's end
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1
    out = capsys.readouterr().out
    assert "1 of the" in out and "of another length" in out and str(last) in out


def test_a_manifest_of_format_1_is_checked_chunk_by_chunk(repo, remote, hook_env, capsys):
    import hashlib
    import json
    import os

    from model_filer.remotes.local import LocalRemote
    from tests.support.chunking import push_format1, small_chunks
    from tests.support.gitrepo import registry_bytes, sample_entry

    with pytest.MonkeyPatch.context() as mp:
        small_chunks(mp)
        data = os.urandom(1024 * 1024)
        key = push_format1(LocalRemote(str(remote)), data)
    sha = hashlib.sha256(data).hexdigest()
    (repo / "models").mkdir(exist_ok=True)
    entry = sample_entry("old", key=key, sha256=sha, size=len(data))
    (repo / REGISTRY).write_bytes(registry_bytes("local", str(remote), entry))
    commit(repo, "a model pushed by an earlier release")
    pre_commit_push(hook_env, head(repo))
    assert main([]) == 0

    rows = json.loads((remote / key).read_bytes())["chunks"]
    (remote / ".model_filer" / "chunks" / rows[2][0]).unlink()

    assert main([]) == 1
    out = capsys.readouterr().out
    assert f"1 of the {len({r[0] for r in rows})} packs or chunks it names are missing" in out


def test_a_manifest_that_is_not_the_models_is_refused(repo, big, hook_env, capsys):
    object_of(big, "big").write_bytes(b'{"chunks":[],"format":2}')
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 1
    out = capsys.readouterr().out
    assert "big: " in out and "is not a valid manifest" in out and "small" not in out


def test_chunks_are_listed_not_asked_one_by_one(repo, big, hook_env, monkeypatch):
    from model_filer.remotes.local import LocalRemote

    asked: list[str] = []
    listed: list[str] = []
    monkeypatch.setattr(LocalRemote, "stat", lambda self, key: asked.append(key))
    real = LocalRemote.list_sizes
    monkeypatch.setattr(
        LocalRemote, "list_sizes", lambda self, prefix: listed.append(prefix) or real(self, prefix)
    )
    pre_commit_push(hook_env, head(repo))

    assert main([]) == 0
    assert asked == []  # no HEAD per pack (nor per model)
    assert len(listed) <= 2 + len({p.name[:2] for p in packs_of(big)})


def test_many_chunks_are_one_listing_of_the_chunk_folder_not_of_the_whole_remote():
    from model_filer_hooks.check_remote_models import list_prefixes

    chunks = [f".model_filer/chunks/{n:064x}" for n in range(0, 2**256, 2**248 - 12345)][:300]
    assert list_prefixes(chunks[:3]) == sorted({c[:22] for c in chunks[:3]})  # their folders
    assert list_prefixes(chunks) == [".model_filer/chunks/"]  # many: that kind only
