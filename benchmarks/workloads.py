"""The workloads: one function per row of the table, each against its baseline."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from .common import BIN, BUCKET, HEAVY_MODULES, NULL_SHA, PY, REPO, BenchError, MiB, log
from .harness import (
    Bench,
    Row,
    Sample,
    Series,
    alternate,
    another_machine,
    clone_folder,
    copy_registry,
    mib,
    run,
    secs,
    time_process,
)

# ================================================================================================
# Workloads
# ================================================================================================


def dump_samplers(
    b: Bench, size: int, remote: Path
) -> tuple[Callable[[int], Sample], Callable[[int], Sample]]:
    """One dump of a ``size``-byte array by model_filer, and by ``pickle.dump``, each in a
    fresh process and folder (deleted after). Run ``i`` dumps array ``i`` on both sides: the
    store keeps objects across runs, and the same array again would measure a re-dump (the
    object is there: the new copy is dropped, and freeing its blocks is most of the cost)."""

    def ours(i: int) -> Sample:
        folder = b.fresh("dump")
        try:
            return b.worker("dump_ours", dir=str(folder), address=str(remote), nbytes=size, seed=i)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def base(i: int) -> Sample:
        folder = b.fresh("dump-base")
        folder.mkdir()
        try:
            return b.worker("dump_base", path=str(folder / "model.pkl"), nbytes=size, seed=i)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return ours, base


def bench_dump(b: Bench) -> Row:
    size = b.sizes.dump_bytes
    remote = b.root / "dump-remote"
    remote.mkdir(exist_ok=True)

    ours, base = dump_samplers(b, size, remote)
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
    name: str, label: str, size: int, mine: Series, theirs: Series, target: float, rss: int = 200
) -> Row:
    ours_tp, base_tp = size / MiB / mine.median, size / MiB / theirs.median
    ratio = ours_tp / base_tp
    return Row(
        name,
        label,
        f"{ours_tp:.0f} MiB/s",
        f"{base_tp:.0f} MiB/s",
        f"{ratio:.2f}x tput",
        f">= {target:.2f}x, RSS <= {rss}",
        ratio >= target and mine.peak_rss <= rss,
        f"{mib(mine.peak_rss)} / {mib(theirs.peak_rss)}",
    )


def bench_push(b: Bench, target: float = 0.9, rss: int = 200) -> Row:
    template, tpl_address, size = b.big_template()
    env = b.s3_env
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
        return b.worker("push_base", env, path=str(src), bucket=BUCKET, key=key)

    # A fresh SeaweedFS spends ~10% more CPU on the first GiB it takes (it grows its volumes),
    # which the first timed run would pay alone: one upload, untimed, first (as pull's setup).
    log("setup: one untimed upload_file, so that no timed run is a fresh store's first")
    base(-1)
    mine, theirs = alternate(b.runs, ours, base, sync=True)
    label = f"push {size / MiB:.0f} MiB to S3 vs upload_file"
    return _throughput_row("push", label, size, mine, theirs, target, rss)


def bench_pull(b: Bench, target: float = 0.8, rss: int = 200) -> Row:
    template, tpl_address, size = b.big_template()
    env = b.s3_env
    log("setup: pushing the big model once, to pull it back")
    src, address = b.once("big_src", lambda: b.pushed_copy((template, tpl_address), "big"))
    key = f"pull-base-{uuid.uuid4().hex[:12]}/big.pkl"  # the pickle as is, for the baseline
    b.setup_worker("push_base", env, path=str(template / "big.pkl"), bucket=BUCKET, key=key)

    def ours(i: int) -> Sample:
        folder = b.fresh("pull")
        copy_registry(src, folder, address, address)
        try:
            mate = another_machine(env, b.root)
            return b.worker("pull_ours", mate, dir=str(folder), address=address, expect=1)
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
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    mine, theirs = alternate(b.runs, ours, base, sync=True)
    label = f"pull {size / MiB:.0f} MiB + sha256 vs download_file"
    return _throughput_row("pull", label, size, mine, theirs, target, rss)


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
    prefix = f"pull-many-base-{uuid.uuid4().hex[:12]}"  # the pickles as they are, for the baseline
    b.setup_worker("put_loop", b.s3_env, src=str(template[0]), bucket=BUCKET, prefix=prefix)
    key_names = [f"{prefix}/{path.name}" for path in sorted(template[0].glob("*.pkl"))]
    env = b.proxy_env

    def ours(i: int) -> Sample:
        folder = b.fresh("pull-many")
        copy_registry(src, folder, address, address)
        try:
            mate = another_machine(env, b.root)
            return b.worker("pull_ours", mate, dir=str(folder), address=address, expect=n)
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
    before = cache.stat().st_mtime_ns if cache.exists() else 0
    outputs: list[str] = []

    def ours(i: int) -> Sample:
        sample, out = time_process([str(BIN / "prefetch-models")], repo, env)
        outputs.append(out)
        return sample

    mine, theirs = alternate(
        b.light_runs, ours, lambda i: time_process([PY, "-c", "pass"], repo, b.env)[0]
    )
    notes = []
    if (cache.stat().st_mtime_ns if cache.exists() else 0) != before:
        notes.append("hash cache rewritten (re-hashed?)")
    if any("fetched" in o and " 0 model(s) fetched" not in o for o in outputs):
        notes.append("fetched something: " + outputs[-1].strip()[:80])
    # Sanity check, untimed: with one model gone, the same command fetches exactly that one.
    (repo / "models" / "m0000.pkl").unlink()
    _, out = time_process([str(BIN / "prefetch-models")], repo, env)
    if "1 model(s) fetched" not in out and "1 linked from the local store" not in out:
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
        log(f"setup: {n} models pushed to S3 in a git repo")
        address = f"s3://{BUCKET}/clone-models"
        return b.models_repo("pull-origin", address, "s3", n, b.sizes.hook_bytes, env)

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
            [str(BIN / "model-filer"), "pull", "--all", "--dir", "models"],
            repo,
            another_machine(env, b.root),
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
