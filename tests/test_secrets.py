"""Secrets: credentials never appear in a registry, a log line, an exception message or output.

Failing operations are run with distinctive fake credentials (a secret key and a session token
nobody could mistake) through the library, the CLI and the hooks: a wrong secret against the
real SeaweedFS, an unreachable endpoint, a missing bucket, and a server that echoes the request's
credential headers into its error message (the fault proxy's ``echo`` mode). Everything they
say is collected: exception messages, model_filer's log records, CLI stdout and stderr, hook
output, and the registry files. None may contain the secret or the token.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from model_filer import Filer, ModelFilerError, RemoteError, TransferError
from model_filer.cli import main as cli_main
from tests.support.faultproxy import FaultProxy
from tests.support.gitrepo import NULL_SHA, closed_port, commit, init_repo
from tests.support.machines import another_machine

SECRET = "FAKE-SECRET-7q1zx9Kd2Vw8Ls3Rt6Yp0Hn4"
TOKEN = "FAKE-TOKEN-3vb8mw0Zr5Qe1Xc7Uf9Ja2Gk6"
BIN = Path(sys.executable).parent


@pytest.fixture
def world(tmp_path, s3_env, s3_address, monkeypatch) -> Iterator[Path]:
    """A repo whose registry names a synced model (pushed with good credentials) and a local
    one; then the good credentials are swapped for the fake ones."""
    repo = init_repo(tmp_path / "repo")
    filer = Filer(repo / "models", s3_address)
    filer.dump({"w": 1}, "synced_model", push=True)
    filer.dump({"w": 2}, "local_model")
    commit(repo, "models")
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    yield repo


def fresh_clone(repo: Path, tmp_path: Path, name: str = "clone") -> Path:
    """A teammate's clone, on another machine (its object store never saw these bytes)."""
    another_machine()
    folder = tmp_path / name
    folder.mkdir()
    (folder / ".s3_registry").write_bytes((repo / "models" / ".s3_registry").read_bytes())
    return folder


def library_ops(repo: Path, clone: Path, address: str) -> dict[str, Callable[[], object]]:
    return {
        "push": lambda: Filer(repo / "models", address).push("local_model"),
        "push_all": lambda: Filer(repo / "models", address).push_all(),
        "load": lambda: Filer(clone, address).load("synced_model"),
        "pull": lambda: Filer(clone, address).pull().raise_failures("pull"),
        "remove": lambda: Filer(clone, address).remove("synced_model", remove_remote=True),
    }


def command_lines(repo: Path, clone: Path) -> dict[str, list[str]]:
    """The CLI and hook commands, as a user or git would run them."""
    checkout = ["--hook-stage", "post-checkout", NULL_SHA, "HEAD", "1"]
    return {
        "cli push": [str(BIN / "model-filer"), "push", "--dir", str(repo / "models"), "--all"],
        "cli pull": [str(BIN / "model-filer"), "pull", "--dir", str(clone), "--all"],
        "cli rm": [str(BIN / "model-filer"), "rm", "--dir", str(clone), "--remote", "synced_model"],
        "prefetch": [str(BIN / "prefetch-models"), *checkout],
        "prefetch --strict": [str(BIN / "prefetch-models"), "--strict", *checkout],
        "check-remote": [str(BIN / "check-remote-models")],
        "no-local-models": [str(BIN / "no-local-models"), "models/.s3_registry"],
    }


