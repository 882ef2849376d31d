"""hlae's estimators keep scikit-learn's contract and work inside its tools."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

import hlae
from hlae.testing import check_estimator, estimator_checks

FAST = dict(latent_dim=3, hidden_size=8, max_epochs=2, batch_size=8, random_state=0)


def two_kinds(n=24, T=24, F=2, seed=0):
    """Two kinds of oscillation (slow, and fast around a higher level) as (n, T, F), labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(T)[None, :, None]
    freq = np.where(y == 0, 0.15, 0.6)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    X = np.sin(freq * t + phase + np.arange(F)[None, None, :]) + y[:, None, None]
    return (X + 0.05 * rng.normal(size=X.shape)).astype(np.float32), y


X3D, Y = two_kinds()
ESTIMATORS = {
    "HierarchicalAutoencoder": hlae.HierarchicalAutoencoder(**FAST),
    "AnomalyDetector": hlae.AnomalyDetector(contamination=0.1, **FAST),
}
CASES = [
    pytest.param(estimator, check, id=f"{name}-{check_name}")
    for name, estimator in ESTIMATORS.items()
    for check_name, check in estimator_checks(estimator)
]


@pytest.mark.parametrize("estimator,check", CASES)
def test_estimator_contract(estimator, check):
    X = [x[: 16 + i % 8] for i, x in enumerate(X3D[:12])]  # unequal lengths
    check(X)


def test_checks_catch_a_broken_estimator():
    class Mutating(hlae.HierarchicalAutoencoder):
        def fit(self, X, y=None, **kwargs):
            super().fit(X, y, **kwargs)
            self.latent_dim = 99  # a parameter changed by fit
            return self

    with pytest.raises(AssertionError, match="fails check_fit_returns_self_and_keeps_params"):
        check_estimator(Mutating(**FAST), list(X3D[:8]))


def test_inside_a_pipeline_with_cross_validation():
    pipe = Pipeline([("ae", hlae.HierarchicalAutoencoder(**FAST)), ("clf", LogisticRegression())])
    pipe.fit(X3D, Y)
    # the pipeline hands the 3-D array to the autoencoder unchanged and ignores y there
    alone = hlae.HierarchicalAutoencoder(**FAST).fit(X3D)
    np.testing.assert_array_equal(pipe.named_steps["ae"].transform(X3D), alone.transform(X3D))
    assert pipe.score(X3D, Y) > 0.9  # the two kinds embed apart
    # model selection clones the pipeline and indexes the 3-D array per fold
    scores = cross_val_score(pipe, X3D, Y, cv=2)
    assert scores.shape == (2,) and scores.min() > 0.8, scores


def test_fit_transform_reads_the_data_as_fit_does():
    lengths = np.arange(len(X3D)) % 8 + 16
    padded = X3D.copy()
    for i, T in enumerate(lengths):
        padded[i, T:] = 0.0
    model = hlae.HierarchicalAutoencoder(**FAST)
    z = model.fit_transform(padded, lengths=lengths)
    np.testing.assert_array_equal(z, model.transform(padded, lengths=lengths))
    channels_first = padded.transpose(0, 2, 1)
    z = model.fit_transform(channels_first, lengths=lengths, layout="nct")
    np.testing.assert_array_equal(
        z, model.transform(channels_first, lengths=lengths, layout="nct")
    )
