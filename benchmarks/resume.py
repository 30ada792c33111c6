"""Resumable big transfers: after a SIGKILL at about half of a 1 GiB load or push, how many
bytes the next attempt moves (issue 12, part 3).

Starts its own SeaweedFS on 127.0.0.1 (tests/support/s3server.py) behind the fault proxy, which
counts the body bytes each way, and isolates boto3 and git from the machine's credentials and
config. Each transfer runs in a fresh subprocess. For each direction it prints the baseline of
the same run (an uninterrupted transfer: what a restart from zero costs), the bytes the child
moved before the kill, and the bytes and seconds of the attempt that finishes the job; the
finishing load verifies the sha256 before it unpickles. Targets: the load after the kill moves
at most 55% of the bytes, the push at most 60%.

    .venv/bin/python -m benchmarks.resume [--size-mib 1024] [--kill-at 0.5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import tests.support.isolation as isolation
from tests.support.faultproxy import FaultProxy
from tests.support.s3server import start_seaweedfs

MiB = 1 << 20
BUCKET = "mf-resume"
TARGETS = {"load": 0.55, "push": 0.60}

_CHILD = """
import os, sys
from model_filer import Filer
action, folder, address = sys.argv[1:4]
filer = Filer(folder, address)
if action == "dump":
    size = int(sys.argv[4])
    filer.dump([os.urandom(8 << 20) for _ in range(size // (8 << 20))], "big")
elif action == "load":
    model = filer.load("big")  # verified (size and sha256) before it is unpickled
    print(len(model))
else:
    filer.push("big")
"""


def _isolate(root: Path) -> None:
    for name in (*isolation.AWS_VARIABLES_TO_REMOVE, *isolation.GIT_VARIABLES_TO_REMOVE):
        os.environ.pop(name, None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    (root / "aws").write_text("")
    os.environ.update(
        AWS_CONFIG_FILE=str(root / "aws"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "aws"),
        AWS_EC2_METADATA_DISABLED="true",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(root / "aws"),
    )


def _child(action: str, folder: Path, address: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, action, str(folder), address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> str:
    out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"a transfer failed: {err.strip().splitlines()[-1:]}")
    return out


def _counted(proxy: FaultProxy, counter: str, child: subprocess.Popen[str]) -> tuple[int, float]:
    before, start = getattr(proxy, counter), time.perf_counter()
    _finish(child)
    return getattr(proxy, counter) - before, time.perf_counter() - start


def _kill_at(proxy: FaultProxy, counter: str, child: subprocess.Popen[str], at: int) -> int:
    before = getattr(proxy, counter)
    while getattr(proxy, counter) - before < at:
        if child.poll() is not None:
            raise SystemExit("the transfer ended before the kill: use a larger --size-mib")
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    time.sleep(0.5)  # what the child left in flight drains through the proxy
    return int(getattr(proxy, counter) - before)


def run(size: int, kill_at: float, root: Path) -> list[dict[str, Any]]:
    server = start_seaweedfs(root / "s3")
    try:
        server.create_bucket(BUCKET)
        os.environ.update(
            AWS_ACCESS_KEY_ID=server.access_key,
            AWS_SECRET_ACCESS_KEY=server.secret_key,
            AWS_DEFAULT_REGION=server.region,
        )
        rows = []
        with FaultProxy(server.endpoint_url, lifetime=3600) as proxy:
            os.environ["AWS_ENDPOINT_URL"] = proxy.url
            for action, counter in (("push", "bytes_up"), ("load", "bytes_down")):
                rows.append(_one(root, proxy, action, counter, size, kill_at))
        return rows
    finally:
        server.stop()


def _one(
    root: Path, proxy: FaultProxy, action: str, counter: str, size: int, kill_at: float
) -> dict[str, Any]:
    folders = {}
    for run_name in ("baseline", "killed"):
        address = f"s3://{BUCKET}/{action}-{run_name}-{uuid.uuid4().hex[:8]}"
        producer = root / f"{action}-{run_name}-producer"
        _finish(_child("dump", producer, address, str(size)))
        if action == "load":
            _finish(_child("push", producer, address))
            consumer = root / f"{action}-{run_name}-consumer"
            consumer.mkdir()
            shutil.copy(producer / ".s3_registry", consumer)
            folders[run_name] = (consumer, address)
        else:
            folders[run_name] = (producer, address)
    total = _registry_size(folders["killed"][0])
    base_bytes, base_s = _counted(proxy, counter, _child(action, *folders["baseline"]))
    moved_before = _kill_at(
        proxy, counter, _child(action, *folders["killed"]), int(total * kill_at)
    )
    after_bytes, after_s = _counted(proxy, counter, _child(action, *folders["killed"]))
    share = after_bytes / total
    return {
        "transfer": action,
        "bytes": total,
        "baseline_bytes": base_bytes,
        "baseline_s": round(base_s, 2),
        "killed_after_bytes": moved_before,
        "resumed_bytes": after_bytes,
        "resumed_s": round(after_s, 2),
        "resumed_share": round(share, 4),
        "target": TARGETS[action],
        "pass": share <= TARGETS[action],
    }


def _registry_size(folder: Path) -> int:
    from model_filer.registry.file import read

    reg = read(folder / ".s3_registry")
    assert reg is not None
    return reg.entries["big"].size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mf-resume-bench-"))
    try:
        _isolate(root)
        rows = run(args.size_mib * MiB, args.kill_at, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{'transfer':8} {'baseline (restart)':>22} {'killed after':>14} {'resumed':>22} "
        f"{'share':>7} {'target':>7}"
    )
    for r in rows:
        print(
            f"{r['transfer']:8} {r['baseline_bytes'] / MiB:10.0f} MiB {r['baseline_s']:6.1f} s "
            f"{r['killed_after_bytes'] / MiB:10.0f} MiB {r['resumed_bytes'] / MiB:10.0f} MiB "
            f"{r['resumed_s']:6.1f} s {r['resumed_share']:7.1%} {r['target']:6.0%} "
            f"{'PASS' if r['pass'] else 'FAIL'}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
