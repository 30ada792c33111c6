#!/usr/bin/env python
"""Benchmarks of the history features (issue 10) on a generated history.

Run from the repository root::

    .venv/bin/python -m benchmarks.history [--commits N] [--models N] [--runs N] [--install-dvc]

One git history of ``--commits`` commits is built with ``git fast-import`` (the first
``--models`` commits add a model each, every later one replaces one; every tenth points
``@production`` at the model it changed), the registry of every
commit written by model_filer's own serialiser and every version's bytes put on a local-folder
remote. Then, each against a baseline measured in the same run:

- ``load(name, rev=...)`` with the version already fetched, the remote folder moved away (so
  no network, by construction), against ``pickle.load`` of the same bytes: target at most 50 ms
  over it;
- ``model-filer log NAME`` as a whole process: target at most 1 s;
- ``model-filer log NAME --metric auc`` and ``model-filer log @production`` (issue 22: every
  entry carries four metrics and two params, and every tenth commit also moves the alias) as
  whole processes beside ``git log -p`` of the registry file (the text a reader would page
  through by hand): target at most 1 s each;
- ``model-filer gc --remote`` (listing only) as a whole process, beside one LIST of the remote:
  target at most 5 s plus that LIST;
- ``dvc.api.read(path, rev=..., mode="rb")`` + ``pickle.loads`` of the same file at the same
  revision in a DVC repository of the same shape (``.dvc`` files, DVC's cache filled), DVC from
  ``benchmarks/.venv-dvc`` (``--install-dvc`` creates it): target at least 20x slower than ours.

Timings are medians of ``--runs`` calls in one warm process (imports excluded on both sides),
except the two CLI rows, which are whole processes. Everything happens in a temp folder that is
removed at the end; nothing but ``--install-dvc`` touches the network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import harness
from .common import DVC_VENV, HERE, PIP_INSTALL

REPO_ROOT = HERE.parent
BIN = Path(sys.executable).parent

MODEL_BYTES = 256 * 1024
ALIAS_EVERY = 10  # commits per move of @production


def log(message: str) -> None:
    print(f"[history-bench] {message}", file=sys.stderr, flush=True)


def model_bytes(index: int, version: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(index * 100_003 + version)
    return pickle.dumps(rng.random(MODEL_BYTES // 8), protocol=5)


class Generated:
    """The model_filer history and the DVC one, same commits, same bytes."""

    def __init__(self, root: Path, commits: int, models: int, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.repo = root / "repo"
        self.remote = root / "remote"
        self.names = [f"m{i:03d}" for i in range(models)]
        self.versions: list[tuple[str, bytes]] = []  # per commit: the model changed, its bytes
        for c in range(commits):
            name = self.names[c % models]
            self.versions.append((name, model_bytes(c % models, c // models)))

    def git(self, cwd: Path, *args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=self.env, input=data, capture_output=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"git {args[0]}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def _fast_import(self, repo: Path, files_per_commit: list[dict[str, bytes]]) -> None:
        """Commit each dict of path -> bytes on top of main, in one git process."""
        out = bytearray()
        stamp = 1_700_000_000
        for i, files in enumerate(files_per_commit):
            msg = f"change {i}".encode()
            out += b"commit refs/heads/main\n"
            out += f"committer Bench <bench@x.invalid> {stamp + i * 60} +0000\n".encode()
            out += b"data %d\n%s\n" % (len(msg), msg)
            if i == 0:
                out += b"from refs/heads/main^0\n"
            for path, data in files.items():
                out += f"M 100644 inline {path}\n".encode() + b"data %d\n" % len(data) + data
                out += b"\n"
        self.git(repo, "fast-import", "--quiet", data=bytes(out))
        self.git(repo, "reset", "-q", "--hard", "main")

    def build_ours(self) -> None:
        import numpy as np

        from model_filer.pickles.serializers import python_version
        from model_filer.registry.file import Entry, Registry, dumps
        from model_filer.registry.names import object_key

        self.repo.mkdir()
        self.remote.mkdir()
        self.git(self.repo, "init", "-q", "-b", "main")
        self.git(self.repo, "commit", "-q", "--allow-empty", "-m", "start")
        reg = Registry("local", str(self.remote))
        commits = []
        for i, (name, data) in enumerate(self.versions):
            sha = hashlib.sha256(data).hexdigest()
            key = object_key(name, sha)
            (self.remote / name).mkdir(exist_ok=True)
            (self.remote / key).write_bytes(data)
            reg.entries[name] = Entry(
                name, "synced", sha, len(data), "pickle-5", f"2024-01-01T00:{i % 60:02d}:00",
                python_version(), key, {"name": "numpy", "version": np.__version__},
                metrics={"auc": 0.5 + i / 4000, "loss": 1 / (i + 1), "f1.macro": 0.7, "n": i},
                params={"lr": 0.1, "solver": "lbfgs"},
            )  # fmt: skip
            if i % ALIAS_EVERY == ALIAS_EVERY - 1:
                reg.aliases["production"] = (name, sha)
            files = {"models/.local_registry": dumps(reg)}
            if i == 0:
                files["models/.gitignore"] = b"*.pkl\n.model_filer\n"
            commits.append(files)
        self._fast_import(self.repo, commits)

    def build_dvc(self, dvc: Path) -> Path:
        repo = self.root / "dvc-repo"
        repo.mkdir()
        self.git(repo, "init", "-q", "-b", "main")
        for args in (("init", "-q"), ("config", "core.analytics", "false")):
            subprocess.run([str(dvc), *args], cwd=repo, env=self.env, check=True)
        cache = repo / ".dvc" / "cache" / "files" / "md5"
        (repo / "models").mkdir()
        (repo / "models" / ".gitignore").write_text("*.pkl\n")
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "dvc init")
        commits = []
        for name, data in self.versions:
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's own content address
            (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
            (cache / md5[:2] / md5[2:]).write_bytes(data)
            dvcfile = f"outs:\n- md5: {md5}\n  size: {len(data)}\n  hash: md5\n  path: {name}.pkl\n"
            commits.append({f"models/{name}.pkl.dvc": dvcfile.encode()})
        self._fast_import(repo, commits)
        return repo


def median_call(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


CPU: dict[str, float] = {}  # median CPU seconds (user + system) of each timed command


def time_cli(args: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    """Median wall time of a whole process; its median CPU time goes to ``CPU`` (on a
    shared machine the wall time also counts waiting for a core)."""
    import resource

    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode:
            raise RuntimeError(f"{args}: {done.stderr.decode()[-2000:]}")
    CPU[" ".join(args[1:3] + args[-1:])] = statistics.median(cpus)
    return statistics.median(times)


DVC_WORKER = """
import json, pickle, statistics, sys, time
import dvc.api
repo, path, rev, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
times = []
for _ in range(runs):
    t = time.perf_counter()
    model = pickle.loads(dvc.api.read(path, repo=repo, rev=rev, mode="rb"))
    times.append(time.perf_counter() - t)
