"""Google Cloud Storage through the official ``google-cloud-storage`` client.

Credentials come from the client's standard chain (Application Default Credentials,
``GOOGLE_APPLICATION_CREDENTIALS``); ``STORAGE_EMULATOR_HOST`` points it at an emulator.
Nothing secret is ever written to a registry. The client is imported on first use only, so
the hooks that never transfer never import it.

A download is one streamed GET that continues from where a cut or killed one stopped. Big
uploads go as parts to temporary objects, composed into the final key at the end: a part
is never at the final key, a killed push resumes from the parts the store holds (found by one
listing; GCS cannot list resumable sessions, and a resumable session asked for its status may
commit its partial bytes), and the final object's size is checked before the upload counts.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from model_filer.errors import (
    BucketNotFoundError,
    CredentialsError,
    ModelFilerError,
    RemoteError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
    UnknownRemoteTypeError,
)
from model_filer.registry.names import is_ours
from model_filer.remotes import (
    PATIENT,
    Network,
    Progress,
    RangeSink,
    RemoteObject,
    SendingPart,
    Sink,
    _Stalled,
    check_range,
    network_reason,
    silence_of,
)
from model_filer.remotes._bucket import BucketRemote
from model_filer.remotes.sources import Source

T = TypeVar("T")
MB = 1024 * 1024
SINGLE_UPLOAD = 8 * MB  # the client's limit for one-request (atomic) uploads
SEND_CHUNK = 8 * MB  # a part bigger than that is sent in chunks of this size (256 KiB multiple)
MAX_PARTS = 32  # one compose call takes at most 32 sources
PARTS_IN_FLIGHT = 4
# A download reads its body this much at a time: big enough that the per-read overhead is
# small beside the sha256, small enough that a slow link still shows signs of life often.
READ = 256 * 1024
UPLOADS = ".model_filer_uploads"  # parts of unfinished uploads, under the remote root
ABANDONED_AFTER = 24 * 3600  # seconds before an unfinished upload's parts are deleted
MAX_BACKOFF = 20.0
_TRANSIENT_CODES = {408, 429, 500, 502, 503, 504}


def scrub(text: str) -> str:
    """Remove tokens, signatures and resumable session IDs from a message."""
    text = re.sub(r"(?i)\bbearer\s+[^\s'\"]+", "Bearer ***", text)
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'\"]*@", r"\1***@", text)
    return re.sub(
        r"(?i)(access_token|upload_id|x-goog-signature|x-goog-credential|signature)=[^&\s'\"]+",
        r"\1=***",
        text,
    )


def _part_size(size: int) -> int:
    """Parts of at least 8 MiB, at most :data:`MAX_PARTS` of them (one compose); a multiple
    of the chunk size, and the same for every attempt, so a resumed upload's parts line up."""
    return max(SEND_CHUNK, -(-size // MAX_PARTS // SEND_CHUNK) * SEND_CHUNK)


def _md5(src: Source, offset: int, length: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for at in range(offset, offset + length, MB):
        digest.update(src.read(at, min(MB, offset + length - at)))
    return base64.b64encode(digest.digest()).decode()


class GCSRemote(BucketRemote):
    """Objects at ``gs://<bucket>/<prefix>/<key>``."""

    remote_type, scheme, kind, a_kind = "gcs", "gs", "GCS", "A GCS"
    store, endpoint_variable = "Google Cloud Storage", "STORAGE_EMULATOR_HOST"
    bucket_re = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
    bucket_rule = (
        "bucket names are 3-222 characters of lower-case letters, digits, dots, hyphens and "
        "underscores."
    )

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        super().__init__(address, network)
        self._client: Any = None
        self._swept = False
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self) -> None:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
                self.silence = silence_of(self._endpoint())

    def _bucket(self) -> Any:
        """The client's bucket object, the client built on first use."""
        self._connect()
        return self._client.bucket(self.bucket)

    def _make_client(self) -> Any:
        try:
            from google.cloud import storage
        except ImportError:
            raise UnknownRemoteTypeError(
                "The 'gcs' remote needs the Google Cloud Storage client: "
                "pip install 'ds-model-filer[gcs]'"
            ) from None
        from requests.adapters import HTTPAdapter

        try:
            client = storage.Client()
        except Exception as exc:  # google.auth's DefaultCredentialsError and kin
            error = self._error(exc, "connect to", None)
            client = None
        if client is None:
            raise error  # outside the except: the client's exception is not kept as context
        # Off: a background lookup of the bucket, for tracing attributes, with the client's
        # own retries, on every call (outside the network policy; a permission more).
        client._bucket_metadata_cache = None
        # The client's own pool keeps 10 connections; parallel pulls and ranged reads use more.
        for scheme in ("http://", "https://"):
            client._http.mount(scheme, HTTPAdapter(pool_connections=4, pool_maxsize=64))
        return client

    def _endpoint(self) -> str:
        if self._client is None:
            return "?"
        return scrub(str(getattr(self._client, "api_endpoint", None) or "GCS"))

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.network.connect_timeout, self.network.read_timeout)

    def _blob(self, key: str) -> Any:
        return self._bucket().blob(self._full_key(key))

    def _attempts(self, fn: Callable[[], T]) -> T:
        """``fn`` (one request, the client's own retries off) under the network policy:
        transient faults retried up to ``max_attempts``, never past the stall bound."""
        attempt = 0
        while True:
            attempt += 1
            try:
                result = fn()
            except Exception as exc:
                if not _transient(exc) or attempt >= self.network.max_attempts:
                    raise
                backoff = min(MAX_BACKOFF, 0.5 * 2.0 ** (attempt - 1))
                silent = self.silence.seconds()
                if self.network.gives_up(silent, backoff):
                    self.silence.give_up()
                    raise _Stalled(silent) from exc
                time.sleep(backoff)
            else:
                self.silence.heard()
                return result

    def _call(self, action: str, key: str | None, fn: Callable[[], T]) -> T:
        """``fn`` with retries, its failure as our typed error."""
        try:
            with self._waiting(action, key):
                return self._attempts(fn)
        except ModelFilerError:  # ours already, or the sink's (a full local disk)
            raise
        except Exception as exc:
            error = self._error(exc, action, key)
        raise error  # outside the except: the client's exception is not kept as context

    def _error(self, exc: BaseException, action: str, key: str | None) -> RemoteError:
        """``exc`` as our error, naming ``key`` and this remote's address."""
        return self._translate(exc, action, key).located(key, self.address)

    def _translate(self, exc: BaseException, action: str, key: str | None) -> RemoteError:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        where = self.url(key) if key else self.address
        if isinstance(exc, _Stalled):
            return self._stalled(exc, action, where)
        if isinstance(exc, aexc.DefaultCredentialsError | aexc.RefreshError):
            return CredentialsError(
                f"No usable Google Cloud credentials to {action} {where}. Run `gcloud auth "
                "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                "account key file."
            )
        if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
            return CredentialsError(
                f"Google Cloud Storage refused our credentials ({exc.code}) to {action} "
                f"{where}. Check that they are the intended ones (GOOGLE_APPLICATION_CREDENTIALS"
                " or `gcloud auth application-default login`) and that they hold the bucket's "
                "Storage Object Admin role."
            )
        if isinstance(exc, gexc.NotFound):
            if action == "upload to" or key is None:
                return self._no_bucket()
            return self._gone(key)
        if _transient(exc):
            # The remote, not each object: a dead store is one cause for every model it stopped.
            return RemoteUnreachableError(
                f"Cannot reach Google Cloud Storage at {self._endpoint()} to {action} "
                f"{self.address}: {scrub(network_reason(exc))}. Check the network and "
                f"{self.endpoint_variable}, then try again."
            )
        return RemoteError(f"Failed to {action} {where}: {scrub(str(exc))}")

    def _no_bucket(self) -> BucketNotFoundError:
        return BucketNotFoundError(
            f"Bucket {self.bucket!r} does not exist. Create it "
            f"(`gcloud storage buckets create gs://{self.bucket}`) or fix the remote "
            "address.",
            address=self.address,
        )

    def _check_store(self) -> None:
        """Raise :class:`BucketNotFoundError` when the bucket is missing: a listing of one
        object, which the Storage Object roles allow (a bucket lookup needs more)."""
        bucket = self._bucket()
        self._call(
            "list",
            None,
            lambda: list(bucket.list_blobs(max_results=1, timeout=self._timeout, retry=None)),
        )

    # -- the interface ----------------------------------------------------------------------
    def stat(self, key: str) -> RemoteObject | None:
        bucket, name = self._bucket(), self._full_key(key)
        blob = self._call(
            "check", key, lambda: bucket.get_blob(name, timeout=self._timeout, retry=None)
        )
        if blob is None:
            self._store_exists()  # a missing bucket also answers 404
            return None
        return RemoteObject(key, int(blob.size), blob.updated)

    def touch(self, key: str) -> None:
        # A rewrite onto itself, with the time added to the metadata: a new generation, whose
        # ``updated`` is now on real GCS and on fake-gcs-server alike (a metadata patch moves
        # ``updated`` on real GCS only). In one location and storage class GCS copies no bytes.
        blob = self._blob(key)
        stamp = datetime.datetime.now(datetime.UTC).isoformat()

        def rewrite() -> None:
            blob.reload(timeout=self._timeout, retry=None)
            blob.metadata = {**(blob.metadata or {}), "touched": stamp}
            token = None
            while True:  # (one call where no byte moves; the loop is the API's contract)
                token, _, _ = blob.rewrite(blob, token=token, timeout=self._timeout, retry=None)
                if token is None:
                    return

        self._call("touch", key, rewrite)

    def _listing(self, prefix: str, action: str) -> list[Any]:
        """Every object whose full key starts with ``prefix``, one listing (pages of 1,000)."""
        bucket = self._bucket()

        def collect() -> list[Any]:
            return list(bucket.list_blobs(prefix=prefix, timeout=self._timeout, retry=None))

        return self._call(action, None, collect)

    def list_sizes(self, prefix: str) -> dict[str, int]:
        root = self._root()
        return {
            blob.name[len(root) :]: int(blob.size)
            for blob in self._listing(root + prefix, "list")
            if not blob.name[len(root) :].startswith(f"{UPLOADS}/")
        }

    def list_objects(self, prefix: str = "") -> Iterator[RemoteObject]:
        root = self._root()
        for blob in self._listing(root + prefix, "list"):
            key = blob.name[len(root) :]
            if not key.startswith(f"{UPLOADS}/"):  # parts of unfinished uploads: no objects
                yield RemoteObject(key, int(blob.size), blob.updated)

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        with contextlib.suppress(RemoteObjectMissingError):  # absent is fine
            self._call("delete", key, lambda: _raw(blob.delete, self._timeout))

    # -- downloads --------------------------------------------------------------------------
    def download(
        self, key: str, sink: Sink, progress: Progress | None, size: int | None = None
    ) -> None:
        self._stream(key, 0, sink, progress)

    def download_from(
        self, key: str, offset: int, sink: RangeSink, progress: Progress | None, size: int
    ) -> None:
        sink.restart(offset)
        self._stream(key, offset, sink, progress)

    def _stream(
        self, key: str, offset: int, sink: Sink | RangeSink, progress: Progress | None
    ) -> None:
        """One GET of the object from ``offset`` on, written in order as it arrives; a body
        cut short is asked again from where it stopped, so a killed download keeps every byte
        that reached the sink. The caller verifies every byte against the registry's sha256,
        so no checksum here. Our own GET through the client's authorized session, not the
        client's download: that one reads the body 8 KiB at a time, which on a fast link costs
        more CPU than the sha256 (a 1 GiB pull ran at 0.75x of ``download_to_filename`` on a
        busy 2-core machine)."""
        from google.api_core.exceptions import from_http_response

        url = self._blob(key)._get_download_url(self._client)
        session = self._client._http
        written = 0

        def rest() -> None:
            nonlocal offset, written
            start = offset + written
            # The stored bytes as they are (a gzip-stored object is not decompressed).
            headers = {"accept-encoding": "gzip"} | ({"range": f"bytes={start}-"} if start else {})
            with session.request(
                "GET", url, headers=headers, stream=True, timeout=self._timeout
            ) as response:
                if response.status_code == 416:  # nothing left: the caller judges the size
                    return
                if response.status_code >= 400:
                    raise from_http_response(response)  # type: ignore[no-untyped-call]
                if start and response.status_code != 206:  # Range ignored: the whole object
                    restart = getattr(sink, "restart", None)
                    if restart is None:  # (a plain sink cannot take its first bytes again)
                        raise RemoteError(
                            f"{self.url(key)}: the store ignored a Range request and sent "
                            "the whole object again. Try again.",
                            key=key,
                            address=self.address,
                        )
                    restart(0)
                    offset, written = 0, 0
                for chunk in response.raw.stream(READ, decode_content=False):
                    self.silence.heard()
                    sink.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(len(chunk))

        try:
            with self._waiting("download", key):
                self._attempts(rest)
        except ModelFilerError:  # ours already, or the sink's (a full local disk)
            raise
        except Exception as exc:
            error = self._error(exc, "download", key)
        else:
            return
        if isinstance(error, RemoteObjectMissingError):
            self._check_store()  # a missing bucket also answers 404
        raise error  # outside the except: the client's exception is not kept as context

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """One ranged GET through the client's authorized session, as :meth:`_stream`: a
        body cut or stalled midway is asked again whole, within the stall bound."""
        from google.api_core.exceptions import from_http_response

        check_range(start, length)
        url = self._blob(key)._get_download_url(self._client)
        session = self._client._http
        # The stored bytes as they are (a gzip-stored object is not decompressed).
        headers = {"accept-encoding": "gzip", "range": f"bytes={start}-{start + length - 1}"}

        def get() -> bytes:
            with session.request(
                "GET", url, headers=headers, stream=True, timeout=self._timeout
            ) as response:
                if response.status_code == 416:  # the object ends at or before ``start``
                    # (its body unread: the connection is closed, not pooled; fake-gcs-server
                    # closes it after a 416, and the next GET on it would be reset)
                    return b""
                if response.status_code >= 400:
                    raise from_http_response(response)  # type: ignore[no-untyped-call]
                want = self._range_body(
                    key,
                    start,
                    length,
                    response.status_code,
                    response.headers.get("content-range", ""),
                    response.headers.get("content-length", ""),
                )
                parts, left = [], want
                while left > 0 and (
                    data := response.raw.read(min(READ, left), decode_content=False)
                ):
                    self.silence.heard()
                    parts.append(data)
                    left -= len(data)
            if left > 0:  # (urllib3 raises first when the body has a Content-Length)
                import urllib3

                raise urllib3.exceptions.ProtocolError(f"body cut short: {left} of {want} missing")
            return b"".join(parts)

        try:
            with self._waiting("read", key):
                return self._attempts(get)
        except ModelFilerError:  # ours already
            raise
        except Exception as exc:
            error = self._error(exc, "read", key)
        if isinstance(error, RemoteObjectMissingError):
            self._check_store()  # a missing bucket also answers 404
        raise error  # outside the except: the client's exception is not kept as context

    # -- uploads ----------------------------------------------------------------------------
    def put(self, src: Source, key: str, sha256: str, progress: Progress | None) -> None:
        size = src.size
        # Keys embed the sha256, so an object of that size there holds these bytes: for a big
        # file a lookup first can save the whole upload; for a small one it adds a round trip.
        if size > SINGLE_UPLOAD and self.size_of(key) == size:
            self.touch(key)
            return
        self._store_exists()  # before a PUT: some stores create a missing bucket
        if size <= SINGLE_UPLOAD:
            blob = self._blob(key)
            blob.metadata = {"sha256": sha256}
            self._call("upload to", key, lambda: self._send(blob, src, 0, size))
            stored = blob.size
        else:
            stored = self._upload_parts(src, key, sha256, progress)
        if stored != size:  # never recorded synced unless the store holds every byte
            raise RemoteError(
                f"{self.url(key)} holds {stored} bytes after the upload, not {size}. Push again.",
                key=key,
                address=self.address,
            )
        if progress is not None and size <= SINGLE_UPLOAD:
            progress(size)

    def _send(self, blob: Any, src: Source, offset: int, length: int) -> None:
        """One upload of ``length`` bytes of ``src`` from ``offset`` to ``blob``: in one
        request up to 8 MiB (atomic), else in 8 MiB chunks of a resumable session."""
        blob.chunk_size = SEND_CHUNK if length > SINGLE_UPLOAD else None
        with SendingPart(src, offset, length, self.silence.heard) as body:
            blob.upload_from_file(
                body, size=length, checksum=None, timeout=self._timeout, retry=None
            )

    def _upload_parts(self, src: Source, key: str, sha256: str, progress: Progress | None) -> int:
        """Upload ``src`` as parts to temporary objects, keeping the ones a killed push left
        whole, then compose them into ``key``; return the final object's size."""
        size = src.size
        self._sweep_abandoned(keep=f"{UPLOADS}/{key}/")
        for attempt in range(2):
            names = self._send_parts(src, key, progress if attempt == 0 else None)
            # Another push of the same bytes may have composed them first, and removed the
            # parts: then the object is whole (real GCS answers 404 to a compose of a part
            # removed meanwhile; fake-gcs-server, 500).
            if self.size_of(key) == size:
                return size
            try:
                return self._compose(key, names, sha256)
            except RemoteObjectMissingError:
                if self.size_of(key) == size:
                    return size
        raise RemoteError(
            f"The parts of {self.url(key)} were removed twice while they were composed (another "
            "push of the same model?). Push again.",
            key=key,
            address=self.address,
        )

    def _send_parts(self, src: Source, key: str, progress: Progress | None) -> list[str]:
        """Send the parts of ``src`` the bucket lacks; return every part's full key."""
        size = src.size
        part = _part_size(size)
        folder = f"{self._root()}{UPLOADS}/{key}/{part}"
        held = {b.name: b for b in self._listing(f"{folder}/", "upload to")}
        names = [f"{folder}/{n:05d}" for n in range(-(-size // part))]
        lengths = [min(part, size - n * part) for n in range(len(names))]
        todo = []
        for n, (name, length) in enumerate(zip(names, lengths, strict=True)):
            blob = held.get(name)
            # Whole, and of these bytes (a part's name says where in the file it starts).
            if (
                blob is not None
                and blob.size == length
                and blob.md5_hash in (None, _md5(src, n * part, length))
            ):
                if progress is not None:
                    progress(length)
            else:
                todo.append(n)

        def send(n: int) -> None:
            blob = self._bucket().blob(names[n])
            self._call("upload to", key, lambda: self._send(blob, src, n * part, lengths[n]))
            if progress is not None:
                progress(lengths[n])

        with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
            for future in [pool.submit(send, n) for n in todo]:
                future.result()
        return names

    def _compose(self, key: str, names: list[str], sha256: str) -> int:
        """Compose the parts ``names`` into ``key`` (one request), then delete them; return
        the final object's size. :class:`RemoteObjectMissingError` when a part is gone."""
        final = self._blob(key)
        final.metadata = {"sha256": sha256}
        sources = [self._bucket().blob(name) for name in names]
        self._call(
            "compose", key, lambda: final.compose(sources, timeout=self._timeout, retry=None)
        )
        for blob in sources:
            with contextlib.suppress(Exception):
                _raw(blob.delete, self._timeout)
        return int(final.size)

    def _sweep_abandoned(self, keep: str) -> None:
        """Delete the parts of our uploads unfinished for over a day (once per remote)."""
        if self._swept:
            return
        self._swept = True
        root = self._root()
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ABANDONED_AFTER)
        for blob in self._listing(f"{root}{UPLOADS}/", "upload to"):
            rel = blob.name[len(root) + len(UPLOADS) + 1 :]
            key = rel.rsplit("/", 2)[0]
            if rel.startswith(keep[len(UPLOADS) + 1 :]) or not is_ours(key):
                continue  # the upload under way, or not a part of ours
            if blob.updated is not None and blob.updated < cutoff:
                with contextlib.suppress(Exception):
                    _raw(blob.delete, self._timeout)


def _raw(method: Callable[..., Any], timeout: tuple[float, float]) -> Any:
    return method(timeout=timeout, retry=None)


def _transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: a network fault, a timeout, a 408, 429 or 5xx."""
    import requests
    import urllib3
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import TransportError

    # urllib3's: a body cut or stalled while it is read (a streamed download).
    network = (requests.RequestException, urllib3.exceptions.HTTPError, TransportError)
    if isinstance(exc, (*network, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, GoogleAPICallError) and exc.code in _TRANSIENT_CODES


REMOTE = GCSRemote
