"""Registry bytes the library wrote, known by their git blob id (model_filer/verified.py).

The commit hook skips validation only for a blob this machine's model_filer wrote; these tests
check that the id is git's, that only such bytes get a record, that the quick reading agrees
with the full parser, and that the hook gives the same verdict either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from model_filer_hooks.no_local_models import main

from model_filer import UntrustedModelWarning, verified
from model_filer.registry import Entry, Registry, RegistryFile, parse
from tests.support.gitrepo import git, model_filer, staged

REGISTRY = "models/.local_registry"


def staged_oid(repo: Path, path: str = REGISTRY) -> str:
    return git(repo, "ls-files", "-s", path).stdout.split()[1]


def records(store: Path) -> list[str]:
    folder = store / verified.VERIFIED_DIR
    return sorted(os.listdir(folder)) if folder.exists() else []


def entry(name: str, state: str = "synced", imports: list[str] | None = None) -> Entry:
    sha = (name.encode().hex() * 64)[:64]
    return Entry(
        name=name,
        state=state,
        sha256=sha,
        size=len(name),
        serializer="pickle-5",
        created="2024-05-01T12:00:00+00:00",
        python="3.11.7",
        key=f"{name}/{sha}.pkl" if state == "synced" else None,
        library={"name": "sklearn", "version": "1.4.2"} if len(name) % 2 else None,
        imports=imports,
    )


@pytest.mark.parametrize("size", [0, 1, 4095, 70_001])
def test_the_blob_id_is_gits(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    expected = subprocess.run(
        ["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert verified.blob_id(data) == expected


def test_every_registry_write_records_the_blob_git_stages(repo, remote, object_store):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    staged(repo, REGISTRY)
    first = staged_oid(repo)
    verified.record_later.flush()  # (a newer write within Recorder.QUIET would replace it)
    filer.push("churn")
    staged(repo, REGISTRY)
    second = staged_oid(repo)
    verified.record_later.flush()  # recorded in the background
    assert first != second
    assert {first, second} <= set(records(object_store))
    assert verified.known(object_store, second)


def test_a_registry_with_an_entry_that_fails_validation_is_not_recorded(tmp_path, object_store):
    bad = entry("m1")._replace(sha256="not-a-sha")
    rf = RegistryFile(tmp_path, "local", lambda data: verified.record(object_store, data))
    rf.write(Registry("local", "/srv", {"m1": bad}))
    assert records(object_store) == []
    rf.write(Registry("local", "/srv", {"m1": entry("m1")}))
    assert records(object_store) == [verified.blob_id(rf.path.read_bytes())]


def test_recording_is_best_effort(tmp_path):
    blocked = tmp_path / "store"
    blocked.write_text("a file where the store folder would be")
    verified.record(blocked, b"registry bytes")  # no error: the hook just validates in full
    assert not verified.known(blocked, verified.blob_id(b"registry bytes"))


@pytest.mark.parametrize(
    "oid", ["", "../../etc/passwd", "A" * 40, "a" * 39, "a" * 64, "a" * 40 + "\n"]
)
def test_only_a_sha1_blob_id_is_looked_up(object_store, oid):
    (object_store / verified.VERIFIED_DIR).mkdir(parents=True, exist_ok=True)
    assert not verified.known(object_store, oid)


def test_a_record_that_is_not_a_plain_file_does_not_count(object_store, tmp_path):
    folder = object_store / verified.VERIFIED_DIR
    folder.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (folder / ("a" * 40)).symlink_to(target)
    (folder / ("b" * 40)).mkdir()
    assert not verified.known(object_store, "a" * 40)
    assert not verified.known(object_store, "b" * 40)


def test_old_records_are_pruned_to_the_newest(object_store):
    folder = object_store / verified.VERIFIED_DIR
    folder.mkdir(parents=True)
    for i in range(verified.KEEP + 20):
        path = folder / f"{i:040x}"
        path.write_text("")
        os.utime(path, ns=(i * 10**9, i * 10**9))
    verified._prune(folder)
    kept = records(object_store)
    assert len(kept) == verified.KEEP
    assert f"{0:040x}" not in kept and f"{verified.KEEP + 19:040x}" in kept


def registries() -> list[Registry]:
    imports = [None, [], ["builtins.dict"], ["numpy.dtype", "numpy.ndarray"]]
    many = {
        f"m{i:03d}": entry(f"m{i:03d}", ("local", "synced")[i % 2], imports[i % 4])
        for i in range(40)
    }
    odd = {  # names PyYAML quotes, and the shortest and longest names
        n: entry(n, "local", ["sklearn.tree.DecisionTreeClassifier"])
        for n in ("1.5", "true", "0x1F", "n", "z" * 100)
    }
    return [
        Registry("local", "/srv/models"),
        Registry("local", "/srv/models", many, "fedcba9876543210" * 2),
        Registry("s3", "s3://bucket/models", odd),
        Registry("s3", "s3://bucket/models", {"only": entry("only", "synced")}),
    ]


@pytest.mark.parametrize("reg", registries(), ids=["empty", "many", "quoted", "one"])
def test_the_quick_reading_agrees_with_the_full_parser(reg):
    data = reg.dumps()
    full = parse(data, "r")
    summary = verified.summarize(data)
    assert summary is not None
    assert summary.names() == sorted(full.entries)
    assert summary.local == sorted(n for n, e in full.entries.items() if e.state == "local")
    assert summary.imports == {i for e in full.entries.values() for i in e.imports or ()}


def test_the_hook_gives_the_same_verdict_with_and_without_the_record(
    repo, remote, object_store, capsys
):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    filer.dump({"w": 2}, "prices", push=True)
    staged(repo, REGISTRY)
    verified.record_later.flush()
    assert verified.known(object_store, staged_oid(repo))
    quick = main([REGISTRY]), capsys.readouterr().out
    for record in records(object_store):
        os.unlink(object_store / verified.VERIFIED_DIR / record)
    full = main([REGISTRY]), capsys.readouterr().out
    assert quick == full
    assert quick[0] == 1 and f"{REGISTRY}: churn is local" in quick[1]


def test_a_recorded_blob_is_not_parsed_by_the_hook(repo, remote):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    staged(repo, REGISTRY)
    verified.record_later.flush()
    code = (
        "import sys\n"
        "from model_filer_hooks.no_local_models import main\n"
        f"assert main([{REGISTRY!r}]) == 1\n"
        "assert 'model_filer.registry_text' not in sys.modules, 'parsed'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{REGISTRY}: churn is local" in done.stdout


class Custom:
    """A class of a test module: outside the trusted set."""


def test_an_untrusted_import_in_a_recorded_blob_is_judged_entry_by_entry(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "plain", push=True)
    with pytest.warns(UntrustedModelWarning):
        filer.dump(Custom(), "custom", push=True)
    staged(repo, REGISTRY)
    verified.record_later.flush()
    assert main([REGISTRY]) == 1
    out = capsys.readouterr().out
    assert f"{REGISTRY}: custom imports tests.test_verified." in out
    assert "plain" not in out


def test_a_hand_edited_registry_is_validated_in_full(repo, remote, capsys, object_store):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    text = (repo / REGISTRY).read_text()
    # Quoting that PyYAML would not write: same data, but not bytes the library wrote.
    (repo / REGISTRY).write_text(text.replace("state: synced", "state: 'local'"))
    staged(repo, REGISTRY)
    verified.record_later.flush()
    assert not verified.known(object_store, staged_oid(repo))
    assert main([REGISTRY]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out


def test_the_last_record_of_a_process_is_written_before_it_exits(tmp_path, object_store):
    code = (  # a slow record: a daemon thread not waited for would die with the process
        "import time\n"
        "from model_filer import Filer, verified\n"
        "real = verified.record\n"
        "verified.record = lambda root, data: (time.sleep(0.5), real(root, data))\n"
        f"Filer({str(tmp_path / 'models')!r}, {str(tmp_path)!r}, 'local').dump(1, 'm')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    data = (tmp_path / "models" / ".local_registry").read_bytes()
    assert verified.known(object_store, verified.blob_id(data))


def test_the_recorder_keeps_only_the_newest_bytes_of_a_registry(tmp_path):
    recorder = verified.Recorder()
    registry = tmp_path / ".local_registry"
    busy = threading.Thread(target=lambda: None)
    recorder._thread = busy  # as if a thread were still busy: the writes only wait
    for data in (b"one", b"two", b"three"):
        recorder(tmp_path, registry, data)
    assert list(recorder._pending.values()) == [(tmp_path, b"three")]
    recorder._thread = None
    recorder(tmp_path, tmp_path / "other" / ".local_registry", b"other")
    recorder.flush()
    assert records(tmp_path) == sorted([verified.blob_id(b"three"), verified.blob_id(b"other")])
    assert recorder._thread is None


def test_a_burst_of_writes_records_only_its_last(tmp_path):
    recorder = verified.Recorder()
    recorder.QUIET = 600.0  # the thread waits: every write of the burst comes first
    registry, other = tmp_path / ".local_registry", tmp_path / "other" / ".local_registry"
    for i in range(20):
        recorder(tmp_path, registry, b"v%d" % i)
    recorder(tmp_path, other, b"other")
    assert recorder._thread is not None and records(tmp_path) == []
    recorder.flush()
    assert records(tmp_path) == sorted([verified.blob_id(b"v19"), verified.blob_id(b"other")])
    assert recorder._thread is None


def test_a_write_is_recorded_without_a_flush_once_quiet(tmp_path):
    recorder = verified.Recorder()
    recorder.QUIET = 0.0  # every write is due at once
    recorder(tmp_path, tmp_path / ".local_registry", b"quiet")
    thread = recorder._thread
    if thread is not None:
        thread.join(timeout=60)
    assert records(tmp_path) == [verified.blob_id(b"quiet")]


def test_flush_records_at_once_without_waiting_for_quiet(tmp_path):
    recorder = verified.Recorder()
    recorder.QUIET = 600.0
    recorder(tmp_path, tmp_path / ".local_registry", b"now")
    flusher = threading.Thread(target=recorder.flush, daemon=True)
    flusher.start()
    flusher.join(timeout=60)  # (a flush that waited for QUIET would still be running)
    assert not flusher.is_alive() and recorder._thread is None
    assert records(tmp_path) == [verified.blob_id(b"now")]


def test_the_recorder_thread_ends_when_idle(tmp_path):
    recorder = verified.Recorder()
    recorder(tmp_path, tmp_path / ".local_registry", b"one")
    thread = recorder._thread
    if thread is not None:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert recorder._thread is None
    assert records(tmp_path) == [verified.blob_id(b"one")]


def test_a_registry_with_text_pyyaml_wrote_is_not_recorded(tmp_path, object_store):
    """A name over 100 characters is written by PyYAML (long keys may become complex keys),
    which the hook's plain searches would misread: such a registry is never recorded."""
    long = "n" * 128
    rf = RegistryFile(tmp_path, "local", lambda data: verified.record(object_store, data))
    rf.write(Registry("local", "/srv", {long: entry(long, "local"), "m1": entry("m1")}))
    assert records(object_store) == []
    with rf.transaction(Registry("local", "/srv")) as reg:  # read back, changed, written
        reg.entries["m2"] = entry("m2")
    assert records(object_store) == []
    with rf.transaction(Registry("local", "/srv")) as reg:
        del reg.entries[long]
    assert records(object_store) == [verified.blob_id(rf.path.read_bytes())]


