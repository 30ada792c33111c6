"""The commit-time hook ``no-local-models``: ``main([...])`` on temporary git repositories."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from model_filer_hooks.no_local_models import main

from tests.support.gitrepo import commit, git, model_filer, registry_bytes, sample_entry, staged

REGISTRY = "models/.local_registry"


def write_registry(repo: Path, data: bytes | str, path: str = REGISTRY) -> None:
    file = repo / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data.encode() if isinstance(data, str) else data)


def test_a_staged_local_entry_is_refused_with_the_fix(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    filer.dump({"w": 2}, "prices", push=True)
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1

    out = capsys.readouterr().out
    assert f"{REGISTRY}: churn is local" in out
    assert "prices" not in out  # synced entries are fine
    assert "model-filer push --dir models --all" in out
    assert "model-filer rm --dir models --locals" in out
    assert f"git add {REGISTRY}" in out


def test_every_local_entry_of_every_registry_is_listed(repo, remote, capsys):
    model_filer(repo / "a", remote).dump(1, "one")
    model_filer(repo / "a", remote).dump(2, "two")
    model_filer(repo / "b" / "deep", remote).dump(3, "three")
    staged(repo, ".")

    assert main(["a/.local_registry", "b/deep/.local_registry"]) == 1

    out = capsys.readouterr().out
    assert "a/.local_registry: one is local" in out
    assert "a/.local_registry: two is local" in out
    assert "b/deep/.local_registry: three is local" in out
    assert "model-filer push --dir b/deep --all" in out


def test_an_all_synced_registry_is_accepted(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices")
    filer.push("prices")
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 0
    assert capsys.readouterr().out == ""


def test_an_empty_registry_is_accepted(repo, remote):
    write_registry(repo, registry_bytes("local", str(remote)))
    staged(repo, REGISTRY)
    assert main([REGISTRY]) == 0


def test_an_s3_registry_is_checked_too(repo):
    registry = "models/.s3_registry"
    write_registry(
        repo,
        registry_bytes("s3", "s3://bucket/models", sample_entry("a"), sample_entry("b", "local")),
        registry,
    )
    staged(repo, registry)
    assert main([registry]) == 1


CONFLICTED = """\
format: 1
remote:
  type: local
  address: /srv/models
models:
<<<<<<< HEAD
  a:
    state: synced
=======
  b:
    state: synced
>>>>>>> feature
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(CONFLICTED, "merge conflict markers", id="conflict-markers"),
        pytest.param("format: 1\nremote: [unclosed\n", "not valid registry YAML", id="bad-yaml"),
        pytest.param("- just\n- a list\n", "must be a YAML mapping", id="not-a-mapping"),
        pytest.param("format: 7\nremote: {}\n", "written by a newer model_filer", id="format"),
    ],
)
def test_an_unparsable_registry_is_refused(repo, capsys, text, message):
    write_registry(repo, text)
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1

    out = capsys.readouterr().out
    assert REGISTRY in out
    assert message in out


