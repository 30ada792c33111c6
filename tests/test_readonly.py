"""A deployed model folder may be read-only: load must still work without writing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_filer import Filer


def test_load_works_when_the_internal_folder_cannot_be_created(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump({"weights": [1.0, 2.0]}, "m", push=True)
    # Stand-in for a read-only image (tests run as root, where chmod does not bite): a file
    # where model_filer's internal folder would go makes every attempt to create it fail.
    shutil.rmtree(tmp_path / "models" / ".model_filer")
    (tmp_path / "models" / ".model_filer").write_text("not a folder")

    assert Filer(tmp_path / "models", str(remote), remote_type="local").load("m") == {
        "weights": [1.0, 2.0]
    }
    assert (tmp_path / "models" / ".model_filer").read_text() == "not a folder"


_LOAD_READ_ONLY = """
import sys
from model_filer import Filer
from model_filer.errors import ModelFilerError
filer = Filer(sys.argv[1], sys.argv[2], remote_type="local")
for name in sys.argv[3:]:
    try:
        print(name, "loaded", filer.load(name))
    except ModelFilerError as exc:
        print(name, "refused", type(exc).__name__, exc)
"""


def _load_without_write_permission(
    folder: Path, remote: Path, *names: str
) -> subprocess.CompletedProcess[str]:
    return _without_write_permission(["-c", _LOAD_READ_ONLY, str(folder), str(remote), *names])


def _without_write_permission(
    args: list[str], env_store: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Python ``args`` in a process that file permissions bind: root without its override
    capabilities (root ignores permissions, and another user could not reach this
    interpreter)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop the permission-override capabilities")
    env = None if env_store is None else {**os.environ, "MODEL_FILER_CACHE_DIR": str(env_store)}
    return subprocess.run(
        [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable",
            sys.executable,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_a_read_only_copy_loads_present_models_and_names_the_folder_for_missing_ones(
    tmp_path: Path, remote: Path
) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump({"w": [1, 2]}, "present", push=True)
    filer.dump({"w": [3]}, "missing", push=True)
    filer.load("present")  # the lock file and the hash cache exist, as on a used folder
    deploy = tmp_path / "deploy"
    subprocess.run(["cp", "-a", str(filer.local_dir), str(deploy)], check=True)
    (deploy / "missing.pkl").unlink()
    subprocess.run(["chmod", "-R", "a-w", str(deploy)], check=True)
    try:
        done = _load_without_write_permission(deploy, remote, "present", "missing")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(deploy)], check=True)

    assert done.returncode == 0, done.stderr
    assert "present loaded {'w': [1, 2]}" in done.stdout
    missing = [line for line in done.stdout.splitlines() if line.startswith("missing")]
    assert missing and "refused" in missing[0], done.stdout
    assert "FolderNotWritableError" in missing[0]  # a ModelFilerError, not a raw OSError
    assert str(deploy) in missing[0] and "read-only" in missing[0]


def test_a_pull_into_a_read_only_copy_names_the_folder_without_a_traceback(
    tmp_path: Path, remote: Path
) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump({"w": [3]}, "missing", push=True)
    filer.dump(os.urandom(64), "small", push=True)
    deploy = tmp_path / "deploy"
    subprocess.run(["cp", "-a", str(filer.local_dir), str(deploy)], check=True)
    for name in ("missing", "small"):
        (deploy / f"{name}.pkl").unlink()
    subprocess.run(["chmod", "-R", "a-w", str(deploy)], check=True)
    try:
        done = _without_write_permission(
            ["-m", "model_filer", "pull", "--all", "--dir", str(deploy)],
            env_store=tmp_path / "empty-store",  # nothing to link: a download is needed
        )
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(deploy)], check=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert str(deploy) in done.stdout + done.stderr and "read-only" in done.stdout + done.stderr
