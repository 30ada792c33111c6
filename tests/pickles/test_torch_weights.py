"""PyTorch: weights load safely with no configuration, and no trusted name reopens torch's
unrestricted unpickler (issue 23).

A pickled tensor names ``torch.storage._load_from_bytes``, which in torch is
``torch.load(bytes, weights_only=False)``. The payloads below leave a marker file if any of
their code runs; each is shown live (it does run through the door it aims at) before its
refusal is asserted. Needs ``torch==2.13.0`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install torch==2.13.0 (.ci/run installs it)"
)

from model_filer.errors import UntrustedModelError, UntrustedModelWarning  # noqa: E402
from model_filer.pickles import safe_pickle, torch_weights, trust  # noqa: E402
from model_filer.pickles.trust import TrustedSet  # noqa: E402
from tests.support.gitrepo import model_filer, registry_bytes, sample_entry  # noqa: E402

# What dump's warning and load's refusal asked users to trust before issue 23.
TODAYS_FIX = ["torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes"]


class R:
    """Pickles as ``f(*args)``."""

    def __init__(self, f: Any, *args: Any) -> None:
        self.f, self.args = f, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.f, self.args


@dataclass
class Project:
    root: Path
    marker: Path

    def trust(self, *patterns: str) -> None:
        items = ", ".join(f'"{p}"' for p in patterns)
        (self.root / "pyproject.toml").write_text(f"[tool.model_filer]\ntrusted = [{items}]\n")

    def filer(self) -> Any:
        return model_filer(self.root / "models", self.root.parent / "remote")

    def ship(self, data: bytes) -> Any:
        """A model whose pickle is exactly ``data``, its registry entry hashed right, as a
        collaborator would commit it; the filer that loads it."""
        models = self.root / "models"
        models.mkdir(exist_ok=True)
        sha256 = hashlib.sha256(data).hexdigest()
        entry = sample_entry("m", "local", len(data), sha256=sha256)
        remote = str(self.root.parent / "remote")
        (models / ".local_registry").write_bytes(registry_bytes("local", remote, entry))
        (models / "m.pkl").write_bytes(data)
        return self.filer()

    def code(self) -> str:
        return f"open({str(self.marker)!r}, 'w').close()"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, tmp_path / f"PWNED_{uuid.uuid4().hex}")


def torch_save(obj: Any, legacy: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def evil(project: Project, how: str) -> Any:
    """An object whose unpickling runs code: ``exec`` of Python, or ``os.system``."""
    if how == "exec":
        return R(exec, project.code())
    return R(os.system, f"touch {project.marker}")


# -- the payloads --------------------------------------------------------------------------
def via_load_from_bytes(project: Project, how: str = "exec", legacy: bool = True) -> bytes:
    """The issue's payload: ``_load_from_bytes`` of ``torch.save`` bytes that run code."""
    inner = torch_save(evil(project, how), legacy)
    return pickle.dumps(R(torch.storage._load_from_bytes, inner), protocol=5)


def via_torch_load(project: Project, spelled: str = "torch.serialization") -> bytes:
    """``torch.load(BytesIO(bytes), None, pickle)``: a pickle module makes it unrestricted."""
    inner = torch_save(evil(project, "exec"))

    def g(module: str, name: str) -> bytes:
        return f"c{module}\n{name}\n".encode()

    stream = g("_io", "BytesIO") + b"(" + pickle.dumps(inner, protocol=2)[2:-1] + b"tR"
    args = b"(" + stream + b"N" + g("torch.serialization", "pickle") + b"t"
    return b"\x80\x02" + g(spelled, "load") + args + b"R."


def via_pickle_loads(project: Project, loads: Any = pickle.loads) -> bytes:
    return pickle.dumps(R(loads, pickle.dumps(evil(project, "exec"))), protocol=5)