def test_the_quick_reading_refuses_another_remote_type_and_oversized_bytes(monkeypatch):
    data = Registry("local", "/srv", {"m1": entry("m1", "local")}).dumps()
    assert verified.summarize(data, "local") is not None
    assert verified.summarize(data, "s3") is None  # the full parser refuses the mismatch
    monkeypatch.setattr(verified, "MAX_REGISTRY_BYTES", len(data) - 1)
    assert verified.summarize(data, "local") is None


def test_a_relative_store_folder_vouches_for_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verified.record(Path("store"), b"bytes")
    assert verified.known((tmp_path / "store").resolve(), verified.blob_id(b"bytes"))
    assert not verified.known(Path("store"), verified.blob_id(b"bytes"))


def test_the_hook_checks_the_bytes_against_the_recorded_id(repo, remote, object_store):
    from model_filer_hooks.no_local_models import _summary

    from model_filer.gitops import Blob

    data = Registry("local", "/srv", {"m1": entry("m1", "local")}).dumps()
    verified.record(object_store, data)
    oid = verified.blob_id(data)
    assert _summary(Blob(oid, data), REGISTRY, object_store) is not None
    tampered = data.replace(b"state: local", b"state: synced")
    assert _summary(Blob(oid, tampered), REGISTRY, object_store) is None


def test_the_recorder_carries_on_after_an_unexpected_error(tmp_path, monkeypatch):
    recorder = verified.Recorder()
    real, calls = verified.record, []

    def flaky(root: Path, data: bytes) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise ValueError("unexpected")
        real(root, data)

    monkeypatch.setattr(verified, "record", flaky)
    recorder(tmp_path, tmp_path / ".local_registry", b"one")
    recorder.flush()
    assert recorder._thread is None and records(tmp_path) == []
    recorder(tmp_path, tmp_path / ".local_registry", b"two")
    recorder.flush()
    assert records(tmp_path) == [verified.blob_id(b"two")]
