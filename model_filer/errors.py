"""The exceptions and warnings model_filer raises.

Every failure a user can cause is a :class:`ModelFilerError`; its message says what happened and
what to type next, so the CLI and the hooks can print it as one line instead of a traceback.
"""

from __future__ import annotations


class ModelFilerError(Exception):
    """Base class of every error model_filer raises on purpose."""


class InvalidNameError(ModelFilerError, ValueError):
    """A model name, object key or address is malformed or would escape its folder."""


class UnknownModelError(ModelFilerError, KeyError):
    """The registry has no entry of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ModelExistsError(ModelFilerError):
    """A ``local`` entry of that name exists and ``overwrite`` was not asked for."""


class SerializationError(ModelFilerError):
    """The model cannot be pickled."""


class ImmutableEntryError(ModelFilerError):
    """A ``synced`` entry cannot be overwritten."""


class LocalOnlyError(ModelFilerError):
    """The entry is ``local``: its bytes exist only on the machine that dumped it."""


class IntegrityError(ModelFilerError):
    """Bytes do not match the size or sha256 the registry records."""


class RegistryError(ModelFilerError):
    """A registry file cannot be read: bad YAML, conflict markers, wrong fields or types."""


class UnknownRemoteTypeError(ModelFilerError, ValueError):
    """No remote module of that type exists."""


class RemoteError(ModelFilerError):
    """The remote store failed or refused an operation."""


class RemoteUnreachableError(RemoteError):
    """The remote store could not be reached (network, DNS, timeout, server errors)."""


class CredentialsError(RemoteError):
    """No credentials were found, or the store refused them."""


class BucketNotFoundError(RemoteError):
    """The bucket or remote folder does not exist."""


class RemoteObjectMissingError(RemoteError):
    """A ``synced`` entry's object is not on the remote."""


class RemoteMismatchError(ModelFilerError):
    """The Filer's remote differs from the one the registry was made with."""


class ModelFilerWarning(UserWarning):
    """Base class of model_filer's warnings."""


class VersionMismatchWarning(ModelFilerWarning):
    """The running Python or model library differs from the one that dumped the model."""


class TrustConfigError(ModelFilerError, ValueError):
    """A trust pattern (``[tool.model_filer] trusted`` or ``trusted=``) is malformed."""


class UntrustedModelError(ModelFilerError):
    """A model's pickle imports globals outside the trusted set; none of its code ran.

    Attributes
    ----------
    name : str
        The model.
    untrusted : list of str
        Each ``module.qualname`` it imports that the trusted set does not cover.
    never : list of str
        What can never be trusted by name (dunder names, names reached through a module,
        ``EXT`` opcodes); only ``trusted=["*"]`` loads such a pickle.
    fix : str
        The ``pyproject.toml`` lines that would trust ``untrusted``.
    """

    def __init__(self, name: str, untrusted: list[str], never: list[str], fix: str) -> None:
        self.name, self.untrusted, self.never, self.fix = name, untrusted, never, fix
        parts = [f"Model {name!r} was not loaded: nothing in it ran."]
        if untrusted:
            parts.append(
                f"Its pickle imports {', '.join(untrusted)}, outside the trusted set. If you "
                f"trust the model's author and these names, add to pyproject.toml:\n{fix}\n"
                "or pass trusted=[...] to load() for one call."
            )
        if never:
            parts.append(
                f"It uses {', '.join(never)}, which no pattern can trust; only "
                'trusted=["*"] (trust everything) loads it. Ask its author how it was made.'
            )
        super().__init__(" ".join(parts))


class UntrustedModelWarning(ModelFilerWarning):
    """A dumped model imports globals outside the trusted set: load will refuse it."""
