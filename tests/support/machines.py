"""Telling apart "this machine" and "another machine" in tests that share one object store."""

from __future__ import annotations

import os
import shutil
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
