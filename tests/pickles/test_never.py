"""The never-list: doors no pattern opens, matched by the object a name resolves to.

Loaders of unrestricted pickles, code and program runners, and gadgets are refused under
exact names, globs and a pyproject ``"*"``; only ``load(..., trusted=["*"])`` for one call
admits them. Messages say why and what to do instead, and never offer to trust them.
"""

from __future__ import annotations

import _pickle
import operator
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_filer_hooks.no_local_models import main as no_local_models

from model_filer.errors import UntrustedModelError, UntrustedModelWarning
from model_filer.pickles import safe_pickle, trust
from model_filer.pickles.trust import TrustedSet
from tests.support.gitrepo import model_filer, registry_bytes, sample_entry, staged


class R:
    """Pickles as ``f(*args)``."""

    def __call__(self) -> None:  # pickle wants a callable first item; never called here
        raise AssertionError

    def __init__(self, f: Any, *args: Any) -> None:
        self.f, self.args = f, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.f, self.args


def g(module: str, name: str, *args: str) -> bytes:
    """Protocol 2: ``module.name(*args)`` with string arguments, spelled as given."""
    pushed = b"".join(f"V{a}\n".encode() for a in args)
    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + b"(" + pushed + b"tR."


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the payload ran"


# The same door under each spelling: the pairs, and more of the table.
SPELLINGS = [
    ("os", "system"),
    ("posix", "system"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("marshal", "loads"),
    ("subprocess", "Popen"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("joblib", "load"),
    ("numpy", "load"),
    ("pandas", "read_pickle"),
    ("shelve", "open"),
    ("cloudpickle", "loads"),
]


@pytest.mark.parametrize(("module", "name"), SPELLINGS, ids=[".".join(s) for s in SPELLINGS])
@pytest.mark.parametrize(
    "trusted",
    [
        pytest.param(lambda full, mod: TrustedSet([full]), id="exact per call"),
        pytest.param(lambda full, mod: TrustedSet(project=[full]), id="exact in pyproject"),
        pytest.param(lambda full, mod: TrustedSet([f"{mod}.*"]), id="module glob"),
        pytest.param(lambda full, mod: TrustedSet(project=["*"]), id="pyproject star"),
    ],
)
def test_a_door_is_refused_under_any_pattern(module: str, name: str, trusted: Any) -> None:
    pytest.importorskip(module)
    full = f"{module}.{name}"
    judge = trusted(full, module)
    with pytest.raises(safe_pickle._Refused) as info:
        safe_pickle.resolve(module, name, judge)
    assert info.value.never
    assert not judge.covers_name(full)  # the commit hook's name-only view
    assert trust.never_reason(full)
    assert full not in judge.fix([full])


def test_only_a_per_call_star_admits_a_door(marker: Path) -> None:
    payload = g("posix", "system", f"touch {marker}")
    for trusted in (TrustedSet(["posix.system"]), TrustedSet(project=["*"])):
        with pytest.raises(UntrustedModelError):
            safe_pickle.loads(payload, trusted, "m")
    assert not marker.exists()
    safe_pickle.loads(payload, TrustedSet(["*"]), "m")
    assert marker.exists()
    marker.unlink()


@pytest.fixture
def aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of the user's that re-exports doors under names the table does not spell."""
    pkg = f"aliases_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{pkg}.py").write_text(
        "from os import system as run\nfrom builtins import eval as calc\n"
        "from _pickle import loads as thaw\nfrom operator import attrgetter as Getter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    sys.modules.pop(pkg, None)


@pytest.mark.parametrize("name", ["run", "calc", "thaw", "Getter"])
def test_an_alias_is_the_same_door(aliases: str, name: str, marker: Path) -> None:
    """Trusted by its exact (or glob) name, an alias is still refused: by identity."""
    with pytest.raises(safe_pickle._Refused) as info:
        safe_pickle.resolve(aliases, name, TrustedSet([f"{aliases}.{name}"]))
    assert info.value.never
    payload = g(aliases, "run", f"touch {marker}")
    with pytest.raises(UntrustedModelError) as err:
        safe_pickle.loads(payload, TrustedSet([f"{aliases}.run"]), "m")
    assert err.value.never == [f"{aliases}.run ({trust.NEVER_BY_SPEC['posix:system']})"]


def test_dump_warns_why_a_door_can_never_be_trusted(tmp_path: Path, marker: Path) -> None:
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    with pytest.warns(UntrustedModelWarning) as caught:
        filer.dump(R(pickle.loads, b"x"), "m")
    message = str(caught[0].message)
    assert "_pickle.loads (it loads a second pickle (or file) with no restriction" in message
    assert "dump the data itself" in message
    assert "pyproject.toml" not in message  # nothing to add would help


def test_load_refusal_says_why_and_offers_no_fix(tmp_path: Path, marker: Path) -> None:
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    with pytest.warns(UntrustedModelWarning):
        filer.dump(R(_pickle.loads, pickle.dumps(R(os.system, f"touch {marker}"))), "m")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.model_filer]\ntrusted = ["_pickle.loads", "pickle.loads", "posix.system"]\n'
    )
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m")
    assert info.value.untrusted == []
    assert [n.partition(" ")[0] for n in info.value.never] == ["_pickle.loads"]
    assert "add to pyproject.toml" not in str(info.value)
    assert '"posix.system"' not in info.value.fix and '"pickle.loads"' not in info.value.fix


