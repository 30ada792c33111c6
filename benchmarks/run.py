#!/usr/bin/env python
"""Benchmarks of model_filer against raw pickle, raw boto3 and DVC, with the targets of issue 5.

Run from the repository root (see benchmarks/README.md)::

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--runs N] [--install-dvc]

Every measured operation runs in a fresh subprocess of this interpreter (``--worker NAME``,
which prints one JSON line with its seconds and its ``ru_maxrss``), or is a whole console
script timed from the outside, so peak memory is per operation and imports and caches are
alike for both sides. model_filer and its baseline alternate run by run; each row gives medians
over the runs. The script starts its own SeaweedFS S3 server (and, for the many-small-files
rows, a loopback proxy adding 20 ms per request), keeps boto3 and git away from the machine's
credentials and config, contacts no address but 127.0.0.1 (except PyPI for ``--install-dvc``),
and removes its temp root at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = Path(__file__).resolve()
PY = sys.executable
BIN = Path(sys.executable).parent
DVC_VENV = HERE / ".venv-dvc"
MiB = 1 << 20
BUCKET = "mf-bench"
NULL_SHA = "0" * 40

sys.path.insert(0, str(REPO / "tests"))  # the test helpers: SeaweedFS and env isolation
import isolation  # type: ignore[import-not-found]  # noqa: E402

DELAY_MS = 20.0
DELAY = f"{DELAY_MS:g}"
PIP_INSTALL = ("-m", "pip", "install", "-q", "--disable-pip-version-check")
HEAVY_MODULES = ("boto3", "botocore", "s3transfer", "git")
#: model_filer/remotes/s3.py's TransferConfig, used only if it cannot be read from the code.
FALLBACK_TRANSFER = {
    "multipart_threshold": 16 * MiB,
    "multipart_chunksize": 8 * MiB,
    "max_concurrency": 8,
    "max_io_queue": 64,
    "use_threads": True,
}
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


# ================================================================================================
# Workers: run in a fresh subprocess; each returns a dict with at least "seconds".
# ================================================================================================


def _array(nbytes: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).random(max(1, nbytes // 8))


def _small_model(nbytes: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def w_make_model(
    dir: str, address: str, remote_type: str, nbytes: int, name: str
) -> dict[str, Any]:
    """Dump one big array model (setup); load it once, so later loads are cache hits."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    filer.dump(_array(nbytes), name)
    if remote_type == "local":
        filer.load(name)
    return {"seconds": 0.0, "size": filer.model_path(name).stat().st_size}


def _fast_dump(filer: Any, models: Sequence[tuple[str, Any]]) -> None:
    """What ``len(models)`` calls of ``filer.dump`` leave behind, with one registry write.

    Setup only: each dump rewrites the whole registry, so 1,000 dumps cost minutes.
    """

    from model_filer import serializers
    from model_filer.files import ensure_gitignore
    from model_filer.hashing import HashCache

    local = Path(filer.local_dir)
    local.mkdir(parents=True, exist_ok=True)
    ensure_gitignore(local)
    cache = HashCache(local)
    entries = {}
    for name, model in models:
        path = filer.model_path(name)
        with open(path, "wb") as fh:
            entries[name] = serializers.dump_entry(model, name, fh)
        cache.record(path, entries[name].sha256)
    with filer._transaction() as reg:
        reg.entries.update(entries)
    cache.save()


def w_make_many(
    dir: str, address: str, remote_type: str, count: int, nbytes: int, push: bool
) -> dict[str, Any]:
    """``count`` small models in ``dir`` (setup), pushed with push_all when ``push``."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    models = [(f"m{i:04d}", _small_model(nbytes, i)) for i in range(count)]
    try:
        _fast_dump(filer, models)
    except Exception as exc:  # model_filer's internals moved: take the slow, public road
        print(f"fast setup failed ({exc!r}); dumping one by one", file=sys.stderr)
        for name, model in models:
            filer.dump(model, name, overwrite=True)
    if push:
        filer.push_all()
    entries = filer.list_files()
    if len(entries) != count:
        raise BenchError(f"expected {count} entries in {dir}, found {len(entries)}")
    return {"seconds": 0.0}


def w_keys(dir: str, address: str, remote_type: str) -> dict[str, Any]:
    """Full object keys and sizes of a folder's synced entries (setup, for the baselines)."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    prefix = getattr(filer.remote, "prefix", "")
    keys = [
        (f"{prefix}/{e.key}" if prefix else str(e.key), e.size)
        for e in filer.list_files()
        if e.state == "synced"
    ]
    return {"seconds": 0.0, "keys": keys}


def _find_transfer_config(remote: Any) -> Any:
    """The s3transfer config behind an S3 remote's transfer manager (``manager``/``transfer``)."""
    for attr in ("manager", "transfer", "_manager", "_transfer"):
        obj = getattr(remote, attr, None)
        for holder in (obj, getattr(obj, "_manager", None)):
            config = getattr(holder, "config", None) or getattr(holder, "_config", None)
            if config is not None and hasattr(config, "multipart_chunksize"):
                return config
    raise LookupError("no transfer manager found on the S3 remote")


