"""filer.batch(): many dumps, one registry write, all or nothing."""

from __future__ import annotations

import faulthandler
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from model_filer import BatchError, Filer, ModelExistsError, TransferError
from model_filer.local.folder import ModelFolder
from model_filer.registry.file import RegistryFile


@pytest.fixture
def filer(tmp_path: Path, remote: Path) -> Filer:
    return Filer(tmp_path / "models", str(remote), "local")


def staged(filer: Filer) -> list[str]:
    folder = filer.local_dir / ".model_filer" / "staged"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def held(filer: Filer) -> list[str]:
    """The dumps a batch holds (or a killed one left): owner-tagged temp files."""
    folder = filer.local_dir / ".model_filer" / "tmp"
    return sorted(p.name for p in folder.glob("*.batch.tmp")) if folder.is_dir() else []


@pytest.fixture
def watchdog() -> Iterator[None]:
    """A broken guard would make the batch's thread wait forever on its own lock: end the
    run with a traceback instead of hanging it."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def count_writes(filer: Filer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writes: list[int] = []
    real = RegistryFile.write

    def counted(self: RegistryFile, reg: object) -> None:
        writes.append(1)
        real(self, reg)  # type: ignore[arg-type]

    monkeypatch.setattr(RegistryFile, "write", counted)
    return writes


def test_a_batch_writes_the_registry_once(filer, monkeypatch):
    filer.dump({"v": -1}, "before")
    writes = count_writes(filer, monkeypatch)
    with filer.batch():
        for i in range(30):
            filer.dump({"v": i}, f"m{i:02d}")
        assert not filer.model_path("m00").exists()  # in place when the block ends
        assert len(held(filer)) == 30 and staged(filer) == []
        assert not filer.folder.interrupted()  # readers elsewhere take no lock meanwhile
    assert len(writes) == 1
    # Checked before any read (a read would run the recovery, which could hide a gap):
    assert staged(filer) == [] and held(filer) == []
    assert all(filer.model_path(f"m{i:02d}").exists() for i in range(30))
    assert os.stat(filer.model_path("m05")).st_nlink == 2  # linked to the store's object
    assert sorted(e.name for e in filer.list_files()) == ["before"] + [
        f"m{i:02d}" for i in range(30)
    ]
    assert [filer.load(f"m{i:02d}") for i in (0, 29)] == [{"v": 0}, {"v": 29}]


def test_an_empty_batch_writes_nothing(filer, monkeypatch):
    filer.dump({"v": 1}, "a")
    writes = count_writes(filer, monkeypatch)
    with filer.batch():
        pass
    assert writes == []


def test_a_batch_that_raises_records_none_of_its_dumps(filer):
    filer.dump({"v": 1}, "keep")
    before = filer.registry_path.read_bytes()
    with pytest.raises(RuntimeError, match="stop"), filer.batch():
        filer.dump({"v": 2}, "a")
        filer.dump({"v": 3}, "b")
        raise RuntimeError("stop")
    assert staged(filer) == [] and held(filer) == []  # cleaned up at once
    assert not filer.folder.interrupted()
    assert filer.registry_path.read_bytes() == before
    assert [e.name for e in filer.list_files()] == ["keep"]
    assert not filer.model_path("a").exists() and not filer.model_path("b").exists()
    filer.dump({"v": 4}, "a")  # the names are free again
    assert filer.load("a") == {"v": 4}


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.load("before"),
        lambda f: f.list_files(),
        lambda f: f.push("before"),
        lambda f: f.remove("before"),
        lambda f: f.show_files(),
    ],
    ids=["load", "list_files", "push", "remove", "show_files"],
)
def test_only_dump_runs_inside_a_batch(filer, call, watchdog):
    filer.dump({"v": 0}, "before")
    with filer.batch():
        filer.dump({"v": 1}, "inside")
        with pytest.raises(BatchError, match="after the with-block"):
            call(filer)
        filer.dump({"v": 2}, "after-the-refusal")  # the batch goes on
    names = [e.name for e in filer.list_files()]
    assert names == ["after-the-refusal", "before", "inside"]


def test_batches_do_not_nest(filer, watchdog):
    with filer.batch(), pytest.raises(BatchError, match="do not nest"), filer.batch():
        pass


@pytest.mark.parametrize("spelling", ["dotdot", "symlink"])
def test_another_filer_of_the_folder_is_refused_in_the_batch_thread(
    filer, remote, tmp_path, spelling, watchdog
):
    """Another Filer reads the file as it is, as another process would; a change it would
    make waits on the lock this thread holds, so it is refused instead of hanging."""
    filer.dump({"v": 0}, "before")
    spelled_otherwise = filer.local_dir / ".." / filer.local_dir.name
    if spelling == "symlink":
        spelled_otherwise = tmp_path / "link"
        spelled_otherwise.symlink_to(filer.local_dir)
    with filer.batch():
        filer.dump({"v": 1}, "inside")
        other = Filer(spelled_otherwise, str(remote), "local")
        assert [e.name for e in other.list_files()] == ["before"]
        with pytest.raises(BatchError, match="after the with-block"):
            other.dump({"v": 2}, "refused")
        with pytest.raises(BatchError, match="after the with-block"):
            other.remove("before")
    assert [e.name for e in filer.list_files()] == ["before", "inside"]


def test_a_name_dumped_twice_in_a_batch(filer):
    with filer.batch():
        filer.dump({"v": 1}, "twice")
        with pytest.raises(ModelExistsError):
            filer.dump({"v": 2}, "twice")
        filer.dump({"v": 3}, "twice", overwrite=True)
        assert len(held(filer)) == 1  # the first one's file is dropped at once
    assert staged(filer) == [] and held(filer) == []
    assert filer.load("twice") == {"v": 3}
    assert len(filer.list_files()) == 1


def test_push_in_a_batch_happens_after_the_write(filer, remote):
    with filer.batch():
        filer.dump({"v": 1}, "pushed", push=True)
        filer.dump({"v": 2}, "kept")
        filer.dump({"v": 3}, "changed-its-mind", push=True)
        filer.dump({"v": 4}, "changed-its-mind", overwrite=True)  # the last dump says
        assert not any(remote.rglob("*.pkl"))  # nothing is uploaded before the block ends
    states = {e.name: e.state for e in filer.list_files()}
    assert states == {"pushed": "synced", "kept": "local", "changed-its-mind": "local"}


def test_a_failed_push_after_the_batch_leaves_its_dumps_recorded(filer, remote):
    with pytest.raises(TransferError), filer.batch():
        filer.dump({"v": 1}, "a", push=True)
        shutil.rmtree(remote)  # the share is gone by the time the block ends
        remote.write_text("not a folder")
    assert {e.name: e.state for e in filer.list_files()} == {"a": "local"}
    assert filer.load("a") == {"v": 1}


def test_a_failure_after_the_write_is_finished_by_the_recovery(filer, monkeypatch):
    real, calls = ModelFolder.install, []

    def flaky(self, src, entry, cache=None):
        calls.append(entry.name)
        if len(calls) == 2:
            raise OSError(5, "Input/output error (injected)")
        real(self, src, entry, cache)

    monkeypatch.setattr(ModelFolder, "install", flaky)
    with pytest.raises(OSError, match="injected"), filer.batch():
        for name in ("a", "b", "c"):
            filer.dump({"v": name}, name)
    monkeypatch.setattr(ModelFolder, "install", real)
    # Finished at once, before any read could run the recovery:
    assert all(filer.model_path(n).exists() for n in ("a", "b", "c"))
    assert staged(filer) == [] and held(filer) == []
    assert {e.name for e in filer.list_files()} == {"a", "b", "c"}  # recorded: the write was made
    assert [filer.load(n) for n in ("a", "b", "c")] == [{"v": "a"}, {"v": "b"}, {"v": "c"}]
    assert staged(filer) == [] and held(filer) == []


def test_dumps_from_a_thread_pool_join_the_batch(filer, monkeypatch, watchdog):
    filer.dump({"v": 0}, "first")
    writes = count_writes(filer, monkeypatch)
    with filer.batch(), ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: filer.dump({"v": i}, f"t{i:02d}"), range(20)))
        assert len(held(filer)) == 20  # held by the batch, not committed one by one
    assert len(writes) == 1
    assert {e.name for e in filer.list_files()} == {"first"} | {f"t{i:02d}" for i in range(20)}


def test_another_threads_read_sees_the_file_without_waiting(filer, watchdog):
    filer.dump({"v": 0}, "first")
    seen: list[set[str]] = []
    with filer.batch():
        filer.dump({"v": 1}, "inside")
        reader = threading.Thread(target=lambda: seen.append({e.name for e in filer.list_files()}))
        reader.start()  # a plain read of the file: it needs no lock
        reader.join(timeout=120)
    assert seen == [{"first"}]  # what the file held: the batch is not recorded yet


def test_a_batch_killed_midway_leaves_the_registry_as_it_was(filer, tmp_path, remote):
    filer.dump({"v": 0}, "before")
    before = filer.registry_path.read_bytes()
    code = f"""
