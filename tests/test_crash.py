"""Crash consistency: SIGKILL a writer at random moments, then check that nothing was lost.

Each test forks a child that loops over one kind of operation (dump, dump with
``overwrite=True``, push, a download into a fresh folder, a registry write) and kills it with
SIGKILL after a seeded random delay, many times over. After each kill the parent checks that
the registry parses and that what the child left is consistent or recoverable, then runs the
next operation itself (which recovers under the registry lock: it completes or rolls back the
interrupted one and removes the dead child's temp files), and checks that:

* the interrupted operation was either completed or rolled back, never half done;
* every entry's local file, when present, has the registry's size and sha256 (re-hashed here,
  never trusted from model_filer's cache), and every ``local`` entry still has its file;
* every ``synced`` entry's object is on the remote, whole;
* no temp file or staged file is left behind.

The figures (kills per test, where they landed) are in docs/reliability.md.
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer
from model_filer.fs.tempfiles import remove_dead_temps, remove_dead_temps_in, temp_path
from model_filer.local.store import ObjectStore
from model_filer.registry.file import Entry, Registry, RegistryFile, dumps, parse
from model_filer.remotes.local import ID_FILE
from model_filer.storage import storage_key
from model_filer.storage.stored import encode
from tests.support.chunking import (
    check_remote_whole,
    check_synced_present,
    model_bytes,
    small_chunks,
)
from tests.support.machines import another_machine


def seeded(seed: int) -> random.Random:
    """A reproducible RNG for test data and timing (not for secrets)."""
    return random.Random(seed)  # noqa: S311


SEED = 1729
MB = 1 << 20
REG = ".local_registry"

#: Kills per test; the sum is the figure docs/reliability.md quotes (at least 100 in all).
KILLS = {
    "dump": 30,
    "overwrite": 30,
    "push_local": 20,
    "push_s3": 10,
    "push_chunked_local": 8,
    "push_chunked_s3": 3,
    "download_local": 20,
    "download_s3": 10,
    "download_chunked_local": 8,
    "download_chunked_s3": 3,
    "registry_write": 15,
    "registry_via_filer": 15,
}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and SIGKILL")

Mark = Callable[[bytes, int], None]


# -- killing a child at a random moment ---------------------------------------------------------
@dataclass
class Killed:
    """What a killed child reported: operations started and finished, and how it ended."""

    pid: int
    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    killed: bool = False

    @property
    def interrupted(self) -> int | None:
        """The operation the kill landed in, or None when it landed between two."""
        pending = [i for i in self.started if i not in set(self.finished)]
        return pending[-1] if pending else None


def kill_after(loop: Callable[[Mark], None], delay: float) -> Killed:
    """Fork a child running ``loop``, SIGKILL it ``delay`` s after its first operation starts.

    ``loop(mark)`` calls ``mark(b"S", i)`` before and ``mark(b"E", i)`` after operation ``i``.
    A child that raises sends its traceback, and the test fails with it.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        try:
            loop(lambda tag, i: os.write(w, struct.pack("<cq", tag, i)) and None)
            os.write(w, struct.pack("<cq", b"D", 0))
            time.sleep(60)
        except BaseException:
            os.write(w, b"X" + traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        first = pipe.read(9)
        if first[:1] != b"X":
            time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        data = first + pipe.read()
    result = Killed(pid, killed=os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
    pos = 0
    while pos + 9 <= len(data):
        if data[pos : pos + 1] == b"X":
            pytest.fail(f"the child failed before it was killed:\n{data[pos + 1 :].decode()}")
        tag, index = struct.unpack("<cq", data[pos : pos + 9])
        if tag == b"S":
            result.started.append(index)
        elif tag == b"E":
            result.finished.append(index)
        pos += 9
    if data[pos : pos + 1] == b"X":
        pytest.fail(f"the child failed before it was killed:\n{data[pos + 1 :].decode()}")
    assert result.killed, "the child was not killed by SIGKILL"
    assert result.started, "the child never started an operation"
    return result


# -- models and registries ----------------------------------------------------------------------
def model(i: int, size: int = 2 * MB) -> dict[str, Any]:
    """A few MB that take a few ms to pickle, different for every ``i``."""
    return {"i": i, "blob": seeded(i).randbytes(size), "ints": list(range(i, i + 50_000))}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def filler_entries(n: int, prefix: str = "e") -> list[Entry]:
    """Synced entries pointing at nothing: they make the registry as big as a real one."""
    return [
        Entry(
            name=f"{prefix}{i}",
            state="synced",
            sha256=sha256(f"{prefix}{i}".encode()),
            size=1000 + i,
            serializer="pickle-5",
            created="2024-01-01T00:00:00+00:00",
            python="3.11.9",
            key=f"{prefix}{i}/{sha256(f'{prefix}{i}'.encode())}.pkl",
        )
        for i in range(n)
    ]


def write_registry(folder: Path, remote: str, entries: list[Entry], rtype: str = "local") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    reg = Registry(rtype, remote, {e.name: e for e in entries})
    (folder / f".{rtype}_registry").write_bytes(dumps(reg))


def read_registry(folder: Path, rtype: str = "local") -> Registry:
    path = folder / f".{rtype}_registry"
    return parse(path.read_bytes(), str(path))


def internal_files(folder: Path, sub: str) -> list[str]:
    path = folder / ".model_filer" / sub
    return sorted(os.listdir(path)) if path.is_dir() else []


def owner_pid(temp_name: str) -> int:
    return int(temp_name.split("-")[1])


def store_temps() -> list[str]:
    """The local object store's temp files: a dump pickles into the store."""
    path = ObjectStore().root / "tmp"
    return sorted(os.listdir(path)) if path.is_dir() else []


def check_store() -> None:
    """Every object in the local object store hashes to its name, whatever the kill hit."""
    store = ObjectStore()
    for sha, _ in store.objects():
        assert sha256(store.object_path(sha).read_bytes()) == sha, f"object {sha} is bad"


# -- the invariants ------------------------------------------------------------------------------
def check_after_kill(folder: Path, rtype: str = "local") -> Registry:
    """Right after a kill, before any recovery: the registry parses, and every entry's file is
    either right or recoverable from a staged file that carries the entry's sha256."""
    check_store()
    reg = read_registry(folder, rtype)
    staged = set(internal_files(folder, "staged"))
    for name, entry in reg.entries.items():
        path = folder / f"{name}.pkl"
        recoverable = f"{name}.{entry.sha256}" in staged
        if entry.state == "local":
            assert path.exists() or recoverable, f"local model {name!r} lost by the kill"
        if path.exists() and not recoverable:
            data = path.read_bytes()
            assert (len(data), sha256(data)) == (entry.size, entry.sha256), name
    return reg


def check_recovered(folder: Path, rtype: str = "local", after_a_write: bool = True) -> Registry:
    """After the next operation: every file matches, no temp file left and, once a write ran
    (which recovers under the registry lock), nothing staged either."""
    reg = read_registry(folder, rtype)
    for name, entry in reg.entries.items():
        path = folder / f"{name}.pkl"
        if entry.state == "local":
            assert path.exists(), f"local model {name!r} lost"
        if path.exists():
            data = path.read_bytes()
            assert len(data) == entry.size, f"{name}: size differs from the registry"
            assert sha256(data) == entry.sha256, f"{name}: sha256 differs from the registry"
    if after_a_write:
        staged = internal_files(folder, "staged")
        assert staged == [], "a staged file was neither installed nor removed"
    assert internal_files(folder, "tmp") == [], "a dead writer's temp file was not cleaned up"
    return reg


MID_WRITE = (
    "while pickling to a temp file",
    "staged, registry not yet",
    "registry written, file not yet renamed",
)


def landed(folder: Path, pid: int, reg: Registry) -> str:
    """Where in a dump the kill landed, from what the child left behind."""
    tmp = [n for n in internal_files(folder, "tmp") + store_temps() if owner_pid(n) == pid]
    staged = internal_files(folder, "staged")
    if staged:
        name, _, sha = staged[0].rpartition(".")
        entry = reg.entries.get(name)
        written = entry is not None and entry.sha256 == sha
        return "registry written, file not yet renamed" if written else "staged, registry not yet"
    if tmp:
        return "while pickling to a temp file"
    return "between the file writes"


@pytest.fixture(scope="module")
def kill_counts() -> Iterator[collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    yield counts
    print(f"\nSIGKILLs: {sum(counts.values())} in all: {dict(counts)}")


@pytest.fixture
def chunky(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models of ~1-2 MB cut into dozens of chunks (forked children inherit it)."""
    small_chunks(monkeypatch)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote"
    path.mkdir()
    return path


# -- dump -----------------------------------------------------------------------------------------
def test_kill_during_dump_of_new_models(tmp_path, remote, kill_counts):
    rng = seeded(SEED)
    folder = tmp_path / "models"
    write_registry(folder, str(remote), filler_entries(200))  # a registry worth rewriting
    filer = Filer(folder, str(remote), "local")
    outcomes: collections.Counter[str] = collections.Counter()
    next_i = 0
    for round_ in range(KILLS["dump"]):

        def loop(mark: Mark, start: int = next_i) -> None:
            child = Filer(folder, str(remote), "local")
            for i in range(start, start + 1000):
                mark(b"S", i)
                child.dump(model(i), f"n{i}")
                mark(b"E", i)

        killed = kill_after(loop, rng.uniform(0.0, 0.05))
        kill_counts["dump"] += 1
        outcomes[landed(folder, killed.pid, check_after_kill(folder))] += 1

        filer.dump({"parent": round_}, f"p{round_}")  # the next operation recovers
        reg = check_recovered(folder)
        for i in killed.finished:
            assert filer.load(f"n{i}") == model(i)
        if killed.interrupted is not None:
            name = f"n{killed.interrupted}"
            if name in reg.entries:
                assert filer.load(name) == model(killed.interrupted)
                outcomes["interrupted dump completed"] += 1
            else:
                assert not (folder / f"{name}.pkl").exists()
                outcomes["interrupted dump rolled back"] += 1
        assert filer.load(f"p{round_}") == {"parent": round_}
        filer.remove_locals()  # keep the folder small (the filler entries are synced)
        next_i = max(killed.started) + 1
    print(f"\ndump kills landed: {dict(outcomes)}")
    assert sum(outcomes[k] for k in MID_WRITE) > 0  # kills did land mid-write


def test_kill_during_dump_with_overwrite(tmp_path, remote, kill_counts):
    rng = seeded(SEED + 1)
    folder = tmp_path / "models"
    write_registry(folder, str(remote), filler_entries(200))
    filer = Filer(folder, str(remote), "local")
    names = ["w0", "w1", "w2"]
    current = {}  # name -> the version known to be in place
    for v, name in enumerate(names):
        filer.dump(model(v), name)
        current[name] = v
    outcomes: collections.Counter[str] = collections.Counter()
    next_v = len(names)
    for _ in range(KILLS["overwrite"]):

        def loop(mark: Mark, start: int = next_v) -> None:
            child = Filer(folder, str(remote), "local")
            for v in range(start, start + 1000):
                mark(b"S", v)
                child.dump(model(v), names[v % 3], overwrite=True)
                mark(b"E", v)

        killed = kill_after(loop, rng.uniform(0.0, 0.05))
        kill_counts["overwrite"] += 1
        outcomes[landed(folder, killed.pid, check_after_kill(folder))] += 1
        for v in killed.finished:
            current[names[v % 3]] = v

        loaded = {name: filer.load(name) for name in names}  # the next operations
        check_recovered(folder, after_a_write=False)  # see the test after this one
        for name in names:
            expected = [current[name]]
            if killed.interrupted is not None and names[killed.interrupted % 3] == name:
                expected.append(killed.interrupted)  # completed or rolled back, nothing else
            assert loaded[name]["i"] in expected, f"{name}: a version that was never dumped"
            assert loaded[name] == model(loaded[name]["i"])
            if loaded[name]["i"] != current[name]:
                outcomes["interrupted overwrite completed"] += 1
            elif len(expected) == 2:
                outcomes["interrupted overwrite rolled back"] += 1
            current[name] = loaded[name]["i"]
        filer.dump({"after": next_v}, "after", overwrite=True)  # a write: recovery under lock
        check_recovered(folder)
        next_v = max(killed.started) + 1
    print(f"\noverwrite kills landed: {dict(outcomes)}")
    assert sum(outcomes[k] for k in MID_WRITE) > 0


def test_a_load_after_a_killed_dump_removes_its_staged_copy(tmp_path, remote):
    filer = Filer(tmp_path / "models", str(remote), "local")
    filer.dump(model(0), "m")
    # What the overwrite test's kills leave when they land between the staging rename and
    # the registry write: the new bytes staged under their sha256, the registry unchanged.
    staged = tmp_path / "models" / ".model_filer" / "staged"
    staged.mkdir(parents=True, exist_ok=True)
    data = seeded(1).randbytes(MB)
    (staged / f"m.{sha256(data)}").write_bytes(data)
    assert filer.load("m") == model(0)
    assert internal_files(tmp_path / "models", "staged") == []


# -- push -----------------------------------------------------------------------------------------
def _push_rounds(
    filer: Filer,
    folder: Path,
    rtype: str,
    rounds: int,
    max_delay: float,
    kill_counts: collections.Counter[str],
    label: str,
) -> collections.Counter[str]:
    """Dump 3 local models, kill a child pushing them, check, let the parent push the rest.

    After each kill every object of the chunked layout on the remote is whole, and every
    ``synced`` entry's bytes (its object, or its manifest and all its chunks) are there."""
    rng = seeded(SEED + len(label))

    def object_bytes(key: str) -> bytes | None:
        return model_bytes(filer.remote, key)

    outcomes: collections.Counter[str] = collections.Counter()
    for round_ in range(rounds):
        names = [f"q{round_}-{j}" for j in range(3)]
        for j, name in enumerate(names):
            filer.dump(model(1000 * round_ + j, MB), name)

        def loop(mark: Mark, names: list[str] = names) -> None:
            child = Filer(folder, filer.remote.address, rtype, storage=filer.transfers.storage)
            child.remote.size_of("warm/up.pkl")  # connect before the first kill can land
            for j, name in enumerate(names):
                mark(b"S", j)
                child.push(name)
                mark(b"E", j)

        killed = kill_after(loop, rng.uniform(0.0, max_delay))
        kill_counts[label] += 1
        reg = check_after_kill(folder, rtype)
        check_remote_whole(filer.remote)
        check_synced_present(filer.remote, reg.entries)
        for j, name in enumerate(names):
            entry = reg.entries[name]
            if j in killed.finished:
                assert entry.state == "synced"
            if entry.state == "synced":  # never synced unless the object is there, whole
                data = object_bytes(entry.key or "")
                assert data is not None, f"{name} says synced but its object is missing"
                assert (len(data), sha256(data)) == (entry.size, entry.sha256)
        if killed.interrupted is not None:
            state = reg.entries[names[killed.interrupted]].state
            outcomes[f"interrupted push left the entry {state}"] += 1

        assert sorted(filer.push_all()) == sorted(  # the next operation
            n for n in names if reg.entries[n].state == "local"
        )
        reg = check_recovered(folder, rtype)
        for name in names:
            entry = reg.entries[name]
            assert entry.state == "synced"
            data = object_bytes(entry.key or "")
            assert data is not None and sha256(data) == entry.sha256
            assert filer.load(name) == model(1000 * round_ + names.index(name), MB)
            filer.remove(name)  # local file and entry only; keeps the folder small
    return outcomes


def _debris(remote: Path) -> list[Path]:
    """Files on a folder remote that are no object: what a killed push left."""
    return [p for p in remote.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_kill_during_push_to_a_local_remote(tmp_path, remote, kill_counts):
    folder = tmp_path / "models"
    filer = Filer(folder, str(remote), "local")
    outcomes = _push_rounds(
        filer, folder, "local", KILLS["push_local"], 0.015, kill_counts, "push_local"
    )
    print(f"\nlocal push kills: {dict(outcomes)}; temp files left: {len(_debris(remote))}")


def test_kill_during_a_chunked_push_to_a_local_remote(tmp_path, remote, kill_counts, chunky):
    folder = tmp_path / "models"
    filer = Filer(folder, str(remote), "local")
    label = "push_chunked_local"
    outcomes = _push_rounds(filer, folder, "local", KILLS[label], 0.06, kill_counts, label)
    print(f"\nchunked local push kills: {dict(outcomes)}; temp files: {len(_debris(remote))}")


@pytest.mark.parametrize("storage", ["chunked", "plain"])
def test_a_push_killed_mid_copy_leaves_no_temp_file_on_the_local_remote(tmp_path, remote, storage):
    filer = Filer(tmp_path / "models", str(remote), "local", storage=storage)
    filer.dump(model(0, MB), "m")
    [entry] = filer.list_files()
    data = filer.model_path("m").read_bytes()
    if storage == "plain":
        key, stored = f"m/{entry.sha256}.pkl", filer.model_path("m")
    else:  # where the push stores it, in the form it stores
        key, stored = storage_key("objects", entry.sha256), tmp_path / "stored"
        stored.write_bytes(b"".join(bytes(part) for part in encode(data)))

    def upload_and_hang() -> None:
        def progress(n: int) -> None:
            os.write(w, b"1")
            time.sleep(60)  # the copy is written, not yet renamed: the kill lands here

        filer.remote.upload(stored, key, entry.sha256, progress)

    r, w = os.pipe()
    pid = _fork(upload_and_hang)
    assert os.read(r, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)

    filer.push("m")  # the next operation succeeds
    assert model_bytes(filer.remote, key) == data
    files = [p.name for p in remote.rglob("*") if p.is_file() and p.name != ID_FILE]
    assert files == [key.rpartition("/")[2]]


def test_kill_during_push_to_s3(tmp_path, s3_address, kill_counts):
    folder = tmp_path / "models"
    filer = Filer(folder, s3_address, storage="plain")  # today's layout stays covered
    outcomes = _push_rounds(filer, folder, "s3", KILLS["push_s3"], 0.15, kill_counts, "push_s3")
    print(f"\nS3 push kills: {dict(outcomes)}")


def test_kill_during_a_chunked_push_to_s3(tmp_path, s3_address, kill_counts, chunky):
    folder = tmp_path / "models"
    filer = Filer(folder, s3_address)
    label = "push_chunked_s3"
    outcomes = _push_rounds(filer, folder, "s3", KILLS[label], 0.4, kill_counts, label)
    print(f"\nchunked S3 push kills: {dict(outcomes)}")


# -- download -------------------------------------------------------------------------------
def _download_rounds(
    source: Filer,
    fresh: Path,
    rtype: str,
    rounds: int,
    max_delay: float,
    kill_counts,
    label,
    new_machine: bool = False,
) -> collections.Counter[str]:
    """Kill a child loading every model into a fresh folder; the parent loads after it.

    With ``new_machine`` each round starts from an empty local object store, so the child
    downloads (else it may link what an earlier round fetched)."""
    rng = seeded(SEED + 7 * len(label))
    names = [e.name for e in source.list_files()]
    fresh.mkdir()
    (fresh / f".{rtype}_registry").write_bytes(source.registry_path.read_bytes())
    filer = Filer(fresh, source.remote.address, rtype)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(rounds):
        order = rng.sample(range(len(names)), len(names))
        if new_machine:
            another_machine()

        def loop(mark: Mark, order: list[int] = order) -> None:
            child = Filer(fresh, source.remote.address, rtype)
            child.remote.size_of("warm/up.pkl")
            for j in order:
                mark(b"S", j)
                child.load(names[j])
                mark(b"E", j)

        killed = kill_after(loop, rng.uniform(0.0, max_delay))
        kill_counts[label] += 1
        check_after_kill(fresh, rtype)  # a file in place is whole: never a partial download
        check_remote_whole(source.remote)  # (a reader never changes the remote)
        dead_temps = [n for n in internal_files(fresh, "tmp") if owner_pid(n) == killed.pid]
        outcomes["left a temp file" if dead_temps else "left no temp file"] += 1
        if killed.interrupted is not None:
            there = (fresh / f"{names[killed.interrupted]}.pkl").exists()
            outcomes["interrupted download completed" if there else "rolled back"] += 1

        for j in order:  # the next operations: each loads, downloading what is missing
            assert filer.load(names[j]) == model(j)
        check_recovered(fresh, rtype)
        for name in names:  # a fresh clone again for the next round
            (fresh / f"{name}.pkl").unlink()
    return outcomes


def test_kill_during_download_from_a_local_remote(tmp_path, remote, kill_counts):
    source = Filer(tmp_path / "source", str(remote), "local")
    for j in range(6):
        source.dump(model(j), f"d{j}", push=True)
    outcomes = _download_rounds(
        source,
        tmp_path / "fresh",
        "local",
        KILLS["download_local"],
        0.05,
        kill_counts,
        "download_local",
    )
    print(f"\nlocal download kills: {dict(outcomes)}")


def test_kill_during_download_from_s3(tmp_path, s3_address, kill_counts):
    source = Filer(tmp_path / "source", s3_address)
    for j in range(4):
        source.dump(model(j), f"d{j}", push=True)
    outcomes = _download_rounds(
        source, tmp_path / "fresh", "s3", KILLS["download_s3"], 0.2, kill_counts, "download_s3"
    )
    print(f"\nS3 download kills: {dict(outcomes)}")


@pytest.mark.parametrize(("rtype", "models", "delay"), [("local", 6, 0.1), ("s3", 4, 0.4)])
def test_kill_during_a_chunked_download(
    request, tmp_path, kill_counts, chunky, rtype, models, delay
):
    address = str(request.getfixturevalue("remote" if rtype == "local" else "s3_address"))
    source = Filer(tmp_path / "source", address, rtype)
    for j in range(models):
        source.dump(model(j), f"d{j}", push=True)
    label = f"download_chunked_{rtype}"
    outcomes = _download_rounds(
        source, tmp_path / "fresh", rtype, KILLS[label], delay, kill_counts, label, True
    )
    print(f"\nchunked {rtype} download kills: {dict(outcomes)}")


# -- registry writes ----------------------------------------------------------------------------
def test_kill_during_a_registry_write_leaves_the_old_or_the_new_bytes(tmp_path, kill_counts):
    rng = seeded(SEED + 2)
    folder = tmp_path / "models"
    folder.mkdir()
    versions = [
        Registry("local", str(tmp_path / "remote"), {e.name: e for e in filler_entries(n)})
        for n in (1500, 1501)
    ]
    blobs = [dumps(v) for v in versions]
    (folder / REG).write_bytes(blobs[0])
    registry_file = RegistryFile(folder, "local")
    for _ in range(KILLS["registry_write"]):

        def loop(mark: Mark) -> None:
            for i in range(1, 1000):
                mark(b"S", i)
                registry_file.write(versions[i % 2])
                mark(b"E", i)

        kill_after(loop, rng.uniform(0.0, 0.2))
        kill_counts["registry_write"] += 1
        assert (folder / REG).read_bytes() in blobs  # all of the old or all of the new
    remove_dead_temps(folder)
    assert internal_files(folder, "tmp") == []


# Enough entries that the killed child is still removing them at the last kill: with the
# registry written from cached per-entry text, one removal takes about a millisecond.
FILLER = 3000


def test_kill_during_registry_changes_through_the_filer(tmp_path, remote, kill_counts):
    rng = seeded(SEED + 3)
    folder = tmp_path / "models"
    write_registry(folder, str(remote), filler_entries(FILLER))
    filer = Filer(folder, str(remote), "local")
    present = {f"e{i}" for i in range(FILLER)}
    next_i = 0
    for _ in range(KILLS["registry_via_filer"]):

        def loop(mark: Mark, start: int = next_i) -> None:
            child = Filer(folder, str(remote), "local")
            for i in range(start, FILLER):
                mark(b"S", i)
                child.remove(f"e{i}")
                mark(b"E", i)

        killed = kill_after(loop, rng.uniform(0.0, 0.12))
        kill_counts["registry_via_filer"] += 1
        names = set(check_after_kill(folder).entries)
        present -= {f"e{i}" for i in killed.finished}
        interrupted = {f"e{killed.interrupted}"} if killed.interrupted is not None else set()
        assert present - interrupted <= names <= present  # completed or rolled back, only
        present = names
        filer.dump({"after": next_i}, "after")  # the next operation
        assert set(check_recovered(folder).entries) == present | {"after"}
        filer.remove("after")
        next_i = max(killed.started) + 1


def test_the_kill_figures_docs_reliability_quotes_are_the_suites():
    """docs/reliability.md's table of kills per operation, its total and its heading are
    what KILLS makes the tests above do (the table lists the operations in KILLS's order)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    table = doc.split("| Operation killed | Kills |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    counts = [int(cells[2].strip()) for cells in rows if "In all" not in cells[1]]
    total = sum(KILLS.values())
    assert counts == list(KILLS.values())
    assert f"| **In all** | **{total}** |" in table
    assert f"## 1. Crash consistency: {total} `SIGKILL`s per run" in doc


# -- temp files of live writers -----------------------------------------------------------------
def _fork(body: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def test_cleanup_removes_dead_writers_temps_and_keeps_live_ones(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    r, w = os.pipe()

    def live_writer() -> None:
        path = temp_path(folder, "m.dump")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a model")
        os.write(w, path.name.encode())
        time.sleep(60)

    def dead_writer() -> None:
        path = temp_path(folder, "n.dump")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a crash")

    live = _fork(live_writer)
    live_name = os.read(r, 200).decode()
    dead = _fork(dead_writer)
    os.waitpid(dead, 0)
    tmp = folder / ".model_filer" / "tmp"
    foreign = tmp / f"otherhost-{dead}-0badcafe.x.dump.tmp"  # another machine on a shared drive
    foreign.write_bytes(b"not ours to judge")
    try:
        assert remove_dead_temps(folder) == 1
        assert sorted(os.listdir(tmp)) == sorted([live_name, foreign.name])
        Filer(folder, str(tmp_path / "remote"), "local").dump(1, "x")  # recovery runs too
        assert (tmp / live_name).read_bytes() == b"half a model"
    finally:
        os.kill(live, signal.SIGKILL)
        os.waitpid(live, 0)
        os.close(r)
        os.close(w)
    assert remove_dead_temps(folder) == 1  # now that its owner is dead
    assert os.listdir(tmp) == [foreign.name]


class Gate:
    """Pickles as ``bytes`` but only once the test opens the gate: a dump held mid-write."""

    def __init__(self, ready: int, go: int, payload: bytes) -> None:
        self.ready, self.go, self.payload = ready, go, payload

    def __reduce__(self) -> tuple[Any, ...]:
        os.write(self.ready, b"1")
        os.read(self.go, 1)
        return (bytes, (self.payload,))


def test_a_live_dump_survives_other_processes_recovery(tmp_path, remote):
    folder = tmp_path / "models"
    filer = Filer(folder, str(remote), "local")
    filer.dump(model(0), "first")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    head, tail = model(1), model(2)

    def slow_dump() -> None:
        child = Filer(folder, str(remote), "local")
        child.dump({"head": head, "gate": Gate(ready_w, go_r, b"middle"), "tail": tail}, "slow")

    pid = _fork(slow_dump)
    try:
        assert os.read(ready_r, 1) == b"1"  # the child is mid-pickle, its temp file half full
        tmp = ObjectStore().root / "tmp"  # a dump pickles into the local object store
        half = [n for n in os.listdir(tmp) if owner_pid(n) == pid]
        assert len(half) == 1 and (tmp / half[0]).stat().st_size > MB
        for i in range(3):  # other operations run recovery and cleanup meanwhile
            filer.dump(model(10 + i), f"other{i}")
            assert filer.load("first") == model(0)
        filer.remove("other0")
        assert remove_dead_temps(folder) == 0
        assert remove_dead_temps_in(tmp) == 0
        assert [n for n in os.listdir(tmp) if n.endswith(".dump.tmp")] == half
    finally:
        os.write(go_w, b"1")
        _, status = os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    assert os.WIFEXITED(status)
    assert filer.load("slow") == {"head": head, "gate": b"middle", "tail": tail}
    check_recovered(folder)
