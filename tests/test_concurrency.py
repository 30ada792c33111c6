"""Concurrency: several processes writing one model folder, or fetching one model, at once.

Processes are forked and held at a start line, then released together so that their registry
writes, renames and downloads overlap as much as they can.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer
from model_filer.registry.file import parse
from tests.support.faultproxy import FaultProxy
from tests.support.machines import another_machine


def seeded(seed: int) -> random.Random:
    """A reproducible RNG for test data and timing (not for secrets)."""
    return random.Random(seed)  # noqa: S311


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork")

WRITERS = 8
MODELS_EACH = 25
READERS = 8


def run_together(bodies: list[Callable[[], object]]) -> list[bytes]:
    """Fork one child per body, release them at once; return what each returned (pickled).

    A child that raises fails the test with its traceback.
    """
    go_r, go_w = os.pipe()
    children = []
    for body in bodies:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(r)
                os.read(go_r, 1)
                out = b"K" + pickle.dumps(body())
            except BaseException:
                out, code = b"X" + traceback.format_exc().encode(), 1
            try:
                os.write(w, out)
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    os.write(go_w, b"g" * len(bodies))
    results = []
    for pid, r in children:
        with os.fdopen(r, "rb") as pipe:
            out = pipe.read()
        _, status = os.waitpid(pid, 0)
        if out[:1] != b"K" or os.waitstatus_to_exitcode(status) != 0:
            pytest.fail(
                f"child {pid} failed (status {status}):\n{out[1:].decode(errors='replace')}"
            )
        results.append(pickle.loads(out[1:]))
    os.close(go_r)
    os.close(go_w)
    return results


def small_model(writer: int, j: int) -> dict[str, Any]:
    return {"writer": writer, "j": j, "w": seeded(writer * 1000 + j).randbytes(20_000)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_folder(folder: Path, rtype: str) -> dict[str, Any]:
    """Every entry's file matches the registry; nothing staged or temp is left."""
    path = folder / f".{rtype}_registry"
    reg = parse(path.read_bytes(), str(path))
    for name, entry in reg.entries.items():
        data = (folder / f"{name}.pkl").read_bytes()
        assert (len(data), sha256(data)) == (entry.size, entry.sha256), name
    for sub in ("tmp", "staged"):
        leftover = folder / ".model_filer" / sub
        assert not leftover.is_dir() or os.listdir(leftover) == [], f"left in {sub}"
    return reg.entries


def test_eight_processes_dumping_25_models_each_lose_nothing(tmp_path):
    folder, remote = tmp_path / "models", str(tmp_path / "remote")

    def writer(k: int) -> Callable[[], list[str]]:
        def body() -> list[str]:
            filer = Filer(folder, remote, "local")
            for j in range(MODELS_EACH):
                filer.dump(small_model(k, j), f"w{k}-{j}")
            return [e.name for e in filer.list_files()]

        return body

    seen = run_together([writer(k) for k in range(WRITERS)])

    entries = check_folder(folder, "local")
    assert len(entries) == WRITERS * MODELS_EACH == 200
    filer = Filer(folder, remote, "local")
    for k in range(WRITERS):
        assert {f"w{k}-{j}" for j in range(MODELS_EACH)} <= set(seen[k])  # read its own writes
        for j in range(MODELS_EACH):
            assert filer.load(f"w{k}-{j}") == small_model(k, j)
    assert sorted(p.name for p in folder.glob("*.pkl")) == sorted(f"{n}.pkl" for n in entries)
    assert (folder / ".gitignore").read_text().count("*.pkl") == 1


def test_concurrent_dumps_with_push_to_s3_mark_every_model_synced(tmp_path, s3_address, s3_client):
    folder = tmp_path / "models"

    def writer(k: int) -> Callable[[], None]:
        def body() -> None:
            filer = Filer(folder, s3_address, storage="plain")
            for j in range(4):
                filer.dump(small_model(k, j), f"s{k}-{j}", push=True)

        return body

    run_together([writer(k) for k in range(WRITERS)])

    entries = check_folder(folder, "s3")
    assert len(entries) == WRITERS * 4
    bucket, _, prefix = s3_address[5:].partition("/")
    for entry in entries.values():
        assert entry.state == "synced"
        body = s3_client.get_object(Bucket=bucket, Key=f"{prefix}/{entry.key}")["Body"].read()
        assert sha256(body) == entry.sha256


