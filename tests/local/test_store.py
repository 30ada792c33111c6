"""The local object store: objects verified on entry, read-only, shared by every checkout.

Downloads are counted at the remote: a local-folder remote whose objects are deleted after
the first visit (any later download would fail), or the fault proxy counting S3 GETs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_filer import BatchError, Filer, ModelFilerError
from model_filer.cli import main as cli_main
from model_filer.errors import StoreError, StoreWarning
from model_filer.fs.locks import FolderLock, ObjectLocks
from model_filer.local.freshness import HASHED_UP_TO
from model_filer.local.store import ObjectStore, default_root
from tests.support.faultproxy import FaultProxy
from tests.support.gitrepo import closed_port, commit, git, init_repo

MIB = 1024 * 1024


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def objects_of(store: ObjectStore) -> dict[str, os.stat_result]:
    return dict(store.objects())


def assert_every_object_hashes_to_its_name(store: ObjectStore) -> None:
    for sha, _ in store.objects():
        assert sha_of(store.object_path(sha)) == sha


def empty(remote: Path) -> None:
    """Delete every object of a local-folder remote: a download would now fail."""
    for path in remote.rglob("*.pkl"):
        path.unlink()


@pytest.fixture
def store(object_store: Path) -> ObjectStore:
    return ObjectStore(object_store)


@pytest.fixture
def filer(tmp_path: Path, remote: Path, store: ObjectStore) -> Filer:
    return Filer(tmp_path / "models", str(remote), "local", store=store)


def clone_of(filer: Filer, folder: Path, store: ObjectStore | None = None) -> Filer:
    """Another checkout of the same registry (same machine unless ``store`` is given)."""
    folder.mkdir(parents=True)
    shutil.copyfile(filer.registry_path, folder / filer.registry_path.name)
    return Filer(folder, filer.remote.address, filer.remote_type, store=store or filer.store)


# -- where the store lives -------------------------------------------------------------------
def test_the_store_lives_in_the_users_cache_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv("MODEL_FILER_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_root() == tmp_path / "home" / ".cache" / "model_filer"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "model_filer"
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / "mine"))
    assert default_root() == tmp_path / "mine"
    assert Filer(tmp_path / "models", str(tmp_path), "local").store.root == tmp_path / "mine"


# -- dump ----------------------------------------------------------------------------------------
def test_dump_writes_the_bytes_once_into_the_store_and_links_them(filer, store):
    filer.dump(os.urandom(MIB), "m")

    [(sha, st)] = objects_of(store).items()
    model = filer.model_path("m")
    assert sha == filer.list_files()[0].sha256 == sha_of(model)
    assert os.stat(model).st_ino == st.st_ino  # one inode: no second copy of the bytes
    assert st.st_nlink == 2
    assert stat.S_IMODE(st.st_mode) == 0o444  # read-only: an in-place write is refused
    assert list((store.root / "tmp").iterdir()) == []
    assert list((filer.local_dir / ".model_filer" / "tmp").iterdir()) == []


def test_an_in_place_write_to_a_model_file_is_refused_for_a_user(filer, tmp_path):
    """Tests run as root, which ignores modes: a child process drops to ``nobody``."""
    filer.dump(b"weights", "m")
    model = filer.model_path("m")
    assert stat.S_IMODE(os.stat(model).st_mode) == 0o444
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            open(model, "r+b")  # noqa: SIM115
        return
    folder = os.open(filer.local_dir, os.O_RDONLY)  # inherited: no need to reach tmp_path
    try:
        # A Python that ``nobody`` may run (the test's own may live in /root).
        child = subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", WRITE_AS_NOBODY, str(folder)],
            pass_fds=(folder,),
            user=65534,
            group=65534,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"no Python that an unprivileged user can run: {exc}")
    finally:
        os.close(folder)
    if child.returncode == 3:
        pytest.skip(f"the unprivileged child could not start: {child.stderr}")
    assert child.stdout.split() == ["read-ok", "write-refused"], child.stderr
    assert filer.load("m") == b"weights"


WRITE_AS_NOBODY = """
import os, sys
folder = int(sys.argv[1])
try:
    os.close(os.open("m.pkl", os.O_RDONLY, dir_fd=folder))
