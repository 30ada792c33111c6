"""An entry's key names the hash of its bytes: a hand-edited sha256 (or key) is refused.

The remote layout (model_filer.registry.names) says which hash each key form names; the commit
hook and ``load`` refuse an entry whose key and sha256 disagree, naming both values.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from model_filer_hooks.no_local_models import main as commit_hook

from model_filer.errors import RegistryError
from model_filer.registry.file import parse
from model_filer.registry.names import KEY_SUFFIXES, key_sha256, object_key
from tests.support.gitrepo import commit, model_filer, staged

REGISTRY = "models/.local_registry"
BIN = Path(sys.executable).parent
OTHER = "0123456789abcdef" * 4


def hand_edited(repo: Path, remote: Path, field: str = "sha256") -> tuple[str, str]:
    """A pushed, committed model whose ``field`` is then edited by hand: (key's sha, new)."""
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    commit(repo, "churn")
    entry = filer.list_files()[0]
    path = repo / REGISTRY
    text = path.read_text()
    if field == "sha256":
        text = text.replace(f"sha256: {entry.sha256}", f"sha256: {OTHER}")
    else:
        text = text.replace(f"key: {entry.key}", f"key: {object_key('churn', OTHER)}")
    path.write_text(text)
    (repo / "models" / "churn.pkl").unlink()  # another clone: load must fetch it
    return entry.sha256, OTHER


def says_both(message: str, sha: str, other: str) -> None:
    assert sha in message and other in message, message
    assert "edited by hand" in message, message
    assert f"git checkout HEAD -- {REGISTRY}" in message or "git checkout HEAD --" in message


@pytest.mark.parametrize("field", ["sha256", "key"])
def test_the_commit_hook_refuses_a_key_and_sha256_that_disagree(repo, remote, capsys, field):
    sha, other = hand_edited(repo, remote, field)
    staged(repo, REGISTRY)

    assert commit_hook([REGISTRY]) == 1

    out = capsys.readouterr().out
    says_both(out, sha, other)
    assert f"git checkout HEAD -- {REGISTRY}" in out  # the real path, not a placeholder


def test_the_commit_hook_command_refuses_it_without_a_traceback(repo, remote):
    sha, other = hand_edited(repo, remote)
    staged(repo, REGISTRY)

    done = subprocess.run(
        [str(BIN / "no-local-models"), REGISTRY], capture_output=True, text=True, check=False
    )

    assert done.returncode == 1
    says_both(done.stdout, sha, other)
    assert "Traceback" not in done.stdout + done.stderr


def test_load_refuses_it_instead_of_blaming_the_remote(repo, remote):
    sha, other = hand_edited(repo, remote)

    with pytest.raises(RegistryError) as info:
        model_filer(repo / "models", remote).load("churn")

    says_both(str(info.value), sha, other)
    assert "ask" not in str(info.value)  # not "ask the model's author to push it again"


def test_the_cli_refuses_it_without_a_traceback(repo, remote):
    sha, other = hand_edited(repo, remote)

    done = subprocess.run(
        [str(BIN / "model-filer"), "pull", "--dir", "models", "churn"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode != 0
    says_both(done.stderr, sha, other)
    assert "Traceback" not in done.stdout + done.stderr


def test_a_key_of_no_form_the_layout_writes_is_refused(repo, remote):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    entry = filer.list_files()[0]
    text = (repo / REGISTRY).read_bytes()
    odd = text.replace(entry.key.encode(), b"churn/latest.pkl")  # type: ignore[union-attr]

    with pytest.raises(RegistryError) as info:
        parse(odd, REGISTRY, filename=REGISTRY)

    assert "churn/latest.pkl is not a key model_filer writes" in str(info.value)
    assert object_key("churn", entry.sha256) in str(info.value)  # the key these bytes have


def test_every_key_form_of_the_layout_names_its_hash():
    """The one place that knows the key forms answers for each of them."""
    for suffix in KEY_SUFFIXES:
        assert key_sha256(object_key("m", OTHER, suffix)) == OTHER
    assert key_sha256("m/latest.pkl") is None
    with pytest.raises(ValueError, match="not a key form"):
        object_key("m", OTHER, ".tar")
