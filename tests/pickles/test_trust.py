"""The trusted set: a custom class, pyproject.toml, trusted=, the rules, bad patterns, the hook."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from model_filer_hooks.no_local_models import main as no_local_models

from model_filer.errors import (
    RegistryError,
    TrustConfigError,
    UntrustedModelError,
    UntrustedModelWarning,
)
from model_filer.pickles import safe_pickle
from model_filer.pickles.trust import TrustedSet, find_pyproject, project_patterns, trusted_set
from model_filer.registry.file import parse
from tests.support.gitrepo import model_filer, registry_bytes, sample_entry, staged

MODELS = """\
from {pkg}.other import Thing  # a class defined elsewhere, reachable from here


class MyModel:
    def __init__(self, w=1):
        self.w = w


def helper(x):
    return x
"""


class Project(NamedTuple):
    root: Path  # holds pyproject.toml
    models: Path  # the model folder, below it
    pkg: str  # an importable package with a custom model class

    def pyproject(self, body: str) -> None:
        (self.root / "pyproject.toml").write_text(body)

    def trust(self, *patterns: str) -> None:
        items = ", ".join(f'"{p}"' for p in patterns)
        self.pyproject(f"[project]\nname = 'x'\n\n[tool.model_filer]\ntrusted = [{items}]\n")

    def module(self) -> Any:
        return __import__(f"{self.pkg}.models", fromlist=["MyModel"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    pkg = f"mypkg_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src" / pkg
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "models.py").write_text(MODELS.format(pkg=pkg))
    (src / "other.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    root = tmp_path / "project"
    root.mkdir()
    yield Project(root, root / "models", pkg)
    for name in [m for m in sys.modules if m.startswith(pkg)]:
        del sys.modules[name]


def filer_of(project: Project) -> Any:
    return model_filer(project.models, project.root.parent / "remote")


def dump_quietly(filer: Any, model: Any, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustedModelWarning)
        filer.dump(model, name)


# -- a custom class ---------------------------------------------------------------------------
def test_a_custom_class_is_refused_by_default_with_the_line_to_add(project: Project) -> None:
    filer = filer_of(project)
    name = f"{project.pkg}.models.MyModel"
    with pytest.warns(UntrustedModelWarning) as warned:
        filer.dump(project.module().MyModel(3), "m")
    assert f'trusted = ["{name}"]' in str(warned[0].message)
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m")
    assert info.value.untrusted == [name]
    assert info.value.fix == f'[tool.model_filer]\ntrusted = ["{name}"]'
    assert f'[tool.model_filer]\ntrusted = ["{name}"]\nor pass trusted=[...]' in str(info.value)


class ScriptModel:
    pass


def test_a_class_defined_in_a_script_is_never_trustable(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ScriptModel, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "ScriptModel", ScriptModel, raising=False)
    filer = filer_of(project)
    with pytest.warns(UntrustedModelWarning, match="move it to an importable module"):
        filer.dump(ScriptModel(), "m")
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m", trusted=["mypkg.*"])
    assert info.value.untrusted == []
    assert info.value.never == [
        "__main__.ScriptModel (defined in a script: move it to an importable module to trust it)"
    ]


@pytest.mark.parametrize("pattern", ["{pkg}.models.*", "{pkg}.*", "{pkg}.models.MyModel"])
def test_a_custom_class_loads_once_trusted_in_pyproject(project: Project, pattern: str) -> None:
    project.trust(pattern.format(pkg=project.pkg))
    filer = filer_of(project)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trusted: no warning at dump either
        filer.dump(project.module().MyModel(3), "m")
    assert filer.load("m").w == 3


def test_a_custom_class_loads_with_trusted_for_one_call(project: Project) -> None:
    filer = filer_of(project)
    dump_quietly(filer, project.module().MyModel(4), "m")
    assert filer.load("m", trusted=[f"{project.pkg}.models.*"]).w == 4
    assert filer.load("m", trusted=["*"]).w == 4
    with pytest.raises(UntrustedModelError):
        filer.load("m")  # one call only


def test_the_fix_keeps_the_projects_own_patterns(project: Project) -> None:
    project.trust("otherpkg.*")
    filer = filer_of(project)
    dump_quietly(filer, project.module().MyModel(), "m")
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m")
    assert f'trusted = ["otherpkg.*", "{project.pkg}.models.MyModel"]' in info.value.fix


def test_a_glob_does_not_trust_functions(project: Project) -> None:
    project.trust(f"{project.pkg}.*")
    filer = filer_of(project)
    dump_quietly(filer, {"f": project.module().helper}, "m")
    with pytest.raises(UntrustedModelError, match=rf"{project.pkg}\.models\.helper"):
        filer.load("m")
    loaded = filer.load("m", trusted=[f"{project.pkg}.models.helper"])  # exact name: trusted
    assert loaded["f"](2) == 2


def test_a_glob_checks_where_the_class_is_defined(project: Project) -> None:
    """``pkg.models.Thing`` is ``pkg.other.Thing``: a ``pkg.models.*`` glob does not cover it."""
    project.module()
    payload = b"\x80\x04\x8c" + bytes([len(project.pkg) + 7]) + f"{project.pkg}.models".encode()
    payload += b"\x8c\x05Thing\x93)R."
    glob = TrustedSet([f"{project.pkg}.models.*"])
    with pytest.raises(UntrustedModelError, match=rf"{project.pkg}\.models\.Thing"):
        safe_pickle.loads(payload, glob)
    assert type(safe_pickle.loads(payload, TrustedSet([f"{project.pkg}.*"]))).__name__ == "Thing"


def test_a_refused_module_is_never_imported(project: Project) -> None:
    filer = filer_of(project)
    dump_quietly(filer, project.module().MyModel(), "m")
    marker = project.root / "IMPORTED"
    models_py = project.root.parent / "src" / project.pkg / "models.py"
    models_py.write_text(f"open({str(marker)!r}, 'w').close()\n" + models_py.read_text())
    for name in [m for m in sys.modules if m.startswith(project.pkg)]:
        del sys.modules[name]
    with pytest.raises(UntrustedModelError):
        filer.load("m")
    assert not marker.exists()
    assert f"{project.pkg}.models" not in sys.modules


# -- where trust comes from -----------------------------------------------------------------
def test_the_nearest_pyproject_wins(project: Project) -> None:
    project.trust("outer.*")
    inner = project.root / "sub"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[tool.model_filer]\ntrusted = ['inner.Model']\n")
    assert project_patterns(inner / "models" / "not-yet") == ["inner.Model"]
    assert project_patterns(project.models) == ["outer.*"]
    assert find_pyproject(project.models) == project.root / "pyproject.toml"


def test_a_pyproject_without_the_section_trusts_only_the_defaults(project: Project) -> None:
    project.pyproject("[project]\nname = 'x'\n")
    assert project_patterns(project.models) == []
    ts = trusted_set(project.models)
    assert ts.covers_name("sklearn.tree._classes.DecisionTreeClassifier")
    assert not ts.covers_name("os.system")


def test_the_registry_and_the_pickle_grant_no_trust(project: Project) -> None:
    """An entry's recorded imports are for review: the loader reads the bytes."""
    filer = filer_of(project)
    dump_quietly(filer, project.module().MyModel(), "m")
    registry = filer.registry_path
    text = registry.read_text().replace(f"{project.pkg}.models.MyModel", "numpy.ndarray")
    registry.write_text(text)
    assert filer.list_files()[0].imports == ["numpy.ndarray"]
    with pytest.raises(UntrustedModelError):
        filer.load("m")


