"""The parent side: environment, servers, timed runs, and the table's rows."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    AWS_VARIABLES_TO_REMOVE,
    BUCKET,
    DELAY,
    DELAY_MS,
    DVC_VENV,
    GIT_VARIABLES_TO_REMOVE,
    HERE,
    PIP_INSTALL,
    PY,
    REPO,
    BenchError,
    MiB,
    log,
)

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
        # model_filer's local object store: the setup's own, never the user's.
        MODEL_FILER_CACHE_DIR=str(root / "store-setup"),
    )
    return env


def another_machine(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with a fresh, empty local object store: a teammate who never held the bytes,
    so a pull measures downloads, not links from the store the setup filled."""
    return dict(env, MODEL_FILER_CACHE_DIR=str(root / f"store-{uuid.uuid4().hex[:12]}"))


def run_worker(
    name: str, args: dict[str, Any], env: dict[str, str], module: str = "benchmarks.run"
) -> dict[str, Any]:
    """Run one worker of ``module`` (``--worker NAME``) in a fresh interpreter; return its
    JSON result."""
    cmd = [PY, "-m", module, "--worker", name, "--args", json.dumps(args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"worker {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = done.stderr
    return result


def sample_worker(
    name: str, args: dict[str, Any], env: dict[str, str], module: str = "benchmarks.run"
) -> Sample:
    result = run_worker(name, args, env, module)
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
    for cache in ("hashes.json", "hashes.log"):  # the hash cache and its journal, if any
        if (src / ".model_filer" / cache).exists():
            shutil.copyfile(src / ".model_filer" / cache, internal / cache)
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
        self.module = "benchmarks.run"  # whose --worker runs the workers (it falls back to run's)
        self.incompressible = False  # big_template's model: random bytes, not random floats

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
            from tests.support.s3server import start_seaweedfs

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
        return sample_worker(name, args, env or self.env, self.module)

    def setup_worker(self, name: str, env: dict[str, str] | None = None, /, **args: Any) -> Any:
        result = run_worker(name, args, env or self.env, self.module)
        for line in result.get("stderr", "").splitlines()[-5:]:
            log(f"{name}: {line}")
        return result

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
                incompressible=self.incompressible,
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

    def models_repo(
        self,
        name: str,
        address: str,
        remote_type: str,
        count: int,
        nbytes: int,
        env: dict[str, str] | None = None,
    ) -> Path:
        """A committed git repo whose models/ holds ``count`` synced models (setup)."""
        repo = self.root / name
        self._git_init(repo)
        self.setup_worker(
            "make_many",
            env,
            dir=str(repo / "models"),
            address=address,
            remote_type=remote_type,
            count=count,
            nbytes=nbytes,
            push=True,
        )
        run(["git", "add", "-A"], repo, self.env)
        run(["git", "commit", "-q", "-m", "models"], repo, self.env)
        return repo

    def staged_copy(self, src: Path, name: str) -> Path:
        """A copy of the committed repo ``src`` with its last commit staged, not committed
        (as at `git commit`)."""
        repo = self.root / name
        shutil.copytree(src, repo, symlinks=True)
        run(["git", "reset", "-q", "--soft", "HEAD~1"], repo, self.env)
        staged = run(["git", "diff", "--cached", "--name-only"], repo, self.env).split()
        if "models/.local_registry" not in staged:
            raise BenchError(f"registry not staged in {repo}: {staged}")
        return repo

    def hook_repo(self) -> Path:
        """A committed repo: models/ holds ``hook_models`` synced models on a local remote."""

        def make() -> Path:
            remote = self.root / "hook-remote"
            remote.mkdir()
            log(f"setup: git repo with {self.sizes.hook_models} synced models (local remote)")
            return self.models_repo(
                "hook-repo", str(remote), "local", self.sizes.hook_models, self.sizes.hook_bytes
            )

        made: Path = self.once("hook_repo", make)
        return made

    def staged_repo(self) -> Path:
        """The hook repo with the registry staged, not committed."""
        made: Path = self.once(
            "staged_repo", lambda: self.staged_copy(self.hook_repo(), "staged-repo")
        )
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
        env = self.dvc_init(dvc, repo, remote_url)
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

    def dvc_init(
        self, dvc: Path, repo: Path, remote_url: str | None, endpoint: str | None = None
    ) -> dict[str, str]:
        """A git repo with DVC initialised, pushing to ``remote_url`` on the S3 server (through
        ``endpoint`` if given); return the environment to run DVC in."""
        self._git_init(repo)
        env = self.s3_env if remote_url else self.env
        run([str(dvc), "init", "-q"], repo, env)
        run([str(dvc), "config", "core.analytics", "false"], repo, env)
        run([str(dvc), "config", "core.check_update", "false"], repo, env)
        if remote_url:
            run([str(dvc), "remote", "add", "-d", "store", remote_url], repo, env)
            endpoint = endpoint or env["AWS_ENDPOINT_URL"]
            run([str(dvc), "remote", "modify", "store", "endpointurl", endpoint], repo, env)
            run(
                [str(dvc), "remote", "modify", "store", "region", env["AWS_DEFAULT_REGION"]],
                repo,
                env,
            )
        return env


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


def run_rows(
    bench: Bench,
    root: Path,
    names: Sequence[str],
    workloads: dict[str, Callable[[Any], Row]],
    runs: int,
    json_path: Path | None,
) -> int:
    """Run each named workload on ``bench`` (a failing one becomes a failed row), print the
    table, remove the temp ``root``, and write the rows as JSON when asked."""
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for name in names:
            log(f"[{name}]")
            t0 = time.monotonic()
            try:
                row = workloads[name](bench)
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
    if json_path:
        json_path.write_text(
            json.dumps([r.__dict__ | {"result": r.result} for r in rows], indent=2)
        )
    return 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script shares: DVC, JSON output, temp root, worker mode."""
    parser.add_argument(
        "--install-dvc",
        action="store_true",
        help=f"create {DVC_VENV.relative_to(REPO)} with dvc and dvc-s3 from PyPI if missing",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--tmp", type=Path, help="parent of the temp root (default: system tmp)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
