"""A benign corpus: what the common ML stack pickles loads with the defaults, unchanged.

Also checks the opcode scan that lists a pickle's imports against what the unpickler really
asks for, and that it skips large payloads instead of reading them.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import fractions
import io
import pickle
import uuid
import warnings
import zoneinfo
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import (
    cluster,
    compose,
    decomposition,
    ensemble,
    linear_model,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    svm,
    tree,
)

from model_filer.errors import UntrustedModelWarning
from model_filer.pickles import safe_pickle
from model_filer.pickles.trust import TrustedSet
from tests.support.gitrepo import model_filer

X = np.random.RandomState(0).rand(80, 4)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)
FRAME = pd.DataFrame(
    {
        "n": np.arange(6, dtype="int64"),
        "colour": pd.Categorical(["red", "blue", "red", "green", "blue", "red"]),
        "when": pd.date_range("2024-01-01", periods=6, freq="D"),
        "when_utc": pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC"),
        "when_paris": pd.date_range("2024-01-01", periods=6, freq="h", tz="Europe/Paris"),
        "x": [0.5, 1.5, None, 2.5, 3.5, 4.5],
        "label": ["a", "b", "c", "d", "e", "f"],
    }
)


def fitted(estimator: Any, x: Any = X, y: Any = Y) -> Callable[[], Any]:
    return lambda: estimator.fit(x, y)


def column_pipeline() -> Any:
    columns = compose.ColumnTransformer(
        [
            ("onehot", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["colour"]),
            ("scale", preprocessing.StandardScaler(), ["n", "x"]),
        ]
    )
    frame = FRAME.fillna(0)
    model = pipeline.Pipeline([("columns", columns), ("tree", tree.DecisionTreeClassifier())])
    return model.fit(frame, [0, 1, 0, 1, 0, 1])


ESTIMATORS: dict[str, Callable[[], Any]] = {
    "LogisticRegression": fitted(linear_model.LogisticRegression()),
    "LinearRegression": fitted(linear_model.LinearRegression()),
    "Ridge": fitted(linear_model.Ridge()),
    "Lasso": fitted(linear_model.Lasso(alpha=0.01)),
    "SGDClassifier": fitted(linear_model.SGDClassifier(random_state=0)),
    "DecisionTreeClassifier": fitted(tree.DecisionTreeClassifier()),
    "DecisionTreeRegressor": fitted(tree.DecisionTreeRegressor()),
    "RandomForestClassifier": fitted(ensemble.RandomForestClassifier(5, random_state=0)),
    "RandomForestRegressor": fitted(ensemble.RandomForestRegressor(5, random_state=0)),
    "ExtraTreesClassifier": fitted(ensemble.ExtraTreesClassifier(5, random_state=0)),
    "GradientBoostingClassifier": fitted(ensemble.GradientBoostingClassifier(n_estimators=5)),
    "GradientBoostingRegressor": fitted(ensemble.GradientBoostingRegressor(n_estimators=5)),
    "HistGradientBoostingClassifier": fitted(ensemble.HistGradientBoostingClassifier(max_iter=5)),
    "HistGradientBoostingRegressor": fitted(ensemble.HistGradientBoostingRegressor(max_iter=5)),
    "SVC": fitted(svm.SVC(probability=True, random_state=0)),
    "SVR": fitted(svm.SVR()),
    "LinearSVC": fitted(svm.LinearSVC()),
    "KMeans": fitted(cluster.KMeans(3, n_init=1, random_state=0)),
    "DBSCAN": fitted(cluster.DBSCAN()),
    "PCA": fitted(decomposition.PCA(2)),
    "TruncatedSVD": fitted(decomposition.TruncatedSVD(2)),
    "MLPClassifier": fitted(neural_network.MLPClassifier((4,), max_iter=20, random_state=0)),
    "KNeighborsClassifier": fitted(neighbors.KNeighborsClassifier(algorithm="kd_tree")),
    "NearestNeighbors ball_tree": fitted(neighbors.NearestNeighbors(algorithm="ball_tree")),
    "GaussianNB": fitted(naive_bayes.GaussianNB()),
    "Pipeline scaler + logistic": fitted(
        pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    ),
    "ColumnTransformer + OneHotEncoder pipeline": column_pipeline,
    "estimator holding a RandomState": fitted(
        ensemble.RandomForestClassifier(3, random_state=np.random.RandomState(1))
    ),
}

DATA: dict[str, Callable[[], Any]] = {
    "DataFrame categorical + datetime + tz": lambda: FRAME,
    "Series categorical": lambda: FRAME["colour"],
    "Series datetime": lambda: FRAME["when"],
    "Series tz-aware (zoneinfo)": lambda: FRAME["when_paris"],
    "Series nullable Int64 with NA": lambda: pd.Series([1, None, 3], dtype="Int64"),
    "Series string dtype": lambda: pd.Series(["a", None], dtype="string"),
    "Series with DatetimeIndex": lambda: pd.Series(
        [1.0, 2.0], index=pd.date_range("2020", periods=2)
    ),
    "MultiIndex frame": lambda: FRAME.set_index(["colour", "n"]),
    "period and timedelta": lambda: [pd.Period("2024-01", "M"), pd.Timedelta("1D"), pd.NaT],
    "Timestamp": lambda: pd.Timestamp("2024-01-01 12:00", tz="UTC"),
    "numpy float64": lambda: np.linspace(0, 1, 7),
    "numpy int8 / uint64": lambda: [np.arange(5, dtype=np.int8), np.arange(5, dtype=np.uint64)],
    "numpy bool / complex": lambda: [np.array([True, False]), np.array([1 + 2j])],
    "numpy datetime64 / timedelta64": lambda: [
        np.array(["2024-01-01"], dtype="M8[ns]"),
        np.array([5], dtype="m8[s]"),
    ],
    "numpy unicode / bytes / object": lambda: [
        np.array(["ab", "c"]),
        np.array([b"x"]),
        np.array([1, "a", None], dtype=object),
    ],
    "numpy structured": lambda: np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]),
    "numpy Fortran order and 2-D": lambda: np.asfortranarray(np.ones((3, 4))),
    "numpy scalars": lambda: [np.float32(1.5), np.int64(3), np.bool_(True)],
    "numpy Generator": lambda: np.random.default_rng(0),
    "plain containers": lambda: {
        "list": [1, 2.5, "s", b"b", None, True],
        "tuple": (1, (2, 3)),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytearray": bytearray(b"xy"),
        "complex": 1 + 2j,
        "range": range(3),
        "slice": slice(1, 5, 2),
    },
    "collections": lambda: [
        collections.OrderedDict(a=1),
        collections.defaultdict(list, {"a": [1]}),
        collections.deque([1, 2]),
        collections.Counter("aab"),
    ],
    "datetimes": lambda: [
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 2, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        dt.date(2024, 1, 2),
        dt.time(3, 4),
        dt.timedelta(days=2),
        dt.timezone(dt.timedelta(hours=2)),
    ],
    "Decimal, Fraction, UUID": lambda: [
        decimal.Decimal("1.25"),
        fractions.Fraction(1, 3),
        uuid.UUID(int=7),
    ],
}


def same(a: Any, b: Any) -> bool:
    """Equal as a pickle sees it: both write the very same bytes."""
    return pickle.dumps(a, protocol=5) == pickle.dumps(b, protocol=5)


def test_the_corpus_is_large_enough() -> None:
    assert len(ESTIMATORS) >= 20


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the tiny fits
        return {name: make() for name, make in {**ESTIMATORS, **DATA}.items()}


@pytest.mark.parametrize("name", [*ESTIMATORS, *DATA])
@pytest.mark.parametrize("protocol", [5, 2])
def test_loads_with_the_defaults_as_plain_pickle_does(
    models: dict[str, Any], name: str, protocol: int
) -> None:
    model = models[name]
    data = pickle.dumps(model, protocol=protocol)
    loaded = safe_pickle.loads(data, TrustedSet(), name)
    assert type(loaded) is type(model)
    assert same(loaded, pickle.loads(data))


@pytest.mark.parametrize("name", [*ESTIMATORS, *DATA])
def test_dump_and_scan_list_exactly_what_the_unpickler_asks_for(
    models: dict[str, Any], name: str
) -> None:
    asked: set[tuple[str, str]] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            asked.add((module, name))
            return super().find_class(module, name)

    data = pickle.dumps(models[name], protocol=5)
    Recording(io.BytesIO(data)).load()
    assert safe_pickle.scan(io.BytesIO(data)).imports == asked
    out = io.BytesIO()
    pickler = safe_pickle.RecordingPickler(out, protocol=5)
    pickler.dump(models[name])
    assert out.getvalue() == data  # recording changes nothing that is written
    assert pickler.scan().imports == asked


def test_predictions_survive_the_round_trip(models: dict[str, Any]) -> None:
    for name in ("RandomForestClassifier", "HistGradientBoostingClassifier", "SVC"):
        model = models[name]
        loaded = safe_pickle.loads(pickle.dumps(model, protocol=5), TrustedSet(), name)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_filer_round_trip_warns_nothing_and_records_imports(tmp_path: Any, models: Any) -> None:
    filer = model_filer(tmp_path / "models", tmp_path / "remote")
    model = models["ColumnTransformer + OneHotEncoder pipeline"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filer.dump(model, "pipe")
        loaded = filer.load("pipe")
    assert same(loaded, pickle.loads(filer.model_path("pipe").read_bytes()))
    (entry,) = filer.list_files()
    assert entry.imports == sorted(entry.imports or [])
    assert "sklearn.pipeline.Pipeline" in (entry.imports or [])
    assert "numpy._core.multiarray._reconstruct" in (entry.imports or [])


class CountingReader(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.inner, self.read_bytes = io.BytesIO(data), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def readinto(self, buf: Any) -> int:
        n = self.inner.readinto(buf)
        self.read_bytes += n
        return n


def test_the_scan_skips_large_payloads_without_reading_them() -> None:
    data = pickle.dumps({"w": np.ones(8 << 20, dtype=np.uint8), "b": b"x" * (4 << 20)}, protocol=5)
    reader = CountingReader(data)
    found = safe_pickle.scan(reader)  # type: ignore[arg-type]
    assert ("numpy._core.numeric", "_frombuffer") in found.imports
    assert reader.read_bytes < 256 * 1024


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_libraries_load_with_the_defaults(library: str) -> None:
    lib = pytest.importorskip(library)
    model = (lib.XGBClassifier if library == "xgboost" else lib.LGBMClassifier)(n_estimators=3)
    model.fit(X, Y)
    loaded = safe_pickle.loads(pickle.dumps(model, protocol=5), TrustedSet(), library)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_recording_follows_copyreg_reducers_and_extensions() -> None:
    """re.Pattern pickles through copyreg.dispatch_table; an extension code turns a global
    into an EXT opcode, which load refuses: dump must see both as plain pickle writes them."""
    import copyreg
    import re

    model = {"pattern": re.compile("a+"), "od": collections.OrderedDict(a=1)}
    copyreg.add_extension("collections", "OrderedDict", 0xF5)
    try:
        out = io.BytesIO()
        pickler = safe_pickle.RecordingPickler(out, protocol=5)
        pickler.dump(model)
        assert out.getvalue() == pickle.dumps(model, protocol=5)
        found = pickler.scan()
        assert found.imports == {("re", "_compile"), ("collections", "OrderedDict")}
        assert found.ext == (0xF5,)
        assert safe_pickle.scan(io.BytesIO(out.getvalue())).ext == (0xF5,)
        with pytest.warns(UntrustedModelWarning, match="EXT opcode 245"):
            safe_pickle.warn_untrusted("m", found, TrustedSet())
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 0xF5)