BAD_PYPROJECTS = {
    "not a list": ('trusted = "mypkg.*"', "trusted must be a list of strings"),
    "a number": ("trusted = [1]", "1 is not a trust pattern"),
    "a bare module": ('trusted = ["mypkg"]', "'mypkg' is not a trust pattern"),
    "a glob in the middle": ('trusted = ["mypkg.*.models"]', "'mypkg.*.models' is not a trust"),
    "a prefix glob": ('trusted = ["mypkg*"]', "'mypkg*' is not a trust pattern"),
    "a dunder": ('trusted = ["numpy.__builtins__"]', "dunder names cannot be trusted"),
    "a dunder glob": ('trusted = ["__main__.*"]', "'__main__.*' is not a trust pattern"),
    "spaces": ('trusted = ["my pkg.Model"]', "'my pkg.Model' is not a trust pattern"),
    "a leading dot": ('trusted = [".models.Model"]', "is not a trust pattern"),
    "empty": ('trusted = [""]', "'' is not a trust pattern"),
}


@pytest.mark.parametrize("body, message", BAD_PYPROJECTS.values(), ids=list(BAD_PYPROJECTS))
def test_a_bad_pattern_in_pyproject_is_refused(project: Project, body: str, message: str) -> None:
    project.pyproject(f"[tool.model_filer]\n{body}\n")
    filer = filer_of(project)
    with pytest.raises(TrustConfigError) as info:
        filer.load("anything")  # fails on the configuration, before looking for the model
    assert message in str(info.value)
    assert str(project.root / "pyproject.toml") in str(info.value)


