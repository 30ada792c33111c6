"""The Azure Blob Storage remote (issue 20), against the session's Azurite on 127.0.0.1.

The first half is what only Azure has: the account recorded as part of the remote's identity,
the connection string and the credential chain, secrets in messages and logs, the missing
container's command, the lazy import. The second half is the remote contract (the cases
tests/remotes/test_contract.py runs for every type), written over the ``(remote_type, address,
env)`` triple of :func:`tests.support.azurite.azure_remote_case` so that they fold into that
suite unchanged. No SDK is mocked: every call reaches Azurite, a fault proxy or a stuck listener.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_filer import (
    BucketNotFoundError,
    CredentialsError,
    Filer,
    InvalidNameError,
    ModelFilerError,
    Network,
    RemoteError,
    RemoteMismatchError,
    RemoteUnreachableError,
    UnknownRemoteTypeError,
)
from model_filer.remotes import get_remote
from model_filer.remotes.azure import AzureRemote
from tests.support.azurite import (
    DEV_ACCOUNT,
    OTHER_ACCOUNT,
    Azurite,
    azure_remote_case,
    connection_string,
    isolated_azure_env,
)
from tests.support.faultproxy import FaultProxy, StuckServer
from tests.support.gitrepo import environ, registry_bytes, sample_entry
from tests.support.machines import another_machine, kill_when

MB = 1024 * 1024
BIG = 48 * MB  # above resume.RESUMABLE_ABOVE: ranged and staged; small enough for the suite
#: 12 blocks: the first 8 (in flight together) are staged when the push is killed halfway.
BIG_PUSH = 96 * MB
#: Gives up on the second silent attempt (see tests/remotes/test_stuck_store.py's QUICK).
QUICK = Network(
    connect_timeout=0.5, read_timeout=0.5, max_attempts=10, stall_timeout=3.0, notice_after=0.3
)


def _apply(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _registry_text(folder: Path) -> str:
    return (folder / ".azure_registry").read_text()


# == Azure only ===================================================================================
def test_the_registry_records_the_account_and_no_secret(
    tmp_path: Path, azure_env: Azurite, azure_address: str
) -> None:
    filer = Filer(tmp_path / "models", azure_address, remote_type="azure")
    filer.dump({"w": 1}, "m", push=True)

    text = _registry_text(filer.local_dir)
    container = azure_address[5:].split("/")[0]
    assert f"az://{container}@{DEV_ACCOUNT}/" in text
    for secret in (azure_env.connection_string, "AccountKey", "Eby8vdM02xNOcq"):
        assert secret not in text
    assert filer.registry_path.name == ".azure_registry"


def test_a_registry_of_one_account_is_refused_with_credentials_of_another(
    tmp_path: Path, azure_env: Azurite, azure_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Filer(tmp_path / "models", azure_address, remote_type="azure").dump(1, "m", push=True)
    recorded = AzureRemote(azure_address).address
    other = connection_string(azure_env.endpoint, OTHER_ACCOUNT, azure_env.other_key)
    azure_env.create_container(azure_address[5:].split("/")[0], conn=other)  # same name there
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", other)

    # The same address typed with the other account's credentials: another remote.
    with pytest.raises(RemoteMismatchError, match=f"@{OTHER_ACCOUNT}/") as typed:
        Filer(tmp_path / "models", azure_address, remote_type="azure")
    assert DEV_ACCOUNT in str(typed.value)
    # The registry's own address (naming its account), with the other account's credentials.
    with pytest.raises(RemoteMismatchError, match=f"is for account '{OTHER_ACCOUNT}'"):
        Filer(tmp_path / "models", recorded, remote_type="azure")
    # And never a transfer with them, whatever opened the remote.
    with pytest.raises(RemoteMismatchError):
        get_remote("azure", recorded).size_of("m/x.pkl")


def test_an_address_naming_the_account_works_with_that_accounts_string(
    tmp_path: Path, azure_env: Azurite, azure_address: str
) -> None:
    container, _, prefix = azure_address[5:].partition("/")
    named = f"az://{container}@{DEV_ACCOUNT}/{prefix}"
    Filer(tmp_path / "a", azure_address, remote_type="azure").dump([1, 2], "m", push=True)
    shutil.copy(tmp_path / "a" / ".azure_registry", tmp_path / "b.registry")
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "b.registry", tmp_path / "b" / ".azure_registry")
    another_machine()
    assert Filer(tmp_path / "b", named, remote_type="azure").load("m") == [1, 2]


def test_no_account_anywhere_says_which_variables_to_set(
    tmp_path: Path, azure_env: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    with pytest.raises(CredentialsError) as info:
        Filer(tmp_path / "m", "az://models/team", remote_type="azure")
    message = str(info.value)
    assert "AZURE_STORAGE_CONNECTION_STRING" in message and "AZURE_STORAGE_ACCOUNT" in message
    assert "az://models@ACCOUNT/team" in message


def test_the_credential_chain_finding_nothing_is_a_credentials_error(
    tmp_path: Path, azure_env: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "mfnosuchaccount")
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):  # loopback only
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", str(tmp_path / "no-az-cli"))  # no `az`, `azd` or `pwsh`
    filer = Filer(tmp_path / "m", "az://models/team", remote_type="azure", network=QUICK)
    assert filer.remote.address == "az://models@mfnosuchaccount/team"
    filer.dump(1, "m")

    with pytest.raises(CredentialsError, match="az login") as info:
        filer.push("m")
    assert "DefaultAzureCredential" in str(info.value)


def test_a_missing_container_says_how_to_create_it(tmp_path: Path, azure_env: Azurite) -> None:
    name = f"mf-missing-{uuid.uuid4().hex[:8]}"
    filer = Filer(tmp_path / "m", f"az://{name}/p", remote_type="azure")
    filer.dump(1, "m")
    with pytest.raises(BucketNotFoundError) as info:
        filer.push("m")
    assert f"az storage container create --name {name}" in str(info.value)
    with pytest.raises(BucketNotFoundError, match="az storage container create"):
        filer.remote.list_sizes("")


def test_an_az_address_with_the_default_type_names_the_azure_type(tmp_path: Path) -> None:
    with pytest.raises(UnknownRemoteTypeError, match="remote_type='azure'"):
        Filer(tmp_path / "m", "az://models/team")


@pytest.mark.parametrize(
    "address",
    ["az://", "az://AB/x", "az://models@Bad-Account/x", "az://models/../x"],
)
def test_malformed_azure_addresses_are_refused(
    tmp_path: Path, azure_env: Azurite, address: str
) -> None:
    with pytest.raises(InvalidNameError):
        Filer(tmp_path / "m", address, remote_type="azure")


def test_an_s3_address_with_the_azure_type_names_the_s3_type(tmp_path: Path) -> None:
    with pytest.raises(UnknownRemoteTypeError, match="remote_type='s3'"):
        Filer(tmp_path / "m", "s3://models/x", remote_type="azure")


def test_without_the_extra_the_message_names_it(tmp_path: Path, azure_address: str) -> None:
    # The SDK made unimportable (as when it is not installed): a typed error, no traceback.
    script = (
        "import sys\n"
        "sys.modules['azure.storage.blob'] = None\n"
        "from model_filer import Filer, RemoteError\n"
        f"f = Filer({str(tmp_path / 'm')!r}, {azure_address!r}, remote_type='azure')\n"
        "f.dump(1, 'm')\n"
        "try:\n"
        "    f.push('m')\n"
        "except RemoteError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'ds-model-filer[azure]'" in done.stdout, done.stdout + done.stderr


def test_the_sdk_is_imported_only_when_an_azure_registry_is_used(
    tmp_path: Path, azure_address: str
) -> None:
    script = (
        "import sys\n"
        "from model_filer import Filer\n"
        f"f = Filer({str(tmp_path / 'm')!r}, {azure_address!r}, remote_type='azure')\n"
        "f.dump(1, 'm')\n"  # no transfer: no SDK
        "print(sorted(m for m in sys.modules if m.startswith('azure')))\n"
        "f.push('m')\n"
        "print('azure.storage.blob' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]", "True"], done.stdout + done.stderr


def test_the_pre_push_hook_and_gc_work_on_an_azure_registry(
    tmp_path: Path,
    azure_env: Azurite,
    azure_address: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io
    from datetime import UTC, datetime, timedelta

    from model_filer_hooks.check_remote_models import main

    from model_filer.git import gc
    from tests.support.gitrepo import commit, head, init_repo

    repo = init_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    filer = Filer(repo / "models", azure_address, remote_type="azure")
    filer.dump({"w": 1}, "churn", push=True)
    filer.dump({"w": 2}, "prices", push=True)
    commit(repo, "two models")
    monkeypatch.setenv("PRE_COMMIT_FROM_REF", "0" * 40)
    monkeypatch.setenv("PRE_COMMIT_TO_REF", head(repo))
    monkeypatch.setenv("PRE_COMMIT_REMOTE_NAME", "origin")
    assert main([]) == 0

    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"old")
    filer.remote.upload(orphan, f"old/{'c' * 64}.pkl", "c" * 64, None)
    later = datetime.now(UTC) + timedelta(days=30)
    assert [o.key for o in gc.plan(filer, timedelta(days=1), now=later).candidates] == [
        f"old/{'c' * 64}.pkl"
    ]

    prices = {e.name: e for e in filer.list_files()}["prices"]
    assert prices.key is not None
    filer.remote.delete(prices.key)
    capsys.readouterr()
    assert main([]) == 1
    out = capsys.readouterr().out
    assert "prices:" in out and "is missing from the remote" in out and "churn" not in out


# -- secrets --------------------------------------------------------------------------------------
def _texts(exc: BaseException) -> list[str]:
    """Every text a user may see of an error: its message, its traceback as printed."""
    return [str(exc), "".join(traceback.format_exception(exc))]


def _assert_absent(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked: {text[:2000]}"
            assert secret[4:20] not in text, f"part of a secret leaked: {text[:2000]}"


def _failures(tmp_path: Path, address: str) -> list[BaseException]:
    """Push, load and list with the environment's credentials; the errors they raise."""
    errors: list[BaseException] = []
    folder = tmp_path / f"m-{uuid.uuid4().hex[:6]}"
    filer = Filer(folder, address, remote_type="azure", network=QUICK)
    filer.dump(os.urandom(100), "m")
    for op in (lambda: filer.push("m"), lambda: filer.remote.list_sizes("")):
        try:
            op()
        except ModelFilerError as exc:
            errors.append(exc)
    return errors


