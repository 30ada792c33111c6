"""Unpickling that imports only the trusted set, and listing what a pickle imports.

Loading takes two steps. First the opcodes are scanned, payloads skipped with a seek, and
every global the pickle names is judged by name: a refused pickle runs nothing at all. Then
CPython's C unpickler (as fast as ``pickle.load``, no buffer copied) runs with ``find_class``
replaced: each global is judged again by name before its module is imported, and a
glob-trusted one must resolve to a class defined in a trusted module. A pickle of millions of
small objects skips the first step (a Python scan would cost more than the load); the second
alone still imports and calls nothing untrusted.

A trusted function may be called by a pickle, with arguments of its choosing: the defaults
trust only functions that compute over arrays (``trust.DEFAULT_FUNCTIONS``), and leave out,
with the reason, those that would not be safe to call so (``trust.NOT_BY_DEFAULT``).

``EXT1/2/4`` opcodes are refused: one whose code is in ``copyreg._extension_cache`` would skip
``find_class`` entirely. Without registered extensions (the standard library and the ML stack
register none) the unpickler cannot resolve them anyway.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import importlib
import io
import os
import pickle
import pickletools
import sys
from collections.abc import Callable, Iterable
from pickle import whichmodule  # type: ignore[attr-defined]  # public, not in typeshed
from types import BuiltinFunctionType, BuiltinMethodType, FunctionType, MethodType, ModuleType
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from model_filer.errors import UntrustedModelError, UntrustedModelWarning
from model_filer.pickles import torch_weights, trust
from model_filer.pickles.trust import TrustedSet, _Refused, is_safe_name

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

_CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024
_MAX_STRING = 4096  # longer strings cannot be names: skipped, never read
PRESCAN_BUDGET = 256 * 1024  # bytes of opcodes: a 50 MB, 90-tree forest has 25 KiB beside payloads


class Scan(NamedTuple):
    """What a pickle's opcodes import: ``(module, qualname)`` pairs and ``EXT`` codes."""

    imports: frozenset[tuple[str, str]]
    ext: tuple[int, ...]
    computed: bool = False  # a STACK_GLOBAL whose names are not plain strings of the stream
    buffers: int = 0  # out-of-band buffers: written after it (dump), NEXT_BUFFER opcodes (scan)

    def names(self) -> list[str]:
        """The imports as a sorted ``module.qualname`` list."""
        return sorted({f"{m}.{q}" for m, q in self.imports})

    def opaque(self) -> list[str]:
        """What no pattern can trust beside the imports: ``EXT`` codes, computed names."""
        listed = [f"EXT opcode {code} (copyreg extension)" for code in self.ext]
        computed = "a global whose name is computed while loading (STACK_GLOBAL)"
        return [*listed, computed] if self.computed else listed


# -- resolving a global --------------------------------------------------------------------
def _compat(module: str, name: str) -> tuple[str, str]:
    """Python 2 names (``__builtin__.set``, ``copy_reg``) as protocol 0-2 pickles write them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _walk(module: str, qualname: str) -> Any:
    """Import ``module`` (already judged trusted) and follow ``qualname``, never into a module."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
        if isinstance(obj, ModuleType):
            raise _Refused(f"{module}.{qualname}", "reached through a module attribute")
    return obj


def _class_attribute(obj: object, name: object, *default: object) -> Any:
    """``builtins.getattr`` as pickles may use it: a classmethod of a trusted class.

    zoneinfo, pandas and others pickle ``Class.constructor`` as ``getattr(Class, name)``;
    ``Class`` can only be a trusted class, having come through ``find_class``.
    """
    full = f"getattr({getattr(obj, '__qualname__', type(obj).__name__)}, {name!r})"
    if default or not isinstance(obj, type) or not isinstance(name, str):
        raise _Refused(full, "builtins.getattr on something other than a class")
    if not is_safe_name(obj.__module__, f"{obj.__qualname__}.{name}"):
        raise _Refused(full, "a dunder name")
    value = getattr(obj, name)
    if not (isinstance(value, MethodType | BuiltinMethodType) and value.__self__ is obj):
        raise _Refused(full, "builtins.getattr of something other than a classmethod")
    return value


