#!/usr/bin/env python
"""Loading PyTorch weights safely against ``torch.load(weights_only=True)`` (issue 23).

Run from the repository root (needs ``torch==2.13.0``)::

    .venv/bin/python -m benchmarks.torch_load [--runs 5] [--mib 100]

A ~100 MB ``state_dict`` is dumped once with model_filer (no configuration: tensors are
trusted by default) and saved once with ``torch.save``. Each sample is a fresh process that
imports torch and model_filer before the clock starts, loads once, and reports its wall and
CPU time and its peak RSS (VmHWM); the sides take turns, ``--runs`` samples each, medians
printed. Rows:

- ``Filer.load`` of the dump (storages out of band, read straight into the tensors) against
  ``torch.load(path, weights_only=True)`` of the ``torch.save`` file: target <= 1.15x in
  time, peak RSS within 150 MiB;
- for reference, the safe loader on the same state_dict pickled in band (``pickle-5``, as
  model_filer wrote it before): each storage is read into a bytes object, then copied;
- dump: model_filer's serializer (recording pickler, storages out of band, hashed as it
  writes) against ``torch.save`` of the same state_dict to a file, in this process,
  alternating, medians of ``--runs``.

The files are in the page cache for every side. The temp folder is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import REPO
from .workers import peak_rss_mib

MiB = 1 << 20
SIDES = ("model_filer", "torch.load", "in-band pickle-5")


def make(root: Path, mib: int) -> Any:
    """The state_dict, dumped with model_filer, saved with torch.save, pickled in band."""
    import pickle

    import torch

    from model_filer import Filer

    torch.manual_seed(0)
    width = 2048
    layers = max(1, round(mib * MiB / (4 * width * (width + 1))))
    net = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    state = net.state_dict()
    Filer(root / "models", str(root / "remote"), remote_type="local").dump(state, "net")
    torch.save(state, root / "net.pt")
    (root / "inband.pkl").write_bytes(pickle.dumps(state, protocol=5))
    return state


def dump_cost(state: Any, root: Path, runs: int) -> None:
    """model_filer's dump of ``state`` (bytes written and hashed) against ``torch.save``."""
    import torch

    from model_filer.pickles import serializers

    def ours() -> None:
        with open(root / "dump.pkl", "wb") as fh:
            serializers.dump(state, fh)

    def theirs() -> None:
        torch.save(state, root / "dump.pt")

    times: dict[str, list[float]] = {"model_filer": [], "torch.save": []}
    for run in range(runs):
        for side, fn in [("model_filer", ours), ("torch.save", theirs)][:: 1 if run % 2 else -1]:
            wall = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - wall)
    mf, ts = (statistics.median(times[s]) for s in ("model_filer", "torch.save"))
    print(f"dump model_filer: wall {mf * 1000:.1f} / torch.save {ts * 1000:.1f} ms = {mf / ts:.2f}")


def worker(side: str, root: str) -> None:
    """A fresh process: imports first, then one timed load; prints the figures."""
    import torch

    from model_filer import Filer
    from model_filer.pickles import safe_pickle, trust

    folder = Path(root)
    filer = Filer(folder / "models", str(folder / "remote"), remote_type="local")
    trusted = trust.TrustedSet()
    wall, cpu = time.perf_counter(), time.process_time()
    if side == "model_filer":
        loaded: Any = filer.load("net")
    elif side == "torch.load":
        loaded = torch.load(folder / "net.pt", weights_only=True)
    else:
        with open(folder / "inband.pkl", "rb") as fh:
            loaded = safe_pickle.load(fh, trusted, "net")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    nbytes = sum(t.untyped_storage().nbytes() for t in loaded.values())
    print(json.dumps({"wall": wall, "cpu": cpu, "vmhwm_mib": peak_rss_mib(), "bytes": nbytes}))


def sample(side: str, root: Path) -> dict[str, float]:
    env = {**os.environ, "MODEL_FILER_CACHE_DIR": str(root / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.torch_load", "--worker", side, str(root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=100, help="size of the state_dict")
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    root = Path(tempfile.mkdtemp(prefix="mf-torch-load-"))
    try:
        os.environ["MODEL_FILER_CACHE_DIR"] = str(root / "cache")
        state = make(root, args.mib)
        samples: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        for run in range(args.runs):  # take turns, swapping who goes first
            for side in SIDES[:: 1 if run % 2 else -1]:
                samples[side].append(sample(side, root))

        def med(side: str, key: str) -> float:
            return statistics.median(s[key] for s in samples[side])

        size = (root / "net.pt").stat().st_size / 1e6
        print(f"python {sys.version.split()[0]}, state_dict {size:.0f} MB, runs={args.runs}")
        base_wall, base_cpu = med("torch.load", "wall"), med("torch.load", "cpu")
        base_rss = med("torch.load", "vmhwm_mib")
        for side in ("model_filer", "in-band pickle-5"):
            wall, cpu, rss = med(side, "wall"), med(side, "cpu"), med(side, "vmhwm_mib")
            target = side == "model_filer"
            verdict = (
                f"  (target <= 1.15: {'PASS' if wall <= 1.15 * base_wall else 'FAIL'})"
                if target
                else "  (reference)"
            )
            print(
                f"load {side}: wall {wall * 1000:.1f} / torch.load {base_wall * 1000:.1f} ms"
                f" = {wall / base_wall:.2f}; CPU {cpu * 1000:.1f} / {base_cpu * 1000:.1f} ms"
                f" = {cpu / base_cpu:.2f}{verdict}"
            )
            rss_verdict = (
                f"  (target <= +150: {'PASS' if rss - base_rss <= 150 else 'FAIL'})"
                if target
                else ""
            )
            print(
                f"peak RSS {side}: {rss:.0f} MiB   torch.load {base_rss:.0f} MiB   "
                f"diff {rss - base_rss:+.0f} MiB{rss_verdict}"
            )
        dump_cost(state, root, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
