"""A catalogue of bad inputs, each refused with the right error and a message that says what to do.

Three families, each parametrized: the library (the error is a subclass of
:class:`model_filer.ModelFilerError`, of the expected class), the CLI (exit 2 and a single
``model-filer: error:`` line on stderr) and the hooks (exit 1 with a message). Every message must
name an action: :func:`says_what_to_do` looks for a command or a verb of the kind a person can act
on.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import model_filer as mf
from model_filer import Filer
from model_filer.cli import main as cli_main
from model_filer.local.store import ObjectStore
from tests.support.gitrepo import NULL_SHA, commit, git, init_repo
from tests.support.machines import another_machine

#: Words and commands of a message that says what to do.
HINTS = (
    "Use", "Pass", "Run", "run", "Set", "Create", "Restore", "push", "Dump", "fix", "Check",
    "pip install", "git ", "model-filer", "Ask", "Mount",
)  # fmt: skip
SHA = "ab" * 32


def says_what_to_do(message: str, *noise: str) -> None:
    """The message names a command or an action, not only what went wrong.

    ``noise`` (the test's temp path, a fixed prefix) is removed first: a path like
    ``.../test_push_0/...`` must not pass for advice.
    """
    for text in noise:
        message = message.replace(text, "<...>")
    assert any(hint in message for hint in HINTS), f"no hint of what to do in: {message!r}"


@dataclass
class Ctx:
    """What a case needs: a temp folder, a local remote, and S3 on demand."""

    tmp: Path
    request: pytest.FixtureRequest
    made: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> str:
        path = self.tmp / "remote"
        path.mkdir(exist_ok=True)
        return str(path)

    @property
    def models(self) -> Path:
        return self.tmp / "models"

    def filer(self) -> Filer:
        return Filer(self.models, self.remote, "local")

    def s3(self) -> str:
        return str(self.request.getfixturevalue("s3_address"))

    def clone(self, source: Filer, rtype: str = "local") -> Filer:
        folder = self.tmp / "clone"
        folder.mkdir()
        (folder / source.registry_path.name).write_bytes(source.registry_path.read_bytes())
        # Another machine: its own object store.
        return Filer(folder, source.remote.address, rtype, store=ObjectStore(self.tmp / "store2"))

    def registry(self, text: str, name: str = ".local_registry") -> Path:
        self.models.mkdir(parents=True, exist_ok=True)
        path = self.models / name
        path.write_text(text)
        return path


def registry_text(remote: str, entry: str = "", rtype: str = "local", fmt: int = 1) -> str:
    return f"format: {fmt}\nremote:\n  type: {rtype}\n  address: '{remote}'\nmodels:\n{entry}"


def entry_text(name: str = "m", serializer: str = "pickle-5", state: str = "synced") -> str:
    return (
        f"  {name}:\n    state: {state}\n    key: {name}/{SHA}.pkl\n    sha256: {SHA}\n"
        f"    size: 10\n    serializer: {serializer}\n    created: '2024-01-01T00:00:00+00:00'\n"
        "    python: 3.11.9\n"
    )


# -- the library --------------------------------------------------------------------------------
def _dump_then(ctx: Ctx, then: Callable[[Filer], object], push: bool = False) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m", push=push)
    then(filer)


def _local_only_in_a_clone(ctx: Ctx) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m")
    ctx.clone(filer).load("m")


def _changed_after_dump(ctx: Ctx) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m")
    filer.model_path("m").write_bytes(pickle.dumps({"w": 2}))
    filer.load("m")


def _file_deleted_then_push(ctx: Ctx) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m")
    filer.model_path("m").unlink()
    filer.push("m")


def _unregistered_file(ctx: Ctx) -> None:
    ctx.models.mkdir()
    (ctx.models / "m.pkl").write_bytes(b"left over from another branch")
    ctx.filer().dump({"w": 1}, "m")


def _remote_folder_missing(ctx: Ctx) -> None:
    filer = Filer(ctx.models, str(ctx.tmp / "not-mounted"), "local")
    filer.dump({"w": 1}, "m")
    filer.push("m")


def _tampered_remote_object(ctx: Ctx) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m", push=True)
    obj = Path(ctx.remote) / (filer.list_files()[0].key or "")
    obj.write_bytes(obj.read_bytes()[:-3])
    ctx.clone(filer).load("m")


def _deleted_remote_object(ctx: Ctx) -> None:
    filer = Filer(ctx.models, ctx.s3())
    filer.dump({"w": 1}, "m", push=True)
    clone = ctx.clone(filer, "s3")
    filer.remove("m", remove_remote=True)
    clone.load("m")


def _s3_other_bucket(ctx: Ctx) -> None:
    Filer(ctx.models, ctx.s3()).dump({"w": 1}, "m")
    Filer(ctx.models, "s3://another-bucket/models")


def _s3_missing_bucket(ctx: Ctx) -> None:
    ctx.request.getfixturevalue("s3_env")
    filer = Filer(ctx.models, "s3://model-filer-no-such-bucket-9z/models")
    ctx.registry(
        registry_text("s3://model-filer-no-such-bucket-9z/models", entry_text(), "s3"),
        ".s3_registry",
    )
    filer.load("m")


def _s3_credentials(ctx: Ctx, secret: str | None) -> None:
    filer = Filer(ctx.models, ctx.s3())
    filer.dump({"w": 1}, "m")
    mp = ctx.request.getfixturevalue("monkeypatch")
    if secret is None:
        mp.delenv("AWS_ACCESS_KEY_ID")
        mp.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    filer.push("m")


def _registry_then_load(text: str, name: str = ".local_registry") -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        ctx.registry(text.replace("REMOTE", ctx.remote), name)
        Filer(ctx.models, ctx.remote, "local").load("m")

    return case


def _unknown_serializer(ctx: Ctx) -> None:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m")
    text = filer.registry_path.read_text()
    filer.registry_path.write_text(text.replace("pickle-5", "joblib-1"))
    filer.load("m")


API_CASES = [
    pytest.param(
        lambda c: Filer(c.models, c.remote, "hdfs"),
        mf.UnknownRemoteTypeError,
        id="remote-type-unknown",
    ),
    pytest.param(
        lambda c: Filer(c.models, "s3://My_Bucket/x"), mf.InvalidNameError, id="s3-bucket-invalid"
    ),
    pytest.param(
        lambda c: Filer(c.models, "s3://ab"), mf.InvalidNameError, id="s3-bucket-too-short"
    ),
    pytest.param(
        lambda c: Filer(c.models, "s3://bucket/../other"),
        mf.InvalidNameError,
        id="s3-prefix-dotdot",
    ),
    pytest.param(
        lambda c: Filer(c.models, 42),
        mf.InvalidNameError,
        id="s3-address-not-a-string",
    ),
    pytest.param(
        lambda c: Filer(c.models, "  ", "local"), mf.InvalidNameError, id="local-address-blank"
    ),
    pytest.param(lambda c: Filer(None), mf.InvalidNameError, id="local-dir-none"),
    pytest.param(lambda c: Filer(42, "x", "local"), mf.InvalidNameError, id="local-dir-not-a-path"),
    pytest.param(
        lambda c: Filer(c.models, remote_type=1),
        mf.UnknownRemoteTypeError,
        id="remote-type-not-a-string-without-address",
    ),
    pytest.param(
        lambda c: Filer(c.models, remote_type="hdfs"),
        mf.UnknownRemoteTypeError,
        id="remote-type-unknown-without-address",
    ),
    pytest.param(lambda c: c.filer().dump(1, "a/b"), mf.InvalidNameError, id="name-with-slash"),
    pytest.param(lambda c: c.filer().dump(1, ".."), mf.InvalidNameError, id="name-dotdot"),
    pytest.param(lambda c: c.filer().dump(1, ""), mf.InvalidNameError, id="name-empty"),
    pytest.param(lambda c: c.filer().dump(1, 7), mf.InvalidNameError, id="name-not-a-string"),
    pytest.param(lambda c: c.filer().dump(1, "a" * 129), mf.InvalidNameError, id="name-too-long"),
    pytest.param(
        lambda c: c.filer().dump(1, ".hidden"), mf.InvalidNameError, id="name-leading-dot"
    ),
    pytest.param(lambda c: c.filer().dump(1, "a\0b"), mf.InvalidNameError, id="name-with-nul"),
    pytest.param(
        lambda c: c.filer().dump(1, "con"),
        mf.InvalidNameError,
        id="name-windows-device",
    ),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.dump(2, "m")),
        mf.ModelExistsError,
        id="dump-existing-local",
    ),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.dump(2, "m", overwrite=True), push=True),
        mf.ImmutableEntryError,
        id="dump-over-synced",
    ),
    pytest.param(_unregistered_file, mf.ModelExistsError, id="dump-over-unregistered-file"),
    pytest.param(
        lambda c: c.filer().dump(lambda x: x, "m"),
        mf.ModelFilerError,
        id="dump-unpicklable",
    ),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.load("other")),
        mf.UnknownModelError,
        id="load-unknown",
    ),
    pytest.param(_local_only_in_a_clone, mf.LocalOnlyError, id="load-local-only-model-in-a-clone"),
    pytest.param(_changed_after_dump, mf.IntegrityError, id="load-file-changed-after-dump"),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.push("other")),
        mf.UnknownModelError,
        id="push-unknown",
    ),
    pytest.param(_file_deleted_then_push, mf.LocalOnlyError, id="push-file-deleted"),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.remove("other")),
        mf.UnknownModelError,
        id="remove-unknown",
    ),
    pytest.param(
        lambda c: _dump_then(c, lambda f: f.pull(["other"])),
        mf.UnknownModelError,
        id="pull-unknown",
    ),
    pytest.param(_remote_folder_missing, mf.BucketNotFoundError, id="local-remote-folder-missing"),
    pytest.param(_tampered_remote_object, mf.IntegrityError, id="remote-object-truncated"),
    pytest.param(_deleted_remote_object, mf.RemoteObjectMissingError, id="s3-object-deleted"),
    pytest.param(_s3_other_bucket, mf.RemoteMismatchError, id="s3-registry-of-another-bucket"),
    pytest.param(_s3_missing_bucket, mf.BucketNotFoundError, id="s3-bucket-missing"),
    pytest.param(lambda c: _s3_credentials(c, None), mf.CredentialsError, id="s3-no-credentials"),
    pytest.param(
        lambda c: _s3_credentials(c, "wrong-secret-123"), mf.CredentialsError, id="s3-wrong-secret"
    ),
    pytest.param(
        _registry_then_load(registry_text("REMOTE", fmt=99)),
        mf.RegistryError,
        id="registry-format-99",
    ),
    pytest.param(
        _registry_then_load("<<<<<<< HEAD\n" + registry_text("REMOTE") + "=======\n>>>>>>> b\n"),
        mf.RegistryError,
        id="registry-conflict-markers",
    ),
    pytest.param(_unknown_serializer, mf.RegistryError, id="registry-unknown-serializer"),
    pytest.param(
        _registry_then_load(registry_text("s3://b-b-b/x", entry_text(), "s3")),
        mf.RegistryError,
        id="registry-type-contradicts-file-name",
    ),
    pytest.param(
        _registry_then_load(registry_text("REMOTE", entry_text(state="pending"))),
        mf.RegistryError,
        id="registry-unknown-state",
    ),
    pytest.param(_registry_then_load("models: [\n"), mf.RegistryError, id="registry-not-yaml"),
]


@pytest.mark.parametrize(("case", "error"), API_CASES)
def test_the_library_refuses(case, error, tmp_path, request):
    with pytest.raises(mf.ModelFilerError) as info:
        case(Ctx(tmp_path, request))
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    says_what_to_do(message, str(tmp_path))


# -- the CLI ------------------------------------------------------------------------------------
def _cli_world(ctx: Ctx) -> Path:
    filer = ctx.filer()
    filer.dump({"w": 1}, "m")
    return ctx.models


CLI_CASES = [
    pytest.param(lambda c: ["push", "--dir", str(_cli_world(c))], id="push-without-names"),
    pytest.param(
        lambda c: ["pull", "--dir", str(_cli_world(c)), "--all", "m"],
        id="pull-names-and-all",
    ),
    pytest.param(lambda c: ["pull", "--dir", str(c.tmp), "--all"], id="dir-without-registry"),
    pytest.param(
        lambda c: ["status", str(c.tmp / "none" / ".local_registry")],
        id="status-of-a-missing-registry",
    ),
    pytest.param(lambda c: ["rm", "--dir", str(_cli_world(c))], id="rm-without-names"),
    pytest.param(lambda c: ["log", "--dir", str(_cli_world(c))], id="log-without-a-name"),
    pytest.param(
        lambda c: ["rm", "--dir", str(_cli_world(c)), "--locals", "m"],
        id="rm-locals-with-names",
    ),
    pytest.param(lambda c: ["pull", "--dir", str(_cli_world(c)), "nope"], id="pull-unknown-name"),
    pytest.param(lambda c: ["push", "--dir", str(c.tmp / "file.txt"), "--all"], id="dir-is-a-file"),
    pytest.param(
        lambda c: ["push", "--dir", str(c.registry("format: [")), "--all"],
        id="cli-registry-not-yaml",
    ),
    pytest.param(
        lambda c: ["verify", "--dir", str(c.registry(registry_text("R", fmt=5)))],
        id="registry-format-5",  # (2 is metadata and aliases, 3 and 4 the chunked layout)
    ),
    pytest.param(
        lambda c: [
            "push",
            "--dir",
            str(_cli_world(c)),
            "--all",
            "--remote-address",
            str(c.tmp / "no-such-folder"),
        ],
        id="push-to-a-missing-remote-folder",
    ),
    pytest.param(
        lambda c: ["merge-registry", str(c.tmp / "a"), str(c.tmp / "b"), str(c.tmp / "c")],
        id="merge-registry-missing-files",
    ),
]


def _two_registries(ctx: Ctx) -> list[str]:
    ctx.registry(registry_text(ctx.remote))
    ctx.registry(registry_text("s3://bucket-a/x", rtype="s3"), ".s3_registry")
    return ["pull", "--dir", str(ctx.models), "--all"]


CLI_CASES.append(pytest.param(_two_registries, id="dir-with-two-registries"))


@pytest.mark.parametrize("argv", CLI_CASES)
def test_the_cli_refuses(argv, tmp_path, request, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    args = argv(Ctx(tmp_path, request))
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("model-filer: error: "), err
    assert err.count("\n") == 1, f"not a single line: {err!r}"
    says_what_to_do(err, "model-filer: error: ", str(tmp_path))


# -- the hooks ----------------------------------------------------------------------------------
@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    path = init_repo(tmp_path / "repo")
    monkeypatch.chdir(path)
    return path


def _no_local(argv: list[str]) -> int:
    from model_filer_hooks.no_local_models import main

    return main(argv)


def _prefetch_strict(sha: str) -> int:
    from model_filer_hooks.prefetch_models import main

    return main(["--strict", "--hook-stage", "post-checkout", NULL_SHA, sha, "1"])


def _check_remote(sha: str, monkeypatch: pytest.MonkeyPatch) -> int:
    from model_filer_hooks.check_remote_models import main

    monkeypatch.setenv("PRE_COMMIT_TO_REF", sha)
    return main([])


def h_local_entry(repo: Path, remote: Path, mp: Any) -> int:
    Filer(repo / "models", str(remote), "local").dump({"w": 1}, "m")
    git(repo, "add", "models/.local_registry")
    return _no_local(["models/.local_registry"])


def h_conflict(repo: Path, remote: Path, mp: Any) -> int:
    (repo / "models").mkdir()
    (repo / "models" / ".local_registry").write_text("<<<<<<< HEAD\na: 1\n=======\n>>>>>>> x\n")
    git(repo, "add", "models/.local_registry")
    return _no_local(["models/.local_registry"])


def h_python_tag(repo: Path, remote: Path, mp: Any) -> int:
    (repo / "models").mkdir()
    (repo / "models" / ".local_registry").write_text("x: !!python/object/apply:os.getcwd []\n")
    git(repo, "add", "models/.local_registry")
    return _no_local(["models/.local_registry"])


def h_model_file(repo: Path, remote: Path, mp: Any) -> int:
    Filer(repo / "models", str(remote), "local").dump({"w": 1}, "m", push=True)
    git(repo, "add", "-f", "models/m.pkl", "models/.local_registry")
    return _no_local(["models/.local_registry", "models/m.pkl"])


def _pushed(repo: Path, remote: Path) -> Filer:
    filer = Filer(repo / "models", str(remote), "local")
    filer.dump({"w": 1}, "m", push=True)
    return filer


def h_object_missing(repo: Path, remote: Path, mp: Any) -> int:
    filer = _pushed(repo, remote)
    sha = commit(repo, "m")
    (remote / (filer.list_files()[0].key or "")).unlink()
    return _check_remote(sha, mp)


def h_object_other_size(repo: Path, remote: Path, mp: Any) -> int:
    filer = Filer(repo / "models", str(remote), "local", storage="plain")  # stored as it is
    filer.dump({"w": 1}, "m", push=True)
    sha = commit(repo, "m")
    (remote / (filer.list_files()[0].key or "")).write_bytes(b"short")
    return _check_remote(sha, mp)


def h_check_outside_a_repo(repo: Path, remote: Path, mp: Any) -> int:
    mp.chdir(repo.parent)
    return _check_remote("HEAD", mp)


def h_prefetch_remote_missing(repo: Path, remote: Path, mp: Any) -> int:
    _pushed(repo, remote)
    sha = commit(repo, "m")
    (repo / "models" / "m.pkl").unlink()
    another_machine()  # else the local object store still has the bytes
    remote.rename(remote.with_name("moved"))
    return _prefetch_strict(sha)


def h_prefetch_object_missing(repo: Path, remote: Path, mp: Any) -> int:
    filer = _pushed(repo, remote)
    sha = commit(repo, "m")
    (repo / "models" / "m.pkl").unlink()
    another_machine()
    (remote / (filer.list_files()[0].key or "")).unlink()
    return _prefetch_strict(sha)


def h_prefetch_bad_registry(repo: Path, remote: Path, mp: Any) -> int:
    (repo / "models").mkdir()
    (repo / "models" / ".local_registry").write_text("format: 1\nmodels: nope\n")
    return _prefetch_strict(commit(repo, "bad"))


HOOK_CASES = [
    pytest.param(h_local_entry, id="no-local-models-local-entry"),
    pytest.param(h_conflict, id="no-local-models-conflict-markers"),
    pytest.param(h_python_tag, id="no-local-models-python-tag"),
    pytest.param(h_model_file, id="no-local-models-model-file-staged"),
    pytest.param(h_object_missing, id="check-remote-object-missing"),
    pytest.param(h_object_other_size, id="check-remote-object-other-size"),
    pytest.param(h_check_outside_a_repo, id="check-remote-outside-a-repo"),
    pytest.param(h_prefetch_remote_missing, id="prefetch-strict-remote-folder-missing"),
    pytest.param(h_prefetch_object_missing, id="prefetch-strict-object-missing"),
    pytest.param(h_prefetch_bad_registry, id="prefetch-strict-bad-registry"),
]


@pytest.mark.parametrize("case", HOOK_CASES)
def test_the_hooks_refuse(case, repo, tmp_path, monkeypatch, capsys):
    remote = tmp_path / "remote"
    remote.mkdir()
    capsys.readouterr()
    assert case(repo, remote, monkeypatch) == 1
    out, err = capsys.readouterr()
    output = out + err
    assert output.strip() and "Traceback" not in output
    hooks = ("no-local-models:", "prefetch-models:", "check-remote-models:")
    says_what_to_do(output, str(tmp_path), *hooks)


def test_the_catalogue_has_at_least_30_distinct_bad_inputs():
    ids = [p.id for p in (*API_CASES, *CLI_CASES, *HOOK_CASES)]
    assert len(ids) == len(set(ids)) >= 30


def test_the_package_names_resolve_on_first_use_and_unknown_ones_are_refused() -> None:
    code = (
        "import sys, model_filer\n"
        "assert 'model_filer.filer' not in sys.modules\n"
        "from model_filer import Filer, Entry, Network, TransferReport, FAIL_FAST, PATIENT\n"
        "assert Filer.__module__ == 'model_filer.filer'\n"
        "assert set(model_filer.__all__) <= set(dir(model_filer))\n"
        "try:\n"
        "    model_filer.NoSuchThing\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchThing' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
