"""The Filer's whole API on the 'local' remote (a plain folder: one machine or a shared drive)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from model_filer import (
    BucketNotFoundError,
    Entry,
    Filer,
    ImmutableEntryError,
    IntegrityError,
    InvalidNameError,
    LocalOnlyError,
    ModelExistsError,
    RegistryError,
    RemoteObjectMissingError,
    SerializationError,
    TransferError,
    UnknownModelError,
    UnknownRemoteTypeError,
    VersionMismatchWarning,
)
from model_filer.fs.tempfiles import temp_path
from model_filer.local.store import ObjectStore
from model_filer.registry.file import RegistryFile

REGISTRY = ".local_registry"
BAD_NAMES = ["../evil", "a/b", "/abs", "", "..", "con", "a\x00b", "x" * 129]


class Touch:
    """Unpickling this creates ``marker``: proof that bytes were (not) unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def remote_dir(tmp_path):
    path = tmp_path / "remote"
    path.mkdir()
    return path


@pytest.fixture
def local_dir(tmp_path):
    return tmp_path / "models"


@pytest.fixture
def filer(local_dir, remote_dir):
    return Filer(local_dir, str(remote_dir), remote_type="local")


@pytest.fixture
def plain_filer(local_dir, remote_dir):
    """A Filer of the plain layout (each pickle whole at ``<name>/<sha256>.pkl``), for the
    cases that read or damage the remote's objects by their path."""
    return Filer(local_dir, str(remote_dir), remote_type="local", storage="plain")


