"""The trusted set: which globals a model's pickle may import.

Trust comes only from what the user controls: built-in defaults for the common ML stack, the
project's ``[tool.model_filer] trusted`` in the ``pyproject.toml`` found from the model folder
upwards, and ``trusted=[...]`` for one call. Never from a registry or from a pickle.

Patterns are exact ``module.qualname`` names or module globs ``"pkg.sub.*"``; ``"*"`` trusts
everything. A glob trusts only *classes* defined in those modules (checked on the class's own
``__module__`` once resolved); functions are trusted by exact name only. This module only
matches names: it imports nothing, so the commit hook can use it without the ML libraries.

Some globals are never trusted, whatever the patterns say (:data:`NEVER`): they load a second
pickle with no restriction, or run code or programs. The loader matches them by the object a
name resolves to (:mod:`model_filer.pickles.safe_pickle`); the commit hook, which imports nothing,
by the names of the same table. Only ``load(..., trusted=["*"])`` for one call, a plain
``pickle.load``, admits them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from model_filer.errors import TrustConfigError

EVERYTHING = "*"
PYPROJECT = "pyproject.toml"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*")
_DUNDER_RE = re.compile(r"__\w*__")
SCRIPT = "defined in a script: move it to an importable module to trust it"
DUNDER = "a dunder or malformed name"
PYX_UNPICKLE = "__pyx_unpickle_"  # Cython's reconstructor of class C is M.__pyx_unpickle_C


class _Refused(Exception):
    """A global (or a thing the loader met) refused while loading: ``full`` names it; ``never``
    says why no pattern could ever trust it, ``None`` when one could."""

    def __init__(self, full: str, never: str | None = None) -> None:
        super().__init__(full)
        self.full, self.never = full, never


def _qualified(by_module: dict[str, str]) -> list[str]:
    return [f"{module}.{f}" for module, names in by_module.items() for f in names.split()]


# Modules holding the models and data structures of the common ML stack. Their classes are
# trusted; their functions are not (see DEFAULT_FUNCTIONS).
DEFAULT_GLOBS = tuple(
    f"{p}.*" for p in ("numpy", "scipy", "sklearn", "pandas", "xgboost", "lightgbm", "catboost")
)
# Inside those packages, modules whose classes open files, processes or sockets when built
# (numpy.memmap, pandas.HDFStore, scipy.io.netcdf_file, xgboost's tracker...). Defense in
# depth: the defaults leave them out; a project can still name one of their classes exactly.
DEFAULT_EXCLUDED = tuple(
    _qualified(
        {
            "numpy": "core.memmap _core.memmap lib.npyio lib._npyio_impl lib._datasource "
            "lib.format ctypeslib testing f2py distutils",
            "scipy": "io _lib datasets "
            "odr "  # ODR(..., overwrite=True) deletes its report files when built
            # their classes start a process pool (workers=N) or call the functions they are
            # given when built: any trusted function would be called through them
            "optimize._differentialevolution optimize._differentiable_functions "
            "optimize._constraints optimize._shgo optimize._shgo_lib optimize._basinhopping "
            "integrate._ivp "  # ODE solvers call fun(t0, y0) when built
            "sparse.linalg._eigen.arpack stats._sampling",
            "pandas": "io util testing _testing plotting "
            "core.computation",  # Expr(...) evaluates its string when built (also NEVER)
            "sklearn": "datasets utils._testing externals "
            "callback",  # ScoringMonitor.__setstate__ opens a socket listener and a thread
            "xgboost": "tracker collective federated dask spark testing",
            "lightgbm": "dask",
            "catboost": "widget",
        }
    )
)
# Their public classes of that kind, by the name they show (numpy and pandas rename their
# public classes' __module__ to the top package, hiding the module they come from).
DEFAULT_EXCLUDED_CLASSES = frozenset(
    _qualified(
        {
            "numpy": "memmap DataSource",
            "pandas": "HDFStore ExcelFile ExcelWriter",
            # pandas.io readers: they open files or URLs
            "pandas.api.typing": "JsonReader SASReader StataReader",
            # they call the functions they are given when built (audit: calls of a parameter)
            "scipy.stats._distribution_infrastructure": "MonotonicTransformedDistribution",
            "scipy.special._orthogonal": "orthopoly1d",
        }
    )
)
_TORCH_REBUILDERS = (
    "tensor tensor_v2 tensor_v3 parameter parameter_with_state qtensor sparse_tensor "
    "meta_tensor_no_storage nested_tensor wrapper_subclass device_tensor_from_numpy "
    "device_tensor_from_cpu_tensor"
)
_TORCH_DTYPES = (
    "bool bfloat16 float16 float32 float64 complex32 complex64 complex128 "
    "float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 "
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 qint8 qint32 quint8 quint4x2 quint2x4 "
    "bits1x8 bits2x4 bits4x2 bits8 bits16 "
    + " ".join(f"int{n} uint{n}" for n in range(1, 8))
    + " per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
    "per_channel_affine_float_qparams"
)
# The exact functions (and stdlib classes) that pickles of that stack call, by module.
DEFAULT_FUNCTIONS = frozenset(
    _qualified(
        {
            # builtins that rebuild plain values; builtins.getattr is served restricted
            # (classmethods of already trusted classes only: how zoneinfo and others pickle
            # their constructors)
            "builtins": "bool bytearray bytes complex dict float frozenset getattr int list "
            "object range set slice str tuple",
            "copyreg": "_reconstructor",
            "_codecs": "encode",  # protocol 0-2 pickles of bytes
            "collections": "OrderedDict defaultdict deque Counter",
            "datetime": "date datetime time timedelta timezone",
            "decimal": "Decimal",
            "fractions": "Fraction",
            "uuid": "UUID",
            "zoneinfo": "ZoneInfo",
            "pytz": "_p _UTC",
            "dateutil.relativedelta": "relativedelta",
            "dateutil.tz.tz": "tzutc tzoffset",
            # numpy's array, scalar and random-state reconstructors (numpy 1.x and 2.x paths)
            "numpy.core.multiarray": "_reconstruct scalar",
            "numpy._core.multiarray": "_reconstruct scalar",
            "numpy.core.numeric": "_frombuffer",
            "numpy._core.numeric": "_frombuffer",
            "numpy.random._pickle": "__randomstate_ctor __generator_ctor __bit_generator_ctor",
            # pandas' reconstructors and singletons
            "pandas": "NA",
            "pandas._libs.missing": "NA",
            "pandas._libs.internals": "_unpickle_block",
            "pandas._libs.tslibs.nattype": "_nat_unpickle __nat_unpickle",
            "pandas._libs.tslibs.timestamps": "_unpickle_timestamp",
            "pandas._libs.tslibs.timedeltas": "_timedelta_unpickle",
            "pandas.core.indexes.base": "_new_Index",
            "pandas.core.indexes.datetimes": "_new_DatetimeIndex",
            "pandas.core.indexes.timedeltas": "_new_TimedeltaIndex",
            "pandas.core.indexes.period": "_new_PeriodIndex",
            "pandas.core.indexes.interval": "_new_IntervalIndex",
            "pandas.core.series": "_new_bare_series",
            # scikit-learn's Cython reconstructors
            "sklearn.metrics._dist_metrics": "newObj",
            "sklearn.neighbors._kd_tree": "newObj",
            "sklearn.neighbors._ball_tree": "newObj",
            # scikit-learn's functions held as parameters of estimators fitted with their
            # defaults: score functions, named scorers (scoring="..."), pooling. A pickle may
            # call them, with its own arguments: they compute over arrays in numpy and scipy,
            # start no thread or process of their own (BLAS's pool aside, as any array
            # operation), and read no file (checked in scikit-learn's source; NOT_BY_DEFAULT
            # has the others)
            "sklearn.feature_selection._univariate_selection": (
                "f_classif f_regression chi2 r_regression f_oneway"
            ),
            "sklearn.metrics._classification": (
                "accuracy_score balanced_accuracy_score brier_score_loss d2_brier_score "
                "d2_log_loss_score f1_score fbeta_score jaccard_score log_loss matthews_corrcoef "
                "precision_score recall_score"
            ),
            "sklearn.metrics._ranking": (
                "average_precision_score roc_auc_score top_k_accuracy_score"
            ),
            "sklearn.metrics._regression": (
                "d2_absolute_error_score explained_variance_score max_error mean_absolute_error "
                "mean_absolute_percentage_error mean_gamma_deviance mean_poisson_deviance "
                "mean_squared_error mean_squared_log_error median_absolute_error r2_score "
                "root_mean_squared_error root_mean_squared_log_error"
            ),
            "sklearn.metrics._scorer": "negative_likelihood_ratio positive_likelihood_ratio",
            "sklearn.metrics.cluster._supervised": (
                "adjusted_mutual_info_score adjusted_rand_score completeness_score "
                "fowlkes_mallows_score homogeneity_score mutual_info_score "
                "normalized_mutual_info_score rand_score v_measure_score"
            ),
            "numpy": "mean",
            "numpy.ma.core": "_mareconstruct",  # masked arrays, as in a search's cv_results_
            "scipy._lib.array_api_compat.numpy._aliases": "asarray",  # held by SplineTransformer
            # PyTorch: what torch.load(weights_only=True) admits by default (torch's
            # _weights_only_unpickler._get_allowed_globals) that a plain pickle of tensors,
            # Parameters and state_dicts names; _load_from_bytes is served by a safe substitute.
            "torch._utils": " ".join(f"_rebuild_{f}" for f in _TORCH_REBUILDERS.split()),
            "torch._tensor": "_rebuild_from_type_v2",
            "torch.serialization": "_get_layout",
            "torch.storage": "_load_from_bytes",
            "torch": f"Size Tensor device {_TORCH_DTYPES}",
            "torch.nn.parameter": "Parameter",
        }
    )
)

# Functions estimators keep that the defaults leave out, and why: a pickle that may name a
# function may also call it, with arguments of its choosing, while loading. The defaults above
# compute over arrays in Python, numpy and scipy; these run unchecked native code or start
# processes.
# A project trusts one by its exact name in pyproject.toml, knowingly. The refusal of load and
# the warning of dump quote the reason (:func:`not_by_default`).
_NATIVE = (
    "memory-unsafe native code: Cython compiled without bounds checks, which a pickle can "
    "call with crafted arrays to write out of bounds. BisectingKMeans keeps it: dump its "
    "fitted attributes (cluster_centers_, labels_) instead, or trust these exact names "
    "knowingly"
)
_WORKERS = (
    "it starts joblib worker processes (n_jobs), which a pickle can call it with, and "
    "pickles its arguments to them. SelectKBest(mutual_info_*) keeps it: trust the exact "
    "name knowingly"
)
NOT_BY_DEFAULT: dict[str, str] = {
    "sklearn.cluster._kmeans._kmeans_single_lloyd": _NATIVE,
    "sklearn.cluster._kmeans._kmeans_single_elkan": _NATIVE,
    "sklearn.feature_selection._mutual_info.mutual_info_classif": _WORKERS,
    "sklearn.feature_selection._mutual_info.mutual_info_regression": _WORKERS,
}


def not_by_default(names: Iterable[str]) -> str:
    """Why the defaults leave out those of ``names`` that :data:`NOT_BY_DEFAULT` lists,
    one sentence per reason; empty if none."""
    by_why: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        if name in NOT_BY_DEFAULT:
            by_why.setdefault(NOT_BY_DEFAULT[name], []).append(name)
    return " ".join(
        f"Not trusted by default: {', '.join(listed)}: {why}." for why, listed in by_why.items()
    )


# -- the never-list ------------------------------------------------------------------------
# Globals no pattern trusts: not the defaults, a glob, pyproject.toml (its "*" included) nor
# trusted=[...]. Only load(..., trusted=["*"]) for one call, a plain pickle.load, runs them.
# Beside them, names that are never trustable by their form: dunder parts and __main__.
#
# How the list was built: from what each library of the stack (and the standard library)
# offers to turn bytes or a file into objects with an unrestricted unpickler (pickle,
# _pickle, dill, cloudpickle, joblib, numpy, pandas, torch.serialization, marshal, shelve);
# what turns text or bytes into code (eval, exec, compile, runpy, importlib, code and function
# constructors, and the dill and cloudpickle builders of functions and modules); what runs a
# program (os, posix, subprocess, pty); the pickle gadgets that reach those through
# attributes (operator.attrgetter and methodcaller reach eval through __globals__; ctypes
# calls any address); and the torch subpackages and C classes that compile or load code
# (jit, package, fx, export, hub, _dynamo, _inductor, cpp_extension, TorchScript). Each row
# is "module:qualname" where it is defined, plus the aliases a pickle may write. The loader
# compares the object a name resolves to against these rows' objects (identity, so an alias
# not listed is caught too, and only modules already imported are looked at: checking never
# imports a library), and the defining module of a class or function against NEVER_MODULES;
# the commit hook compares the names.
_ONLY_DATA = "dump the data itself (arrays, tensors, model.state_dict()) instead"
_REBUILD = (
    "dump model.state_dict() (the weights) instead, and rebuild the module in code before "
    "load_state_dict()"
)
NEVER: tuple[tuple[str, str, str], ...] = (
    (
        "_pickle:loads _pickle:load _pickle:Unpickler pickle:loads pickle:load pickle:Unpickler "
        "pickle:_loads pickle:_load pickle:_Unpickler "
        "dill:loads dill:load dill:Unpickler dill._dill:loads dill._dill:load "
        "dill._dill:Unpickler dill:load_session dill._dill:load_session "
        "cloudpickle:loads cloudpickle:load "
        "joblib.numpy_pickle:load joblib:load joblib.numpy_pickle:NumpyUnpickler "
        "numpy:load numpy.lib.npyio:load numpy.lib._npyio_impl:load "  # (npyio: numpy 1.x)
        "numpy.lib.format:read_array numpy.lib._format_impl:read_array "
        "pandas:read_pickle pandas.io.pickle:read_pickle pandas.compat.pickle_compat:loads "
        "pandas.compat.pickle_compat:Unpickler "
        "marshal:loads marshal:load shelve:open shelve:Shelf shelve:DbfilenameShelf "
        "shelve:BsdDbShelf "
        "torch.serialization:load torch:load torch.serialization:_load "
        "torch.serialization:_legacy_load torch._C:_pickle_load_obj "
        "torch.hub:load torch.hub:load_state_dict_from_url torch.utils.model_zoo:load_url",
        "it loads a second pickle (or file) with no restriction: any code inside would run",
        _ONLY_DATA,
    ),
    (
        "builtins:eval builtins:exec builtins:compile builtins:breakpoint "
        "types:CodeType types:FunctionType runpy:run_path runpy:run_module "
        "importlib:import_module importlib:__import__ importlib:reload "
        "builtins:open io:open _io:open io:FileIO _io:FileIO "
        "builtins:setattr builtins:delattr builtins:vars builtins:globals builtins:locals "
        "builtins:help builtins:input "
        "typing:get_type_hints typing:ForwardRef typing:_eval_type "
        "dill._dill:_create_code dill._dill:_create_function dill._dill:_import_module "
        "cloudpickle.cloudpickle:subimport cloudpickle.cloudpickle:_make_function "
        "cloudpickle.cloudpickle:_builtin_type cloudpickle.cloudpickle:_make_skeleton_class",
        "it runs code (a string, bytecode or a module's import), opens a file or changes "
        "an object's attributes",
        "define the code in an importable module and dump objects of its classes",
    ),
    (
        "posix:system os:system os:popen os:execv os:execve os:execl os:execlp "
        "os:execvp os:execvpe os:spawnv os:spawnve os:spawnl os:spawnlp os:spawnvp "
        "os:execle os:execlpe os:spawnle os:spawnlpe os:spawnvpe os:_execvpe os:_spawnvef "
        "os:_wrap_close posix:posix_spawn posix:posix_spawnp posix:execv posix:execve "
        "posix:fork posix:forkpty posix:kill posix:killpg posix:open "
        "subprocess:Popen subprocess:run subprocess:call subprocess:check_call "
        "subprocess:check_output subprocess:getoutput subprocess:getstatusoutput pty:spawn "
        "pty:fork multiprocessing:Process multiprocessing:Pool",
        "it runs a program",
        _ONLY_DATA,
    ),
    (
        "operator:attrgetter operator:methodcaller operator:itemgetter",
        "a pickle gadget: it reaches any attribute, eval included (through __globals__)",
        _ONLY_DATA,
    ),
    (
        "pkgutil:resolve_name pkgutil:get_data pkgutil:find_loader pkgutil:get_loader "
        "pkgutil:iter_modules pkgutil:walk_packages logging.config:dictConfig "
        "logging.config:fileConfig logging.config:listen logging.config:BaseConfigurator "
        "logging.config:DictConfigurator",
        "it resolves a name to any object (os.system included), or imports a module",
        _ONLY_DATA,
    ),
    (
        "torch.serialization:_opener torch.serialization:_open_file "
        "torch.serialization:_open_buffer_reader torch.serialization:_open_buffer_writer "
        "torch.serialization:_open_zipfile_reader torch.serialization:_open_zipfile_writer_file "
        "torch.serialization:_open_zipfile_writer_buffer "
        "torch.serialization:set_default_mmap_options",
        "it opens or writes a file, or changes how torch loads files",
        _ONLY_DATA,
    ),
    (
        "torch._C:ScriptModule torch._C:ScriptFunction torch._C:ScriptMethod "
        "torch._C:CompilationUnit torch._C:import_ir_module torch._C:import_ir_module_from_buffer "
        "torch._C:_import_ir_module_from_package torch._C:_load_for_lite_interpreter "
        "torch._C:_load_for_lite_interpreter_from_buffer torch._C:_load_jit_module_from_bytes "
        "torch._C:_load_jit_module_from_file torch._C:_load_mobile_module_from_bytes "
        "torch._C:_load_mobile_module_from_file torch._C:PyTorchFileReader",
        "it compiles or loads TorchScript code",
        _REBUILD,
    ),
)
# Packages whose classes and functions are never trusted, under any glob ("torch.*"
# included): checked on the name and, once resolved, on the object's own __module__.
NEVER_MODULES: tuple[tuple[str, str, str], ...] = (
    (
        "torch.jit torch.package torch.fx torch.export torch.hub torch._dynamo torch._inductor "
        "torch.utils.cpp_extension torch._export torch._higher_order_ops torch._functorch "
        "torch._lazy torch.library torch._library torch._ops torch.compiler torch.onnx "
        # they call the function they are given, with the pickle's arguments
        "torch.ao.quantization.fake_quantize torch.ao.quantization._learnable_fake_quantize "
        "torch.ao.quantization.fx torch.ao.ns",
        "it compiles or loads code (TorchScript, torch.package, torch.fx, torch.export), "
        "registers operators, or calls the function it is given",
        _REBUILD,
    ),
    (
        "torch.distributed torch.multiprocessing torch.utils.data torch.utils.benchmark "
        "torch.utils.tensorboard torch.utils.bottleneck torch.utils.collect_env torch.testing "
        "torch.cuda torch.xpu torch.mtia torch.mps torch.backends.xeon torch.profiler "
        "torch.autograd.profiler torch.autograd.profiler_legacy",
        "it starts processes, threads or servers, opens sockets or files, or loads native "
        "libraries (torch.distributed, DataLoader workers, benchmark, profiler, cuda)",
        _REBUILD,
    ),
    ("ctypes _ctypes", "it calls native code at any address", _ONLY_DATA),
    (
        "pydoc pdb bdb profile cProfile timeit trace code codeop runpy importlib inspect "
        "sys gc unittest.mock pandas.core.computation",
        "it runs code from a string (eval, exec, a debugger, a profiler, a pager) or resolves a "
        "name to any object (pydoc.locate, importlib, inspect, sys.modules, gc)",
        "define the code in an importable module and dump objects of its classes",
    ),
)
# Classes whose subclasses are never trusted: checked on the class's MRO once resolved.
NEVER_BASES: tuple[tuple[str, str, str], ...] = (
    (
        "scipy.stats._distn_infrastructure:rv_generic",
        "a scipy.stats distribution: its __setstate__ runs exec() on a string the pickle "
        "gives (_parse_arg_template)",
        "keep the distribution's name and parameters (e.g. {'dist': 'loguniform', 'a': 1e-3}) "
        "and build it in code; for a search, dump search.best_estimator_",
    ),
)
# Never handed to the unpickler, but not refused: served by a safe substitute.
SERVED = {
    "torch.storage._load_from_bytes": (
        "served by model_filer's safe substitute: the nested tensor bytes are loaded with "
        "torch.load(weights_only=True) and torch's default allowlist, nothing to trust"
    ),
}


def _rows(table: tuple[tuple[str, str, str], ...]) -> dict[str, str]:
    return {item: f"{why}; {instead}" for items, why, instead in table for item in items.split()}


NEVER_BY_SPEC = _rows(NEVER)  # "module:qualname": why, and what to do instead
NEVER_BASES_BY_SPEC = _rows(NEVER_BASES)
_NEVER_NAMES = {spec.replace(":", "."): why for spec, why in NEVER_BY_SPEC.items()}
_NEVER_MODULES = _rows(NEVER_MODULES)


def _under(module: str, prefixes: Iterable[str]) -> str | None:
    """The first of ``prefixes`` that is ``module`` or a package holding it."""
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def never_module(module: str) -> str | None:
    """Why nothing defined in ``module`` can be trusted, if it is in :data:`NEVER_MODULES`."""
    prefix = _under(module, _NEVER_MODULES)
    return None if prefix is None else f"{prefix}: {_NEVER_MODULES[prefix]}"


def never_reason(full: str) -> str | None:
    """Why no pattern can trust the global ``full`` (``module.qualname``) by its name, if so.

    The never-list and the names no pattern can express (dunder parts, ``__main__``).
    """
    module, dot, qualname = full.partition(".")
    if module == "__main__":
        return SCRIPT
    if not dot or not is_safe_name(module, qualname):
        return DUNDER
    return _NEVER_NAMES.get(full) or never_module(full.rpartition(".")[0])


def _plain(dotted: str) -> bool:
    """A dotted name without dunder parts."""
    return _DOTTED_RE.fullmatch(dotted) is not None and not any(
        _DUNDER_RE.fullmatch(p) for p in dotted.split(".")
    )


def is_safe_name(module: str, qualname: str) -> bool:
    """Whether ``module`` and ``qualname`` are plain dotted names without dunder parts.

    Dunder parts (``__builtins__``, ``__globals__``, ``__class__``...) are how a name reaches
    things its module never meant to export, so they are never trusted.
    """
    return _plain(module) and _plain(qualname)


def can_trust(full: str) -> bool:
    """Whether some pattern could trust the global ``full`` (``module.qualname``)."""
    return never_reason(full) is None


def check_pattern(pattern: object, where: str) -> str:
    """Return ``pattern`` if it is a valid trust pattern; else raise :class:`TrustConfigError`."""
    if pattern == EVERYTHING:
        return EVERYTHING
    body = pattern.removesuffix(".*") if isinstance(pattern, str) else ""
    if not (_plain(body) and (body != pattern or "." in body)):
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
        Exact ``module.qualname`` names, module globs ``"pkg.*"``, or ``"*"``, for one call.
        ``"*"`` here trusts everything, the never-list included: a plain ``pickle.load``.
    defaults : bool, default True
        Include the built-in defaults for numpy, scipy, scikit-learn, pandas, xgboost,
        lightgbm, catboost and PyTorch's tensors.
    project : sequence of str
        The project's ``pyproject.toml`` patterns; its ``"*"`` trusts every name but those
        of the never-list.
    """

    __slots__ = ("any_name", "default_globs", "everything", "exact", "globs", "project")

    def __init__(
        self, patterns: Iterable[str] = (), defaults: bool = True, project: Sequence[str] = ()
    ) -> None:
        patterns = list(patterns)
        self.everything = EVERYTHING in patterns
        patterns = [*project, *patterns]
        self.project = tuple(project)  # kept to write the full line a user must add
        self.any_name = EVERYTHING in patterns
        self.exact = frozenset(p for p in patterns if not p.endswith("*")) | (
            DEFAULT_FUNCTIONS if defaults else frozenset()
        )
        self.globs = tuple(p[:-2] for p in patterns if p.endswith(".*"))
        self.default_globs = tuple(p[:-2] for p in DEFAULT_GLOBS) if defaults else ()

    def is_exact(self, module: str, qualname: str) -> bool:
        """Whether ``module.qualname`` is trusted by its exact name (or by ``"*"``)."""
        return self.any_name or f"{module}.{qualname}" in self.exact

    def glob_covers(self, module: str, qualname: str | None = None) -> bool:
        """Whether classes defined in ``module`` (named ``qualname``) are trusted by a glob."""
        full = f"{module}.{qualname}"
        return _under(module, self.globs) is not None or (
            _under(module, self.default_globs) is not None
            and _under(module, DEFAULT_EXCLUDED) is None
            and full not in DEFAULT_EXCLUDED_CLASSES
            and full not in NOT_BY_DEFAULT  # for the name-only checks
        )

    def pyx_class(self, module: str, qualname: str) -> str | None:
        """The class ``C`` when ``qualname`` is Cython's reconstructor ``__pyx_unpickle_C``
        of a class ``module.C`` that this set trusts by name; else ``None``.

        Cython writes ``M.__pyx_unpickle_C`` for a ``cdef class M.C`` without its own
        ``__reduce__``: trusting the class trusts its reconstructor, the one rule for the
        loader, dump's warning and the commit hook.
        """
        cls = qualname.removeprefix(PYX_UNPICKLE)
        if cls == qualname or not cls or "." in cls:
            return None
        trusted = self.is_exact(module, cls) or self.glob_covers(module, cls)
        return cls if trusted and can_trust(f"{module}.{cls}") else None

    def admits_name(self, module: str, qualname: str) -> bool:
        """The check of a global by its name alone, before anything is imported."""
        return can_trust(f"{module}.{qualname}") and (
            self.is_exact(module, qualname)
            or self.glob_covers(module, qualname)
            or self.pyx_class(module, qualname) is not None
        )

    def covers_name(self, full: str) -> bool:
        """Name-only check of a recorded ``module.qualname``, for reviews and the commit hook.

        Without importing, a glob cannot tell a class from a function, so this admits what
        the loader would refuse as a function; the loader, reading the bytes, decides. The
        never-list is refused by name here, by the object it resolves to when loading.
        """
        module, _, qualname = full.rpartition(".")
        return self.admits_name(module, qualname)

    def fix(self, names: Iterable[str]) -> str:
        """The ``pyproject.toml`` lines that would trust ``names``, keeping the project's own.

        Never-names are left out, the project's own included: they have no effect there
        (``_load_from_bytes`` is served without them), and the line must not offer them.
        """
        names = {n for n in names if can_trust(n)}
        own = [p for p in self.project if p.endswith("*") or (can_trust(p) and p not in SERVED)]
        items = ", ".join(f'"{n}"' for n in [*own, *sorted(names - set(own))])
        return f"[tool.model_filer]\ntrusted = [{items}]"


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or its parents."""
    here = start.resolve()
    while not here.exists():  # a model folder not created yet: look from its parent
        here = here.parent
    return next((f / PYPROJECT for f in (here, *here.parents) if (f / PYPROJECT).is_file()), None)


def project_patterns(start: Path) -> list[str]:
    """The validated ``[tool.model_filer] trusted`` of the project holding ``start``."""
    path = find_pyproject(start)
    if path is None:
        return []
    import tomllib  # only when a project has a pyproject.toml: hooks import this module

    try:
        with open(path, "rb") as fh:
            tool = tomllib.load(fh).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TrustConfigError(
            f"{path}: cannot read it ({exc}). Fix the file: model_filer reads its "
            "[tool.model_filer] trusted list."
        ) from None
    section = tool.get("model_filer", {}) if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        table = "[tool.model_filer]" if isinstance(tool, dict) else "[tool]"
        raise TrustConfigError(f"{path}: {table} must be a table. Fix the file.")
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
    return TrustedSet(
        [check_pattern(p, "trusted=") for p in trusted or ()], project=project_patterns(start)
    )
