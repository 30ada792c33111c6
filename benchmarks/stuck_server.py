"""How long model_filer waits on a stuck S3 endpoint (issue 18, item 4), with default settings.

A stuck VPN or proxy accepts TCP connections and never answers. This script points
``AWS_ENDPOINT_URL`` at such a listener on 127.0.0.1 (``tests.support.faultproxy.StuckServer``)
and times, each as a whole process:

- ``load``: ``Filer.load`` of a synced model that is not on this machine (default policy);
- ``clone``: ``git clone --template`` with model_filer's plain git hooks, whose post-checkout
  hook prefetches the three models the clone's registry names;
- ``pre-push``: ``git push`` of that clone, whose pre-push hook checks the remote.

It prints the seconds, the exit status and the last line each printed; it talks to no address
but 127.0.0.1, uses made-up credentials and removes its temp folder. About 2 minutes:

    .venv/bin/python -m benchmarks.stuck_server [--only load clone pre-push]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.faultproxy import StuckServer
from tests.support.gitrepo import registry_bytes, sample_entry

from .common import BIN, PY
from .harness import isolated_env

ADDRESS = "s3://stuck-bench/models"
LOAD = f"""
import sys
from model_filer import Filer, ModelFilerError
try:
    Filer("models", {ADDRESS!r}, remote_type="s3").load("m0")
except ModelFilerError as exc:
    print(type(exc).__name__, exc, file=sys.stderr)
    sys.exit(1)
"""


def _env(root: Path, endpoint: str) -> dict[str, str]:
    """The benchmarks' isolated environment, pointed at the stuck endpoint."""
    return dict(
        isolated_env(root),
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="benchkey",
        AWS_SECRET_ACCESS_KEY="benchsecretbenchsecret",  # noqa: S106 - made up, loopback only
        AWS_DEFAULT_REGION="us-east-1",
        MODEL_FILER_CACHE_DIR=str(root / "store"),
        HOME=str(root / "home"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    start = time.monotonic()
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    seconds = time.monotonic() - start
    lines = (done.stdout + done.stderr).strip().splitlines()
    return seconds, done.returncode, lines[-1] if lines else ""


def _origin(root: Path, env: dict[str, str]) -> Path:
    """A repository whose committed registry names three synced models on the stuck store."""
    origin = root / "origin"
    (origin / "models").mkdir(parents=True)
    entries = [sample_entry(f"m{i}") for i in range(3)]
    (origin / "models" / ".s3_registry").write_bytes(registry_bytes("s3", ADDRESS, *entries))
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "models"]):
        subprocess.run(["git", *argv], cwd=origin, env=env, check=True)
    return origin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["load", "clone", "pre-push"])
    args = parser.parse_args(argv)
    wanted = set(args.only or ["load", "clone", "pre-push"])
    with tempfile.TemporaryDirectory(prefix="mf-stuck-") as tmp, StuckServer() as stuck:
        root = Path(tmp)
        (root / "home").mkdir()
        env = _env(root, stuck.url)
        origin = _origin(root, env)
        rows: list[tuple[str, float, int, str]] = []
        if "load" in wanted:
            rows.append(("load (defaults)", *_timed([PY, "-c", LOAD], origin, env)))
        template = root / "template"
        subprocess.run(
            [str(BIN / "model-filer"), "install-hooks", "--template-dir", str(template)],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
        clone = root / "clone"
        if wanted & {"clone", "pre-push"}:
            git_clone = ["git", "clone", "-q", f"--template={template}", str(origin), str(clone)]
            rows.append(("git clone with hooks", *_timed(git_clone, root, env)))
        if "pre-push" in wanted:
            bare = root / "bare.git"
            subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=env, check=True)
            push = ["git", "push", "-q", str(bare), "HEAD:refs/heads/main"]
            rows.append(("git push (pre-push check)", *_timed(push, clone, env)))
        print(f"stuck listener accepted {stuck.connections} connections")
    for name, seconds, status, last in rows:
        print(f"{name:28} {seconds:7.1f} s  exit {status}  {last[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