def teammate(tmp_path, author: Filer, remote: pathlib.Path | None = None, name="teammate"):
    """A fresh clone: a new folder holding only the author's registry."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copyfile(author.registry_path, folder / REGISTRY)
    # Another machine: its own object store, so its bytes come from the remote.
    store = ObjectStore(tmp_path / f"{name}-store")
    return Filer(folder, str(remote or author.remote.address), remote_type="local", store=store)


def sha_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temps(local_dir: pathlib.Path) -> list[pathlib.Path]:
    tmp = local_dir / ".model_filer" / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def shown(filer: Filer, capsys) -> str:
    capsys.readouterr()
    filer.show_files()
    return capsys.readouterr().out


# -- the spec's flow --------------------------------------------------------------------------


def test_show_files_on_an_empty_folder(filer, capsys):
    assert shown(filer, capsys) == "[no files exist]\n"
    assert filer.list_files() == []


def test_dump_local_then_load(filer, local_dir, capsys):
    model = {"weights": [1.0, 2.0], "bias": 0.5}
    filer.dump(model, "my_model", push=False)
    assert (local_dir / "my_model.pkl").is_file()
    assert (local_dir / REGISTRY).is_file()
    assert shown(filer, capsys) == "my_model (local)\n"
    assert filer.load("my_model") == model


def test_dump_then_push_then_push_again(plain_filer, local_dir, remote_dir, capsys):
    plain_filer.dump({"a": 1}, "my_model")
    plain_filer.push("my_model")
    assert shown(plain_filer, capsys) == "my_model (synced)\n"
    sha = sha_of(local_dir / "my_model.pkl")
    remote_object = remote_dir / "my_model" / f"{sha}.pkl"
    assert remote_object.read_bytes() == (local_dir / "my_model.pkl").read_bytes()
    plain_filer.push("my_model")  # already synced: nothing to do
    assert shown(plain_filer, capsys) == "my_model (synced)\n"


def test_dump_with_push(filer, remote_dir, capsys):
    filer.dump({"a": 1}, "my_model", push=True)
    assert shown(filer, capsys) == "my_model (synced)\n"
    [entry] = filer.list_files()
    assert (remote_dir / entry.key).is_file()


def test_push_all_pushes_only_local_models(filer, capsys):
    filer.dump(1, "c_model")
    filer.dump(2, "a_model", push=True)
    filer.dump(3, "b_model")
    assert filer.push_all() == ["b_model", "c_model"]
    assert shown(filer, capsys) == "a_model (synced)\nb_model (synced)\nc_model (synced)\n"
    assert filer.push_all() == []


def test_remove_a_local_model(filer, local_dir, capsys):
    filer.dump({"a": 1}, "my_model", push=False)
    assert shown(filer, capsys) == "my_model (local)\n"
    filer.remove("my_model")
    assert shown(filer, capsys) == "[no files exist]\n"
    assert not (local_dir / "my_model.pkl").exists()


def test_remove_a_synced_model_keeps_the_remote_object_by_default(filer, remote_dir, capsys):
    filer.dump({"a": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    filer.remove("my_model")
    assert shown(filer, capsys) == "[no files exist]\n"
    assert (remote_dir / entry.key).is_file()


def test_remove_remote_deletes_the_remote_object(filer, remote_dir, local_dir):
    filer.dump({"a": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    filer.remove("my_model", remove_remote=True)
    assert not (remote_dir / entry.key).exists()
    assert not (local_dir / "my_model.pkl").exists()
    assert filer.list_files() == []


def test_remove_an_unknown_model(filer):
    filer.dump(1, "known")
    with pytest.raises(UnknownModelError, match=r"No model 'ghost'.*show_files"):
        filer.remove("ghost")
    assert [e.name for e in filer.list_files()] == ["known"]


def test_remove_locals(filer, local_dir, capsys):
    filer.dump(1, "local_a")
    filer.dump(2, "synced_b", push=True)
    filer.dump(3, "local_c")
    assert filer.remove_locals() == ["local_a", "local_c"]
    assert shown(filer, capsys) == "synced_b (synced)\n"
    assert not (local_dir / "local_a.pkl").exists()
    assert not (local_dir / "local_c.pkl").exists()
    assert (local_dir / "synced_b.pkl").exists()
    assert filer.remove_locals() == []


# -- overwrite rules --------------------------------------------------------------------------


def test_removing_one_of_two_names_for_the_same_bytes_with_its_remote_object_keeps_the_other(
    tmp_path, filer, remote_dir
):
    # Keys name bytes, not models: the object the other name holds must stay on the remote.
    filer.dump({"w": [1, 2, 3]}, "churn", push=True)
    filer.dump({"w": [1, 2, 3]}, "churn_backup", push=True)
    assert {e.key for e in filer.list_files()} == {filer.list_files()[0].key}
    filer.remove("churn_backup", remove_remote=True)
    mate = teammate(tmp_path, filer)
    assert mate.load("churn") == {"w": [1, 2, 3]}
    filer.remove("churn", remove_remote=True)  # the last name: now the object goes
    with pytest.raises(RemoteObjectMissingError):  # (a clone of the commit that named it)
        teammate(tmp_path, mate, filer.remote.address, name="third").load("churn")


def test_overwrite_a_local_model(filer):
    filer.dump({"v": 1}, "my_model")
    filer.dump({"v": 2}, "my_model", overwrite=True)
    assert filer.load("my_model") == {"v": 2}
    assert len(filer.list_files()) == 1


def test_existing_local_model_without_overwrite(filer, local_dir):
    filer.dump({"v": 1}, "my_model")
    before = (local_dir / REGISTRY).read_bytes()
    with pytest.raises(ModelExistsError, match="overwrite=True"):
        filer.dump({"v": 2}, "my_model")
    assert filer.load("my_model") == {"v": 1}
    assert (local_dir / REGISTRY).read_bytes() == before


def test_a_stray_model_file_is_not_overwritten_silently(filer, local_dir):
    local_dir.mkdir()
    (local_dir / "my_model.pkl").write_bytes(b"someone's file")
    with pytest.raises(ModelExistsError, match="overwrite=True"):
        filer.dump({"v": 2}, "my_model")
    assert (local_dir / "my_model.pkl").read_bytes() == b"someone's file"
    filer.dump({"v": 2}, "my_model", overwrite=True)
    assert filer.load("my_model") == {"v": 2}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_synced_model_is_immutable(filer, local_dir, overwrite):
    filer.dump({"v": 1}, "my_model", push=True)
    before = (local_dir / REGISTRY).read_bytes()
    with pytest.raises(ImmutableEntryError) as info:
        filer.dump({"v": 2}, "my_model", overwrite=overwrite)
    assert "filer.remove('my_model') and dump again" in str(info.value)
    assert (local_dir / REGISTRY).read_bytes() == before
    assert filer.load("my_model") == {"v": 1}


def test_remove_remote_then_dump_replaces_a_synced_model(filer):
    filer.dump({"v": 1}, "my_model", push=True)
    filer.remove("my_model", remove_remote=True)
    filer.dump({"v": 2}, "my_model", push=True)
    assert filer.load("my_model") == {"v": 2}


def test_a_failed_dump_leaves_everything_as_it_was(filer, local_dir):
    filer.dump({"v": 1}, "my_model")
    registry_before = (local_dir / REGISTRY).read_bytes()
    file_before = (local_dir / "my_model.pkl").read_bytes()
    with pytest.raises(SerializationError, match="module level"):
        filer.dump({"v": lambda: 2}, "my_model", overwrite=True)
    with pytest.raises(SerializationError, match="module level"):
        filer.dump(lambda: 3, "other")
    assert (local_dir / REGISTRY).read_bytes() == registry_before
    assert (local_dir / "my_model.pkl").read_bytes() == file_before
    assert not (local_dir / "other.pkl").exists()
    assert temps(local_dir) == []
    assert filer.load("my_model") == {"v": 1}


# -- data, files and registry -----------------------------------------------------------------


def test_list_files_returns_entries_as_data(plain_filer, local_dir):
    array = np.arange(10.0)
    plain_filer.dump(array, "arr", push=True)
    plain_filer.dump({"plain": True}, "plain")
    arr, plain = plain_filer.list_files()
    assert isinstance(arr, Entry) and isinstance(plain, Entry)
    assert (arr.name, arr.state, plain.name, plain.state) == ("arr", "synced", "plain", "local")
    path = local_dir / "arr.pkl"
    assert arr.sha256 == sha_of(path)
    assert arr.size == path.stat().st_size
    assert arr.key == f"arr/{arr.sha256}.pkl"
    assert plain.key is None
    assert arr.serializer == "pickle-5"
    assert arr.python == ".".join(map(str, sys.version_info[:3]))
    assert arr.library == {"name": "numpy", "version": np.__version__}
    assert plain.library is None
    created = dt.datetime.fromisoformat(arr.created)
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=5)


def test_model_file_is_pickle_protocol_5(filer, local_dir):
    filer.dump(np.ones(1000), "arr")
    data = (local_dir / "arr.pkl").read_bytes()
    assert data[:2] == b"\x80\x05"


def test_gitignore_keeps_models_out_and_the_registry_in(filer, local_dir):
    filer.dump({"a": 1}, "my_model", push=True)
    filer.dump({"b": 1}, "other")
    lines = (local_dir / ".gitignore").read_text().splitlines()
    assert "*.pkl" in lines and ".model_filer" in lines
    subprocess.run(["git", "init", "-q", str(local_dir)], check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored=no"],
        cwd=local_dir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert sorted(status) == ["?? .gitignore", f"?? {REGISTRY}"]


def test_the_registry_holds_relative_keys(plain_filer, remote_dir, local_dir):
    plain_filer.dump({"a": 1}, "my_model", push=True)
    text = (local_dir / REGISTRY).read_text()
    [entry] = plain_filer.list_files()
    assert f"key: my_model/{entry.sha256}.pkl" in text
    assert f"{remote_dir}/my_model" not in text


# -- teammates and shared drives --------------------------------------------------------------


def test_a_teammate_with_only_the_registry_loads_from_the_remote(tmp_path, filer, capsys):
    model = {"weights": np.arange(1000.0)}
    filer.dump(model, "my_model", push=True)
    mate = teammate(tmp_path, filer)
    assert shown(mate, capsys) == "my_model (synced)\n"
    loaded = mate.load("my_model")
    assert np.array_equal(loaded["weights"], model["weights"])
    assert sha_of(mate.model_path("my_model")) == filer.list_files()[0].sha256
    assert mate.load("my_model")["weights"].sum() == model["weights"].sum()  # from the file now


def test_pull_downloads_missing_models_and_skips_current_ones(tmp_path, filer):
    filer.dump(1, "one", push=True)
    filer.dump(2, "two", push=True)
    filer.dump(3, "three")
    mate = teammate(tmp_path, filer)
    report = mate.pull()
    assert sorted(report.done) == ["one", "two"]
    assert report.failed == {}
    assert mate.model_path("one").is_file() and not mate.model_path("three").exists()
    again = mate.pull()
    assert again.done == [] and sorted(again.skipped) == ["one", "two"]


def test_a_shared_drive_mounted_at_another_path_still_loads(tmp_path, filer, remote_dir):
    filer.dump({"v": 42}, "my_model", push=True)
    moved = tmp_path / "elsewhere" / "mnt" / "share"
    shutil.copytree(remote_dir, moved)
    shutil.rmtree(remote_dir)
    mate = teammate(tmp_path, filer, remote=moved)
    assert mate.load("my_model") == {"v": 42}


def test_a_missing_remote_folder_is_reported(tmp_path, local_dir):
    filer = Filer(local_dir, str(tmp_path / "not-mounted"), remote_type="local")
    filer.dump({"v": 1}, "my_model")
    with pytest.raises(BucketNotFoundError, match="mkdir -p") as info:
        filer.push("my_model")  # a first push may start a new remote: creating it is right
    assert "Mount it" in str(info.value)
    assert filer.list_files()[0].state == "local"


def test_a_read_from_a_missing_remote_folder_says_mount_it_not_create_it(
    tmp_path, local_dir, remote_dir, filer
):
    """Models on a share that is not mounted: an empty folder would only change the error."""
    filer.dump({"v": 1}, "my_model")
    filer.push("my_model")
    shutil.rmtree(remote_dir)  # the share, unmounted
    mate = teammate(tmp_path, filer)

    with pytest.raises(BucketNotFoundError) as info:
        mate.load("my_model")
    message = str(info.value)
    assert "is the share mounted?" in message
    assert "Mount it" in message
    assert "model-filer remote set --dir MODEL_FOLDER PATH" in message
    assert "mkdir" not in message
    for read in (
        lambda: mate.remote.stat("my_model/x.pkl"),
        lambda: mate.remote.list_sizes(""),
        lambda: list(mate.remote.list_objects()),
    ):
        with pytest.raises(BucketNotFoundError, match="remote set --dir") as info:
            read()
        assert "mkdir" not in str(info.value)


def test_object_keys_embed_the_sha_and_old_registries_keep_their_bytes(
    tmp_path, plain_filer, remote_dir
):
    plain_filer.dump({"v": 1}, "my_model", push=True)
    [old] = plain_filer.list_files()
    assert old.key == f"my_model/{old.sha256}.pkl"
    old_registry = plain_filer.registry_path.read_bytes()
    plain_filer.remove("my_model")
    plain_filer.dump({"v": 2}, "my_model", push=True)
    [new] = plain_filer.list_files()
    assert new.key == f"my_model/{new.sha256}.pkl" != old.key
    assert (remote_dir / old.key).is_file() and (remote_dir / new.key).is_file()

    old_clone = tmp_path / "old_clone"
    old_clone.mkdir()
    (old_clone / REGISTRY).write_bytes(old_registry)
    assert Filer(old_clone, str(remote_dir), remote_type="local").load("my_model") == {"v": 1}
    assert teammate(tmp_path, plain_filer).load("my_model") == {"v": 2}


def test_a_missing_remote_object_is_reported(tmp_path, filer, remote_dir):
    filer.dump({"v": 1}, "my_model", push=True)
    [entry] = filer.list_files()
    (remote_dir / entry.key).unlink()
    mate = teammate(tmp_path, filer)
    with pytest.raises(RemoteObjectMissingError, match="push the model again"):
        mate.load("my_model")
    assert not mate.model_path("my_model").exists()


def test_push_all_marks_the_pushed_models_synced_even_when_one_fails(filer, local_dir):
    filer.dump(1, "a_model")
    filer.dump(2, "b_model")
    filer.dump(3, "c_model")
    (local_dir / "b_model.pkl").unlink()
    with pytest.raises(TransferError) as info:
        filer.push_all()
    assert "1 model failed to push" in str(info.value)
    assert "b_model" in str(info.value) and "a_model" not in str(info.value)
    assert list(info.value.failures) == ["b_model"]
    assert isinstance(info.value.failures["b_model"], LocalOnlyError)
    states = {e.name: e.state for e in filer.list_files()}
    assert states == {"a_model": "synced", "b_model": "local", "c_model": "synced"}


def test_pull_of_unknown_or_bad_names(filer):
    filer.dump(1, "known", push=True)
    with pytest.raises(UnknownModelError, match="ghost"):
        filer.pull(["ghost"])
    with pytest.raises(InvalidNameError):
        filer.pull(["../known"])


def test_a_dump_killed_after_its_registry_write_is_completed_by_the_next_call(filer, local_dir):
    """The registry names the new bytes, the file is still staged: the next call installs it."""
    filer.dump({"v": 1}, "my_model")
    [entry] = filer.list_files()
    staged = local_dir / ".model_filer" / "staged" / f"my_model.{entry.sha256}"
    os.replace(local_dir / "my_model.pkl", staged)
    orphan = staged.with_name(f"other.{'0' * 64}")  # staged by a dump killed before its write
    orphan.write_bytes(b"half a model")
    assert filer.load("my_model") == {"v": 1}
    assert not staged.exists() and not orphan.exists()
    assert (local_dir / "my_model.pkl").is_file()


def test_a_dump_killed_while_pickling_leaves_no_trace(filer, local_dir):
    """Its temp file is removed by the next call; a live writer's temp file is kept."""
    filer.dump({"v": 1}, "my_model")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = temp_path(local_dir, "x.dump")  # owned by this live process
    live.write_bytes(b"being written")
    killed = live.with_name(live.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    killed.write_bytes(b"half")
    filer.dump({"v": 2}, "another")
    assert not killed.exists()
    assert temps(local_dir) == [live]
    assert filer.load("my_model") == {"v": 1}


def test_four_processes_loading_one_model_at_once(tmp_path, filer):
    import time

    filer.dump({"big": b"z" * 5_000_000}, "shared", push=True)
    mate = teammate(tmp_path, filer)
    script = textwrap.dedent(
        """
        import sys, time
        from model_filer import Filer
        local_dir, remote_dir, start_at = sys.argv[1:]
        while time.time() < float(start_at):
            time.sleep(0.005)
        assert Filer(local_dir, remote_dir, remote_type="local").load("shared")["big"][:3] == b"zzz"
        """
    )
    start_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(mate.local_dir), filer.remote.address, start_at],
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert temps(mate.local_dir) == []
    assert sha_of(mate.model_path("shared")) == filer.list_files()[0].sha256


