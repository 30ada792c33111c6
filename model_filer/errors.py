"""The exceptions and warnings model_filer raises.

Every failure a user can cause is a :class:`ModelFilerError`; its message says what happened and
what to type next, so the CLI and the hooks can print it as one line instead of a traceback.
Each one pickles with its message and fields (a worker of joblib or multiprocessing sends it
back whole), and one that means a standard condition also subclasses the standard class:
``except LookupError`` catches a missing model or object, ``except ConnectionError`` (an
``OSError``) an unreachable store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

SHOWN_NAMES = 5  # names listed per cause; the rest are counted
SHOWN_CAUSES = 5  # distinct causes listed in one bulk error
SUGGESTED = 3  # closest known names offered for an unknown one
GIT_SAID = 600  # characters of git's own message kept in a GitError


def _rebuilt(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An error of ``cls`` with ``args``, its ``__init__`` not called (unpickling)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class ModelFilerError(Exception):
    """Base class of every error model_filer raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's reduce calls cls(*self.args): wrong for an error whose __init__ takes
        # fields and builds the message from them. Rebuild it from its args and fields instead.
        return _rebuilt, (type(self), self.args), self.__dict__


class InvalidNameError(ModelFilerError, ValueError):
    """A model name, object key or address is malformed or would escape its folder."""


class InvalidMetadataError(ModelFilerError, ValueError):
    """Metrics, params, tags or a description that the registry cannot hold as given."""


class AliasError(ModelFilerError, LookupError):
    """An alias that names no model, or bytes its model no longer holds."""


def name_list(names: Iterable[str], shown: int = SHOWN_NAMES) -> str:
    """``a, b, c and 7 more``: a bounded list for one line of a message."""
    names = list(names)
    head = ", ".join(names[:shown])
    return f"{head} and {len(names) - shown} more" if len(names) > shown else head


def close_names(names: Sequence[str], known: Sequence[str]) -> dict[str, list[str]]:
    """The known names closest to each unknown one (difflib's ratio, best first).

    Only the first few unknown names are looked up: each look-up reads every known name.
    """
    import difflib  # only for a message: most runs never build one

    found = {n: difflib.get_close_matches(n, known, SUGGESTED) for n in names[:SHOWN_NAMES]}
    return {n: close for n, close in found.items() if close}


