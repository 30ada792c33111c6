"""Shared pytest fixtures: an isolated environment and a real S3 endpoint.

S3 tests run against a local SeaweedFS server started once per session (see s3server.py), or
against an external endpoint when these are set:

    MODEL_FILER_TEST_S3_ENDPOINT, MODEL_FILER_TEST_S3_BUCKET,
    MODEL_FILER_TEST_AWS_ACCESS_KEY_ID, MODEL_FILER_TEST_AWS_SECRET_ACCESS_KEY,
    MODEL_FILER_TEST_AWS_REGION (default us-east-1)

Isolation from the machine uses environment variables only; boto3 and botocore are never
patched.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.azurite import azure_address, azure_env, azurite_server  # noqa: F401
from tests.support.gcsserver import gcs_env, gcs_server  # noqa: F401
from tests.support.isolation import AWS_VARIABLES_TO_REMOVE, GIT_VARIABLES_TO_REMOVE

# Here, once, so that every module's pre-commit tests share one hook environment build.
from tests.support.precommit_team import hook_repo, pre_commit_home, team  # noqa: F401
from tests.support.s3server import REGION, S3Target, start_seaweedfs

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Model Filer Tests",
    "GIT_AUTHOR_EMAIL": "tests@model-filer.invalid",
    "GIT_COMMITTER_NAME": "Model Filer Tests",
    "GIT_COMMITTER_EMAIL": "tests@model-filer.invalid",
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep boto3 and git away from the machine's credentials, profiles and config."""
    home = tmp_path_factory.mktemp("isolated-config")
    aws_config = home / "aws-config"
    aws_credentials = home / "aws-credentials"
    git_config = home / "gitconfig"
    for path in (aws_config, aws_credentials, git_config):
        path.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for name in AWS_VARIABLES_TO_REMOVE:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(aws_config))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_credentials))
        mp.delenv("MODEL_FILER_SKIP_PREFETCH", raising=False)
        for name in GIT_VARIABLES_TO_REMOVE:
            mp.delenv(name, raising=False)
        for name, value in GIT_IDENTITY.items():
            mp.setenv(name, value)
        mp.setenv("GIT_CONFIG_GLOBAL", str(git_config))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("GIT_CONFIG_COUNT", "1")
        mp.setenv("GIT_CONFIG_KEY_0", "init.defaultBranch")
        mp.setenv("GIT_CONFIG_VALUE_0", "main")
        # The local object store: never ~/.cache; hooks in subprocesses inherit it.
        mp.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path_factory.mktemp("object-store")))
        mp.delenv("MODEL_FILER_LINK", raising=False)
        yield


@pytest.fixture(autouse=True)
def object_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local object store for each test, so one test's bytes never serve another."""
    path = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(path))
    return path


def _external_target() -> S3Target | None:
    endpoint = os.environ.get("MODEL_FILER_TEST_S3_ENDPOINT")
    bucket = os.environ.get("MODEL_FILER_TEST_S3_BUCKET")
    if not (endpoint and bucket):
        return None
    access_key = os.environ.get("MODEL_FILER_TEST_AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("MODEL_FILER_TEST_AWS_SECRET_ACCESS_KEY")
    if not (access_key and secret_key):
        raise pytest.UsageError(
            "MODEL_FILER_TEST_S3_ENDPOINT is set: also set MODEL_FILER_TEST_AWS_ACCESS_KEY_ID "
            "and MODEL_FILER_TEST_AWS_SECRET_ACCESS_KEY"
        )
    return S3Target(
        endpoint_url=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        region=os.environ.get("MODEL_FILER_TEST_AWS_REGION") or REGION,
        bucket=bucket,
    )


@pytest.fixture(scope="session")
def s3_server(
    _isolated_environment: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Target]:
    """The S3 endpoint and bucket of this session: external if configured, else SeaweedFS."""
    external = _external_target()
    if external is not None:
        yield external
        return
    server = start_seaweedfs(tmp_path_factory.mktemp("s3"))
    try:
        bucket = f"model-filer-test-{secrets.token_hex(4)}"
        server.create_bucket(bucket)
        yield S3Target(
            endpoint_url=server.endpoint_url,
            access_key=server.access_key,
            secret_key=server.secret_key,
            region=server.region,
            bucket=bucket,
            server=server,
        )
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Target, monkeypatch: pytest.MonkeyPatch) -> S3Target:
    """Point boto3's environment variables at the session's S3 endpoint for one test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    return s3_server


@pytest.fixture
def s3_address(s3_env: S3Target) -> str:
    """A fresh ``s3://bucket/prefix`` no other test uses."""
    return f"s3://{s3_env.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_client(s3_env: S3Target) -> Any:
    """A boto3 S3 client for the session's endpoint, to inspect or tamper with objects."""
    return s3_env.client()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """An empty folder to serve as a local-directory remote."""
    path = tmp_path / "remote"
    path.mkdir()
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository, made the current directory as git makes it for hooks."""
    from tests.support.gitrepo import init_repo

    path = init_repo(tmp_path / "repo")
    monkeypatch.chdir(path)
    return path
