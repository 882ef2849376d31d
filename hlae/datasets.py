"""Data sets for examples, tests and benchmarks.

Two kinds live here:

* loaders for the small data sets bundled inside the ``aeon`` wheel (UEA/UCR archive
  classification sets read from ``.ts`` files, and a univariate ECG anomaly-detection
  stream read from ``.csv`` files). ``aeon`` is imported lazily, only when one of these is
  called; install it with ``pip install aeon`` or ``pip install hlae[aeon]``.
* synthetic generators of multivariate sequences of unequal length (:func:`make_oscillators`,
  :func:`make_regimes`, :func:`make_trends`) and :func:`plant_anomalies`, which inserts
  labelled anomalies into a copy of any collection of sequences.

Every sequence is a float32 array shaped ``(T_i, F)``: time first, features second.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hlae.exceptions import InputError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "available_uea",
    "load_uea",
    "load_japanese_vowels",
    "load_basic_motions",
    "load_osuleaf",
    "load_ecg_stream",
    "make_oscillators",
    "make_regimes",
    "make_trends",
    "plant_anomalies",
]

_SPLITS = {"train": "TRAIN", "test": "TEST"}
_ANOMALY_KINDS = ("spike", "level_shift", "frozen")
_ECG_STEM = "ecg-diff-count-3"


# --------------------------------------------------------------------------------------
# Bundled aeon data
# --------------------------------------------------------------------------------------


def _aeon_data_dir() -> str:
    """Return the directory that holds the data files bundled with aeon."""
    try:
        import aeon
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Loading the bundled data sets needs the optional dependency aeon, which is not "
            "installed; install it with `pip install aeon` (or `pip install hlae[aeon]`)."
        ) from exc
    return os.path.join(os.path.dirname(aeon.__file__), "datasets", "data")


def _ts_files(data_dir: str) -> dict[str, dict[str, str]]:
    """Map each data set name to its ``{"TRAIN": path, "TEST": path}`` ``.ts`` files."""
    found: dict[str, dict[str, str]] = {}
    if not os.path.isdir(data_dir):
        return found
    for folder in sorted(os.listdir(data_dir)):
        folder_path = os.path.join(data_dir, folder)
        if not os.path.isdir(folder_path):
            continue
        for file_name in sorted(os.listdir(folder_path)):
            for split in _SPLITS.values():
                suffix = f"_{split}.ts"
                if file_name.endswith(suffix):
                    stem = file_name[: -len(suffix)]
                    found.setdefault(stem, {})[split] = os.path.join(folder_path, file_name)
    return found


def available_uea() -> list[str]:
    """List the UEA/UCR data sets bundled with aeon that :func:`load_uea` can read.

    Returns
    -------
    list of str
        Sorted names of the data sets that have both a train and a test ``.ts`` file.

    Raises
    ------
    ImportError
        When aeon is not installed.
    """
    files = _ts_files(_aeon_data_dir())
    return sorted(name for name, splits in files.items() if set(splits) == set(_SPLITS.values()))


def _check_split(split: str) -> str:
    """Return the aeon file suffix for ``split`` ("train" or "test")."""
    key = str(split).lower()
    if key not in _SPLITS:
        raise ParameterError(f"split must be 'train' or 'test', got {split!r}; pass one of those.")
    return _SPLITS[key]


def load_uea(name: str, split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """Load a UEA/UCR archive data set bundled with aeon as a list of sequences.

    Parameters
    ----------
    name : str
        Name of the data set, e.g. ``"JapaneseVowels"``; see :func:`available_uea`.
    split : {"train", "test"}, default "train"
        Which of the archive's two splits to read.

    Returns
    -------
    sequences : list of ndarray
        One float32 array shaped ``(T_i, F)`` (time first) per case.
    labels : ndarray of shape (n_cases,)
        The class labels, as stored in the file (strings).

    Raises
    ------
    ImportError
        When aeon is not installed.
    ValueError
        When ``split`` is not "train" or "test", or the data set is not bundled with aeon.
    """
    suffix = _check_split(split)
    data_dir = _aeon_data_dir()
    files = _ts_files(data_dir)
    if name not in files or suffix not in files[name]:
        names = ", ".join(available_uea())
        raise ParameterError(
            f"Data set {name!r} is not bundled with aeon (looked in {data_dir}); "
            f"pass one of: {names}. Other archive data sets can be downloaded with "
            "aeon.datasets.load_classification and given to hlae as a list of (T, F) arrays."
        )

    from aeon.datasets import load_from_ts_file

    X, y = load_from_ts_file(files[name][suffix])
    # aeon gives (n_cases, n_channels, n_timepoints) for equal length, a list of
    # (n_channels, n_timepoints) arrays otherwise; hlae wants (n_timepoints, n_channels).
    sequences = [np.ascontiguousarray(np.asarray(case).T, dtype=np.float32) for case in X]
    labels = np.asarray(y)
    logger.debug("Loaded %s %s: %d sequences", name, split, len(sequences))
    return sequences, labels


def load_japanese_vowels(split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """Load JapaneseVowels: 12 LPC cepstrum coefficients of nine speakers' utterances.

    The train split has 270 sequences and the test split 370, of 7 to 29 steps, with the
    speaker (``"1"`` to ``"9"``) as label.

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        Which split to read.

    Returns
    -------
    sequences : list of ndarray
        One float32 array ``(T_i, 12)`` per utterance.
    labels : ndarray of shape (n_cases,)
        Speaker labels (strings).
    """
    return load_uea("JapaneseVowels", split)


def load_basic_motions(split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """Load BasicMotions: accelerometer and gyroscope readings (6 channels) of four activities.

    Both splits have 40 sequences of 100 steps; labels are ``"standing"``, ``"running"``,
    ``"walking"`` and ``"badminton"``.

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        Which split to read.

    Returns
    -------
    sequences : list of ndarray
        One float32 array ``(100, 6)`` per recording.
    labels : ndarray of shape (n_cases,)
        Activity labels (strings).
    """
    return load_uea("BasicMotions", split)


def load_osuleaf(split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """Load OSULeaf: univariate outlines of leaves of six species, 427 steps each.

    The train split has 200 sequences and the test split 242.

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        Which split to read.

    Returns
    -------
    sequences : list of ndarray
        One float32 array ``(427, 1)`` per leaf.
    labels : ndarray of shape (n_cases,)
        Species labels (strings ``"1"`` to ``"6"``).
    """
    return load_uea("OSULeaf", split)


def _read_anomaly_csv(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read an aeon anomaly CSV (``timestamp``, value columns, ``is_anomaly``)."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if "is_anomaly" not in header:
        raise InputError(f"{path} has no 'is_anomaly' column (columns: {header}).")
    label_col = header.index("is_anomaly")
    value_cols = [i for i, col in enumerate(header) if col not in ("timestamp", "is_anomaly")]
    if "timestamp" in header:
        order = np.argsort(table[:, header.index("timestamp")], kind="stable")
        table = table[order]
    values = table[:, value_cols].astype(np.float32)
    labels = table[:, label_col].astype(np.int64)
    return values, labels, [header[i] for i in value_cols]


def load_ecg_stream() -> dict[str, Any]:
    """Load the ECG anomaly-detection stream bundled with aeon (``ecg-diff-count-3``).

    A synthetic univariate ECG-like signal with one beat every 20 steps. The train stream
    (10,000 steps) is anomaly free; the test stream (10,000 steps) holds three anomalous
    beats of 100 labelled steps each (3% of the steps).

    Returns
    -------
    dict
        ``"train"``: float32 array ``(T_train, F)``; ``"test"``: float32 array
        ``(T_test, F)``; ``"test_labels"``: int64 array ``(T_test,)``, 1 at anomalous steps;
        ``"feature_names"``: list of the value columns' names.

    Raises
    ------
    ImportError
        When aeon is not installed.
    """
    folder = os.path.join(_aeon_data_dir(), "UnitTest")
    train, _, names = _read_anomaly_csv(os.path.join(folder, f"{_ECG_STEM}_TRAIN_NA.csv"))
    test, test_labels, _ = _read_anomaly_csv(os.path.join(folder, f"{_ECG_STEM}_TEST.csv"))
    return {"train": train, "test": test, "test_labels": test_labels, "feature_names": names}


# --------------------------------------------------------------------------------------
# Synthetic generators
# --------------------------------------------------------------------------------------


def _check_generator_args(
    n_sequences: int, n_features: int, min_length: int, max_length: int, noise: float
) -> None:
    """Validate the arguments shared by the synthetic generators."""
    if int(n_sequences) < 1:
        raise ParameterError(f"n_sequences must be at least 1, got {n_sequences}.")
    if int(n_features) < 1:
        raise ParameterError(f"n_features must be at least 1, got {n_features}.")
    if int(min_length) < 2:
        raise ParameterError(f"min_length must be at least 2, got {min_length}.")
    if int(max_length) < int(min_length):
        raise ParameterError(
            f"max_length ({max_length}) is below min_length ({min_length}); "
            "pass max_length >= min_length."
        )
    if not np.isfinite(noise) or noise < 0:
        raise ParameterError(f"noise must be a finite number >= 0, got {noise}.")


def _lengths(rng: np.random.Generator, n: int, min_length: int, max_length: int) -> np.ndarray:
    """Draw ``n`` sequence lengths uniformly from ``[min_length, max_length]``."""
    return rng.integers(int(min_length), int(max_length) + 1, size=int(n))


def make_oscillators(
    n_sequences: int = 200,
    n_features: int = 4,
    min_length: int = 50,
    max_length: int = 200,
    noise: float = 0.05,
    random_state: int | np.random.Generator | None = None,
    return_info: bool = False,
) -> list[np.ndarray] | tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Generate coupled oscillators: related features driven by one rhythm per sequence.

    Each sequence has its own fundamental frequency, phase and amplitude. Every feature is
    a fixed (shared across the data set) mix of the fundamental and its first harmonic,
    with a feature-specific phase shift, so the features are related in the same way in
    every sequence; Gaussian noise is added on top.

    Parameters
    ----------
    n_sequences : int, default 200
        Number of sequences.
    n_features : int, default 4
        Number of features per step.
    min_length, max_length : int, default 50, 200
        Bounds (inclusive) of the uniformly drawn sequence lengths.
    noise : float, default 0.05
        Standard deviation of the added Gaussian noise (signals have amplitude ~1).
    random_state : int, Generator or None, default None
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same data.
    return_info : bool, default False
        Also return the parameters each sequence was drawn with.

    Returns
    -------
    sequences : list of ndarray
        ``n_sequences`` float32 arrays ``(T_i, n_features)``.
    info : dict of ndarray, only when ``return_info``
        ``"lengths"``, ``"frequency"`` (cycles per step), ``"phase"``, ``"amplitude"``,
        each of shape ``(n_sequences,)``.
    """
    _check_generator_args(n_sequences, n_features, min_length, max_length, noise)
    rng = np.random.default_rng(random_state)
    lengths = _lengths(rng, n_sequences, min_length, max_length)
    # Shared mixing: weights on the fundamental and the harmonic, and phase shifts.
    w_fund = rng.uniform(0.6, 1.0, size=n_features)
    w_harm = rng.uniform(0.0, 0.4, size=n_features)
    shift = np.linspace(0.0, np.pi, n_features, endpoint=False)
    frequency = rng.uniform(0.02, 0.12, size=n_sequences)
    phase = rng.uniform(0.0, 2 * np.pi, size=n_sequences)
    amplitude = rng.uniform(0.7, 1.3, size=n_sequences)

    sequences = []
    for i, length in enumerate(lengths):
        angle = 2 * np.pi * frequency[i] * np.arange(length)[:, None] + phase[i] + shift
        signal = w_fund * np.sin(angle) + w_harm * np.sin(2 * angle + 0.5)
        signal = amplitude[i] * signal + noise * rng.standard_normal((length, n_features))
        sequences.append(signal.astype(np.float32))
    if return_info:
        info = {
            "lengths": lengths,
            "frequency": frequency,
            "phase": phase,
            "amplitude": amplitude,
        }
        return sequences, info
    return sequences


