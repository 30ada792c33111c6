#!/usr/bin/env python
"""Safe loading's cost against plain ``pickle.load``, measured in the same run (issue 11).

Run from the repository root::

    .venv/bin/python -m benchmarks.safe_load [--runs 5] [--rss-gib 2]

Prints, with the baseline beside each figure:

- load time of a 512 MiB numpy model and of a ~50 MB RandomForest: model_filer's safe loader
  (trusted set read from a ``pyproject.toml``, as ``Filer.load`` does) against
  ``pickle.load`` on the same file, alternating run by run, median of ``--runs`` (target
  <= 1.10x), in wall time and in CPU time (the verdict: on a shared machine other processes
  make wall time swing by more than the 10% under test), and the safe loader's own checks
  timed alone;
- peak RSS (VmHWM) of a fresh process loading a 2 GiB numpy model, each way (target: within
  100 MiB of ``pickle.load``);
- what ``dump`` adds to list a pickle's imports (a recording pickler) against ``pickle.dump``,
  on those models and on an object-heavy one.

Files are in the page cache for both sides. Everything runs on this machine; the temp folder is
removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import REPO
from .workers import peak_rss_mib

MiB = 1 << 20


def safe_load(path: Path) -> Any:
    from model_filer.pickles import safe_pickle, trust

    with open(path, "rb") as fh:
        return safe_pickle.load(fh, trust.trusted_set(path.parent), path.stem)


def prescan(path: Path) -> None:
    """What the safe loader adds before unpickling: reading the trust, scanning the opcodes."""
    from model_filer.pickles import safe_pickle, trust

    trust.trusted_set(path.parent)
    with open(path, "rb") as fh, contextlib.suppress(safe_pickle._OverBudget):
        safe_pickle.scan(fh, safe_pickle.PRESCAN_BUDGET)


def plain_load(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def worker(kind: str, path: str) -> None:
    """A fresh process: load once, print the peak RSS."""
    import numpy  # noqa: F401 - imported before the measure on both sides

    (safe_load if kind == "safe" else plain_load)(Path(path))
    print(json.dumps({"vmhwm_mib": peak_rss_mib()}))


def rss(kind: str, path: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.safe_load", "--worker", kind, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["vmhwm_mib"])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn``: on a shared machine the CPU time is the steady one."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(label: str, path: Path, runs: int) -> None:
    safe: list[tuple[float, float]] = []
    plain: list[tuple[float, float]] = []
    for run in range(runs):  # alternate, swapping who goes first: drift hits both alike
        pair = [(plain, plain_load), (safe, safe_load)]
        for times, load in pair[:: 1 if run % 2 else -1]:
            times.append(cpu_timed(functools.partial(load, path)))
    sw, pw = (statistics.median(t[0] for t in side) for side in (safe, plain))
    sc, pc = (statistics.median(t[1] for t in side) for side in (safe, plain))
    checks = statistics.median(timed(functools.partial(prescan, path)) for _ in range(runs))
    print(
        f"load {label}: wall safe {sw * 1000:.1f} / pickle.load {pw * 1000:.1f} ms = "
        f"{sw / pw:.3f}; CPU safe {sc * 1000:.1f} / pickle.load {pc * 1000:.1f} ms = "
        f"{sc / pc:.3f} (target <= 1.10: {'PASS' if sc <= 1.10 * pc else 'FAIL'}); "
        f"trust + opcode scan alone {checks * 1000:.2f} ms"
    )


def make_forest(path: Path) -> Any:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    rng = np.random.RandomState(0)
    x, y = rng.rand(20000, 20), rng.randint(0, 2, 20000)
    model = RandomForestClassifier(90, random_state=0, n_jobs=2).fit(x, y)
    with open(path, "wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return model


def make_array(path: Path, nbytes: int) -> None:
    import numpy as np

    with open(path, "wb") as fh:
        pickle.dump({"weights": np.ones(nbytes // 8)}, fh, protocol=5)


def dump_cost(label: str, model: Any, path: Path, runs: int) -> None:
    """``dump`` lists imports with a recording pickler: its cost against ``pickle.dump``."""
    from model_filer.pickles import safe_pickle

    def write(pickler: type[pickle.Pickler]) -> None:
        with open(path, "wb") as fh:
            pickler(fh, protocol=5).dump(model)

    plain: list[tuple[float, float]] = []
    recording: list[tuple[float, float]] = []
    for run in range(2 * runs):  # alternate, and swap who goes first: writes are noisy
        pair = [(plain, pickle.Pickler), (recording, safe_pickle.RecordingPickler)]
        for times, pickler in pair[:: 1 if run % 2 else -1]:
            times.append(cpu_timed(functools.partial(write, pickler)))
    rw, pw = (statistics.median(t[0] for t in side) for side in (recording, plain))
    rc, pc = (statistics.median(t[1] for t in side) for side in (recording, plain))
    print(
        f"dump {label} (recording imports vs pickle.dump): wall {rw * 1000:.1f} / "
        f"{pw * 1000:.1f} ms = {rw / pw:.3f}; CPU {rc * 1000:.1f} / {pc * 1000:.1f} ms = "
        f"{rc / pc:.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rss-gib", type=float, default=2.0)
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    root = Path(tempfile.mkdtemp(prefix="mf-safe-load-"))
    try:
        (root / "pyproject.toml").write_text('[tool.model_filer]\ntrusted = ["mypkg.*"]\n')
        array, forest, big = root / "array.pkl", root / "forest.pkl", root / "big.pkl"
        make_array(array, 512 * MiB)
        forest_model = make_forest(forest)
        print(f"python {sys.version.split()[0]}, runs={args.runs}, medians")
        compare(f"numpy {array.stat().st_size / MiB:.0f} MiB", array, args.runs)
        compare(f"RandomForest {forest.stat().st_size / 1e6:.0f} MB", forest, args.runs)
        vocabulary = {f"term{i}": i for i in range(1_000_000)}  # object-heavy: a text model
        vocab = root / "vocab.pkl"
        with open(vocab, "wb") as fh:
            pickle.dump(vocabulary, fh, protocol=5)
        compare("1M-term vocabulary (no target)", vocab, args.runs)
        import numpy as np

        array_model = {"weights": np.ones(512 * MiB // 8)}
        dump_cost("numpy 512 MiB", array_model, array, args.runs)
        dump_cost("RandomForest", forest_model, forest, args.runs)
        dump_cost("1M-term vocabulary dict", vocabulary, vocab, args.runs)
        del array_model
        array.unlink()
        make_array(big, int(args.rss_gib * 1024) * MiB)
        safe_rss, plain_rss = rss("safe", big), rss("plain", big)
        verdict = "PASS" if safe_rss - plain_rss <= 100 else "FAIL"
        print(
            f"peak RSS loading numpy {big.stat().st_size / MiB:.0f} MiB: safe {safe_rss:.0f} MiB"
            f"   pickle.load {plain_rss:.0f} MiB   diff {safe_rss - plain_rss:+.0f} MiB"
            f"  (target <= +100)  {verdict}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
