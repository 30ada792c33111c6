"""model_filer: pickle models to a folder, keep a registry in git, store the bytes remotely.

>>> from model_filer import Filer
>>> filer = Filer("models", "s3://my-bucket/models")          # doctest: +SKIP
>>> filer.dump(model, "my_model", push=True)                  # doctest: +SKIP
>>> model = filer.load("my_model")                            # doctest: +SKIP
"""

import importlib
from typing import TYPE_CHECKING, Any

from model_filer.errors import (
    AliasError,
    BatchError,
    BucketNotFoundError,
    CredentialsError,
    FolderNotWritableError,
    GitError,
    ImmutableEntryError,
    IntegrityError,
    InvalidMetadataError,
    InvalidNameError,
    LocalOnlyError,
    ModelExistsError,
    ModelFilerError,
    ModelFilerWarning,
    RegistryError,
    RemoteError,
    RemoteMismatchError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
    SerializationError,
    StoreError,
    StoreWarning,
    TransferError,
    TrustConfigError,
    UnknownModelError,
    UnknownRemoteTypeError,
    UnknownRevisionError,
    UntrustedModelError,
    UntrustedModelWarning,
    UntrustedRemoteError,
    VersionMismatchWarning,
)

if TYPE_CHECKING:
    from model_filer.filer import Filer
    from model_filer.registry.model import Alias, Entry
    from model_filer.remotes import FAIL_FAST, PATIENT, Network
    from model_filer.transfer.transfers import TransferReport

__version__ = "0.1.0"

# Imported on first use (PEP 562): the git hooks import model_filer.hookapi, and a hook that
# only reads a registry should not pay for the Filer, the transfers and the object store.
_LAZY = {
    "Filer": "filer",
    "Entry": "registry.model",
    "Alias": "registry.model",
    "FAIL_FAST": "remotes",
    "PATIENT": "remotes",
    "Network": "remotes",
    "TransferReport": "transfer.transfers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'model_filer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "FAIL_FAST",
    "PATIENT",
    "Alias",
    "AliasError",
    "BatchError",
    "BucketNotFoundError",
    "CredentialsError",
    "Entry",
    "Filer",
    "FolderNotWritableError",
    "GitError",
    "ImmutableEntryError",
    "IntegrityError",
    "InvalidMetadataError",
    "InvalidNameError",
    "LocalOnlyError",
    "ModelExistsError",
    "ModelFilerError",
    "ModelFilerWarning",
    "Network",
    "RegistryError",
    "RemoteError",
    "RemoteMismatchError",
    "RemoteObjectMissingError",
    "RemoteUnreachableError",
    "SerializationError",
    "StoreError",
    "StoreWarning",
    "TransferError",
    "TransferReport",
    "TrustConfigError",
    "UnknownModelError",
    "UnknownRemoteTypeError",
    "UnknownRevisionError",
    "UntrustedModelError",
    "UntrustedModelWarning",
    "UntrustedRemoteError",
    "VersionMismatchWarning",
]