def test_push_of_a_synced_model_repairs_a_remote_that_lost_it(plain_filer, remote_dir):
    plain_filer.dump({"v": 1}, "my_model", push=True)
    [entry] = plain_filer.list_files()
    (remote_dir / entry.key).unlink()
    plain_filer.push("my_model")
    assert sha_of(remote_dir / entry.key) == entry.sha256


# -- integrity --------------------------------------------------------------------------------


def test_the_touch_payload_really_runs_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Touch(marker), protocol=5))
    assert marker.exists()


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) - 7]


def _replace(data: bytes, marker: pathlib.Path) -> bytes:
    evil = pickle.dumps(Touch(marker), protocol=5)
    assert len(evil) < len(data)
    return evil + b"\0" * (len(data) - len(evil))  # same size: only the sha can tell


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda data, marker: _flip(data), id="bit-flip"),
        pytest.param(lambda data, marker: _replace(data, marker), id="replaced"),
        pytest.param(lambda data, marker: _truncate(data), id="truncated"),
    ],
)
def test_a_tampered_remote_object_is_refused_and_never_unpickled(
    tmp_path, plain_filer, remote_dir, tamper
):
    marker = tmp_path / "unpickled-marker"
    plain_filer.dump({"payload": b"x" * 2000}, "my_model", push=True)
    [entry] = plain_filer.list_files()
    obj = remote_dir / entry.key
    bad = tamper(obj.read_bytes(), marker)
    obj.write_bytes(bad)
    actual = hashlib.sha256(bad).hexdigest()

    mate = teammate(tmp_path, plain_filer)
    with pytest.raises(IntegrityError) as info:
        mate.load("my_model")
    message = str(info.value)
    assert entry.sha256 in message
    assert actual in message
    assert "not loaded" in message or "not unpickled" in message
    assert not marker.exists()
    assert not mate.model_path("my_model").exists()
    assert temps(mate.local_dir) == []
    with pytest.raises(IntegrityError):  # and again: nothing bad was cached
        mate.load("my_model")
    assert not marker.exists()

    # What the message says to do repairs the remote: a push keeps an object of the right
    # length, so one damaged in place is deleted first.
    if len(bad) == entry.size:
        assert f"Delete {plain_filer.remote.url(entry.key)} from the remote" in message
        plain_filer.push("my_model")
        with pytest.raises(IntegrityError):
            mate.load("my_model")
        obj.unlink()
    else:
        fix = f"run `model-filer push my_model`: it replaces {plain_filer.remote.url(entry.key)}."
        assert fix in message
    plain_filer.push("my_model")
    assert mate.load("my_model") == {"payload": b"x" * 2000}