class _NeverObjects:
    """The never-list by identity: each row's object, once its module is imported.

    Only modules already in ``sys.modules`` are looked at, and through their ``__dict__``
    (no module ``__getattr__``): checking a pickle never imports a library it does not name.
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, str]]] = {}  # module: (qualname, why)
        specs = {**trust.NEVER_BY_SPEC}
        for served in trust.SERVED:  # found under their own name: _screened serves them
            module, _, qualname = served.rpartition(".")
            specs[f"{module}:{qualname}"] = served
        for spec, why in specs.items():
            module, _, qualname = spec.partition(":")
            self.rows.setdefault(module, []).append((qualname, why))
        self.seen: dict[str, object] = {}  # module name: the module object its rows came from
        self.found: dict[int, tuple[object, str]] = {}

    def _refresh(self) -> None:
        """Resolve the rows of modules imported (or imported again) since the last call."""
        for name, rows in self.rows.items():
            module = sys.modules.get(name)
            if module is None or self.seen.get(name) is module:
                continue
            for qualname, why in rows:
                obj: Any = module
                for part in qualname.split("."):
                    obj = vars(obj).get(part) if hasattr(obj, "__dict__") else None
                if obj is not None:
                    self.found[id(obj)] = (obj, why)  # kept alive here: ids stay unique
            self.seen[name] = module

    def reason(self, obj: object) -> str | None:
        """Why ``obj`` is never trusted (its row, a base class, or its defining package);
        ``None`` if not.

        A served object (``torch.storage._load_from_bytes``) gives its own name.
        """
        self._refresh()
        hit = self.found.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if isinstance(obj, type):  # a subclass of a never-trusted base (its MRO, by name)
            for base in obj.__mro__:
                spec = f"{getattr(base, '__module__', '')}:{base.__qualname__}"
                if spec in trust.NEVER_BASES_BY_SPEC:
                    return trust.NEVER_BASES_BY_SPEC[spec]
        module = getattr(obj, "__module__", None)
        if isinstance(obj, type | FunctionType | BuiltinFunctionType) and isinstance(module, str):
            return trust.never_module(module)
        return None


_NEVER = _NeverObjects()


def _screened(obj: Any, full: str) -> Any:
    """``obj``, or its safe substitute; raise :class:`_Refused` if it is never trusted."""
    why = _NEVER.reason(obj)
    if why is None:
        return obj
    if why in trust.SERVED:
        return torch_weights.load_from_bytes
    raise _Refused(full, why)


def _by_name(module: str, qualname: str, trusted: TrustedSet) -> _Refused | None:
    """The check of a global by its name alone, before anything is imported."""
    module, qualname = _compat(module, qualname)
    if trusted.admits_name(module, qualname):
        return None
    return _Refused(f"{module}.{qualname}", trust.never_reason(f"{module}.{qualname}"))


def resolve(module: str, name: str, trusted: TrustedSet) -> Any:
    """The global ``module.name`` if ``trusted`` allows it; raise :class:`_Refused` otherwise.

    Judged by name before any import; a glob-trusted name must then be a class defined in a
    trusted module (its own ``__module__``), so a glob never trusts a function or a module
    attribute such as ``sklearn.utils.os.system``. Whatever a name resolves to is then
    checked against the never-list by identity (``posix.system`` is ``os.system``), and
    ``torch.storage._load_from_bytes`` is replaced by its safe substitute.
    """
    module, name = _compat(module, name)
    full = f"{module}.{name}"
    why = trust.never_reason(full)
    if why is not None:
        raise _Refused(full, why)
    sys.audit("pickle.find_class", module, name)
    if trusted.is_exact(module, name):
        obj = _walk(module, name)
        return _class_attribute if obj is getattr else _screened(obj, full)
    cls = trusted.pyx_class(module, name)
    if cls is not None:  # Cython's module.__pyx_unpickle_C, trusted because module.C is
        klass, obj = resolve(module, cls, trusted), _walk(module, name)
        if not (isinstance(klass, type) and callable(obj)) or (
            getattr(obj, "__module__", None) != klass.__module__
        ):
            raise _Refused(full)  # not a reconstructor beside its class
        return _screened(obj, full)
    if not trusted.glob_covers(module, name):
        raise _Refused(full)
    obj = _walk(module, name)
    if not isinstance(obj, type):
        raise _Refused(full)  # a function: trusted by its exact name only
    if not trusted.glob_covers(obj.__module__, obj.__qualname__):
        raise _Refused(full)  # defined elsewhere, or a class the defaults leave out
    return _screened(obj, full)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], trusted: TrustedSet, buffers: Iterable[Any] | None) -> None:
        super().__init__(fh, buffers=buffers)
        self._trusted = trusted

    def find_class(self, module: str, name: str) -> Any:
        return resolve(module, name, self._trusted)


# -- scanning opcodes --------------------------------------------------------------------------
# Each opcode byte's role in the scan and its argument: a fixed size (>= 0), a line (-1), or a
# length of 1, 4 or 8 bytes before the data (pickletools' TAKEN_FROM_ARGUMENT* codes).
_OTHER, _STRING, _NAMES, _STACK_GLOBAL, _MEMOIZE, _PUT, _GET, _EXT, _STOP, _QUIET, _BUFFER = range(
    11
)
_ROLE = {
    **dict.fromkeys(("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"), _STRING),
    **dict.fromkeys(("STRING", "BINSTRING", "SHORT_BINSTRING"), _STRING),
    **dict.fromkeys(("GLOBAL", "INST"), _NAMES),
    "STACK_GLOBAL": _STACK_GLOBAL,
    "MEMOIZE": _MEMOIZE,
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), _PUT),
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _GET),
    **dict.fromkeys(("EXT1", "EXT2", "EXT4"), _EXT),
    "STOP": _STOP,
    **dict.fromkeys(("PROTO", "FRAME"), _QUIET),
    "NEXT_BUFFER": _BUFFER,
}
_NO_ARG = -9
_TABLE: list[tuple[int, int] | None] = [None] * 256
for _op in pickletools.opcodes:
    _TABLE[_op.code.encode("latin-1")[0]] = (
        _ROLE.get(_op.name, _OTHER),
        _NO_ARG if _op.arg is None else _op.arg.n,
    )
_LENGTH_BYTES = {-2: 1, -3: 4, -4: 4, -5: 8}


def _arg_bytes(table: list[tuple[int, int] | None], buf: bytes, pos: int) -> int:
    """How many bytes after the opcode at ``pos`` must be in the buffer (near the end)."""
    info = table[buf[pos]] if pos < len(buf) else (0, 1 << 30)
    if info is None:
        return 0
    n = info[1]
    return n if n >= 0 else _LENGTH_BYTES.get(n, 0)


class _OverBudget(Exception):
    """The opcodes outgrew the scan's budget."""


