"""The readers of issue 21's chunked layout beyond pull: history and remote trust.

A load at a revision goes through the same pull code as any load; remote trust judges the
registry's remote address, whatever layout its keys have. Real repositories, a folder remote.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.errors import UntrustedRemoteError
from model_filer.hookapi import approved_filer
from model_filer.local.store import ObjectStore
from model_filer.registry.file import dumps, read
from model_filer.registry.names import storage_key_kind
from tests.support.gitrepo import commit, git

MB = 1024 * 1024


def test_a_chunked_version_loads_at_its_revision_on_another_machine(
    repo: Path, remote: Path, tmp_path: Path
) -> None:
    filer = Filer(repo / "models", str(remote), remote_type="local")
    first = os.urandom(10 * MB)
    filer.dump(first, "big", push=True)
    v1 = commit(repo, "v1")
    filer.remove("big")
    second = first[: 6 * MB] + os.urandom(4 * MB)  # retrained: shares its first chunks
    filer.dump(second, "big", push=True)
    commit(repo, "v2")
    assert storage_key_kind(filer.list_files(rev=v1)[0].key or "") == "maps"
    other = Filer(repo / "models", str(remote), "local", store=ObjectStore(tmp_path / "s2"))

    assert other.load("big", rev=v1) == first
    assert other.load("big", rev="HEAD") == second


def test_remote_trust_holds_for_a_chunked_registry(
    repo: Path, remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Filer(repo / "models", str(remote), remote_type="local").dump(
        os.urandom(10 * MB), "big", push=True
    )
    commit(repo, "a big model")
    consumer = tmp_path / "consumer"
    git(tmp_path, "clone", "-q", str(repo), str(consumer))
    monkeypatch.chdir(consumer)
    registry = consumer / "models" / ".local_registry"
    assert approved_filer(registry, "models").load("big")  # the first remote met is trusted

    evil = tmp_path / "evil"
    evil.mkdir()
    for path in remote.rglob("*"):  # the same chunked objects, at the attacker's folder
        if path.is_file():
            (evil / path.relative_to(remote)).parent.mkdir(parents=True, exist_ok=True)
            (evil / path.relative_to(remote)).write_bytes(path.read_bytes())
    reg = read(registry)
    assert reg is not None
    reg.remote_address, reg.remote_id = str(evil), None
    registry.write_bytes(dumps(reg))

    with pytest.raises(UntrustedRemoteError, match="remote trust --dir models"):
        approved_filer(registry, "models")


def test_cache_verify_removes_manifests_that_do_not_describe_their_object(
    repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from model_filer.cli import main

    filer = Filer(repo / "models", str(remote), remote_type="local")
    filer.dump(os.urandom(10 * MB), "big", push=True)  # the push keeps its manifest locally
    filer.dump(os.urandom(10 * MB), "other", push=True)
    store = ObjectStore()
    manifests = {p.parent.name + p.stem: p for p in (store.root / "manifests").glob("??/*.json")}
    big, other = (e.sha256 for e in sorted(filer.list_files(), key=lambda e: e.name))
    assert set(manifests) == {big, other}
    doc = json.loads(manifests[big].read_bytes())
    doc["chunks"][0][0] = "0" * 64  # names a chunk the object does not hold
    manifests[big].write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    filer.remove("other")
    store.object_path(other).unlink()  # a manifest whose object is gone

    assert main(["cache", "verify"]) == 1

    out = capsys.readouterr().out
    assert f"manifest of {big}: does not describe that object's bytes; removed" in out
    assert f"manifest of {other}:" in out
    assert not manifests[big].exists() and not manifests[other].exists()
    assert store.object_path(big).is_file()  # the object itself is sound: kept
    assert main(["cache", "verify"]) == 0
    assert filer.load("big")
