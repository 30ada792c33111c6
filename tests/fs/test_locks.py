"""Lock files: the mode they are made with, what making one costs, and the store's object
locks (bytes of one file)."""

from __future__ import annotations

import ast
import errno
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import model_filer.fs.locks as locks_module
from model_filer.fs.locks import ObjectLocks

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the umask is read from /proc")

# In a child: the umask is read once per process, and an audit hook cannot be removed.
LOCKING = textwrap.dedent(
    """
    import os, stat, sys
    from pathlib import Path
    from model_filer.fs.locks import FolderLock
    os.umask(int(sys.argv[2], 8))
    Path(sys.argv[1], "locks").mkdir(exist_ok=True)
    made, modes = [], []
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and isinstance(args[2], int) and (
            args[2] & os.O_CREAT or args[2] & os.O_TMPFILE == os.O_TMPFILE
        ):
            made.append(os.path.basename(args[0]))
    sys.addaudithook(hook)
    for i in range(3):
        if i == 1 and len(sys.argv) > 3:
            os.umask(int(sys.argv[3], 8))  # a notebook that changes its umask on the way
        lock = Path(sys.argv[1], "locks", f"m{i}.lock")
        with FolderLock.at(lock):
            modes.append(stat.S_IMODE(lock.stat().st_mode))
    print(len(made), sorted(set(modes)))
    """
)


def _lock_three(root: Path, *umasks: str) -> tuple[int, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", LOCKING, str(root), *umasks],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(maxsplit=1)
    return int(out[0]), ast.literal_eval(out[1])


@pytest.mark.parametrize("umask", ["022", "002", "077"])
def test_a_held_lock_file_has_the_mode_the_umask_gives(tmp_path: Path, umask: str) -> None:
    """As filelock's default would make it: a group-writable umask leaves the lock
    group-writable, so that the group's other users of a shared store can take it."""
    _, modes = _lock_three(tmp_path, umask)
    assert modes == [0o666 & ~int(umask, 8)]


@pytest.mark.parametrize(("umask", "probes"), [("022", 0), ("077", 0), ("002", 3)])
def test_a_private_lock_file_is_made_without_a_probe_of_the_folder(
    tmp_path: Path, umask: str, probes: int
) -> None:
    """filelock probes a folder for flock support (a temp file made and dropped) before
    making a lock file others could write. A pull from the store makes one lock per model,
    and a file creation costs up to 1 ms on some disks: a private lock file is made alone."""
    made, _ = _lock_three(tmp_path, umask)
    assert made == 3 + probes  # the three lock files, and a probe for each if shared


def test_a_umask_changed_in_the_process_is_the_one_lock_files_get(tmp_path: Path) -> None:
    """Read for each lock: a notebook that sets a group-writable umask gets group-writable
    lock files from then on."""
    _, modes = _lock_three(tmp_path, "022", "002")
    assert modes == [0o644, 0o664]


def _default_acl(folder: Path, group: int) -> None:
    """Give ``folder`` a default ACL letting ``group`` write (setfacl -d -m g:GROUP:rwx)."""
    entries = [(0x01, 7, -1), (0x04, 7, -1), (0x08, 7, group), (0x10, 7, -1), (0x20, 5, -1)]
    value = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident & 0xFFFFFFFF) for tag, perm, ident in entries
    )
    os.setxattr(folder, "system.posix_acl_default", value)


def _shared_locks_folder(root: Path) -> Path:
    """``root``/locks with a default ACL letting a group write (skips where ACLs are not)."""
    locks = root / "locks"
    locks.mkdir()
    try:
        _default_acl(locks, 4321)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"no POSIX ACLs here: {exc}")
        raise
    return locks


def test_a_store_with_a_default_acl_keeps_lock_files_writable_by_its_group(
    tmp_path: Path,
) -> None:
    """A shared store is often a folder whose default ACL lets a team's group write, under a
    umask of 022 that the ACL overrides. Its lock files must stay group-writable (as
    filelock's default makes them), or the group's other users cannot take its locks."""
    _shared_locks_folder(tmp_path)
    _, modes = _lock_three(tmp_path, "022")
    assert modes == [0o664]


# -- the store's object locks: bytes of one file ----------------------------------------------
HOLD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from model_filer.fs.locks import ObjectLocks
    with ObjectLocks(Path(sys.argv[1])).of(sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def _holder(root: Path, sha: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), sha],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def _free(root: Path, sha: str) -> bool:
    lock = ObjectLocks(root).of(sha)
    got = lock.acquire(blocking=False)
    if got:
        lock.release()
    return got


def test_object_locks_are_bytes_of_one_file_not_a_file_each(tmp_path: Path) -> None:
    """A pull locks every object it fetches; a file each was a file creation each (about
    1 ms of CPU on a busy disk) and a folder of files nobody removed."""
    locks = ObjectLocks(tmp_path)
    for i in range(50):
        with locks.of(f"{i:064x}"):
            pass
    assert os.listdir(tmp_path / "locks") == ["objects.lock"]


def test_an_object_held_by_another_process_is_refused_and_others_are_free(
    tmp_path: Path,
) -> None:
    held, other = "ab" * 32, "ab" * 7 + "c" + "ab" * 24 + "d"  # (the same first 14 digits)
    child = _holder(tmp_path, held)
    try:
        assert not _free(tmp_path, held)
        assert _free(tmp_path, other)
    finally:
        child.communicate("\n", timeout=60)
    assert _free(tmp_path, held)


