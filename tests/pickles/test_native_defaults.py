"""The defaults trust functions a pickle may call, and leave out those not safe to call.

A pickle that may name a function may also call it while loading, with arguments of its
choosing: REDUCE, NEWOBJ, BUILD on a class, an instance whose ``__setstate__`` or ``append``
is the function, ``numpy.vectorize`` around it, a class that calls what it is given... So
the defaults hold only functions that compute over arrays (score functions, the metrics of
named scorers, ``numpy.mean``), and leave out, with the reason, scikit-learn's native k-means
steps (Cython without bounds checks: a crafted sparse matrix makes them write out of bounds)
and the mutual-information score functions (they start joblib workers): ``NOT_BY_DEFAULT``.
"""

from __future__ import annotations

import collections
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
from model_filer.errors import UntrustedModelError, UntrustedModelWarning
from model_filer.pickles import safe_pickle, trust
from model_filer.pickles.trust import TrustedSet

LLOYD = "sklearn.cluster._kmeans._kmeans_single_lloyd"
ELKAN = "sklearn.cluster._kmeans._kmeans_single_elkan"
WHY_NATIVE = "memory-unsafe native code"


def test_the_native_kmeans_steps_are_left_out_with_their_reason() -> None:
    for name in (LLOYD, ELKAN):
        assert name not in trust.DEFAULT_FUNCTIONS
        assert WHY_NATIVE in trust.NOT_BY_DEFAULT[name]
        assert not TrustedSet().covers_name(name)  # the commit hook refuses it too
    assert not set(trust.NOT_BY_DEFAULT) & trust.DEFAULT_FUNCTIONS
    for kind in ("classif", "regression"):  # they start joblib workers: left out, saying so
        name = f"sklearn.feature_selection._mutual_info.mutual_info_{kind}"
        assert "joblib worker processes" in trust.NOT_BY_DEFAULT[name]
        assert not TrustedSet().covers_name(name)
    assert not hasattr(trust, "VALUE_ONLY")


def test_a_default_function_may_be_called_by_a_pickle() -> None:
    """The new rule: a trusted function is trusted to be called (``numpy.mean([1, 3])``)."""
    data = b"\x80\x02cnumpy\nmean\n(](K\x01K\x03etR."
    assert safe_pickle.loads(data, TrustedSet(), "m") == 2.0


# The review's proofs, in a child process: called on a crafted sparse matrix the k-means step
# writes out of bounds (a segfault). The child prints what it saw; exit 0 is a clean refusal.
CHILD = """
import pickle, sys
import numpy as np, scipy.sparse as sp
from sklearn.cluster._kmeans import _kmeans_single_lloyd
from model_filer.pickles import safe_pickle
from model_filer.errors import UntrustedModelError
from model_filer.pickles.trust import TrustedSet

def frag(o):
    return pickle.dumps(o, 2)[2:-1]

X = sp.csr_matrix(np.ones((4, 2)))
X.indices = np.array([0, 1, 0, 1, 0, 1, 0, 50_000_000], dtype=np.int32)  # far outside
setitem = sp.csr_matrix.__setitem__
STEP = _kmeans_single_lloyd
ROUTES = {
    # numpy.vectorize(_kmeans_single_lloyd), then REDUCE on the instance (poc4)
    "vectorize": b"\\x80\\x02" + frag(np.vectorize) + frag((STEP, None, None, {0, 1, 2}))
    + b"R" + frag((X, np.ones(4), np.zeros((2, 2)))) + b"R.",
    # BUILD on the class sets csr_matrix.__setitem__, SETITEM on a crafted matrix calls it (poc2)
    "class BUILD": b"\\x80\\x02cscipy.sparse._csr\\ncsr_matrix\\nN"
    + frag({"__setitem__": STEP}) + b"\\x86b0"
    + frag(X) + frag(np.ones(4)) + frag(np.zeros((2, 2))) + b"s.",
}
try:
    safe_pickle.loads(ROUTES[sys.argv[1]], TrustedSet(), "m")
except UntrustedModelError as exc:
    print("REFUSED", exc)
    print("setitem untouched:", sp.csr_matrix.__setitem__ is setitem)
    sys.exit(0)
print("LOADED")
"""


