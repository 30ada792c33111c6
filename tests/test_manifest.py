"""The pre-commit manifest, the console scripts and the README agree with each other."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
HOOKS = {hook["id"]: hook for hook in MANIFEST}


def _console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)  # type: ignore[misc]


def test_the_manifest_declares_the_three_hooks() -> None:
    assert set(HOOKS) == {"no-local-models", "prefetch-models", "check-remote-models"}


def test_each_hook_id_is_its_entry_and_a_console_script_of_one_hooks_module() -> None:
    scripts = _console_scripts()
    for hook_id, hook in HOOKS.items():
        assert hook["entry"] == hook_id
        assert hook["language"] == "python"
        assert hook["minimum_pre_commit_version"] == "3.2.0"
        module = scripts[hook_id].split(":")[0]
        assert module == f"model_filer_hooks.{hook_id.replace('-', '_')}"
        assert (ROOT / "hooks" / f"{hook_id.replace('-', '_')}.py").is_file()


def test_stages_use_current_names() -> None:
    assert HOOKS["no-local-models"]["stages"] == ["pre-commit", "pre-merge-commit"]  # issue 22
    assert HOOKS["prefetch-models"]["stages"] == ["post-checkout", "post-merge", "post-rewrite"]
    assert HOOKS["check-remote-models"]["stages"] == ["pre-push"]
    prefetch = HOOKS["prefetch-models"]
    assert prefetch["always_run"] is True
    assert prefetch["pass_filenames"] is False
    assert prefetch["verbose"] is True


def test_the_commit_hook_matches_registries_and_model_files_only() -> None:
    pattern = re.compile(HOOKS["no-local-models"]["files"])
    for path in (".s3_registry", "models/.s3_registry", "a/b/.local_registry", "m/x.pkl"):
        assert pattern.search(path), path
    for path in ("s3_registry", "models/.S3_registry", "registry.yaml", "x.pkl.txt", "a.py"):
        assert not pattern.search(path), path


def test_every_hook_id_appears_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for hook_id in HOOKS:
        assert f"id: {hook_id}" in readme, hook_id
        assert f"`{hook_id}`" in readme, hook_id


def test_the_readme_config_installs_every_stage_the_hooks_use() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(default_install_hook_types.*?)```", readme, re.S)
    assert block, "README must show a complete .pre-commit-config.yaml"
    config = yaml.safe_load(block.group(1))
    stages = {s for hook in MANIFEST for s in hook["stages"]}
    assert stages <= set(config["default_install_hook_types"])
    assert {h["id"] for h in config["repos"][0]["hooks"]} == set(HOOKS)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -q"
    assert command in readme
    assert command in ci