def test_the_hook_refuses_a_door_even_under_a_pyproject_star(repo: Path, capsys: Any) -> None:
    (repo / "pyproject.toml").write_text('[tool.model_filer]\ntrusted = ["*"]\n')
    (repo / "models").mkdir()
    (repo / "models/.local_registry").write_bytes(
        registry_bytes(
            "local",
            "/r",
            sample_entry("ok", imports=["mypkg.Model"]),
            sample_entry("bad", imports=["mypkg.Model", "operator.attrgetter"]),
        )
    )
    staged(repo, "models/.local_registry")
    assert no_local_models(["models/.local_registry"]) == 1
    out = capsys.readouterr().out
    assert "bad imports operator.attrgetter, outside the trusted set" in out
    assert "operator.attrgetter can never be trusted: a pickle gadget" in out
    assert "ok imports" not in out and "fix:" not in out


def test_checking_the_list_imports_no_library(tmp_path: Path) -> None:
    """Rows of modules not imported are not looked up: refusing imports nothing."""
    path = tmp_path / "m.pkl"
    path.write_bytes(g("builtins", "getattr"))
    code = (
        "import sys\n"
        "from model_filer.pickles import safe_pickle, trust\n"
        "safe_pickle._NEVER.reason(print)\n"
        "for name in ('os', 'builtins', 'numpy'):\n"
        "    try:\n"
        "        safe_pickle.resolve(name, 'system', trust.TrustedSet(project=['*']))\n"
        "    except Exception as exc:\n"
        "        pass\n"
        "print(sorted({'torch', 'joblib', 'cloudpickle', 'pandas', 'dill', 'numpy', 'shelve',\n"
        "              'runpy', 'subprocess', 'pty'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['numpy']"  # named by the pickle (resolve imports it), nothing else


def test_every_row_names_a_real_object_where_its_library_is_installed() -> None:
    """A misspelled row would protect nothing: each resolves once its module is imported."""
    import importlib

    missing = []
    other_versions = {"numpy.lib.npyio:load"}  # numpy 1.x
    for spec in set(trust.NEVER_BY_SPEC) - other_versions:
        module, _, qualname = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module)
        except ImportError:
            continue  # (dill is not installed here)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(spec)
    assert missing == []


def test_operator_gadget_is_refused_under_its_module_glob(marker: Path) -> None:
    payload = pickle.dumps(R(R(operator.attrgetter, "real"), 1), protocol=5)
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, TrustedSet(project=["operator.*"]), "m")
    assert "a pickle gadget" in info.value.never[0]


