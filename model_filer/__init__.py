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
    TrustConfigError,
    UnknownModelError,
    UnknownRemoteTypeError,
    UntrustedModelError,
    UntrustedModelWarning,
    VersionMismatchWarning,
)
from .filer import Filer, TransferReport
from .registry import Entry

__version__ = "0.1.0"

__all__ = [
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
    "RegistryError",
    "RemoteError",
    "RemoteMismatchError",
    "RemoteObjectMissingError",
    "RemoteUnreachableError",
    "SerializationError",
    "TransferReport",
    "TrustConfigError",
    "UnknownModelError",
    "UnknownRemoteTypeError",
    "UntrustedModelError",
    "UntrustedModelWarning",
    "VersionMismatchWarning",
]
