"""Every scikit-learn estimator, fitted on a small data set, is trusted by the defaults,
but those keeping a function the defaults leave out (``REFUSED``: refused with the reason).

``sklearn.utils.all_estimators()``, each fitted on binary and multiclass targets (classifiers),
a continuous one (regressors) or the features alone (the rest); meta-estimators get a simple
inner estimator. Each pickle then passes the three places that judge it, with no
configuration: ``dump``'s warning, the commit hook's name-only check, and ``load``. Current
scikit-learn pickles Cython objects through ``M.__pyx_unpickle_C`` reconstructors (the losses
of gradient boosting, for one), trusted because their class ``M.C`` is.
"""

from __future__ import annotations

import inspect
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils import all_estimators

from model_filer.errors import UntrustedModelError, UntrustedModelWarning
from model_filer.pickles import safe_pickle
from model_filer.pickles.trust import TrustedSet, not_by_default

RNG = np.random.RandomState(0)
X = RNG.rand(40, 4)  # non-negative: NMF, chi2 and the multinomial models accept it
TARGETS = {
    "binary": (X[:, 0] > 0.5).astype(int),
    "multiclass": np.arange(40) % 3,
    "regression": X @ [1.0, 2.0, 0.5, 0.1] + 0.5,  # positive: Poisson and Gamma accept it
}
TEXTS = [f"word{i % 5} word{i % 7} other{i % 3}" for i in range(40)]
DICTS = [{"a": float(i), f"k{i % 4}": 1.0} for i in range(40)]

# Estimators whose input is not a numeric matrix, and what they are fitted on instead.
INPUTS: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    **dict.fromkeys(
        ("CountVectorizer", "HashingVectorizer", "TfidfVectorizer"), lambda y: (TEXTS,)
    ),
    **dict.fromkeys(("DictVectorizer", "FeatureHasher"), lambda y: (DICTS,)),
    **dict.fromkeys(("LabelBinarizer", "LabelEncoder"), lambda y: (y,)),
    "MultiLabelBinarizer": lambda y: ([[int(v), int(v) + 1] for v in y],),
    "IsotonicRegression": lambda y: (X[:, 0], y),
    "KernelCenterer": lambda y: (X @ X.T,),
}
# Targets with two outputs, for the multi-output meta-estimators.
# Targets with two outputs: multi-output meta-estimators and models, and the cross
# decompositions, whose components are bounded by the outputs.
MULTI_OUTPUT = {
    "ClassifierChain",
    "MultiOutputClassifier",
    "RegressorChain",
    "MultiOutputRegressor",
    *(f"MultiTask{m}" for m in ("ElasticNet", "ElasticNetCV", "Lasso", "LassoCV")),
    "CCA",
    "PLSCanonical",
    "PLSSVD",
}
# Meta-estimators whose inner estimator is optional in the signature but required to fit.
NEEDS_ESTIMATOR = {"SelfTrainingClassifier"}
# Classifiers that accept binary targets only (they tune or fix a decision threshold).
BINARY_ONLY = {"FixedThresholdClassifier", "TunedThresholdClassifierCV"}
# Defaults meant for large data sets: sizes that fit 40 samples and 4 features.
SMALL = {
    "GaussianRandomProjection": {"n_components": 2},
    "SparseRandomProjection": {"n_components": 2},
    "SparseCoder": {"dictionary": RNG.rand(3, 4)},
}


def _inner(kind: str) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    return Ridge() if kind == "regression" else LogisticRegression()


def _pair(kind: str) -> list[tuple[str, Any]]:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    tree = DecisionTreeRegressor() if kind == "regression" else DecisionTreeClassifier()
    return [("linear", _inner(kind)), ("tree", tree)]