def test_a_pyproject_that_is_not_toml_is_refused(project: Project) -> None:
    project.pyproject("[tool.model_filer\ntrusted = [")
    with pytest.raises(TrustConfigError, match="cannot read it"):
        trusted_set(project.models)


def test_a_tool_section_that_is_not_a_table_is_refused(project: Project) -> None:
    project.pyproject("[tool]\nmodel_filer = 3\n")
    with pytest.raises(TrustConfigError, match=r"\[tool.model_filer\] must be a table"):
        trusted_set(project.models)


def test_a_top_level_tool_key_that_is_not_a_table_is_refused(project: Project) -> None:
    project.pyproject('tool = "x"\n')
    with pytest.raises(TrustConfigError, match=r"\[tool\] must be a table"):
        trusted_set(project.models)


@pytest.mark.parametrize(
    "trusted, message",
    [
        ("mypkg.*", "takes a list of patterns, not the string 'mypkg.*'"),
        ([3], "trusted=: 3 is not a trust pattern"),
        (["os"], "trusted=: 'os' is not a trust pattern"),
    ],
)
def test_a_bad_trusted_argument_is_refused(project: Project, trusted: Any, message: str) -> None:
    with pytest.raises(TrustConfigError) as info:
        filer_of(project).load("m", trusted=trusted)
    assert message in str(info.value)


# -- the registry's imports field -------------------------------------------------------------
def test_imports_round_trip_through_the_registry() -> None:
    entry = sample_entry("m", imports=["numpy.ndarray", "sklearn.tree._tree.Tree"])
    reg = parse(registry_bytes("local", "/r", entry), "reg")
    assert reg.entries["m"].imports == ["numpy.ndarray", "sklearn.tree._tree.Tree"]
    written = registry_bytes("local", "/r", entry)
    assert b"    imports:\n    - numpy.ndarray\n    - sklearn.tree._tree.Tree\n" in written


@pytest.mark.parametrize(
    "imports, message",
    [
        ("numpy.ndarray", "field 'imports' must be list, got 'numpy.ndarray'"),
        *(
            (bad, "imports must be a list of module.qualname names")
            for bad in (["ok.Name", 3], ["no_dot"], ["os system"], ["\x1b[2J.x"], ["a." * 300])
        ),
    ],
)
def test_a_malformed_imports_field_is_refused(imports: Any, message: str) -> None:
    text = registry_bytes("local", "/r", sample_entry("m")).decode()
    field = f"    imports: {json.dumps(imports)}\n"  # JSON is YAML
    text = text.replace("    state: synced", field + "    state: synced")
    with pytest.raises(RegistryError) as info:
        parse(text.encode(), "reg")
    assert message in str(info.value)
    assert "reg: entry 'm'" in str(info.value)


# -- the commit hook ----------------------------------------------------------------------------
REGISTRY = "models/.local_registry"


def stage_registry(repo: Path, *entries: Any) -> None:
    (repo / "models").mkdir(exist_ok=True)
    (repo / REGISTRY).write_bytes(registry_bytes("local", "/r", *entries))
    staged(repo, REGISTRY)


def test_the_hook_refuses_imports_outside_the_trusted_set(repo: Path, capsys: Any) -> None:
    stage_registry(
        repo,
        sample_entry("ok", imports=["numpy.ndarray", "sklearn.tree._tree.Tree"]),
        sample_entry("bad", imports=["mypkg.models.MyModel", "numpy.ndarray", "shutil.rmtree"]),
    )
    assert no_local_models([REGISTRY]) == 1
    out = capsys.readouterr().out
    assert (
        f"{REGISTRY}: bad imports mypkg.models.MyModel, shutil.rmtree, outside the trusted set"
    ) in out
    assert "ok imports" not in out
    assert 'trusted = ["mypkg.models.MyModel", "shutil.rmtree"]' in out


