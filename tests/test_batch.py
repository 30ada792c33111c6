"""filer.batch(): many dumps, one registry write, all or nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from model_filer import BatchError, Filer, ModelExistsError
from model_filer.registry import RegistryFile


@pytest.fixture
def filer(tmp_path: Path, remote: Path) -> Filer:
    return Filer(tmp_path / "models", str(remote), "local")


def staged(filer: Filer) -> list[str]:
    folder = filer.local_dir / ".model_filer" / "staged"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


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
    assert len(writes) == 1
    assert sorted(e.name for e in filer.list_files()) == ["before"] + [
        f"m{i:02d}" for i in range(30)
    ]
    assert [filer.load(f"m{i:02d}") for i in (0, 29)] == [{"v": 0}, {"v": 29}]
    assert staged(filer) == [] and not filer.folder.interrupted()
    assert os.stat(filer.model_path("m05")).st_nlink == 2  # linked to the store's object


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
    assert staged(filer) == [] and not filer.folder.interrupted()  # cleaned up at once
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
def test_only_dump_runs_inside_a_batch(filer, call):
    filer.dump({"v": 0}, "before")
    with filer.batch():
        filer.dump({"v": 1}, "inside")
        with pytest.raises(BatchError, match="after the with-block"):
            call(filer)
        filer.dump({"v": 2}, "after-the-refusal")  # the batch goes on
    names = [e.name for e in filer.list_files()]
    assert names == ["after-the-refusal", "before", "inside"]


def test_batches_do_not_nest(filer):
    with filer.batch(), pytest.raises(BatchError, match="do not nest"), filer.batch():
        pass


def test_a_name_dumped_twice_in_a_batch(filer):
    with filer.batch():
        filer.dump({"v": 1}, "twice")
        with pytest.raises(ModelExistsError):
            filer.dump({"v": 2}, "twice")
        filer.dump({"v": 3}, "twice", overwrite=True)
    assert filer.load("twice") == {"v": 3}
    assert len(filer.list_files()) == 1 and staged(filer) == []


def test_push_in_a_batch_happens_after_the_write(filer, remote):
    with filer.batch():
        filer.dump({"v": 1}, "pushed", push=True)
        filer.dump({"v": 2}, "kept")
        assert not any(remote.rglob("*.pkl"))  # nothing is uploaded before the block ends
    states = {e.name: e.state for e in filer.list_files()}
    assert states == {"pushed": "synced", "kept": "local"}


def test_another_thread_waits_for_the_batch_and_nothing_is_lost(filer):
    filer.dump({"v": 0}, "first")
    started, errors = threading.Event(), []

    def other() -> None:
        started.set()
        try:
            filer.dump({"v": "thread"}, "from-thread")  # waits for the registry's lock
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with filer.batch():
        thread = threading.Thread(target=other)
        thread.start()
        started.wait()
        filer.dump({"v": "batch"}, "from-batch")
    thread.join(timeout=120)
    assert not thread.is_alive() and errors == []
    assert {e.name for e in filer.list_files()} == {"first", "from-batch", "from-thread"}


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
    result = subprocess.run([sys.executable, "-c", code], check=False)
    assert result.returncode == 9
    assert len(staged(filer)) == 5  # what a killed batch leaves behind
    assert filer.registry_path.read_bytes() == before
    again = Filer(filer.local_dir, str(remote), "local")
    assert [e.name for e in again.list_files()] == ["before"]  # the recovery ran first
    assert staged(again) == [] and not again.model_path("m0").exists()
