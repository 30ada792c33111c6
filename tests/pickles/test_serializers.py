"""The library version an entry records: a plain string for every library, torch included.

torch's ``__version__`` is a ``str`` subclass that the safe YAML dumper refuses: recording it
as is made ``dump`` of a tensor end in a raw ``RepresenterError``.
"""

from __future__ import annotations

import importlib
import sys
import types
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_filer.errors import RegistryError, VersionMismatchWarning
from model_filer.pickles.serializers import library_of
from model_filer.registry import yamlio
from model_filer.registry.file import parse
from tests.support.gitrepo import model_filer

TORCH_SKIP = "torch is not installed: pip install torch==2.13.0 (.ci/run installs it)"


def _torch_model() -> Any:
    torch = pytest.importorskip("torch", reason=TORCH_SKIP)
    return torch.nn.Parameter(torch.ones(2))


def _model(module: str, build: Callable[[Any], Any]) -> Callable[[], Any]:
    def make() -> Any:
        return build(pytest.importorskip(module))

    return make


# Every library the version warning knows: the default stack, and torch.
MODELS: dict[str, Callable[[], Any]] = {
    "numpy": _model("numpy", lambda np: np.arange(3)),
    "scipy": _model("scipy.sparse", lambda sp: sp.csr_matrix((2, 2))),
    "sklearn": _model("sklearn.linear_model", lambda lm: lm.LinearRegression()),
    "pandas": _model("pandas", lambda pd: pd.DataFrame({"a": [1]})),
    "xgboost": _model("xgboost", lambda xgb: xgb.XGBClassifier()),
    "lightgbm": _model("lightgbm", lambda lgb: lgb.LGBMClassifier()),
    "catboost": _model("catboost", lambda cb: cb.CatBoostClassifier()),
    "torch": _torch_model,
}


@pytest.mark.parametrize("library", sorted(MODELS))
def test_dump_records_each_librarys_version_as_a_plain_string(library: str, tmp_path: Path) -> None:
    model = MODELS[library]()
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (an untrusted class warns: not what this tests)
        filer.dump(model, "m")
    [entry] = parse(filer.registry_path.read_bytes(), "registry").entries.values()
    version = importlib.import_module(library).__version__
    assert entry.library == {"name": library, "version": str(version)}
    assert type(entry.library["version"]) is str
    with warnings.catch_warnings():
        warnings.simplefilter("error", VersionMismatchWarning)  # same version: no warning
        filer.load("m", trusted=["*"])


class _SelfStr(str):
    def __str__(self) -> str:
        return self


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no")


class _Version:
    def __str__(self) -> str:
        return "1.2.3"


@pytest.fixture
def weird_library() -> Iterator[types.ModuleType]:
    """A library whose model class dumps, with a ``__version__`` set by each test."""
    name = f"weirdlib_{uuid.uuid4().hex}"
    module = types.ModuleType(name)
    exec("class Model:\n    pass\n", module.__dict__)  # noqa: S102 - a fixed class body
    module.Model.__module__ = name
    sys.modules[name] = module
    yield module
    del sys.modules[name]


@pytest.mark.parametrize(
    ("version", "recorded"),
    [
        (_SelfStr("2.0+x"), "2.0+x"),
        (_Version(), "1.2.3"),
        ((1, 2), "(1, 2)"),
        (_BadStr(), None),
        (b"1.0", None),
        ("", None),
        ("1.0\n\x00", None),
        ("x" * 500, None),
    ],
    ids=["str-subclass", "object", "tuple", "failing-str", "bytes", "empty", "control", "long"],
)
def test_an_unusual_version_is_recorded_plain_or_not_at_all(
    weird_library: types.ModuleType, version: object, recorded: str | None, tmp_path: Path
) -> None:
    weird_library.__version__ = version  # type: ignore[attr-defined]
    model = weird_library.Model()
    expected = None if recorded is None else {"name": weird_library.__name__, "version": recorded}
    assert library_of(model) == expected
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filer.dump(model, "m")
    [entry] = parse(filer.registry_path.read_bytes(), "registry").entries.values()
    assert entry.library == expected


def test_the_yaml_layer_never_raises_pyyamls_own_error() -> None:
    for value in (object(), _SelfStr("2.13.0+cpu"), Path("x"), 1 + 2j):  # (as torch's version)
        with pytest.raises(RegistryError, match=r"Cannot write a .* value to the registry"):
            yamlio.dump({"a": value})