def test_the_hook_says_a_script_class_cannot_be_trusted(repo: Path, capsys: Any) -> None:
    stage_registry(repo, sample_entry("m", imports=["__main__.Model", "mypkg.Model"]))
    assert no_local_models([REGISTRY]) == 1
    out = capsys.readouterr().out
    assert "__main__.Model can never be trusted: defined in a script: move it to an" in out
    assert 'trusted = ["mypkg.Model"]' in out


def test_the_hook_accepts_them_once_the_project_trusts_them(repo: Path, capsys: Any) -> None:
    (repo / "pyproject.toml").write_text(
        '[tool.model_filer]\ntrusted = ["mypkg.models.*", "shutil.rmtree"]\n'
    )
    stage_registry(repo, sample_entry("m", imports=["mypkg.models.MyModel", "shutil.rmtree"]))
    assert no_local_models([REGISTRY]) == 0
    assert capsys.readouterr().out == ""


def test_the_hook_reports_a_bad_pyproject(repo: Path, capsys: Any) -> None:
    (repo / "pyproject.toml").write_text('[tool.model_filer]\ntrusted = ["a b"]\n')
    stage_registry(repo, sample_entry("m", imports=["numpy.ndarray"]))
    assert no_local_models([REGISTRY]) == 1
    assert "'a b' is not a trust pattern" in capsys.readouterr().out


def test_the_hook_imports_no_ml_library() -> None:
    code = (
        "import sys, model_filer_hooks.no_local_models\n"
        "print(sorted({'numpy', 'sklearn', 'pandas', 'boto3', 'git'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_dump_records_imports_from_the_bytes(project: Project) -> None:
    filer = filer_of(project)
    project.trust(f"{project.pkg}.*")
    filer.dump({"m": project.module().MyModel(), "data": [1, 2]}, "m")
    assert filer.list_files()[0].imports == [f"{project.pkg}.models.MyModel"]
    with filer.model_path("m").open("rb") as fh:
        direct = safe_pickle.scan(fh).names()
    assert direct == [f"{project.pkg}.models.MyModel"]
    assert pickle.loads(filer.model_path("m").read_bytes())["data"] == [1, 2]


@pytest.mark.parametrize(
    ("patterns", "name", "covered"),
    [
        ([], "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss", True),
        (["mypkg.fast.Tree"], "mypkg.fast.__pyx_unpickle_Tree", True),
        (["mypkg.fast.*"], "mypkg.fast.__pyx_unpickle_Tree", True),
        (["mypkg.fast.Tree"], "mypkg.fast.__pyx_unpickle_Forest", False),
        (["mypkg.fast.Tree"], "mypkg.other.__pyx_unpickle_Tree", False),
        (["mypkg.fast.Tree"], "mypkg.fast.__pyx_unpickle_", False),
        ([], "mypkg.fast.__pyx_unpickle_Tree", False),  # the class is not trusted
        (["torch.*"], "torch.jit.__pyx_unpickle_ScriptModule", False),  # the never-list
    ],
)
def test_a_cython_reconstructor_is_trusted_with_its_class(
    patterns: list[str], name: str, covered: bool
) -> None:
    """``M.__pyx_unpickle_C`` by the rule the loader, dump's warning and the hook share."""
    trusted = TrustedSet(project=patterns)
    assert trusted.covers_name(name) is covered
    module, _, qualname = name.rpartition(".")
    assert trusted.admits_name(module, qualname) is covered


def test_the_loader_takes_a_reconstructor_only_beside_its_trusted_class() -> None:
    """Resolved, ``M.__pyx_unpickle_C`` must be a callable of the class's own module."""
    import sklearn._loss._loss as loss

    trusted = TrustedSet()
    name = "__pyx_unpickle_CyHalfMultinomialLoss"
    assert safe_pickle.resolve(loss.__name__, name, trusted) is getattr(loss, name)
    with pytest.raises(safe_pickle._Refused):  # "sklearn.os" is a module, not a class
        safe_pickle.resolve("sklearn", "__pyx_unpickle_os", trusted)