def _either(names: Sequence[str]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def _did_you_mean(suggestions: Mapping[str, list[str]], asked: int) -> str:
    if not suggestions:
        return ""
    if asked == 1:
        (close,) = suggestions.values()
        return f" Did you mean {_either(close)}?"
    parts = [f"{_either(close)} for {name!r}" for name, close in suggestions.items()]
    return f" Did you mean {'; '.join(parts)}?"


class UnknownModelError(ModelFilerError, KeyError):
    """The registry has no entry of that name (or names); also a ``KeyError``.

    Attributes
    ----------
    names : list of str
        The names asked for that the registry does not have.
    registry : str
        The registry file (with ``@ <rev>`` when read from git history).
    known : list of str
        The names the registry does have.
    suggestions : dict of str to list of str
        For each unknown name that resembles known ones, the closest (best first).
    """

    def __init__(
        self,
        names: str | Iterable[str],
        registry: object,
        known: Iterable[str] = (),
        *,
        rev: str | None = None,
        consequence: str = "",
        hint: str = "Run filer.show_files() or `model-filer status` to list them.",
    ) -> None:
        self.names = [names] if isinstance(names, str) else sorted(names)
        self.registry = str(registry)
        self.known = sorted(known)
        self.rev = rev
        self.suggestions = close_names(self.names, self.known)
        where = f"{self.registry} at revision {rev!r}" if rev else self.registry
        what = ", ".join(map(repr, self.names))
        known_text = name_list(self.known, 20) or "none"
        mean = _did_you_mean(self.suggestions, len(self.names))
        super().__init__(
            f"No model {what} in {where}{consequence}.{mean} Known there: {known_text}. {hint}"
        )

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
    """Bytes do not match the size or sha256 the registry records.

    Attributes
    ----------
    name : str or None
        The model.
    expected, actual : tuple of (int or None, str) or None
        ``(size, sha256)`` the registry records and what the bytes are.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        expected: tuple[int | None, str] | None = None,
        actual: tuple[int | None, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.name = name
        self.expected = expected
        self.actual = actual


class RegistryError(ModelFilerError):
    """A registry file cannot be read: bad YAML, conflict markers, wrong fields or types.

    Attributes
    ----------
    path : str or None
        The registry file (as its reader named it: a path, or a path and a revision).
    """

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


@contextlib.contextmanager
def about_registry(path: object) -> Iterator[None]:
    """Give a :class:`RegistryError` raised in the block ``path`` when it names none.

    The parser's many checks know where they are in the file, not which file it is.
    """
    try:
        yield
    except RegistryError as exc:
        if exc.path is None:
            exc.path = str(path)
        raise


class UnknownRemoteTypeError(ModelFilerError, ValueError):
    """No remote module of that type exists."""


class RemoteError(ModelFilerError):
    """The remote store failed or refused an operation.

    Attributes
    ----------
    key : str or None
        The object's key, when one object was concerned.
    address : str or None
        The remote's address (``s3://bucket/prefix`` or a folder; never credentials).
    """

    def __init__(self, message: str, *, key: str | None = None, address: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.address = address

    def located(self, key: str | None, address: str) -> RemoteError:
        """This error, with ``key`` and ``address`` filled in where it had none."""
        self.key = self.key if self.key is not None else key
        self.address = self.address if self.address is not None else address
        return self


class RemoteUnreachableError(RemoteError, ConnectionError):
    """The remote store could not be reached (network, DNS, timeout, server errors).

    Also a ``ConnectionError``, and so an ``OSError``, as the standard library's are.
    """


class CredentialsError(RemoteError):
    """No credentials were found, or the store refused them."""


class BucketNotFoundError(RemoteError):
    """The bucket or remote folder does not exist."""


class RemoteObjectMissingError(RemoteError, LookupError):
    """A ``synced`` entry's object is not on the remote; also a ``LookupError``."""


class TransferError(ModelFilerError):
    """Some models of a bulk push or pull failed; every cause is kept as data.

    Attributes
    ----------
    action : str
        ``"push"`` or ``"pull"``.
    failures : dict of str to ModelFilerError
        Model name -> what went wrong for it.
    """

    def __init__(self, action: str, failures: Mapping[str, ModelFilerError]) -> None:
        self.action = action
        self.failures = dict(sorted(failures.items()))
        by_cause: dict[str, list[str]] = {}
        for name, error in self.failures.items():
            by_cause.setdefault(str(error), []).append(name)
        # Most common cause first: a dead remote is one sentence, not one per model.
        groups = sorted(by_cause.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
        parts = [f"{cause} ({name_list(names)})" for cause, names in groups[:SHOWN_CAUSES]]
        if len(groups) > SHOWN_CAUSES:
            parts.append(f"and {len(groups) - SHOWN_CAUSES} other causes")
        count = len(self.failures)
        noun = "model" if count == 1 else "models"
        super().__init__(f"{count} {noun} failed to {action}: " + "; ".join(parts))

    def causes(self) -> set[type[ModelFilerError]]:
        """The kinds of error behind the failures."""
        return {type(e) for e in self.failures.values()}


class RemoteMismatchError(ModelFilerError):
    """The Filer's remote differs from the one the registry was made with."""


class FolderNotWritableError(ModelFilerError):
    """A model must be written into a folder this process cannot write (a read-only copy)."""


class UntrustedRemoteError(ModelFilerError):
    """A registry names a remote, or an address, that this clone has not been told to trust."""


class ModelFilerWarning(UserWarning):
    """Base class of model_filer's warnings."""


class VersionMismatchWarning(ModelFilerWarning):
    """The running Python or model library differs from the one that dumped the model."""


class UnknownRevisionError(ModelFilerError):
    """A git revision names no commit in the repository (history, issue 10)."""


class GitError(ModelFilerError):
    """A git command failed; ``git_args``, ``returncode`` and ``stderr`` say which and why."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.git_args = list(args)
        self.returncode = returncode
        self.stderr = stderr
        # All of git's lines: its first says why, a later one often the command that fixes
        # it (a repository owned by another user: `git config --global --add safe.directory`).
        said = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
        if len(said) > GIT_SAID:
            said = said[: GIT_SAID - 3] + "..."
        super().__init__(f"git {args[0]} failed: {said or f'exit status {returncode}'}")


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
    why : str
        Why the defaults leave out some of ``untrusted`` (``trust.NOT_BY_DEFAULT``), or "".
    """

    def __init__(
        self, name: str, untrusted: list[str], never: list[str], fix: str, why: str = ""
    ) -> None:
        self.name, self.untrusted, self.never, self.fix = name, untrusted, never, fix
        self.why = why
        parts = [f"Model {name!r} was not loaded: nothing in it ran."]
        if untrusted:
            parts.append(
                f"Its pickle imports {', '.join(untrusted)}, outside the trusted set. "
                f"{why + ' ' if why else ''}If you "
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


class BatchError(ModelFilerError):
    """A call that cannot run inside ``filer.batch()`` (the registry is held for the block)."""


class StoreError(ModelFilerError):
    """The local object store cannot be used (unwritable, full, deleted, misconfigured).

    Attributes
    ----------
    root : str
        The store's folder.
    action : str
        What was being done when it failed.
    """

    def __init__(self, root: object, action: str, cause: object) -> None:
        self.root = str(root)
        self.action = action
        reason = getattr(cause, "strerror", None) or str(cause)
        super().__init__(
            f"The local model store {self.root} cannot be used ({action}: {reason}). Make it "
            "writable and free some space (`model-filer cache prune --max-size 10GB`), or "
            "point MODEL_FILER_CACHE_DIR at another folder."
        )


class StoreWarning(ModelFilerWarning):
    """The local store was skipped: models were fetched or copied directly instead."""
