"""Azure Blob Storage through azure-storage-blob (the extra ``ds-model-filer[azure]``).

An address is ``az://container/prefix``. The account comes from
``AZURE_STORAGE_CONNECTION_STRING``, or from ``AZURE_STORAGE_ACCOUNT`` (or the address) with
azure-identity's ``DefaultAzureCredential``. The registry records the account in the address,
``az://container@account/prefix``: a registry of one account is refused with the credentials of
another. No key, SAS token or connection string is ever put in a registry or a message.

Big uploads are staged blocks committed at the end: a killed push leaves uncommitted blocks,
which no read or listing sees (a partial upload never sits at a final key). They are harmless
rather than cleaned: the next push of the same bytes reuses them, committing discards the
others, and Azure deletes uncommitted blocks a week after their last change (no API deletes
them sooner without writing the blob). Downloads are ranged GETs, so a killed one resumes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from model_filer.errors import (
    BucketNotFoundError,
    CredentialsError,
    InvalidNameError,
    RemoteError,
    RemoteMismatchError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
)
from model_filer.registry.names import check_key
from model_filer.remotes import (
    PATIENT,
    STALL_ADVICE,
    RangedRemote,
    RemoteObject,
    Sending,
    _Stalled,
    check_stall,
    network_reason,
    silence_of,
)

if TYPE_CHECKING:
    from model_filer.remotes import Network, Progress, RangeSink, Sink
    from model_filer.remotes.sources import Source

MB = 1024 * 1024
SINGLE_PUT = 16 * MB  # below: one Put Blob (atomic); above: staged blocks, resumable
# As the SDK's own: 8 in flight hold 32 MiB, and a killed push loses at most those.
BLOCK = 4 * MB  # doubled until a blob has at most 50,000 blocks (Azure's limit)
MAX_BLOCKS = 50_000
BLOCKS_IN_FLIGHT = 8
RANGE_WINDOW = 8  # ranged GETs in flight: a kill loses at most this window
READ_BLOCK = 256 * 1024  # bodies are read and sent this much at a time
LIST_PAGE = 5000  # blobs per listing request (Azure's maximum)
CONNECTIONS = 64
CONN_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT"
EXTRA = "pip install 'ds-model-filer[azure]'"
_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
_SECRET_FIELDS = ("AccountKey", "SharedAccessSignature")
# Environment values azure-identity reads that are secrets in themselves.
_SECRET_ENV = (
    CONN_ENV,
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD",
)


def parse_address(address: str) -> tuple[str | None, str, str]:
    """Split ``az://container[@account]/prefix`` into account (or None), container and prefix."""
    if not isinstance(address, str) or not address.startswith("az://"):
        raise InvalidNameError(
            f"Invalid Azure address {address!r}. Use 'az://container/prefix' (or "
            "'az://container@account/prefix' to name the storage account)."
        )
    where, _, prefix = address[5:].strip().partition("/")
    container, _, account = where.partition("@")
    prefix = prefix.strip("/")
    if not _CONTAINER_RE.fullmatch(container) or (account and not _ACCOUNT_RE.fullmatch(account)):
        raise InvalidNameError(
            f"Invalid Azure address {address!r}: a container name is 3-63 lower-case letters, "
            "digits and single hyphens, an account name 3-24 lower-case letters and digits. "
            "Use 'az://container/prefix' or 'az://container@account/prefix'."
        )
    if prefix:
        check_key(prefix, f"Azure address {address!r}")
    return account or None, container, prefix


def _connection_fields() -> dict[str, str]:
    """``AZURE_STORAGE_CONNECTION_STRING`` as its ``Name=value`` fields."""
    text = os.environ.get(CONN_ENV, "")
    pairs = (part.partition("=") for part in text.split(";") if "=" in part)
    return {name.strip(): value.strip() for name, _, value in pairs}


def credentials_account() -> tuple[str | None, str]:
    """The account the environment's credentials are for, and the variable that says so."""
    if os.environ.get(CONN_ENV):
        fields = _connection_fields()
        if fields.get("AccountName"):
            return fields["AccountName"], CONN_ENV
        # A SAS-only string: https://<account>.blob..., or http://127.0.0.1:port/<account>.
        from urllib.parse import urlsplit

        url = urlsplit(fields.get("BlobEndpoint", ""))
        host = url.hostname or ""
        name = host.split(".")[0] if ".blob." in host else url.path.strip("/").split("/")[0]
        return name or None, CONN_ENV
    return os.environ.get(ACCOUNT_ENV) or None, ACCOUNT_ENV