class _Reader:
    """A pickle's bytes, read in chunks; large arguments are skipped with a seek, never read."""

    def __init__(self, fh: IO[bytes], budget: int | None = None) -> None:
        self.fh, self.buf, self.pos = fh, b"", 0
        self.budget = budget  # bytes of opcodes to read at most (skipped payloads are free)
        self.chunk = _CHUNK

    def _read(self, n: int) -> bytes:
        more = self.fh.read(max(n, self.chunk))
        self.chunk = min(2 * self.chunk, _CHUNK)
        if self.budget is not None:
            self.budget -= len(more)
            if self.budget < 0:
                raise _OverBudget
        return more

    def fill(self, n: int) -> bytes:
        """Make ``n`` bytes from ``pos`` available in ``buf`` if the stream has them."""
        if len(self.buf) - self.pos < n:
            more = self._read(n - (len(self.buf) - self.pos))
            self.buf, self.pos = self.buf[self.pos :] + more, 0
        return self.buf

    def need(self, n: int) -> None:
        """Make ``n`` bytes from ``pos`` available in ``buf``, or fail."""
        if len(self.fill(n)) - self.pos < n:
            raise EOFError("pickle data was truncated")

    def skip(self, n: int) -> None:
        left = len(self.buf) - self.pos
        if self.budget is not None:
            self.budget += min(n, left)  # payload bytes read ahead do not count
        if n <= left:
            self.pos += n
        else:
            self.fh.seek(n - left, os.SEEK_CUR)
            self.buf, self.pos = b"", 0
            self.chunk = 512  # what follows a payload is often the next payload's header

    def line(self) -> bytes:
        while (end := self.buf.find(b"\n", self.pos)) < 0:
            if len(self.buf) - self.pos > _MAX_LINE:
                raise pickle.UnpicklingError("pickle line too long")
            more = self._read(1)
            if not more:
                raise EOFError("pickle data was truncated")
            self.buf, self.pos = self.buf[self.pos :] + more, 0
        data = self.buf[self.pos : end]
        self.pos = end + 1
        return data


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scan(fh: IO[bytes], budget: int | None = None) -> Scan:
    """List the globals and ``EXT`` codes of the pickle at ``fh``'s position, running nothing.

    ``STACK_GLOBAL`` takes its names from the stack: the two values pushed just before it, as
    picklers write them (strings, or memo copies of strings). Those are exactly what the
    unpickler will use; when they are anything else, ``computed`` is set. With ``budget``,
    raise ``_OverBudget`` after that many bytes of opcodes (payloads are skipped, not read).
    """
    r = _Reader(fh, budget)
    computed = False
    imports: set[tuple[str, str]] = set()
    ext: list[int] = []
    buffers = 0
    memo: dict[int, str | None] = {}
    last: str | None = None  # the last two values pushed, when they are strings
    before: str | None = None
    table = _TABLE
    while True:
        buf = r.buf if len(r.buf) - r.pos >= 9 else r.fill(9)  # an opcode and its size
        pos = r.pos
        if len(buf) - pos < 9 and len(buf) - pos < 1 + _arg_bytes(table, buf, pos):
            raise EOFError("pickle data was truncated")
        info = table[buf[pos]]
        if info is None:
            raise pickle.UnpicklingError(f"invalid opcode {buf[pos]:#x}")
        role, n = info
        r.pos = pos = pos + 1
        value: str | None = None
        if n >= 0:  # a fixed-size argument, already in the buffer (at most 8 bytes)
            r.pos = pos + n
            if role == _GET:
                value = memo.get(int.from_bytes(buf[pos : pos + n], "little"))
            elif role == _PUT:
                memo[int.from_bytes(buf[pos : pos + n], "little")] = last
                continue
            elif role == _EXT:
                ext.append(int.from_bytes(buf[pos : pos + n], "little", signed=n == 4))
            elif role == _QUIET:
                continue
        elif n == _NO_ARG:
            if role == _MEMOIZE:
                memo[len(memo)] = last
                continue
            if role == _STACK_GLOBAL:
                if before is None or last is None:
                    computed = True
                else:
                    imports.add((before, last))
            elif role == _BUFFER:
                buffers += 1
            elif role == _STOP:
                return Scan(frozenset(imports), tuple(ext), computed, buffers)
        elif n == pickletools.UP_TO_NEWLINE:
            raw = r.line()
            if role == _NAMES:
                second = r.line()
                imports.add((raw.decode("utf-8", "replace"), second.decode("utf-8", "replace")))
            elif role == _STRING:
                value = _text(raw.strip(b"'\"") if buf[pos - 1] == ord("S") else raw)
            elif role in (_PUT, _GET):
                if role == _PUT:
                    memo[int(raw)] = last
                    continue
                value = memo.get(int(raw))
        else:  # data preceded by its length
            width = _LENGTH_BYTES[n]
            size = int.from_bytes(buf[pos : pos + width], "little", signed=n == -3)
            r.pos = pos + width
            if size < 0:
                raise pickle.UnpicklingError("negative byte count")
            if role == _STRING and size <= _MAX_STRING:
                r.need(size)
                value = _text(r.buf[r.pos : r.pos + size])
                r.pos += size
            else:
                r.skip(size)
        before, last = last, value


