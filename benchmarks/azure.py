"""The Azure remote against azure-storage-blob's own calls, on Azurite, in the same run (issue 20).

Rows (every sample a fresh process; the sides take turns; medians of ``--runs``):

- push of a ``--size-mib`` model (default 1 GiB) against the SDK's ``upload_blob`` of the same
  file (``max_concurrency=8``, as many blocks in flight as ours), and the pull of it (into a
  clone on "another machine": an empty object store) against ``download_blob(max_concurrency=8)
  .readinto(file)``; target >= 0.9x each (the SDK's time over ours), peak RSS (VmHWM) <= 200 MiB;
- pull of ``--many`` x 50 KB models (default 300) against a sequential loop of
  ``download_blob().readall()``, both through benchmarks/latency_proxy.py (+20 ms a request, as
  the S3 row); target >= 4x. The SDK is imported before the clock on both sides (as
  benchmarks/run.py does boto3);
- a ``--resume-mib`` download (default 256 MiB) and upload killed (SIGKILL) once half the bytes
  passed tests/support/faultproxy.py, which counts them: the next attempt moves <= 60% of them.

Starts its own Azurite on 127.0.0.1 (tests/support/azurite.py: ``.ci/run`` installs it, pinned),
keeps the SDKs off every other address (identity endpoints dead, no telemetry), deletes its temp
root at the end. ``--quick`` shrinks sizes to check that it works, not to quote:

    .venv/bin/python -m benchmarks.azure [--runs 5] [--size-mib 1024] [--many 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import clone_folder, copy_registry, isolated_env
from tests.support.azurite import (
    DEV_ACCOUNT,
    Azurite,
    connection_string,
    isolated_azure_env,
    start_azurite,
)
from tests.support.faultproxy import FaultProxy

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
SMALL = 50_000
TARGETS = {"push": 0.9, "pull": 0.9, "pull-many": 4.0}
RSS_LIMIT = 200.0
RESUME_LIMIT = 0.60

# One child per sample: ``python -c CHILD op conn args...`` prints {"wall", "vmhwm_mib"}.
CHILD = r"""
import json, os, sys, time
op, args = sys.argv[1], sys.argv[2:]

def vmhwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

if op.startswith("sdk-"):
    from azure.storage.blob import BlobServiceClient
    conn = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    service = BlobServiceClient.from_connection_string(conn)
    container = service.get_container_client(args[0])
else:
    import azure.storage.blob  # before the clock on both sides, as run.py does boto3
    from model_filer import Filer
start = time.perf_counter()
if op == "push":
    Filer(args[0], args[1], remote_type="azure").push_all()
elif op == "pull":
    report = Filer(args[0], args[1], remote_type="azure").pull()
    assert not report.failed, report.failed
elif op == "sdk-upload":
    with open(args[2], "rb") as fh:
        container.get_blob_client(args[1]).upload_blob(fh, overwrite=True, max_concurrency=8)
elif op == "sdk-download":
    with open(args[2], "wb") as fh:
        container.get_blob_client(args[1]).download_blob(max_concurrency=8).readinto(fh)
elif op == "sdk-loop":
    out = args[2]
    for blob in json.loads(args[1]):
        data = container.get_blob_client(blob).download_blob().readall()
        with open(os.path.join(out, blob.replace("/", "_")), "wb") as fh:
            fh.write(data)
elif op == "dump-many":
    filer = Filer(args[0], args[1], remote_type="azure")
    for i in range(int(args[2])):
        filer.dump(os.urandom(int(args[3])), f"m{i:04d}")
    filer.push_all()
