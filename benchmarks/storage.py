#!/usr/bin/env python
"""Benchmarks of issue 21: compression and chunk deduplication on the remote, against baselines.

Run from the repository root::

    .venv/bin/python -m benchmarks.storage [--quick] [--only NAME ...] [--runs N] [--install-dvc]

The models are made here, deterministically, with scikit-learn and numpy: a RandomForest of 100
trees (~20 MB) retrained with a new seed, a GradientBoosting grown from 100 to 110 trees, a
TF-IDF + LogisticRegression pipeline whose classifier alone is retrained, 48 float32 layers
(~50 MB) whose last 4 are retrained, and an embedding table with 2% of its rows updated. Byte
counts are exact (what SeaweedFS lists, what crosses a counting proxy); timed rows are medians of
``--runs`` (default 5) with the baseline measured in the same run, sides alternating. It reuses
benchmarks/run.py's machinery (SeaweedFS on 127.0.0.1, isolated environment, fresh process per
sample, DVC in benchmarks/.venv-dvc), tests/support/faultproxy.py to count bytes, and
latency_proxy.py's ``--rate-mb`` for the 20 MB/s link. After the table it prints the issue's
table of the models (zstd ratio, share of version 2's bytes in version 1's chunks) as measured.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from . import common, harness, scale, workers, workloads
from .common import BUCKET, MiB, log

RATE_MB = 20.0  # the slow link's MB/s
VERSIONS = 10


@dataclass(frozen=True)
class Shape:
    """The models' sizes: FULL for the issue's figures, QUICK to check that it all works."""

    rf_samples: int
    layer_floats: int
    emb_rows: int
    docs: int


FULL_SHAPE = Shape(20_000, 262_144, 50_000, 5_000)
QUICK_SHAPE = Shape(3_000, 65_536, 12_500, 1_000)
KINDS = {
    "rf": "RandomForest, 100 trees, retrained with a new seed",
    "gb": "GradientBoosting, 100 -> 110 trees",
    "text": "TF-IDF + LogisticRegression, only the classifier retrained",
    "layers": "48 float32 layers, only the last 4 retrained",
    "emb": "embedding table, 2% of its rows updated",
}


# ================================================================================================
# The models: version ``v`` of each kind, the same bytes on every run.
# ================================================================================================


def _classification(n: int) -> Any:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=n, n_features=20, n_informative=10, random_state=0)


def make_model(kind: str, v: int, shape: Shape) -> Any:
    """Version ``v`` (0, 1, ...) of the model ``kind`` (a key of :data:`KINDS`)."""
    import numpy as np

    if kind == "rf":
        from sklearn.ensemble import RandomForestClassifier

        x, y = _classification(shape.rf_samples)
        return RandomForestClassifier(n_estimators=100, random_state=v, n_jobs=1).fit(x, y)
    if kind == "gb":
        from sklearn.ensemble import GradientBoostingClassifier

        x, y = _classification(2_000)
        gb = GradientBoostingClassifier(n_estimators=100, random_state=0, warm_start=True)
        gb.fit(x, y)
        return gb.set_params(n_estimators=100 + 10 * v).fit(x, y) if v else gb
    if kind == "text":
        return _text_pipeline(v, shape.docs)
    if kind == "layers":  # ~1 MiB each at full size; the last 4 drawn again for each version
        layers = {}
        for i in range(48):
            seed = 1_000 + i if i < 44 else 10_000 * (v + 1) + i
            layers[f"layer{i:02d}"] = np.random.default_rng(seed).standard_normal(
                shape.layer_floats, dtype=np.float32
            )
        return layers
    if kind == "emb":
        table = np.random.default_rng(7).standard_normal((shape.emb_rows, 256), dtype=np.float32)
        for k in range(1, v + 1):  # each version updates another 2% of the rows
            rng = np.random.default_rng(100 + k)
            rows = rng.choice(shape.emb_rows, shape.emb_rows // 50, replace=False)
            table[rows] = rng.standard_normal((len(rows), 256), dtype=np.float32)
        return table
    raise ValueError(f"unknown model kind {kind!r}")


def _text_pipeline(v: int, docs: int) -> Any:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(10 * docs)])
    corpus = [" ".join(rng.choice(words, 30)) for _ in range(docs)]
    labels = rng.integers(0, 2, docs)
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=200))
    pipe.fit(corpus, labels)
    if v:  # the vectorizer kept, the classifier retrained with another regularisation
        pipe.set_params(logisticregression__C=1.0 / (1 + v))
        pipe[-1].fit(pipe[0].transform(corpus), labels)
    return pipe


# ================================================================================================
# Workers: run in a fresh subprocess of this interpreter (``--worker NAME``).
# ================================================================================================


def w_dump_version(
    kind: str,
    v: int,
    shape: list[int],
    dir: str,
    address: str,
    remote_type: str,
    push: bool,
    save: str = "",
) -> dict[str, Any]:
    """Dump version ``v`` of ``kind`` as the model ``kind`` (replacing the last); push it if
    ``push``; copy its file to ``save`` if given (for DVC). Untimed set-up."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    _replace(filer, kind, make_model(kind, v, Shape(*shape)))
    if push:
        filer.push(kind)
    if save:
        shutil.copyfile(filer.model_path(kind), save)
    [entry] = [e for e in filer.list_files() if e.name == kind]
    if push and entry.state != "synced":
        raise common.BenchError(f"push left {kind} {entry.state}")
    return {"seconds": 0.0, "size": entry.size, "sha256": entry.sha256}


