"""Lock files: the mode they are made with, and what making one costs."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the umask is read from /proc")

# In a child: the umask is read once per process, and an audit hook cannot be removed.
LOCKING = textwrap.dedent(
    """
    import os, stat, sys
    from pathlib import Path
    from model_filer.fs.locks import object_lock
    os.umask(int(sys.argv[2], 8))
    made, modes = [], []
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and isinstance(args[2], int) and (
            args[2] & os.O_CREAT or args[2] & os.O_TMPFILE == os.O_TMPFILE
        ):
            made.append(os.path.basename(args[0]))
    sys.addaudithook(hook)
    for i in range(3):
        with object_lock(Path(sys.argv[1]), f"{i:064x}"):
            lock = Path(sys.argv[1], "locks", f"{i:064x}.lock")
            modes.append(stat.S_IMODE(lock.stat().st_mode))
    print(len(made), sorted(set(modes)))
    """
)


def _lock_three(root: Path, umask: str) -> tuple[int, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", LOCKING, str(root), umask],
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
    making a lock file others could write. A pull makes one lock per object, and a file
    creation costs up to 1 ms on some disks: a private lock file is made alone."""
    made, _ = _lock_three(tmp_path, umask)
    assert made == 3 + probes  # the three lock files, and a probe for each if shared