def test_a_truncated_remote_object_is_refused_naming_both_sizes(tmp_path, plain_filer, remote_dir):
    marker = tmp_path / "unpickled-marker"
    plain_filer.dump({"payload": b"x" * 2000}, "my_model", push=True)
    [entry] = plain_filer.list_files()
    obj = remote_dir / entry.key
    obj.write_bytes(_truncate(obj.read_bytes()))
    mate = teammate(tmp_path, plain_filer)
    with pytest.raises(IntegrityError) as info:
        mate.load("my_model")
    message = str(info.value)
    assert entry.sha256 in message
    assert f"expected {entry.size} bytes" in message
    assert f"got {entry.size - 7} bytes" in message
    assert not marker.exists()
    assert not mate.model_path("my_model").exists()
    assert temps(mate.local_dir) == []


def test_after_a_branch_switch_a_stale_file_of_the_same_size_is_not_loaded(tmp_path, filer):
    filer.dump(b"A" * 1000, "my_model", push=True)
    registry_a = filer.registry_path.read_bytes()
    filer.remove("my_model")
    filer.dump(b"B" * 1000, "my_model", push=True)
    registry_b = filer.registry_path.read_bytes()

    mate_dir = tmp_path / "mate"
    mate_dir.mkdir()
    (mate_dir / REGISTRY).write_bytes(registry_a)
    mate = Filer(mate_dir, filer.remote.address, remote_type="local")
    assert mate.load("my_model") == b"A" * 1000
    size_a = mate.model_path("my_model").stat().st_size

    (mate_dir / REGISTRY).write_bytes(registry_b)  # `git checkout other-branch`
    assert mate.model_path("my_model").stat().st_size == size_a  # the old file is still there
    assert mate.load("my_model") == b"B" * 1000
    assert mate.load("my_model") == b"B" * 1000
    fresh = Filer(mate_dir, filer.remote.address, remote_type="local")  # a new process
    assert fresh.load("my_model") == b"B" * 1000