def run_all(
    repo: Path,
    clone: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
    skip: tuple[str, ...] = (),
) -> tuple[dict[str, str], list[str]]:
    """Run the library ops, commands and hooks, all at once (each fails on its own, and the
    unreachable endpoint's retries take seconds); return (error message by op, outputs)."""
    for pkl in (*repo.rglob("synced_model.pkl"), *clone.glob("synced_model.pkl")):
        pkl.unlink()  # make every load and pull reach the remote
    env = dict(os.environ, PRE_COMMIT_TO_REF="HEAD")

    def library(op: Callable[[], object]) -> str:
        try:
            op()
        except ModelFilerError as exc:
            # A bulk transfer's error names its causes: the kinds are what these tests check.
            kinds = exc.causes() if isinstance(exc, TransferError) else {type(exc)}
            return f"{'/'.join(sorted(k.__name__ for k in kinds))}: {exc}"
        return "succeeded"

    def command(argv: list[str]) -> str:
        done = subprocess.run(
            argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert "Traceback" not in done.stderr, done.stderr
        if Path(argv[0]).name == "model-filer":
            assert done.returncode == 2, (argv, done.stdout, done.stderr)
            assert done.stderr.startswith("model-filer: error: ") and done.stderr.count("\n") == 1
        return f"{argv}: rc={done.returncode}\n{done.stdout}{done.stderr}"

    ops = {k: v for k, v in library_ops(repo, clone, address).items() if k not in skip}
    commands = {k: v for k, v in command_lines(repo, clone).items() if k not in skip}
    with caplog.at_level(logging.DEBUG, logger="model_filer"), ThreadPoolExecutor(16) as pool:
        futures = {name: pool.submit(library, op) for name, op in ops.items()}
        outputs = [f.result() for f in [pool.submit(command, c) for c in commands.values()]]
        messages = {name: f.result() for name, f in futures.items()}
    logs = [r.getMessage() for r in caplog.records if r.name.startswith("model_filer")]
    return messages, outputs + logs


def assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a credential leaked: {text[:2000]}"
            assert secret[5:25] not in text, f"part of a credential leaked: {text[:2000]}"
            assert secret[-12:] not in text, f"the end of a credential leaked: {text[:2000]}"


def registry_texts(*folders: Path) -> list[str]:
    return [p.read_text() for folder in folders for p in folder.glob(".*_registry")]


def test_a_wrong_secret_and_token_never_appear(world, tmp_path, s3_address, caplog):
    clone = fresh_clone(world, tmp_path)
    messages, outputs = run_all(world, clone, s3_address, caplog)
    for op, message in messages.items():
        assert message.startswith("CredentialsError"), (op, message)
    texts = [*messages.values(), *outputs, *registry_texts(world / "models", clone)]
    assert_no_secret(texts, SECRET, TOKEN)


def test_an_unreachable_endpoint_never_shows_the_credentials(
    world, tmp_path, s3_address, monkeypatch, caplog
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    clone = fresh_clone(world, tmp_path)
    messages, outputs = run_all(  # fewer: each waits out botocore's retries
        world, clone, s3_address, caplog, skip=("push_all", "pull", "cli push", "prefetch")
    )
    for op, message in messages.items():
        assert message.startswith("RemoteUnreachableError"), (op, message)
    texts = [*messages.values(), *outputs, *registry_texts(world / "models", clone)]
    assert_no_secret(texts, SECRET, TOKEN)


@pytest.mark.parametrize(
    "password",
    ["FAKE-PASSWORD-8c2nq5Lw1Tz7Bm4Xs9Fd", "FAKE-PASS@WORD-8c2nq5Lw1Tz7Bm4Xs9Fd"],
    ids=["plain", "with-an-at-sign"],
)
def test_a_password_in_the_endpoint_url_never_appears(
    world, tmp_path, s3_address, monkeypatch, caplog, password
):
    """``AWS_ENDPOINT_URL=http://user:password@host`` (a proxy or a MinIO gateway that takes
    basic auth): botocore names the endpoint in its connection errors."""
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://admin:{password}@127.0.0.1:{port}")
    clone = fresh_clone(world, tmp_path)
    messages, outputs = run_all(
        world, clone, s3_address, caplog, skip=("push_all", "pull", "cli push", "prefetch")
    )
    for op, message in messages.items():
        assert message.startswith("RemoteUnreachableError"), (op, message)
    texts = [*messages.values(), *outputs, *registry_texts(world / "models", clone)]
    assert any(f"127.0.0.1:{port}" in text for text in texts)  # the endpoint is still named
    assert_no_secret(texts, password, SECRET, TOKEN)


def test_a_missing_bucket_never_shows_the_real_secret(world, tmp_path, s3_env, monkeypatch, caplog):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)  # valid: the bucket is
    monkeypatch.delenv("AWS_SESSION_TOKEN")  # what is missing here
    bucket = f"model-filer-missing-{uuid.uuid4().hex[:12]}"
    registry = world / "models" / ".s3_registry"
    registry.write_text(registry.read_text().replace(s3_env.bucket, bucket))
    commit(world, "another bucket")
    clone = fresh_clone(world, tmp_path)
    address = read_address(registry)
    # No push: SeaweedFS, unlike AWS, creates a missing bucket on PUT.
    messages, outputs = run_all(
        world, clone, address, caplog, skip=("push", "push_all", "cli push")
    )
    for op, message in messages.items():
        assert message.startswith("BucketNotFoundError"), (op, message)
    assert_no_secret([*messages.values(), *outputs], s3_env.secret_key)


def read_address(registry: Path) -> str:
    from model_filer.registry.file import parse

    return parse(registry.read_bytes(), str(registry)).remote_address


@pytest.fixture
def echoing(s3_env, monkeypatch) -> Iterator[FaultProxy]:
    """A store that puts the request's credential headers into its DELETE error messages."""
    with FaultProxy(
        s3_env.endpoint_url,
        share=1.0,
        faults=("echo",),
        applies=lambda method, path: method == "DELETE",
        lifetime=60,
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


def _echo_once(repo: Path, address: str, capsys) -> list[str]:
    with pytest.raises(RemoteError) as info:
        Filer(repo / "models", address).remove("synced_model", remove_remote=True)
    capsys.readouterr()
    assert cli_main(["rm", "--dir", str(repo / "models"), "--remote", "synced_model"]) == 2
    out, err = capsys.readouterr()
    assert "InvalidArgument" in str(info.value)  # the echo did reach the message
    return [str(info.value), out, err]


def test_credentials_echoed_by_the_store_are_scrubbed(
    tmp_path, s3_env, s3_address, echoing, monkeypatch, capsys
):
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)  # SeaweedFS would refuse it: echo answers
    repo = tmp_path / "repo"
    filer = Filer(repo / "models", s3_address)
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    filer.dump({"w": 1}, "synced_model", push=True)  # HEAD and PUT are forwarded
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    texts = _echo_once(repo, s3_address, capsys)
    assert "security token ***" in texts[0]  # the token was sent, echoed, and scrubbed
    assert_no_secret(texts + registry_texts(repo / "models"), TOKEN)


def test_credentials_from_a_profile_echoed_by_the_store_are_scrubbed(
    tmp_path, s3_env, s3_address, echoing, monkeypatch, capsys
):
    repo = tmp_path / "repo"
    Filer(repo / "models", s3_address).dump({"w": 1}, "synced_model", push=True)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {s3_env.access_key}\n"
        f"aws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    texts = _echo_once(repo, s3_address, capsys)
    assert_no_secret(texts, TOKEN)


def test_the_registry_never_holds_credentials(tmp_path, s3_env, s3_address, monkeypatch):
    filer = Filer(tmp_path / "models", s3_address)
    filer.dump({"w": 1}, "m", push=True)
    filer.dump({"w": 2}, "n")
    text = filer.registry_path.read_text()
    for value in (s3_env.secret_key, s3_env.access_key, s3_env.endpoint_url):
        assert value not in text
    assert not any(
        s3_env.secret_key in p.read_text(errors="replace")
        for p in filer.local_dir.rglob("*")
        if p.is_file() and p.suffix != ".pkl"
    )
