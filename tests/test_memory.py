"""Peak memory of dump, push and pull of a 200 MiB model, each measured in its own process.

The bounds are the product's: dumping adds at most 64 MiB above the model itself (pickle
protocol 5 writes numpy buffers in place, hashing as it goes); a push or a pull, in a process
that does not hold the model, stays under 150 MiB in all (the transfer manager's bounded
parts and queues, sha256 in chunks).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from model_filer import Filer
from tests.support.machines import another_machine

MiB = 1024 * 1024
MODEL_MIB = 200
DUMP_OVERHEAD_MIB = 64
TRANSFER_PEAK_MIB = 150

PRELUDE = textwrap.dedent(
    """
    import json, resource, sys
    from model_filer import Filer

    def peak_mib():
        # VmHWM: the peak RSS of this process image only. ru_maxrss would also count the
        # pytest parent's RSS at fork time, which Linux carries across exec.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # KiB
        raise RuntimeError("no VmHWM in /proc/self/status")

    def ru_maxrss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    local_dir, address = sys.argv[1:3]
    """
)

DUMP = PRELUDE + textwrap.dedent(
    f"""
    import numpy as np
    filer = Filer(local_dir, address, remote_type="s3")
    model = np.random.default_rng(0).random({MODEL_MIB} * 1024 * 1024 // 8)
    before = peak_mib()
    filer.dump(model, "big")
    after = peak_mib()
    print(json.dumps({{"before": before, "after": after, "checksum": float(model.sum())}}))
    """
)

PUSH = PRELUDE + textwrap.dedent(
    """
    Filer(local_dir, address, remote_type="s3").push("big")
    assert "numpy" not in sys.modules
    print(json.dumps({"peak": peak_mib(), "ru_maxrss": ru_maxrss_mib()}))
    """
)

PULL = PRELUDE + textwrap.dedent(
    """
    report = Filer(local_dir, address, remote_type="s3").pull()
    assert report.done == ["big"], report
    assert "numpy" not in sys.modules
    print(json.dumps({"peak": peak_mib(), "ru_maxrss": ru_maxrss_mib()}))
    """
)

LOAD = PRELUDE + textwrap.dedent(
    """
    model = Filer(local_dir, address, remote_type="s3").load("big")
    print(json.dumps({"checksum": float(model.sum()), "size": int(model.nbytes)}))
    """
)


def run(script: str, local_dir, address: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", script, str(local_dir), address],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=180,  # a 200 MiB transfer takes seconds: longer means a hang
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM from /proc/self/status")
def test_dump_push_and_pull_of_a_200_mib_model_stay_within_memory_bounds(tmp_path, s3_address):
    author, clone = tmp_path / "author", tmp_path / "clone"

    dumped = run(DUMP, author, s3_address)
    dump_overhead = dumped["after"] - dumped["before"]
    assert dumped["before"] >= MODEL_MIB  # the model really was in memory
    pushed = run(PUSH, author, s3_address)
    clone.mkdir()
    shutil.copyfile(author / ".s3_registry", clone / ".s3_registry")
    another_machine()  # the pull downloads, as a teammate's would
    pulled = run(PULL, clone, s3_address)
    figures = (
        f"dump: {dumped['before']:.0f} -> {dumped['after']:.0f} MiB "
        f"(+{dump_overhead:.0f}); push peak {pushed['peak']:.0f} MiB; "
        f"pull peak {pulled['peak']:.0f} MiB"
    )
    print(figures)

    assert dump_overhead <= DUMP_OVERHEAD_MIB, figures
    assert pushed["peak"] < TRANSFER_PEAK_MIB, figures
    assert pulled["peak"] < TRANSFER_PEAK_MIB, figures

    [entry] = Filer(clone, s3_address).list_files()
    assert entry.state == "synced" and entry.size > MODEL_MIB * MiB
    loaded = run(LOAD, clone, s3_address)
    assert loaded == {"checksum": dumped["checksum"], "size": MODEL_MIB * MiB}
