"""The trusted set: which globals a model's pickle may import.

Trust comes only from what the user controls: built-in defaults for the common ML stack, the
project's ``[tool.model_filer] trusted`` in the ``pyproject.toml`` found from the model folder
upwards, and ``trusted=[...]`` for one call. Never from a registry or from a pickle.

Patterns are exact ``module.qualname`` names or module globs ``"pkg.sub.*"``; ``"*"`` trusts
everything. A glob trusts only *classes* defined in those modules (checked on the class's own
``__module__`` once resolved); functions are trusted by exact name only. This module only
matches names: it imports nothing, so the commit hook can use it without the ML libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import TrustConfigError

EVERYTHING = "*"
PYPROJECT = "pyproject.toml"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*")
_DUNDER_RE = re.compile(r"__\w*__")

# Modules holding the models and data structures of the common ML stack. Their classes are
# trusted; their functions are not (see DEFAULT_FUNCTIONS).
DEFAULT_GLOBS = (
    "numpy.*",
    "scipy.*",
    "sklearn.*",
    "pandas.*",
    "xgboost.*",
    "lightgbm.*",
    "catboost.*",
)
# Inside those packages, modules whose classes open files, processes or sockets when built
# (numpy.memmap, pandas.HDFStore, scipy.io.netcdf_file, xgboost's tracker...). Defense in
# depth: the defaults leave them out; a project can still name one of their classes exactly.
DEFAULT_EXCLUDED = (
    "numpy.core.memmap",
    "numpy._core.memmap",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib._datasource",
    "numpy.lib.format",
    "numpy.ctypeslib",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "scipy.io",
    "scipy._lib",
    "scipy.datasets",
    "pandas.io",
    "pandas.util",
    "pandas.testing",
    "pandas._testing",
    "pandas.plotting",
    "sklearn.datasets",
    "sklearn.utils._testing",
    "sklearn.externals",
    "xgboost.tracker",
    "xgboost.collective",
    "xgboost.federated",
    "xgboost.dask",
    "xgboost.spark",
    "xgboost.testing",
    "lightgbm.dask",
    "catboost.widget",
)
# Their public classes of that kind, by the name they show (numpy and pandas rename their
# public classes' __module__ to the top package, hiding the module they come from).
DEFAULT_EXCLUDED_CLASSES = frozenset(
    {
        "numpy.memmap",
        "numpy.DataSource",
        "pandas.HDFStore",
        "pandas.ExcelFile",
        "pandas.ExcelWriter",
    }
)
_BUILTINS = (
    "bool bytearray bytes complex dict float frozenset getattr int list object range set slice "
    "str tuple"
)
# The exact functions (and stdlib classes) that pickles of that stack call.
DEFAULT_FUNCTIONS = frozenset(
    {
        # builtins that rebuild plain values; builtins.getattr is served restricted (classmethods
        # of already trusted classes only: how zoneinfo and others pickle their constructors)
        *(f"builtins.{n}" for n in _BUILTINS.split()),
        "copyreg._reconstructor",
        "_codecs.encode",  # protocol 0-2 pickles of bytes
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "zoneinfo.ZoneInfo",
        "pytz._p",
        "pytz._UTC",
        "dateutil.relativedelta.relativedelta",
        "dateutil.tz.tz.tzutc",
        "dateutil.tz.tz.tzoffset",
        # numpy's array, scalar and random-state reconstructors (numpy 1.x and 2.x paths)
        *(
            f"numpy.{core}.{f}"
            for core in ("core", "_core")
            for f in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")
        ),
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        # pandas' reconstructors and singletons
        "pandas.NA",
        "pandas._libs.missing.NA",
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
        "pandas._libs.internals._unpickle_block",
        "pandas._libs.tslibs.nattype._nat_unpickle",
        "pandas._libs.tslibs.nattype.__nat_unpickle",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp",
        "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.datetimes._new_DatetimeIndex",
        "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
        "pandas.core.indexes.period._new_PeriodIndex",
        "pandas.core.indexes.interval._new_IntervalIndex",
        "pandas.core.series._new_bare_series",
        # scikit-learn's Cython reconstructors
        "sklearn.metrics._dist_metrics.newObj",
        "sklearn.neighbors._kd_tree.newObj",
        "sklearn.neighbors._ball_tree.newObj",
    }
)


def is_safe_name(module: str, qualname: str) -> bool:
    """Whether ``module`` and ``qualname`` are plain dotted names without dunder parts.

    Dunder parts (``__builtins__``, ``__globals__``, ``__class__``...) are how a name reaches
    things its module never meant to export, so they are never trusted.
    """
    return (
        _DOTTED_RE.fullmatch(module) is not None
        and _DOTTED_RE.fullmatch(qualname) is not None
        and not any(_DUNDER_RE.fullmatch(p) for p in (*module.split("."), *qualname.split(".")))
    )


def can_trust(full: str) -> bool:
    """Whether some pattern could trust the global ``full`` (``module.qualname``)."""
    module, dot, qualname = full.partition(".")
    return bool(dot) and module != "__main__" and is_safe_name(module, qualname)


def _in(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def check_pattern(pattern: object, where: str) -> str:
    """Return ``pattern`` if it is a valid trust pattern; else raise :class:`TrustConfigError`."""
    if pattern == EVERYTHING:
        return EVERYTHING
    ok = isinstance(pattern, str)
    if isinstance(pattern, str):
        body = pattern.removesuffix(".*")
        ok = _DOTTED_RE.fullmatch(body) is not None and (body != pattern or "." in body)
        ok = ok and not any(_DUNDER_RE.fullmatch(p) for p in body.split("."))
    if not ok:
        raise TrustConfigError(
            f"{where}: {pattern!r} is not a trust pattern. Use an exact name "
            '("mypkg.models.MyModel"), a module glob ("mypkg.models.*") or "*" for everything; '
            "dunder names cannot be trusted."
        )
    return str(pattern)


class TrustedSet:
    """The names a pickle may import: defaults, the project's patterns and per-call ones.

    Parameters
    ----------
    patterns : iterable of str
        Exact ``module.qualname`` names, module globs ``"pkg.*"``, or ``"*"``.
    defaults : bool, default True
        Include the built-in defaults for numpy, scipy, scikit-learn, pandas, xgboost,
        lightgbm and catboost.
    """

    __slots__ = ("default_globs", "everything", "exact", "globs", "project")

    def __init__(
        self, patterns: Iterable[str] = (), defaults: bool = True, project: Sequence[str] = ()
    ) -> None:
        patterns = [*project, *patterns]
        self.project = tuple(project)  # kept to write the full line a user must add
        self.everything = EVERYTHING in patterns
        self.exact = frozenset(p for p in patterns if not p.endswith("*")) | (
            DEFAULT_FUNCTIONS if defaults else frozenset()
        )
        self.globs = tuple(p[:-2] for p in patterns if p.endswith(".*"))
        self.default_globs = tuple(p[:-2] for p in DEFAULT_GLOBS) if defaults else ()

    def is_exact(self, module: str, qualname: str) -> bool:
        """Whether ``module.qualname`` is trusted by its exact name."""
        return f"{module}.{qualname}" in self.exact

    def glob_covers(self, module: str, qualname: str | None = None) -> bool:
        """Whether classes defined in ``module`` (named ``qualname``) are trusted by a glob."""
        return _in(module, self.globs) or (
            _in(module, self.default_globs)
            and not _in(module, DEFAULT_EXCLUDED)
            and f"{module}.{qualname}" not in DEFAULT_EXCLUDED_CLASSES
        )

    def covers_name(self, full: str) -> bool:
        """Name-only check of a recorded ``module.qualname``, for reviews and the commit hook.

        Without importing, a glob cannot tell a class from a function, so this admits what
        the loader would refuse as a function; the loader, reading the bytes, decides.
        """
        if self.everything or full in self.exact:
            return True
        module, _, qualname = full.rpartition(".")
        return (
            bool(module)
            and _DOTTED_RE.fullmatch(full) is not None
            and self.glob_covers(module, qualname)
        )

    def fix(self, names: Iterable[str]) -> str:
        """The ``pyproject.toml`` lines that would trust ``names``, keeping the project's own."""
        names = {n for n in names if can_trust(n)}
        listed = [*self.project, *sorted(names - set(self.project))]
        items = ", ".join(f'"{n}"' for n in listed)
        return f"[tool.model_filer]\ntrusted = [{items}]"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or its parents."""
    here = start.resolve()
    while not here.exists():  # a model folder not created yet: look from its parent
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def project_patterns(start: Path) -> list[str]:
    """The validated ``[tool.model_filer] trusted`` of the project holding ``start``."""
    path = find_pyproject(start)
    if path is None:
        return []
    import tomllib  # only when a project has a pyproject.toml: hooks import this module

    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrustConfigError(
            f"{path}: cannot read it ({exc}). Fix the file: model_filer reads its "
            "[tool.model_filer] trusted list."
        ) from None
    tool = doc.get("tool", {})
    if not isinstance(tool, dict):
        raise TrustConfigError(f"{path}: [tool] must be a table. Fix the file.")
    section = tool.get("model_filer", {})
    if not isinstance(section, dict):
        raise TrustConfigError(f"{path}: [tool.model_filer] must be a table.")
    trusted = section.get("trusted", [])
    if not isinstance(trusted, list):
        raise TrustConfigError(
            f"{path}: [tool.model_filer] trusted must be a list of strings, "
            f'e.g. trusted = ["mypkg.models.*"]; got {type(trusted).__name__}.'
        )
    return [check_pattern(p, f"{path}: [tool.model_filer] trusted") for p in trusted]


def trusted_set(start: Path, trusted: Iterable[str] | None = None) -> TrustedSet:
    """Defaults, plus the project's ``pyproject.toml`` from ``start`` up, plus ``trusted``."""
    if isinstance(trusted, str):
        raise TrustConfigError(
            f"trusted= takes a list of patterns, not the string {trusted!r}: "
            f"write trusted=[{trusted!r}]."
        )
    extra = [check_pattern(p, "trusted=") for p in (trusted or ())]
    return TrustedSet(extra, project=project_patterns(start))
