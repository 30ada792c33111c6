"""An adversarial corpus: pickles that would leave a marker file if any of their code ran.

Each is refused with :class:`UntrustedModelError` and leaves no marker. Each "live" one is
also run once through plain ``pickle.loads`` to show that it really does leave the marker:
a refusal of a payload that could never have worked would prove nothing.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import importlib
import marshal
import operator
import os
import pickle
import shutil
import subprocess
import sys
import time
import uuid
import warnings
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from model_filer.errors import UntrustedModelError, UntrustedModelWarning
from model_filer.pickles import safe_pickle
from model_filer.pickles.trust import TrustedSet
from tests.support.gitrepo import model_filer


class R:
    """Pickles as ``f(*args)``: ``f`` and ``args`` may be ``R`` too (nested calls)."""

    def __init__(self, f: Any, *args: Any) -> None:
        self.f, self.args = f, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.f, self.args

    def __call__(self) -> None:  # pickle wants a callable first item; never called here
        raise AssertionError


@dataclass
class Ctx:
    tmp: Path
    marker: str
    canary: Path
    evil_module: str

    @property
    def touch(self) -> str:
        return f"touch {self.marker}"


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def stack_global(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


def call(callable_ops: bytes, *args: str) -> bytes:
    """Protocol 4: ``callable(*args)`` with string arguments."""
    return b"\x80\x04" + callable_ops + b"(" + b"".join(map(sbu, args)) + b"tR."


def ext(ctx: Ctx, opcode: bytes, code: int, width: int) -> bytes:
    copyreg.add_extension("posix", "system", code)
    return b"\x80\x02" + opcode + code.to_bytes(width, "little") + sbu(ctx.touch) + b"\x85R."


def memo_swap(ctx: Ctx) -> bytes:
    """The memo first holds 'numpy', 'ndarray'; they are replaced before the lookup."""
    return (
        b"\x80\x04"
        + sbu("numpy")
        + b"\x94"
        + sbu("ndarray")
        + b"\x94"
        + b"00"
        + sbu("os")
        + b"q\x00"
        + sbu("system")
        + b"q\x01"
        + b"00"
        + b"h\x00h\x01\x93"
        + sbu(ctx.touch)
        + b"\x85R."
    )


def memo_reuse(ctx: Ctx) -> bytes:
    """A trusted global is memoized, then its memo slot is overwritten by an untrusted one."""
    return (
        b"\x80\x04"
        + stack_global("numpy", "ndarray")
        + b"q\x00"
        + b"0"
        + stack_global("os", "system")
        + b"q\x00"
        + b"0"
        + b"h\x00"
        + sbu(ctx.touch)
        + b"\x85R."
    )


def array() -> R:
    return R(np.ndarray, (1,), "u1")  # a trusted class, called with harmless arguments


def npy_with_payload(ctx: Ctx) -> str:
    path = ctx.tmp / "payload.npy"
    np.save(path, np.array([R(os.system, ctx.touch)], dtype=object), allow_pickle=True)
    return str(path)


def joblib_with_payload(ctx: Ctx) -> str:
    path = ctx.tmp / "payload.joblib"
    joblib.dump(R(os.system, ctx.touch), path)
    return str(path)


def function_from_marshal(ctx: Ctx) -> bytes:
    """``types.FunctionType(marshal.loads(code), {})()``: written by hand, as the pickler
    cannot name ``types.FunctionType`` (it is ``builtins.function``)."""
    code = marshal.dumps(compile(f"open({ctx.marker!r}, 'w').close()", "<x>", "exec"))
    code_arg = b"B" + len(code).to_bytes(4, "little") + code
    loads = stack_global("marshal", "loads") + b"(" + code_arg + b"tR"
    function = stack_global("types", "FunctionType") + b"(" + loads + b"}tR"
    return b"\x80\x04" + function + b")R."


Build = Callable[[Ctx], bytes]
dumps = functools.partial(pickle.dumps, protocol=5)

# (id, builder, live: plain pickle.loads leaves the marker or removes the canary)
CASES: list[tuple[str, Build, bool]] = [
    ("os.system GLOBAL", lambda c: b"cos\nsystem\n(V" + c.touch.encode() + b"\ntR.", True),
    ("os.system STACK_GLOBAL", lambda c: call(stack_global("os", "system"), c.touch), True),
    ("os.system INST", lambda c: b"(V" + c.touch.encode() + b"\nios\nsystem\n.", True),
    ("os.system OBJ", lambda c: b"(cos\nsystem\nV" + c.touch.encode() + b"\no.", True),
    ("posix.system REDUCE", lambda c: dumps(R(os.system, c.touch)), True),
    ("builtins.eval", lambda c: dumps(R(eval, f"open({c.marker!r}, 'w')")), True),
    ("builtins.exec", lambda c: dumps(R(exec, f"open({c.marker!r}, 'w').close()")), True),
    ("builtins.open", lambda c: dumps(R(open, c.marker, "w")), True),
    (
        "builtins.__import__",
        lambda c: dumps(R(R(getattr, R(__import__, "os"), "system"), c.touch)),
        True,
    ),
    (
        "builtins.getattr method gadget",
        lambda c: dumps(R(R(getattr, np.ndarray, "tofile"), array(), c.marker)),
        True,
    ),
    (
        "builtins.getattr with a default",
        lambda c: dumps(R(R(getattr, np.ndarray, "tofile", None), array(), c.marker)),
        True,
    ),
    (
        "importlib.import_module",
        lambda c: dumps(R(importlib.import_module, c.evil_module)),
        True,
    ),
    (
        "a class of a module that runs code on import",
        lambda c: call(stack_global(c.evil_module, "Thing")),
        True,
    ),
    ("subprocess.Popen", lambda c: dumps(R(subprocess.Popen, ["touch", c.marker])), True),
    ("subprocess.check_call", lambda c: dumps(R(subprocess.check_call, ["touch", c.marker])), True),
    (
        "copyreg._reconstructor of Popen",
        lambda c: dumps(
            R(copyreg._reconstructor, subprocess.Popen, subprocess.Popen, ["touch", c.marker])
        ),
        True,
    ),
    ("shutil.rmtree", lambda c: dumps(R(shutil.rmtree, str(c.canary))), True),
    ("shutil.copyfile", lambda c: dumps(R(shutil.copyfile, __file__, c.marker)), True),
    ("webbrowser.open", lambda c: dumps(R(webbrowser.open, f"file://{c.marker}")), False),
    (
        "operator.attrgetter gadget",
        lambda c: dumps(R(R(R(operator.attrgetter, "tofile"), array()), c.marker)),
        True,
    ),
    (
        "operator.methodcaller gadget",
        lambda c: dumps(R(R(operator.methodcaller, "tofile", c.marker), array())),
        True,
    ),
    (
        "functools.partial(os.system)",
        lambda c: dumps(R(R(functools.partial, os.system, c.touch))),
        True,
    ),
    (
        "functools.partial(open)",
        lambda c: dumps(R(R(functools.partial, open, c.marker, "w"))),
        True,
    ),
    ("nested pickle.loads", lambda c: dumps(R(pickle.loads, dumps(R(os.system, c.touch)))), True),
    (
        "nested numpy.load(allow_pickle=True)",
        lambda c: dumps(R(np.load, npy_with_payload(c), None, True)),
        True,
    ),
    ("nested joblib.load", lambda c: dumps(R(joblib.load, joblib_with_payload(c))), True),
    ("nested pandas.read_pickle", lambda c: dumps(R(pd.read_pickle, joblib_with_payload(c))), True),
    ("marshal + types.FunctionType", function_from_marshal, True),
    (
        "an excluded class renamed to its package (pandas.HDFStore)",
        lambda c: call(stack_global("pandas", "HDFStore"), c.marker, "w"),
        False,  # needs PyTables, not a test dependency
    ),
    (
        "a function of a trusted package (numpy.save)",
        lambda c: dumps(R(np.save, c.marker, array())),
        True,
    ),
    (
        "an excluded class of a trusted package (numpy.memmap)",
        lambda c: dumps(R(np.memmap, c.marker, "uint8", "w+", 0, (1,))),
        True,
    ),
    (
        "os.system through a trusted package (sklearn.os)",
        lambda c: call(stack_global("sklearn", "os.system"), c.touch),
        True,
    ),
    (
        "os.system through a trusted module (numpy._core.records.os)",
        lambda c: call(stack_global("numpy._core.records", "os.system"), c.touch),
        True,
    ),
    (
        "dunder: numpy.__builtins__",
        lambda c: call(stack_global("numpy", "__builtins__"), c.touch),
        False,
    ),
    (
        "dunder: a trusted class's __init__.__globals__",
        lambda c: call(stack_global("sklearn.base", "BaseEstimator.__init__.__globals__")),
        False,
    ),
    ("EXT1 after copyreg.add_extension", lambda c: ext(c, b"\x82", 0xF0, 1), True),
    ("EXT2 after copyreg.add_extension", lambda c: ext(c, b"\x83", 0x1F0, 2), True),
    ("EXT4 after copyreg.add_extension", lambda c: ext(c, b"\x84", 0x1F0F0, 4), True),
    ("memo: names swapped in the memo", memo_swap, True),
    (
        "STACK_GLOBAL names hidden behind a pushed-and-popped value",
        lambda c: b"\x80\x04" + sbu("os") + sbu("system") + b"N0\x93" + sbu(c.touch) + b"\x85R.",
        True,
    ),
    ("memo: a trusted global's slot overwritten", memo_reuse, True),
]


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    marker = tmp_path / "PWNED"
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("x")
    evil = f"evil_{uuid.uuid4().hex}"
    (tmp_path / f"{evil}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = (dict(copyreg._extension_registry), dict(copyreg._inverted_registry))
    yield Ctx(tmp_path, str(marker), canary, evil)
    for key, code in list(copyreg._extension_registry.items()):
        if key not in saved[0]:
            copyreg.remove_extension(*key, code)
    sys.modules.pop(evil, None)


def assert_nothing_ran(ctx: Ctx) -> None:
    assert not list(ctx.tmp.glob("PWNED*")), "the payload ran"
    assert (ctx.canary / "keep").exists(), "the payload ran"
    assert ctx.evil_module not in sys.modules, "an untrusted module was imported"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert sum(live for _, _, live in CASES) >= 30


@pytest.mark.parametrize(("build", "live"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malicious_pickle_is_refused_and_runs_nothing(ctx: Ctx, build: Build, live: bool) -> None:
    payload = build(ctx)
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, TrustedSet(), "evil")
    assert_nothing_ran(ctx)
    assert str(info.value).startswith("Model 'evil' was not loaded: nothing in it ran.")
    assert info.value.untrusted or info.value.never


@pytest.mark.parametrize("build", [c[1] for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_each_live_payload_does_run_under_plain_pickle(ctx: Ctx, build: Build) -> None:
    payload = build(ctx)
    # Swallow what a payload raises after its effect (e.g. a call on os.system's result).
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        pickle.loads(payload)
    for _ in range(100):  # Popen runs its command in the background
        ran = list(ctx.tmp.glob("PWNED*")) or not (ctx.canary / "keep").exists()
        if ran:
            break
        time.sleep(0.1)
    assert ran, "the payload is not live: its refusal would prove nothing"


def test_ext_stays_refused_once_plain_pickle_cached_its_code(ctx: Ctx) -> None:
    """The real bypass: a cached EXT code skips find_class in the C unpickler."""
    payload = ext(ctx, b"\x82", 0xF1, 1)
    pickle.loads(payload)  # caches code 0xF1 -> posix.system
    assert copyreg._extension_cache
    Path(ctx.marker).unlink()
    with pytest.raises(UntrustedModelError, match="EXT opcode 241"):
        safe_pickle.loads(payload, TrustedSet(), "evil")
    assert_nothing_ran(ctx)


def test_ext_without_any_registered_extension_is_refused_by_name(ctx: Ctx) -> None:
    payload = b"\x80\x02\x82\xf2)R."
    assert not copyreg._inverted_registry
    with pytest.raises(UntrustedModelError, match="EXT opcode 242"):
        safe_pickle.loads(payload, TrustedSet(), "evil")


def test_ext_is_refused_even_for_a_trusted_name(ctx: Ctx) -> None:
    copyreg.add_extension("collections", "OrderedDict", 0xF3)
    with pytest.raises(UntrustedModelError, match="EXT opcode 243"):
        safe_pickle.loads(b"\x80\x02\x82\xf3)R.", TrustedSet(), "m")


def test_a_module_path_through_an_attribute_imports_nothing(ctx: Ctx) -> None:
    """``numpy._core.records.os`` is not a module: the import fails before anything runs."""
    payload = call(stack_global("numpy._core.records.os", "system"), ctx.touch)
    with pytest.raises(ModuleNotFoundError):
        safe_pickle.loads(payload, TrustedSet(), "evil")
    assert_nothing_ran(ctx)


def test_the_error_lists_every_untrusted_global_and_the_line_to_add(ctx: Ctx) -> None:
    payload = dumps([R(os.system, ctx.touch), R(eval, "1"), R(shutil.rmtree, "x")])
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(payload, TrustedSet(project=["mypkg.*"]), "evil")
    err = info.value
    assert err.untrusted == ["shutil.rmtree"]
    # never-names are listed with why, and never offered in the line to add
    assert [n.partition(" ")[0] for n in err.never] == ["builtins.eval", "posix.system"]
    assert "runs code" in err.never[0] and "runs a program" in err.never[1]
    assert err.fix == '[tool.model_filer]\ntrusted = ["mypkg.*", "shutil.rmtree"]'
    assert err.fix in str(err)
    assert_nothing_ran(ctx)


def test_a_dunder_is_named_as_never_trustable(ctx: Ctx) -> None:
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(call(stack_global("numpy", "__builtins__")), TrustedSet(), "m")
    assert info.value.never == ["numpy.__builtins__ (a dunder or malformed name)"]
    assert 'only trusted=["*"]' in str(info.value)


def test_trusting_everything_is_plain_pickle(ctx: Ctx) -> None:
    safe_pickle.loads(dumps(R(os.system, ctx.touch)), TrustedSet(["*"]), "m")
    assert Path(ctx.marker).exists()


def test_filer_load_refuses_a_teammates_malicious_model(ctx: Ctx, tmp_path: Path) -> None:
    """Dumped with the right hash, as a collaborator would: load still runs nothing."""
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    with pytest.warns(UntrustedModelWarning, match=r"posix\.system"):
        filer.dump(R(os.system, ctx.touch), "m")
    assert [e.imports for e in filer.list_files()] == [["posix.system"]]
    with pytest.raises(UntrustedModelError, match=r"posix\.system"):
        filer.load("m")
    assert_nothing_ran(ctx)


def test_nothing_runs_before_the_refusal_not_even_trusted_code(
    ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names are judged from the opcodes first: a trusted callable placed before an
    untrusted one is never called either."""
    module = ctx.tmp / f"trusted_{ctx.evil_module}.py"
    module.write_text("def touch(path):\n    open(path, 'w').close()\n")
    touch = importlib.import_module(f"trusted_{ctx.evil_module}").touch
    payload = dumps([R(touch, ctx.marker), R(os.system, "true")])
    trusted = TrustedSet([f"trusted_{ctx.evil_module}.touch"])
    with pytest.raises(UntrustedModelError, match=r"posix\.system"):
        safe_pickle.loads(payload, trusted, "m")
    assert not Path(ctx.marker).exists()
    safe_pickle.loads(dumps([R(touch, ctx.marker)]), trusted, "m")
    assert Path(ctx.marker).exists()  # the trusted function does run when all is trusted
    Path(ctx.marker).unlink()


@pytest.mark.parametrize(("build", "live"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_over_the_scan_budget_find_class_still_refuses(
    ctx: Ctx, build: Build, live: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Millions of small objects skip the first scan: each case is still refused."""
    monkeypatch.setattr(safe_pickle, "PRESCAN_BUDGET", 0)
    with pytest.raises(UntrustedModelError):
        safe_pickle.loads(build(ctx), TrustedSet(), "evil")
    assert_nothing_ran(ctx)


def test_over_the_scan_budget_a_benign_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_pickle, "PRESCAN_BUDGET", 0)
    model = {"w": np.arange(3), "frame": pd.DataFrame({"a": [1, 2]})}
    loaded = safe_pickle.loads(dumps(model), TrustedSet(), "m")
    assert loaded["w"].tolist() == [0, 1, 2]
