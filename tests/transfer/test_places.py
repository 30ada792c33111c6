"""Where a push finds the chunks a remote already holds: the places this machine has seen on
that remote (model_filer.local.store: places/), never places a map merely names.

Folder remotes, several per test, and one object store per machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.local.store import ObjectStore
from tests.support.chunking import model_bytes, small_chunks

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    small_chunks(monkeypatch)  # a few MiB: dozens of chunks in several packs


def _versions(n: int) -> list[bytes]:
    """``n`` versions of a 3 MiB model, each the one before with one 64 KiB run changed."""
    out = [os.urandom(3 * MiB)]
    for i in range(1, n):
        at = (i * 700 * 1024) % (3 * MiB - 64 * 1024)
        out.append(out[-1][:at] + os.urandom(64 * 1024) + out[-1][at + 64 * 1024 :])
    return out


def _new_bytes(remote: Path, before: set[Path]) -> int:
    return sum(p.stat().st_size for p in remote.rglob("*") if p.is_file() and p not in before)


def _files(remote: Path) -> set[Path]:
    return {p for p in remote.rglob("*") if p.is_file()}


def _machine(tmp_path: Path, name: str, address: Path) -> Filer:
    return Filer(
        tmp_path / name, str(address), "local", store=ObjectStore(tmp_path / f"{name}.store")
    )


def _clone(tmp_path: Path, source: Filer, name: str) -> Filer:
    (tmp_path / name).mkdir()
    shutil.copy(source.registry_path, tmp_path / name)
    return _machine(tmp_path, name, Path(source.remote.address))


def test_two_remotes_sharing_one_store_each_keep_their_own_places(tmp_path: Path) -> None:
    v1, v2, v3 = _versions(3)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    store = ObjectStore(tmp_path / "store")
    one = Filer(tmp_path / "one", str(first), "local", store=store)
    two = Filer(tmp_path / "two", str(second), "local", store=store)
    one.dump(v1, "v1", push=True)
    one.dump(v2, "v2", push=True)
    two.dump(v2, "v2", push=True)  # the same models to another remote, from the same store
    two.dump(v1, "v1", push=True)

    before = _files(first)
    one.dump(v3, "v3", push=True)

    sent = _new_bytes(first, before)
    assert sent < 0.25 * len(v3), f"{sent / len(v3):.0%} of v3 went up again"
    for filer in (one, two):  # each remote holds all it names
        for entry in filer.list_files():
            assert model_bytes(filer.remote, entry.key or "") is not None


def test_a_damaged_map_from_the_remote_never_places_a_chunk_of_a_later_push(
    tmp_path: Path,
) -> None:
    v1, v2, v3 = _versions(3)  # all three share their first chunk
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _machine(tmp_path, "alice-b", b).dump(v1, "v1", push=True)
    alice = _machine(tmp_path, "alice-a", a)
    alice.dump(v2, "v2", push=True)
    # Another tool damages v2's map on A: its first chunk is placed a byte off.
    key = a / alice.list_files()[0].key
    doc = json.loads(key.read_bytes())
    doc["chunks"][0][3] += 1
    key.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())

    store = ObjectStore(tmp_path / "bob.store")
    from_b = tmp_path / "bob-b"
    from_b.mkdir()
    shutil.copy(tmp_path / "alice-b" / ".local_registry", from_b)
    assert Filer(from_b, str(b), "local", store=store).load("v1") == v1
    (tmp_path / "bob-a").mkdir()
    shutil.copy(alice.registry_path, tmp_path / "bob-a")
    bob = Filer(tmp_path / "bob-a", str(a), "local", store=store)
    assert bob.load("v2") == v2  # its first chunk came from v1, here: the damage unread
    bob.dump(v3, "v3", push=True)  # must not name the first chunk where the map said

    carol = _clone(tmp_path, bob, "carol")
    assert carol.load("v3") == v3