def test_a_local_model_modified_after_dump_is_refused(filer, local_dir):
    marker = local_dir.parent / "unpickled-marker"
    filer.dump({"payload": b"x" * 2000}, "my_model")
    path = local_dir / "my_model.pkl"
    [entry] = filer.list_files()
    st = path.stat()
    path.write_bytes(_replace(path.read_bytes(), marker))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    with pytest.raises(IntegrityError) as info:
        filer.load("my_model")
    assert entry.sha256 in str(info.value)
    assert sha_of(path) in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert not marker.exists()
    with pytest.raises(IntegrityError, match="changed after dump"):
        filer.push("my_model")
    assert filer.list_files()[0].state == "local"


def test_a_local_model_cannot_be_loaded_by_a_teammate(tmp_path, filer):
    filer.dump({"v": 1}, "my_model")
    mate = teammate(tmp_path, filer)
    with pytest.raises(LocalOnlyError) as info:
        mate.load("my_model")
    assert "push" in str(info.value)
    with pytest.raises(LocalOnlyError):
        mate.push("my_model")


def test_load_of_an_unknown_model_lists_the_known_ones(filer):
    filer.dump(1, "alpha")
    filer.dump(2, "beta")
    with pytest.raises(UnknownModelError) as info:
        filer.load("gamma")
    assert "'gamma'" in str(info.value) and "alpha, beta" in str(info.value)
    with pytest.raises(UnknownModelError):
        filer.push("gamma")