except OSError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
print("read-ok")
try:
    os.open("m.pkl", os.O_WRONLY, dir_fd=folder)
    print("write-allowed")
except PermissionError:
    print("write-refused")
"""


def test_dump_overwrite_replaces_the_link_and_keeps_the_old_object(filer, store):
    filer.dump({"v": 1}, "m")
    old = filer.list_files()[0].sha256
    filer.dump({"v": 2}, "m", overwrite=True)

    new = filer.list_files()[0].sha256
    assert new != old
    assert set(objects_of(store)) == {old, new}
    assert sha_of(store.object_path(old)) == old
    assert filer.load("m") == {"v": 2}


def test_a_removed_local_model_comes_back_from_the_store_on_this_machine(filer):
    filer.dump({"v": 1}, "m")
    filer.model_path("m").unlink()
    assert filer.load("m") == {"v": 1}  # never pushed, but this machine has its bytes


# -- load and pull: a link, no network ---------------------------------------------------------
def test_load_and_pull_link_from_the_store_without_the_remote(filer, remote, tmp_path):
    filer.dump({"v": 1}, "a", push=True)
    filer.dump({"v": 2}, "b", push=True)
    empty(remote)  # any download would now fail

    clone = clone_of(filer, tmp_path / "clone")
    report = clone.pull()
    assert (sorted(report.linked), report.done, report.failed) == (["a", "b"], [], {})
    assert clone.load("a") == {"v": 1}
    assert os.stat(clone.model_path("b")).st_ino == os.stat(filer.model_path("b")).st_ino

    clone.model_path("a").unlink()
    assert clone.load("a") == {"v": 1}
    assert clone.pull().skipped == ["a", "b"]


def test_every_version_this_machine_has_seen_loads_offline(
    tmp_path, s3_address, s3_env, store, monkeypatch
):
    author = Filer(tmp_path / "author", s3_address, "s3", store=store)
    author.dump({"v": 1}, "one", push=True)
    author.dump({"v": 2}, "two", push=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")

    clone = clone_of(author, tmp_path / "clone")
    report = clone.pull()
    assert (sorted(report.linked), report.failed) == (["one", "two"], {})
    clone.model_path("one").unlink()
    assert clone.load("one") == {"v": 1}
    assert clone.load("two") == {"v": 2}


def test_cli_pull_says_what_it_linked(filer, remote, capsys, monkeypatch):
    filer.dump({"v": 1}, "m", push=True)
    filer.model_path("m").unlink()
    empty(remote)
    assert cli_main(["pull", "--dir", str(filer.local_dir), "--all"]) == 0
    out = capsys.readouterr().out
    assert "Fetched 0 model(s); 1 linked from the local store; 0 already present." in out
    assert filer.load("m") == {"v": 1}


def test_a_linked_model_is_present_without_hashing(filer, tmp_path, monkeypatch):
    filer.dump(os.urandom(MIB), "m", push=True)
    clone = clone_of(filer, tmp_path / "clone")
    import model_filer.fs.hashing as hashing_module
    import model_filer.local.freshness as freshness_module

    def no_hashing(fh):
        raise AssertionError("a store object or a model file was hashed again")

    monkeypatch.setattr(hashing_module, "sha256_stream", no_hashing)
    monkeypatch.setattr(freshness_module, "sha256_stream", no_hashing)
    assert clone.pull().linked == ["m"]
    # The other checkout's link moved the first file's ctime: still current, unhashed.
    assert filer.pull().skipped == ["m"] and clone.pull().skipped == ["m"]
    assert filer.load("m") == clone.load("m")


def test_a_second_machine_downloads_and_enters_the_store(filer, tmp_path):
    filer.dump({"v": 1}, "m", push=True)
    other = ObjectStore(tmp_path / "other-store")
    mate = clone_of(filer, tmp_path / "mate", store=other)
    assert mate.pull().done == ["m"]
    [sha] = objects_of(other)
    assert sha == sha_of(other.object_path(sha)) == mate.list_files()[0].sha256


# -- objects whose bytes changed ---------------------------------------------------------------
# A small object is hashed at each use; a bigger one is trusted by its recorded stat.
SIZES = pytest.mark.parametrize(
    "model", [{"v": 1}, {"v": 1, "pad": b"p" * (HASHED_UP_TO + 1)}], ids=["hashed", "recorded"]
)


@SIZES
def test_an_object_written_in_place_is_hashed_again_and_replaced(
    filer, store, remote, tmp_path, model
):
    filer.dump(model, "m", push=True)
    sha = filer.list_files()[0].sha256
    # As root, which ignores the read-only mode: the write goes through to the object.
    with open(filer.model_path("m"), "r+b") as fh:
        fh.write(b"X")
    assert sha_of(store.object_path(sha)) != sha

    clone = clone_of(filer, tmp_path / "clone")
    report = clone.pull()
    assert (report.done, report.linked) == (["m"], [])  # not linked: downloaded again
    assert clone.load("m") == model
    assert sha_of(store.object_path(sha)) == sha


@SIZES
def test_a_write_that_puts_the_mtime_back_is_still_caught(filer, store, tmp_path, model):
    filer.dump(model, "m", push=True)
    sha = filer.list_files()[0].sha256
    obj = store.object_path(sha)
    before = os.stat(obj)
    with open(obj, "r+b") as fh:
        fh.write(b"X")
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))  # only the ctime tells

    clone = clone_of(filer, tmp_path / "clone")
    assert clone.pull().done == ["m"]
    assert clone.load("m") == model
    assert sha_of(obj) == sha


def test_cache_verify_removes_a_corrupted_object(filer, store, capsys):
    filer.dump({"v": 1}, "good")
    filer.dump({"v": 2}, "bad", push=True)
    bad = {e.name: e.sha256 for e in filer.list_files()}["bad"]
    obj = store.object_path(bad)
    before = os.stat(obj)
    with open(obj, "r+b") as fh:
        fh.write(b"X")
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert cli_main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"{obj}: its bytes do not hash to its name; removed" in out
    assert "1 object(s) verified, 1 bad one(s) removed" in out
    assert not obj.exists()
    assert cli_main(["cache", "verify"]) == 0
    assert "1 object(s) verified, 0 bad one(s) removed" in capsys.readouterr().out


def test_cache_verify_removes_a_stray_manifest_file_without_a_traceback(filer, store, capsys):
    # A file of the manifests folder whose name is no sha256 (left by hand, or by another
    # tool) describes no object: it goes, as a wrong manifest does, and nothing is locked.
    filer.dump({"v": 1}, "good")
    stray = store.root / "manifests" / "ab" / "not-a-sha.json"
    stray.parent.mkdir(parents=True)
    stray.write_text("{}")

    assert cli_main(["cache", "verify"]) == 1
    out = capsys.readouterr()
    assert "manifest of abnot-a-sha: does not describe that object's bytes; removed" in out.out
    assert "Traceback" not in out.out + out.err
    assert not stray.exists()
    assert not (store.root / "locks" / "abnot-a-sha.lock").exists()


# -- the cache command -------------------------------------------------------------------------
def test_cache_info_says_where_what_and_how(filer, store, capsys, monkeypatch):
    filer.dump(b"x" * 1000, "a")
    filer.dump(b"y" * 1000, "b")
    monkeypatch.chdir(filer.local_dir)

    assert cli_main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"location:  {store.root}" in out
    assert "objects:   2 (2 linked from a checkout)" in out
    assert "bytes:     2.0 KB" in out
    assert "link type: hardlink" in out or "link type: reflink" in out

    monkeypatch.setenv("MODEL_FILER_LINK", "copy")
    assert cli_main(["cache", "info"]) == 0
    assert "link type: copy (MODEL_FILER_LINK=copy)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["info", "prune"])
def test_cache_commands_refuse_a_dir_that_is_no_folder(command, tmp_path, capsys):
    extra = ["--max-size", "1GB"] if command == "prune" else []
    assert cli_main(["cache", command, *extra, "--dir", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("model-filer: error: ") and "is not a folder" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("size", [1000, 100_000])
def test_cache_prune_evicts_least_recently_used_objects_no_checkout_links(
    filer, store, capsys, size
):
    """A recorded object's last use is its record's mtime; one too small to be recorded
    (hashed at each use instead) has its own atime, which reads of it move."""
    for name in ("kept", "older", "newer"):
        filer.dump(os.urandom(size), name, push=True)
    sha = {e.name: e.sha256 for e in filer.list_files()}
    for name in ("older", "newer"):
        filer.model_path(name).unlink()
    now = time.time_ns()
    for age, name in ((3, "kept"), (2, "older"), (1, "newer")):  # kept is the oldest of all
        when = now - age * 10**9
        if size <= HASHED_UP_TO:  # one mtime for all: only the atime tells them apart
            os.utime(store.object_path(sha[name]), ns=(when, now - 100 * 10**9))
        else:
            meta = store.root / "meta" / sha[name][:2] / f"{sha[name][2:]}.json"
            os.utime(meta, ns=(when, when))
    pickled = store.object_path(sha["kept"]).stat().st_size

    assert cli_main(["cache", "prune", "--max-size", str(2 * pickled + pickled // 2)]) == 0
    assert "Evicted 1 object(s), freed " in capsys.readouterr().out
    assert set(objects_of(store)) == {sha["kept"], sha["newer"]}

    assert cli_main(["cache", "prune", "--max-size", "0"]) == 0
    assert "(1 object(s) in use by checkouts are kept;" in capsys.readouterr().out
    assert set(objects_of(store)) == {sha["kept"]}
    assert filer.load("older") == filer.load("older")  # downloaded again on use


def _reads_move_atimes(folder: Path) -> bool:
    probe = folder / "atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, ns=(10**9, time.time_ns()))  # older than its mtime: relatime moves it
    probe.read_bytes()
    return probe.stat().st_atime_ns > 10**9


def test_a_small_objects_use_moves_its_atime_and_cache_verify_does_not(
    filer, store, tmp_path, capsys
):
    """Its atime is its last use for prune: a link from the store reads it (the kernel moves
    the atime), a re-hash by ``cache verify`` does not."""
    if not _reads_move_atimes(store.root):
        pytest.skip("this filesystem is mounted noatime")
    filer.dump({"v": 1}, "m", push=True)
    obj = store.object_path(filer.list_files()[0].sha256)
    long_ago = time.time_ns() - 10**12
    os.utime(obj, ns=(long_ago, obj.stat().st_mtime_ns))

    assert cli_main(["cache", "verify"]) == 0
    assert "1 object(s) verified" in capsys.readouterr().out
    assert obj.stat().st_atime_ns == long_ago

    assert clone_of(filer, tmp_path / "clone").pull().linked == ["m"]
    assert obj.stat().st_atime_ns > long_ago + 10**11


def test_using_a_small_object_leaves_other_checkouts_records_trusted(
    filer, store, tmp_path, monkeypatch
):
    """A small object's last use is the atime a read moves: setting it would move the ctime
    that each checkout holding the inode has recorded, and mark their files unverified."""
    filer.dump({"v": 1}, "m", push=True)
    assert [s.where for s in filer.status()] == ["present"]
    monkeypatch.setenv("MODEL_FILER_LINK", "copy")  # a use of the object that links nothing
    assert clone_of(filer, tmp_path / "clone").pull().linked == ["m"]
    assert [s.where for s in filer.status()] == ["present"]


def test_cache_prune_rejects_a_bad_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["cache", "prune", "--max-size", "lots"])
    assert exit_info.value.code == 2
    assert "invalid size 'lots'" in capsys.readouterr().err


# -- copies ------------------------------------------------------------------------------------
def test_model_filer_link_copy_forces_copies_that_prune_keeps(filer, store, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_FILER_LINK", "copy")
    filer.dump({"v": 1}, "m")
    [(sha, st)] = objects_of(store).items()
    model = filer.model_path("m")
    assert os.stat(model).st_ino != st.st_ino
    assert st.st_nlink == 1
    assert sha_of(model) == sha
    model.chmod(0o644)
    with open(model, "r+b") as fh:  # the user's copy: writing it never reaches the store
        fh.write(b"X")
    assert sha_of(store.object_path(sha)) == sha

    model.unlink()
    assert filer.load("m") == {"v": 1}  # a fresh copy from the store
    assert cli_main(["cache", "prune", "--max-size", "0"]) == 0
    assert sha in objects_of(store)  # a checkout holds a copy: kept
    model.unlink()
    assert cli_main(["cache", "prune", "--max-size", "0"]) == 0
    assert objects_of(store) == {}


def test_an_unknown_link_setting_is_refused(filer, monkeypatch):
    monkeypatch.setenv("MODEL_FILER_LINK", "symlink")
    with pytest.raises(ModelFilerError, match="MODEL_FILER_LINK='symlink' is not understood"):
        filer.dump({"v": 1}, "m")


def test_a_store_on_another_filesystem_serves_copies(filer, remote, tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    other = ObjectStore(Path(shm.joinpath(f"model-filer-test-{os.getpid()}-{tmp_path.name}")))
    try:
        far = Filer(tmp_path / "far", str(remote), "local", store=other)
        far.dump({"v": 1}, "m", push=True)
        empty(remote)
        assert "another filesystem" in other.describe_link(far.local_dir)
        clone = clone_of(far, tmp_path / "clone")
        assert clone.pull().linked == ["m"]
        assert clone.load("m") == {"v": 1}
        [(_, st)] = objects_of(other).items()
        assert st.st_nlink == 1
    finally:
        shutil.rmtree(other.root, ignore_errors=True)


# -- a store that cannot be used ---------------------------------------------------------------
def test_an_unusable_store_falls_back_to_the_folder_with_a_warning(tmp_path, remote):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    store = ObjectStore(blocker / "store")
    filer = Filer(tmp_path / "models", str(remote), "local", store=store)

    with pytest.warns(StoreWarning, match=f"The local model store {blocker / 'store'}"):
        filer.dump({"v": 1}, "m", push=True)
    assert filer.load("m") == {"v": 1}
    clone = clone_of(filer, tmp_path / "clone")
    with pytest.warns(StoreWarning, match="MODEL_FILER_CACHE_DIR"):
        assert clone.pull().done == ["m"]
    assert clone.load("m") == {"v": 1}


def test_a_read_only_store_falls_back_to_the_folder(tmp_path, remote):
    """``chattr +i``: even root cannot create files in it (the tests run as root)."""
    root = tmp_path / "store"
    root.mkdir()
    if subprocess.run(["chattr", "+i", str(root)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        filer = Filer(tmp_path / "models", str(remote), "local", store=ObjectStore(root))
        with pytest.warns(StoreWarning, match=f"The local model store {root} cannot be used"):
            filer.dump({"v": 1}, "m", push=True)
        clone = clone_of(filer, tmp_path / "clone")
        with pytest.warns(StoreWarning):
            assert clone.load("m") == {"v": 1}
        assert list(root.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)


def test_the_store_error_names_the_folder_and_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError) as info:
        ObjectStore(blocker).temp("x")
    message = str(info.value)
    assert str(blocker) in message
    assert "MODEL_FILER_CACHE_DIR" in message
    assert info.value.root == str(blocker)


def test_cache_info_on_an_unusable_store_is_a_clear_error(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(blocker / "store"))
    assert cli_main(["cache", "info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"model-filer: error: The local model store {blocker / 'store'}")
    assert "MODEL_FILER_CACHE_DIR" in err and len(err.splitlines()) == 1


def test_a_store_deleted_while_in_use(filer, store, remote, tmp_path):
    filer.dump({"v": 1}, "a", push=True)
    shutil.rmtree(store.root)
    assert filer.load("a") == {"v": 1}  # the checkout's link outlives the store
    filer.model_path("a").unlink()
    assert filer.load("a") == {"v": 1}  # downloaded again, into a new store
    assert list(objects_of(store)) == [filer.list_files()[0].sha256]


def test_dumping_the_same_bytes_again_leaves_nothing_staged(filer):
    """The file and the staged copy are hard links of one object: a rename between them does
    nothing, and the staged name would make every later read run the crash recovery."""
    filer.dump({"v": 1}, "a")
    filer.dump({"v": 1}, "a", overwrite=True)
    staged = filer.local_dir / ".model_filer" / "staged"
    assert list(staged.iterdir()) == [] and not filer.folder.interrupted()
    assert filer.load("a") == {"v": 1}


def test_linking_a_model_already_in_place_leaves_no_temp_file(filer):
    """Two processes link the same object: the second's rename onto the same inode does
    nothing, and its temp link must not stay (it would keep the object 'in use')."""
    filer.dump({"v": 2}, "b")
    entry = filer.list_files()[0]
    twin = filer.folder.temp("b.link")
    os.link(filer.model_path("b"), twin)
    filer.folder.install(twin, entry)
    assert not twin.exists()
    assert filer.load("b") == {"v": 2}


@pytest.mark.parametrize("from_store", [True, False], ids=["linked", "downloaded"])
def test_a_pull_places_missing_and_stale_models_as_links_of_the_objects(
    filer, store, tmp_path, from_store, monkeypatch
):
    """A missing model is hard-linked in place in one step; a stale file there is replaced
    the long way (a temp link renamed over it). Either way: the object's inode, nothing left
    in the temp folder."""
    for i in range(3):
        filer.dump({"v": i}, f"m{i}", push=True)
    clone = clone_of(
        filer, tmp_path / "clone", None if from_store else ObjectStore(tmp_path / "s2")
    )
    clone.model_path("m1").write_bytes(b"stale bytes of another version")
    in_one_step: list[str] = []
    real = ObjectStore.link_new

    def counted(self: ObjectStore, sha: str, final: Path) -> bool:
        made = real(self, sha, final)
        if made:
            in_one_step.append(final.name)
        return made

    monkeypatch.setattr(ObjectStore, "link_new", counted)
    clone.pull(jobs=1)  # in name order: m0 first
    # Once the store has learned its link kind (the first model), missing ones take one step;
    # the stale one never does.
    assert "m1.pkl" not in in_one_step and "m2.pkl" in in_one_step
    for i in range(3):
        entry = next(e for e in clone.list_files() if e.name == f"m{i}")
        st = os.stat(clone.model_path(f"m{i}"))
        assert st.st_ino == os.stat(clone.store.object_path(entry.sha256)).st_ino
        assert clone.load(f"m{i}") == {"v": i}
    assert list((clone.local_dir / ".model_filer" / "tmp").glob("*")) == []


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_store_falls_back_to_the_folder(tmp_path, remote):
    with small_filesystem(tmp_path / "small", "1m") as small:
        store = ObjectStore(small / "store")
        filer = Filer(tmp_path / "models", str(remote), "local", store=store)
        data = os.urandom(2 * MIB)
        with pytest.warns(StoreWarning, match="No space left on device"):
            filer.dump(data, "m", push=True)
        assert filer.load("m") == data
        clone = clone_of(filer, tmp_path / "clone")
        with pytest.warns(StoreWarning, match="No space left on device"):
            assert clone.pull().done == ["m"]
        assert clone.load("m") == data
        assert objects_of(store) == {}
        assert list((store.root / "tmp").iterdir()) == []


def test_a_full_store_falls_back_for_a_big_resumable_download_too(tmp_path, remote):
    """Above the resumable size the partial file's writes fail in the store, not the remote."""
    author = Filer(tmp_path / "author", str(remote), "local", store=ObjectStore(tmp_path / "s1"))
    data = os.urandom(20 * MIB)
    author.dump(data, "big", push=True)
    with small_filesystem(tmp_path / "small", "4m") as small:
        store = ObjectStore(small / "store")
        clone = clone_of(author, tmp_path / "clone", store=store)
        with pytest.warns(StoreWarning, match="No space left on device"):
            assert clone.load("big") == data  # downloaded straight into the model folder
        assert objects_of(store) == {}
        assert not list((store.root / "partial").glob("*"))  # nothing kept in the full store


