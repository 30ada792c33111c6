"""Hostile registries, as they arrive in a pull request.

A registry is committed by whoever opens the pull request, and ``load()`` ends in
``pickle.load``: nothing a registry says is trusted. Each hostile registry below is handed to
the library (``Filer(...)``, ``load``), the CLI (``model_filer.cli.main``) and every hook (the
commit hook on the staged file, the checkout hook and the push hook on the committed file), in a
temporary git repository nested a few folders deep so that ``..`` has somewhere to go.

Each must be refused with a clear error (a ModelFilerError of one line for the library, exit 2
with one ``model-filer: error:`` line for the CLI, exit 1 with the file named for the commit and
push hooks; the checkout hook never fails a checkout, it warns), no code may run (the YAML tags
would create a marker file) and no file may appear outside the model folder.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from model_filer import Filer, ModelFilerError, RemoteMismatchError
from model_filer.cli import main as cli_main
from model_filer.registry.file import parse
from tests.support.gitrepo import NULL_SHA, commit, git, head, init_repo

SHA = "ab" * 32
MB = 1 << 20
REGISTRY = "models/.local_registry"
MAX_MESSAGE = 4000  # a clear error is a line a person reads, not a dump of the file
#: A message that says what to do names a command or an action (as in test_bad_inputs.py).
HINTS = (
    "Use", "Pass", "Run", "run", "Set", "Create", "Restore", "push", "Dump", "fix", "Check",
    "pip install", "git ", "model-filer", "Ask",
)  # fmt: skip


@dataclass
class Ctx:
    address: str  # the local remote's folder
    marker: Path  # created only if hostile code ran


def entry(name: str = "m", **fields: str) -> str:
    """One registry entry in YAML; ``fields`` replace values verbatim (raw YAML)."""
    values = {
        "state": "synced",
        "key": f"m/{SHA}.pkl",
        "sha256": SHA,
        "size": "10",
        "serializer": "pickle-5",
        "created": "'2024-01-01T00:00:00+00:00'",
        "python": "3.11.9",
    }
    values.update(fields)
    lines = [f"  {name}:"] + [f"    {k}: {v}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def registry(ctx: Ctx, models: str = "", remote: str | None = None, fmt: str = "1") -> bytes:
    remote = remote or f"\n  type: local\n  address: '{ctx.address}'"
    return f"format: {fmt}\nremote:{remote}\nmodels:\n{models}".encode()


def touch_tag(ctx: Ctx) -> str:
    path = f"!!python/object/apply:pathlib.Path ['{ctx.marker}']"
    return f"!!python/object/apply:pathlib.Path.touch [{path}]"


def alias_bomb(ctx: Ctx) -> bytes:
    """A few hundred bytes whose aliases stand for a million strings."""
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    bomb = "bomb:\n" + "\n".join(lines) + "\n"
    return bomb.encode() + registry(ctx, entry(state="*a5"))


def hundred_mb_of_comments(ctx: Ctx) -> bytes:
    """A valid registry followed by 100 MB of comment lines: only its size is wrong."""
    line = b"# " + b"padding " * 12 + b"\n"
    return registry(ctx, entry()) + line * (100 * MB // len(line))


#: id -> registry bytes; the hostile inputs of issue item 5.
CASES: dict[str, Callable[[Ctx], bytes]] = {
    "python-object-apply-tag": lambda c: registry(
        c, entry(), remote=f" !!python/object/apply:os.system ['touch {c.marker}']"
    ),
    "python-tag-in-a-field": lambda c: registry(c, entry(size=touch_tag(c))),
    "python-name-tag": lambda c: registry(c, entry(serializer="!!python/name:os.system")),
    "python-tag-as-entry": lambda c: registry(c, f"  m: {touch_tag(c)}\n"),
    "name-with-dotdot": lambda c: registry(c, entry("'../../escape'", key=f"escape/{SHA}.pkl")),
    "name-dotdot-inside": lambda c: registry(c, entry("'a..b'")),
    "key-with-dotdot": lambda c: registry(c, entry(key=f"m/../../../../../escape/{SHA}.pkl")),
    "absolute-key": lambda c: registry(c, entry(key=f"{c.marker.parent}/escape.pkl")),
    "absolute-name": lambda c: registry(c, entry(f"'{c.marker.parent}/escape'")),
    "nul-in-name": lambda c: registry(c, entry('"m\\0x"')),
    "nul-in-key": lambda c: registry(c, entry(key=f'"m/\\0{SHA}.pkl"')),
    "key-names-another-bucket": lambda c: registry(c, entry(key=f"s3://other-bucket/m/{SHA}.pkl")),
    "key-with-backslash": lambda c: registry(c, entry(key=f"'m\\..\\..\\{SHA}.pkl'")),
    "size-negative": lambda c: registry(c, entry(size="-1")),
    "size-absurd": lambda c: registry(c, entry(size=str(10**30))),
    "size-infinite": lambda c: registry(c, entry(size=".inf")),
    "size-a-string": lambda c: registry(c, entry(size="'10'")),
    "size-a-bool": lambda c: registry(c, entry(size="true")),
    "duplicate-entry": lambda c: registry(c, entry() + entry()),
    "duplicate-field": lambda c: registry(c, entry() + f"    sha256: {'cd' * 32}\n"),
    "duplicate-top-level-key": lambda c: registry(c, entry()) + b"models: {}\n",
    "conflict-markers": lambda c: registry(
        c, "<<<<<<< HEAD\n" + entry() + "=======\n" + entry(size="11") + ">>>>>>> feature\n"
    ),
    "state-not-a-string": lambda c: registry(c, entry(state="1")),
    "state-unknown": lambda c: registry(c, entry(state="trusted")),
    "sha256-not-hex": lambda c: registry(c, entry(sha256="'" + "zz" * 32 + "'")),
    "sha256-a-list": lambda c: registry(c, entry(sha256="[a, b]")),
    "created-a-timestamp": lambda c: registry(c, entry(created="2024-01-01 00:00:00")),
    "library-a-string": lambda c: registry(c, entry(library="sklearn")),
    "unknown-field": lambda c: registry(c, entry(command="'rm -rf /'")),
    "entry-a-list": lambda c: registry(c, "  m: [1, 2]\n"),
    "models-a-list": lambda c: registry(c, "  - m\n  - n\n"),
    "remote-a-string": lambda c: registry(c, entry(), remote=" somewhere"),
    "format-unknown": lambda c: registry(c, entry(), fmt="99"),
    "not-a-mapping": lambda c: b"- just\n- a list\n",
    "empty-file": lambda c: b"",
    "binary-junk": lambda c: bytes(range(256)) * 4,
    "windows-device-name": lambda c: registry(c, entry("con", key=f"con/{SHA}.pkl")),
    "hundred-mb-registry": hundred_mb_of_comments,
    "unhashable-key": lambda c: registry(c, "  ? [a, b]\n  : {}\n"),
    "alias-bomb": alias_bomb,
    "huge-value-in-a-field": lambda c: registry(c, entry(size="'" + "9" * (2 * MB) + "'")),
    "remote-type-contradicts-the-file-name": lambda c: registry(
        c, entry(), remote="\n  type: s3\n  address: s3://some-bucket/models"
    ),
}


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, int]:
    """Every file under ``root`` outside ``skip``: path -> size."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            path = here / name
            found[str(path.relative_to(root))] = path.lstat().st_size
    return found