import os
from model_filer import Filer
filer = Filer({str(filer.local_dir)!r}, {str(remote)!r}, "local")
with filer.batch():
    for i in range(5):
        filer.dump({{"v": i}}, f"m{{i}}")
    os._exit(9)  # killed before the block ends: no write, no clean-up
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, timeout=300)
    assert result.returncode == 9
    assert len(held(filer)) == 5 and staged(filer) == []  # a dead process's temp files
    assert filer.registry_path.read_bytes() == before
    again = Filer(filer.local_dir, str(remote), "local")
    assert [e.name for e in again.list_files()] == ["before"]
    again.dump({"v": 1}, "after")  # the next change removes the dead process's files
    assert held(again) == [] and not again.model_path("m0").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_in_a_batch_is_not_in_it(filer):
    with filer.batch():
        filer.dump({"v": 1}, "parent")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            # Not in the batch: it reads the registry (refused in the batch's thread), and
            # sees the file as it is.
            try:
                names = [e.name for e in filer.list_files()]
            except BatchError:
                os._exit(2)
            os._exit(0 if names == [] else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e.name for e in filer.list_files()] == ["parent"]


def test_a_batch_from_another_thread_waits_for_the_open_one(filer, watchdog):
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with filer.batch():
                filer.dump({"v": "second"}, "second")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with filer.batch():
        filer.dump({"v": "first"}, "first")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and errors == []  # waiting (a refusal would have ended it)
    thread.join(timeout=120)
    assert not thread.is_alive() and errors == []
    assert {e.name for e in filer.list_files()} == {"first", "second"}