def test_a_symlinked_hash_journal_is_never_written_through(tmp_path, remote):
    filer = Filer(tmp_path / "models", str(remote), "local")
    filer.dump([1], "m", push=True)
    outside = tmp_path / "victim.txt"
    outside.write_text("precious\n")
    journal = filer.local_dir / ".model_filer" / "hashes.log"
    journal.unlink(missing_ok=True)
    journal.symlink_to(outside)  # as a hostile repository could commit it
    filer.model_path("m").unlink()
    assert filer.load("m") == [1]  # re-linked and recorded: the record is not written there
    assert outside.read_text() == "precious\n"


def test_prune_evicts_objects_named_at_branch_heads_and_tags_last(tmp_path, remote, store, capsys):
    repo = init_repo(tmp_path / "repo")
    models = repo / "models"
    filer = Filer(models, str(remote), "local", store=store)
    filer.dump(os.urandom(MIB), "a", push=True)
    commit(repo, "a v1")
    git(repo, "tag", "v1")
    git(repo, "tag", "-a", "-m", "a tree", "tree-tag", "HEAD^{tree}")  # names no commit
    git(
        repo,
        "tag",
        "blob-tag",
        git(repo, "rev-parse", "HEAD:models/.local_registry").stdout.strip(),
    )
    v1 = filer.list_files()[0].sha256
    filer.remove("a")
    filer.dump(os.urandom(MIB), "a", push=True)
    commit(repo, "a v2")  # v2 is linked from the checkout: in use
    v2 = filer.list_files()[0].sha256
    filer.dump(os.urandom(MIB), "junk")
    junk = next(e.sha256 for e in filer.list_files() if e.name == "junk")
    filer.remove("junk")  # never committed: named nowhere
    sizes = {sha: st.st_size for sha, st in objects_of(store).items()}
    assert set(sizes) == {v1, v2, junk}

    bound = sizes[v1] + sizes[v2]  # evicting one idle object is enough
    assert cli_main(["cache", "prune", "--max-size", str(bound), "--dir", str(models)]) == 0
    assert set(objects_of(store)) == {v1, v2}  # the tag's version stayed, the unnamed went
    assert "2 named at this repository's branch heads and tags" in capsys.readouterr().out

    assert cli_main(["cache", "prune", "--max-size", "0", "--dir", str(models)]) == 0
    assert set(objects_of(store)) == {v2}  # forced out by the size; in-use v2 always stays
    assert filer.load("a", rev="v1") is not None  # and v1 comes back from the remote