def _replace(filer: Any, name: str, model: Any) -> None:
    """Dump ``model`` as ``name``, a new version of it: a synced entry is removed first (its
    remote object stays, as a committed registry's would)."""
    if any(e.name == name for e in filer.list_files()):
        filer.remove(name)
    filer.dump(model, name)


def w_prefix_bytes(bucket: str, prefix: str) -> dict[str, Any]:
    """The bytes (and objects) stored under ``prefix``, by one listing."""
    import boto3

    total = count = 0
    pages = boto3.client("s3").get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for obj in page.get("Contents", []):
            total, count = total + obj["Size"], count + 1
    return {"seconds": 0.0, "bytes": total, "objects": count}


def w_issue_table(kinds: list[str], shape: list[int], root: str) -> dict[str, Any]:
    """For each kind: pickle size, zstd ratio, share of version 2's bytes in version 1's
    FastCDC chunks (model_filer's chunker and chunk size for that size, whatever its small
    bound), and what two pushes of versions 1 and 2 left on a folder remote."""
    import zstandard

    from model_filer import Filer
    from model_filer.storage import stored
    from model_filer.storage.chunks import cut

    rows = []
    for kind in kinds:
        remote = Path(root) / f"{kind}-remote"
        remote.mkdir(parents=True)
        filer = Filer(Path(root) / kind, str(remote), "local")
        versions = []
        for v in (0, 1):
            _replace(filer, kind, make_model(kind, v, Shape(*shape)))
            filer.push(kind)
            versions.append(filer.model_path(kind).read_bytes())
        old, new = versions
        chunks = [{p.sha256: p.size for p, _ in cut(io.BytesIO(b), len(b))} for b in versions]
        shared = sum(n for sha, n in chunks[1].items() if sha in chunks[0])
        packed = zstandard.ZstdCompressor(level=stored.level_for(len(old))).compress(old)
        on_remote = sum(p.stat().st_size for p in remote.rglob("*") if p.is_file())
        rows.append(
            {
                "kind": kind,
                "size": len(old),
                "zstd": len(old) / len(packed),
                "shared": shared / len(new),
                "remote": on_remote / (len(old) + len(new)),
            }
        )
    return {"seconds": 0.0, "rows": rows}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    name[2:]: fn for name, fn in globals().items() if name.startswith("w_") and callable(fn)
}


def worker_main(name: str, args_json: str) -> int:
    """Run one of this script's workers, or run.py's."""
    if name not in WORKERS:
        return workers.worker_main(name, args_json)
    result = WORKERS[name](**json.loads(args_json))
    result["maxrss_mib"] = workers.peak_rss_mib()
    print(json.dumps(result), flush=True)
    return 0


# ================================================================================================
# Fixtures
# ================================================================================================