# -- version warnings -------------------------------------------------------------------------


def _rewrite_entry(filer: Filer, name: str, **changes) -> None:
    rf = RegistryFile(filer.local_dir, "local")
    reg = rf.read()
    reg.entries[name] = reg.entries[name]._replace(**changes)
    rf.write(reg)


def test_load_does_not_warn_when_versions_match(filer):
    filer.dump(np.arange(3), "arr")
    _rewrite_entry(filer, "arr", python=".".join(map(str, sys.version_info[:2])) + ".0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert filer.load("arr").tolist() == [0, 1, 2]


def test_load_warns_about_another_python_version(filer):
    filer.dump({"v": 1}, "my_model")
    _rewrite_entry(filer, "my_model", python="3.8.10")
    with pytest.warns(VersionMismatchWarning, match=r"Python 3\.8\.10") as record:
        assert filer.load("my_model") == {"v": 1}
    assert record[0].filename == __file__  # points at the caller's line


def test_load_warns_about_another_library_version(filer):
    filer.dump(np.arange(3), "arr")
    _rewrite_entry(filer, "arr", library={"name": "numpy", "version": "0.0.1"})
    with pytest.warns(VersionMismatchWarning, match=r"numpy 0\.0\.1.*" + np.__version__):
        filer.load("arr")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("remote_type", ["ftp", "S3", "../s3", "", "local/../s3"])
def test_unknown_remote_type(tmp_path, remote_type):
    with pytest.raises(UnknownRemoteTypeError) as info:
        Filer(tmp_path, str(tmp_path), remote_type=remote_type)
    assert "local, s3" in str(info.value)


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("method", ["dump", "load", "push", "remove"])
def test_bad_names_are_refused_by_every_method(tmp_path, filer, local_dir, name, method):
    filer.dump(1, "good")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    call = {
        "dump": lambda: filer.dump({"v": 1}, name),
        "load": lambda: filer.load(name),
        "push": lambda: filer.push(name),
        "remove": lambda: filer.remove(name),
    }[method]
    with pytest.raises(InvalidNameError):
        call()
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and ".model_filer" not in p.parts] == []
    assert [e.name for e in filer.list_files()] == ["good"]


