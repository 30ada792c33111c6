#!/usr/bin/env python
"""Benchmarks of the local object store (issue 9), each beside its baseline in the same run.

Run from the repository root::

    .venv/bin/python -m benchmarks.store [--size-mib 1024] [--dump-mib 512] [--runs 5]

1. Branch switch: a clone switches between branches A and B, each naming its own version of
   a ``--size-mib`` model, with model_filer's plain git hooks (the object is linked from the
   store), against ``git checkout`` of the same branches without hooks, and against the same
   switch with an empty store (a fresh download from SeaweedFS). Target: at most 50 ms over
   the plain checkout when hardlinks or reflinks serve.
2. Disk: the model checked out in 3 clones on this machine, ``du`` across the three model
   folders, with links and with ``MODEL_FILER_LINK=copy``.
3. Dump: ``filer.dump`` of a ``--dump-mib`` numpy array into the store, against the same dump
   with the store unusable (the path before the store: pickled into the model folder), and
   raw ``pickle.dump`` through ``hashlib.sha256`` into a file.

It starts its own SeaweedFS on 127.0.0.1 (``tests.support.s3server``), keeps boto3 and git away
from the machine's credentials and config, and deletes its temp root at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness
from tests.support.s3server import start_seaweedfs

MIB = 1024 * 1024
TARGET_MS = 50.0


def isolate(root: Path) -> None:
    """This process and its children talk only to our server, repos and store."""
    env = harness.isolated_env(root)
    os.environ.clear()
    os.environ.update(env, MODEL_FILER_CACHE_DIR=str(root / "store"))
    os.environ.pop("MODEL_FILER_LINK", None)
    os.environ.pop("MODEL_FILER_SKIP_PREFETCH", None)


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def random_model(size: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 255, size=size, dtype=np.uint8)


def build_repo(root: Path, address: str, size: int) -> Path:
    """Branches A and B, each with its own version of model ``m``; pushed to a bare origin."""
    from model_filer import Filer
    from model_filer.git.install import install_hooks
    from model_filer.local.store import ObjectStore

    author = root / "author"
    author.mkdir()
    git(author, "init", "-q", "-b", "main")
    (author / "README").write_text("models\n")
    git(author, "add", "-A")
    git(author, "commit", "-qm", "first")
    install_hooks(author)
    git(author, "add", "-A")
    git(author, "commit", "-qm", "hooks", "--no-verify")
    store = ObjectStore(root / "author-store")  # the author is another machine
    for seed, branch in enumerate(("A", "B")):
        git(author, "checkout", "-q", "-b", branch, "main")
        Filer(author / "models", address, "s3", store=store).dump(
            random_model(size, seed), "m", push=True, overwrite=True
        )
        git(author, "add", "-A")
        git(author, "commit", "-qm", f"m, version {branch}")
    origin = root / "origin.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    git(author, "push", "-q", str(origin), "main", "A", "B")
    return origin


def clone(root: Path, origin: Path, name: str, template: Path) -> Path:
    repo = root / name
    git(root, "clone", "-q", f"--template={template}", str(origin), str(repo))
    return repo


def bench_switch(root: Path, origin: Path, runs: int) -> tuple[Path, Path]:
    from model_filer.git.install import install_merge_driver, write_hooks

    template = root / "template"
    write_hooks(template / "hooks")
    bob = clone(root, origin, "bob", template)
    install_merge_driver(bob)
    no_hooks = ["-c", f"core.hooksPath={root / 'no-hooks'}"]

    fresh = []
    for i in range(2):  # an empty store each time: the switch downloads the model
        for branch in ("A", "B"):
            empty = root / f"empty-store-{i}{branch}"
            env = {**os.environ, "MODEL_FILER_CACHE_DIR": str(empty)}
            fresh.append(timed(lambda b=branch, e=env: git(bob, "checkout", "-q", b, env=e)))
            shutil.rmtree(empty)
    for branch in ("A", "B"):  # the first visits with the shared store: downloads
        assert "1 model(s) fetched" in git(bob, "checkout", branch)
    for branch in ("A", "B"):  # from now on every switch is a link
        out = git(bob, "checkout", branch)
        assert "0 model(s) fetched, 1 linked from the local store" in out, out
    linked, plain = [], []
    for _ in range(runs):  # alternate: both sides see the same machine load
        for branch in ("A", "B"):
            plain.append(timed(lambda b=branch: git(bob, *no_hooks, "checkout", "-q", b)))
        git(bob, "checkout", "-q", "B")  # the hooks bring the file back in line with B
        for branch in ("A", "B"):
            linked.append(timed(lambda b=branch: git(bob, "checkout", "-q", b)))
    in_process = []  # the library's share: read the registry, lock, check the store, link
    from model_filer.hookapi import filer_for

    for _ in range(runs):
        for branch in ("A", "B"):
            git(bob, *no_hooks, "checkout", "-q", branch)
            filer = filer_for(bob / "models" / ".s3_registry")
            start = time.perf_counter()
            report = filer.pull()
            in_process.append(time.perf_counter() - start)
            assert report.linked == ["m"], report
    hook_start = [
        timed(
            lambda: subprocess.run(
                [sys.executable, "-c", "import model_filer_hooks.prefetch_models"], check=True
            )
        )
        for _ in range(runs)
    ]
    p, li, f, start = (statistics.median(x) for x in (plain, linked, fresh, hook_start))
    extra = li - p
    print("\n== Branch switch A <-> B (model of", f"{root_size(bob) // MIB} MiB)")
    print(f"   git checkout without hooks (baseline): {ms(p)}  (median of {len(plain)})")
    print(f"   git checkout with hooks, store links:  {ms(li)}  (median of {len(linked)})")
    print(f"   git checkout with hooks, empty store:  {ms(f)}  (median of {len(fresh)})")
    print(
        f"   over plain checkout: {extra * 1000:.0f} ms (target <= {TARGET_MS:.0f} ms: "
        f"{'PASS' if extra * 1000 <= TARGET_MS else 'FAIL'})"
    )
    print(
        f"     of which starting the hook's Python and its imports: {ms(start)}; the rest "
        f"(git calls, registry, lock, link): {ms(max(0.0, extra - start))}"
    )
    print(
        f"   in-process Filer.pull() of the switched model (registry, locks, store, link): "
        f"{ms(statistics.median(in_process))}"
    )
    print(f"   fresh download / link: {f / li:.0f}x")
    return bob, template


def root_size(repo: Path) -> int:
    return os.stat(repo / "models" / "m.pkl").st_size


def du(folders: Sequence[Path]) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", "--total", *map(str, folders)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.splitlines()[-1].split()[0])


def bench_disk(root: Path, origin: Path, template: Path, bob: Path) -> None:
    git(bob, "checkout", "-q", "A")
    linked = [bob]
    for name in ("carol", "dave"):
        repo = clone(root, origin, name, template)
        git(repo, "checkout", "-q", "A")
        linked.append(repo)
    copies = []
    for name in ("copy1", "copy2", "copy3"):
        env = {**os.environ, "MODEL_FILER_LINK": "copy"}
        repo = root / name
        git(root, "clone", "-q", f"--template={template}", str(origin), str(repo))
        git(repo, "checkout", "-q", "A", env=env)
        copies.append(repo)
    size = root_size(bob)
    used_links = du([r / "models" for r in linked])
    used_copies = du([r / "models" for r in copies])
    inodes = {os.stat(r / "models" / "m.pkl").st_ino for r in linked}
    print(f"\n== Disk: model of {size // MIB} MiB in 3 clones (du -s across the model folders)")
    print(f"   linked from the store: {used_links / MIB:.1f} MiB ({len(inodes)} inode)")
    print(f"   MODEL_FILER_LINK=copy: {used_copies / MIB:.1f} MiB")


def bench_dump(root: Path, address: str, size: int, runs: int) -> None:
    from model_filer import Filer
    from model_filer.local.store import ObjectStore

    model = random_model(size, 7)
    blocker = root / "blocker"
    blocker.write_text("a file where the store would be: the store is skipped")

    class Hashed:
        """pickle.dump's file: hashes every write, then writes it."""

        def __init__(self, fh: Any) -> None:
            self.fh, self.digest = fh, hashlib.sha256()

        def write(self, data: Any) -> int:
            self.digest.update(data)
            return int(self.fh.write(data))

    def raw(i: int) -> None:
        path = root / f"raw-{i}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(model, Hashed(fh), protocol=5)

    def ours(i: int, store: ObjectStore) -> None:
        Filer(root / f"dump-{i}", address, "s3", store=store).dump(model, "m")

    def clean(i: int, store: ObjectStore | None = None) -> None:
        if store is None:
            (root / f"raw-{i}.pkl").unlink()
            return
        folder = root / f"dump-{i}"
        if store is stores["into the store"]:  # one inode: no second copy of the bytes
            filer = Filer(folder, address, "s3", store=store)
            obj = store.object_path(filer.list_files()[0].sha256)
            assert os.stat(obj).st_ino == os.stat(filer.model_path("m")).st_ino
            shutil.rmtree(store.root)
        shutil.rmtree(folder)

    stores = {
        "into the store": ObjectStore(root / f"dump-store-{secrets.token_hex(2)}"),
        "store skipped (before)": ObjectStore(blocker / "store"),
    }
    times: dict[str, list[float]] = {"raw pickle.dump + sha256": [], **{k: [] for k in stores}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(runs):
            times["raw pickle.dump + sha256"].append(timed(lambda i=i: raw(i)))
            clean(i)
            for label, store in stores.items():
                times[label].append(timed(lambda i=i, s=store: ours(i, s)))
                clean(i, store)
    base = statistics.median(times["raw pickle.dump + sha256"])
    print(f"\n== Dump of a {size // MIB} MiB numpy array (median of {runs})")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"   {label:<26} {ms(median):>8}  ({median / base:.2f}x raw)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="model size for switches")
    parser.add_argument("--dump-mib", type=int, default=512, help="model size for the dump")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="model-filer-bench-store-") as tmp:
        root = Path(tmp)
        isolate(root)
        server = start_seaweedfs(root / "s3")
        try:
            bucket = f"bench-{secrets.token_hex(4)}"
            server.create_bucket(bucket)
            os.environ.update(
                AWS_ENDPOINT_URL=server.endpoint_url,
                AWS_ACCESS_KEY_ID=server.access_key,
                AWS_SECRET_ACCESS_KEY=server.secret_key,
                AWS_DEFAULT_REGION=server.region,
            )
            address = f"s3://{bucket}/models"
            print(f"building two versions of a {args.size_mib} MiB model on SeaweedFS ...")
            origin = build_repo(root, address, args.size_mib * MIB)
            bob, template = bench_switch(root, origin, args.runs)
            bench_disk(root, origin, template, bob)
            bench_dump(root, address, args.dump_mib * MIB, args.runs)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
