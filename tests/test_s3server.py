"""Tests of the test S3 server and of the isolation fixtures in conftest.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.s3server import S3Target, client_config

TCP_LISTEN = "0A"


def _split_address(address: str) -> tuple[str, str]:
    assert address.startswith("s3://")
    bucket, _, prefix = address.removeprefix("s3://").partition("/")
    return bucket, prefix


def test_generated_credentials_work(s3_client: Any, s3_address: str) -> None:
    bucket, prefix = _split_address(s3_address)
    key = f"{prefix}/hello.bin"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"hello")
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello"
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert [item["Key"] for item in listing.get("Contents", [])] == [key]


def test_s3_address_is_unique_per_test(s3_address: str, s3_env: S3Target) -> None:
    bucket, prefix = _split_address(s3_address)
    assert bucket == s3_env.bucket
    assert prefix.startswith("t-") and len(prefix) == 14


def test_boto3_configured_from_environment_alone(s3_env: S3Target, s3_address: str) -> None:
    """What the library does: a plain boto3 client finds endpoint and keys in the environment."""
    bucket, prefix = _split_address(s3_address)
    client = boto3.client("s3")
    client.put_object(Bucket=bucket, Key=f"{prefix}/x", Body=b"x")
    assert client.head_object(Bucket=bucket, Key=f"{prefix}/x")["ContentLength"] == 1


@pytest.mark.parametrize("wrong", ["secret_key", "access_key"])
def test_wrong_credentials_are_refused(s3_server: S3Target, wrong: str) -> None:
    access_key, secret_key = s3_server.access_key, s3_server.secret_key
    if wrong == "secret_key":
        secret_key = secret_key[::-1] + "x"
    else:
        access_key = "AKNOTAREALKEY0000000"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=client_config(),
    )
    with pytest.raises(ClientError) as info:
        client.list_objects_v2(Bucket=s3_server.bucket, MaxKeys=1)
    assert info.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "InvalidAccessKeyId"}


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat_path.parent.name))
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_address(hex_address: str) -> tuple[str, int]:
    hex_ip, hex_port = hex_address.split(":")
    raw = bytes.fromhex(hex_ip)
    # /proc/net/tcp{,6} print the address as 32-bit words in host (little-endian) order.
    ip = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(ip) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, ip), int(hex_port, 16)


def _listening_sockets(pid: int, inodes: set[str]) -> list[tuple[str, int]]:
    found = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN and fields[9] in inodes:
                found.append(_decode_address(fields[1]))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_server_listens_on_loopback_only(s3_server: S3Target) -> None:
    server = s3_server.server
    if server is None:
        pytest.skip("external S3 endpoint")
    # The S3 port answers first; the admin and gRPC listeners may open a moment later.
    deadline = time.monotonic() + 10
    while True:
        pids = _group_pids(server.pid)
        assert server.pid in pids
        inodes = set().union(*(_socket_inodes(pid) for pid in pids))
        listening = _listening_sockets(server.pid, inodes)
        if {port for _, port in listening} >= set(server.ports) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {port for _, port in listening} >= set(server.ports)
    assert sorted(address for address, _ in listening if address != "127.0.0.1") == []


def test_environment_is_isolated(tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        assert name not in os.environ
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert Path(os.environ["AWS_CONFIG_FILE"]).read_text() == ""
    assert Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).read_text() == ""
    assert boto3.Session().get_credentials() is None
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    result = subprocess.run(
        [git, "config", "--list", "--show-origin"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == ["command line:\tinit.defaultbranch=main"]