@pytest.mark.parametrize("name", [None, 3, b"bytes"])
def test_non_string_names_are_refused(filer, name):
    with pytest.raises(InvalidNameError, match="must be a string"):
        filer.dump({"v": 1}, name)


def test_an_unreadable_registry_fails_at_construction(local_dir, remote_dir):
    local_dir.mkdir()
    (local_dir / REGISTRY).write_text("<<<<<<< HEAD\nformat: 1\n=======\n>>>>>>> x\n")
    with pytest.raises(RegistryError, match="conflict"):
        Filer(local_dir, str(remote_dir), remote_type="local")


def test_an_s3_registry_content_in_a_local_registry_file_is_refused(tmp_path, filer):
    filer.dump(1, "m")
    text = filer.registry_path.read_text().replace("type: local", "type: s3")
    filer.registry_path.write_text(text)
    with pytest.raises(RegistryError, match="records remote type 's3'"):
        Filer(filer.local_dir, filer.remote.address, remote_type="local")


# -- concurrency ------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    from model_filer import Filer
    local_dir, remote_dir, worker, start_at = sys.argv[1:]
    while time.time() < float(start_at):
        time.sleep(0.005)
    filer = Filer(local_dir, remote_dir, remote_type="local")
    for j in range(10):
        filer.dump({"worker": int(worker), "j": j}, f"w{worker}_m{j}", push=(j % 2 == 0))
    """
)


def test_four_processes_dumping_into_one_folder_at_once(local_dir, remote_dir):
    import time

    start_at = str(time.time() + 2.0)  # all four start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(local_dir), str(remote_dir), str(i), start_at],
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    filer = Filer(local_dir, str(remote_dir), remote_type="local")
    entries = filer.list_files()
    assert len(entries) == 40
    for entry in entries:
        worker, j = int(entry.name[1]), int(entry.name.split("_m")[1])
        assert entry.state == ("synced" if j % 2 == 0 else "local")
        assert filer.load(entry.name) == {"worker": worker, "j": j}
    assert temps(local_dir) == []
    assert sorted(p.name for p in local_dir.glob("*.pkl")) == sorted(
        f"{e.name}.pkl" for e in entries
    )


def test_readme_says_a_local_remote_folder_must_exist() -> None:
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    assert "must already exist" in readme


def test_status_and_verify_are_filer_methods(filer, local_dir):
    """What ``model-filer status`` and ``verify`` print, as data a notebook can use."""
    filer.dump({"v": 1}, "current", push=True)
    filer.dump({"v": 2}, "gone", push=True)
    filer.dump({"v": 3}, "lost")
    filer.dump({"v": 4}, "copied")
    filer.dump({"v": 5}, "damaged")
    filer.model_path("gone").unlink()
    filer.model_path("lost").unlink()
    copied = filer.model_path("copied")
    shutil.copyfile(copied, local_dir / "copy")
    os.replace(local_dir / "copy", copied)  # the same bytes under a new inode: not yet known
    damaged = filer.model_path("damaged")
    data = bytearray(damaged.read_bytes())
    data[-5] ^= 0xFF
    damaged.unlink()  # (a link to the store's read-only object: replaced, not written)
    damaged.write_bytes(data)
    status = {s.entry.name: s.where for s in filer.status()}
    assert status == {
        "current": "present",
        "gone": "not downloaded",
        "lost": "missing",
        "copied": "unverified",
        "damaged": "unverified",
    }
    [bad] = filer.verify()
    assert (bad.entry.name, bad.path, bad.sha256) == ("damaged", damaged, sha_of(damaged))
    assert {s.entry.name: s.where for s in filer.status()}["copied"] == "present"  # learnt
