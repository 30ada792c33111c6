"""Errors carry their fields, and a bulk failure keeps every cause as data in one message."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import model_filer_hooks
import pytest

import model_filer
from model_filer import (
    FAIL_FAST,
    BucketNotFoundError,
    Filer,
    LocalOnlyError,
    ModelFilerError,
    ModelFilerWarning,
    RegistryError,
    RemoteError,
    RemoteObjectMissingError,
    RemoteUnreachableError,
    TransferError,
    UnknownModelError,
)
from tests.support.gitrepo import closed_port, registry_bytes, sample_entry


def test_unknown_model_error_knows_the_name_the_registry_and_the_known_names(tmp_path):
    filer = Filer(tmp_path / "models", str(tmp_path), remote_type="local")
    filer.dump(1, "alpha")
    filer.dump(2, "beta")
    with pytest.raises(UnknownModelError) as info:
        filer.load("gamma")
    error = info.value
    assert error.names == ["gamma"]
    assert error.registry == str(filer.registry_path)
    assert error.known == ["alpha", "beta"]
    assert str(error) == (
        f"No model 'gamma' in {filer.registry_path}. Known there: alpha, beta. "
        "Run filer.show_files() or `model-filer status` to list them."
    )
    assert isinstance(error, KeyError)  # dict-like lookups still catch it


def test_unknown_model_error_at_a_revision_says_which():
    error = UnknownModelError("m", "models/.s3_registry", [], rev="v1.2")
    assert "models/.s3_registry at revision 'v1.2'" in str(error)
    assert "Known there: none" in str(error)


def test_a_thousand_identical_failures_make_one_sentence(tmp_path):
    remote = tmp_path / "share"
    failures: dict[str, ModelFilerError] = {
        f"m{i:04d}": BucketNotFoundError(f"Remote folder {remote} does not exist.")
        for i in range(1000)
    }
    error = TransferError("push", failures)
    message = str(error)
    assert message.startswith(
        f"1000 models failed to push: Remote folder {remote} does not exist. "
        "(m0000, m0001, m0002, m0003, m0004 and 995 more)"
    )
    assert message.count("does not exist") == 1
    assert len(error.failures) == 1000
    assert error.causes() == {BucketNotFoundError}


def test_distinct_causes_are_grouped_most_common_first():
    failures: dict[str, ModelFilerError] = {
        "a": LocalOnlyError("a is gone."),
        "b": BucketNotFoundError("no share."),
        "c": BucketNotFoundError("no share."),
    }
    message = str(TransferError("pull", failures))
    assert message == "3 models failed to pull: no share. (b, c); a is gone. (a)"


def test_many_distinct_causes_are_counted_not_all_listed():
    failures: dict[str, ModelFilerError] = {
        f"m{i}": ModelFilerError(f"cause {i}.") for i in range(12)
    }
    message = str(TransferError("push", failures))
    assert message.endswith("and 7 other causes")
    assert message.count("cause") == 6  # five listed, plus "other causes"


def test_push_all_to_a_missing_remote_folder_raises_one_grouped_error(tmp_path):
    remote = tmp_path / "share"
    remote.mkdir()
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    for i in range(30):
        filer.dump(i, f"m{i:02d}")
    remote.rmdir()  # the share is unmounted
    with pytest.raises(TransferError) as info:
        filer.push_all(jobs=4)
    assert str(info.value).startswith(f"30 models failed to push: Remote folder {remote}")
    assert str(info.value).count("does not exist") == 1
    assert info.value.causes() == {BucketNotFoundError}
    assert all(e.state == "local" for e in filer.list_files())


def test_a_git_call_in_a_missing_folder_names_the_folder_not_git(tmp_path):
    from model_filer.git import gitops

    with pytest.raises(ModelFilerError, match=r"absent is not a folder"):
        gitops.run(["status"], tmp_path / "absent")


# -- issue 18 item 9: errors cross processes and match the standard library ----------------------
EXPORTED = {
    name: obj
    for name in model_filer.__all__
    if isinstance(obj := getattr(model_filer, name), type) and issubclass(obj, BaseException)
}

#: A value for each parameter name an error's __init__ may take. An error added later with a
#: parameter not listed here fails test_every_exported_error_round_trips_through_pickle until
#: a value is given: every error is covered, not just today's.
SAMPLES: dict[str, Any] = {
    "message": "It broke. Run `model-filer status`.",
    "names": ["chrun"],
    "registry": "models/.s3_registry",
    "known": ["churn", "fraud"],
    "rev": "v1.2",
    "consequence": "; nothing removed",
    "hint": "Look again.",
    "name": "churn",
    "expected": (10, "ab" * 32),
    "actual": (11, "cd" * 32),
    "path": "models/.s3_registry",
    "key": "churn/" + "ab" * 32 + ".pkl",
    "address": "s3://bucket/models",
    "action": "push",
    "failures": {"a": BucketNotFoundError("Remote folder /srv/models does not exist.")},
    "untrusted": ["evil.Class"],
    "never": ["os.system"],
    "fix": '[tool.model_filer]\ntrusted = ["evil.Class"]',
    "why": "Not trusted by default: evil.Class: it is evil.",
    "root": "/var/cache/model_filer",
    "cause": OSError(28, "No space left on device"),
    "args": ["fetch", "origin"],
    "returncode": 128,
    "stderr": "fatal: no such remote\n",
}


def _sample(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` with every parameter of its ``__init__`` given a value."""
    if not inspect.isfunction(cls.__init__):  # the standard library's: a message
        return cls(SAMPLES["message"])
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    missing = [p.name for p in params if p.name not in SAMPLES]
    assert not missing, f"add a sample value for {cls.__name__}'s {missing} to SAMPLES"
    positional = [SAMPLES[p.name] for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name: SAMPLES[p.name] for p in params if p.kind is p.KEYWORD_ONLY}
    return cls(*positional, **keywords)


