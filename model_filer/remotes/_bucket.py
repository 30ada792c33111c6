"""What the remotes in a cloud store's bucket share: the address, its parsing and identity,
and the bounded wait on a store that stopped answering (S3 and GCS; imported by them only, so
the hooks that never transfer do not pay for it)."""

from __future__ import annotations

import contextlib
import re
from abc import abstractmethod
from collections.abc import Iterator

from model_filer.errors import InvalidNameError, RemoteMismatchError, RemoteUnreachableError
from model_filer.remotes import PATIENT, STALL_ADVICE, Network, Remote, _Stalled


class BucketRemote(Remote):
    """A remote in a cloud store's bucket: ``<scheme>://bucket/prefix``, keys under the prefix.

    Bucket names are global, so the address is the remote's identity. A subclass names its
    store for messages and builds its client in :meth:`_connect`.
    """

    scheme = ""  # "s3"
    kind = ""  # "S3", in messages about addresses
    a_kind = ""  # "An S3"
    store = ""  # "the S3 store", in messages about the store's silence
    endpoint_variable = ""  # the variable that points the client at another endpoint
    bucket_re = re.compile("")
    bucket_rule = ""  # what bucket_re allows, in words

    def __init__(self, address: str, network: Network = PATIENT) -> None:
        self.bucket, self.prefix = self.parse(address)
        super().__init__(f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/"), network)

    @classmethod
    def parse(cls, address: object) -> tuple[str, str]:
        """Split ``<scheme>://bucket/prefix``, ``bucket/prefix`` or ``bucket`` into bucket and
        prefix."""
        from model_filer.registry.names import check_key

        forms = f"Use '{cls.scheme}://bucket/prefix', 'bucket/prefix' or 'bucket'."
        if not isinstance(address, str):
            raise InvalidNameError(
                f"{cls.a_kind} address must be a string, got {type(address).__name__}. {forms}"
            )
        bucket, _, prefix = address.removeprefix(f"{cls.scheme}://").strip().partition("/")
        prefix = prefix.strip("/")
        if not cls.bucket_re.fullmatch(bucket) or ".." in bucket:
            raise InvalidNameError(
                f"Invalid {cls.kind} address {address!r}: {cls.bucket_rule} {forms}"
            )
        if prefix:
            check_key(prefix, f"{cls.kind} address {address!r}")
        return bucket, prefix

    def check_matches(
        self, recorded_address: str, registry_path: str, recorded_id: str | None = None
    ) -> None:
        try:
            recorded = self.parse(recorded_address)
        except InvalidNameError:
            recorded = ("?", recorded_address)
        if recorded != (self.bucket, self.prefix):
            raise RemoteMismatchError(
                f"{registry_path} belongs to {recorded_address!r}, but this Filer points at "
                f"{self.address!r}. Use Filer(..., {recorded_address!r}, "
                f"remote_type={self.remote_type!r}) or another local_dir."
            )

    def _full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _root(self) -> str:
        """The full keys' common start: the prefix and a slash, or nothing."""
        return f"{self.prefix}/" if self.prefix else ""

    @abstractmethod
    def _connect(self) -> None:
        """Build the client if not yet built (and set :attr:`silence` to its endpoint's)."""

    @abstractmethod
    def _endpoint(self) -> str:
        """The endpoint, for messages (no credentials)."""

    @contextlib.contextmanager
    def _waiting(self, action: str, key: str | None) -> Iterator[None]:
        """Run a call as one wait on the store; fail at once if a call just gave up on it."""
        self._connect()  # first: its endpoint names the silence clock
        if self.silence.gave_up_within(self.network.read_timeout):
            raise RemoteUnreachableError(
                f"Cannot {action} {self.address}: no answer from "
                f"{self.store} at {self._endpoint()}, on which the last call gave up a moment "
                f"ago. Check the network (a stuck VPN or proxy?) and {self.endpoint_variable}, "
                "then try again."
            )
        with self.silence.waiting():
            yield

    def _stalled(self, exc: _Stalled, action: str, where: str) -> RemoteUnreachableError:
        return RemoteUnreachableError(
            f"No answer from {self.store} at {self._endpoint()} for {exc.seconds:.0f} s to "
            f"{action} {where} (a stuck VPN or proxy?), so model_filer gave up. Check the "
            f"network and {self.endpoint_variable}, then try again. {STALL_ADVICE}"
        )
