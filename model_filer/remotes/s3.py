"""Amazon S3 and S3-compatible stores (MinIO, Ceph, R2, SeaweedFS) through boto3.

Credentials, region and endpoint come from boto3's standard chain (environment, profiles,
instance roles, ``AWS_ENDPOINT_URL``); nothing of ours to configure and nothing secret is ever
written to a registry. Transfers go through boto3's transfer manager (multipart, parallel,
bounded memory); botocore retries transient faults.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import io
import os
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from model_filer.errors import (
    BucketNotFoundError,
    CredentialsError,
    RemoteError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
)
from model_filer.registry.names import is_ours
from model_filer.remotes import (
    PATIENT,
    RangedRemote,
    RemoteObject,
    SendingPart,
    _Stalled,
    check_stall,
    network_reason,
    silence_of,
)
from model_filer.remotes import Sending as _Sending
from model_filer.remotes._bucket import BucketRemote

if TYPE_CHECKING:
    from model_filer.remotes import Network, Progress, RangeSink, Sink
    from model_filer.remotes.sources import Source

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MAX_COPY = 5 * 1024**3  # CopyObject's limit (touch)
CHUNK = 256 * 1024  # a body is read this much at a time: each piece is a sign of life
SMALL_OBJECT = 4 * 1024 * 1024  # read whole in one GET: 16 in parallel hold at most 64 MiB
RANGE_WINDOW = 8  # ranged GETs in flight while resuming a download
UPLOAD_PARTS_IN_FLIGHT = 8
ABANDONED_AFTER = 24 * 3600  # seconds before an unfinished upload of ours is aborted
MB = 1024 * 1024
# s3transfer TransferConfig settings (the benchmark's raw-boto3 baseline uses the same).
# Uploads: 8 MiB parts, 8 in flight: near line rate on a LAN, ~80 MiB resident.
UPLOAD_SETTINGS: dict[str, int] = {
    "multipart_threshold": MULTIPART_THRESHOLD,
    "multipart_chunksize": 8 * MB,
    "max_request_concurrency": 8,
}
# Downloads: every one takes the ranged path (threshold 1 byte): into a non-seekable sink it
# writes in order and drops what a retried part re-sends, where the single-GET path would
# write those bytes twice. At most 8 parts wait in memory (~64 MiB), however many are in flight.
DOWNLOAD_SETTINGS: dict[str, int] = {
    "multipart_threshold": 1,
    "multipart_chunksize": 8 * MB,
    "max_request_concurrency": 16,
    "max_in_memory_download_chunks": 8,
    "max_io_queue_size": 64,
}
_CRED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "Forbidden",
    "403",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
MAX_BACKOFF = 20.0  # botocore's standard mode sleeps up to min(20, 2 ** (attempts - 1)) s


def _part_size(size: int) -> int:
    """Parts of 8 MiB, doubled until at most 10,000 (S3's limit); the same for every attempt,
    so a resumed upload's parts line up with the ones the store holds."""
    part = 8 * MB
    while -(-size // part) > 10_000:
        part *= 2
    return part


def parse_address(address: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix``, ``bucket/prefix`` or ``bucket`` into bucket and prefix."""
    return S3Remote.parse(address)


# Secrets of the credentials our clients resolved (profile, SSO, role...), beside the
# environment's: a store may echo any of them back in an error message.
_RESOLVED_SECRETS: set[str] = set()


# A whole-object GET whose bytes the caller verifies (every download's are: see
# Remote.download) skips botocore's CRC32 of its body, CPU that a 1 GiB pull of chunks paid
# on top of the sha256, and that s3transfer's ranged GETs never pay. Marked by this
# parameter, which never reaches the request.
_VERIFIED = "ModelFilerVerified"


def _mark_verified(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """botocore's ``provide-client-params``: note a GET marked :data:`_VERIFIED`."""
    if params.pop(_VERIFIED, False):
        context[_VERIFIED] = True


def _skip_crc(context: dict[str, Any], **_: Any) -> None:
    """botocore's ``before-call``: no response checksum for a GET marked verified."""
    if context.get(_VERIFIED):
        context.get("checksum", {}).pop("response_algorithms", None)


def _timestamp(value: Any) -> Any:
    """botocore's timestamp parser, without dateutil for the two forms S3 sends.

    A header's ``Wed, 02 Dec 2026 03:50:39 GMT`` and a listing's ISO 8601 time take the
    standard library (~10 µs); dateutil took ~0.1 ms for each, paid once per GET of a pull
    and once per object listed by ``check-remote-models``. They give the instant and offset
    botocore's parser gives. Anything else, or a time without a zone, goes to that parser.
    """
    import email.utils  # (not on the hooks' path: botocore has imported it by now)

    if isinstance(value, str):
        try:
            parsed = (
                email.utils.parsedate_to_datetime(value)
                if value.endswith("GMT")
                else datetime.datetime.fromisoformat(value)
            )
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


def _secrets() -> set[str]:
    from_env = {os.environ.get(k, "") for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    found = {v for v in from_env | _RESOLVED_SECRETS if len(v) >= 8}
    # An endpoint's own password (http://user:password@proxy), however it is spelled: its
    # '@' or '/' would stop the URL pattern of scrub() early.
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if "@" in endpoint:
        from urllib.parse import unquote

        userinfo = endpoint.partition("://")[2].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        found |= {p for p in (password, unquote(password)) if p}
    return found


def _remember_secrets(session: Any) -> None:
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        _RESOLVED_SECRETS.update(v for v in (frozen.secret_key, frozen.token) if v)


def scrub(text: str) -> str:
    """Remove credential values from a message, whatever boto3 put in it."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    # A URL's user:password@ (AWS_ENDPOINT_URL through a proxy that takes basic auth).
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'\"]*@", r"\1***@", text)
    return re.sub(r"(?i)(signature|x-amz-security-token|credential)=[^&\s'\"]+", r"\1=***", text)


class S3Remote(RangedRemote, BucketRemote):
    """Objects at ``s3://<bucket>/<prefix>/<key>``."""

    remote_type = scheme = kind = "s3"
    kind, a_kind, store, endpoint_variable = "S3", "An S3", "the S3 store", "AWS_ENDPOINT_URL"
    bucket_re = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
    bucket_rule = (
        "bucket names are 3-63 characters of lower-case letters, digits, dots and hyphens."
    )

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        super().__init__(address, network)
        self._client: Any = None
        self._managers: dict[str, Any] = {}
        self._swept = False
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """An S3 client, built on first use (botocore takes ~0.2 s to import).

        Built from a botocore session: the same credential and config chain as boto3's, without
        importing boto3 and s3transfer until a transfer needs them (~0.1 s of every pull).
        """
        with self._lock:
            if self._client is None:
                import botocore.session
                from botocore.config import Config

                config = Config(
                    # (botocore's "max_attempts" counts retries; this counts attempts)
                    retries={"mode": "standard", "total_max_attempts": self.network.max_attempts},
                    # Pinned, whatever AWS_RESPONSE_CHECKSUM_VALIDATION says: with
                    # "when_required", s3transfer (0.18+) downloads the first part before
                    # scheduling the rest and deadlocks on a streamed object of over 10 parts.
                    # Every download is checked against the registry's sha256 anyway.
                    response_checksum_validation="when_supported",
                    connect_timeout=self.network.connect_timeout,
                    read_timeout=self.network.read_timeout,
                    max_pool_connections=64,
                    # Bucket, keys and arguments are checked by us before any call; botocore's
                    # own check of every request's parameters is CPU a 1,000-model pull pays.
                    parameter_validation=False,
                )
                from botocore.exceptions import BotoCoreError

                try:
                    session = botocore.session.get_session()
                    _remember_secrets(session)
                    parsers = session.get_component("response_parser_factory")
                    parsers.set_parser_defaults(timestamp_parser=_timestamp)
                    client = session.create_client("s3", config=config)
                except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
                    raise self._error(exc, "connect to", None) from None
                self.silence = silence_of(client.meta.endpoint_url)
                # First, before botocore's own retry handler: a stall past the policy's
                # bound raises here, which no layer retries.
                client.meta.events.register_first("needs-retry.s3", self._after_attempt)
                client.meta.events.register_first("before-call.s3", self._before_call)
                client.meta.events.register("provide-client-params.s3.GetObject", _mark_verified)
                client.meta.events.register_last("before-call.s3.GetObject", _skip_crc)
                self._client = client
            return self._client

    # -- the stall bound (see model_filer.remotes.Network) --------------------------------------
    def _after_attempt(
        self, attempts: int, caught_exception: BaseException | None = None, **_: Any
    ) -> None:
        """botocore's ``needs-retry``: an answer is a sign of life; a failure may be the last."""
        if caught_exception is None:
            self.silence.heard()  # any answer, an error status too
        else:
            self._check_stall(min(MAX_BACKOFF, 2.0 ** (attempts - 1)))

    def _before_call(self, **_: Any) -> None:
        """botocore's ``before-call``: bounds s3transfer's retries of a stalled body, and the
        calls that follow one that stalled (a call's first attempt itself always runs)."""
        if self.silence.seconds() >= self.network.read_timeout:
            self._check_stall(0.0)

    def _check_stall(self, backoff: float) -> None:
        """Raise :class:`_Stalled` if another attempt could end past the stall bound."""
        check_stall(self.silence, self.network, backoff)

    def _connect(self) -> None:
        self.client  # noqa: B018 - built on first use

    def _endpoint(self) -> str:
        return scrub(str(self._client.meta.endpoint_url)) if self._client is not None else "?"

    def _read(self, body: Any, size: int) -> bytearray:
        """A body of ``size`` bytes, read a piece at a time: each piece is a sign of life.
        Into one buffer: joining the pieces would hold the body twice (8 reads of 16 MiB in
        flight, 256 MiB).

        A body cut short raises botocore's ``IncompleteReadError`` (as ``read()`` does).
        """
        out = bytearray(size)
        with memoryview(out) as view:
            got = 0
            while got < size and (data := body.read(min(CHUNK, size - got))):
                self.silence.heard()
                view[got : got + len(data)] = data
                got += len(data)
        del out[got:]  # (a body that ended early: the caller sees the length)
        return out

    def _manager(self, kind: str) -> Any:
        """The transfer manager for uploads or downloads, shared by all threads."""
        client = self.client
        with self._lock:
            if kind not in self._managers:
                from s3transfer.manager import TransferConfig, TransferManager

                settings = UPLOAD_SETTINGS if kind == "upload" else DOWNLOAD_SETTINGS
                # s3transfer's retries of a cut or stalled body obey the same policy (the
                # stall bound is checked before each of its GETs too).
                config = TransferConfig(**settings, num_download_attempts=self.network.max_attempts)
                self._managers[kind] = TransferManager(client, config)
            return self._managers[kind]

    def _subscribers(self, progress: Progress | None) -> list[Any]:
        """Every chunk s3transfer moves is a sign of life, and goes to ``progress`` if any."""
        from s3transfer.subscribers import BaseSubscriber  # (boto3's own wrapper is 6 lines)

        callback = progress
        heard = self.silence.heard

        class _Progress(BaseSubscriber):  # type: ignore[misc]
            def on_progress(self, bytes_transferred: int, **kwargs: Any) -> None:
                if bytes_transferred > 0:  # (a retry takes back what it will fetch again)
                    heard()
                if callback is not None:
                    callback(bytes_transferred)

        return [_Progress()]

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> RemoteError:
        """``exc`` as our error, naming ``key`` and this remote's address."""
        return self._translate(exc, action, key).located(key, self.address)

    def _translate(self, exc: BaseException, action: str, key: str | None) -> RemoteError:
        from botocore import exceptions as bex

        where = self.url(key) if key else self.address
        if isinstance(exc, RemoteError):
            return exc  # already ours (e.g. raised while building the client)
        if isinstance(exc, _Stalled):
            return self._stalled(exc, action, where)
        if isinstance(exc, bex.ProfileNotFound):
            return CredentialsError(
                f"{scrub(str(exc))}. Set AWS_PROFILE to a profile in ~/.aws/config, or unset "
                "it and use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
            )
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return CredentialsError(
                f"No AWS credentials found to {action} {where}. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run `aws configure`."
            )
        if isinstance(exc, bex.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_BUCKET_CODES:
                return self._no_bucket()
            if code in _CRED_CODES:
                return CredentialsError(
                    f"The store refused our credentials ({code}) to {action} {where}. Check "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the bucket policy."
                )
            if code in _MISSING_CODES:
                return RemoteObjectMissingError(
                    f"{where} does not exist on the remote. Was it removed with "
                    "remove_remote=True? Dump and push the model again."
                )
            return RemoteError(f"S3 error {code} to {action} {where}: {scrub(str(exc))}")
        if isinstance(exc, bex.BotoCoreError | OSError):
            # The remote, not each object: a dead store is one cause for every model it stopped.
            return RemoteUnreachableError(
                f"Cannot reach the S3 store at {self._endpoint()} to {action} {self.address}: "
                f"{scrub(network_reason(exc))}. Check the network and AWS_ENDPOINT_URL, then "
                "try again."
            )
        return RemoteError(f"Failed to {action} {where}: {scrub(str(exc))}")

    def _no_bucket(self) -> BucketNotFoundError:
        return BucketNotFoundError(
            f"Bucket {self.bucket!r} does not exist. Create it "
            f"(`aws s3 mb s3://{self.bucket}`) or fix the remote address.",
            address=self.address,
        )

    def _check_store(self) -> None:
        from botocore.exceptions import ClientError

        try:
            with self._waiting("list", None):
                self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES | _MISSING_BUCKET_CODES:
                raise self._no_bucket() from None
            raise self._error(exc, "list", None) from None
        except Exception as exc:
            raise self._error(exc, "list", None) from None

    def _call(self, action: str, key: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import RetriesExceededError, S3UploadFailedError

        try:
            with self._waiting(action, key):
                return fn(*args, **kwargs)
        except (BotoCoreError, ClientError, OSError, _Stalled) as exc:
            raise self._error(exc, action, key) from None
        except (RetriesExceededError, S3UploadFailedError) as exc:
            cause = getattr(exc, "last_exception", None) or exc.__cause__ or exc.__context__
            if isinstance(cause, BotoCoreError | ClientError | OSError | _Stalled):
                raise self._error(cause, action, key) from None
            raise RemoteUnreachableError(
                f"Failed to {action} {self.url(key or '')}: {scrub(str(exc))}. Try again.",
                key=key,
                address=self.address,
            ) from None

    # -- the interface ----------------------------------------------------------------------
    def put(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        with self._waiting("upload to", key):
            self._upload(src, key, sha256, progress)

    def _upload(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        size = src.size
        # Keys embed the sha256, so an object already there holds these bytes: for a big
        # file a HEAD first can save the whole upload; for a small one it only adds a round trip.
        if size >= MULTIPART_THRESHOLD and self.size_of(key) == size:
            if size <= MAX_COPY:  # (no copy renews a bigger one: gc's objects are smaller)
                self.touch(key)
            return
        self._store_exists()  # before a PUT: some stores create a missing bucket
        if size >= MULTIPART_THRESHOLD:
            self._call("upload to", key, self._upload_resumable, src, key, sha256, progress)
            return
        if size <= SMALL_OBJECT:  # one PUT: s3transfer's futures cost more than a chunk's bytes
            self._call("upload to", key, self._put_small, src, key, sha256, progress)
            return
        with io.BufferedReader(SendingPart(src, 0, size, self.silence.heard), MB) as body:
            future = self._manager("upload").upload(
                body,
                self.bucket,
                self._full_key(key),
                extra_args={"Metadata": {"sha256": sha256}},
                subscribers=self._subscribers(progress),
            )
            self._call("upload to", key, future.result)

    def _put_small(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        data = src.read(0, src.size)
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._full_key(key),
            Body=_Sending(data, self.silence),
            Metadata={"sha256": sha256},
        )
        if progress is not None:
            progress(len(data))

    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        try:
            with self._waiting("download", key):
                self._download(key, sink, progress, size)
        except RemoteObjectMissingError:
            self._check_store()  # a missing bucket also answers 404 to HEAD
            raise

    def _download(self, key: str, sink: Sink, progress: Progress | None, size: int | None) -> None:
        small = size is not None and size <= SMALL_OBJECT
        if small and self._call("download", key, self._get_small, key, sink, progress, size):
            return
        # A non-seekable sink makes s3transfer write parts in order (deduplicating what
        # a retried part re-sends), so the caller hashes while the transfer runs.
        future = self._manager("download").download(
            self.bucket, self._full_key(key), sink, subscribers=self._subscribers(progress)
        )
        self._call("download", key, future.result)

    def _read_range(self, key: str, start: int, length: int) -> bytearray:
        """One ranged GET (no HEAD, no s3transfer), its body read a piece at a time: each
        piece is a sign of life, and a body cut or stalled midway is asked again, as
        :meth:`_get_range` does, within the stall bound (checked before each GET)."""
        from botocore.exceptions import ClientError
        from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

        full, asked = self._full_key(key), f"bytes={start}-{start + length - 1}"
        for _ in range(self.network.max_attempts):  # a body cut short: as s3transfer
            try:
                response = self.client.get_object(  # (the caller checks the bytes)
                    Bucket=self.bucket, Key=full, Range=asked, **{_VERIFIED: True}
                )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "InvalidRange" or status == 416:
                    return bytearray()  # the object ends at or before ``start``
                raise
            with contextlib.closing(response["Body"]) as body:
                want = self._range_body(
                    key,
                    start,
                    length,
                    response["ResponseMetadata"]["HTTPStatusCode"],
                    str(response.get("ContentRange") or ""),
                    str(response.get("ContentLength", "")),
                )
                try:
                    data = self._read(body, want)
                except S3_RETRYABLE_DOWNLOAD_ERRORS:
                    continue
            if len(data) == want:
                return data
        raise RemoteUnreachableError(
            f"The store kept cutting {self.url(key)} short. Check the network, then try again.",
            key=key,
            address=self.address,
        )

    # -- resumable transfers (see model_filer.transfer.resume) --------------------------------
    def _download_ranges(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        """Ranged GETs of ``offset..size``, a few in flight, written in order: a kill loses at
        most the window (at most 1/32 of the object), which the next attempt asks for again."""
        from concurrent.futures import Future, ThreadPoolExecutor

        chunk = max(MB // 4, min(4 * MB, size // (32 * RANGE_WINDOW)))
        starts = iter(range(offset, size, chunk))
        pending: collections.deque[Future[tuple[bool, Any]]] = collections.deque()
        with ThreadPoolExecutor(RANGE_WINDOW) as pool:

            def ask() -> None:
                start = next(starts, None)
                if start is not None:
                    end = min(start + chunk, size) - 1
                    pending.append(pool.submit(self._get_range, key, start, end, size))

            for _ in range(RANGE_WINDOW):
                ask()
            started = False
            while pending:
                honoured, data = pending.popleft().result()
                if not honoured:  # the whole object came: the server ignores Range
                    for future in pending:
                        future.cancel()
                    for future in pending:
                        if not future.cancelled() and future.exception() is None:
                            future.result()[1].close()
                    self._stream_whole(data, sink, progress)
                    return
                if not started:
                    sink.restart(offset)
                    started = True
                sink.write(data)
                if progress is not None:
                    progress(len(data))
                ask()

    def _get_range(self, key: str, start: int, end: int, size: int) -> tuple[bool, Any]:
        """``(True, bytes)`` of ``start..end``, or ``(False, body)``: an unread body of the
        whole object, when the store sent that instead (no 206 with our ``Content-Range``)."""
        from botocore.exceptions import ClientError
        from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

        full = self._full_key(key)
        for _ in range(self.network.max_attempts):  # a body cut short: as s3transfer
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={start}-{end}"
                )
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) != "InvalidRange":
                    raise
                # Shorter than the registry says: fetch it whole, the caller's check judges it.
                return False, self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
            status = response["ResponseMetadata"]["HTTPStatusCode"]
            content_range = str(response.get("ContentRange") or "")
            if status != 206 or content_range != f"bytes {start}-{end}/{size}":
                return False, response["Body"]
            with contextlib.closing(response["Body"]) as body:
                try:
                    data = self._read(body, end - start + 1)
                except S3_RETRYABLE_DOWNLOAD_ERRORS:
                    continue
            if len(data) == end - start + 1:
                return True, data
        raise RemoteUnreachableError(
            f"The store kept cutting {self.url(key)} short. Check the network, then try again "
            "(the bytes already fetched are kept).",
            key=key,
            address=self.address,
        )

    def _stream_whole(self, body: Any, sink: RangeSink, progress: Progress | None) -> None:
        sink.restart(0)
        with contextlib.closing(body):
            for data in body.iter_chunks(MB):
                self.silence.heard()
                sink.write(data)
                if progress is not None:
                    progress(len(data))

    def _upload_resumable(
        self, src: Source, key: str, sha256: str, progress: Progress | None
    ) -> None:
        from botocore.exceptions import ClientError

        for attempt in range(2):
            try:
                self._multipart(src, key, sha256, progress)
                return
            except ClientError as exc:
                # Another pusher of the same bytes resumed the same upload and completed (or
                # aborted) it under us: done if the object is whole, else once more afresh.
                if str(exc.response.get("Error", {}).get("Code", "")) != "NoSuchUpload":
                    raise
                if self.size_of(key) == src.size:
                    return
                if attempt == 1:
                    raise

    def _multipart(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        """A multipart upload that continues one a killed push left on the store.

        The key embeds the sha256, so an unfinished upload to it is of these bytes; each part it
        holds is kept only if its ETag is the MD5 of our part (else sent again). Unfinished
        uploads of ours older than a day are aborted.
        """
        size = src.size
        part = _part_size(size)
        full = self._full_key(key)
        client = self.client
        self._abort_abandoned(except_key=full)
        upload_id, held = self._unfinished_upload(full)
        if upload_id is None:
            upload_id = client.create_multipart_upload(
                Bucket=self.bucket, Key=full, Metadata={"sha256": sha256}
            )["UploadId"]
        count = max(1, -(-size // part))
        etags: dict[int, str] = {}
        for number, (etag, length) in held.items():
            if number > count or length != min(part, size - (number - 1) * part):
                continue
            data = src.read((number - 1) * part, length)
            if etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest():
                etags[number] = etag
                if progress is not None:
                    progress(length)
        todo = [n for n in range(1, count + 1) if n not in etags]

        def send(number: int) -> None:
            start = (number - 1) * part
            length = min(part, size - start)
            # Buffered: the SDK reads 8-16 KiB at a time (to sign, checksum and send the part),
            # and one Python read per MiB is cheaper than one per 16 KiB.
            raw = SendingPart(src, start, length, self.silence.heard)
            with io.BufferedReader(raw, buffer_size=MB) as body:
                response = client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
                )
            etags[number] = response["ETag"]
            if progress is not None:
                progress(length)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(UPLOAD_PARTS_IN_FLIGHT) as pool:
            for future in [pool.submit(send, n) for n in todo]:
                future.result()
        client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=full,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]},
        )

    def _uploads(self, prefix: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        found: list[dict[str, Any]] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(page.get("Uploads") or [])
        return found

    def _unfinished_upload(self, full: str) -> tuple[str | None, dict[int, tuple[str, int]]]:
        """The newest unfinished upload to ``full`` and its parts: number -> (ETag, size)."""
        uploads = [u for u in self._uploads(full) if u.get("Key") == full]
        if not uploads:
            return None, {}
        newest = max(uploads, key=lambda u: u.get("Initiated") or 0)
        parts: dict[int, tuple[str, int]] = {}
        paginator = self.client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.bucket, Key=full, UploadId=newest["UploadId"]):
            for p in page.get("Parts") or []:
                parts[int(p["PartNumber"])] = (str(p["ETag"]), int(p["Size"]))
        return str(newest["UploadId"]), parts

    def _abort_abandoned(self, except_key: str) -> None:
        """Abort uploads to our object keys that started over a day ago (once per remote)."""
        if self._swept:
            return
        self._swept = True
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ABANDONED_AFTER)
        root = self._root()
        for upload in self._uploads(root):
            ukey = str(upload.get("Key", ""))
            initiated = upload.get("Initiated")
            if ukey == except_key or not is_ours(ukey[len(root) :]):
                continue  # not an object key of ours: never touch another tool's upload
            if isinstance(initiated, datetime.datetime) and initiated < cutoff:
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=ukey, UploadId=upload["UploadId"]
                    )

    def _get_small(self, key: str, sink: Sink, progress: Progress | None, size: int) -> bool:
        """Fetch a small object with one GET (s3transfer would add a HEAD round trip, which
        doubles the time of pulling many small models); False, having written nothing, when
        the object is larger than ``size`` bytes (a compressed chunk's bound: at most its size
        plus one), so the full path streams it for the caller to judge.
        """
        from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

        attempts = self.network.max_attempts  # a body cut short: as s3transfer
        for attempt in range(attempts):
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._full_key(key), **{_VERIFIED: True}
            )
            with contextlib.closing(response["Body"]) as stream:
                length = response.get("ContentLength")
                if not isinstance(length, int) or length > size:
                    return False
                try:
                    data = self._read(stream, length)
                except S3_RETRYABLE_DOWNLOAD_ERRORS:
                    data = bytearray()
            if len(data) == length:
                break
            if attempt == attempts - 1:  # the body was cut short every time
                raise RemoteUnreachableError(
                    f"The store kept cutting {self.url(key)} short ({len(data)} of {length} "
                    "bytes). Check the network, then try again.",
                    key=key,
                    address=self.address,
                )
        sink.write(data)
        if progress is not None:
            progress(len(data))
        return True

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD answer, or ``None`` when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            with self._waiting("check", key):
                head: dict[str, Any] = self.client.head_object(
                    Bucket=self.bucket, Key=self._full_key(key)
                )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                self._store_exists()  # a missing bucket also answers 404 to HEAD
                return None
            raise self._error(exc, "check", key) from None
        except Exception as exc:
            raise self._error(exc, "check", key) from None
        return head

    def stat(self, key: str) -> RemoteObject | None:
        head = self._head(key)
        if head is None:
            return None
        return RemoteObject(key, int(head["ContentLength"]), head["LastModified"])

    def touch(self, key: str) -> None:
        # A copy onto itself is S3's one way to renew Last-Modified without sending the
        # bytes again; it must change something, so the metadata is replaced by itself plus
        # the time (objects up to MAX_COPY: packs, maps and small models).
        head = self._head(key)
        if head is None:
            raise self._gone(key)
        full = self._full_key(key)
        metadata = dict(head.get("Metadata") or {})
        metadata["touched"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._call(
            "touch",
            key,
            self.client.copy_object,
            Bucket=self.bucket,
            Key=full,
            CopySource={"Bucket": self.bucket, "Key": full},
            Metadata=metadata,
            MetadataDirective="REPLACE",
            **({"ContentType": head["ContentType"]} if head.get("ContentType") else {}),
        )

    def list_sizes(self, prefix: str) -> dict[str, int]:
        root = self._root()
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        sizes: dict[str, int] = {}

        def collect() -> None:
            for page in pages:  # up to 1,000 keys a request
                for item in page.get("Contents", ()):
                    sizes[item["Key"][len(root) :]] = int(item["Size"])

        self._call("list", prefix or None, collect)
        return sizes

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._full_key(key)
        )

    # -- listing for the garbage collector (issue 10) ------------------------------------------
    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        root = self._root()
        pages = self._call("list", None, self.client.get_paginator, "list_objects_v2")
        try:
            listing = iter(pages.paginate(Bucket=self.bucket, Prefix=root + prefix))
            while True:
                with self._waiting("list", None):  # only while a page is asked, not consumed
                    page = next(listing, None)
                if page is None:
                    return
                for item in page.get("Contents", []):
                    key = item["Key"][len(root) :]
                    yield RemoteObject(key, int(item["Size"]), item["LastModified"])
        except Exception as exc:
            raise self._error(exc, "list", None) from None


REMOTE = S3Remote