def _state(value: Any) -> Any:
    """What an error is made of, comparable (errors nested in fields included)."""
    if isinstance(value, BaseException):
        return (type(value), str(value), value.args, _state(vars(value)))
    if isinstance(value, dict):
        return {k: _state(v) for k, v in value.items()}
    return value


def test_the_exports_hold_every_kind_of_error_and_warning():
    assert {"ModelFilerError", "ModelFilerWarning", "TransferError", "GitError"} <= set(EXPORTED)


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_every_exported_error_round_trips_through_pickle(name: str) -> None:
    error = _sample(EXPORTED[name])
    if inspect.isfunction(type(error).__init__):
        assert vars(error), f"{name} takes parameters but keeps no fields"
    back = pickle.loads(pickle.dumps(error))
    assert _state(back) == _state(error)


def _fail_in_a_worker(address: str) -> None:
    failures = {"m": RemoteUnreachableError("Cannot reach it.", key="m/k.pkl", address=address)}
    raise TransferError("pull", failures)


def test_an_error_raised_in_a_worker_process_arrives_whole() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_fail_in_a_worker, "s3://bucket/models")
        with pytest.raises(TransferError) as info:
            future.result()
    assert str(info.value) == "1 model failed to pull: Cannot reach it. (m)"
    cause = info.value.failures["m"]
    assert isinstance(cause, RemoteUnreachableError)
    assert (cause.key, cause.address) == ("m/k.pkl", "s3://bucket/models")


def test_errors_that_mean_a_standard_condition_subclass_it() -> None:
    assert issubclass(RemoteObjectMissingError, LookupError)
    assert issubclass(UnknownModelError, LookupError)
    assert issubclass(RemoteUnreachableError, ConnectionError)
    assert issubclass(RemoteUnreachableError, OSError)


def test_a_missing_model_and_a_missing_object_are_lookup_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    filer.dump({"v": 1}, "churn", push=True)
    key = filer.list_files()[0].key
    assert key is not None
    (remote / key).unlink()
    filer.model_path("churn").unlink()
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / "another-machine"))
    filer = Filer(tmp_path / "models", str(remote), remote_type="local")
    with pytest.raises(LookupError) as info:
        filer.load("churn")
    assert isinstance(info.value, RemoteObjectMissingError)
    assert (info.value.key, info.value.address) == (key, str(remote.resolve()))
    with pytest.raises(LookupError) as missing:
        filer.load("chrun")
    assert isinstance(missing.value, UnknownModelError)


def _unreachable_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Filer, str]:
    """A folder whose registry names two S3 models, and a store nobody listens for."""
    address = "s3://some-bucket/team"
    folder = tmp_path / "models"
    folder.mkdir()
    entries = [sample_entry("a"), sample_entry("b", sha256="cd" * 32)]
    (folder / ".s3_registry").write_bytes(registry_bytes("s3", address, *entries))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-never-shown")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return Filer(folder, address, network=FAIL_FAST), address