def make_regimes(
    n_sequences: int = 200,
    n_features: int = 4,
    min_length: int = 50,
    max_length: int = 200,
    n_regimes: int = 3,
    max_changes: int = 3,
    noise: float = 0.05,
    random_state: int | np.random.Generator | None = None,
    return_info: bool = False,
) -> list[np.ndarray] | tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Generate piecewise sequences that switch between regimes of level and frequency.

    ``n_regimes`` regimes are drawn once for the data set, each with a level per feature,
    an oscillation frequency and an amplitude. Each sequence is cut into segments at 1 to
    ``max_changes`` random change points, and each segment follows a regime other than
    the previous segment's. The oscillation's phase runs on continuously through a change;
    the level jumps.

    Parameters
    ----------
    n_sequences : int, default 200
        Number of sequences.
    n_features : int, default 4
        Number of features per step.
    min_length, max_length : int, default 50, 200
        Bounds (inclusive) of the uniformly drawn sequence lengths.
    n_regimes : int, default 3
        Number of distinct regimes (at least 2).
    max_changes : int, default 3
        Most change points per sequence (at least 1; short sequences may get fewer).
    noise : float, default 0.05
        Standard deviation of the added Gaussian noise.
    random_state : int, Generator or None, default None
        Seed for :func:`numpy.random.default_rng`.
    return_info : bool, default False
        Also return where the regimes change.

    Returns
    -------
    sequences : list of ndarray
        ``n_sequences`` float32 arrays ``(T_i, n_features)``.
    info : dict, only when ``return_info``
        ``"regimes"``: list of int arrays ``(T_i,)`` with the regime of every step;
        ``"change_points"``: list of int arrays, the first step of each new segment.
    """
    _check_generator_args(n_sequences, n_features, min_length, max_length, noise)
    if int(n_regimes) < 2:
        raise ParameterError(f"n_regimes must be at least 2, got {n_regimes}.")
    if int(max_changes) < 1:
        raise ParameterError(f"max_changes must be at least 1, got {max_changes}.")
    rng = np.random.default_rng(random_state)
    lengths = _lengths(rng, n_sequences, min_length, max_length)
    levels = rng.uniform(-1.5, 1.5, size=(n_regimes, n_features))
    freqs = rng.uniform(0.02, 0.15, size=n_regimes)
    amps = rng.uniform(0.3, 1.0, size=n_regimes)
    shift = np.linspace(0.0, np.pi / 2, n_features)

    sequences, regimes_out, changes_out = [], [], []
    for length in lengths:
        min_segment = max(1, length // 10)
        n_changes = int(rng.integers(1, max_changes + 1))
        candidates = np.arange(min_segment, length - min_segment + 1)
        n_changes = min(n_changes, len(candidates))
        changes = np.sort(rng.choice(candidates, size=n_changes, replace=False))
        regime_of_segment = [int(rng.integers(n_regimes))]
        for _ in range(n_changes):
            step = int(rng.integers(1, n_regimes))  # never the same regime twice in a row
            regime_of_segment.append((regime_of_segment[-1] + step) % n_regimes)
        segment = np.searchsorted(changes, np.arange(length), side="right")
        regime = np.asarray(regime_of_segment)[segment]
        angle = np.cumsum(2 * np.pi * freqs[regime]) + rng.uniform(0, 2 * np.pi)
        signal = levels[regime] + amps[regime][:, None] * np.sin(angle[:, None] + shift)
        signal = signal + noise * rng.standard_normal((length, n_features))
        sequences.append(signal.astype(np.float32))
        regimes_out.append(regime.astype(np.int64))
        changes_out.append(changes.astype(np.int64))
    if return_info:
        return sequences, {"regimes": regimes_out, "change_points": changes_out}
    return sequences


def make_trends(
    n_sequences: int = 200,
    n_features: int = 4,
    min_length: int = 50,
    max_length: int = 200,
    noise: float = 0.05,
    random_state: int | np.random.Generator | None = None,
    return_info: bool = False,
) -> list[np.ndarray] | tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Generate sequences made of a linear trend plus a seasonal cycle plus noise.

    Each sequence has its own starting level, slope (per step), season period and phase;
    every feature loads on the shared trend and season with fixed (data-set wide) weights
    and its own offset.

    Parameters
    ----------
    n_sequences : int, default 200
        Number of sequences.
    n_features : int, default 4
        Number of features per step.
    min_length, max_length : int, default 50, 200
        Bounds (inclusive) of the uniformly drawn sequence lengths.
    noise : float, default 0.05
        Standard deviation of the added Gaussian noise.
    random_state : int, Generator or None, default None
        Seed for :func:`numpy.random.default_rng`.
    return_info : bool, default False
        Also return the parameters each sequence was drawn with.

    Returns
    -------
    sequences : list of ndarray
        ``n_sequences`` float32 arrays ``(T_i, n_features)``.
    info : dict of ndarray, only when ``return_info``
        ``"lengths"``, ``"level"``, ``"slope"``, ``"period"`` and ``"phase"``, each of
        shape ``(n_sequences,)``.
    """
    _check_generator_args(n_sequences, n_features, min_length, max_length, noise)
    rng = np.random.default_rng(random_state)
    lengths = _lengths(rng, n_sequences, min_length, max_length)
    trend_load = rng.uniform(0.5, 1.5, size=n_features) * rng.choice([-1.0, 1.0], n_features)
    season_load = rng.uniform(0.3, 1.0, size=n_features)
    offset = rng.uniform(-1.0, 1.0, size=n_features)
    level = rng.normal(0.0, 0.5, size=n_sequences)
    slope = rng.uniform(-0.01, 0.01, size=n_sequences)
    period = rng.uniform(8.0, 30.0, size=n_sequences)
    phase = rng.uniform(0.0, 2 * np.pi, size=n_sequences)

    sequences = []
    for i, length in enumerate(lengths):
        t = np.arange(length)[:, None]
        trend = level[i] + slope[i] * t
        season = np.sin(2 * np.pi * t / period[i] + phase[i])
        signal = offset + trend_load * trend + season_load * season
        signal = signal + noise * rng.standard_normal((length, n_features))
        sequences.append(signal.astype(np.float32))
    if return_info:
        info = {
            "lengths": lengths,
            "level": level,
            "slope": slope,
            "period": period,
            "phase": phase,
        }
        return sequences, info
    return sequences