def _scan_quietly(fh: IO[bytes], start: int) -> Scan | None:
    try:
        fh.seek(start)
        return scan(fh)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError):
        return None


# -- listing imports while pickling ----------------------------------------------------------
class RecordingPickler(pickle.Pickler):
    """The C pickler, noting each global it writes: what :func:`scan` would list, for free.

    ``reducer_override`` sees every object the pickler does not handle itself (not the plain
    containers, strings and numbers): classes and functions, written as globals, and the
    objects it reduces, whose reduction is computed here once, as the pickler would (copyreg
    first, then ``__reduce_ex__``), and handed to it. A reduction that is a string is a
    global too; a tuple's callable comes back through here.

    With ``out_of_band``, torch's storage bytes are written after the pickle (:attr:`buffers`).
    """

    def __init__(
        self,
        file: SupportsWrite[bytes],
        protocol: int | None = None,
        out_of_band: bool = False,
        **kwargs: Any,
    ) -> None:
        if out_of_band:
            kwargs["buffer_callback"] = self._in_band
        super().__init__(file, protocol, **kwargs)
        protocol = pickle.DEFAULT_PROTOCOL if protocol is None else protocol
        self._protocol = pickle.HIGHEST_PROTOCOL if protocol < 0 else protocol
        self._imports: set[tuple[str, str]] = set()
        self._out_of_band = out_of_band and self._protocol >= 5
        # id of a placeholder: it (kept alive), and what makes its bytes
        self._placeholders: dict[int, tuple[pickle.PickleBuffer, Callable[[], bytes]]] = {}
        self.buffers: list[Callable[[], bytes]] = []  # each makes one out-of-band buffer

    def _in_band(self, buffer: pickle.PickleBuffer) -> bool:
        """``buffer_callback``: torch's storage bytes go out of band, all else in band."""
        made = self._placeholders.pop(id(buffer), None)
        if made is None:
            return True
        self.buffers.append(made[1])
        return False

    def _placeholder_for(self, loader: Any, make: Callable[[], bytes]) -> Any:
        """``(_load_from_bytes, (placeholder,))``: the pickler writes ``NEXT_BUFFER`` for the
        writable placeholder, and ``make`` gives the bytes when written after the pickle."""
        placeholder = pickle.PickleBuffer(bytearray())
        self._placeholders[id(placeholder)] = (placeholder, make)
        return loader, (placeholder,)

    def _note(self, obj: Any, name: str) -> None:
        self._imports.add((whichmodule(obj, name), name))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | FunctionType):
            self._note(obj, obj.__qualname__)
            return NotImplemented
        reduce = copyreg.dispatch_table.get(type(obj))
        storage: Any = None  # torch.storage, when its bytes may go out of band
        if self._out_of_band and reduce is None:
            storage = sys.modules.get("torch.storage")
        if storage is not None and type(obj) in (storage.TypedStorage, storage.UntypedStorage):
            # a storage, by its exact type before it is reduced: its bytes are made once,
            # when written after the pickle (not all held in memory meanwhile)
            return self._placeholder_for(
                storage._load_from_bytes, lambda: obj.__reduce_ex__(self._protocol)[1][0]
            )
        value = reduce(obj) if reduce is not None else obj.__reduce_ex__(self._protocol)
        if isinstance(value, str):
            self._note(obj, value)
        elif (  # reduced to (_load_from_bytes, (bytes,)), as a storage of a subclass is
            storage is not None
            and type(value) is tuple
            and len(value) == 2
            and value[0] is storage._load_from_bytes
            and len(value[1]) == 1
            and isinstance(value[1][0], bytes)
        ):
            data = value[1][0]
            return self._placeholder_for(value[0], lambda: data)
        return value

    def scan(self) -> Scan:
        """What was written: the globals, and the EXT codes copyreg turned some into."""
        registry: dict[tuple[str, str], int] = getattr(copyreg, "_extension_registry", {})
        ext = tuple(sorted(code for key, code in registry.items() if key in self._imports))
        return Scan(frozenset(self._imports), ext, buffers=len(self.buffers))