def test_a_python_tag_is_refused_and_never_runs(repo, tmp_path, capsys):
    marker = tmp_path / "pwned"
    write_registry(
        repo,
        "format: 1\n"
        "remote: {type: local, address: /srv/models}\n"
        f"models: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1

    assert not marker.exists()
    out = capsys.readouterr().out
    assert REGISTRY in out
    assert "not valid registry YAML" in out


def test_an_invalid_model_name_is_refused(repo, remote, capsys):
    good = registry_bytes("local", str(remote), sample_entry("x")).decode()
    assert "\n  x:\n" in good
    write_registry(repo, good.replace("\n  x:\n", "\n  ../x:\n"))
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1

    out = capsys.readouterr().out
    assert REGISTRY in out
    assert "Invalid model name '../x'" in out


def test_an_invalid_field_is_refused(repo, remote, capsys):
    text = registry_bytes("local", str(remote), sample_entry("x")).decode()
    write_registry(repo, text.replace("state: synced", "state: pushed"))
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1
    assert "state must be 'local' or 'synced'" in capsys.readouterr().out


def test_a_staged_model_file_named_by_the_registry_is_refused(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    commit(repo, "registry")
    staged(repo, "models/churn.pkl", force=True)  # .gitignore keeps it out unless forced

    assert main(["models/churn.pkl"]) == 1

    out = capsys.readouterr().out
    assert "models/churn.pkl: a model file is staged" in out
    assert "git rm --cached models/churn.pkl" in out


def test_a_staged_model_file_beside_a_staged_registry_is_refused(repo, remote, capsys):
    model_filer(repo / "models", remote).dump({"w": 1}, "churn", push=True)
    staged(repo, "models")
    staged(repo, "models/churn.pkl", force=True)

    assert main([REGISTRY, "models/churn.pkl"]) == 1
    assert "models/churn.pkl: a model file is staged" in capsys.readouterr().out


def test_a_pkl_that_no_registry_names_is_not_ours(repo, remote):
    model_filer(repo / "models", remote).dump({"w": 1}, "churn", push=True)
    (repo / "models" / "fixture.pkl").write_bytes(b"test data")
    (repo / "data").mkdir()
    (repo / "data" / "churn.pkl").write_bytes(b"another folder")
    staged(repo, "models")
    staged(repo, "models/fixture.pkl", "data/churn.pkl", force=True)

    assert main([REGISTRY, "models/fixture.pkl", "data/churn.pkl"]) == 0


def test_the_index_counts_not_the_working_tree(repo, remote, capsys):
    """A local entry is staged, then the working tree is fixed but not re-staged: refused."""
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    staged(repo, REGISTRY)
    filer.push("churn")  # the working tree's registry is now all synced

    assert main([REGISTRY]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out

    staged(repo, REGISTRY)
    assert main([REGISTRY]) == 0


def test_a_synced_index_wins_over_a_local_working_tree(repo, remote):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    staged(repo, REGISTRY)
    filer.dump({"w": 2}, "draft")  # not staged: not part of this commit

    assert main([REGISTRY]) == 0


def test_an_unparsable_working_tree_does_not_matter_when_the_index_is_good(repo, remote):
    model_filer(repo / "models", remote).dump({"w": 1}, "churn", push=True)
    staged(repo, REGISTRY)
    write_registry(repo, CONFLICTED)

    assert main([REGISTRY]) == 0


def test_without_filenames_it_asks_git_for_the_staged_files(repo, remote, capsys):
    assert main([]) == 0  # nothing staged

    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn")
    assert main([]) == 0  # dumped, not staged

    staged(repo, "models")
    assert main([]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out

    filer.push("churn")
    staged(repo, "models")
    assert main([]) == 0

    commit(repo, "synced model")
    staged(repo, "models/churn.pkl", force=True)
    assert main([]) == 1
    assert "models/churn.pkl: a model file is staged" in capsys.readouterr().out


def test_without_filenames_a_registry_deletion_is_fine(repo, remote):
    model_filer(repo / "models", remote).dump({"w": 1}, "churn", push=True)
    commit(repo, "registry")
    git(repo, "rm", "-q", REGISTRY)
    assert main([]) == 0


def test_from_a_subdirectory_paths_are_relative_to_the_top(repo, remote, monkeypatch, capsys):
    """pre-commit runs hooks at the top of the repository; git may run them anywhere."""
    model_filer(repo / "models", remote).dump({"w": 1}, "churn")
    staged(repo, "models")
    monkeypatch.chdir(repo / "models")
    assert main([]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out


def test_outside_a_git_repository_it_reads_the_files(tmp_path, remote, monkeypatch, capsys):
    model_filer(tmp_path / "plain" / "models", remote).dump({"w": 1}, "churn")
    monkeypatch.chdir(tmp_path / "plain")
    assert main([REGISTRY]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out


def test_it_imports_neither_boto3_nor_gitpython():
    code = (
        "import model_filer_hooks.no_local_models, sys; "
        "assert 'boto3' not in sys.modules and 'git' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_whole_run_imports_neither_boto3_nor_gitpython(repo, remote):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "draft")
    staged(repo, "models")
    staged(repo, "models/churn.pkl", force=True)
    code = (
        "import sys\n"
        "from model_filer_hooks.no_local_models import main\n"
        "status = main([])\n"
        "assert status == 1, status\n"
        "heavy = {'boto3', 'botocore', 'git', 'model_filer.filer', 'model_filer.local.store',\n"
        "         'model_filer.transfer.transfers', 'pickle'}\n"
        "loaded = sorted(heavy & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "models/.local_registry: draft is local" in done.stdout
    assert "models/churn.pkl: a model file is staged" in done.stdout


def test_the_fix_command_quotes_odd_folders(repo, remote, capsys):
    model_filer(repo / "my models", remote).dump({"w": 1}, "churn")
    model_filer(repo, remote).dump({"w": 1}, "top")
    staged(repo, ".")

    assert main([]) == 1

    out = capsys.readouterr().out
    assert "my models/.local_registry: churn is local" in out
    assert "model-filer push --dir 'my models' --all" in out
    assert "git add 'my models/.local_registry'" in out
    assert ".local_registry: top is local" in out
    assert "model-filer push --dir . --all" in out


def test_a_staged_model_file_is_refused_when_its_registry_is_not_staged(repo, remote, capsys):
    """The registry beside it names it in the working tree only: still a model file."""
    model_filer(repo / "models", remote).dump({"w": 1}, "churn")
    staged(repo, "models/churn.pkl", force=True)

    assert main([]) == 1
    assert "models/churn.pkl: a model file is staged" in capsys.readouterr().out


def test_a_staged_model_file_named_only_by_the_working_trees_registry(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    staged(repo, "models")
    filer.dump({"w": 2}, "later", push=True)  # the staged registry does not name it
    staged(repo, "models/later.pkl", force=True)

    assert main([]) == 1
    assert "models/later.pkl: a model file is staged" in capsys.readouterr().out


class Custom:
    """A class of a test module: outside the trusted set."""


def test_an_untrusted_import_is_judged_entry_by_entry(repo, remote, capsys):
    from model_filer import UntrustedModelWarning

    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "plain", push=True)
    with pytest.warns(UntrustedModelWarning):
        filer.dump(Custom(), "custom", push=True)
    staged(repo, REGISTRY)
    assert main([REGISTRY]) == 1
    out = capsys.readouterr().out
    assert f"{REGISTRY}: custom imports tests.hooks.test_no_local_models." in out
    assert "plain" not in out


def test_a_hand_edited_registry_the_library_did_not_write_is_judged_the_same(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    text = (repo / REGISTRY).read_text()
    # Quoting that PyYAML would not write: same data, but not bytes the library wrote.
    (repo / REGISTRY).write_text(text.replace("state: synced", "state: 'local'"))
    staged(repo, REGISTRY)
    assert main([REGISTRY]) == 1
    assert f"{REGISTRY}: churn is local" in capsys.readouterr().out


# -- aliases (issue 22) ------------------------------------------------------------------------
def test_an_alias_that_does_not_hold_is_refused_naming_it_and_the_fix(repo, remote, capsys):
    filer = model_filer(repo / "models", remote)
    for name in ("churn", "prices", "gone"):
        filer.dump({"w": name}, name, push=True)
        filer.set_alias(f"{name}_live", name)
    filer.dump({"w": 0}, "draft")
    filer.set_alias("draft_live", "draft")
    filer.set_alias("fine", "churn")
    filer.remove("prices")
    filer.dump({"w": "other"}, "prices", push=True)  # other bytes under the name
    filer.remove("gone")
    staged(repo, REGISTRY)

    assert main([REGISTRY]) == 1

    out = capsys.readouterr().out
    assert f"{REGISTRY}: @prices_live names 'prices' as it was (sha256 " in out
    assert "now holds other bytes" in out
    assert "`model-filer alias --dir models prices_live prices`" in out  # (run from the top)
    assert "`model-filer alias --dir models gone_live MODEL`" in out
    assert f"{REGISTRY}: @gone_live names 'gone', which the registry no longer has." in out
    assert f"{REGISTRY}: @draft_live names 'draft', which is local" in out
    assert "churn_live" not in out and "@fine" not in out
    assert f"then: git add {REGISTRY}" in out

    filer.set_alias("prices_live", "prices")
    filer.set_alias("gone_live", None)
    filer.push("draft")
    staged(repo, REGISTRY)
    assert main([REGISTRY]) == 0


def test_an_alias_fix_names_the_folder_shell_quoted_so_it_works_pasted_at_the_top(
    repo, remote, capsys
):
    filer = model_filer(repo / "team models", remote)
    filer.dump({"w": 1}, "churn", push=True)
    filer.set_alias("production", "churn")
    filer.remove("churn")
    filer.dump({"w": 2}, "churn", push=True)
    registry = "team models/.local_registry"
    staged(repo, registry)

    assert main([registry]) == 1

    fix = "model-filer alias --dir 'team models' production churn"
    assert f"`{fix}`" in capsys.readouterr().out
    argv = [sys.executable, "-m", "model_filer.cli", *shlex.split(fix)[1:]]
    pasted = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
    assert pasted.returncode == 0, pasted.stderr
    staged(repo, registry)
    assert main([registry]) == 0


def test_the_hook_reads_a_registry_with_metadata_and_aliases_without_pyyaml(repo, remote):
    filer = model_filer(repo / "models", remote)
    filer.dump({"w": 1}, "churn", push=True, metrics={"auc": 0.9}, tags={"team": "growth"})
    filer.set_alias("production", "churn")
    staged(repo, REGISTRY)
    code = (
        "import sys\n"
        "from model_filer_hooks.no_local_models import main\n"
        f"assert main([{REGISTRY!r}]) == 0\n"
        "assert 'yaml' not in sys.modules, 'PyYAML imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