def _fetch_together(fresh: Path, address: str, rtype: str, name: str) -> list[str]:
    def reader() -> str:
        model = Filer(fresh, address, rtype).load(name)
        return sha256(pickle.dumps(model))

    return run_together([reader] * READERS)


@pytest.fixture
def big_model() -> dict[str, Any]:
    return {"w": seeded(5).randbytes(6 << 20), "tag": "shared"}


def _fresh_clone(source: Filer, fresh: Path) -> None:
    """A clone on another machine: its object store never saw the source's bytes."""
    another_machine()
    fresh.mkdir()
    name = source.registry_path.name
    (fresh / name).write_bytes(source.registry_path.read_bytes())


def test_eight_processes_loading_one_missing_model_from_a_local_remote(tmp_path, big_model):
    (tmp_path / "remote").mkdir()
    source = Filer(tmp_path / "source", str(tmp_path / "remote"), "local")
    source.dump(big_model, "shared", push=True)
    fresh = tmp_path / "fresh"
    _fresh_clone(source, fresh)

    digests = _fetch_together(fresh, source.remote.address, "local", "shared")

    assert set(digests) == {sha256(pickle.dumps(big_model))}
    check_folder(fresh, "local")  # one whole file in place, no temp file left
    assert [p.name for p in fresh.glob("*.pkl")] == ["shared.pkl"]


def test_eight_processes_loading_one_missing_model_from_s3_download_it_once(
    tmp_path, s3_env, s3_address, big_model, monkeypatch
):
    source = Filer(tmp_path / "source", s3_address)
    source.dump(big_model, "shared", push=True)
    key = source.list_files()[0].key or ""
    fresh = tmp_path / "fresh"
    _fresh_clone(source, fresh)

    with FaultProxy(s3_env.endpoint_url, share=0.0, lifetime=120) as proxy:  # counts requests
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        digests = _fetch_together(fresh, s3_address, "s3", "shared")
        gets = proxy.count("GET", key)

    assert set(digests) == {sha256(pickle.dumps(big_model))}
    check_folder(fresh, "s3")
    assert [p.name for p in fresh.glob("*.pkl")] == ["shared.pkl"]
    assert gets == 1  # the others waited on the model's lock and found it in place


def test_a_load_that_meets_a_re_dump_between_its_reads_returns_one_version(tmp_path):
    # The reader has read the registry; another process's re-dump (overwrite=True) then
    # replaces the registry and the file. The reader must load the new version, not call
    # the file "changed after dump".
    folder, remote = tmp_path / "models", tmp_path / "remote"
    reader = Filer(folder, str(remote), remote_type="local")
    reader.dump([1], "hot")
    writer = Filer(folder, str(remote), remote_type="local")
    opened, raced = reader.open, []

    def open_after_a_re_dump(entry: Any) -> Any:
        if not raced:  # once: between this load's registry read and its open
            raced.append(writer.dump([2], "hot", overwrite=True))
        return opened(entry)

    reader.open = open_after_a_re_dump  # type: ignore[method-assign]
    assert reader.load("hot") == [2]


def test_loads_beside_a_process_re_dumping_the_same_model_always_get_a_whole_version(tmp_path):
    folder, remote = tmp_path / "models", tmp_path / "remote"
    Filer(folder, str(remote), remote_type="local").dump([0] * 1000, "hot")

    def re_dump() -> int:
        filer = Filer(folder, str(remote), remote_type="local")
        for i in range(1, 60):
            filer.dump([i] * 1000, "hot", overwrite=True)
        return 59

    def load_many() -> set[int]:
        filer = Filer(folder, str(remote), remote_type="local")
        seen = set()
        for _ in range(150):
            got = filer.load("hot")
            assert len(set(got)) == 1 and len(got) == 1000  # one whole version
            seen.add(got[0])
        return seen

    assert run_together([re_dump, load_many, load_many])[0] == 59