def _required(name: str, kind: str) -> dict[str, Any]:
    """A simple value for each argument the estimator requires."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    def fitted_inner() -> Any:
        return _inner(kind).fit(X, TARGETS[kind])

    values: dict[str, Callable[[], Any]] = {
        "estimator": fitted_inner if name == "FrozenEstimator" else lambda: _inner(kind),
        "estimators": lambda: _pair(kind),
        "param_grid": lambda: {"alpha" if kind == "regression" else "C": [0.5, 1.0]},
        "param_distributions": lambda: {"alpha" if kind == "regression" else "C": [0.5, 1.0]},
        "steps": lambda: [("scale", StandardScaler()), ("model", _inner(kind))],
        "transformers": lambda: [("scale", StandardScaler(), [0, 1])],
        "transformer_list": lambda: [("pca", PCA(2)), ("scale", StandardScaler())],
    }
    args = _required_args(name) + (["estimator"] if name in NEEDS_ESTIMATOR else [])
    return {arg: values[arg]() for arg in args if arg in values}


def _required_args(name: str) -> list[str]:
    cls = dict(all_estimators())[name]
    return [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        if p.name != "self"
    ]


def _kinds(name: str, cls: type) -> list[str]:
    """The targets to fit, by the class's mixin; the others (transformers, clusterers,
    pipelines, searches) are fitted with the multiclass target and a classifier inside."""
    if issubclass(cls, ClassifierMixin):
        return ["binary"] if name in BINARY_ONLY else ["binary", "multiclass"]
    if issubclass(cls, RegressorMixin):
        return ["regression"]
    return ["other"]


def _cases() -> list[Any]:
    cases = []
    for name, cls in all_estimators():
        for kind in _kinds(name, cls):
            cases.append(pytest.param(name, kind, id=f"{name}-{kind}"))
    return cases


def _fit(name: str, kind: str) -> Any:
    cls = dict(all_estimators())[name]
    target_kind = "multiclass" if kind == "other" else kind
    estimator = cls(**_required(name, target_kind), **SMALL.get(name, {}))
    y = TARGETS[target_kind]
    if name in MULTI_OUTPUT:
        y = np.column_stack([y, y[::-1]])
    args = INPUTS[name](y) if name in INPUTS else (X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on 40 samples
        return estimator.fit(*args)


# Estimators that keep a function the defaults leave out (trust.NOT_BY_DEFAULT), and those
# names: the native k-means step BisectingKMeans keeps. Each is refused, with the reason.
REFUSED = {"BisectingKMeans": ["sklearn.cluster._kmeans._kmeans_single_lloyd"]}


def check_trusted_by_default(model: Any, name: str) -> None:
    """What ``dump`` warns, what the commit hook refuses, and what ``load`` refuses: none,
    or exactly the names of ``REFUSED[name]``, each with its reason."""
    expected = REFUSED.get(name, [])
    buf = io.BytesIO()
    pickler = safe_pickle.RecordingPickler(buf, protocol=5)
    pickler.dump(model)
    found = pickler.scan()
    trusted = TrustedSet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        safe_pickle.warn_untrusted(name, found, trusted)  # dump's warning
    untrusted = [w for w in caught if issubclass(w.category, UntrustedModelWarning)]
    assert len(untrusted) == len(expected[:1])
    hook_refuses = [n for n in found.names() if not trusted.covers_name(n)]
    assert hook_refuses == expected
    buf.seek(0)
    if not expected:
        assert type(safe_pickle.load(buf, trusted, name)) is type(model)  # load
        return
    why = not_by_default(expected)
    assert why and why in str(untrusted[0].message)
    with pytest.raises(UntrustedModelError) as info:
        safe_pickle.load(buf, trusted, name)
    assert info.value.untrusted == expected and info.value.never == []
    assert why in str(info.value)


@pytest.mark.parametrize(("name", "kind"), _cases())
def test_every_estimator_is_trusted_by_default(name: str, kind: str) -> None:
    check_trusted_by_default(_fit(name, kind), name)


def test_the_sweep_covers_every_estimator() -> None:
    assert {c.values[0] for c in _cases()} == {name for name, _ in all_estimators()}


def test_the_multiclass_gradient_boosting_losses_are_cython_reconstructors() -> None:
    """The issue's models: their pickles name ``__pyx_unpickle_`` reconstructors."""
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    for cls in (GradientBoostingClassifier, HistGradientBoostingClassifier):
        model = cls().fit(X, TARGETS["multiclass"])
        pickler = safe_pickle.RecordingPickler(io.BytesIO(), protocol=5)
        pickler.dump(model)
        names = pickler.scan().names()
        assert "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss" in names
        check_trusted_by_default(model, cls.__name__)


def test_every_named_scorer_is_trusted_by_default() -> None:
    """``scoring="..."`` keeps the metric function in a search or a tuned threshold."""
    from sklearn.metrics import get_scorer, get_scorer_names

    for scoring in get_scorer_names():
        check_trusted_by_default(get_scorer(scoring), scoring)