PAYLOADS = {
    "_load_from_bytes legacy exec": lambda p: via_load_from_bytes(p),
    "_load_from_bytes legacy os.system": lambda p: via_load_from_bytes(p, "system"),
    "_load_from_bytes zip exec": lambda p: via_load_from_bytes(p, legacy=False),
    "torch.serialization.load": lambda p: via_torch_load(p),
    "torch.load": lambda p: via_torch_load(p, "torch"),
    "pickle.loads": lambda p: via_pickle_loads(p),
}
# Every name those payloads use, trusted exactly: none of it may reopen the door.
EVERY_NAME = [
    *TODAYS_FIX,
    "torch.load",
    "torch.serialization.load",
    "torch.serialization.pickle",
    "_io.BytesIO",
    "_pickle.loads",
    "pickle.loads",
    "builtins.exec",
]
CONFIGS = {
    "today's fix": TODAYS_FIX,
    "every name it uses": EVERY_NAME,
    "torch.*": ["torch.*"],
    "torch.nn.*": ["torch.nn.*"],
    "pyproject *": ["*"],
}


def ran(project: Project) -> bool:
    return project.marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_each_payload_is_live_through_plain_pickle(project: Project, payload: str) -> None:
    with warnings.catch_warnings(), contextlib.suppress(Exception):  # (fails after its effect)
        warnings.simplefilter("ignore")
        pickle.loads(PAYLOADS[payload](project))
    assert ran(project), "the payload is not live: its refusal would prove nothing"


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_a_payload_is_refused_whatever_pyproject_trusts(
    project: Project, payload: str, config: str
) -> None:
    """Committed by a collaborator with the right sha256: load refuses, nothing runs."""
    project.trust(*CONFIGS[config])
    filer = project.ship(PAYLOADS[payload](project))
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m")
    assert not ran(project)
    message = str(info.value)
    assert info.value.never, "a door must be listed as never trustable"
    assert "add_safe_globals" not in message and "weights_only=False" not in message
    for name in info.value.never:
        assert name.partition(" ")[0] not in info.value.fix  # never offered to trust


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_per_call_globs_do_not_admit_a_payload(project: Project, payload: str) -> None:
    filer = project.ship(PAYLOADS[payload](project))
    for patterns in (["torch.*"], ["torch.nn.*"], EVERY_NAME):
        with pytest.raises(UntrustedModelError):
            filer.load("m", trusted=patterns)
    assert not ran(project)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_only_trusting_everything_for_one_call_admits_a_payload(
    project: Project, payload: str
) -> None:
    filer = project.ship(PAYLOADS[payload](project))
    with warnings.catch_warnings(), contextlib.suppress(Exception):  # (fails after its effect)
        warnings.simplefilter("ignore")
        filer.load("m", trusted=["*"])
    assert ran(project)


def test_a_nested_refusal_names_what_torch_met(project: Project) -> None:
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(via_load_from_bytes(project), TrustedSet(TODAYS_FIX), "m")
    [never] = info.value.never
    assert never.startswith("torch.storage._load_from_bytes (served by model_filer's safe")
    assert "it names exec, which that allowlist does not admit" in never
    assert not ran(project)


# -- torch's own allowlist, as code in the process may have widened it ----------------------
@pytest.fixture
def torch_safe_globals() -> Iterator[None]:
    """Restores torch's process-wide list (torch's own modules add to it on import)."""
    saved = torch.serialization.get_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.mark.usefixtures("torch_safe_globals")
def test_add_safe_globals_does_not_widen_the_substitute(project: Project) -> None:
    inner = torch_save(evil(project, "exec"))
    outer = pickle.dumps(R(torch.storage._load_from_bytes, inner), protocol=5)
    with torch.serialization.safe_globals([exec]), pytest.raises(UntrustedModelError):
        safe_pickle.loads(outer, TrustedSet(), "m")
    assert not ran(project)
    torch.serialization.add_safe_globals([exec])
    with pytest.raises(UntrustedModelError):
        safe_pickle.loads(outer, TrustedSet(), "m")
    assert not ran(project)
    # torch's list is as the process left it, and it does widen torch's own loads
    assert exec in torch.serialization.get_safe_globals()
    torch.load(io.BytesIO(inner), weights_only=True)
    assert ran(project)


