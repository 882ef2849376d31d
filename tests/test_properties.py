"""Invariants that must hold for any input, checked with hypothesis.

- Output lengths equal input lengths, for any ragged collection and every hierarchy.
- Padding never changes an output: whatever the padded steps hold, and whatever other
  sequences share the batch.
- Scaling then unscaling returns the input, for every scaler.
- Saving then loading returns a model with identical outputs.

The models are tiny and trained for one epoch: the invariants are about the plumbing, not
about how well the model has learnt.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hlae
from hlae.data import FeatureScaler

F = 2
HIERARCHIES = ("time", "flat", "variables", "time+variables")
# derandomize: the same examples on every run, so a failure in CI can be reproduced
QUICK = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def walks(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(T), F)).cumsum(0).astype(np.float32) for T in lengths]


@pytest.fixture(scope="module", params=HIERARCHIES)
def model(request):
    params = dict(hidden_size=8, latent_dim=3, max_epochs=1, batch_size=4, random_state=0)
    if request.param != "flat":
        params["chunk_length"] = 3
    X = walks([5, 9, 13, 17, 21, 25, 8, 11])
    return hlae.HierarchicalAutoencoder(hierarchy=request.param, **params).fit(X)


@pytest.fixture(scope="module")
def saved_and_loaded(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return hlae.load(path)


lengths_lists = st.lists(st.integers(2, 40), min_size=1, max_size=7)
seeds = st.integers(0, 2**16)


@QUICK
@given(lengths=lengths_lists, seed=seeds)
def test_output_lengths_equal_input_lengths(model, lengths, seed):
    X = walks(lengths, seed)
    recon = model.reconstruct(X)
    assert [r.shape for r in recon] == [(T, F) for T in lengths]
    assert [e.shape for e in model.step_errors(X)] == [(T, F) for T in lengths]
    assert model.transform(X).shape == (len(lengths), 3)
    assert model.reconstruction_error(X).shape == (len(lengths),)
    assert all(np.isfinite(r).all() for r in recon)


@QUICK
@given(
    lengths=lengths_lists,
    seed=seeds,
    extra=st.integers(0, 9),
    fill=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, np.nan, 1e30, -np.inf]),
    ),
)
def test_padding_never_changes_outputs(model, lengths, seed, extra, fill):
    X = walks(lengths, seed)
    # a padded (n, T, F) array whose padded steps hold anything at all
    T = max(lengths) + extra
    padded = np.full((len(X), T, F), fill, dtype=np.float64)
    for i, x in enumerate(X):
        padded[i, : len(x)] = x
    np.testing.assert_array_equal(model.transform(padded, lengths=lengths), model.transform(X))
    recon = model.reconstruct(padded, lengths=lengths)
    for i, x in enumerate(X):
        np.testing.assert_array_equal(recon[i, : len(x)], model.reconstruct(X)[i])
    # the company of longer or shorter sequences in a batch changes nothing either
    alone = np.concatenate([model.transform([x]) for x in X])
    np.testing.assert_allclose(model.transform(X), alone, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    kind=st.sampled_from(["standard", "robust", "minmax", None]),
    shapes=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    data=st.data(),
)
def test_scaling_then_unscaling_returns_the_input(kind, shapes, data):
    values = [
        data.draw(
            hnp.arrays(
                np.float32,
                (T, 3),
                elements=st.floats(-1e6, 1e6, width=32) | st.just(np.float32(np.nan)),
            )
        )
        for T in shapes
    ]
    with warnings.catch_warnings():  # features with no observed value warn, and stay finite
        warnings.simplefilter("ignore", RuntimeWarning)
        scaler = FeatureScaler(kind).fit(values)
        size = np.nanmax(np.abs(np.concatenate(values)), axis=0)
    scaled = scaler.transform(values)
    back = scaler.inverse_transform(scaled)
    # float32 arithmetic: exact up to rounding at the scale of the feature
    tolerance = 1e-5 * (np.nan_to_num(size) + scaler.scale_ + np.abs(scaler.shift_)) + 1e-6
    for original, scaled_one, restored in zip(values, scaled, back):
        assert original.shape == restored.shape and restored.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(restored), np.isnan(original))
        assert np.all(np.isfinite(scaled_one) | np.isnan(original))
        gap = np.abs(np.nan_to_num(restored) - np.nan_to_num(original))
        assert np.all(gap <= tolerance), (gap.max(), tolerance)


@QUICK
@given(lengths=lengths_lists, seed=seeds)
def test_save_then_load_gives_identical_outputs(model, saved_and_loaded, lengths, seed):
    X = walks(lengths, seed)
    loaded = saved_and_loaded
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    for a, b in zip(loaded.reconstruct(X), model.reconstruct(X)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.reconstruction_error(X), model.reconstruction_error(X))
