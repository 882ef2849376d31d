"""Tests of the bundled data loaders, synthetic generators and planted anomalies."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hlae import datasets

needs_aeon = pytest.mark.skipif(
    importlib.util.find_spec("aeon") is None, reason="the optional dependency aeon is missing"
)


# ---------------------------------------------------------------- bundled aeon data sets


@needs_aeon
def test_japanese_vowels_train_shapes():
    sequences, labels = datasets.load_japanese_vowels("train")
    assert len(sequences) == 270
    assert labels.shape == (270,)
    lengths = [seq.shape[0] for seq in sequences]
    assert min(lengths) >= 7 and max(lengths) <= 29
    assert len(set(lengths)) > 1  # unequal lengths
    for seq in sequences:
        assert seq.dtype == np.float32
        assert seq.ndim == 2 and seq.shape[1] == 12
        assert np.isfinite(seq).all()
    assert set(np.unique(labels)) == {str(k) for k in range(1, 10)}


@needs_aeon
def test_japanese_vowels_test_split():
    sequences, labels = datasets.load_japanese_vowels("test")
    assert len(sequences) == len(labels) == 370
    lengths = [seq.shape[0] for seq in sequences]
    assert min(lengths) >= 7 and max(lengths) <= 29
    assert all(seq.shape[1] == 12 for seq in sequences)


@needs_aeon
def test_basic_motions_train_shapes():
    sequences, labels = datasets.load_basic_motions("train")
    assert len(sequences) == len(labels) == 40
    assert all(seq.shape == (100, 6) and seq.dtype == np.float32 for seq in sequences)
    assert set(labels) == {"standing", "running", "walking", "badminton"}


@needs_aeon
def test_time_axis_comes_first():
    from aeon.datasets import load_from_ts_file

    path = datasets._ts_files(datasets._aeon_data_dir())["BasicMotions"]["TRAIN"]
    X, _ = load_from_ts_file(path)
    sequences, _ = datasets.load_basic_motions("train")
    np.testing.assert_allclose(sequences[3], X[3].T.astype(np.float32))


@needs_aeon
def test_osuleaf_is_univariate():
    sequences, labels = datasets.load_osuleaf("train")
    assert len(sequences) == len(labels) == 200
    assert all(seq.shape == (427, 1) for seq in sequences)


@needs_aeon
def test_unknown_uea_name_lists_available():
    with pytest.raises(ValueError, match="JapaneseVowels"):
        datasets.load_uea("NoSuchDataSet")
    assert "BasicMotions" in datasets.available_uea()


@needs_aeon
def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        datasets.load_uea("JapaneseVowels", "validation")


@needs_aeon
def test_ecg_stream():
    ecg = datasets.load_ecg_stream()
    train, test, labels = ecg["train"], ecg["test"], ecg["test_labels"]
    assert train.ndim == 2 and test.ndim == 2
    assert train.dtype == np.float32 and test.dtype == np.float32
    assert train.shape[1] == test.shape[1] == len(ecg["feature_names"]) >= 1
    assert labels.shape == (test.shape[0],)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels)) == {0, 1}
    assert 0 < labels.mean() < 0.5
    assert np.isfinite(train).all() and np.isfinite(test).all()


# ---------------------------------------------------------------------- generators

GENERATORS = [datasets.make_oscillators, datasets.make_regimes, datasets.make_trends]


@pytest.mark.parametrize("make", GENERATORS)
def test_generator_shapes_and_bounds(make):
    sequences = make(n_sequences=30, n_features=3, min_length=20, max_length=60, random_state=1)
    assert len(sequences) == 30
    lengths = [seq.shape[0] for seq in sequences]
    assert min(lengths) >= 20 and max(lengths) <= 60
    assert len(set(lengths)) > 1
    for seq in sequences:
        assert seq.dtype == np.float32 and seq.shape[1] == 3
        assert np.isfinite(seq).all()


@pytest.mark.parametrize("make", GENERATORS)
def test_generator_reproducible(make):
    first = make(n_sequences=10, random_state=7)
    second = make(n_sequences=10, random_state=7)
    other = make(n_sequences=10, random_state=8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(a.shape != c.shape or not np.array_equal(a, c) for a, c in zip(first, other))


@pytest.mark.parametrize("make", GENERATORS)
def test_generator_info(make):
    sequences, info = make(n_sequences=12, random_state=0, return_info=True)
    assert isinstance(info, dict) and info
    for values in info.values():
        assert len(values) == 12


def test_oscillator_features_are_related():
    sequences = datasets.make_oscillators(n_sequences=5, n_features=4, noise=0.0, random_state=3)
    corr = np.corrcoef(sequences[0].T)
    assert np.abs(corr[0, 1]) > 0.3


def test_regimes_change_points_match_regimes():
    sequences, info = datasets.make_regimes(n_sequences=20, random_state=2, return_info=True)
    for seq, regime, changes in zip(sequences, info["regimes"], info["change_points"]):
        assert regime.shape == (seq.shape[0],)
        jumps = np.flatnonzero(np.diff(regime)) + 1
        np.testing.assert_array_equal(jumps, changes)


def test_generator_rejects_bad_bounds():
    with pytest.raises(ValueError, match="max_length"):
        datasets.make_oscillators(min_length=50, max_length=10)


# ------------------------------------------------------------------ planted anomalies


@pytest.fixture
def clean():
    return datasets.make_oscillators(
        n_sequences=40, n_features=3, min_length=30, max_length=80, random_state=0
    )


@pytest.mark.parametrize("kind", ["spike", "level_shift", "frozen"])
def test_planted_anomalies_at_reported_steps(clean, kind):
    originals = [seq.copy() for seq in clean]
    new, seq_labels, step_labels = datasets.plant_anomalies(
        clean, kind=kind, fraction=0.25, random_state=5
    )
    # the inputs are untouched
    for a, b in zip(clean, originals):
        np.testing.assert_array_equal(a, b)
    assert seq_labels.shape == (40,) and seq_labels.sum() == 10
    std = np.concatenate(originals).std(axis=0)
    for i, (old, changed, steps) in enumerate(zip(originals, new, step_labels)):
        assert changed.shape == old.shape and steps.shape == (old.shape[0],)
        differs = (changed != old).any(axis=1)
        if not seq_labels[i]:
            assert steps.sum() == 0 and not differs.any()
            continue
        # every changed step is labelled; the label marks one contiguous stretch
        assert not (differs & (steps == 0)).any()
        marked = np.flatnonzero(steps)
        assert marked.size > 0
        np.testing.assert_array_equal(marked, np.arange(marked[0], marked[-1] + 1))
        delta = changed - old
        feature = np.flatnonzero(np.abs(delta).sum(axis=0))
        assert feature.size == 1  # one feature affected
        f = feature[0]
        if kind == "spike":
            assert 1 <= marked.size <= 3
            np.testing.assert_allclose(np.abs(delta[marked, f]), 6 * std[f], rtol=1e-3)
        elif kind == "level_shift":
            assert marked.size == round(0.2 * old.shape[0])
            np.testing.assert_allclose(np.abs(delta[marked, f]), 3 * std[f], rtol=1e-3)
        else:
            assert marked[0] >= 1 and marked.size >= 2
            assert np.all(changed[marked, f] == old[marked[0] - 1, f])


def test_plant_anomalies_reproducible(clean):
    a = datasets.plant_anomalies(clean, kind="spike", random_state=11)
    b = datasets.plant_anomalies(clean, kind="spike", random_state=11)
    np.testing.assert_array_equal(a[1], b[1])
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)


def test_plant_anomalies_rejects_bad_kind(clean):
    with pytest.raises(ValueError, match="kind"):
        datasets.plant_anomalies(clean, kind="drift")
    with pytest.raises(ValueError, match="fraction"):
        datasets.plant_anomalies(clean, fraction=1.5)
    with pytest.raises(ValueError, match="2-D"):
        datasets.plant_anomalies([np.zeros(10)])