def check_message(message: str, where: str) -> None:
    assert message.strip(), "an empty error message"
    assert "Traceback" not in message
    assert len(message) < MAX_MESSAGE, f"a {len(message)}-character error message"
    assert where in message, f"the message does not name {where}"
    assert any(h in message for h in HINTS), f"no hint of what to do: {message[:300]}"


@pytest.fixture
def ctx(tmp_path: Path) -> Ctx:
    remote = tmp_path / "remote"
    remote.mkdir()
    return Ctx(address=str(remote), marker=tmp_path / "PWNED")


# -- the library and the CLI ---------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_the_library_and_the_cli_refuse_it(case, ctx, tmp_path, capsys):
    folder = tmp_path / "deep" / "er" / "models"
    folder.mkdir(parents=True)
    (folder / ".local_registry").write_bytes(CASES[case](ctx))
    before = snapshot(tmp_path, (folder,))

    with pytest.raises(ModelFilerError) as info:
        Filer(folder, ctx.address, "local").load("m")
    message = str(info.value)
    check_message(message, ".local_registry")
    assert "\n" not in message

    for argv in (
        ["pull", "--dir", str(folder), "--all"],
        ["push", "--dir", str(folder), "--all"],
        ["verify", "--dir", str(folder)],
        ["status", str(folder / ".local_registry")],
    ):
        capsys.readouterr()
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("model-filer: error: ") and err.count("\n") == 1, err[:500]
        check_message(err, ".local_registry")

    assert not ctx.marker.exists(), "hostile code ran"
    assert snapshot(tmp_path, (folder,)) == before, "a file was written outside the model folder"