# -- concurrency and crashes -------------------------------------------------------------------
PULL = """
import sys
from model_filer import Filer
report = Filer(sys.argv[1], sys.argv[2], "s3").pull()
print(report.done + report.linked, flush=True)  # the second waits, then finds it in the store
"""


def test_two_processes_download_an_object_once(tmp_path, s3_address, s3_env, store, monkeypatch):
    author = Filer(tmp_path / "author", s3_address, "s3", store=ObjectStore(tmp_path / "s2"))
    author.dump(os.urandom(4 * MIB), "m", push=True)
    key = author.list_files()[0].key
    with FaultProxy(s3_env.endpoint_url) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
        children = []
        for n in range(2):
            clone = clone_of(author, tmp_path / f"clone{n}", store=store)
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", PULL, str(clone.local_dir), s3_address],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = [child.communicate(timeout=120) for child in children]
        gets = proxy.count("GET", key)
    assert all(child.returncode == 0 for child in children), outs
    assert sorted(out for out, _ in outs) == ["['m']\n", "['m']\n"]
    assert gets == 1
    assert_every_object_hashes_to_its_name(store)


KILLED_DUMP = """
import os, sys
from model_filer import Filer
from model_filer.local.store import ObjectStore
data = os.urandom(32 * 1024 * 1024)
print("ready", flush=True)
Filer(sys.argv[1], sys.argv[2], "local", store=ObjectStore(sys.argv[3])).dump(data, "m")
"""