def test_a_batch_does_not_capture_the_folders_other_registry(filer, s3_address, watchdog):
    """A folder may hold an S3 registry beside the local one: a dump to the other goes to
    its own registry, and waits for the batch only because the two share the folder's lock."""
    s3 = Filer(filer.local_dir, s3_address, "s3")
    errors: list[BaseException] = []

    def dump_to_s3() -> None:
        try:
            s3.dump({"v": "s3"}, "in-s3")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with filer.batch():
        filer.dump({"v": 1}, "in-batch")
        assert s3.list_files() == []  # reads of the other registry are not refused
        with pytest.raises(BatchError):
            s3.dump({"v": 2}, "refused")  # a change would wait on the lock this thread holds
        thread = threading.Thread(target=dump_to_s3)
        thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and errors == []
    assert [e.name for e in filer.list_files()] == ["in-batch"]
    assert [e.name for e in s3.list_files()] == ["in-s3"]


def test_case_twins_are_refused_across_the_threads_of_a_batch(filer, watchdog):
    filer.dump({"v": 0}, "Model")
    with filer.batch(), ThreadPoolExecutor(2) as pool:
        pool.submit(filer.dump, {"v": 1}, "Other").result()
        with pytest.raises(ModelExistsError, match="differs only in case"):
            filer.dump({"v": 2}, "OTHER")
        with pytest.raises(ModelExistsError, match="differs only in case"):
            filer.dump({"v": 3}, "model")
    assert {e.name for e in filer.list_files()} == {"Model", "Other"}