print(json.dumps({"median": statistics.median(times), "first": times[0], "runs": runs}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=1000)
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--install-dvc", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also save the figures")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mf-history-bench-"))
    env = harness.isolated_env(root)
    os.environ.clear()
    os.environ.update(env)  # this process's git calls too
    results: dict[str, Any] = {"commits": args.commits, "models": args.models}
    try:
        gen = Generated(root, args.commits, args.models, env)
        log(f"generating {args.commits} commits touching {args.models} models")
        gen.build_ours()
        name = gen.names[args.models // 2]
        rev = f"main~{args.commits // 2}"  # a version the working tree does not hold
        from model_filer import Filer

        filer = Filer(gen.repo / "models", str(gen.remote), remote_type="local")
        filer.load(name, rev=rev)  # fetch once into the folder's object cache
        hidden = root / "remote-away"
        gen.remote.rename(hidden)  # from here on, a download would fail
        data = pickle.dumps(filer.load(name, rev=rev), protocol=5)
        raw = root / "raw.pkl"
        raw.write_bytes(data)

        def unpickle() -> Any:
            with open(raw, "rb") as fh:
                return pickle.load(fh)

        ours = median_call(lambda: filer.load(name, rev=rev), args.runs)
        base = median_call(unpickle, args.runs)
        results["load_rev"] = {"ours": ours, "unpickle": base, "over": ours - base}
        log(f"load(rev) {ours * 1e3:.1f} ms; unpickle {base * 1e3:.2f} ms")
        gen.remote.parent.joinpath("remote-away").rename(gen.remote)

        cli = str(BIN / "model-filer")
        t_log = time_cli([cli, "log", "--dir", "models", name], gen.repo, env, args.runs)
        t_log_all = time_cli([cli, "log", "--dir", "models", "--all"], gen.repo, env, 3)
        metric = [cli, "log", "--dir", "models", name, "--metric", "auc"]
        t_metric = time_cli(metric, gen.repo, env, args.runs)
        t_alias = time_cli([cli, "log", "--dir", "models", "@production"], gen.repo, env, args.runs)
        git_p = ["git", "log", "-p", "--", "models/.local_registry"]
        t_git = time_cli(git_p, gen.repo, env, args.runs)
        results["log"] = {
            "name": t_log,
            "all": t_log_all,
            "metric": t_metric,
            "alias": t_alias,
            "git_log_p": t_git,
        }
        results["cpu"] = CPU
        log(f"model-filer log NAME {t_log:.3f} s; --all {t_log_all:.3f} s")
        log(f"log NAME --metric auc {t_metric:.3f} s; log @production {t_alias:.3f} s")
        log(f"git log -p of the registry {t_git:.3f} s")
        t_gc = time_cli([cli, "gc", "--remote", "--dir", "models"], gen.repo, env, 3)
        t_list = median_call(lambda: sum(1 for _ in filer.remote.list_objects()), 3)
        results["gc"] = {"listing": t_gc, "one_list": t_list}
        log(f"model-filer gc --remote {t_gc:.3f} s; one LIST {t_list:.3f} s")

        dvc = DVC_VENV / "bin" / "dvc"
        if not dvc.exists() and args.install_dvc:
            harness.install_dvc()
        if dvc.exists():
            dvc_python = str(DVC_VENV / "bin" / "python")
            if subprocess.run([dvc_python, "-c", "import numpy"], check=False).returncode:
                log("installing numpy into the DVC venv (its side unpickles too)")
                subprocess.run([dvc_python, *PIP_INSTALL, "numpy"], check=True)
            log("generating the same history for DVC")
            dvc_repo = gen.build_dvc(dvc)
            done = subprocess.run(
                [
                    dvc_python,
                    "-c",
                    DVC_WORKER,
                    str(dvc_repo),
                    f"models/{name}.pkl",
                    rev,
                    str(args.runs),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise RuntimeError(f"dvc.api.read failed: {done.stderr[-3000:]}")
            theirs = json.loads(done.stdout.strip().splitlines()[-1])
            results["dvc_read_rev"] = theirs | {"ratio": theirs["median"] / ours}
            first = theirs["first"]
            log(f"dvc.api.read(rev) {theirs['median'] * 1e3:.1f} ms (first call {first:.2f} s)")
        else:
            results["dvc_read_rev"] = None
        print_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def print_table(r: dict[str, Any]) -> None:
    load, lg, gc = r["load_rev"], r["log"], r["gc"]
    rows = [
        (
            "load(name, rev) from local, no network",
            f"{load['ours'] * 1e3:.1f} ms",
            f"unpickle {load['unpickle'] * 1e3:.2f} ms",
            f"+{load['over'] * 1e3:.1f} ms",
            "<= +50 ms",
            load["over"] <= 0.05,
        ),
        (
            f"model-filer log NAME ({r['commits']} commits)",
            f"{lg['name']:.3f} s",
            f"--all {lg['all']:.3f} s",
            "",
            "<= 1 s",
            lg["name"] <= 1.0,
        ),
        (
            "model-filer log NAME --metric auc",
            f"{lg['metric']:.3f} s",
            f"git log -p {lg['git_log_p']:.3f} s",
            f"{lg['metric'] / lg['git_log_p']:.2f}x",
            "<= 1 s",
            lg["metric"] <= 1.0,
        ),
        (
            f"model-filer log @production ({r['commits'] // ALIAS_EVERY} moves)",
            f"{lg['alias']:.3f} s",
            f"git log -p {lg['git_log_p']:.3f} s",
            f"{lg['alias'] / lg['git_log_p']:.2f}x",
            "<= 1 s",
            lg["alias"] <= 1.0,
        ),
        (
            "model-filer gc --remote (listing)",
            f"{gc['listing']:.3f} s",
            f"one LIST {gc['one_list']:.3f} s",
            "",
            "<= 5 s + LIST",
            gc["listing"] <= 5.0 + gc["one_list"],
        ),
    ]
    dvc = r.get("dvc_read_rev")
    if dvc:
        rows.append(
            (
                "load(rev) vs dvc.api.read(rev)",
                f"{load['ours'] * 1e3:.1f} ms",
                f"dvc {dvc['median'] * 1e3:.0f} ms",
                f"{dvc['ratio']:.0f}x",
                ">= 20x",
                dvc["ratio"] >= 20,
            )
        )
    else:
        rows.append(("load(rev) vs dvc.api.read(rev)", "-", "DVC not installed", "", "", True))
    for label, mine, base, ratio, target, ok in rows:
        verdict = "PASS" if ok else "FAIL"
        print(f"{label:<42} {mine:>10}  {base:<22} {ratio:>9}  {target:<14} {verdict}")
    cpu = ", ".join(f"{cmd}: {secs:.2f} s" for cmd, secs in r.get("cpu", {}).items())
    print(f"CPU time (user + system) of the CLI processes: {cpu}")


if __name__ == "__main__":
    raise SystemExit(main())
