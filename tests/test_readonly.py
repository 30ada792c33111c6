"""A deployed model folder may be read-only: load must still work without writing anything."""

from __future__ import annotations

import shutil
from pathlib import Path

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
