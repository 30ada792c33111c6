"""Defects found by trying the project as its users would (issue 12, part 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_filer import Filer
from model_filer.errors import IntegrityError, ModelExistsError
from model_filer.freshness import Freshness

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


def test_a_name_differing_only_in_case_is_refused(tmp_path: Path, remote: Path) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump(1, "Model")
    for overwrite in (False, True):
        with pytest.raises(ModelExistsError, match="differs only in case from 'Model'"):
            filer.dump(2, "model", overwrite=overwrite)
    assert [e.name for e in filer.list_files()] == ["Model"]
    filer.dump(3, "Model", overwrite=True)  # the same name is still an overwrite


def test_a_same_size_tamper_with_the_mtime_restored_is_caught(tmp_path: Path, remote: Path) -> None:
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump(b"a" * 1000, "m")
    assert filer.load("m") == b"a" * 1000
    path = filer.model_path("m")
    before = os.stat(path)
    time.sleep(0.05)  # ctime ticks at the kernel's clock granularity
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the pickled bytes object: same size, still unpickles
    with open(path, "r+b") as fh:  # same inode
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert Freshness(filer.local_dir).lookup(path) is None
    with pytest.raises(IntegrityError, match="changed after dump"):
        filer.load("m")


def test_readme_says_a_local_remote_folder_must_exist() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "must already exist" in readme


def test_case_twins_are_found_among_many_and_in_a_registry_that_already_has_them() -> None:
    from model_filer.registry import Entry, Registry

    def entry(name: str) -> Entry:
        return Entry(name, "local", "a" * 64, 1, "pickle-5", "2024-05-01T12:00:00+00:00", "3.11.7")

    reg = Registry("local", "/srv", {f"m{i}": entry(f"m{i}") for i in range(1000)})
    assert reg.case_twin("M500") == "m500"
    assert reg.case_twin("m500") is None
    reg.entries["Zed"] = entry("Zed")  # the index follows changes
    assert reg.case_twin("zed") == "Zed"
    legacy = Registry("local", "/srv", {"A": entry("A"), "a": entry("a")})
    assert legacy.case_twin("a") == "A" and legacy.case_twin("A") == "a"
