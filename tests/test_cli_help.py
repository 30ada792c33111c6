"""``model-filer --version``, and every command's ``--help``: one line saying what it does, an
example that parses, no raw reST or Markdown backticks."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import model_filer
from model_filer.cli import main, parser


def _commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The words of ``p``'s command and of every subcommand under it."""
    yield " ".join(path)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(parser()))
MODEL_FILER = str(Path(sys.executable).parent / "model-filer")


def test_version_prints_the_package_version() -> None:
    done = subprocess.run([MODEL_FILER, "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"model-filer {model_filer.__version__}\n",
        "",
    )


def test_the_walk_finds_every_command_and_subcommand() -> None:
    assert len(COMMANDS) >= 19  # the top, 13 commands, cache's 3 actions, remote's 2
    assert {"", "push", "cache prune", "remote trust", "remote set", "merge-registry"} <= set(
        COMMANDS
    )


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert not err
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c or "model-filer")
def test_each_command_help_has_a_one_line_description_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(command, capsys)
    assert "`" not in text  # neither reST ``literals`` nor Markdown `code`
    blocks = text.split("\n\n")
    assert blocks[0].startswith(f"usage: model-filer {command}".rstrip())
    description = blocks[1]
    assert "\n" not in description and description.endswith("."), description
    assert description[0].isupper() and len(description) <= 100, description
    assert blocks[-1].startswith("example:\n  model-filer ")
    example = blocks[-1].removeprefix("example:\n  model-filer ").strip()
    assert "\n" not in example
    words = example.split()
    assert words[: len(command.split())] == command.split()
    if command:
        parser().parse_args(words)  # the example is a command that parses, as typed
