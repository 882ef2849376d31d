"""Shared checks of the scikit-learn estimator contract, run over every hlae estimator.

scikit-learn's own ``check_estimator`` assumes tabular ``(n_samples, n_features)`` input;
hlae's estimators take collections of sequences, so these checks test the same contract on
sequence data the caller provides:

* ``__init__`` stores each parameter unchanged and does nothing else;
* ``get_params``/``set_params`` round-trip, ``set_params`` returns ``self`` and refuses
  unknown names;
* ``sklearn.base.clone`` gives an unfitted copy with equal parameters;
* every fitted method raises ``NotFittedError`` before ``fit``;
* ``fit`` returns ``self``, leaves the parameters as they were, and sets only attributes
  that end in ``_``;
* with a fixed seed, ``fit`` gives the same result again, on the same object after a fit
  on other data, on a clone, and after a pickle round trip.

Use :func:`check_estimator` to run them all, or :func:`estimator_checks` to run each as a
separate test (e.g. with ``pytest.mark.parametrize``).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

__all__ = ["check_estimator", "estimator_checks", "CHECKS", "FITTED_METHODS"]

# Methods that need a fitted estimator, where an estimator has them.
FITTED_METHODS = (
    "transform",
    "reconstruct",
    "reconstruction_error",
    "step_errors",
    "decision_function",
    "predict",
    "predict_proba",
    "score_steps",
    "score",
)


def _output(estimator: Any, X: Any) -> np.ndarray:
    """The estimator's main numeric output: embeddings, or anomaly scores."""
    for name in ("transform", "decision_function"):
        if hasattr(estimator, name):
            return np.asarray(getattr(estimator, name)(X), dtype=np.float64)
    raise AssertionError(f"{type(estimator).__name__} has neither transform nor decision_function")


def _equal(a: Any, b: Any) -> bool:
    """Parameter equality that also works for arrays, tuples and dicts of them."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _fitted_names(estimator: Any) -> list[str]:
    return [k for k in vars(estimator) if k.endswith("_") and not k.startswith("_")]


def check_init_stores_params(estimator: Any, X: Any) -> None:
    """``__init__`` stores every parameter as given (the same object) and sets nothing else."""
    params = estimator.get_params(deep=False)
    rebuilt = type(estimator)(**params)
    for name, value in params.items():
        stored = rebuilt.get_params(deep=False)[name]
        assert stored is value, f"__init__ changed parameter {name!r}: {value!r} -> {stored!r}"
    extra = sorted(set(vars(rebuilt)) - set(params))
    assert not extra, f"__init__ set attributes that are not parameters: {extra}"


def check_get_set_params(estimator: Any, X: Any) -> None:
    """``set_params`` returns ``self``, ``get_params`` reads back what was set."""
    params = estimator.get_params(deep=False)
    assert estimator.set_params(**params) is estimator, "set_params must return self"
    for name, value in params.items():
        marker = copy.deepcopy(value)
        estimator.set_params(**{name: marker})
        assert estimator.get_params(deep=False)[name] is marker, f"set_params({name}=...) lost"
        estimator.set_params(**{name: value})
    try:
        estimator.set_params(no_such_parameter_xyz=1)
    except ValueError:
        pass
    else:
        raise AssertionError("set_params accepted an unknown parameter name")


def check_clone(estimator: Any, X: Any) -> None:
    """``clone`` gives a new, unfitted estimator with equal parameters, fitted or not."""
    for fitted in (False, True):
        if fitted:
            estimator = clone(estimator).fit(X)
        copy_ = clone(estimator)
        assert copy_ is not estimator and type(copy_) is type(estimator)
        a, b = estimator.get_params(deep=False), copy_.get_params(deep=False)
        assert a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a), (a, b)
        assert not _fitted_names(copy_), f"clone kept fitted state {_fitted_names(copy_)}"


def check_not_fitted(estimator: Any, X: Any) -> None:
    """Every method that needs a fitted model raises ``NotFittedError`` before ``fit``."""
    estimator = clone(estimator)
    checked = []
    for name in FITTED_METHODS:
        method = getattr(estimator, name, None)
        if not callable(method):  # absent, or a parameter of the same name
            continue
        try:
            method(X)
        except NotFittedError:
            checked.append(name)
        except Exception as exc:  # anything else is the wrong error
            raise AssertionError(
                f"{name}() before fit raised {type(exc).__name__}: {exc}, not NotFittedError"
            ) from None
        else:
            raise AssertionError(f"{name}() before fit did not raise NotFittedError")
    assert checked, "no fitted method found to check"


def check_fit_returns_self_and_keeps_params(estimator: Any, X: Any) -> None:
    """``fit`` returns ``self``, changes no parameter and sets only ``..._`` attributes."""
    estimator = clone(estimator)
    before = copy.deepcopy(estimator.get_params(deep=False))
    attributes = set(vars(estimator))
    assert estimator.fit(X) is estimator, "fit must return self"
    after = estimator.get_params(deep=False)
    changed = [k for k in before if not _equal(before[k], after[k])]
    assert not changed, f"fit changed parameter(s) {changed}"
    new = sorted(set(vars(estimator)) - attributes)
    public = [k for k in new if not k.startswith("_")]
    assert all(k.endswith("_") for k in public), f"fitted attributes without '_': {public}"
    assert getattr(estimator, "n_features_in_", None) is not None, "n_features_in_ not set"


def check_fit_is_repeatable(estimator: Any, X: Any) -> None:
    """With a fixed seed: the same result again, after a fit on other data, and on a clone."""
    first = _output(clone(estimator).fit(X), X)
    reused = clone(estimator)
    reused.fit(X[::2] if isinstance(X, (list, np.ndarray)) else X)
    again = _output(reused.fit(X), X)
    np.testing.assert_allclose(again, first, rtol=1e-6, atol=1e-6)


def check_pickle(estimator: Any, X: Any) -> None:
    """A pickled and unpickled fitted estimator gives the same output."""
    fitted = clone(estimator).fit(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(_output(restored, X), _output(fitted, X), rtol=1e-6, atol=1e-6)


CHECKS: tuple[Callable[[Any, Any], None], ...] = (
    check_init_stores_params,
    check_get_set_params,
    check_clone,
    check_not_fitted,
    check_fit_returns_self_and_keeps_params,
    check_fit_is_repeatable,
    check_pickle,
)


def estimator_checks(estimator: Any) -> Iterator[tuple[str, Callable[[Any], None]]]:
    """Yield ``(name, check)`` pairs; ``check(X)`` runs one check on data ``X``.

    Parameters
    ----------
    estimator : estimator
        An hlae estimator, configured to fit quickly and with a fixed seed (the
        repeatability checks compare two fits).

    Yields
    ------
    name : str
    check : callable
        Takes the data and raises ``AssertionError`` when the contract is broken.
    """
    for check in CHECKS:
        yield check.__name__, (lambda X, check=check: check(clone(estimator), X))


def check_estimator(estimator: Any, X: Any) -> list[str]:
    """Run every check on ``estimator`` with data ``X``.

    Parameters
    ----------
    estimator : estimator
        Configured to fit quickly and with a fixed seed.
    X : list of (T_i, F) arrays or (n, T, F) array
        A small data set.

    Returns
    -------
    list of str
        The names of the checks run (all passed).

    Raises
    ------
    AssertionError
        At the first broken check, naming it.
    """
    passed = []
    for name, check in estimator_checks(estimator):
        try:
            check(X)
        except AssertionError as exc:
            raise AssertionError(f"{type(estimator).__name__} fails {name}: {exc}") from exc
        passed.append(name)
    return passed
