"""``load`` decides once, then acts: one registry read, one lock on a miss, one hash of a
stale file, and the descriptor it verified is the one it unpickles from."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest

from model_filer import Filer
from model_filer.fs import hashing
from model_filer.fs.locks import FolderLock
from model_filer.local import freshness as freshness_module
from model_filer.local.store import default_root
from model_filer.registry import file as registry_module
from tests.support.gitrepo import commit
from tests.support.machines import another_machine


@pytest.fixture
def counted(monkeypatch):
    """Count registry reads, lock acquisitions and file hashes made by the library."""
    counts = {"read": 0, "lock": 0, "hash": 0}

    def wrap(owner, attr, key):
        original = getattr(owner, attr)

        def counting(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, attr, counting)

    wrap(registry_module.RegistryFile, "read", "read")
    wrap(FolderLock, "acquire", "lock")
    wrap(freshness_module, "sha256_stream", "hash")
    wrap(hashing, "sha256_stream", "hash")  # (the store's re-hash of a small object)
    return counts


BIG = [1, 2, 3, b"x" * 100_000]  # past HASHED_UP_TO: the store records it, not re-hashes it


def _stale(tmp_path, model, other):
    """A teammate's clone whose file of a synced model holds other bytes of the same size."""
    remote = tmp_path / "remote"
    remote.mkdir()
    author = Filer(tmp_path / "author", str(remote), remote_type="local")
    author.dump(model, "m", push=True)
    another_machine()  # the teammate's own object store never saw these bytes
    mate_dir = tmp_path / "mate"
    mate_dir.mkdir()
    (mate_dir / ".local_registry").write_bytes(author.registry_path.read_bytes())
    other = pickle.dumps(other, protocol=5)
    assert len(other) == author.list_files()[0].size
    (mate_dir / "m.pkl").write_bytes(other)
    return Filer(mate_dir, str(remote), remote_type="local")


@pytest.fixture
def stale(tmp_path):
    return _stale(tmp_path, BIG, [7, 8, 9, b"y" * 100_000])


def test_a_stale_file_is_hashed_once_and_fetched_under_one_lock(stale, counted):
    assert stale.load("m") == BIG
    # One lock each: the model file's, and the store object's it is downloaded into.
    assert counted == {"read": 1, "lock": 2, "hash": 1}


def test_a_stale_file_is_replaced_from_the_store_with_no_second_hash(stale, counted):
    stale.load("m")  # downloaded into the store
    stale.model_path("m").unlink()
    counted.update(read=0, lock=0, hash=0)
    assert stale.load("m") == BIG
    assert counted == {"read": 1, "lock": 2, "hash": 0}


def test_a_small_object_of_the_store_is_hashed_at_each_use_not_recorded(tmp_path, counted):
    """Writing a record is a file creation, which costs more than hashing 64 KiB."""
    small = _stale(tmp_path, [1, 2, 3], [7, 8, 9])
    small.load("m")  # downloaded into the store
    assert not (default_root() / "meta").exists()
    small.model_path("m").unlink()
    counted.update(read=0, lock=0, hash=0)
    assert small.load("m") == [1, 2, 3]
    assert counted == {"read": 1, "lock": 2, "hash": 1}  # the store's object, once


def test_a_current_file_loads_with_one_read_no_lock_no_hash(stale, counted):
    stale.load("m")  # fetch and remember
    counted.update(read=0, lock=0, hash=0)
    assert stale.load("m") == BIG
    assert counted == {"read": 1, "lock": 0, "hash": 0}


def test_open_returns_the_descriptor_it_verified(stale):
    entry = stale.list_files()[0]
    with stale.open(entry) as fh:
        installed = os.stat(stale.model_path("m"))
        opened = os.fstat(fh.fileno())
        assert (opened.st_ino, opened.st_dev) == (installed.st_ino, installed.st_dev)
        assert pickle.load(fh) == BIG


def test_load_and_load_at_a_revision_agree_about_a_copied_folder(repo, tmp_path):
    """A copy of the repository (a deployment) holds a local model's file under new inodes,
    on a machine whose store never saw it. ``load`` hashed the file and loaded it, while
    ``load(rev=)`` asked only the hash records, missed, and raised ``LocalOnlyError``: two
    answers to one question. Both now ask the one freshness check."""
    remote = tmp_path / "remote"
    remote.mkdir()
    Filer(repo / "models", str(remote), "local").dump({"v": 1}, "m")
    commit(repo, "a local model")
    copy = tmp_path / "deployment"
    shutil.copytree(repo, copy)
    another_machine()
    filer = Filer(copy / "models", str(remote), "local")
    assert filer.load("m", rev="HEAD") == {"v": 1}
    assert filer.load("m") == {"v": 1}


def test_load_at_a_revision_reads_an_older_local_version_from_the_store(repo, tmp_path):
    """The working tree holds a newer version of a local model: the older one comes from the
    store, and the newer file is neither replaced nor taken for a damaged one."""
    remote = tmp_path / "remote"
    remote.mkdir()
    filer = Filer(repo / "models", str(remote), "local")
    filer.dump({"v": 1}, "m")
    commit(repo, "v1")
    filer.dump({"v": 2}, "m", overwrite=True)
    assert filer.load("m", rev="HEAD") == {"v": 1}
    assert filer.load("m") == {"v": 2}