def test_an_unreachable_store_is_a_connection_error_through_load_and_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load and pull paths' ``except OSError`` handlers (a read-only folder, a full disk)
    let it through unchanged: neither swallowed nor relabelled."""
    filer, address = _unreachable_s3(tmp_path, monkeypatch)
    with pytest.raises(ConnectionError) as info:
        filer.load("a")
    error = info.value
    assert isinstance(error, RemoteUnreachableError)
    assert (error.key, error.address) == (sample_entry("a").key, address)
    assert error.errno is None and "Cannot reach the S3 store" in str(error)
    shown = str(error) + repr(vars(error))
    assert "s3cr3t-value-never-shown" not in shown and "AKIAEXAMPLEKEY" not in shown
    report = filer.pull(["b"])  # one model: no probe, the download's own handlers
    assert isinstance(report.failed["b"], RemoteUnreachableError)
    assert report.failed["b"].key == f"b/{'cd' * 32}.pkl"


def test_registry_errors_carry_the_registry_path(tmp_path: Path) -> None:
    from model_filer.registry.file import parse
    from model_filer.registry.merge import merge_texts

    folder = tmp_path / "models"
    folder.mkdir()
    registry = folder / ".local_registry"
    registry.write_text("format: 1\nmodels: [\n")
    with pytest.raises(RegistryError) as info:
        Filer(folder, str(tmp_path), remote_type="local").load("m")
    assert info.value.path == str(registry)
    with pytest.raises(RegistryError) as parsed:
        parse(b"not: [a registry", "HEAD:models/.s3_registry", filename="models/.s3_registry")
    assert parsed.value.path == "models/.s3_registry"
    one = registry_bytes("local", "/srv/a", sample_entry("m"))
    other = registry_bytes("local", "/srv/b", sample_entry("m"))
    with pytest.raises(RegistryError, match="different remotes") as merged:
        merge_texts(one, one, other, "models/.local_registry")
    assert merged.value.path == "models/.local_registry"


def test_remote_errors_never_carry_credentials_in_their_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filer, _ = _unreachable_s3(tmp_path, monkeypatch)
    with pytest.raises(RemoteError) as info:
        filer.remote.size_of("a/x.pkl")
    assert info.value.address == "s3://some-bucket/team"
    assert info.value.key == "a/x.pkl"


def _library_modules() -> list[Any]:
    modules = []
    for package in (model_filer, model_filer_hooks):
        for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not found.name.endswith(".__main__"):  # importing it runs the CLI
                modules.append(importlib.import_module(found.name))
    return modules


def test_every_error_and_warning_the_library_defines_or_raises_is_exported() -> None:
    """Walk every module: each public error or warning class defined in one, and each class
    a ``raise`` or ``warnings.warn`` names, is exported from ``model_filer``."""
    exported = set(EXPORTED.values())
    used: dict[str, type] = {}
    for module in _library_modules():
        for name, obj in vars(module).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, ModelFilerError | ModelFilerWarning)
                and obj.__module__.startswith("model_filer")
            ):
                used[f"{module.__name__}.{name}"] = obj
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
        for node in ast.walk(tree):
            called = None
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                called = node.exc.func
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "warn"
                and len(node.args) > 1
            ):
                called = node.args[1]
            if isinstance(called, ast.Name) and not called.id.startswith("_"):
                obj = vars(module).get(called.id) or getattr(model_filer.errors, called.id, None)
                if isinstance(obj, type) and obj.__module__.startswith("model_filer"):
                    used[f"{module.__name__}: raise {called.id}"] = obj
    assert len(used) > 30  # the walk saw the library
    missing = {where: cls.__name__ for where, cls in used.items() if cls not in exported}
    assert not missing


def test_load_of_an_unknown_name_suggests_the_closest_known_names(tmp_path: Path) -> None:
    filer = Filer(tmp_path / "models", str(tmp_path), remote_type="local")
    for name in ("churn", "churn_v2", "fraud"):
        filer.dump(1, name)
    with pytest.raises(UnknownModelError) as info:
        filer.load("chrun")
    assert info.value.suggestions == {"chrun": ["churn", "churn_v2"]}
    assert str(info.value).startswith(
        f"No model 'chrun' in {filer.registry_path}. Did you mean 'churn' or 'churn_v2'? "
        "Known there: churn, churn_v2, fraud."
    )
    with pytest.raises(UnknownModelError) as several:
        filer.pull(["chrun", "frud", "zzz"])
    assert "Did you mean 'churn' or 'churn_v2' for 'chrun'; 'fraud' for 'frud'?" in str(
        several.value
    )
    with pytest.raises(UnknownModelError) as unlike:
        filer.load("zzz")
    assert "Did you mean" not in str(unlike.value) and unlike.value.suggestions == {}


def test_the_readme_lists_every_exported_error_and_warning() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Errors", 1)[1].split("\n### ", 1)[0]
    assert [name for name in sorted(EXPORTED) if f"{name}`" not in section] == []
