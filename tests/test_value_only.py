"""Value-only defaults: functions an estimator keeps as a parameter, never called by a load.

``trust.VALUE_ONLY`` (score functions, scorers' metrics, ``numpy.mean``, the k-means steps...)
may be named by a pickle as values; a pickle that would call one (the callable of ``REDUCE``,
``NEWOBJ``, ``NEWOBJ_EX``, ``OBJ`` or ``INST``, or ``BUILD``'s target), by any route through
the stack and the memo, is refused before anything runs. ``numpy.mean`` stands for them in
the crafted pickles: calling it is harmless, so a test that fails shows a pickle that loaded.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import model_filer
from model_filer import safe_pickle, trust
from model_filer.errors import UntrustedModelError
from model_filer.trust import TrustedSet

MEAN = b"cnumpy\nmean\n"  # GLOBAL numpy.mean
ARGS = b"(](K\x01K\x03et"  # MARK, [1, 3], TUPLE: the argument tuple ([1, 3],)
P2 = b"\x80\x02"


def refused(data: bytes) -> UntrustedModelError:
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(data, TrustedSet(), "m")
    return info.value


def test_the_table_is_part_of_the_defaults() -> None:
    assert trust.VALUE_ONLY <= trust.DEFAULT_FUNCTIONS
    assert "sklearn.cluster._kmeans._kmeans_single_lloyd" in trust.VALUE_ONLY
    assert "numpy.mean" in trust.VALUE_ONLY


# Each route by which a value-only global reaches a call.
ROUTES = {
    "REDUCE": P2 + MEAN + ARGS + b"R.",
    "memo PUT then GET": P2 + MEAN + b"q\x070" + b"h\x07" + ARGS + b"R.",
    "MEMOIZE then BINGET": b"\x80\x04" + MEAN + b"\x940h\x00" + ARGS + b"R.",
    "MEMOIZE after others": (
        b"\x80\x04\x8c\x01a\x94\x8c\x01b\x940" + MEAN + b"\x940h\x02" + ARGS + b"R."
    ),
    "text PUT then GET": P2 + MEAN + b"p5\n0g5\n" + ARGS + b"R.",
    "DUP": P2 + MEAN + b"20" + ARGS + b"R.",
    "STACK_GLOBAL": b"\x80\x04\x8c\x05numpy\x8c\x04mean\x93" + ARGS + b"R.",
    "STACK_GLOBAL memoized names": (
        b"\x80\x04\x8c\x05numpy\x94\x8c\x04mean\x94h\x00h\x01\x93" + ARGS + b"R."
    ),
    "OBJ": P2 + b"(" + MEAN + b"](K\x01K\x03eo.",
    "INST": P2 + b"(](K\x01K\x03einumpy\nmean\n.",
    "NEWOBJ": P2 + MEAN + ARGS + b"\x81.",
    "NEWOBJ_EX": b"\x80\x04" + MEAN + ARGS + b"}\x92.",
    "BUILD target": P2 + MEAN + b"}b.",
    "under a mark, popped back": P2 + b"(" + MEAN + b"1" + MEAN + ARGS + b"R.",
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_value_only_function_is_never_called(route: str) -> None:
    error = refused(ROUTES[route])
    assert error.never == [f"numpy.mean ({safe_pickle.VALUE_ONLY_WHY})"]
    assert error.untrusted == [] and "pyproject.toml" not in str(error)


def test_the_scan_lists_what_would_be_called() -> None:
    found = safe_pickle.scan(io.BytesIO(ROUTES["memo PUT then GET"]), watch=trust.VALUE_ONLY)
    assert found.called == frozenset({"numpy.mean"})


def test_as_a_value_it_loads() -> None:
    """As estimators keep them: arguments, dict values, memo copies, BUILD state."""
    from sklearn.feature_selection import SelectKBest, f_classif

    x, y = np.random.RandomState(0).rand(20, 3), np.arange(20) % 2
    model = SelectKBest(f_classif, k=2).fit(x, y)
    data = pickle.dumps([model, {"pool": np.mean, "again": np.mean}, (np.mean,)], protocol=5)
    loaded = safe_pickle.loads(data, TrustedSet(), "m")
    assert loaded[0].score_func is f_classif and loaded[1]["again"] is np.mean
    assert loaded[2] == (np.mean,)


def test_an_unscanned_pickle_naming_one_is_scanned_before_it_runs() -> None:
    """Past the scan's budget the load starts unscanned; naming a value-only function makes
    it start again, scanned, before anything untrusted runs."""
    filler = pickle.dumps(list(range(200_000)), protocol=2)[2:-1] + b"0"  # pushed, popped
    data = P2 + filler + MEAN + ARGS + b"R."
    with pytest.raises(safe_pickle._OverBudget):
        safe_pickle.scan(io.BytesIO(data), safe_pickle.PRESCAN_BUDGET)
    assert refused(data).never == [f"numpy.mean ({safe_pickle.VALUE_ONLY_WHY})"]
    benign = pickle.dumps([list(range(200_000)), np.mean], protocol=5)
    assert safe_pickle.loads(benign, TrustedSet(), "m")[1] is np.mean


KMEANS = """
import pickle, sys
import numpy as np, scipy.sparse as sp
from sklearn.cluster._kmeans import _kmeans_single_lloyd
import model_filer
from model_filer import safe_pickle, trust
from model_filer.errors import UntrustedModelError

X = sp.csr_matrix(np.ones((4, 2)))
X.indices = np.array([0, 1, 0, 1, 0, 1, 0, 50_000_000], dtype=np.int32)  # far outside


class P:
    def __reduce__(self):
        return (_kmeans_single_lloyd, (X, np.ones(4), np.zeros((2, 2)), 1, False, 1e-4, 1))


try:
    safe_pickle.loads(pickle.dumps(P(), protocol=5), trust.TrustedSet(), "m")
except UntrustedModelError as exc:
    print(exc.never)
    sys.exit(0)
print("loaded")
"""


def test_a_crafted_kmeans_step_is_refused_not_run(tmp_path: Path) -> None:
    """The review's proof: called on a crafted sparse matrix, the k-means step writes out of
    bounds (a segfault). In a child process: before the fix it crashed the interpreter."""
    here = str(Path(model_filer.__file__).parents[1])  # this model_filer, not another
    env = {**os.environ, "PYTHONPATH": here}
    done = subprocess.run(
        [sys.executable, "-c", KMEANS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "_kmeans_single_lloyd (a function trusted as a value only" in done.stdout


def test_the_commit_hook_still_admits_them_by_name() -> None:
    judge: Any = TrustedSet()
    assert all(judge.covers_name(name) for name in trust.VALUE_ONLY)