class Storage(scale.Scale):
    """run.py's Bench with this script's workers, models and proxies."""

    shape = FULL_SHAPE
    issue_table: list[dict[str, Any]] | None = None

    def __init__(self, root: Path, sizes: harness.Sizes, runs: int, install_dvc: bool) -> None:
        super().__init__(root, sizes, runs, install_dvc)
        self.module = "benchmarks.storage"
        self.incompressible = True  # the 1 GiB rows: bytes no compression shrinks
        self._closers: list[Callable[[], None]] = []

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        super().close()

    def stored_bytes(self, address: str) -> int:
        bucket, _, prefix = address.removeprefix("s3://").partition("/")
        found = self.setup_worker("prefix_bytes", self.s3_env, bucket=bucket, prefix=prefix)
        return int(found["bytes"])

    def counting_proxy(self) -> Any:
        """A FaultProxy (no faults) in front of SeaweedFS: it counts the body bytes each way."""
        from tests.support.faultproxy import FaultProxy

        proxy = FaultProxy(self.s3_env["AWS_ENDPOINT_URL"], lifetime=3600).start()
        self._closers.append(proxy.stop)
        return proxy

    def slow_link_env(self) -> dict[str, str]:
        """The S3 environment through latency_proxy.py capped at :data:`RATE_MB` each way."""

        def make() -> dict[str, str]:
            env = self.s3_env
            upstream = env["AWS_ENDPOINT_URL"].removeprefix("http://")
            log(f"starting the latency proxy capped at {RATE_MB:g} MB/s")
            cmd = [common.PY, str(common.HERE / "latency_proxy.py"), "--upstream", upstream]
            proc = subprocess.Popen(
                [*cmd, "--delay-ms", "0", "--rate-mb", f"{RATE_MB:g}"],
                stdout=subprocess.PIPE,
                text=True,
                env=self.env,
            )

            def stop() -> None:
                proc.terminate()
                proc.wait(timeout=10)

            self._closers.append(stop)
            assert proc.stdout is not None
            return dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{int(proc.stdout.readline())}")

        made: dict[str, str] = self.once("slow_link", make)
        return made

    def rf_pushed(self) -> tuple[Path, str, int]:
        """A folder holding RandomForest version 1, pushed to its own prefix (set-up)."""

        def make() -> tuple[Path, str, int]:
            folder, address = self.root / "rf", f"s3://{BUCKET}/rf"
            log("setup: training and pushing the RandomForest")
            made = self.setup_worker(
                "dump_version",
                self.s3_env,
                kind="rf",
                v=0,
                shape=list(astuple(self.shape)),
                dir=str(folder),
                address=address,
                remote_type="s3",
                push=True,
            )
            return folder, address, int(made["size"])

        made: tuple[Path, str, int] = self.once("rf", make)
        return made

    def layers_history(self) -> dict[str, Any]:
        """Ten versions of the 48-layer model pushed one after the other (through a counting
        proxy), each version's pull with the one before in the local store, and DVC's push
        of the same ten files: bytes each way and on the remote."""
        made: dict[str, Any] = self.once("layers", self._layers_history)
        return made

    def _layers_history(self) -> dict[str, Any]:
        proxy = self.counting_proxy()
        env = dict(self.s3_env, AWS_ENDPOINT_URL=proxy.url)
        folder, saved, snapshots = (self.fresh(p) for p in ("layers", "files", "registries"))
        address = f"s3://{BUCKET}/{folder.name}"
        saved.mkdir()
        shape = list(astuple(self.shape))
        size, up = 0, []
        for v in range(VERSIONS):
            log(f"setup: layers version {v + 1}/{VERSIONS}, pushed")
            before = proxy.bytes_up
            made = self.setup_worker(
                "dump_version",
                env,
                kind="layers",
                v=v,
                shape=shape,
                dir=str(folder),
                address=address,
                remote_type="s3",
                push=True,
                save=str(saved / f"{v}.pkl"),
            )
            up.append(proxy.bytes_up - before)
            size = max(size, int(made["size"]))
            harness.copy_registry(folder, snapshots / str(v), address, address)
        down = [self._pull_next(proxy, env, snapshots, address, k) for k in range(VERSIONS - 1)]
        return {
            "size": size,
            "stored": self.stored_bytes(address),
            "up": up[1:],  # version 1's push is the first, whole
            "down": down,
            "dvc": self._dvc_history(proxy, saved),
        }

    def _pull_next(
        self, proxy: Any, env: dict[str, str], snapshots: Path, address: str, k: int
    ) -> int:
        """Bytes the pull of version ``k + 1`` downloads on a machine whose store holds
        version ``k`` (pulled first, in a fresh store)."""
        mate = harness.another_machine(env, self.root)
        folder = self.fresh("layers-pull")
        shutil.copytree(snapshots / str(k), folder)
        self.setup_worker("pull_ours", mate, dir=str(folder), address=address, expect=1)
        shutil.copy(snapshots / str(k + 1) / ".s3_registry", folder)
        before = proxy.bytes_down
        self.setup_worker("pull_ours", mate, dir=str(folder), address=address, expect=1)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(mate["MODEL_FILER_CACHE_DIR"], ignore_errors=True)
        return int(proxy.bytes_down - before)

    def _dvc_history(self, proxy: Any, saved: Path) -> dict[str, Any] | None:
        """``dvc add`` + ``dvc push`` of each saved version (one file, rewritten each time)."""
        dvc = self.dvc()
        if dvc is None:
            return None
        repo = self.fresh("dvc-layers")
        url = f"s3://{BUCKET}/{repo.name}"
        env = self.dvc_init(dvc, repo, url, endpoint=proxy.url)
        up = []
        for v in range(VERSIONS):
            log(f"setup: dvc add + dvc push of layers version {v + 1}/{VERSIONS}")
            shutil.copyfile(saved / f"{v}.pkl", repo / "layers.pkl")
            harness.run([str(dvc), "add", "-q", "layers.pkl"], repo, env)
            before = proxy.bytes_up
            harness.run([str(dvc), "push", "-q"], repo, env)
            up.append(proxy.bytes_up - before)
        return {"stored": self.stored_bytes(url), "up": up[1:]}


