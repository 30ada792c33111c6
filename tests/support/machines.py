"""Telling apart "this machine" and "another machine" in tests that share one object store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def another_machine() -> Path:
    """Empty this test's local object store, so that what follows runs as on another machine.

    Tests that dump a model and then fetch it elsewhere mean the consumer to be a teammate
    whose machine never held those bytes; without this, the shared store links them instead
    of downloading. Model files already in place stay (hardlinks outlive the store).
    """
    root = Path(os.environ["MODEL_FILER_CACHE_DIR"])
    shutil.rmtree(root, ignore_errors=True)
    return root


def kill_when(
    argv: list[str], env: dict[str, str], reached: Callable[[], bool], settle: float
) -> None:
    """Run ``argv`` as another machine's process and SIGKILL it once ``reached()`` is true
    (say, half a transfer's bytes passed a proxy); then wait ``settle`` seconds for what it
    left in flight. Fails the test if the process ends on its own before the kill."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    try:
        while not reached():
            if child.poll() is not None:
                raise AssertionError(f"{argv[-1]!r} ended before the kill: {child.stderr.read()!r}")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    time.sleep(settle)