@pytest.mark.usefixtures("torch_safe_globals")
def test_other_threads_keep_their_safe_globals_meanwhile() -> None:
    """Inside the substitute, only its own thread sees torch's default allowlist alone."""
    from torch import _weights_only_unpickler as wou

    original = wou._get_user_allowed_globals
    seen: dict[str, Any] = {}
    torch.serialization.add_safe_globals([exec])
    with torch_weights.default_allowlist_only():
        seen["inside"] = wou._get_user_allowed_globals()
        other = threading.Thread(
            target=lambda: seen.setdefault("other", wou._get_user_allowed_globals())
        )
        other.start()
        other.join()
        torch.serialization.add_safe_globals([eval])  # added meanwhile: not ours either
        seen["added"] = wou._get_user_allowed_globals()
    assert seen["inside"] == {} and seen["added"] == {}
    assert seen["other"]["builtins.exec"] is exec
    assert wou._get_user_allowed_globals is original  # put back once the last thread left
    assert wou._get_user_allowed_globals()["builtins.eval"] is eval


# -- the benign side -----------------------------------------------------------------------
def _net() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.requires_grad == b.requires_grad
            and torch.equal(a, b)
        )
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


BENIGN = {
    "state_dict": lambda: _net().state_dict(),
    "nested dict of tensors": lambda: {
        "encoder": {"w": torch.randn(3, 3), "steps": torch.arange(4)},
        "head": [torch.ones(2, dtype=torch.float16)],
        "view": torch.arange(10.0)[2:7],
    },
    "Parameter": lambda: torch.nn.Parameter(torch.randn(4, 2)),
    "bfloat16 tensor": lambda: torch.randn(5, dtype=torch.bfloat16),
}


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_weights_load_equal_with_no_configuration(project: Project, kind: str) -> None:
    model = BENIGN[kind]()
    filer = project.filer()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrustedModelWarning)  # dump's warning: none
        filer.dump(model, "m")
    loaded = filer.load("m")
    if kind == "nested dict of tensors":
        assert _equal(loaded["encoder"], model["encoder"]) and _equal(loaded["view"], model["view"])
        assert _equal(loaded["head"][0], model["head"][0])
    else:
        assert _equal(loaded, model)


def _tensors(obj: Any) -> Iterator[Any]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)


def test_loaded_tensors_are_writable_and_own_their_memory(project: Project) -> None:
    data = pickle.dumps(_net().state_dict(), protocol=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only buffer
        loaded = safe_pickle.loads(data, TrustedSet(), "m")
        for tensor in _tensors(loaded):
            storage = tensor.untyped_storage()
            assert storage.resizable(), "a view of the pickle's bytes, not its own memory"
            tensor.add_(1)
    assert all(t.untyped_storage().data_ptr() for t in _tensors(loaded))


def test_a_pickled_module_needs_its_classes_trusted(project: Project) -> None:
    net = _net().eval()
    filer = project.filer()
    with pytest.warns(UntrustedModelWarning, match=r"torch\.nn\.modules\.linear\.Linear"):
        filer.dump(net, "m")
    with pytest.raises(UntrustedModelError) as info:
        filer.load("m")
    assert "torch.nn.modules.container.Sequential" in info.value.untrusted
    assert "_load_from_bytes" not in info.value.fix  # served: never asked for
    project.trust("torch.nn.*")
    loaded = filer.load("m")
    x = torch.randn(3, 8)
    assert type(loaded) is type(net) and torch.equal(loaded(x), net(x))


def test_the_defaults_trust_no_more_of_torch_than_its_weights_only_loader() -> None:
    from torch._weights_only_unpickler import _get_allowed_globals

    ours = {n for n in trust.DEFAULT_FUNCTIONS if n.startswith("torch.")}
    assert ours - set(_get_allowed_globals()) == set(trust.SERVED)


# -- the never-list, by identity ------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.serialization", "_legacy_load"),
        ("torch.jit", "load"),
        ("torch.fx.graph_module", "GraphModule"),
        ("torch.fx", "GraphModule"),
        ("torch.package", "PackageImporter"),
        ("torch._C", "ScriptModule"),
        ("torch._C", "CompilationUnit"),
    ],
)
def test_torch_doors_are_never_trusted(module: str, name: str) -> None:
    for trusted in (TrustedSet([f"{module}.{name}"]), TrustedSet(["torch.*"])):
        with pytest.raises(safe_pickle._Refused) as info:
            safe_pickle.resolve(module, name, trusted)
        assert info.value.never
        assert not trusted.covers_name(f"{module}.{name}")  # the commit hook's view


