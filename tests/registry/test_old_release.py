"""Registries written by this code, read by earlier releases run from git.

The release before metadata and aliases (6fc7490) drops an unknown top-level key on its next
write and refuses an unknown entry field: a registry with metadata or aliases must be one it
refuses whole (format 2), and one without them must stay one it reads (format 1). The release
before packs (b1f147b) would take a map for a manifest it cannot parse: a registry that names
one must be one it refuses whole (format 4), saying to upgrade.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from model_filer import Filer

OLD_RELEASE = "6fc7490"
BEFORE_PACKS = "b1f147b"
ROOT = Path(__file__).resolve().parents[2]
# Run by the old release: read the folder's registry, then dump into it.
OLD_SCRIPT = """
import sys
import model_filer
assert model_filer.__file__.startswith(sys.argv[1]), model_filer.__file__
from model_filer import Filer
try:
    filer = Filer(sys.argv[2], sys.argv[3], "local")
    names = [e.name for e in filer.list_files()]
    filer.dump({"from": "old"}, "from_old")
    print("READ", names)
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
"""


def _release(commit: str, folder: Path) -> Path:
    """``model_filer`` of the release ``commit``, extracted from git into ``folder``."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    )
    if found.returncode != 0:
        pytest.skip(f"commit {commit} (an earlier release) is not in this clone")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "model_filer"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model_filer`` of the release before format 2."""
    return _release(OLD_RELEASE, tmp_path_factory.mktemp("old_release"))


@pytest.fixture(scope="module")
def before_packs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model_filer`` of the release before format 4 (packs)."""
    return _release(BEFORE_PACKS, tmp_path_factory.mktemp("before_packs"))


def run_old(old_release: Path, models: Path, remote: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(old_release)}
    done = subprocess.run(  # (not run from this checkout, whose model_filer -c would import)
        [sys.executable, "-c", OLD_SCRIPT, str(old_release), str(models), str(remote)],
        capture_output=True,
        text=True,
        env=env,
        cwd=old_release,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_registry_without_metadata_stays_readable_by_the_old_release(
    old_release: Path, tmp_path: Path, remote: Path
) -> None:
    models = tmp_path / "models"
    Filer(models, str(remote), "local").dump({"a": 1}, "plain")
    assert run_old(old_release, models, remote) == "READ ['plain']"
    assert [e.name for e in Filer(models, str(remote), "local").list_files()] == [
        "from_old",
        "plain",
    ]


@pytest.mark.parametrize("feature", ["metadata", "alias"])
def test_a_registry_with_metadata_or_aliases_is_refused_by_the_old_release_never_rewritten(
    old_release: Path, tmp_path: Path, remote: Path, feature: str
) -> None:
    models = tmp_path / "models"
    filer = Filer(models, str(remote), "local")
    filer.dump({"a": 1}, "churn")
    if feature == "metadata":
        filer.annotate("churn", metrics={"auc": 0.9})
    else:
        filer.set_alias("production", "churn")
    registry = filer.registry_path
    before = registry.read_bytes()
    assert b"\nformat: 2\n" in before
    said = run_old(old_release, models, remote)
    assert said.startswith("REFUSED RegistryError"), said
    assert "unsupported registry format 2" in said and "pip install -U ds-model-filer" in said
    assert registry.read_bytes() == before  # not rewritten without the metadata
    assert not (models / "from_old.pkl").exists()


def test_a_registry_naming_a_map_is_refused_by_the_release_before_packs_never_rewritten(
    before_packs: Path, tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.chunking import small_chunks

    small_chunks(monkeypatch)
    models = tmp_path / "models"
    filer = Filer(models, str(remote), "local")
    filer.dump(os.urandom(300_000), "big")  # cut into chunks, packed
    filer.dump({"a": 1}, "small")  # one stored object: format 3 alone
    filer.push("small")
    registry = filer.registry_path
    assert b"\nformat: 3\n" in registry.read_bytes()
    assert run_old(before_packs, models, remote) == "READ ['big', 'small']"
    filer = Filer(models, str(remote), "local")
    filer.push("big")
    before = registry.read_bytes()
    assert b"\nformat: 4\n" in before and b".model_filer/maps/" in before
    said = run_old(before_packs, models, remote)
    assert said.startswith("REFUSED RegistryError"), said
    assert "written by a newer model_filer" in said and "pip install -U ds-model-filer" in said
    assert registry.read_bytes() == before