# --------------------------------------------------------------------------------------
# Planted anomalies
# --------------------------------------------------------------------------------------


def _as_sequence_list(sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate ``sequences`` as a non-empty list of 2-D arrays with one feature count."""
    if isinstance(sequences, np.ndarray) and sequences.ndim == 3:
        sequences = list(sequences)
    if len(sequences) == 0:
        raise InputError("sequences is empty; pass a non-empty list of (T_i, F) arrays.")
    out = []
    n_features = None
    for i, seq in enumerate(sequences):
        arr = np.array(seq, dtype=np.float32, copy=True)
        if arr.ndim != 2:
            raise InputError(
                f"Sequence {i} has shape {arr.shape}; every sequence must be a 2-D array "
                "(T_i, F). Reshape univariate sequences with x.reshape(-1, 1)."
            )
        if n_features is None:
            n_features = arr.shape[1]
        elif arr.shape[1] != n_features:
            raise InputError(
                f"Sequence {i} has {arr.shape[1]} features but sequence 0 has {n_features}; "
                "every sequence must have the same features."
            )
        if arr.shape[0] < 1:
            raise InputError(f"Sequence {i} has no steps; drop empty sequences first.")
        out.append(arr)
    return out


def plant_anomalies(
    sequences: Sequence[np.ndarray],
    kind: str = "spike",
    fraction: float = 0.1,
    random_state: int | np.random.Generator | None = None,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Insert one anomaly of the given kind into a random fraction of the sequences.

    Magnitudes are measured in each feature's standard deviation over all steps of all
    sequences given. One feature, chosen at random, is affected per anomalous sequence:

    * ``"spike"``: 1 to 3 consecutive steps jump by about 6 standard deviations (sign at
      random).
    * ``"level_shift"``: a constant offset of about 3 standard deviations (sign at random)
      over a stretch of about 20% of the sequence.
    * ``"frozen"``: the feature is held at the value of the step before the stretch, over a
      stretch of about 20% of the sequence (at least 2 steps).

    The inputs are not modified.

    Parameters
    ----------
    sequences : list of ndarray
        Arrays shaped ``(T_i, F)``.
    kind : {"spike", "level_shift", "frozen"}, default "spike"
        The kind of anomaly to plant.
    fraction : float, default 0.1
        Fraction of sequences that receive an anomaly (rounded, at least one when > 0).
    random_state : int, Generator or None, default None
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    new_sequences : list of ndarray
        Float32 copies of the inputs, with the anomalies planted.
    sequence_labels : ndarray of shape (n_sequences,)
        1 for sequences that received an anomaly, 0 otherwise (int64).
    step_labels : list of ndarray
        One int64 array ``(T_i,)`` per sequence, 1 at the steps of the planted anomaly.

    Raises
    ------
    ValueError
        When ``kind`` or ``fraction`` is out of range, the sequences are malformed, or a
        sequence chosen for a frozen stretch has fewer than 3 steps.
    """
    if kind not in _ANOMALY_KINDS:
        raise ParameterError(f"kind must be one of {_ANOMALY_KINDS}, got {kind!r}.")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ParameterError(f"fraction must be between 0 and 1, got {fraction}.")
    new = _as_sequence_list(sequences)
    rng = np.random.default_rng(random_state)
    n = len(new)
    pooled = np.concatenate(new, axis=0).astype(np.float64)
    std = np.nanstd(pooled, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)

    n_anomalous = int(round(fraction * n))
    if fraction > 0:
        n_anomalous = max(1, n_anomalous)
    chosen = np.sort(rng.choice(n, size=n_anomalous, replace=False))
    sequence_labels = np.zeros(n, dtype=np.int64)
    sequence_labels[chosen] = 1
    step_labels = [np.zeros(len(seq), dtype=np.int64) for seq in new]

    for i in chosen:
        seq = new[i]
        length = seq.shape[0]
        feature = int(rng.integers(seq.shape[1]))
        if kind == "spike":
            width = min(int(rng.integers(1, 4)), length)
            start = int(rng.integers(0, length - width + 1))
            sign = rng.choice([-1.0, 1.0])
            seq[start : start + width, feature] += sign * 6.0 * std[feature]
        elif kind == "level_shift":
            width = max(1, int(round(0.2 * length)))
            start = int(rng.integers(0, length - width + 1))
            sign = rng.choice([-1.0, 1.0])
            seq[start : start + width, feature] += sign * 3.0 * std[feature]
        else:  # frozen
            if length < 3:
                raise InputError(
                    f"Sequence {i} has {length} steps; a frozen stretch needs at least 3. "
                    "Drop very short sequences or plant another kind."
                )
            width = max(2, int(round(0.2 * length)))
            width = min(width, length - 1)
            start = int(rng.integers(1, length - width + 1))
            seq[start : start + width, feature] = seq[start - 1, feature]
        step_labels[i][start : start + width] = 1
    logger.debug("Planted %d %s anomalies in %d sequences", n_anomalous, kind, n)
    return new, sequence_labels, step_labels