@pytest.mark.parametrize("route", ["vectorize", "class BUILD"])
def test_the_reviews_kmeans_proofs_are_refused_with_nothing_run(route: str, tmp_path: Path) -> None:
    here = str(Path(model_filer.__file__).parents[1])  # this model_filer, not another
    done = subprocess.run(
        [sys.executable, "-c", CHILD, route],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": here},
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.startswith("REFUSED"), done.stdout
    assert "setitem untouched: True" in done.stdout
    assert f"{LLOYD}: {trust.NOT_BY_DEFAULT[LLOYD]}" in done.stdout


def _bisecting() -> Any:
    from sklearn.cluster import BisectingKMeans

    return BisectingKMeans(n_clusters=3, random_state=0).fit(np.random.RandomState(0).rand(30, 2))


def test_the_kmeans_refusal_says_why_and_how_to_opt_in() -> None:
    model = _bisecting()
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.loads(pickle.dumps(model, protocol=5), TrustedSet(), "clusters")
    error = info.value
    assert error.untrusted == [LLOYD] and error.never == []
    assert error.why == trust.not_by_default([LLOYD])
    assert f"Not trusted by default: {LLOYD}: {WHY_NATIVE}" in str(error)
    assert "dump its fitted attributes" in str(error)
    assert f'trusted = ["{LLOYD}"]' in str(error)


def test_dumps_warning_says_why() -> None:
    buf = io.BytesIO()
    pickler = safe_pickle.RecordingPickler(buf, protocol=5)
    pickler.dump(_bisecting())
    with pytest.warns(UntrustedModelWarning, match=WHY_NATIVE):
        safe_pickle.warn_untrusted("clusters", pickler.scan(), TrustedSet())


def test_a_bisecting_kmeans_loads_once_its_names_are_trusted(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.model_filer]\ntrusted = ["{LLOYD}", "{ELKAN}"]\n'
    )
    model = _bisecting()
    loaded = safe_pickle.loads(pickle.dumps(model, protocol=5), trust.trusted_set(tmp_path), "m")
    assert (loaded.predict(model.cluster_centers_) == model.predict(model.cluster_centers_)).all()


def test_a_big_pickle_naming_a_score_function_is_loaded_once() -> None:
    """Past the scan's budget, a pickle naming ``chi2`` is unpickled once: each global is
    looked up once (before, the load started again, scanned, when it met ``chi2``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.pipeline import Pipeline

    vectorizer = TfidfVectorizer()
    vectorizer.vocabulary_ = {f"w{i}": i for i in range(60_000)}
    model = Pipeline([("v", vectorizer), ("k", SelectKBest(chi2))])
    data = pickle.dumps(model, protocol=5)
    with pytest.raises(safe_pickle._OverBudget):
        safe_pickle.scan(io.BytesIO(data), safe_pickle.PRESCAN_BUDGET)
    seen: collections.Counter[str] = collections.Counter()
    _AUDIT.append(seen)
    try:
        loaded = safe_pickle.loads(data, TrustedSet(), "m")
    finally:
        _AUDIT.remove(seen)
    assert loaded.steps[1][1].score_func is chi2
    assert seen["sklearn.feature_selection._univariate_selection.chi2"] == 1
    assert max(seen.values()) == 1, seen.most_common(3)


_AUDIT: list[collections.Counter[str]] = []  # find_class lookups, while a test listens


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and _AUDIT:
        _AUDIT[-1][f"{args[0]}.{args[1]}"] += 1


sys.addaudithook(_on_audit)  # cannot be removed: it counts only while a test listens