def test_a_sigkill_during_a_dump_leaves_no_bad_object(tmp_path, remote):
    store = ObjectStore(tmp_path / "store")
    for attempt, delay in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.4)):
        folder = tmp_path / f"models{attempt}"
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_DUMP, str(folder), str(remote), str(store.root)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert_every_object_hashes_to_its_name(store)
        filer = Filer(folder, str(remote), "local", store=store)
        for entry in filer.list_files():  # a dump that got as far as its registry entry
            assert filer.load(entry.name) is not None
    filer.dump(b"after", "n")  # cleans the dead processes' temp files
    assert [p.name for p in (store.root / "tmp").iterdir()] == []


KILLED_PULL = """
import sys
from model_filer import Filer
from model_filer.local.store import ObjectStore
Filer(sys.argv[1], sys.argv[2], "local", store=ObjectStore(sys.argv[3])).pull()
"""


def test_a_sigkill_at_any_point_leaves_no_bad_object(filer, tmp_path):
    filer.dump(os.urandom(32 * MIB), "m", push=True)
    sha = filer.list_files()[0].sha256
    for attempt, delay in enumerate((0.05, 0.15, 0.3, 0.5, 0.8, 1.2)):
        store = tmp_path / f"store{attempt}"
        clone = clone_of(filer, tmp_path / f"clone{attempt}", store=ObjectStore(store))
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_PULL, str(clone.local_dir), clone.remote.address, store]
        )
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert_every_object_hashes_to_its_name(ObjectStore(store))
        if clone.model_path("m").exists():
            assert sha_of(clone.model_path("m")) == sha
        assert clone.load("m") is not None
        assert_every_object_hashes_to_its_name(ObjectStore(store))
        assert [found for found, _ in ObjectStore(store).objects()] == [sha]


