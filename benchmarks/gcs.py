"""The Google Cloud Storage remote against google-cloud-storage's own calls (issue 20).

Starts fake-gcs-server on 127.0.0.1 (tests/support/gcsserver.py, filesystem backend) and
measures, each against its baseline in the same run, both sides taking turns, medians of
``--runs``:

* push / pull of a 1 GiB model against the client's ``upload_from_filename`` /
  ``download_to_filename`` of the same file (target >= 0.9x throughput, peak RSS <= 200 MiB);
* a pull of 300 x 50 KB models against a sequential ``download_as_bytes`` loop, both through
  benchmarks/latency_proxy.py (+20 ms per request, as the S3 row; target >= 4x faster);
* a 256 MiB download and upload killed (SIGKILL) at about half, through the fault proxy
  that counts body bytes: the share the next attempt moves (target <= 60%).

Every measured transfer runs in a fresh subprocess (``--worker NAME``) that imports the client
before its clock starts; model_filer's own lazy imports are counted. The GCE metadata server is
pointed at a dead loopback port; no address but 127.0.0.1 is contacted.

    .venv/bin/python -m benchmarks.gcs [--runs 5] [--size-mib 1024] [--many 300] [--only ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import workers
from benchmarks.common import DELAY, HERE, PY, BenchError, MiB, log
from benchmarks.harness import (
    Row,
    Sample,
    Series,
    alternate,
    another_machine,
    clone_folder,
    copy_registry,
    isolated_env,
    mib,
    print_table,
    sample_worker,
    secs,
)
from benchmarks.workers import peak_rss_mib

BUCKET = "mf-bench"
MODULE = "benchmarks.gcs"
RESUME_TARGET = 0.60


# -- workers (each in a fresh subprocess) --------------------------------------------------------
def w_dump(dir: str, address: str, nbytes: int, count: int) -> dict[str, Any]:
    """``count`` models of ``nbytes`` random bytes each (setup); pushed when count > 1."""
    from model_filer import Filer

    filer = Filer(dir, address, "gcs")
    for i in range(count):
        name = "big" if count == 1 else f"m{i:04d}"
        filer.dump(os.urandom(nbytes), name, overwrite=True)
    if count > 1:
        filer.push_all()
    return {"seconds": 0.0}


def w_keys(dir: str, address: str) -> dict[str, Any]:
    """The full object keys of a folder's synced entries (setup, for the baselines)."""
    from model_filer import Filer

    filer = Filer(dir, address, "gcs")
    prefix = filer.remote.prefix  # type: ignore[attr-defined]
    return {"seconds": 0.0, "keys": [f"{prefix}/{e.key}" for e in filer.list_files()]}


def w_push_ours(dir: str, address: str) -> dict[str, Any]:
    import google.cloud.storage  # noqa: F401 - imported beforehand on both sides

    from model_filer import Filer

    filer = Filer(dir, address, "gcs")
    start = time.perf_counter()
    filer.push("big")
    return {"seconds": time.perf_counter() - start}


def w_push_base(path: str, key: str) -> dict[str, Any]:
    from google.cloud import storage

    start = time.perf_counter()
    storage.Client().bucket(BUCKET).blob(key).upload_from_filename(path)
    return {"seconds": time.perf_counter() - start}


def w_pull_ours(dir: str, address: str, expect: int) -> dict[str, Any]:
    return workers.w_pull_ours(dir, address, expect, remote_type="gcs")


def w_pull_base(key: str, path: str) -> dict[str, Any]:
    from google.cloud import storage

    start = time.perf_counter()
    storage.Client().bucket(BUCKET).blob(key).download_to_filename(path)
    return {"seconds": time.perf_counter() - start}


def w_get_loop(keys: list[str], dest: str) -> dict[str, Any]:
    from google.cloud import storage

    start = time.perf_counter()
    bucket = storage.Client().bucket(BUCKET)
    for i, key in enumerate(keys):
        (Path(dest) / f"{i:04d}.pkl").write_bytes(bucket.blob(key).download_as_bytes())
    return {"seconds": time.perf_counter() - start}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    name[2:]: fn for name, fn in globals().items() if name.startswith("w_") and callable(fn)
}