def test_a_wrong_account_key_never_appears(
    tmp_path: Path,
    azure_env: Azurite,
    azure_address: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_key = azure_env.other_key  # a real-looking key, not the dev account's
    conn = connection_string(azure_env.endpoint, DEV_ACCOUNT, wrong_key)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    with caplog.at_level(logging.DEBUG):
        errors = _failures(tmp_path, azure_address)
    assert len(errors) == 2 and all(isinstance(e, CredentialsError) for e in errors), errors
    texts = [t for e in errors for t in _texts(e)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [p.read_text() for p in tmp_path.glob("*/.azure_registry")]
    _assert_absent(texts, wrong_key, conn)


def test_a_sas_token_works_and_never_appears(
    tmp_path: Path,
    azure_env: Azurite,
    azure_address: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from tests.support.azurite import DEV_KEY

    sas = generate_account_sas(
        DEV_ACCOUNT,
        DEV_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, list=True, delete=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    sig = sas.split("sig=")[1].split("&")[0]
    conn = f"BlobEndpoint={azure_env.endpoint}/{DEV_ACCOUNT};SharedAccessSignature={sas}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    with caplog.at_level(logging.DEBUG):
        filer = Filer(tmp_path / "m", azure_address, remote_type="azure")
        assert filer.remote.address.startswith(f"{azure_address[:5]}")
        assert f"@{DEV_ACCOUNT}/" in filer.remote.address  # the account from the endpoint
        filer.dump({"a": 1}, "m", push=True)
        missing = Filer(tmp_path / "n", f"az://mf-none-{uuid.uuid4().hex[:6]}/p", "azure")
        missing.dump(1, "m")
        with pytest.raises(BucketNotFoundError) as info:
            missing.push("m")
    texts = [*_texts(info.value), _registry_text(filer.local_dir)]
    texts += [r.getMessage() for r in caplog.records]
    _assert_absent(texts, sig)  # the signature, or any part of it
    assert not [t for t in texts if sas in t or conn in t]  # (its other fields say no secret)


def test_a_malformed_connection_string_is_never_quoted(
    tmp_path: Path, azure_env: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "Zm9vYmFyYmF6cXV4c2VjcmV0c2VjcmV0c2VjcmV0MDEyMzQ1Njc4OQ=="
    conn = f"AccountName={DEV_ACCOUNT};AccountKey={secret};BlobEndpoint=not a url at all"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    errors = _failures(tmp_path, "az://models/p")
    assert errors and all(isinstance(e, RemoteError) for e in errors), errors
    _assert_absent([t for e in errors for t in _texts(e)], secret, conn)


# == the remote contract, for the Azure type =======================================================
@pytest.fixture
def case(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The contract's ``(remote_type, address)``, its environment applied."""
    remote_type, address, env = azure_remote_case(azurite_server)
    _apply(monkeypatch, env)
    return remote_type, address


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(BIG)


class _Collect:
    """A RangeSink that keeps what it is given, and where it was told the bytes begin."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.data = bytearray()

    def restart(self, offset: int) -> None:
        self.starts.append(offset)
        self.data.clear()

    def write(self, data: Any) -> int:
        self.data += data
        return len(data)


def test_contract_upload_download_verify_and_content_addressed_keys(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    remote_type, address = case
    # The plain layout: each model one object under its key (the chunked one: test_contract.py)
    producer = Filer(tmp_path / "producer", address, remote_type=remote_type, storage="plain")
    model = {"weights": list(range(1000))}
    producer.dump(model, "small", push=True)
    producer.dump(b"x" * (20 * MB), "big", push=True)  # staged blocks
    entries = {e.name: e for e in producer.list_files()}
    sizes = producer.remote.list_sizes("")
    assert sizes == {e.key: e.size for e in entries.values()}
    assert all(e.sha256 in str(e.key) for e in entries.values())

    another_machine()
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    clone = Filer(consumer, address, remote_type=remote_type)
    assert clone.load("small") == model
    assert clone.load("big") == b"x" * (20 * MB)
    data = (consumer / "big.pkl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == entries["big"].sha256


def test_contract_ranged_read_from_an_offset(tmp_path: Path, case: tuple[str, str]) -> None:
    remote_type, address = case
    src = tmp_path / "obj"
    data = os.urandom(5 * MB + 123)
    src.write_bytes(data)
    remote = get_remote(remote_type, address)
    remote.upload(src, "ab/obj", hashlib.sha256(data).hexdigest(), None)
    sink, moved = _Collect(), []
    remote.download_from("ab/obj", 3 * MB + 7, sink, moved.append, len(data))
    assert sink.starts == [3 * MB + 7] and bytes(sink.data) == data[3 * MB + 7 :]
    assert sum(moved) == len(data) - 3 * MB - 7

    # Not the size the registry says: the whole object, from 0, for the caller to judge.
    sink = _Collect()
    remote.download_from("ab/obj", 3 * MB, sink, None, len(data) + 10)
    assert sink.starts == [0] and bytes(sink.data) == data


def test_contract_listing_delete_and_size(tmp_path: Path, case: tuple[str, str]) -> None:
    remote_type, address = case
    remote = get_remote(remote_type, address)
    for i in range(7):
        src = tmp_path / f"f{i}"
        src.write_bytes(b"z" * (i + 1))
        remote.upload(src, f"m{i % 2}/k{i}", "0" * 64, None)
    assert remote.list_sizes("m1/") == {f"m1/k{i}": i + 1 for i in (1, 3, 5)}
    assert len(list(remote.list_objects())) == 7
    assert remote.size_of("m0/k2") == 3 and remote.size_of("m0/nope") is None
    remote.delete("m0/k2")
    remote.delete("m0/k2")  # absent is fine
    assert remote.size_of("m0/k2") is None and "m0/k2" not in remote.list_sizes("")


def test_contract_one_listing_request_per_prefix(
    tmp_path: Path, azurite_server: Azurite, case: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    remote_type, address = case
    producer = Filer(tmp_path / "p", address, remote_type=remote_type)
    for i in range(40):
        producer.dump(i, f"m{i}", push=True)
    with FaultProxy(azurite_server.endpoint, lifetime=120) as proxy:
        monkeypatch.setenv(
            "AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url, DEV_ACCOUNT)
        )
        sizes = get_remote(remote_type, address).list_sizes("")
        assert len(sizes) == 40
        assert proxy.requests == 1, proxy.log


def test_contract_an_upload_is_synced_only_when_whole_and_abandoned_blocks_are_harmless(
    tmp_path: Path,
    azurite_server: Azurite,
    case: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote_type, address = case
    payload = os.urandom(BIG_PUSH)
    # Staged blocks of one big object: the plain layout (chunks are objects of their own).
    producer = Filer(tmp_path / "producer", address, remote_type=remote_type, storage="plain")
    producer.dump(payload, "big")
    entry = producer.list_files()[0]
    key = f"big/{entry.sha256}.pkl"
    with FaultProxy(azurite_server.endpoint, lifetime=600) as proxy:
        _kill_at_half(proxy, "push", producer.local_dir, address, entry.size, "plain")
        blob = _blob(azurite_server, address, key)
        staged = _staged_settled(blob)
        assert 0 < staged < entry.size
        # A partial upload is at no final key: neither seen nor listed, the entry still local.
        remote = get_remote(remote_type, address)
        assert remote.size_of(key) is None and remote.list_sizes("") == {}
        assert Filer(producer.local_dir, address, remote_type).list_files()[0].state == "local"

        before = proxy.bytes_up
        monkeypatch.setenv(
            "AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url, DEV_ACCOUNT)
        )
        Filer(producer.local_dir, address, remote_type, storage="plain").push("big")
        sent = proxy.bytes_up - before
    print(f"resumed push sent {sent / entry.size:.1%} of the bytes")
    assert sent <= 0.60 * entry.size, f"{sent / entry.size:.0%} sent again"
    assert remote.size_of(key) == entry.size
    assert blob.get_block_list("uncommitted")[1] == []  # committing discarded the rest
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    another_machine()
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    assert Filer(consumer, address, remote_type).load("big") == payload


def test_contract_a_download_killed_halfway_fetches_only_the_rest(
    tmp_path: Path,
    azurite_server: Azurite,
    case: tuple[str, str],
    payload: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote_type, address = case
    producer = Filer(tmp_path / "producer", address, remote_type=remote_type)
    producer.dump(payload, "big", push=True)
    entry = producer.list_files()[0]
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    store = another_machine()
    with FaultProxy(azurite_server.endpoint, lifetime=600) as proxy:
        _kill_at_half(proxy, "load", consumer, address, entry.size)
        partials = list((store / "partial").iterdir())
        assert len(partials) == 1 and partials[0].stat().st_size >= entry.size * 0.4
        before = proxy.bytes_down
        monkeypatch.setenv(
            "AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url, DEV_ACCOUNT)
        )
        assert Filer(consumer, address, remote_type).load("big") == payload
        fetched = proxy.bytes_down - before
    print(f"resumed load fetched {fetched / entry.size:.1%} of the bytes")
    # Killed once half the bytes passed the proxy: what had not landed yet (at most the
    # RANGE_JOBS ranged GETs in flight) comes again with the other half, not the whole.
    from model_filer.storage.packs import range_limit
    from model_filer.transfer.chunked import RANGE_JOBS

    in_flight = RANGE_JOBS * range_limit(entry.size)
    assert fetched <= entry.size // 2 + in_flight, f"{fetched / entry.size:.0%} fetched again"


_RUN = """
import sys
import model_filer.storage.packs as packs
from model_filer import Filer
# Runs of chunks read 1 MiB at a time (16 MiB in the product): 4 reads in flight at once
# would fetch all of the model together, leaving no moment when half is written.
packs.RANGE_MAX = 1024 * 1024
filer = Filer(sys.argv[2], sys.argv[3], remote_type="azure", storage=sys.argv[4])
filer.load("big") if sys.argv[1] == "load" else filer.push("big")
"""


def _kill_at_half(
    proxy: FaultProxy,
    action: str,
    folder: Path,
    address: str,
    total: int,
    storage: str = "chunked",
) -> None:
    """Run ``action`` in a child through the proxy; SIGKILL it once half the bytes passed."""
    counter = "bytes_down" if action == "load" else "bytes_up"
    kill_when(
        [sys.executable, "-c", _RUN, action, str(folder), address, storage],
        environ(**isolated_azure_env(connection_string(proxy.url, DEV_ACCOUNT))),
        lambda: getattr(proxy, counter) >= total // 2,
        settle=0.5,  # requests the child left in flight finish in the proxy
    )


def _blob(server: Azurite, address: str, key: str) -> Any:
    container, _, prefix = address[5:].partition("/")
    return server.service().get_blob_client(container, f"{prefix}/{key}")


def _staged_settled(blob: Any, quiet: float = 1.0, limit: float = 30.0) -> int:
    """Bytes of uncommitted blocks once the killed push's last blocks stopped arriving."""
    deadline, last, since = time.monotonic() + limit, -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            staged = sum(b.size for b in blob.get_block_list("uncommitted")[1])
        except Exception:  # no block yet: the blob is unknown
            staged = 0
        if staged != last:
            last, since = staged, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return last


# -- a stuck store ---------------------------------------------------------------------------------
@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> Iterator[StuckServer]:
    """A listener that accepts and never answers, as the account's blob endpoint."""
    with StuckServer(lifetime=120) as server:
        _apply(monkeypatch, isolated_azure_env(connection_string(server.url, DEV_ACCOUNT)))
        yield server


@pytest.mark.parametrize(("size", "in_flight"), [(10, 1), (40 * MB, 8)], ids=["one", "ranged"])
def test_contract_a_stuck_store_is_given_up_on_the_silence(
    tmp_path: Path, stuck: StuckServer, size: int, in_flight: int
) -> None:
    address = f"az://stuck@{DEV_ACCOUNT}/models"
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / ".azure_registry").write_bytes(
        registry_bytes("azure", address, sample_entry("m0", size=size))
    )
    filer = Filer(folder, address, "azure", network=QUICK)

    with pytest.raises(RemoteUnreachableError, match="No answer from Azure Blob Storage at"):
        filer.load("m0")
    # azure-core alone would try each request 10 times.
    assert stuck.connections <= 2 * in_flight

    with pytest.raises(RemoteUnreachableError, match="on which the last call gave up"):
        get_remote("azure", f"az://other@{DEV_ACCOUNT}/p", QUICK).size_of("m0/x.pkl")


def test_azure_core_is_given_the_policy(azure_env: Azurite) -> None:
    remote = get_remote("azure", f"az://any@{DEV_ACCOUNT}/p", QUICK)
    assert isinstance(remote, AzureRemote)
    client = remote.client
    transport = client._pipeline._transport._transport  # (the client wraps the one we gave it)
    config = transport.connection_config
    assert (config.timeout, config.read_timeout) == (0.5, 0.5)
    # Bodies are read 256 KiB at a time, as by a transport the SDK builds (not azure-core's 4 KiB).
    assert config.data_block_size == 256 * 1024
    assert client._config.retry_policy.total_retries == 9  # 10 attempts


def test_contract_an_unreachable_store_is_a_typed_error(
    tmp_path: Path, azure_env: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.gitrepo import closed_port

    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        connection_string(f"http://127.0.0.1:{closed_port()}", DEV_ACCOUNT),
    )
    filer = Filer(tmp_path / "m", "az://models/p", "azure", network=QUICK)
    filer.dump(1, "m")
    # Refused connections are retried until the stall bound, then given up on.
    with pytest.raises(RemoteUnreachableError, match=r"Azure Blob Storage at http://127\.0\.0\.1:"):
        filer.push("m")


def _body_that_stops(size: int) -> tuple[socket.socket, list[int]]:
    """A server on 127.0.0.1 that answers each GET with headers and 1,000 bytes of a ranged
    body, then goes silent (a stuck link): azure-storage-blob's own loop retries such a body."""
    server = socket.create_server(("127.0.0.1", 0))
    connections = [0]

    def handle(conn: socket.socket) -> None:
        connections[0] += 1
        with conn:
            conn.recv(65536)
            head = (
                f"HTTP/1.1 206 Partial Content\r\nContent-Length: {size}\r\n"
                f"Content-Range: bytes 0-{size - 1}/{size}\r\nx-ms-blob-type: BlockBlob\r\n"
                'x-ms-version: 2021-08-06\r\nETag: "0x1"\r\n'
                "Last-Modified: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n"
            )
            conn.sendall(head.encode() + b"x" * 1000)
            time.sleep(30)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, connections


def test_a_body_that_stops_moving_costs_the_stall_bound(azure_env: Azurite, monkeypatch) -> None:
    """download_blob retries a cut body in a loop of its own: the stall bound still ends it
    (before, three tries of each range: 17 s and 24 requests under the hooks' FAIL_FAST)."""
    size = 200_000  # one range
    server, connections = _body_that_stops(size)
    with server:
        port = server.getsockname()[1]
        monkeypatch.setenv(
            "AZURE_STORAGE_CONNECTION_STRING", connection_string(f"http://127.0.0.1:{port}")
        )
        # A second try could end past 2.5 s of silence: not started (QUICK would allow it).
        network = Network(connect_timeout=0.5, read_timeout=1.0, stall_timeout=2.5)
        remote = get_remote("azure", "az://models/p", network)
        with pytest.raises(RemoteUnreachableError, match="No answer from"):
            remote.download_from("m/" + "0" * 64 + ".pkl", 0, _Sink(), None, size)
    assert connections[0] <= 2  # the SDK's loop alone makes 3


class _Sink:
    def restart(self, offset: int) -> None:
        pass

    def write(self, data: Any) -> int:
        return len(data)


def test_an_error_keeps_no_sdk_exception_that_quotes_a_sas(tmp_path: Path, monkeypatch) -> None:
    """Error reporters walk ``__context__``: the SDK's exception, whose text may quote the SAS
    signature of the request URL, is not kept on ours."""
    sig = "SECRETSIGabcdefghijkl%2B123%3D"
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;SharedAccessSignature=sv=2021-08-06"
        f"&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig={sig}",
    )
    network = Network(connect_timeout=0.5, read_timeout=0.5, max_attempts=2, stall_timeout=2)
    with pytest.raises(RemoteError) as info:
        get_remote("azure", "az://models/p", network).size_of("m/" + "0" * 64 + ".pkl")
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert sig[:12] not in repr(info.value) + str(info.value)