def _secrets() -> set[str]:
    found = {os.environ.get(name, "") for name in _SECRET_ENV}
    fields = _connection_fields()
    found |= {fields.get(name, "") for name in _SECRET_FIELDS}
    return {s for s in found if len(s) >= 8}


def scrub(text: str) -> str:
    """Remove credential values from a message, whatever the SDK or the store put in it."""
    for secret in sorted(_secrets(), key=len, reverse=True):  # the whole string first
        text = text.replace(secret, "***")
    text = re.sub(r"(?i)\b(sig|AccountKey|SharedAccessSignature)=[^&;\s'\"]+", r"\1=***", text)
    return re.sub(r"(?i)\b(Bearer|SharedKey)\s+[^\s'\"]+", r"\1 ***", text)


class _Scrubbed(logging.Filter):
    """Rewrites a log record without credentials: urllib3 logs each URL, a SAS token's too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_SCRUBBED = _Scrubbed()
#: The loggers that see requests: urllib3's (URLs) and azure-core's (URLs, headers).
#: (A logger's filter sees only its own records, not its children's: each is named.)
_REQUEST_LOGGERS = (
    "urllib3.connectionpool",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.storage.blob._shared.policies",
)


def _scrub_logs() -> None:
    for name in _REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if _SCRUBBED not in logger.filters:
            logger.addFilter(_SCRUBBED)


def _block_size(size: int) -> int:
    """The same for every attempt, so a resumed upload's blocks line up with those staged."""
    block = BLOCK
    while -(-size // block) > MAX_BLOCKS:
        block *= 2
    return block


def _block_id(number: int, block: int) -> str:
    """One length for all (Azure requires it); the block size in it keeps attempts apart."""
    return f"model-filer-{block:011d}-{number:06d}"


class AzureRemote(RangedRemote):
    """Objects at ``az://<container>@<account>/<prefix>/<key>``."""

    remote_type = "azure"

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        account, self.container, self.prefix = parse_address(address)
        if account is None:
            account, _ = credentials_account()
        if account is None:
            raise CredentialsError(
                f"No Azure storage account for {address!r}. Set {CONN_ENV}, or "
                f"{ACCOUNT_ENV} and sign in (`az login`), or name the account in the address: "
                f"'az://{self.container}@ACCOUNT/{self.prefix}'.",
                address=address,
            )
        self.account = account
        super().__init__(f"az://{self.container}@{account}/{self.prefix}".rstrip("/"), network)
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The container's client, built on first use (azure-storage-blob takes ~0.3 s)."""
        with self._lock:
            if self._client is None:
                self._check_credentials(self.address)
                service = self._service()
                self.silence = silence_of(service.url)
                self._client = service.get_container_client(self.container)
            return self._client

    def _connect(self) -> None:
        self.client  # noqa: B018 - built now, as the bucket stores build theirs

    def _service(self) -> Any:
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise RemoteError(
                f"The Azure remote {self.address} needs the Azure SDK: {EXTRA}",
                address=self.address,
            ) from None
        _scrub_logs()
        import requests.adapters
        from azure.core.pipeline.transport import RequestsTransport

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter()
        # A pool as wide as the parallel transfers; bodies sent 256 KiB at a time (urllib3
        # reads an upload's 16 KiB at a time by default: a Python loop per read).
        adapter.init_poolmanager(CONNECTIONS, CONNECTIONS, blocksize=READ_BLOCK)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        options: dict[str, Any] = {
            # (the settings the client gives a transport it builds; azure-core's default
            # block is 4 KiB, which costs a Python loop per 4 KiB of every body read)
            "transport": RequestsTransport(
                session=session,
                session_owner=False,
                connection_timeout=self.network.connect_timeout,
                read_timeout=self.network.read_timeout,
                connection_data_block_size=READ_BLOCK,
            ),
            "retry_policy": self._retry_policy(),
            # download_blob retries a cut body in a loop of its own, outside the retry policy:
            # every request passes here first, where a stalled store is given up on.
            "raw_request_hook": self._before_request,
            "raw_response_hook": lambda _response: self.silence.heard(),
            "max_single_put_size": SINGLE_PUT,
        }
        if os.environ.get(CONN_ENV):
            try:
                return BlobServiceClient.from_connection_string(os.environ[CONN_ENV], **options)
            except ValueError:  # (its message may quote the string: never shown)
                raise CredentialsError(
                    f"{CONN_ENV} is malformed. Copy it again from the portal (Storage account "
                    "> Access keys) or `az storage account show-connection-string`.",
                    address=self.address,
                ) from None
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise RemoteError(f"Signing in to Azure needs azure-identity: {EXTRA}") from None
        url = f"https://{self.account}.blob.core.windows.net"
        return BlobServiceClient(url, credential=DefaultAzureCredential(), **options)

    def _before_request(self, _request: Any) -> None:
        """Before each request: give up on a store silent past the read timeout (as S3's
        ``before-call``); on a store that answers, every request runs."""
        if self.silence.seconds() >= self.network.read_timeout:
            check_stall(self.silence, self.network, 0.0)

    def _retry_policy(self) -> Any:
        """azure-storage's linear retry, within the network policy's attempts and stall bound."""
        from azure.core.exceptions import ClientAuthenticationError
        from azure.storage.blob import LinearRetry

        remote = self

        class _Retry(LinearRetry):
            def increment(
                self, settings: Any, request: Any, response: Any = None, error: Any = None
            ) -> bool:
                if isinstance(error, ClientAuthenticationError) and error.response is None:
                    return False  # the credential chain found nothing: it would find nothing again
                return bool(super().increment(settings, request, response, error))

            def sleep(self, settings: Any, transport: Any) -> None:
                check_stall(remote.silence, remote.network, self.get_backoff_time(settings))
                super().sleep(settings, transport)  # type: ignore[no-untyped-call]

        # 2 s +- 1 s between attempts (the SDK's default waits 15 s +- 3 s, then longer):
        # the stall bound, not the count, ends the retries of a silent store.
        return _Retry(backoff=2, random_jitter_range=1, retry_total=self.network.max_attempts - 1)

    def _check_credentials(self, registry_path: str) -> None:
        """Refuse credentials of another account than this remote's (any use of it)."""
        theirs, variable = credentials_account()
        if theirs is not None and theirs != self.account:
            raise RemoteMismatchError(
                f"{registry_path} is in Azure storage account {self.account!r}, but {variable} "
                f"is for account {theirs!r}. Use the credentials of {self.account!r}, or "
                "another local_dir for the other account's models."
            )

    @contextlib.contextmanager
    def _waiting(self, action: str, key: str | None) -> Iterator[None]:
        """Run a call as one wait on the store; fail at once if a call just gave up on it."""
        self.client  # noqa: B018 - built first: its endpoint names the silence clock
        if self.silence.gave_up_within(self.network.read_timeout):
            raise RemoteUnreachableError(
                f"Cannot {action} {self.url(key) if key else self.address}: no answer from "
                f"Azure Blob Storage at {self._endpoint()}, on which the last call gave up a "
                "moment ago. Check the network (a stuck VPN or proxy?), then try again."
            )
        with self.silence.waiting():
            yield

    def _endpoint(self) -> str:
        return scrub(str(self._client.url).rsplit("/", 1)[0]) if self._client else "?"

    def _call(self, action: str, key: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            with self._waiting(action, key):
                return fn(*args, **kwargs)
        except (AzureError, OSError, _Stalled) as exc:
            error = self._error(exc, action, key)
        raise error  # outside the except: the SDK's exception (and a SAS it quotes) is not kept

    def _blob(self, key: str) -> Any:
        return self.client.get_blob_client(self._full_key(key))

    def _full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- errors -------------------------------------------------------------------------------
    def _error(self, exc: BaseException, action: str, key: str | None = None) -> RemoteError:
        """``exc`` as our error, naming ``key`` and this remote's address, never a secret."""
        return self._translate(exc, action, key).located(key, self.address)

    def _translate(self, exc: BaseException, action: str, key: str | None) -> RemoteError:
        from azure.core import exceptions as aex

        where = self.url(key) if key else self.address
        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, _Stalled):
            return RemoteUnreachableError(
                f"No answer from Azure Blob Storage at {self._endpoint()} for "
                f"{exc.seconds:.0f} s to {action} {where} (a stuck VPN or proxy?), so "
                f"model_filer gave up. Check the network, then try again. {STALL_ADVICE}"
            )
        status = getattr(exc, "status_code", None)
        code = str(getattr(exc, "error_code", None) or status or "")
        if isinstance(exc, aex.ClientAuthenticationError) and status is None:
            # Raised by DefaultAzureCredential: no source of a token worked. Its message lists
            # each source tried (no secret in it), which says what to fix.
            return CredentialsError(
                f"No Azure credentials to {action} {where}: {scrub(exc.message)} Sign in with "
                f"`az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or "
                f"{CONN_ENV}."
            )
        if code == "ContainerNotFound":
            return self._no_container()
        if status in (401, 403):
            return CredentialsError(
                f"Azure refused our credentials ({code}) to {action} {where}. Check {CONN_ENV}, "
                f"or the role of the signed-in identity on account {self.account!r} (it needs "
                "Storage Blob Data Contributor)."
            )
        if status == 404:
            return RemoteObjectMissingError(
                f"{where} does not exist on the remote. Was it removed with "
                "remove_remote=True? Dump and push the model again."
            )
        if isinstance(exc, aex.HttpResponseError) and status is not None and status < 500:
            return RemoteError(f"Azure error {code} (HTTP {status}) to {action} {where}.")
        # The remote, not each object: a dead store is one cause for every model it stopped.
        return RemoteUnreachableError(
            f"Cannot reach Azure Blob Storage at {self._endpoint()} to {action} {self.address}: "
            f"{scrub(network_reason(exc))}. Check the network, then try again."
        )

    def _no_container(self) -> BucketNotFoundError:
        return BucketNotFoundError(
            f"Container {self.container!r} does not exist in account {self.account!r}. Create "
            f"it (`az storage container create --name {self.container} --account-name "
            f"{self.account}`) or fix the remote address.",
            address=self.address,
        )

    def _check_store(self) -> None:
        """Raise :class:`BucketNotFoundError` when the container is missing."""
        try:
            self._call("list", None, self.client.get_container_properties)
        except RemoteObjectMissingError:
            raise self._no_container() from None

    # -- the interface ----------------------------------------------------------------------
    def check_matches(
        self, recorded_address: str, registry_path: str, recorded_id: str | None = None
    ) -> None:
        try:
            recorded = parse_address(recorded_address)
        except InvalidNameError:
            recorded = (None, "?", recorded_address)
        if recorded != (self.account, self.container, self.prefix):
            raise RemoteMismatchError(
                f"{registry_path} belongs to {recorded_address!r}, but this Filer points at "
                f"{self.address!r} (the account is the one of the credentials unless the "
                f"address names it). Use Filer(..., {recorded_address!r}) with that account's "
                "credentials, or another local_dir."
            )
        self._check_credentials(registry_path)

    def put(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        size = src.size
        # Keys embed the sha256, so an object already there holds these bytes: for a big
        # file a HEAD first can save the whole upload; for a small one it only adds a round trip.
        if size >= SINGLE_PUT and self.size_of(key) == size:
            self.touch(key)
            return
        self._store_exists()  # before a PUT: some stores create a missing bucket
        blob = self._blob(key)
        if size < SINGLE_PUT:
            self._call(
                "upload to",
                key,
                blob.upload_blob,
                src.read(0, size),  # (the SDK reads a stream whole first anyway)
                length=size,
                overwrite=True,
                metadata={"sha256": sha256},
            )
            if progress is not None:
                progress(size)
            return  # (one Put Blob of its Content-Length: whole once it is answered)
        self._call("upload to", key, self._staged, src, blob, sha256, progress)
        stored = self.size_of(key)  # synced only once the blocks committed make it whole
        if stored != size:
            raise RemoteError(
                f"{self.url(key)} holds {stored} bytes after the upload of {size}. Push again.",
                key=key,
                address=self.address,
            )

    def _staged(self, src: Source, blob: Any, sha256: str, progress: Progress | None) -> None:
        """Stage the blocks the store does not hold yet (a killed push's are kept), commit."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobBlock

        size = src.size
        block = _block_size(size)
        ids = [_block_id(n, block) for n in range(-(-size // block))]
        try:
            held = {b.id: b.size for b in blob.get_block_list("uncommitted")[1]}
        except ResourceNotFoundError:
            held = {}

        def send(number: int) -> None:
            length = min(block, size - number * block)
            if held.get(ids[number]) != length:
                data = src.read(number * block, length)
                blob.stage_block(ids[number], Sending(data, self.silence), length=length)
            if progress is not None:
                progress(length)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(BLOCKS_IN_FLIGHT) as pool:
            for future in [pool.submit(send, n) for n in range(len(ids))]:
                future.result()
        blob.commit_block_list([BlobBlock(i) for i in ids], metadata={"sha256": sha256})

    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        if size is None:
            size = self.size_of(key)
            if size is None:
                raise RemoteObjectMissingError(
                    f"{self.url(key)} does not exist on the remote. Dump and push it again.",
                    key=key,
                    address=self.address,
                )
        self.download_from(key, 0, _InOrder(sink), progress, size)

    def _read_range(self, key: str, start: int, length: int) -> bytes:
        """One ranged GET (no properties first): ``download_blob`` asks for the range alone
        up to its single-GET size (32 MiB), its retries of a cut body within the stall bound."""
        from azure.core.exceptions import HttpResponseError

        try:
            stream = self._blob(key).download_blob(offset=start, length=length, max_concurrency=1)
        except HttpResponseError as exc:
            if exc.status_code == 416:  # the object ends at or before ``start``
                return b""
            raise
        data = b"".join(stream.chunks())  # (one chunk: its bytes, not copied as readall does)
        self.silence.heard()
        return data

    def _download_ranges(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        """Ranged GETs of ``offset..size`` written in order: a kill loses at most the window
        (at most 1/16 of the object), which the next attempt asks for again. Chunks of up to
        4 MiB: each GET costs azure-core ~1 ms of CPU, which smaller ones multiply."""
        chunk = max(MB // 4, min(4 * MB, size // (16 * RANGE_WINDOW)))
        blob = self._blob(key)
        started = False
        for data in self._in_order(blob, range(offset, size, chunk), chunk, size):
            if data is None:  # the object is not the registry's size
                break
            if not started:
                sink.restart(offset)
                started = True
            sink.write(data)
            self.silence.heard()
            if progress is not None:
                progress(len(data))
        else:
            if not started:
                sink.restart(offset)  # nothing left to fetch
            return
        self._stream_whole(blob, sink, progress)

    def _in_order(self, blob: Any, starts: range, chunk: int, size: int) -> Iterator[bytes | None]:
        """The chunks at ``starts``, in order, ``RANGE_WINDOW`` in flight (one: no thread)."""
        if len(starts) <= 1:
            yield from (self._get_range(blob, start, chunk, size) for start in starts)
            return
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: collections.deque[Future[bytes | None]] = collections.deque()
        with ThreadPoolExecutor(RANGE_WINDOW) as pool:
            try:
                for start in starts:
                    pending.append(pool.submit(self._get_range, blob, start, chunk, size))
                    if len(pending) == RANGE_WINDOW:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _get_range(self, blob: Any, start: int, length: int, size: int) -> bytes | None:
        """The bytes of ``start..start+length``; None when the object's size is not ``size``."""
        from azure.core.exceptions import HttpResponseError

        length = min(length, size - start)
        try:
            stream = blob.download_blob(offset=start, length=length, max_concurrency=1)
        except HttpResponseError as exc:
            if exc.status_code == 416:  # shorter than the registry says
                return None
            raise
        # (``properties.size`` is the range's length; the object's follows the '/')
        if stream.properties.content_range.rpartition("/")[2] != str(size):
            return None
        return b"".join(stream.chunks())  # (one chunk: its bytes, not copied as readall does)

    def _stream_whole(self, blob: Any, sink: RangeSink, progress: Progress | None) -> None:
        """The whole object from its start, for the caller's check to judge."""
        sink.restart(0)
        for data in blob.download_blob(max_concurrency=1).chunks():
            self.silence.heard()
            sink.write(data)
            if progress is not None:
                progress(len(data))

    def _properties(self, key: str) -> Any:
        """The blob's properties (one HEAD), or ``None`` when it does not exist."""
        try:
            return self._call("check", key, self._blob(key).get_blob_properties)
        except RemoteObjectMissingError:
            self._store_exists()  # a missing container also answers 404 to HEAD
            return None

    def stat(self, key: str) -> RemoteObject | None:
        found = self._properties(key)
        return None if found is None else RemoteObject(key, int(found.size), found.last_modified)

    def touch(self, key: str) -> None:
        # Any write of a blob's metadata moves its Last-Modified; the metadata it holds is
        # kept (Set Blob Metadata replaces all of it), with the time added.
        found = self._properties(key)
        if found is None:
            raise self._gone(key)
        metadata = dict(found.metadata or {})
        metadata["touched"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._call("touch", key, self._blob(key).set_blob_metadata, metadata)

    def list_sizes(self, prefix: str) -> dict[str, int]:
        return {o.key: o.size for o in self.list_objects(prefix)}

    def delete(self, key: str) -> None:
        try:
            self._call("delete", key, self._blob(key).delete_blob)
        except RemoteObjectMissingError:
            self._check_store()  # absent is fine; a missing container is not

    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self._call(
            "list",
            None,
            self.client.list_blobs,
            name_starts_with=root + prefix,
            results_per_page=LIST_PAGE,
        ).by_page()
        while True:  # a page is waited for, not the caller's work on it
            page = self._call("list", None, lambda: next(pages, None))
            if page is None:
                return
            for item in page:
                yield RemoteObject(item.name[len(root) :], int(item.size), item.last_modified)


class _InOrder:
    """A plain in-order :class:`Sink` as a :class:`RangeSink` that always starts at 0."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def restart(self, offset: int) -> None:
        if offset:
            raise ValueError(f"an in-order sink cannot start at {offset}")

    def write(self, data: Any) -> int:
        return self._sink.write(data)


REMOTE = AzureRemote