# ================================================================================================
# Workloads
# ================================================================================================


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def bench_rf_bytes(b: Storage) -> harness.Row:
    _, address, size = b.rf_pushed()
    stored = b.stored_bytes(address)
    share = stored / size
    return harness.Row(
        "rf-bytes",
        "RandomForest: bytes on the remote vs its pickle",
        _mb(stored),
        _mb(size),
        f"{share:.0%}",
        "<= 25%",
        share <= 0.25,
    )


def bench_layers_10(b: Storage) -> harness.Row:
    h = b.layers_history()
    share = h["stored"] / h["size"]
    return harness.Row(
        "layers-10",
        f"48 layers: bytes on the remote after {VERSIONS} versions vs one version",
        _mb(h["stored"]),
        _mb(h["size"]),
        f"{share:.2f}x one version",
        "<= 2x one version",
        share <= 2.0,
        note=f"{VERSIONS} whole versions (DVC's, git-lfs's) would be {_mb(VERSIONS * h['size'])}",
    )


def bench_dvc_10(b: Storage) -> harness.Row:
    label = f"48 layers, {VERSIONS} versions: bytes on the remote vs dvc push's"
    h = b.layers_history()
    if h["dvc"] is None:
        return harness.Row("dvc-10", label, note="DVC not installed; run with --install-dvc")
    ratio = h["stored"] / h["dvc"]["stored"]
    return harness.Row(
        "dvc-10",
        label,
        _mb(h["stored"]),
        _mb(h["dvc"]["stored"]),
        f"{ratio:.2f}x",
        "<= 0.20x",
        ratio <= 0.20,
        note=f"dvc push of each version k+1 sent {_mb(statistics.median(h['dvc']['up']))} "
        f"(median), {h['dvc']['stored'] / h['size']:.2f}x one version stored",
    )


def _transfer_row(b: Storage, name: str, what: str, moved: list[int]) -> harness.Row:
    size = b.layers_history()["size"]
    worst = max(moved) / size
    return harness.Row(
        name,
        f"48 layers: bytes {what} version k+1 vs one version",
        f"{_mb(max(moved))} (max)",
        _mb(size),
        f"{worst:.1%}",
        "<= 15%",
        worst <= 0.15,
        note=f"k = 1..{len(moved)}: " + ", ".join(f"{m / size:.1%}" for m in moved),
    )


def bench_push_next(b: Storage) -> harness.Row:
    return _transfer_row(b, "push-k1", "uploaded by the push of", b.layers_history()["up"])


def bench_pull_next(b: Storage) -> harness.Row:
    moved = b.layers_history()["down"]
    return _transfer_row(b, "pull-k1", "downloaded, version k local, by the pull of", moved)