SWITCH_IN_CHILD = """
import sys
from model_filer_hooks.prefetch_models import main
code = main(["--hook-stage", "post-checkout", sys.argv[1], sys.argv[2], "1"])
print(code, sorted(m for m in ("git", "boto3", "numpy") if m in sys.modules))
"""


def test_a_switch_linked_from_the_store_imports_neither_gitpython_nor_boto3(repo, remote):
    from tests.support.gitrepo import commit, git

    filer = Filer(repo / "models", str(remote), "local")
    shas = {}
    for version in ("A", "B"):
        git(repo, "checkout", "-q", "-b", version, "main")
        filer.dump({"v": version}, "m", push=True, overwrite=True)
        shas[version] = commit(repo, version)
    empty(remote)
    git(repo, "checkout", "-q", "A")
    child = subprocess.run(
        [sys.executable, "-c", SWITCH_IN_CHILD, shas["B"], shas["A"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 linked from the local store" in child.stdout
    assert child.stdout.splitlines()[-1] == "0 []"
    assert filer.load("m") == {"v": "A"}


# -- locks -------------------------------------------------------------------------------------
def test_a_dump_takes_each_lock_once(filer, store):
    """The object's lock was taken twice per dump (to enter the bytes, then to record them
    after the renames into place); now once, inside the registry's lock."""
    filer.dump({"v": 1}, "a")
    sha = filer.list_files()[0].sha256
    # This process's one lock object of each file (held here, so it stays the same object):
    objects, registry = ObjectLocks(store.root).of(sha), FolderLock.of(filer.local_dir, "registry")
    before = (objects.acquisitions, registry.acquisitions)
    filer.dump({"v": 1}, "b")  # the same bytes: the same object
    assert (objects.acquisitions, registry.acquisitions) == (before[0] + 1, before[1] + 1)
    assert filer.load("b") == {"v": 1}
    assert [(s.entry.name, s.where) for s in filer.status()] == [("a", "present"), ("b", "present")]


def test_a_thread_asking_for_a_lock_it_holds_is_refused_not_hung(filer, store):
    lock = FolderLock.of(filer.local_dir, "registry")
    with lock, pytest.raises(BatchError, match="already holds"):
        filer.remove_locals()  # a registry change: the same lock
    assert filer.remove_locals() == []  # released: it runs


def test_another_process_holding_an_object_lock_makes_prune_skip_it(filer, store, tmp_path):
    filer.dump({"v": 1}, "a")
    sha = filer.list_files()[0].sha256
    filer.remove("a")
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from model_filer.fs.locks import ObjectLocks\n"
        f"with ObjectLocks(Path({str(store.root)!r})).of({sha!r}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert store.prune(0).evicted == 0  # in use by the other process: skipped, not waited on
    finally:
        holder.communicate("\n", timeout=60)
    assert store.prune(0).evicted == 1
