#!/usr/bin/env python
"""Benchmarks of issue 13: 10,000 models in one registry, and a fresh clone's pull against DVC.

Run from the repository root::

    .venv/bin/python -m benchmarks.scale [--only NAME ...] [--runs N] [--install-dvc]

Each row is a median of at least 5 (``--runs``) with its baseline measured in the same run:
``python -c pass`` for whole hook processes, ``pickle.dump`` of the same model for a dump,
``max(pickle.dump, sha256 of the same bytes)`` for the 512 MiB dump (with dirty pages synced
before every sample and the three sides alternating), and ``dvc pull`` for the clone's pull.
It reuses benchmarks/run.py's machinery (SeaweedFS on 127.0.0.1, the +20 ms latency proxy, the
isolated environment, whole-process timing, the DVC setup) and contacts no other address.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import common, harness, workers, workloads

PY, BIN, MiB = common.PY, common.BIN, common.MiB
MODELS = 10_000
GROWTH = 10_000
PER_RUN = 20  # dumps timed per run of the dump row (each run a fresh process)
ALIASES = 50  # aliases in the registry of the metadata rows (issue 22)


# ================================================================================================
# Workers: run in a fresh subprocess of this interpreter.
# ================================================================================================


def metadata_of(i: int) -> dict[str, Any]:
    """Issue 22's workload: four metrics, four params and two tags, different per model."""
    return {
        "metrics": {"auc": (i % 997) / 997, "loss": 1 / (i + 1), "val/loss": i * 1e-05, "n": i},
        "params": {"lr": (i % 10 + 1) * 0.001, "optimizer": "adam", "layers": i % 8, "es": True},
        "tags": {"team": "growth", "stage": "prod" if i % 2 else "dev"},
    }


def w_dump_into(
    dir: str, address: str, count: int, tag: str, metadata: bool = False
) -> dict[str, Any]:
    """``count`` dumps of a small model into an existing registry, each timed, beside
    ``pickle.dump`` of the same model into a file of the same folder; with ``metadata``,
    each dump records :func:`metadata_of`."""

    from model_filer import Filer

    filer = Filer(dir, address, "local")
    ours, theirs = [], []
    for i in range(count):
        model = {"customer": i, "weights": list(range(20))}
        extra = metadata_of(i) if metadata else {}
        start = time.perf_counter()
        filer.dump(model, f"{tag}-{i:03d}", **extra)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        with open(Path(dir) / f"{tag}-pickle", "wb") as fh:
            pickle.dump(model, fh, protocol=5)
        theirs.append(time.perf_counter() - start)
    entries = len(filer.list_files())
    return {"seconds": statistics.median(ours), "ours": ours, "base": theirs, "entries": entries}


def w_annotate_all(dir: str, address: str, aliases: int) -> dict[str, Any]:
    """Setup: every entry gets :func:`metadata_of`, and ``aliases`` aliases name the first
    models, in one registry write."""
    from model_filer import Filer
    from model_filer.registry.model import annotated

    filer = Filer(dir, address, "local")
    with filer.folder.transaction() as reg:
        names = sorted(reg.entries)
        for i, name in enumerate(names):
            reg.entries[name] = annotated(reg.entries[name], **metadata_of(i))
        for k, name in enumerate(names[:aliases]):
            reg.aliases[f"alias-{k:02d}"] = (name, reg.entries[name].sha256)
    return {"seconds": 0.0, "entries": len(names)}


def w_growth(dir: str, address: str, count: int) -> dict[str, Any]:
    """``count`` plain dumps from an empty folder; the time of each."""
    from model_filer import Filer

    filer = Filer(dir, address, "local")
    times = []
    for i in range(count):
        start = time.perf_counter()
        filer.dump({"customer": i}, f"c{i:05d}")
        times.append(time.perf_counter() - start)
    return {"seconds": sum(times), "times": times}


def w_hash(nbytes: int) -> dict[str, Any]:
    """sha256 of the bytes that pickling the 512 MiB array writes (its buffer)."""
    import hashlib

    model = workers._array(nbytes)
    start = time.perf_counter()
    hashlib.sha256(memoryview(model).cast("B")).hexdigest()
    return {"seconds": time.perf_counter() - start}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    name[2:]: fn for name, fn in globals().items() if name.startswith("w_") and callable(fn)
}


