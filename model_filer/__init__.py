"""model_filer: pickle models to a folder, keep a registry in git, store the bytes remotely.

>>> from model_filer import Filer
>>> filer = Filer("models", "s3://my-bucket/models")          # doctest: +SKIP
>>> filer.dump(model, "my_model", push=True)                  # doctest: +SKIP
>>> model = filer.load("my_model")                            # doctest: +SKIP
"""

from .errors import (
    BucketNotFoundError,
    CredentialsError,
    ImmutableEntryError,
    IntegrityError,
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
    TransferError,
    TrustConfigError,
    UnknownModelError,
    UnknownRemoteTypeError,
    UntrustedModelError,
    UntrustedModelWarning,
    VersionMismatchWarning,
)
from .filer import Filer
from .registry import Entry
from .remotes import FAIL_FAST, PATIENT, Network
from .transfers import TransferReport

__version__ = "0.1.0"

__all__ = [
    "FAIL_FAST",
    "PATIENT",
    "BucketNotFoundError",
    "CredentialsError",
    "Entry",
    "Filer",
    "ImmutableEntryError",
    "IntegrityError",
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
    "TransferError",
    "TransferReport",
    "TrustConfigError",
    "UnknownModelError",
    "UnknownRemoteTypeError",
    "UntrustedModelError",
    "UntrustedModelWarning",
    "VersionMismatchWarning",
]