# -- loading -------------------------------------------------------------------------------
def _listed(refusals: Iterable[_Refused]) -> tuple[list[str], list[str]]:
    """The names refused that a pattern could trust, and those none can (with the reason)."""
    untrusted: set[str] = set()
    never: dict[str, str] = {}  # name: why no pattern can trust it (its first refusal's)
    for refused in refusals:
        if refused.never:
            never.setdefault(refused.full, refused.never)
        else:
            untrusted.add(refused.full)
    return sorted(untrusted), [f"{n} ({why})" for n, why in sorted(never.items())]


def _refusal(
    name: str, trusted: TrustedSet, found: Scan | None, refused: _Refused | None
) -> UntrustedModelError:
    """The error for a refused pickle: ``refused`` and every global of ``found`` refused by
    name, with the ``EXT`` codes and computed names."""
    refusals = [] if refused is None else [refused]
    for module, qualname in found.imports if found is not None else ():
        by_name = _by_name(module, qualname, trusted)
        refusals += [] if by_name is None else [by_name]
    untrusted, never = _listed(refusals)
    never += found.opaque() if found is not None else []
    return UntrustedModelError(
        name, untrusted, never, trusted.fix(untrusted), trust.not_by_default(untrusted)
    )


def load(
    fh: IO[bytes], trusted: TrustedSet, name: str, buffers: Iterable[Any] | None = None
) -> Any:
    """Unpickle from ``fh`` importing only ``trusted``; else raise :class:`UntrustedModelError`.

    First the opcodes are scanned (payloads skipped with a seek) and every global they name
    is judged by name, so a refused pickle runs nothing at all; then the C unpickler runs with
    ``find_class`` checking each global again, and classes for real. A pickle with more than
    ``PRESCAN_BUDGET`` bytes of opcodes (millions of small objects, where a Python scan would
    cost several loads) skips the first step: ``find_class`` alone still never imports nor
    calls anything untrusted, though trusted reconstructors before the refused global run.
    ``trusted.everything`` (``"*"`` for this call) is a plain ``pickle.load``. ``buffers``
    are the file's out-of-band buffers (torch storages), as lazy slices of it.
    """
    if trusted.everything:  # the caller trusted everything, explicitly
        plain = None if buffers is None else [b.read_all() for b in buffers]
        return pickle.load(fh, buffers=plain)  # noqa: S301
    start = fh.tell()
    try:
        found: Scan | None = scan(fh, PRESCAN_BUDGET)
    except _OverBudget:
        fh.seek(start)  # EXT codes could skip find_class if copyreg cached one: scan them all
        extensions = getattr(copyreg, "_inverted_registry", True) or getattr(
            copyreg, "_extension_cache", True
        )
        found = scan(fh) if extensions else None
    fh.seek(start)
    if found is not None and (
        found.opaque() or any(_by_name(m, q, trusted) is not None for m, q in found.imports)
    ):
        raise _refusal(name, trusted, found, None)
    if found is not None and isinstance(buffers, torch_weights.Buffers):
        buffers.expect(found.buffers)  # as many as the pickle takes, or the file is not ours
    try:
        return _Unpickler(fh, trusted, buffers).load()
    except _Refused as exc:  # by find_class, or inside _load_from_bytes (torch's unpickler)
        raise _refusal(name, trusted, found or _scan_quietly(fh, start), exc) from None
    except Exception:
        found = found or _scan_quietly(fh, start)  # an EXT the unpickler could not resolve?
        if found is not None and found.ext:
            raise _refusal(name, trusted, found, None) from None
        raise