def run_worker(name: str, args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """A worker of this script (ours) or of run.py (theirs), in a fresh interpreter."""
    module = "benchmarks.scale" if name in WORKERS else "benchmarks.run"
    cmd = [PY, "-m", module, "--worker", name, "--args", json.dumps(args)]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=False, cwd=common.REPO
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise common.BenchError(f"worker {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def worker_main(name: str, args_json: str) -> int:
    result = WORKERS[name](**json.loads(args_json))
    result["maxrss_mib"] = workers.peak_rss_mib()
    print(json.dumps(result), flush=True)
    return 0


# ================================================================================================
# Fixtures
# ================================================================================================


class Scale(harness.Bench):
    """run.py's Bench with 10,000-model fixtures."""

    growth_runs: int | None = None

    def many_repo(self) -> tuple[Path, Path]:
        """A committed git repo whose models/ holds 10,000 synced models (a folder remote)."""

        def make() -> tuple[Path, Path]:
            remote = self.root / "scale-remote"
            remote.mkdir()
            common.log(f"setup: git repo with {MODELS} synced models (folder remote)")
            return self.models_repo("scale-repo", str(remote), "local", MODELS, 1000), remote

        made: tuple[Path, Path] = self.once("scale_repo", make)
        return made

    def meta_repo(self) -> tuple[Path, Path]:
        """many_repo's models, each with metadata_of(i), and ALIASES aliases (committed)."""

        def make() -> tuple[Path, Path]:
            src, remote = self.many_repo()
            repo = self.root / "scale-meta-repo"
            shutil.copytree(src, repo, symlinks=True)
            common.log(f"setup: metadata on {MODELS} entries, {ALIASES} aliases")
            args = {"dir": str(repo / "models"), "address": str(remote), "aliases": ALIASES}
            run_worker("annotate_all", args, self.env)
            for argv in (["add", "-A"], ["commit", "-q", "-m", "metadata and aliases"]):
                subprocess.run(["git", *argv], cwd=repo, env=self.env, check=True)
            return repo, remote

        made: tuple[Path, Path] = self.once("scale_meta_repo", make)
        return made

    def staged_meta(self) -> Path:
        made: Path = self.once(
            "scale_staged_meta", lambda: self.staged_copy(self.meta_repo()[0], "scale-staged-meta")
        )
        return made

    def staged_many(self) -> Path:
        made: Path = self.once(
            "scale_staged", lambda: self.staged_copy(self.many_repo()[0], "scale-staged")
        )
        return made

    def s3_many_repo(self) -> Path:
        """A committed repo of 10,000 models pushed to S3 (setup without the proxy)."""

        def make() -> Path:
            common.log(f"setup: {MODELS} models pushed to S3 (a few minutes)")
            address = f"s3://{common.BUCKET}/scale"
            return self.models_repo("scale-s3-repo", address, "s3", MODELS, 100, self.s3_env)

        made: Path = self.once("scale_s3_repo", make)
        return made


def pass_sample(b: Scale, cwd: Path) -> harness.Sample:
    return harness.time_process([PY, "-c", "pass"], cwd, b.env)[0]


def whole_process_row(
    name: str,
    label: str,
    mine: harness.Series,
    theirs: harness.Series,
    limit: float,
    note: str = "",
) -> harness.Row:
    return harness.Row(
        name,
        label,
        harness.secs(mine.median),
        harness.secs(theirs.median),
        f"+{(mine.median - theirs.median) * 1000:.0f} ms",
        f"<= {limit:.2f} s",
        mine.median <= limit,
        f"{harness.mib(mine.peak_rss)} / {harness.mib(theirs.peak_rss)}",
        note,
    )


# ================================================================================================
# Workloads
# ================================================================================================


def bench_dump_10k(b: Scale, metadata: bool = False) -> harness.Row:
    repo, remote = b.meta_repo() if metadata else b.many_repo()
    ours: list[float] = []
    theirs: list[float] = []
    entries = 0
    for i in range(b.runs):
        common.log(f"run {i + 1}/{b.runs}")
        args = {"dir": str(repo / "models"), "address": str(remote), "count": PER_RUN}
        # Its own names per row: the metadata row's registry is a copy of the other's.
        tag = f"{'m' if metadata else 'r'}{i}"
        result = run_worker("dump_into", {**args, "tag": tag, "metadata": metadata}, b.env)
        ours += result["ours"]
        theirs += result["base"]
        entries = result["entries"]
    mine, base_median = statistics.median(ours), statistics.median(theirs)
    what = " with 4 metrics, 4 params, 2 tags" if metadata else ""
    where = f"{MODELS:,}-entry registry" + (" (all with metadata, 50 aliases)" if metadata else "")
    return harness.Row(
        "dump-10k-meta" if metadata else "dump-10k",
        f"dump small model{what} into {where} vs pickle.dump",
        f"{mine * 1000:.2f} ms",
        f"{base_median * 1000:.3f} ms",
        f"+{(mine - base_median) * 1000:.2f} ms",
        "<= 10 ms each",
        mine <= 0.010,
        note=f"median of {len(ours)} dumps in {b.runs} processes (first dump of each process "
        f"included: max {max(ours) * 1000:.0f} ms); registry ended with {entries} entries",
    )


def bench_growth(b: Scale) -> harness.Row:
    ratios, firsts, lasts = [], [], []
    runs = b.growth_runs or b.runs
    for i in range(runs):
        common.log(f"run {i + 1}/{runs}: {GROWTH} dumps")
        folder, remote = b.fresh("growth"), b.fresh("growth-remote")
        remote.mkdir()
        try:
            # From empty, store included: its own store, which the other rows never see.
            env = harness.another_machine(b.env, b.root)
            result = run_worker(
                "growth", {"dir": str(folder), "address": str(remote), "count": GROWTH}, env
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        times = result["times"]
        first, last = sum(times[:1000]), sum(times[-1000:])
        firsts.append(first)
        lasts.append(last)
        ratios.append(last / first)
    ratio = statistics.median(ratios)
    return harness.Row(
        "dump-growth",
        f"{GROWTH:,} dumps from empty: last 1,000 vs first 1,000",
        harness.secs(statistics.median(lasts)),
        harness.secs(statistics.median(firsts)),
        f"{ratio:.2f}x time",
        "<= 1.50x",
        ratio <= 1.5,
        note="ratios per run: " + ", ".join(f"{r:.2f}" for r in ratios),
    )


def bench_commit_hook_10k(b: Scale, metadata: bool = False) -> harness.Row:
    repo = b.staged_meta() if metadata else b.staged_many()
    hook = [str(BIN / "no-local-models"), "models/.local_registry"]
    _, out = harness.time_process(
        [PY, "-c", workloads.IMPORT_CHECK, "models/.local_registry"], repo, b.env
    )
    check = json.loads(out.strip().splitlines()[-1])
    heavy = ", ".join(check["heavy"]) or "no boto3, no GitPython"
    row = hook_row(
        b,
        repo,
        hook,
        b.env,
        "commit-hook-10k-meta" if metadata else "commit-hook-10k",
        f"no-local-models, {MODELS:,} staged entries{META_LABEL if metadata else ''} "
        "vs python -c pass",
        0.30,
        f"exit {check['rc']}; imports: {heavy}",
    )
    row.ok = row.ok and check["rc"] == 0 and not check["heavy"]
    return row


def bench_commit_hook_10k_unknown(b: Scale, metadata: bool = False) -> harness.Row:
    """The same hook on a blob this machine's model_filer did not write (a teammate's, a
    hand edit): no record in the store, so every entry is parsed and validated."""
    hook = [str(BIN / "no-local-models"), "models/.local_registry"]
    env = harness.another_machine(b.env, b.root)
    return hook_row(
        b,
        b.staged_meta() if metadata else b.staged_many(),
        hook,
        env,
        "commit-hook-10k-meta-unknown" if metadata else "commit-hook-10k-unknown",
        f"no-local-models, {MODELS:,} entries{META_LABEL if metadata else ''}, "
        "blob not written here",
        0.30,
        "full validation: the store has no record of this blob",
    )


def hook_row(
    b: Scale,
    repo: Path,
    hook: list[str],
    env: dict[str, str],
    name: str,
    label: str,
    limit: float,
    note: str = "",
) -> harness.Row:
    """A whole hook process, alternated with ``python -c pass``."""
    mine, theirs = harness.alternate(
        b.light_runs,
        lambda i: harness.time_process(hook, repo, env)[0],
        lambda i: pass_sample(b, repo),
    )
    return whole_process_row(name, label, mine, theirs, limit, note)


def bench_prefetch_10k(b: Scale) -> harness.Row:
    repo, _ = b.many_repo()
    env = dict(
        b.env,
        PRE_COMMIT_FROM_REF=common.NULL_SHA,
        PRE_COMMIT_TO_REF="HEAD",
        PRE_COMMIT_CHECKOUT_TYPE="1",
    )
    outputs: list[str] = []

    def ours(i: int) -> harness.Sample:
        sample, out = harness.time_process([str(BIN / "prefetch-models")], repo, env)
        outputs.append(out)
        return sample

    mine, theirs = harness.alternate(b.light_runs, ours, lambda i: pass_sample(b, repo))
    fetched = [o for o in outputs if "fetched" in o and " 0 model(s) fetched" not in o]
    row = whole_process_row(
        "prefetch-10k",
        f"prefetch-models, {MODELS:,} present vs python -c pass",
        mine,
        theirs,
        0.50,
        f"fetched something: {fetched[-1].strip()[:80]}" if fetched else "nothing fetched",
    )
    row.ok = row.ok and not fetched
    return row


def bench_check_remote_10k(b: Scale) -> harness.Row:
    env = dict(b.proxy_env, PRE_COMMIT_FROM_REF=common.NULL_SHA, PRE_COMMIT_TO_REF="HEAD")
    return hook_row(
        b,
        b.s3_many_repo(),
        [str(BIN / "check-remote-models")],
        env,
        "check-remote-10k",
        f"check-remote-models, {MODELS:,} synced on S3, +20 ms/req vs python -c pass",
        3.0,
    )


def bench_dump_512(b: Scale) -> harness.Row:
    """Dump 512 MiB against the larger of pickle.dump and sha256 of the same bytes."""
    size = 512 * MiB
    remote = b.root / "dump-remote"
    remote.mkdir(exist_ok=True)
    series: dict[str, harness.Series] = {k: harness.Series() for k in ("ours", "pickle", "sha256")}

    ours, pickled = workloads.dump_samplers(b, size, remote)

    def hashed() -> harness.Sample:
        result = run_worker("hash", {"nbytes": size}, b.env)
        return harness.Sample(float(result["seconds"]), float(result["maxrss_mib"]))

    for i in range(b.runs):
        common.log(f"run {i + 1}/{b.runs}")
        sides: list[tuple[str, Callable[[], harness.Sample]]] = [
            ("ours", functools.partial(ours, i)),  # (array i: a new model each run)
            ("pickle", functools.partial(pickled, i)),
            ("sha256", hashed),
        ]
        for name, fn in sides[i % 3 :] + sides[: i % 3]:  # each side takes each place
            os.sync()  # one run's writeback must not throttle the next one's writes
            series[name].samples.append(fn())
    floor = max(series["pickle"].median, series["sha256"].median)
    ratio = series["ours"].median / floor
    return harness.Row(
        "dump-512",
        "dump 512 MiB ndarray vs max(pickle.dump, sha256)",
        harness.secs(series["ours"].median),
        harness.secs(floor),
        f"{ratio:.2f}x time",
        "<= 1.10x",
        ratio <= 1.10,
        f"{harness.mib(series['ours'].peak_rss)} / {harness.mib(series['pickle'].peak_rss)}",
        f"pickle.dump {harness.secs(series['pickle'].median)}, "
        f"sha256 {harness.secs(series['sha256'].median)}",
    )


def bench_dvc_pull(b: Scale) -> harness.Row:
    row: harness.Row = workloads.bench_dvc_pull(b)
    return row


META_LABEL = " with metadata (4 metrics, 4 params, 2 tags each) and 50 aliases"
WORKLOADS: dict[str, Callable[[Scale], harness.Row]] = {
    "dump-10k": bench_dump_10k,
    "dump-10k-meta": lambda b: bench_dump_10k(b, metadata=True),
    "dump-growth": bench_growth,
    "commit-hook-10k": bench_commit_hook_10k,
    "commit-hook-10k-unknown": bench_commit_hook_10k_unknown,
    "commit-hook-10k-meta": lambda b: bench_commit_hook_10k(b, metadata=True),
    "commit-hook-10k-meta-unknown": lambda b: bench_commit_hook_10k_unknown(b, metadata=True),
    "prefetch-10k": bench_prefetch_10k,
    "check-remote-10k": bench_check_remote_10k,
    "dvc-pull": bench_dvc_pull,
    "dump-512": bench_dump_512,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), metavar="NAME")
    parser.add_argument("--runs", type=int, default=5, help="runs per row (default 5)")
    parser.add_argument(
        "--growth-runs", type=int, help="runs of the 10,000-dump row (default: --runs)"
    )
    harness.add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        if args.worker in WORKERS:
            return worker_main(args.worker, args.args)
        return int(workers.worker_main(args.worker, args.args))
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="mf-scale-", dir=args.tmp))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Scale(root, harness.FULL, args.runs, args.install_dvc)
    bench.growth_runs = args.growth_runs
    names = args.only or list(WORKLOADS)
    return harness.run_rows(bench, root, names, WORKLOADS, args.runs, args.json)


if __name__ == "__main__":
    sys.exit(main())
