"""Lock files: the mode they are made with, and what making one costs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model_filer.fs.locks import object_lock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the umask is read from /proc")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_held_lock_file_has_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    """As filelock's default would make it: a group-writable umask leaves the lock
    group-writable, so that the group's other users of a shared store can take it."""
    old = os.umask(umask)
    try:
        with object_lock(tmp_path, "ab" * 32):
            mode = stat.S_IMODE(os.stat(tmp_path / "locks" / f"{'ab' * 32}.lock").st_mode)
    finally:
        os.umask(old)
    assert mode == 0o666 & ~umask


PROBE = textwrap.dedent(
    """
    import os, sys
    from model_filer.fs.locks import object_lock
    made = []
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and (
            args[2] & os.O_CREAT or args[2] & os.O_TMPFILE == os.O_TMPFILE
        ):
            made.append(args[0])
    sys.addaudithook(hook)
    os.umask(int(sys.argv[2], 8))
    for i in range(3):
        with object_lock(__import__("pathlib").Path(sys.argv[1]), f"{i:064x}"):
            pass
    print(len(made), sorted(os.path.basename(p) for p in made))
    """
)


@pytest.mark.parametrize(("umask", "probes"), [("022", 0), ("002", 3)])
def test_a_private_lock_file_is_made_without_a_probe_of_the_folder(
    tmp_path: Path, umask: str, probes: int
) -> None:
    """filelock probes a folder for flock support (a temp file made and dropped) before
    making a lock file others could write. A pull makes one lock per object, and a file
    creation costs up to 1 ms on some disks: a private lock file is made alone."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), umask],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(maxsplit=1)
    locks = [f"{i:064x}.lock" for i in range(3)]
    assert int(out[0]) == 3 + probes, out  # the three lock files, and a probe for each
    for name in locks:
        assert name in out[1]
