"""Workers: each runs in a fresh subprocess (``--worker NAME``) and returns a dict with at least
``seconds``; the parent adds the worker's own peak RSS."""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import BenchError

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
    dir: str, address: str, remote_type: str, nbytes: int, name: str, incompressible: bool = False
) -> dict[str, Any]:
    """Dump one big array model (setup), of random bytes if ``incompressible`` (else random
    floats); load it once, so later loads are cache hits."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    filer.dump(_small_model(nbytes, 0) if incompressible else _array(nbytes), name)
    if remote_type == "local":
        filer.load(name)
    return {"seconds": 0.0, "size": filer.model_path(name).stat().st_size}


def w_make_many(
    dir: str, address: str, remote_type: str, count: int, nbytes: int, push: bool
) -> dict[str, Any]:
    """``count`` small models in ``dir`` (setup), pushed with push_all when ``push``."""
    from model_filer import Filer

    filer = Filer(dir, address, remote_type)
    models = [(f"m{i:04d}", _small_model(nbytes, i)) for i in range(count)]
    for name, model in models:
        filer.dump(model, name, overwrite=True)
    if push:
        filer.push_all()
    entries = filer.list_files()
    if len(entries) != count:
        raise BenchError(f"expected {count} entries in {dir}, found {len(entries)}")
    return {"seconds": 0.0}


def _boto3_config(direction: str) -> Any:
    """boto3's TransferConfig with the settings model_filer's S3 remote uses (same workload)."""
    from boto3.s3.transfer import TransferConfig

    from model_filer.remotes.s3 import DOWNLOAD_SETTINGS, UPLOAD_SETTINGS

    settings = UPLOAD_SETTINGS if direction == "upload" else DOWNLOAD_SETTINGS
    return TransferConfig(
        multipart_threshold=settings["multipart_threshold"],
        multipart_chunksize=settings["multipart_chunksize"],
        max_concurrency=settings["max_request_concurrency"],
    )


def w_dump_ours(dir: str, address: str, nbytes: int, seed: int = 0) -> dict[str, Any]:
    from model_filer import Filer

    model = _array(nbytes, seed)
    filer = Filer(dir, address, "local")
    start = time.perf_counter()
    filer.dump(model, "model")
    return {"seconds": time.perf_counter() - start}


def w_dump_base(path: str, nbytes: int, seed: int = 0) -> dict[str, Any]:
    import pickle

    model = _array(nbytes, seed)
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


def w_push_base(path: str, bucket: str, key: str) -> dict[str, Any]:
    import boto3

    config = _boto3_config("upload")
    start = time.perf_counter()
    client = boto3.client("s3")
    client.upload_file(path, bucket, key, Config=config)
    return {"seconds": time.perf_counter() - start}


def w_pull_ours(dir: str, address: str, expect: int, remote_type: str = "s3") -> dict[str, Any]:
    """A timed ``filer.pull()`` of ``expect`` models. The type's client library is imported
    beforehand, as the baseline's side does; its clients are made within the timing."""
    import importlib

    from model_filer import Filer

    importlib.import_module({"s3": "boto3", "gcs": "google.cloud.storage"}[remote_type])
    filer = Filer(dir, address, remote_type)
    start = time.perf_counter()
    report = filer.pull()
    seconds = time.perf_counter() - start
    if report.failed or len(report.done) != expect:
        raise BenchError(f"pull fetched {len(report.done)}/{expect}; failed: {report.failed}")
    return {"seconds": seconds}


def w_pull_base(bucket: str, key: str, path: str) -> dict[str, Any]:
    import boto3

    config = _boto3_config("download")
    start = time.perf_counter()
    client = boto3.client("s3")
    client.download_file(bucket, key, path, Config=config)
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