def test_a_module_imported_again_is_looked_at_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library imported a second time holds new objects: they are the same doors."""
    import importlib
    import shelve

    safe_pickle._NEVER.reason(shelve.open)  # its rows resolved from this module object
    monkeypatch.delitem(sys.modules, "shelve")
    fresh = importlib.import_module("shelve")
    assert fresh.open is not shelve.open
    pkg = f"alias_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{pkg}.py").write_text("from shelve import open as keep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(safe_pickle._Refused) as info:
            safe_pickle.resolve(pkg, "keep", TrustedSet([f"{pkg}.keep"]))
        assert info.value.never
    finally:
        sys.modules.pop(pkg, None)
        sys.modules["shelve"] = shelve


# -- the review of issue 23: doors the defaults, a glob or a pyproject "*" still opened ----------
class WithState(R):
    """Pickles as ``f(*args)`` then ``BUILD`` with ``state``."""

    def __init__(self, state: Any, f: Any, *args: Any) -> None:
        super().__init__(f, *args)
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return self.f, self.args, self.state


class Expr:
    """Pickles as ``pandas.core.computation.expr.Expr(source, "python", "pandas", None, level)``:
    its constructor evaluates ``source`` in the frame ``level`` calls up."""

    def __init__(self, source: str, level: int) -> None:
        self.source, self.level = source, level

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from pandas.core.computation.expr import Expr as PandasExpr

        return PandasExpr, (self.source, "python", "pandas", None, self.level)


DEFAULTS_AND_PATTERNS = {
    "defaults": lambda full, mod: TrustedSet(),
    "exact per call": lambda full, mod: TrustedSet([full]),
    "module glob": lambda full, mod: TrustedSet([f"{mod}.*"]),
    "pyproject star": lambda full, mod: TrustedSet(project=["*"]),
}


@pytest.mark.parametrize("trusted", sorted(DEFAULTS_AND_PATTERNS))
@pytest.mark.parametrize("level", [0, 1, 2])
def test_a_pandas_expression_is_never_evaluated(trusted: str, level: int, marker: Path) -> None:
    pytest.importorskip("pandas")
    payload = pickle.dumps(Expr(f"os.system('touch {marker}')", level), protocol=5)
    judge = DEFAULTS_AND_PATTERNS[trusted]("pandas.core.computation.expr.Expr", "pandas")
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, judge, "m")
    assert "pandas.core.computation.expr.Expr (pandas.core.computation:" in info.value.never[0]
    assert not judge.covers_name("pandas.core.computation.expr.Expr")  # the commit hook


def _distribution_payload(marker: Path) -> bytes:
    """A scipy.stats distribution whose pickled ``_parse_arg_template`` runs a command: its
    ``__setstate__`` execs that string."""
    import copyreg

    import scipy.stats

    dist = type(scipy.stats.norm)(name="norm")
    state = {
        k: v for k, v in vars(dist).items() if not callable(v) and not k.startswith("_parse_args")
    }
    state["_parse_arg_template"] = f"__import__('os').system('touch {marker}')\n" + "".join(
        f"def {n}(*a): pass\n" for n in ("_parse_args", "_parse_args_stats", "_parse_args_rvs")
    )
    return pickle.dumps(WithState(state, copyreg._reconstructor, type(dist), object, None))


@pytest.mark.parametrize("trusted", sorted(DEFAULTS_AND_PATTERNS))
def test_a_scipy_distribution_never_execs_its_pickled_template(trusted: str, marker: Path) -> None:
    pytest.importorskip("scipy")
    payload = _distribution_payload(marker)
    judge = DEFAULTS_AND_PATTERNS[trusted]("scipy.stats._continuous_distns.norm_gen", "scipy")
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, judge, "m")
    assert "a scipy.stats distribution: its __setstate__ runs exec()" in " ".join(info.value.never)
    safe_pickle.loads(payload, TrustedSet(["*"]), "m")  # live: a plain pickle.load runs it
    assert marker.exists()
    marker.unlink()


# Classes the defaults admitted whose constructor or __setstate__ opens files or URLs, deletes
# files, opens sockets, starts process pools, or calls the functions it is given (audit).
AUDITED = [
    ("pandas.api.typing", "JsonReader"),
    ("pandas.api.typing", "StataReader"),
    ("pandas.api.typing", "SASReader"),
    ("scipy.odr._odrpack", "ODR"),
    ("scipy.optimize._differentialevolution", "DifferentialEvolutionSolver"),
    ("scipy.optimize._differentiable_functions", "VectorFunction"),
    ("scipy.optimize._constraints", "PreparedConstraint"),
    ("scipy.optimize._shgo", "SHGO"),
    ("sklearn.callback._scoring_monitor", "ScoringMonitor"),
    ("scipy.integrate._ivp.rk", "RK45"),
    ("scipy.optimize._basinhopping", "BasinHoppingRunner"),
    ("scipy.sparse.linalg._eigen.arpack.arpack", "_SymmetricArpackParams"),
    ("scipy.stats._sampling", "CustomDistPINV"),
    ("scipy.stats._distribution_infrastructure", "MonotonicTransformedDistribution"),
    ("scipy.special._orthogonal", "orthopoly1d"),
]


@pytest.mark.parametrize(("module", "name"), AUDITED, ids=[".".join(a) for a in AUDITED])
def test_the_defaults_leave_out_what_the_audit_found(module: str, name: str) -> None:
    pytest.importorskip(module)
    with pytest.raises(safe_pickle._Refused):
        safe_pickle.resolve(module, name, TrustedSet())
    safe_pickle.resolve(module, name, TrustedSet([f"{module}.{name}"]))  # by its exact name


def _runner_payloads(marker: Path) -> dict[str, bytes]:
    import cProfile
    import pkgutil
    import pydoc
    import timeit

    touch = f"touch {marker}"
    code = f"__import__('os').system({touch!r})"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return {
        "timeit.timeit": pickle.dumps(R(timeit.timeit, code, "pass", None, 1), protocol=5),
        "cProfile.run": pickle.dumps(R(cProfile.run, code), protocol=5),
        "pydoc.pipepager": pickle.dumps(R(pydoc.pipepager, "x", touch), protocol=5),
        "os.spawnlpe": pickle.dumps(
            R(os.spawnlpe, os.P_WAIT, "sh", "sh", "-c", touch, env), protocol=5
        ),
        "os.execle is refused (never called here)": pickle.dumps(R(os.execle, "sh"), protocol=5),
        "pydoc.locate then call": pickle.dumps(R(R(pydoc.locate, "os.system"), touch), protocol=5),
        "pkgutil.resolve_name then call": pickle.dumps(
            R(R(pkgutil.resolve_name, "os:system"), touch), protocol=5
        ),
        "sys.modules.get": g("sys.modules", "get", "os"),
        "builtins.open": g("builtins", "open", str(marker), "w"),
    }


RUNNERS = sorted(_runner_payloads(Path("/nonexistent")))


@pytest.mark.parametrize("case", RUNNERS)
def test_runners_and_name_resolvers_are_refused_under_a_pyproject_star(
    case: str, marker: Path
) -> None:
    payload = _runner_payloads(marker)[case]
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, TrustedSet(project=["*"]), "m")
    assert info.value.never and info.value.untrusted == []
