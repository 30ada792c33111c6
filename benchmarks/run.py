#!/usr/bin/env python
"""Benchmarks of model_filer against raw pickle, raw boto3 and DVC, with the targets of issue 5.

Run from the repository root (see benchmarks/README.md)::

    .venv/bin/python -m benchmarks.run [--quick] [--only NAME ...] [--runs N] [--install-dvc]

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
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .harness import FULL, QUICK, Bench, add_run_arguments, run_rows
from .workers import worker_main
from .workloads import WORKLOADS


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
    add_run_arguments(parser)
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
    return run_rows(bench, root, names, WORKLOADS, runs, args.json)


if __name__ == "__main__":
    sys.exit(main())
