"""The model folder's .gitignore, atomic writes and cleanup of dead processes' temp files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from model_filer.fs import tempfiles
from model_filer.fs.layout import INTERNAL_DIR, registry_filename
from model_filer.fs.tempfiles import (
    atomic_write,
    remove_dead_temps,
    temp_path,
    write_bytes_atomic,
)
from model_filer.local.folder import GITIGNORE_TEXT, ensure_gitignore

REQUIRED = ["*.pkl", ".model_filer"]


def test_registry_filename():
    assert registry_filename("s3") == ".s3_registry"
    assert registry_filename("local") == ".local_registry"


def test_gitignore_is_created(tmp_path):
    ensure_gitignore(tmp_path)
    text = (tmp_path / ".gitignore").read_text()
    assert text == GITIGNORE_TEXT
    lines = text.splitlines()
    for line in REQUIRED:
        assert line in lines
    assert not any("registry" in line and not line.startswith("#") for line in lines)


@pytest.mark.parametrize("existing", ["*.log", "*.log\n", "*.log\n*.pkl\n", "*.pkl\n# mine\n"])
def test_gitignore_is_completed_without_duplicating_lines(tmp_path, existing):
    path = tmp_path / ".gitignore"
    path.write_text(existing)
    ensure_gitignore(tmp_path)
    ensure_gitignore(tmp_path)  # idempotent
    text = path.read_text()
    lines = text.splitlines()
    assert text.startswith(existing.rstrip("\n"))  # the user's lines stay first, untouched
    assert text.endswith("\n")
    for line in REQUIRED:
        assert lines.count(line) == 1
    assert lines.count("*.log") == existing.count("*.log")


def test_complete_gitignore_is_not_rewritten(tmp_path):
    ensure_gitignore(tmp_path)
    path = tmp_path / ".gitignore"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    ensure_gitignore(tmp_path)
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_temp_path_is_inside_the_internal_folder_and_names_its_owner(tmp_path):
    path = temp_path(tmp_path, "m.dump")
    assert path.parent == tmp_path / INTERNAL_DIR / "tmp"
    assert path.name.startswith(f"{tempfiles._HOST}-{os.getpid()}-")
    assert path.name.endswith(".m.dump.tmp")
    assert temp_path(tmp_path, "m.dump") != path


def test_write_bytes_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    write_bytes_atomic(target, tmp_path, b"new", "test")
    assert target.read_bytes() == b"new"
    assert list((tmp_path / INTERNAL_DIR / "tmp").iterdir()) == []


@pytest.mark.parametrize("size", [70 * 1024, 3 * 1024 * 1024 + 7])
def test_a_large_atomic_write_holds_exactly_its_bytes(tmp_path, size):
    # From 64 KiB the blocks are allocated before the write (on ext4): the file must still be
    # exactly the new bytes, never padded or cut, over a longer and a shorter old file.
    target = tmp_path / "f"
    for old in (os.urandom(size + 5000), b"old"):
        target.write_bytes(old)
        data = os.urandom(size)
        write_bytes_atomic(target, tmp_path, data, "test")
        assert target.read_bytes() == data
    assert list((tmp_path / INTERNAL_DIR / "tmp").iterdir()) == []


MOUNTINFO = [
    "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n",
    "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
    "40 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n",
    "41 1 0:44 / /mnt/c rw,noatime - 9p drvfs rw\n",
    "42 1 8:1 / /broken rw\n",  # no separator: not trusted
]


@pytest.mark.parametrize(
    ("device", "kind"),
    [
        ("254:0", "ext4"),
        ("98:0", "ext3"),
        ("0:44", "9p"),
        ("0:21", "proc"),
        ("8:1", None),
        ("9:9", None),
    ],
)
def test_the_mount_type_of_a_device_comes_from_its_mountinfo_line(device, kind):
    assert tempfiles.mount_type(device, MOUNTINFO) == kind


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target, tmp_path, "test") as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert list((tmp_path / INTERNAL_DIR / "tmp").iterdir()) == []


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_temp(local_dir, pid: int | None = None, host: str | None = None):
    path = temp_path(local_dir, "m.download")
    name = path.name
    if pid is not None:
        name = name.replace(f"-{os.getpid()}-", f"-{pid}-", 1)
    if host is not None:
        name = name.replace(tempfiles._HOST, host, 1)
    path = path.with_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    return path


def test_remove_dead_temps_removes_a_dead_process_file(tmp_path):
    pid = dead_pid()
    dead = make_temp(tmp_path, pid=pid)
    assert f"-{pid}-" in dead.name
    assert remove_dead_temps(tmp_path) == 1
    assert not dead.exists()


def test_remove_dead_temps_never_removes_a_live_process_file(tmp_path):
    mine = make_temp(tmp_path)  # owned by this (live) process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = make_temp(tmp_path, pid=child.pid)
        dead = make_temp(tmp_path, pid=dead_pid())
        assert remove_dead_temps(tmp_path) == 1
        assert mine.exists()
        assert theirs.exists()
        assert not dead.exists()
    finally:
        child.kill()
        child.wait()


def test_remove_dead_temps_leaves_other_hosts_and_foreign_files(tmp_path):
    pid = dead_pid()
    other_host = make_temp(tmp_path, pid=pid, host="otherhost")
    foreign = tmp_path / INTERNAL_DIR / "tmp" / "notes.txt"
    foreign.write_text("not ours")
    assert remove_dead_temps(tmp_path) == 0
    assert other_host.exists()
    assert foreign.exists()


def test_remove_dead_temps_without_a_temp_folder(tmp_path):
    assert remove_dead_temps(tmp_path) == 0