def bench_rf_slow_pull(b: Storage) -> harness.Row:
    folder, address, size = b.rf_pushed()
    raw_key = f"rf-raw/{uuid.uuid4().hex[:12]}.pkl"
    b.setup_worker("push_base", b.s3_env, path=str(folder / "rf.pkl"), bucket=BUCKET, key=raw_key)
    env = b.slow_link_env()

    def ours(i: int) -> harness.Sample:
        dst = b.fresh("rf-pull")
        harness.copy_registry(folder, dst, address, address)
        mate = harness.another_machine(env, b.root)
        try:
            return b.worker("pull_ours", mate, dir=str(dst), address=address, expect=1)
        finally:
            shutil.rmtree(dst, ignore_errors=True)
            shutil.rmtree(mate["MODEL_FILER_CACHE_DIR"], ignore_errors=True)

    def base(i: int) -> harness.Sample:
        dst = b.fresh("rf-pull-base")
        dst.mkdir()
        try:
            path = str(dst / "rf.pkl")
            return b.worker("pull_base", env, bucket=BUCKET, key=raw_key, path=path)
        finally:
            shutil.rmtree(dst, ignore_errors=True)

    mine, theirs = harness.alternate(b.runs, ours, base)
    row = workloads._speedup_row(
        "rf-slow-pull",
        f"pull RandomForest ({_mb(size)}) at {RATE_MB:g} MB/s vs download_file",
        mine,
        theirs,
        3.0,
    )
    return row


def bench_push_1g(b: Storage) -> harness.Row:
    row = workloads.bench_push(b, 0.9, 250)
    row.label += " (random bytes)"
    return row


def bench_pull_1g(b: Storage) -> harness.Row:
    row = workloads.bench_pull(b, 0.9, 250)
    row.label += " (random bytes)"
    return row


def bench_issue_table(b: Storage) -> harness.Row:
    root = b.fresh("issue-table")
    made = b.setup_worker(
        "issue_table", kinds=list(KINDS), shape=list(astuple(b.shape)), root=str(root)
    )
    shutil.rmtree(root, ignore_errors=True)
    b.issue_table = made["rows"]
    return harness.Row("issue-table", "the issue's table of models (below)", ok=None)


WORKLOADS: dict[str, Callable[[Storage], harness.Row]] = {
    "rf-bytes": bench_rf_bytes,
    "layers-10": bench_layers_10,
    "dvc-10": bench_dvc_10,
    "push-k1": bench_push_next,
    "pull-k1": bench_pull_next,
    "rf-slow-pull": bench_rf_slow_pull,
    "push-1g": bench_push_1g,
    "pull-1g": bench_pull_1g,
    "dump-512": scale.bench_dump_512,
    "dvc-pull": workloads.bench_dvc_pull,
    "issue-table": bench_issue_table,
}


def print_issue_table(rows: list[dict[str, Any]]) -> None:
    from model_filer.storage import chunks, stored

    print(
        f"\nThe issue's table, as measured (zstd level {stored.SMALL_LEVEL} up to "
        f"{stored.SMALL_MODEL // MiB} MiB, {stored.LEVEL} above; FastCDC at model_filer's "
        f"average chunk for the size, {chunks.MIN_AVG // 1024}-{chunks.MAX_AVG // 1024} KiB; "
        f"models up to {chunks.SMALL_MAX // MiB} MiB are stored whole):\n"
    )
    print(
        "| model | pickle | zstd | version 2's bytes in version 1's chunks | on the remote "
        "after versions 1 and 2 |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {KINDS[r['kind']]} | {_mb(r['size'])} | {r['zstd']:.2f}x smaller "
            f"| {r['shared']:.0%} | {r['remote']:.0%} of both pickles |"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small models and transfers, 1 run")
    parser.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), metavar="NAME")
    parser.add_argument("--runs", type=int, help="runs per timed row (default 5; 1 with --quick)")
    harness.add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.args)
    runs = args.runs or (1 if args.quick else 5)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="mf-storage-", dir=args.tmp))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Storage(root, harness.QUICK if args.quick else harness.FULL, runs, args.install_dvc)
    bench.shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    names = args.only or list(WORKLOADS)
    code = harness.run_rows(bench, root, names, WORKLOADS, runs, args.json)
    if bench.issue_table:
        print_issue_table(bench.issue_table)
    return code


if __name__ == "__main__":
    sys.exit(main())