def test_a_sparse_100_mb_registry_is_refused_without_reading_it_all(ctx, tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    with open(folder / ".local_registry", "wb") as fh:
        fh.truncate(100 * MB)  # sparse: no disk used, 100 MB of NULs to read
    with pytest.raises(ModelFilerError) as info:
        Filer(folder, ctx.address, "local")
    check_message(str(info.value), ".local_registry")
    assert "too large" in str(info.value)
    assert cli_main(["pull", "--dir", str(folder), "--all"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_registry_of_another_bucket_is_refused_by_the_library(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    ctx = Ctx(address="s3://attacker-bucket/models", marker=tmp_path / "PWNED")
    text = registry(ctx, entry(), remote="\n  type: s3\n  address: s3://attacker-bucket/models")
    (folder / ".s3_registry").write_bytes(text)
    with pytest.raises(RemoteMismatchError) as info:
        Filer(folder, "s3://our-bucket/models")
    assert "attacker-bucket" in str(info.value) and "our-bucket" in str(info.value)
    argv = ["pull", "--dir", str(folder), "--all", "--remote-address", "s3://our-bucket/models"]
    assert cli_main(argv) == 2
    assert "attacker-bucket" in capsys.readouterr().err


# -- the hooks -------------------------------------------------------------------------------------
@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    path = init_repo(tmp_path / "a" / "b" / "c" / "repo")
    monkeypatch.chdir(path)
    return path


def run_hooks(repo: Path, monkeypatch, capsys) -> dict[str, tuple[int, str]]:
    """Run each hook the way git would, on the staged or committed registry."""
    from model_filer_hooks.check_remote_models import main as check_remote
    from model_filer_hooks.no_local_models import main as no_local
    from model_filer_hooks.prefetch_models import main as prefetch

    results = {}
    git(repo, "add", "-f", REGISTRY)
    capsys.readouterr()
    results["no-local-models"] = (no_local([REGISTRY]), "".join(capsys.readouterr()))
    sha = commit(repo, "a hostile registry")
    argv = ["--hook-stage", "post-checkout", NULL_SHA, sha, "1"]
    results["prefetch-models"] = (prefetch(argv), "".join(capsys.readouterr()))
    results["prefetch-models --strict"] = (
        prefetch(["--strict", *argv]),
        "".join(capsys.readouterr()),
    )
    monkeypatch.setenv("PRE_COMMIT_TO_REF", sha)
    results["check-remote-models"] = (check_remote([]), "".join(capsys.readouterr()))
    monkeypatch.delenv("PRE_COMMIT_TO_REF")
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_every_hook_refuses_it(case, ctx, repo, tmp_path, monkeypatch, capsys):
    folder = repo / "models"
    folder.mkdir()
    (repo / REGISTRY).write_bytes(CASES[case](ctx))
    before = snapshot(tmp_path, (folder, repo / ".git"))

    results = run_hooks(repo, monkeypatch, capsys)

    assert not ctx.marker.exists(), "hostile code ran"
    assert snapshot(tmp_path, (folder, repo / ".git")) == before, "a file written outside"
    assert [p.name for p in folder.glob("*.pkl")] == []
    assert results["no-local-models"][0] == 1, results["no-local-models"][1][:500]
    assert results["check-remote-models"][0] == 1, results["check-remote-models"][1][:500]
    assert results["prefetch-models"][0] == 0  # never fails a checkout
    assert results["prefetch-models --strict"][0] == 1
    for _, output in results.values():
        check_message(output, REGISTRY)


def test_an_alias_bomb_as_a_mapping_key_costs_neither_time_nor_memory(tmp_path):
    # 381 bytes; depth 5 stands for 100,000 strings (depth 9, 10**9 of them, would take hours
    # and all the memory there is). Allocations are measured with tracemalloc.
    parts = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    head = "format: 1\nremote: {type: local, address: /r}\nmodels:\n"
    text = f"{head}  ? [{', '.join(parts)}]\n  : {{}}\n".encode()
    parse(registry(Ctx(str(tmp_path), tmp_path / "PWNED"), entry()), "warm-up")
    tracemalloc.start()
    try:
        with pytest.raises(ModelFilerError):
            parse(text, "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * MB, f"parsing {len(text)} bytes allocated {peak // MB} MB"


# -- files a pull request can commit beside the registry -------------------------------------------
def _synced_repo(repo: Path, remote: Path) -> Filer:
    source = Filer(repo.parent / "source", str(remote), "local")
    source.dump({"w": 1}, "m", push=True)
    (repo / "models").mkdir()
    (repo / REGISTRY).write_bytes(source.registry_path.read_bytes())
    return source


def test_a_committed_model_file_symlink_is_replaced_not_followed(repo, ctx, tmp_path, capsys):
    from model_filer_hooks.prefetch_models import main as prefetch

    _synced_repo(repo, Path(ctx.address))
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    os.symlink(os.path.relpath(outside, repo / "models"), repo / "models" / "m.pkl")
    sha = commit(repo, "registry and a symlink where the model goes")

    assert prefetch(["--hook-stage", "post-checkout", NULL_SHA, sha, "1"]) == 0
    assert outside.read_text() == "precious"
    assert not (repo / "models" / "m.pkl").is_symlink()
    assert Filer(repo / "models", ctx.address, "local").load("m") == {"w": 1}


def test_a_committed_internal_folder_symlink_is_not_followed(repo, ctx, tmp_path):
    from model_filer_hooks.prefetch_models import main as prefetch

    _synced_repo(repo, Path(ctx.address))
    outside = tmp_path / "outside"
    (outside / "staged").mkdir(parents=True)
    (outside / "staged" / "precious.txt").write_text("keep me")
    os.symlink(os.path.relpath(outside, repo / "models"), repo / "models" / ".model_filer")
    git(repo, "add", "models")
    sha = commit(repo, "registry and a symlinked internal folder")
    assert "models/.model_filer" in git(repo, "ls-files").stdout  # not ignored: committed

    prefetch(["--hook-stage", "post-checkout", NULL_SHA, sha, "1"])
    try:
        Filer(repo / "models", ctx.address, "local").load("m")
    except ModelFilerError as exc:
        print("REFUSED", exc)  # refusing the symlinked folder is a fine answer
    assert (outside / "staged" / "precious.txt").exists(), "recovery deleted a file outside"
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == [
        "staged",
        "staged/precious.txt",
    ], "files were written outside the model folder"


def test_hooks_do_not_import_boto3_for_a_hostile_registry(ctx, tmp_path):
    folder = tmp_path / "repo"
    init_repo(folder)
    (folder / "models").mkdir()
    (folder / REGISTRY).write_bytes(CASES["python-object-apply-tag"](ctx))
    git(folder, "add", REGISTRY)
    code = (
        "import sys\n"
        "from model_filer_hooks.no_local_models import main\n"
        f"rc = main([{REGISTRY!r}])\n"
        "assert 'boto3' not in sys.modules and 'yaml.constructor' in sys.modules\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    assert REGISTRY in done.stdout + done.stderr
    assert not ctx.marker.exists()
    assert head(folder)
