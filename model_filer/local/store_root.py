"""Where this machine's model_filer cache lives: the root of its object store.

Its own small module so the git hooks can find it without importing the store.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MODEL_FILER_CACHE_DIR"

__all__ = ["CACHE_ENV", "default_root"]


def default_root() -> Path:
    """``$MODEL_FILER_CACHE_DIR``, else ``$XDG_CACHE_HOME/model_filer``, else
    ``~/.cache/model_filer``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "model_filer"