def test_an_alias_of_torch_load_is_refused_by_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Project
) -> None:
    """A name the table does not spell, resolving to torch.load, is the same door."""
    pkg = f"aliases_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{pkg}.py").write_text("from torch import load as fetch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(safe_pickle._Refused) as info:
            safe_pickle.resolve(pkg, "fetch", TrustedSet([f"{pkg}.fetch"]))
        assert "loads a second pickle" in str(info.value.never)
    finally:
        sys.modules.pop(pkg, None)


# -- where torch is imported, and what the commit hook says ---------------------------------
def test_torch_is_imported_only_when_a_pickle_names_it(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps([{"a": 1}, R(pickle.loads, b"")], protocol=5))
    code = (
        "import sys, numpy\n"
        "from model_filer.pickles import safe_pickle, trust\n"
        f"path = {str(path)!r}\n"
        "try:\n"
        "    safe_pickle.load(open(path, 'rb'), trust.TrustedSet(['*pickle.loads']), 'm')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code.replace("'*pickle.loads'", "'pickle.loads'")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["UntrustedModelError", "False"]


def test_the_commit_hook_judges_torch_names_with_the_same_table(repo: Path, capsys: Any) -> None:
    from model_filer_hooks.no_local_models import main as no_local_models

    from tests.support.gitrepo import staged

    (repo / "pyproject.toml").write_text('[tool.model_filer]\ntrusted = ["*"]\n')
    weights = ["collections.OrderedDict", *TODAYS_FIX]
    (repo / "models").mkdir()
    (repo / "models/.local_registry").write_bytes(
        registry_bytes(
            "local",
            "/r",
            sample_entry("weights", imports=weights),
            sample_entry("net", imports=[*weights, "torch.nn.modules.linear.Linear"]),
            sample_entry("door", imports=[*weights, "torch.serialization.load"]),
        )
    )
    staged(repo, "models/.local_registry")
    assert no_local_models(["models/.local_registry"]) == 1
    out = capsys.readouterr().out
    assert "door imports torch.serialization.load, outside the trusted set" in out
    assert "torch.serialization.load can never be trusted: it loads a second pickle" in out
    assert "weights imports" not in out and "net imports" not in out
    assert "fix:" not in out  # nothing to add to pyproject.toml would help
    assert f"torch.storage._load_from_bytes: {trust.SERVED[torch_weights.NAME]}" in out


# -- storages out of band: what model_filer's own dump writes ---------------------------------
def _entry(filer: Any) -> Any:
    from model_filer.registry.file import parse

    [entry] = parse(filer.registry_path.read_bytes(), "registry").entries.values()
    return entry


def test_dump_writes_storages_out_of_band_and_nothing_else(project: Project) -> None:
    import numpy as np

    filer = project.filer()
    filer.dump(_net().state_dict(), "net")
    filer.dump({"w": np.arange(3)}, "arrays")
    entries = {e.name: e for e in filer.list_files()}
    assert entries["net"].serializer == "pickle-5+buffers"
    assert entries["arrays"].serializer == "pickle-5"  # byte for byte a plain pickle, as before
    path = project.root / "models" / "arrays.pkl"
    assert pickle.loads(path.read_bytes())["w"].tolist() == [0, 1, 2]


def test_out_of_band_tensors_are_writable_and_own_their_memory(project: Project) -> None:
    model = _net().state_dict()
    filer = project.filer()
    filer.dump(model, "net")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = filer.load("net")
    assert _equal(loaded, model)
    for tensor in _tensors(loaded):
        assert tensor.untyped_storage().resizable()
        tensor.add_(1)
    assert _equal(filer.load("net", trusted=["*"]), model)  # plain pickle.load, same bytes


@pytest.mark.parametrize("config", ["today's fix", "torch.*", "pyproject *"])
def test_a_payload_dumped_out_of_band_is_refused(project: Project, config: str) -> None:
    """A collaborator's model_filer writes the nested bytes after the pickle: same answer."""
    filer = project.filer()
    inner = torch_save(evil(project, "exec"))
    filer.dump(R(torch.storage._load_from_bytes, inner), "m")
    assert _entry(filer).serializer == "pickle-5+buffers"
    project.trust(*CONFIGS[config])
    with pytest.raises(UntrustedModelError, match=r"refused its nested torch\.save bytes"):
        filer.load("m")
    assert not ran(project)
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        filer.load("m", trusted=["*"])
    assert ran(project)  # live: only a per-call "*" runs it


def test_a_file_without_its_buffers_is_refused_clearly(project: Project) -> None:
    from model_filer.errors import SerializationError

    data = pickle.dumps({"a": 1}, protocol=5)
    models = project.root / "models"
    models.mkdir()
    entry = sample_entry(
        "m",
        "local",
        len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        serializer="pickle-5+buffers",
    )
    remote = str(project.root.parent / "remote")
    (models / ".local_registry").write_bytes(registry_bytes("local", remote, entry))
    (models / "m.pkl").write_bytes(data)
    with pytest.raises(SerializationError, match="out-of-band buffers are unreadable"):
        project.filer().load("m")


# -- the review of issue 23 -------------------------------------------------------------------
class SubprocessPayload:
    """torch.distributed's ``SubprocessHandler(...)`` runs a program when built."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from torch.distributed.elastic.multiprocessing.subprocess_handler.subprocess_handler import (  # noqa: E501
            SubprocessHandler,
        )

        command = ("-c", f"touch {self.marker}")
        return SubprocessHandler, ("/bin/sh", command, {}, None, None, 0, None)


@pytest.mark.parametrize("config", ["torch.*", "torch.distributed.*", "pyproject *"])
def test_a_torch_glob_never_starts_a_process(project: Project, config: str) -> None:
    data = pickle.dumps(SubprocessPayload(project.marker), protocol=5)
    patterns = ["*"] if config == "pyproject *" else [config]
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(data, TrustedSet(project=patterns), "m")
    assert "torch.distributed: it starts processes" in info.value.never[0]
    assert not ran(project)


TORCH_NEVER = [
    ("torch.utils.data", "DataLoader"),
    ("torch.utils.data.datapipes.datapipe", "_DataPipeSerializationWrapper"),
    ("torch.multiprocessing", "Process"),
    ("torch.utils.benchmark", "Timer"),
    ("torch.profiler", "profile"),
    ("torch.cuda", "Stream"),
    ("torch.backends.xeon.run_cpu", "_Launcher"),
    ("torch.serialization", "_open_file"),
    ("torch.library", "Library"),
    ("torch.xpu.memory", "XPUPluggableAllocator"),
    ("torch._ops", "HigherOrderOperator"),
    ("torch.ao.quantization.fake_quantize", "FakeQuantize"),
]


@pytest.mark.parametrize(("module", "name"), TORCH_NEVER, ids=[".".join(t) for t in TORCH_NEVER])
def test_torch_subpackages_that_run_things_are_never_trusted(module: str, name: str) -> None:
    with pytest.raises(safe_pickle._Refused) as info:
        safe_pickle.resolve(module, name, TrustedSet(["torch.*", f"{module}.{name}"]))
    assert info.value.never


def _buffers_file(body: bytes, buffers: list[bytes], listed: int | None = None) -> bytes:
    """A ``pickle-5+buffers`` file: ``body`` (a pickle), its buffers, sizes, count, magic."""
    sizes = b"".join(len(b).to_bytes(8, "little") for b in buffers)
    count = len(buffers) if listed is None else listed
    return body + b"".join(buffers) + sizes + count.to_bytes(8, "little") + b"MFBUF\x00v1"


def test_a_pickle_cannot_repoint_a_buffer(project: Project, tmp_path: Path) -> None:
    """The review's proof: BUILD on the buffer's slice pointed it at another open file."""
    from model_filer.pickles import serializers

    secret = tmp_path / "secret.pt"
    torch.save(torch.tensor([1337.0, 4242.0]), secret)
    with open(secret, "rb") as other:
        state = {"fd": other.fileno(), "offset": 0, "length": secret.stat().st_size}
        state |= {"_fd": other.fileno(), "_offset": 0, "_length": secret.stat().st_size}
        body = (
            b"\x80\x05ctorch.storage\n_load_from_bytes\n\x97"
            + pickle.dumps(state, protocol=5)[2:-1]
            + b"b\x85R."
        )
        data = _buffers_file(body, [b"XXXX"])
        with pytest.raises(UntrustedModelError) as info:
            serializers.load(io.BytesIO(data), "pickle-5+buffers", "m", TrustedSet())
    assert info.value.never == [
        "an out-of-band buffer (NEXT_BUFFER) (a pickle that tries to change an out-of-band buffer)"
    ]
    part = torch_weights.FileSlice(io.BytesIO(b"abcd"), 0, 4, 4)
    for name in ("fd", "_fd", "_offset", "_fh", "length"):
        with pytest.raises(AttributeError):
            setattr(part, name, 0)
    with pytest.raises(ValueError, match="outside its file"):
        torch_weights.FileSlice(io.BytesIO(b"abcd"), 2, 4, 4)


def test_a_trailer_lists_no_more_buffers_than_the_pickle_takes(project: Project) -> None:
    from model_filer.errors import SerializationError
    from model_filer.pickles import serializers

    huge = torch_weights.MAX_BUFFERS + 1  # the review's 2,000,000 slices from a 15 MiB file
    data = b"\x80\x05N." + bytes(8 * huge) + huge.to_bytes(8, "little") + b"MFBUF\x00v1"
    with pytest.raises(SerializationError, match="out-of-band buffers are unreadable"):
        serializers._read_buffers(io.BytesIO(data), "m")
    extra = _buffers_file(pickle.dumps(None, protocol=5), [b"a", b"b", b"c"])
    with pytest.raises(SerializationError, match="out-of-band buffers are unreadable"):
        serializers.load(io.BytesIO(extra), "pickle-5+buffers", "m", TrustedSet())


def test_buffers_are_made_as_the_unpickler_takes_them() -> None:
    from model_filer.pickles import serializers

    data = _buffers_file(pickle.dumps(None, protocol=5), [b"ab", b"cde"])
    buffers = serializers._read_buffers(io.BytesIO(data), "m")
    assert not isinstance(buffers, list)
    assert [bytes(b.read_all()) for b in buffers] == [b"ab", b"cde"]


def _load_from_bytes_of(payload: bytes) -> bytes:
    return pickle.dumps(R(torch.storage._load_from_bytes, payload), protocol=5)


def _torchscript() -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), buf)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "TorchScript archive", "empty"])
def test_nested_bytes_torch_cannot_read_are_a_typed_refusal(kind: str) -> None:
    """The review's proof: RuntimeError, EOFError and torch's advice escaped raw."""
    payload = {"garbage": lambda: b"\x80\x02K\x01.", "empty": bytes}.get(kind, _torchscript)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns it would dispatch to torch.jit.load
        with pytest.raises(UntrustedModelError) as info:
            safe_pickle.loads(_load_from_bytes_of(payload), TrustedSet(), "m")
    [never] = info.value.never
    assert "refused its nested torch.save bytes" in never
    assert "weights_only=False" not in str(info.value) and "In PyTorch" not in str(info.value)


def test_dump_reduces_each_storage_once(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each storage's bytes are made once (torch.save of it), not once to recognise it and
    again to write it."""
    from model_filer.pickles import serializers

    calls = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda *a, **k: calls.append(1) or save(*a, **k))
    state = {"w": torch.randn(1000), "b": torch.randn(10)}
    _, _, found = serializers._dump(state, io.BytesIO())
    assert found.buffers == 2
    assert len(calls) == 2