def loads(data: bytes, trusted: TrustedSet, name: str = "<bytes>") -> Any:
    """:func:`load` from bytes."""
    return load(io.BytesIO(data), trusted, name)


def warn_untrusted(model_name: str, found: Scan, trusted: TrustedSet, stacklevel: int = 2) -> None:
    """Warn with :class:`UntrustedModelWarning` when ``load`` would refuse this pickle made
    here (its modules are already loaded)."""
    import warnings

    refusals = []
    for module, qualname in found.imports:
        try:
            resolve(module, qualname, trusted)
        except _Refused as exc:
            refusals.append(exc)
        except (ImportError, AttributeError):  # not importable by name: load would fail too
            refusals.append(_Refused(f"{module}.{qualname}", "cannot be imported by that name"))
    fixable, never = _listed(refusals)
    never += found.opaque()
    parts = []
    if fixable:
        why = trust.not_by_default(fixable)
        parts.append(
            f"imports {', '.join(fixable)}, outside the trusted set. {why + ' ' if why else ''}"
            f"To trust them, add to pyproject.toml:\n{trusted.fix(fixable)}"
        )
    if never:
        parts.append(f"uses {', '.join(never)}, which no pattern can trust")
    if parts:
        warnings.warn(
            f"Model {model_name!r} will be refused by load(): it " + "; it ".join(parts),
            UntrustedModelWarning,
            stacklevel=stacklevel + 1,
        )
