"""Constants and small helpers shared by every benchmark module."""

from __future__ import annotations

import sys
from pathlib import Path

import tests.support.isolation as isolation

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
BIN = Path(sys.executable).parent
DVC_VENV = HERE / ".venv-dvc"
MiB = 1 << 20
BUCKET = "mf-bench"
NULL_SHA = "0" * 40

DELAY_MS = 20.0
DELAY = f"{DELAY_MS:g}"
PIP_INSTALL = ("-m", "pip", "install", "-q", "--disable-pip-version-check")
HEAVY_MODULES = ("boto3", "botocore", "s3transfer", "git")
AWS_VARIABLES_TO_REMOVE = (
    *isolation.AWS_VARIABLES_TO_REMOVE,
    "MODEL_FILER_SKIP_PREFETCH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
GIT_VARIABLES_TO_REMOVE = isolation.GIT_VARIABLES_TO_REMOVE


class BenchError(RuntimeError):
    """A setup step or a measured command failed."""


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)