# -- the parent ----------------------------------------------------------------------------------
class GCSBench:
    """The temp root, the emulator, the proxies and the environment of every child."""

    def __init__(self, root: Path, runs: int) -> None:
        from tests.support.gcsserver import free_port, gcs_environment, start_fake_gcs

        self.root, self.runs, self._n = root, runs, 0
        log("starting fake-gcs-server on 127.0.0.1")
        self.server = start_fake_gcs(root / "gcs")
        self.server.create_bucket(BUCKET)
        (root / "gcloud").mkdir()
        gcs = gcs_environment(self.server.endpoint, free_port(), root / "gcloud")
        self.env = dict(isolated_env(root), **gcs)
        for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
            self.env.pop(name, None)
        self._latency: subprocess.Popen[str] | None = None

    def fresh(self, purpose: str) -> Path:
        self._n += 1
        return self.root / f"{purpose}-{self._n:04d}"

    def address(self, label: str) -> str:
        return f"gs://{BUCKET}/{label}-{uuid.uuid4().hex[:12]}"

    def worker(self, name: str, env: dict[str, str] | None = None, /, **args: Any) -> Sample:
        return sample_worker(name, args, env or self.env, MODULE)

    def setup(self, name: str, env: dict[str, str] | None = None, /, **args: Any) -> Any:
        from benchmarks.harness import run_worker

        return run_worker(name, args, env or self.env, MODULE)

    def latency_env(self) -> dict[str, str]:
        """The environment whose client goes through the +20 ms-per-request proxy."""
        if self._latency is None:
            log("starting the latency proxy (+20 ms per request)")
            upstream = self.server.endpoint.removeprefix("http://")
            self._latency = subprocess.Popen(
                [PY, str(HERE / "latency_proxy.py"), "--upstream", upstream, "--delay-ms", DELAY],
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
            )
            assert self._latency.stdout is not None
            self._latency_port = int(self._latency.stdout.readline())
        return dict(self.env, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{self._latency_port}")

    def close(self) -> None:
        if self._latency is not None:
            self._latency.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._latency.wait(timeout=5)
            if self._latency.poll() is None:
                self._latency.kill()
                self._latency.wait()
        self.server.stop()


def _tput_row(name: str, label: str, size: int, mine: Series, theirs: Series) -> Row:
    ratio = theirs.median / mine.median
    return Row(
        name,
        label,
        f"{size / MiB / mine.median:.0f} MiB/s",
        f"{size / MiB / theirs.median:.0f} MiB/s",
        f"{ratio:.2f}x tput",
        ">= 0.90x, RSS <= 200",
        ratio >= 0.9 and mine.peak_rss <= 200,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def bench_transfers(b: GCSBench, size: int, push: bool = True) -> list[Row]:
    """Push (unless not ``push``: pushed once, untimed) and pull of one big model against the
    client's own upload and download."""
    template, address = b.fresh("big-template"), b.address("template")
    log(f"setup: dumping a {size // MiB} MiB model")
    b.setup("dump", dir=str(template), address=address, nbytes=size, count=1)
    src = template / "big.pkl"
    pushed: list[tuple[Path, str]] = []
    if not push:
        b.setup("push_ours", dir=str(template), address=address)
        return _pull_rows(b, size, template, address)

    def push_ours(i: int) -> Sample:
        folder, new = b.fresh("push"), b.address("push")
        clone_folder(template, folder, address, new)
        pushed.append((folder, new))
        return b.worker("push_ours", dir=str(folder), address=new)

    def push_base(i: int) -> Sample:
        return b.worker("push_base", path=str(src), key=f"base-{uuid.uuid4().hex[:12]}/big.pkl")

    mine, theirs = alternate(b.runs, push_ours, push_base, sync=True)
    label = f"push {size // MiB} MiB vs upload_from_filename"
    return [_tput_row("push", label, size, mine, theirs), *_pull_rows(b, size, *pushed[0])]


def _pull_rows(b: GCSBench, size: int, folder: Path, pushed_address: str) -> list[Row]:
    """The pull of the big model that ``folder`` pushed to ``pushed_address``."""
    (key,) = b.setup("keys", dir=str(folder), address=pushed_address)["keys"]

    def pull_ours(i: int) -> Sample:
        dest = b.fresh("pull")
        copy_registry(folder, dest, pushed_address, pushed_address)
        try:
            env = another_machine(b.env, b.root)
            return b.worker("pull_ours", env, dir=str(dest), address=pushed_address, expect=1)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def pull_base(i: int) -> Sample:
        dest = b.fresh("pull-base")
        dest.mkdir()
        try:
            return b.worker("pull_base", key=key, path=str(dest / "big.pkl"))
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    mine, theirs = alternate(b.runs, pull_ours, pull_base, sync=True)
    label = f"pull {size // MiB} MiB + sha256 vs download_to_filename"
    return [_tput_row("pull", label, size, mine, theirs)]


def bench_pull_many(b: GCSBench, count: int) -> Row:
    """A pull of many small models against a sequential loop, both through +20 ms."""
    src, address = b.fresh("many"), b.address("many")
    log(f"setup: dumping and pushing {count} x 50 KB")
    b.setup("dump", dir=str(src), address=address, nbytes=50_000, count=count)
    keys = b.setup("keys", dir=str(src), address=address)["keys"]
    env = b.latency_env()

    def ours(i: int) -> Sample:
        dest = b.fresh("pull-many")
        copy_registry(src, dest, address, address)
        try:
            mate = another_machine(env, b.root)
            return b.worker("pull_ours", mate, dir=str(dest), address=address, expect=count)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def base(i: int) -> Sample:
        dest = b.fresh("pull-many-base")
        dest.mkdir()
        try:
            return b.worker("get_loop", env, keys=keys, dest=str(dest))
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    mine, theirs = alternate(b.runs, ours, base)
    speedup = theirs.median / mine.median
    return Row(
        "pull-many",
        f"pull {count} x 50 KB, +20 ms/req vs download loop",
        secs(mine.median),
        secs(theirs.median),
        f"{speedup:.1f}x faster",
        ">= 4x faster",
        speedup >= 4.0,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


_CHILD = """
import sys
from model_filer import Filer
filer = Filer(sys.argv[2], sys.argv[3], "gcs")
filer.load("big") if sys.argv[1] == "load" else filer.push("big")
"""


def _transfer(env: dict[str, str], action: str, folder: Path, address: str) -> Any:
    return subprocess.Popen(
        [PY, "-c", _CHILD, action, str(folder), address],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def bench_resume(b: GCSBench, size: int) -> list[Row]:
    """A download and an upload killed at about half: the share the next attempt moves."""
    return [_resume_row(b, action, size) for action in ("load", "push")]


def _resume_row(b: GCSBench, action: str, size: int) -> Row:
    from tests.support.faultproxy import FaultProxy

    producer, address = b.fresh(f"resume-{action}"), b.address(f"resume-{action}")
    b.setup("dump", dir=str(producer), address=address, nbytes=size, count=1)
    folder = producer
    if action == "load":
        b.setup("push_ours", dir=str(producer), address=address)
        folder = b.fresh("resume-consumer")
        copy_registry(producer, folder, address, address)
    counter = "bytes_down" if action == "load" else "bytes_up"
    with FaultProxy(b.server.endpoint, lifetime=3600) as proxy:
        env = another_machine(dict(b.env, STORAGE_EMULATOR_HOST=proxy.url), b.root)
        partial = Path(env["MODEL_FILER_CACHE_DIR"]) / "partial"

        def moved() -> int:  # the proxy counts a response body only once it is all sent
            if action == "push":
                return int(proxy.bytes_up)
            return sum(p.stat().st_size for p in partial.glob("*") if p.is_file())

        child = _transfer(env, action, folder, address)
        while moved() < size // 2:
            if child.poll() is not None:
                raise BenchError(f"{action} ended before the kill: {child.stderr.read()}")
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        time.sleep(1.0)  # what the child left in flight reaches the store
        killed_at, before = moved(), getattr(proxy, counter)
        start = time.perf_counter()
        again = _transfer(env, action, folder, address)
        _, err = again.communicate()
        if again.returncode:
            raise BenchError(f"the resumed {action} failed: {err[-2000:]}")
        sent = getattr(proxy, counter) - before
        seconds = time.perf_counter() - start
    share = sent / size
    return Row(
        f"resume-{action}",
        f"{action} {size // MiB} MiB killed at {killed_at / size:.0%}: next attempt",
        f"{sent / MiB:.0f} MiB, {seconds:.1f} s",
        f"{size / MiB:.0f} MiB (restart)",
        f"{share:.0%} of bytes",
        f"<= {RESUME_TARGET:.0%}",
        share <= RESUME_TARGET,
        "",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--many", type=int, default=300)
    parser.add_argument("--resume-mib", type=int, default=256)
    parser.add_argument("--only", nargs="+", choices=["transfers", "pull", "many", "resume"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](**json.loads(args.args))
        result["maxrss_mib"] = peak_rss_mib()
        print(json.dumps(result), flush=True)
        return 0
    root = Path(tempfile.mkdtemp(prefix="mf-gcs-bench-"))
    bench = GCSBench(root, args.runs)
    rows: list[Row] = []
    only = set(args.only or ["transfers", "many", "resume"])
    try:
        if "transfers" in only or "pull" in only:
            rows += bench_transfers(bench, args.size_mib * MiB, push="transfers" in only)
        if "many" in only:
            rows.append(bench_pull_many(bench, args.many))
        if "resume" in only:
            rows += bench_resume(bench, args.resume_mib * MiB)
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows, args.runs, args.runs)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"result": r.result} for r in rows]))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