def w_transfer_config(address: str) -> dict[str, Any]:
    """The TransferConfig model_filer's S3 remote uses, as boto3 TransferConfig kwargs."""
    try:
        from model_filer.remotes.s3 import S3Remote

        cfg = _find_transfer_config(S3Remote(address))
        found = {
            "multipart_threshold": cfg.multipart_threshold,
            "multipart_chunksize": cfg.multipart_chunksize,
            "max_concurrency": cfg.max_request_concurrency,
            "max_io_queue": cfg.max_io_queue_size,
            "io_chunksize": cfg.io_chunksize,
            "use_threads": getattr(cfg, "use_threads", True),
        }
        return {"seconds": 0.0, "config": found, "source": "model_filer"}
    except Exception as exc:
        return {"seconds": 0.0, "config": FALLBACK_TRANSFER, "source": f"fallback ({exc!r})"}


def w_dump_ours(dir: str, address: str, nbytes: int) -> dict[str, Any]:
    from model_filer import Filer

    model = _array(nbytes)
    filer = Filer(dir, address, "local")
    start = time.perf_counter()
    filer.dump(model, "model")
    return {"seconds": time.perf_counter() - start}


def w_dump_base(path: str, nbytes: int) -> dict[str, Any]:
    import pickle

    model = _array(nbytes)
    start = time.perf_counter()
    with open(path, "wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return {"seconds": time.perf_counter() - start}


def w_load_ours(dir: str, address: str, name: str) -> dict[str, Any]:
    import numpy  # noqa: F401 - the model's library: imported beforehand on both sides

    from model_filer import Filer

    filer = Filer(dir, address, "local")
    start = time.perf_counter()
    model = filer.load(name)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nbytes": int(model.nbytes)}


def w_load_base(path: str) -> dict[str, Any]:
    import pickle

    import numpy  # noqa: F401 - imported beforehand on both sides

    start = time.perf_counter()
    with open(path, "rb") as fh:
        model = pickle.load(fh)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nbytes": int(model.nbytes)}


def w_push_ours(dir: str, address: str, name: str) -> dict[str, Any]:
    import boto3  # noqa: F401 - imported beforehand on both sides; clients made in the timing

    from model_filer import Filer

    filer = Filer(dir, address, "s3")
    start = time.perf_counter()
    filer.push(name)
    seconds = time.perf_counter() - start
    state = {e.name: e.state for e in filer.list_files()}[name]
    if state != "synced":
        raise BenchError(f"push left {name} {state}")
    return {"seconds": seconds}


def w_push_base(path: str, bucket: str, key: str, config: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    start = time.perf_counter()
    client = boto3.client("s3")
    client.upload_file(path, bucket, key, Config=TransferConfig(**config))
    return {"seconds": time.perf_counter() - start}


def w_pull_ours(dir: str, address: str, expect: int) -> dict[str, Any]:
    import boto3  # noqa: F401 - imported beforehand on both sides; clients made in the timing

    from model_filer import Filer

    filer = Filer(dir, address, "s3")
    start = time.perf_counter()
    report = filer.pull()
    seconds = time.perf_counter() - start
    if report.failed or len(report.done) != expect:
        raise BenchError(f"pull fetched {len(report.done)}/{expect}; failed: {report.failed}")
    return {"seconds": seconds}


def w_pull_base(bucket: str, key: str, path: str, config: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    start = time.perf_counter()
    client = boto3.client("s3")
    client.download_file(bucket, key, path, Config=TransferConfig(**config))
    return {"seconds": time.perf_counter() - start}


def w_push_all_ours(dir: str, address: str, expect: int) -> dict[str, Any]:
    import boto3  # noqa: F401 - imported beforehand on both sides; clients made in the timing

    from model_filer import Filer

    filer = Filer(dir, address, "s3")
    start = time.perf_counter()
    pushed = filer.push_all()
    seconds = time.perf_counter() - start
    if len(pushed) != expect:
        raise BenchError(f"push_all pushed {len(pushed)}/{expect}")
    return {"seconds": seconds}


def w_put_loop(src: str, bucket: str, prefix: str) -> dict[str, Any]:
    import boto3

    files = sorted(Path(src).glob("*.pkl"))
    start = time.perf_counter()
    client = boto3.client("s3")
    for path in files:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return {"seconds": time.perf_counter() - start}


def w_get_loop(bucket: str, keys: list[str], dest: str) -> dict[str, Any]:
    import boto3

    out = Path(dest)
    start = time.perf_counter()
    client = boto3.client("s3")
    for i, key in enumerate(keys):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        (out / f"{i:04d}.pkl").write_bytes(body)
    return {"seconds": time.perf_counter() - start}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    name[2:]: fn for name, fn in globals().items() if name.startswith("w_") and callable(fn)
}


def peak_rss_mib() -> float:
    """This process's own peak RSS: VmHWM (ru_maxrss also counts the parent's RSS at fork)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_main(name: str, args_json: str) -> int:
    result = WORKERS[name](**json.loads(args_json))
    result["maxrss_mib"] = peak_rss_mib()
    print(json.dumps(result), flush=True)
    return 0


# ================================================================================================
# The parent: environment, servers, measurements, the table.
# ================================================================================================


@dataclass(frozen=True)
class Sizes:
    dump_bytes: int
    transfer_bytes: int
    many: int
    many_bytes: int
    hook_models: int
    hook_bytes: int


FULL = Sizes(512 * MiB, 1024 * MiB, 300, 50_000, 1000, 1000)
QUICK = Sizes(64 * MiB, 64 * MiB, 50, 50_000, 50, 1000)


@dataclass
class Sample:
    seconds: float
    rss_mib: float


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def peak_rss(self) -> float:
        return max(s.rss_mib for s in self.samples)


@dataclass
class Row:
    name: str
    label: str
    ours: str = "-"
    base: str = "-"
    ratio: str = "-"
    target: str = "-"
    ok: bool | None = None
    rss: str = "-"
    note: str = ""

    @property
    def result(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


def isolated_env(root: Path) -> dict[str, str]:
    """The environment of every child: no machine credentials, config or proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in AWS_VARIABLES_TO_REMOVE and k not in GIT_VARIABLES_TO_REMOVE
    }
    conf = root / "config"
    conf.mkdir(parents=True, exist_ok=True)
    for name in ("aws-config", "aws-credentials", "gitconfig"):
        (conf / name).write_text("")
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(conf / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(conf / "aws-credentials"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        GIT_AUTHOR_NAME="Model Filer Bench",
        GIT_AUTHOR_EMAIL="bench@model-filer.invalid",
        GIT_COMMITTER_NAME="Model Filer Bench",
        GIT_COMMITTER_EMAIL="bench@model-filer.invalid",
        GIT_CONFIG_GLOBAL=str(conf / "gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="init.defaultBranch",
        GIT_CONFIG_VALUE_0="main",
        # DVC: no analytics, no update check, no config or cache outside the temp root.
        DVC_NO_ANALYTICS="1",
        DVC_STUDIO_OFFLINE="true",
        DVC_ANALYTICS_ENDPOINT="http://127.0.0.1:9/",
        DVC_UPDATER_ENDPOINT="http://127.0.0.1:9/",
        DVC_GLOBAL_CONFIG_DIR=str(conf / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(conf / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(root / "dvc-site-cache"),
    )
    return env


def run_worker(name: str, args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one worker in a fresh interpreter; return its JSON result."""
    cmd = [PY, str(SCRIPT), "--worker", name, "--args", json.dumps(args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"worker {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = done.stderr
    return result


def sample_worker(name: str, args: dict[str, Any], env: dict[str, str]) -> Sample:
    result = run_worker(name, args, env)
    return Sample(float(result["seconds"]), float(result["maxrss_mib"]))


#: Starts a command and reports its wall time and rusage. It runs as a small process of its own
#: because Linux carries the RSS high-water mark of whoever forks into the exec'ed child's
#: ru_maxrss: spawned straight from this (large) parent, every child would report its size.
LAUNCHER = """
import json, os, sys, time
cmd, result = json.loads(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
pid = os.posix_spawn(cmd[0], cmd, os.environ, setsid=True)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(result, "w") as fh:
    json.dump([seconds, os.waitstatus_to_exitcode(status), usage.ru_maxrss], fh)
"""


def time_process(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], check: bool = True
) -> tuple[Sample, str]:
    """Wall time and peak RSS of a whole process (own session: no controlling terminal)."""
    argv = list(cmd)
    exe = shutil.which(argv[0], path=env.get("PATH")) if os.sep not in argv[0] else argv[0]
    if exe is None:
        raise BenchError(f"{argv[0]} not found")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run(
            [PY, "-I", "-S", "-c", LAUNCHER, json.dumps([exe, *argv[1:]]), str(result)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
        out.seek(0)
        text = out.read().decode(errors="replace")
        if not result.exists():
            raise BenchError(f"launcher failed for {' '.join(argv)}:\n{text[-3000:]}")
        seconds, code, maxrss_kib = json.loads(result.read_text())
    if check and code != 0:
        raise BenchError(f"{' '.join(argv)} exited {code} in {cwd}:\n{text[-3000:]}")
    return Sample(float(seconds), maxrss_kib / 1024), text


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a setup command; raise with its output if it fails."""
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)} exited {done.returncode} in {cwd}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def alternate(
    runs: int, ours: Callable[[int], Sample], base: Callable[[int], Sample], sync: bool = False
) -> tuple[Series, Series]:
    """``runs`` samples of each, alternating which goes first.

    With ``sync``, dirty pages are flushed (untimed) before each sample, so that one run's
    writeback does not throttle the next one's writes.
    """
    mine, theirs = Series(), Series()

    def take(series: Series, fn: Callable[[int], Sample], i: int) -> None:
        if sync:
            os.sync()
        series.samples.append(fn(i))

    for i in range(runs):
        log(f"run {i + 1}/{runs}")
        if i % 2 == 0:
            take(mine, ours, i)
            take(theirs, base, i)
        else:
            take(theirs, base, i)
            take(mine, ours, i)
    return mine, theirs


def clone_folder(src: Path, dst: Path, old_address: str, new_address: str) -> None:
    """A model folder like ``src`` (model files hard-linked) whose registry names a new remote."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.suffix == ".pkl":
            os.link(path, dst / path.name)
        elif path.name == ".gitignore":
            shutil.copyfile(path, dst / path.name)
    internal = dst / ".model_filer"
    internal.mkdir()
    shutil.copyfile(src / ".model_filer" / "hashes.json", internal / "hashes.json")
    copy_registry(src, dst, old_address, new_address)


def copy_registry(src: Path, dst: Path, old_address: str, new_address: str) -> None:
    """Copy ``src``'s registry into ``dst`` (created), pointing it at ``new_address``."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.glob(".*_registry"):
        text = path.read_text()
        old, new = f"address: {old_address}\n", f"address: {new_address}\n"
        if old not in text:
            raise BenchError(f"{path} does not record {old_address!r}")
        (dst / path.name).write_text(text.replace(old, new))


def mib(x: float) -> str:
    return f"{x:.0f}"


def secs(x: float) -> str:
    return f"{x:.3f} s"


class Bench:
    """Shared state: the temp root, the environment, lazily started servers and fixtures."""

    def __init__(self, root: Path, sizes: Sizes, runs: int, install_dvc: bool) -> None:
        self.root = root
        self.sizes = sizes
        self.runs = runs
        self.light_runs = max(runs, 5)
        self.install_dvc = install_dvc
        self.env = isolated_env(root)
        self._server: Any = None
        self._proxy: subprocess.Popen[str] | None = None
        self._proxy_env: dict[str, str] | None = None
        self._cache: dict[str, Any] = {}
        self._n = 0

    # -- plumbing --------------------------------------------------------------------------
    def fresh(self, purpose: str) -> Path:
        self._n += 1
        return self.root / f"{purpose}-{self._n:04d}"

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def s3_env(self) -> dict[str, str]:
        if self._server is None:
            from s3server import start_seaweedfs  # type: ignore[import-not-found]

            log("starting SeaweedFS on 127.0.0.1")
            os.environ.update(self.env)  # s3server's own client: same isolation
            for name in AWS_VARIABLES_TO_REMOVE + GIT_VARIABLES_TO_REMOVE:
                os.environ.pop(name, None)
            self._server = start_seaweedfs(self.root / "s3")
            self._server.create_bucket(BUCKET)
        return dict(
            self.env,
            AWS_ENDPOINT_URL=self._server.endpoint_url,
            AWS_ACCESS_KEY_ID=self._server.access_key,
            AWS_SECRET_ACCESS_KEY=self._server.secret_key,
            AWS_DEFAULT_REGION=self._server.region,
        )

    @property
    def proxy_env(self) -> dict[str, str]:
        if self._proxy_env is None:
            env = self.s3_env
            upstream = env["AWS_ENDPOINT_URL"].removeprefix("http://")
            log(f"starting the latency proxy (+{DELAY_MS:.0f} ms per request)")
            self._proxy = subprocess.Popen(
                [PY, str(HERE / "latency_proxy.py"), "--upstream", upstream, "--delay-ms", DELAY],
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
            )
            assert self._proxy.stdout is not None
            port = int(self._proxy.stdout.readline())
            self._proxy_env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        return self._proxy_env

    def close(self) -> None:
        if self._proxy is not None and self._proxy.poll() is None:
            self._proxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proxy.wait(timeout=5)
            if self._proxy.poll() is None:
                self._proxy.kill()
                self._proxy.wait()
        if self._server is not None:
            self._server.stop()

    def worker(self, name: str, env: dict[str, str] | None = None, /, **args: Any) -> Sample:
        return sample_worker(name, args, env or self.env)

    def setup_worker(self, name: str, env: dict[str, str] | None = None, /, **args: Any) -> Any:
        result = run_worker(name, args, env or self.env)
        for line in result.get("stderr", "").splitlines()[-5:]:
            log(f"{name}: {line}")
        return result

    def transfer_config(self) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            result = self.setup_worker("transfer_config", self.s3_env, address=f"{BUCKET}/x")
            if result["source"] != "model_filer":
                log(f"TransferConfig: {result['source']}")
            config: dict[str, Any] = result["config"]
            return config

        config: dict[str, Any] = self.once("transfer_config", make)
        return config

    # -- fixtures --------------------------------------------------------------------------
    def big_template(self) -> tuple[Path, str, int]:
        """A folder holding one local model of ``transfer_bytes``, registry for S3."""

        def make() -> tuple[Path, str, int]:
            folder, address = self.root / "big-template", f"s3://{BUCKET}/big-template"
            log(f"setup: dumping a {self.sizes.transfer_bytes // MiB} MiB model for S3")
            size = self.setup_worker(
                "make_model",
                dir=str(folder),
                address=address,
                remote_type="s3",
                nbytes=self.sizes.transfer_bytes,
                name="big",
            )["size"]
            return folder, address, int(size)

        made: tuple[Path, str, int] = self.once("big", make)
        return made

    def many_template(self) -> tuple[Path, str]:
        def make() -> tuple[Path, str]:
            folder, address = self.root / "many-template", f"s3://{BUCKET}/many-template"
            log(f"setup: {self.sizes.many} models of {self.sizes.many_bytes // 1000} KB")
            self.setup_worker(
                "make_many",
                dir=str(folder),
                address=address,
                remote_type="s3",
                count=self.sizes.many,
                nbytes=self.sizes.many_bytes,
                push=False,
            )
            return folder, address

        made: tuple[Path, str] = self.once("many", make)
        return made

    def pushed_copy(self, template: tuple[Path, str], label: str) -> tuple[Path, str]:
        """A copy of a template pushed to its own prefix (setup, no proxy)."""
        folder, address = self.root / f"{label}-src", f"s3://{BUCKET}/{label}-src"
        clone_folder(template[0], folder, template[1], address)
        count = len(list(folder.glob("*.pkl")))
        self.setup_worker(
            "push_all_ours", self.s3_env, dir=str(folder), address=address, expect=count
        )
        return folder, address

    def hook_repo(self) -> Path:
        """A committed repo: models/ holds ``hook_models`` synced models on a local remote."""

        def make() -> Path:
            repo, remote = self.root / "hook-repo", self.root / "hook-remote"
            remote.mkdir()
            log(f"setup: git repo with {self.sizes.hook_models} synced models (local remote)")
            self._git_init(repo)
            self.setup_worker(
                "make_many",
                dir=str(repo / "models"),
                address=str(remote),
                remote_type="local",
                count=self.sizes.hook_models,
                nbytes=self.sizes.hook_bytes,
                push=True,
            )
            run(["git", "add", "-A"], repo, self.env)
            run(["git", "commit", "-q", "-m", "models"], repo, self.env)
            return repo

        made: Path = self.once("hook_repo", make)
        return made

    def staged_repo(self) -> Path:
        """The hook repo with the registry staged, not committed (as at `git commit`)."""

        def make() -> Path:
            repo = self.root / "staged-repo"
            shutil.copytree(self.hook_repo(), repo, symlinks=True)
            run(["git", "reset", "-q", "--soft", "HEAD~1"], repo, self.env)
            staged = run(["git", "diff", "--cached", "--name-only"], repo, self.env).split()
            if "models/.local_registry" not in staged:
                raise BenchError(f"registry not staged in {repo}: {staged}")
            return repo

        made: Path = self.once("staged_repo", make)
        return made

    def _git_init(self, repo: Path) -> None:
        repo.mkdir(parents=True)
        run(["git", "init", "-q"], repo, self.env)
        run(["git", "commit", "-q", "--allow-empty", "-m", "init"], repo, self.env)

    # -- DVC -------------------------------------------------------------------------------
    def dvc(self) -> Path | None:
        exe = DVC_VENV / "bin" / "dvc"
        if not exe.exists() and self.install_dvc:
            self.once("install_dvc", install_dvc)
        return exe if exe.exists() else None

    def dvc_repo(self, dvc: Path, label: str, remote_url: str | None) -> Path:
        """A git repo whose ``count`` files are each tracked by their own ``.dvc`` file."""
        repo = self.root / label
        self._git_init(repo)
        env = self.s3_env if remote_url else self.env
        run([str(dvc), "init", "-q"], repo, env)
        run([str(dvc), "config", "core.analytics", "false"], repo, env)
        run([str(dvc), "config", "core.check_update", "false"], repo, env)
        if remote_url:
            run([str(dvc), "remote", "add", "-d", "store", remote_url], repo, env)
            endpoint = env["AWS_ENDPOINT_URL"]
            run([str(dvc), "remote", "modify", "store", "endpointurl", endpoint], repo, env)
            run(
                [str(dvc), "remote", "modify", "store", "region", env["AWS_DEFAULT_REGION"]],
                repo,
                env,
            )
        data = repo / "data"
        data.mkdir()
        src = self.hook_repo() / "models"
        files = sorted(src.glob("*.pkl"))
        for path in files:
            shutil.copyfile(path, data / path.name)
        log(f"setup: dvc add of {len(files)} files, one .dvc file each ({label})")
        run([str(dvc), "add", "-q", *[f"data/{p.name}" for p in files]], repo, env)
        if len(list(data.glob("*.pkl.dvc"))) != len(files):
            raise BenchError(f"dvc add did not write one .dvc file per file in {data}")
        if remote_url:
            log(f"setup: dvc push of {len(files)} files")
            run([str(dvc), "push", "-q"], repo, env)
        run(["git", "add", "-A"], repo, self.env)
        return repo


def install_dvc() -> None:
    """Create benchmarks/.venv-dvc with dvc and dvc-s3 from PyPI (the only non-loopback use)."""
    log(f"installing dvc and dvc-s3 into {DVC_VENV} (a minute or two)")
    subprocess.run([PY, "-m", "venv", str(DVC_VENV)], check=True)
    done = subprocess.run(
        [str(DVC_VENV / "bin" / "python"), *PIP_INSTALL, "dvc", "dvc-s3"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(DVC_VENV, ignore_errors=True)
        raise BenchError(f"pip install dvc dvc-s3 failed:\n{done.stderr[-3000:]}")


# ================================================================================================
# Workloads
# ================================================================================================


def bench_dump(b: Bench) -> Row:
    size = b.sizes.dump_bytes
    remote = b.root / "dump-remote"
    remote.mkdir(exist_ok=True)

    def ours(i: int) -> Sample:
        folder = b.fresh("dump")
        try:
            return b.worker("dump_ours", dir=str(folder), address=str(remote), nbytes=size)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        folder = b.fresh("dump-base")
        folder.mkdir()
        try:
            return b.worker("dump_base", path=str(folder / "model.pkl"), nbytes=size)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    mine, theirs = alternate(b.runs, ours, base, sync=True)
    ratio = mine.median / theirs.median
    return Row(
        "dump",
        f"dump {size // MiB} MiB ndarray vs pickle.dump",
        secs(mine.median),
        secs(theirs.median),
        f"{ratio:.2f}x time",
        "<= 1.20x",
        ratio <= 1.20,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def bench_load(b: Bench) -> Row:
    size = b.sizes.dump_bytes
    folder, remote = b.root / "load", b.root / "load-remote"
    remote.mkdir()
    log(f"setup: dumping a {size // MiB} MiB model and loading it once")
    b.setup_worker(
        "make_model",
        dir=str(folder),
        address=str(remote),
        remote_type="local",
        nbytes=size,
        name="model",
    )

    def ours(i: int) -> Sample:
        return b.worker("load_ours", dir=str(folder), address=str(remote), name="model")

    def base(i: int) -> Sample:
        return b.worker("load_base", path=str(folder / "model.pkl"))

    mine, theirs = alternate(b.runs, ours, base, sync=True)
    ratio = mine.median / theirs.median
    return Row(
        "load",
        f"load {size // MiB} MiB (cache hit) vs pickle.load",
        secs(mine.median),
        secs(theirs.median),
        f"{ratio:.2f}x time",
        "<= 1.05x",
        ratio <= 1.05,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def _throughput_row(
    name: str, label: str, size: int, mine: Series, theirs: Series, target: float
) -> Row:
    ours_tp, base_tp = size / MiB / mine.median, size / MiB / theirs.median
    ratio = ours_tp / base_tp
    return Row(
        name,
        label,
        f"{ours_tp:.0f} MiB/s",
        f"{base_tp:.0f} MiB/s",
        f"{ratio:.2f}x tput",
        f">= {target:.2f}x, RSS <= 200",
        ratio >= target and mine.peak_rss <= 200,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def bench_push(b: Bench) -> Row:
    template, tpl_address, size = b.big_template()
    env, config = b.s3_env, b.transfer_config()
    src = template / "big.pkl"

    def ours(i: int) -> Sample:
        folder = b.fresh("push")
        address = f"s3://{BUCKET}/push-{uuid.uuid4().hex[:12]}"
        clone_folder(template, folder, tpl_address, address)
        try:
            return b.worker("push_ours", env, dir=str(folder), address=address, name="big")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        key = f"push-base-{uuid.uuid4().hex[:12]}/big.pkl"
        return b.worker("push_base", env, path=str(src), bucket=BUCKET, key=key, config=config)

    mine, theirs = alternate(b.runs, ours, base, sync=True)
    label = f"push {size / MiB:.0f} MiB to S3 vs upload_file"
    return _throughput_row("push", label, size, mine, theirs, 0.9)


def bench_pull(b: Bench) -> Row:
    template, tpl_address, size = b.big_template()
    env, config = b.s3_env, b.transfer_config()
    log("setup: pushing the big model once, to pull it back")
    src, address = b.once("big_src", lambda: b.pushed_copy((template, tpl_address), "big"))
    keys = b.setup_worker("keys", env, dir=str(src), address=address, remote_type="s3")["keys"]
    key = keys[0][0]

    def ours(i: int) -> Sample:
        folder = b.fresh("pull")
        copy_registry(src, folder, address, address)
        try:
            return b.worker("pull_ours", env, dir=str(folder), address=address, expect=1)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        folder = b.fresh("pull-base")
        folder.mkdir()
        try:
            return b.worker(
                "pull_base",
                env,
                bucket=BUCKET,
                key=key,
                path=str(folder / "big.pkl"),
                config=config,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    mine, theirs = alternate(b.runs, ours, base, sync=True)
    label = f"pull {size / MiB:.0f} MiB + sha256 vs download_file"
    return _throughput_row("pull", label, size, mine, theirs, 0.8)


def _speedup_row(name: str, label: str, mine: Series, theirs: Series, target: float) -> Row:
    speedup = theirs.median / mine.median
    return Row(
        name,
        label,
        secs(mine.median),
        secs(theirs.median),
        f"{speedup:.1f}x faster",
        f">= {target:.0f}x faster",
        speedup >= target,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def bench_push_many(b: Bench) -> Row:
    template, tpl_address = b.many_template()
    env, n = b.proxy_env, b.sizes.many

    def ours(i: int) -> Sample:
        folder = b.fresh("push-many")
        address = f"s3://{BUCKET}/many-{uuid.uuid4().hex[:12]}"
        clone_folder(template, folder, tpl_address, address)
        try:
            return b.worker("push_all_ours", env, dir=str(folder), address=address, expect=n)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        prefix = f"many-base-{uuid.uuid4().hex[:12]}"
        return b.worker("put_loop", env, src=str(template), bucket=BUCKET, prefix=prefix)

    mine, theirs = alternate(b.runs, ours, base)
    label = f"push_all {n} x 50 KB, +20 ms/req vs put loop"
    return _speedup_row("push-many", label, mine, theirs, 4.0)


def bench_pull_many(b: Bench) -> Row:
    template = b.many_template()
    n = b.sizes.many
    src, address = b.once("many_src", lambda: b.pushed_copy(template, "many"))
    keys = b.setup_worker("keys", b.s3_env, dir=str(src), address=address, remote_type="s3")
    key_names = [k for k, _ in keys["keys"]]
    env = b.proxy_env

    def ours(i: int) -> Sample:
        folder = b.fresh("pull-many")
        copy_registry(src, folder, address, address)
        try:
            return b.worker("pull_ours", env, dir=str(folder), address=address, expect=n)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        folder = b.fresh("pull-many-base")
        folder.mkdir()
        try:
            return b.worker("get_loop", env, bucket=BUCKET, keys=key_names, dest=str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    mine, theirs = alternate(b.runs, ours, base)
    label = f"pull {n} x 50 KB, +20 ms/req vs get loop"
    return _speedup_row("pull-many", label, mine, theirs, 4.0)


IMPORT_CHECK = (
    "import json, sys\n"
    "from model_filer_hooks.no_local_models import main\n"
    "rc = main(sys.argv[1:])\n"
    f"heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
    "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
)


def bench_commit_hook(b: Bench) -> Row:
    repo, n = b.staged_repo(), b.sizes.hook_models
    hook = [str(BIN / "no-local-models"), "models/.local_registry"]
    _, out = time_process([PY, "-c", IMPORT_CHECK, "models/.local_registry"], repo, b.env)
    check = json.loads(out.strip().splitlines()[-1])
    mine, theirs = alternate(
        b.light_runs,
        lambda i: time_process(hook, repo, b.env)[0],
        lambda i: time_process([PY, "-c", "pass"], repo, b.env)[0],
    )
    clean = not check["heavy"] and check["rc"] == 0
    return Row(
        "commit-hook",
        f"no-local-models, {n} entries vs python -c pass",
        secs(mine.median),
        secs(theirs.median),
        f"+{(mine.median - theirs.median) * 1000:.0f} ms",
        "<= 0.30 s, no boto3/git",
        mine.median <= 0.30 and clean,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
        "imports: " + (", ".join(check["heavy"]) or "no boto3, no GitPython"),
    )


def bench_prefetch(b: Bench) -> Row:
    repo, n = b.hook_repo(), b.sizes.hook_models
    env = dict(
        b.env,
        PRE_COMMIT_FROM_REF=NULL_SHA,
        PRE_COMMIT_TO_REF="HEAD",
        PRE_COMMIT_CHECKOUT_TYPE="1",
    )
    cache = repo / "models" / ".model_filer" / "hashes.json"
    before = cache.stat().st_mtime_ns
    outputs: list[str] = []

    def ours(i: int) -> Sample:
        sample, out = time_process([str(BIN / "prefetch-models")], repo, env)
        outputs.append(out)
        return sample

    mine, theirs = alternate(
        b.light_runs, ours, lambda i: time_process([PY, "-c", "pass"], repo, b.env)[0]
    )
    notes = []
    if cache.stat().st_mtime_ns != before:
        notes.append("hash cache rewritten (re-hashed?)")
    if any("fetched" in o and " 0 model(s) fetched" not in o for o in outputs):
        notes.append("fetched something: " + outputs[-1].strip()[:80])
    # Sanity check, untimed: with one model gone, the same command fetches exactly that one.
    (repo / "models" / "m0000.pkl").unlink()
    _, out = time_process([str(BIN / "prefetch-models")], repo, env)
    if "1 model(s) fetched" not in out:
        notes.append(f"with one model missing it did not fetch it: {out.strip()[:120]!r}")
    return Row(
        "prefetch",
        f"prefetch-models, {n} present vs python -c pass",
        secs(mine.median),
        secs(theirs.median),
        f"+{(mine.median - theirs.median) * 1000:.0f} ms",
        "<= 0.50 s",
        mine.median <= 0.50 and not notes,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
        "; ".join(notes) or "nothing fetched, nothing hashed",
    )


def bench_import(b: Bench) -> Row:
    code = f"import sys, model_filer; print(*(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    _, out = time_process([PY, "-c", code], REPO, b.env)
    heavy = out.strip()
    mine, theirs = alternate(
        b.light_runs,
        lambda i: time_process([PY, "-c", "import model_filer"], REPO, b.env)[0],
        lambda i: time_process([PY, "-c", "pass"], REPO, b.env)[0],
    )
    delta = (mine.median - theirs.median) * 1000
    return Row(
        "import",
        "import model_filer vs python -c pass",
        secs(mine.median),
        secs(theirs.median),
        f"+{delta:.0f} ms",
        "<= +40 ms",
        delta <= 40 and not heavy,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
        f"also imports {heavy}" if heavy else "boto3 and GitPython not imported",
    )


def _no_dvc(name: str, label: str) -> Row:
    return Row(name, label, note="DVC not installed; run with --install-dvc")


def bench_dvc_hook(b: Bench) -> Row:
    n = b.sizes.hook_models
    label = f"commit hook, {n} entries vs dvc git-hook pre-commit"
    dvc = b.dvc()
    if dvc is None:
        return _no_dvc("dvc-hook", label)
    ours_repo = b.staged_repo()
    theirs_repo = b.once("dvc_hook_repo", lambda: b.dvc_repo(dvc, "dvc-hook-repo", None))
    hook = [str(BIN / "no-local-models"), "models/.local_registry"]
    mine, theirs = alternate(
        b.runs,
        lambda i: time_process(hook, ours_repo, b.env)[0],
        lambda i: time_process([str(dvc), "git-hook", "pre-commit"], theirs_repo, b.env)[0],
    )
    return _speedup_row("dvc-hook", label, mine, theirs, 10.0)


def bench_dvc_pull(b: Bench) -> Row:
    n = b.sizes.hook_models
    label = f"clone + pull {n} models vs dvc pull"
    dvc = b.dvc()
    if dvc is None:
        return _no_dvc("dvc-pull", label)
    env = b.s3_env

    def make_origin() -> Path:
        origin = b.root / "pull-origin"
        b._git_init(origin)
        log(f"setup: {n} models pushed to S3 in a git repo")
        b.setup_worker(
            "make_many",
            env,
            dir=str(origin / "models"),
            address=f"s3://{BUCKET}/clone-models",
            remote_type="s3",
            count=n,
            nbytes=b.sizes.hook_bytes,
            push=True,
        )
        run(["git", "add", "-A"], origin, b.env)
        run(["git", "commit", "-q", "-m", "models"], origin, b.env)
        return origin

    origin = b.once("pull_origin", make_origin)

    def make_dvc_origin() -> Path:
        repo = b.dvc_repo(dvc, "dvc-pull-origin", f"s3://{BUCKET}/dvc-store")
        run(["git", "commit", "-q", "-m", "data"], repo, b.env)
        return repo

    dvc_origin = b.once("dvc_pull_origin", make_dvc_origin)

    def clone(src: Path) -> Path:
        dst = b.fresh("clone")
        run(["git", "clone", "-q", str(src), str(dst)], b.root, b.env)
        return dst

    def ours(i: int) -> Sample:
        repo = clone(origin)
        sample, out = time_process(
            [str(BIN / "model-filer"), "pull", "--all", "--dir", "models"], repo, env
        )
        if f"Fetched {n} model(s)" not in out:
            raise BenchError(f"model-filer pull: {out}")
        shutil.rmtree(repo, ignore_errors=True)
        return sample

    def theirs(i: int) -> Sample:
        repo = clone(dvc_origin)
        sample, _ = time_process([str(dvc), "pull", "-q"], repo, env)
        got = len(list((repo / "data").glob("*.pkl")))
        if got != n:
            raise BenchError(f"dvc pull left {got}/{n} files in {repo}")
        shutil.rmtree(repo, ignore_errors=True)
        return sample

    mine, base = alternate(b.runs, ours, theirs)
    return _speedup_row("dvc-pull", label, mine, base, 3.0)


WORKLOADS: dict[str, Callable[[Bench], Row]] = {
    "dump": bench_dump,
    "load": bench_load,
    "push": bench_push,
    "pull": bench_pull,
    "push-many": bench_push_many,
    "pull-many": bench_pull_many,
    "commit-hook": bench_commit_hook,
    "prefetch": bench_prefetch,
    "import": bench_import,
    "dvc-hook": bench_dvc_hook,
    "dvc-pull": bench_dvc_pull,
}


def print_table(rows: Sequence[Row], runs: int, light_runs: int) -> None:
    header = Row("", "workload", "model_filer", "baseline", "ratio", "target", None, "RSS MiB")
    cells = [
        (r.label, r.ours, r.base, r.ratio, r.target, "result" if r is header else r.result, r.rss)
        for r in [header, *rows]
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for j, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        f"Medians of {runs} run(s) ({light_runs} for the whole-process rows: commit-hook, "
        "prefetch, import). RSS: peak of model_filer / baseline, per process."
    )
    for r in rows:
        if r.note:
            print(f"  {r.name}: {r.note}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="64 MiB instead of 512 MiB/1 GiB, 50 models, 1 run"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(WORKLOADS),
        metavar="NAME",
        help=f"run only these workloads: {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--runs", type=int, help="runs per workload (default 5; 1 with --quick)")
    parser.add_argument(
        "--install-dvc",
        action="store_true",
        help=f"create {DVC_VENV.relative_to(REPO)} with dvc and dvc-s3 from PyPI if missing",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--tmp", type=Path, help="parent of the temp root (default: system tmp)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.args)
    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 5)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    names = args.only or list(WORKLOADS)
    root = Path(tempfile.mkdtemp(prefix="mf-bench-", dir=args.tmp))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(root, sizes, runs, args.install_dvc)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for name in names:
            log(f"[{name}]")
            t0 = time.monotonic()
            try:
                row = WORKLOADS[name](bench)
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                log(f"[{name}] failed: {exc}")
                row = Row(name, name, ok=False, note=f"error: {str(exc).splitlines()[0]}")
            rows.append(row)
            log(
                f"[{name}] {row.result} {row.ours} vs {row.base} ({row.ratio}) "
                f"in {time.monotonic() - t0:.0f} s"
            )
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows, runs, bench.light_runs)
    print(f"\nTotal {time.monotonic() - started:.0f} s.")
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ | {"result": r.result} for r in rows], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