def test_an_object_lock_goes_with_a_killed_process(tmp_path: Path) -> None:
    sha = "0f" * 32
    child = _holder(tmp_path, sha)
    assert not _free(tmp_path, sha)
    child.kill()
    child.wait(timeout=60)
    assert _free(tmp_path, sha)


def test_two_lock_objects_of_one_process_on_one_object_exclude_each_other(
    tmp_path: Path,
) -> None:
    """One descriptor per acquisition: a second lock object on the same byte (the store
    reached by another path, so another lock object of this process) is refused while a
    thread holds the first."""
    sha = "1e" * 32
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    alias.symlink_to(tmp_path)
    with ObjectLocks(tmp_path).of(sha) as first:
        lock = ObjectLocks(alias).of(sha)
        assert lock is not first
        assert not lock.acquire(blocking=False)
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_child_forked_while_an_object_lock_is_held_does_not_keep_it(tmp_path: Path) -> None:
    """The child shares the lock's descriptor: closing it in the parent alone would leave the
    byte locked until the child exits (a fork-started worker pool: a hang)."""
    sha = "4b" * 32
    lock = ObjectLocks(tmp_path).of(sha)
    lock.acquire()
    told, tell = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: alive, holding a copy of the descriptor, until told
        os.close(tell)
        os.read(told, 1)
        os._exit(0)
    os.close(told)
    try:
        lock.release()
        assert _probe(tmp_path, sha) == "True"
    finally:
        os.write(tell, b"x")
        os.close(tell)
        os.waitpid(pid, 0)


def test_a_forked_child_letting_go_of_an_inherited_object_lock_leaves_it_held(
    tmp_path: Path,
) -> None:
    """A child forked inside a locked block that unwinds it must not unlock the parent's
    lock (the unlock acts on the open file description they share)."""
    sha = "5a" * 32
    lock = ObjectLocks(tmp_path).of(sha)
    lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: leaves the block, as a fork inside `with` would
            lock.release()
            os._exit(0)
        os.waitpid(pid, 0)
        assert _probe(tmp_path, sha) == "False"  # still the parent's
    finally:
        lock.release()
    assert _probe(tmp_path, sha) == "True"


def _probe(root: Path, sha: str) -> str:
    """Whether another process can take the object's lock at once."""
    code = (
        "import sys; from pathlib import Path; from model_filer.fs.locks import ObjectLocks\n"
        "print(ObjectLocks(Path(sys.argv[1])).of(sys.argv[2]).acquire(blocking=False))"
    )
    run = [sys.executable, "-c", code, str(root), sha]
    return subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip()


def test_a_wait_for_an_object_lock_held_elsewhere_stops_on_ctrl_c(tmp_path: Path) -> None:
    """Another process may hold it through a download from a stuck server: the wait (a
    blocking lock call) must still end on Ctrl-C, and leave nothing held."""
    sha = "6f" * 32
    holder = _holder(tmp_path, sha)
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from model_filer.fs.locks import ObjectLocks\n"
            "lock = ObjectLocks(Path(sys.argv[1])).of(sys.argv[2])\n"
            "print('waiting', flush=True)\n"
            "import os\n"
            "try:\n"
            "    lock.acquire()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "held = 0\n"
            "for n in os.listdir('/proc/self/fd'):\n"
            "    try:\n"
            "        held += os.readlink(f'/proc/self/fd/{n}').endswith('objects.lock')\n"
            "    except OSError:\n"
            "        pass  # (the listing's own descriptor, closed by now)\n"
            "print(held, 'open', flush=True)\n"
            "sys.stdin.readline()\n"  # (the holder has let go)
            "print(lock.acquire(blocking=False), flush=True)\n",
            str(tmp_path),
            sha,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
        time.sleep(0.5)  # (in the blocking call by now)
        waiter.send_signal(signal.SIGINT)
        assert waiter.stdout.readline() == "interrupted\n"
        assert waiter.stdout.readline() == "0 open\n"  # (no descriptor left behind)
    finally:
        holder.communicate("\n", timeout=60)
    # The same lock object, in the process it was interrupted in, takes the lock again.
    assert waiter.communicate("\n", timeout=60)[0] == "True\n"
    assert _probe(tmp_path, sha) == "True"


def test_where_bytes_cannot_be_locked_each_object_has_a_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not Linux, or a filesystem that refuses open-file-description locks."""
    monkeypatch.setattr(locks_module, "_BYTE_LOCKS", False)
    sha = "2d" * 32
    with ObjectLocks(tmp_path).of(sha):
        assert os.listdir(tmp_path / "locks") == [f"{sha}.lock"]


@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_filesystem_that_refuses_byte_locks_gets_a_lock_file_per_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """As an NFS mount without lockd answers: the first lock's probe finds out, once."""
    import fcntl

    real, asked = fcntl.fcntl, []

    def refusing(fd: int, command: int, arg: object = 0) -> object:
        if command in (fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW):
            asked.append(command)
            raise OSError(refusal, os.strerror(refusal))
        return real(fd, command, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    locks = ObjectLocks(tmp_path)
    for sha in ("4e" * 32, "5f" * 32):
        with locks.of(sha):
            assert f"{sha}.lock" in os.listdir(tmp_path / "locks")
    assert asked == [fcntl.F_OFD_SETLK]  # (the probe alone)


def test_a_store_with_a_default_acl_keeps_its_object_lock_file_writable_by_its_group(
    tmp_path: Path,
) -> None:
    locks = _shared_locks_folder(tmp_path)
    old = os.umask(0o022)
    try:
        with ObjectLocks(tmp_path).of("3c" * 32):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((locks / "objects.lock").stat().st_mode) == 0o664