elif op == "dump":
    filer = Filer(args[0], args[1], remote_type="azure")
    size = int(args[2])
    filer.dump([os.urandom(8 << 20) for _ in range(size // (8 << 20))], "big", push=args[3] == "1")
print(json.dumps({"wall": time.perf_counter() - start, "vmhwm_mib": vmhwm()}))
"""


def log(text: str) -> None:
    print(f"[azure-bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Bench:
    """Azurite, the environment, and fresh containers and folders under one temp root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = isolated_env(root)
        for name, value in isolated_azure_env().items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        os.environ.update(self.env)  # the server's own client: the same isolation
        self.server: Azurite = start_azurite(root / "azurite")
        self.proxy: subprocess.Popen[str] | None = None
        self.cache = 0

    def conn_env(self, endpoint: str | None = None, **extra: str) -> dict[str, str]:
        conn = connection_string(endpoint or self.server.endpoint)
        return dict(self.env, AZURE_STORAGE_CONNECTION_STRING=conn, **extra)

    def fresh_store(self) -> dict[str, str]:
        """``MODEL_FILER_CACHE_DIR`` of another machine: empty."""
        self.cache += 1
        return {"MODEL_FILER_CACHE_DIR": str(self.root / f"store-{self.cache}")}

    def address(self) -> str:
        return f"az://{self.server.create_container()}/bench"

    def latency_endpoint(self) -> str:
        if self.proxy is None:
            upstream = self.server.endpoint.removeprefix("http://")
            self.proxy = subprocess.Popen(
                [sys.executable, str(HERE / "latency_proxy.py"), "--upstream", upstream],
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
            )
            assert self.proxy.stdout is not None
            self.port = int(self.proxy.stdout.readline())
        return f"http://127.0.0.1:{self.port}"

    def run(self, op: str, *args: str, env: dict[str, str]) -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, op, *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=HERE.parent,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{op} failed:\n{done.stderr[-3000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)
        self.server.stop()


def canonical(address: str) -> str:
    container, _, prefix = address[5:].partition("/")
    return f"az://{container}@{DEV_ACCOUNT}/{prefix}"


def _median(samples: list[dict[str, float]], field: str = "wall") -> float:
    return statistics.median(s[field] for s in samples)


def big_rows(bench: Bench, size: int, runs: int) -> list[dict[str, Any]]:
    """Push and pull of one big model against the SDK's upload_blob/download_blob."""
    source = bench.root / "big-source"
    address = bench.address()
    bench.run("dump", str(source), address, str(size), "0", env=bench.conn_env())
    pkl = source / "big.pkl"
    ours: dict[str, list[dict[str, float]]] = {"push": [], "pull": []}
    sdk: dict[str, list[dict[str, float]]] = {"push": [], "pull": []}
    for i in range(runs):
        log(f"1 GiB-class push/pull, run {i + 1}/{runs}")
        target = bench.address()
        folder = bench.root / f"push-{i}"
        clone_folder(source, folder, canonical(address), canonical(target))
        ours["push"].append(
            bench.run("push", str(folder), target, env=bench.conn_env(**bench.fresh_store()))
        )
        container = target[5:].split("/")[0]
        sdk["push"].append(
            bench.run("sdk-upload", container, f"sdk-{i}", str(pkl), env=bench.conn_env())
        )
        clone = bench.root / f"pull-{i}"
        copy_registry(folder, clone, canonical(target), canonical(target))
        ours["pull"].append(
            bench.run("pull", str(clone), target, env=bench.conn_env(**bench.fresh_store()))
        )
        out = bench.root / f"sdk-pull-{i}.bin"
        sdk["pull"].append(
            bench.run("sdk-download", container, f"sdk-{i}", str(out), env=bench.conn_env())
        )
        out.unlink()
        shutil.rmtree(clone)
        shutil.rmtree(folder)
    return [_row(name, ours[name], sdk[name]) for name in ("push", "pull")]


def many_rows(bench: Bench, count: int, runs: int) -> list[dict[str, Any]]:
    """Pull of many small models against a sequential SDK loop, through +20 ms a request."""
    source = bench.root / "many-source"
    address = bench.address()
    bench.run("dump-many", str(source), address, str(count), str(SMALL), env=bench.conn_env())
    text = (source / ".azure_registry").read_text()
    prefix = address[5:].partition("/")[2]
    blobs = [
        f"{prefix}/{line.split('key:')[1].strip()}" for line in text.splitlines() if "key:" in line
    ]
    assert len(blobs) == count, len(blobs)
    slow = bench.latency_endpoint()
    container = address[5:].split("/")[0]
    ours, sdk = [], []
    for i in range(runs):
        log(f"{count} x 50 KB pull through +20 ms, run {i + 1}/{runs}")
        clone = bench.root / f"many-{i}"
        copy_registry(source, clone, canonical(address), canonical(address))
        ours.append(
            bench.run("pull", str(clone), address, env=bench.conn_env(slow, **bench.fresh_store()))
        )
        out = bench.root / f"many-sdk-{i}"
        out.mkdir()
        sdk.append(
            bench.run("sdk-loop", container, json.dumps(blobs), str(out), env=bench.conn_env(slow))
        )
        shutil.rmtree(out)
        shutil.rmtree(clone)
    return [_row("pull-many", ours, sdk)]


def _row(name: str, ours: list[dict[str, float]], sdk: list[dict[str, float]]) -> dict[str, Any]:
    mine, theirs = _median(ours), _median(sdk)
    rss = max(s["vmhwm_mib"] for s in ours)
    ratio = theirs / mine
    ok = ratio >= TARGETS[name] and (name == "pull-many" or rss <= RSS_LIMIT)
    return {
        "row": name,
        "model_filer_s": round(mine, 3),
        "sdk_s": round(theirs, 3),
        "ratio": round(ratio, 2),
        "target": TARGETS[name],
        "peak_rss_mib": round(rss, 1),
        "sdk_peak_rss_mib": round(max(s["vmhwm_mib"] for s in sdk), 1),
        "pass": ok,
    }


def _settled(proxy: FaultProxy, quiet: float = 2.0) -> None:
    """Wait until the proxy has forwarded nothing for ``quiet`` seconds."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        moved = proxy.bytes_up + proxy.bytes_down + proxy.requests
        if moved != last:
            last, since = moved, time.monotonic()
        time.sleep(0.1)


def resume_rows(bench: Bench, size: int) -> list[dict[str, Any]]:
    """A download and an upload killed at about half; the bytes the next attempt moves."""
    rows = []
    for action in ("pull", "push"):
        address = bench.address()
        folder = bench.root / f"resume-{action}"
        bench.run(
            "dump",
            str(folder),
            address,
            str(size),
            "1" if action == "pull" else "0",
            env=bench.conn_env(),
        )
        if action == "pull":
            clone = bench.root / "resume-clone"
            copy_registry(folder, clone, canonical(address), canonical(address))
            folder = clone
        store = bench.fresh_store()
        counter = "bytes_down" if action == "pull" else "bytes_up"
        with FaultProxy(bench.server.endpoint, lifetime=3600) as proxy:
            env = bench.conn_env(proxy.url, **store)
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, action, str(folder), address],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=HERE.parent,
            )
            while getattr(proxy, counter) < size // 2 and child.poll() is None:
                time.sleep(0.005)
            child.send_signal(signal.SIGKILL)
            child.wait()
            _settled(proxy)  # what the child left in flight reaches the store
            before = getattr(proxy, counter)
            bench.run(action, str(folder), address, env=env)
            moved = getattr(proxy, counter) - before
        share = moved / size
        log(f"resumed {action}: killed at {before / size:.0%}, then moved {share:.1%}")
        rows.append(
            {
                "row": f"resume-{action}",
                "killed_at": round(before / size, 3),
                "next_attempt_moved": round(share, 3),
                "target": RESUME_LIMIT,
                "pass": share <= RESUME_LIMIT,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--many", type=int, default=300)
    parser.add_argument("--resume-mib", type=int, default=256)
    parser.add_argument("--only", nargs="*", choices=("big", "many", "resume"))
    parser.add_argument("--quick", action="store_true", help="64 MiB, 50 models, 1 run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.size_mib, args.many, args.resume_mib = 1, 64, 50, 64
    only = set(args.only or ("big", "many", "resume"))
    root = Path(tempfile.mkdtemp(prefix="mf-azure-bench-"))
    bench = Bench(root)
    rows: list[dict[str, Any]] = []
    try:
        if "big" in only:
            rows += big_rows(bench, args.size_mib * MiB, args.runs)
        if "many" in only:
            rows += many_rows(bench, args.many, args.runs)
        if "resume" in only:
            rows += resume_rows(bench, args.resume_mib * MiB)
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
