"""Anomaly detection from reconstruction error: :class:`AnomalyDetector`.

An autoencoder trained on normal data reconstructs normal data well and unusual data
badly, so its reconstruction error is an anomaly score. The detector follows PyOD's
conventions (``decision_scores_``, ``threshold_``, ``labels_``; ``decision_function``,
``predict``, ``predict_proba``; higher scores are more anomalous; labels are 0 for normal
and 1 for anomalous) and works in two modes:

* collection (``window=None``): many sequences, one score per sequence;
* stream (``window`` set): one long recording (or a few) cut into overlapping windows of
  ``window`` steps every ``stride`` steps; every step gets a score from the errors of the
  windows that cover it, and the step is the unit that is scored and labelled.

In both modes :meth:`AnomalyDetector.score_steps` gives a score per step, so a user can see
where in a sequence the anomaly sits.
"""

from __future__ import annotations

import inspect
import json
import logging
import numbers
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.utils.validation import check_is_fitted

from hlae.data import Sequences, as_sequences
from hlae.estimator import SMALL_DATA, HierarchicalAutoencoder, _jsonable
from hlae.estimator import load as load_autoencoder
from hlae.exceptions import InputError, ModelFileError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["AnomalyDetector", "load_detector", "plot_step_scores", "SCORES"]

SCORES = ("mean", "max", "mahalanobis")
PROBA_METHODS = ("linear", "rank")
FORMAT_VERSION = 1
DETECTOR_FILE = "detector.json"
ARRAYS_FILE = "detector.safetensors"
AUTOENCODER_DIR = "autoencoder"
MAX_COVARIANCE_ROWS = 50_000  # rows used to fit a covariance (a random subset beyond)
MAHALANOBIS_STATE = ("error_location", "error_whitening", "profile_location", "profile_precision")
PRIOR_STEPS = 4.0  # steps of typical error added to every error-level estimate
AUTOENCODER_PARAMS = tuple(
    name
    for name in inspect.signature(HierarchicalAutoencoder.__init__).parameters
    if name != "self"
)


class AnomalyDetector(BaseEstimator):
    """Flag unusual sequences, or unusual stretches of long recordings, by reconstruction error.

    A :class:`~hlae.HierarchicalAutoencoder` is trained on (mostly) normal data; what it
    reconstructs badly is scored as anomalous. The decision threshold is the
    ``1 - contamination`` quantile of the training scores, as in PyOD.

    Parameters
    ----------
    contamination : float, default=0.1
        Expected share of anomalies in the training data, in (0, 0.5]. Sets
        ``threshold_`` and therefore :meth:`predict`; the scores do not depend on it.
    window : int, optional
        ``None`` (collection mode): every sequence is one sample with one score. An integer
        (stream mode): each sequence is a long recording cut into windows of ``window``
        steps; every step is one sample with one score. Every recording must have at
        least ``window`` steps.
    stride : int, optional
        Steps between the starts of consecutive windows (stream mode). By default
        ``window // 4``, so that every step is covered by about four windows. The last
        window of a recording always ends at its last step.
    score : {"mahalanobis", "mean", "max"}, default="mahalanobis"
        How the reconstruction errors (in the autoencoder's scaled units) become scores:

        * ``"mahalanobis"``: the signed errors of a step (one per feature) are whitened
          with their mean and Ledoit-Wolf covariance over the training steps. A step's
          score is its squared Mahalanobis distance. A sequence's score (and, in stream
          mode, a step's score) is the squared Mahalanobis distance of its *error
          profile*, the log of the mean squared whitened error of each component over
          the sequence (or the stretch around the step), from the training profiles
          (Ledoit-Wolf again). It weighs each feature by how well it is usually
          reconstructed, accounts for errors that go together, and flags errors that are
          unusually *low* as well as high: a frozen sensor, or data with less variation
          than anything seen in training, is reconstructed too well.
        * ``"mean"``: a step's score is its squared error averaged over features; a
          sequence's score is its mean squared error.
        * ``"max"``: a step's score is its largest squared error over features; a
          sequence's score is the largest over its steps. Sensitive to short, sharp
          anomalies that a mean dilutes, and to noise.
    smoothing : int, optional
        Stream mode: the number of steps around each step whose errors make its score
        (a centred moving mean of ``"mean"`` and ``"max"`` step scores, the stretch of
        the ``"mahalanobis"`` profile). By default a quarter of the window; 1 scores each
        step on its own errors alone. A wider stretch lifts anomalies that last many steps
        above step-to-step noise and spreads out short ones.
    autoencoder_params : dict, optional
        Parameters of the :class:`~hlae.HierarchicalAutoencoder` trained inside (for
        example ``{"latent_dim": 8, "max_time": 60}``). This dict is the estimator
        parameter that ``get_params``, ``set_params`` and ``sklearn.base.clone`` see.
    **params
        Shorthand: autoencoder parameters given as keywords are merged into
        ``autoencoder_params`` (keywords win), so ``AnomalyDetector(latent_dim=8)`` is
        ``AnomalyDetector(autoencoder_params={"latent_dim": 8})``.

        Unless ``augmentation`` is given, the detector trains with jitter (noise) as the
        only augmentation, and none on 1000 or more sequences or windows: scaling and
        time warping would teach the autoencoder to reconstruct changes of amplitude and
        tempo, which are among the anomalies to find. On the ECG stream of the benchmark
        this raised the AUC-PR from 0.82 to 0.92 (docs/anomaly.md).

    Attributes
    ----------
    autoencoder_ : HierarchicalAutoencoder
        The trained autoencoder.
    decision_scores_ : ndarray of shape (n_samples,)
        Scores of the training data: one per sequence (collection mode) or one per step,
        recordings concatenated in order (stream mode).
    threshold_ : float
        The ``1 - contamination`` quantile of ``decision_scores_``.
    labels_ : ndarray of shape (n_samples,)
        1 where ``decision_scores_ > threshold_``, else 0.
    error_location_, error_whitening_ : ndarray of shape (n_features,), (n_features, n_features)
        Mean of the training errors and the matrix that whitens them
        (``score="mahalanobis"`` only).
    profile_location_, profile_precision_ : ndarray
        Mean and inverse covariance of the training error profiles (``"mahalanobis"``
        only).
    n_features_in_ : int
        Number of features.

    Notes
    -----
    Training scores come from the data the autoencoder was trained on, so they run lower
    than the scores of new normal data: on new data, expect more than ``contamination`` of
    normal samples above ``threshold_`` (on the benchmark's ECG stream about twice as
    many). The Mahalanobis statistics are fitted on all the training data, anomalies
    included; heavily contaminated training data widens them and hides some anomalies.

    Examples
    --------
    >>> import numpy as np, hlae
    >>> rng = np.random.default_rng(0)
    >>> X = [np.sin(np.arange(40) / 4 + rng.uniform(0, 6))[:, None] for _ in range(40)]
    >>> detector = hlae.AnomalyDetector(contamination=0.1, max_epochs=2, random_state=0)
    >>> detector.fit(X).decision_scores_.shape
    (40,)
    """

    def __init__(
        self,
        *,
        contamination: float = 0.1,
        window: int | None = None,
        stride: int | None = None,
        score: str = "mahalanobis",
        smoothing: int | None = None,
        autoencoder_params: dict[str, Any] | None = None,
        **params: Any,
    ) -> None:
        self.contamination = contamination
        self.window = window
        self.stride = stride
        self.score = score
        self.smoothing = smoothing
        if params:
            autoencoder_params = {**(autoencoder_params or {}), **params}
        self.autoencoder_params = autoencoder_params

    # -- checks ---------------------------------------------------------------------------
    @property
    def _stream(self) -> bool:
        return self.window is not None

    def _check_params(self) -> None:
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0.0 < float(c) <= 0.5:
            raise ParameterError(
                f"contamination must be a number in (0, 0.5], got {c!r}: it is the expected "
                "share of anomalies in the training data (PyOD's convention)."
            )
        if self.score not in SCORES:
            raise ParameterError(f"score must be one of {SCORES}, got {self.score!r}.")
        for name in ("window", "stride", "smoothing"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(f"{name} must be a positive integer or None, got {value!r}.")
        if self.window is not None and self.window < 2:
            raise ParameterError(f"window must be at least 2 steps, got {self.window!r}.")
        if self.window is None and (self.stride is not None or self.smoothing is not None):
            raise ParameterError(
                "stride and smoothing apply to stream mode only; set window (the number of "
                "steps per window) as well, or leave them None."
            )
        if self.stride is not None and self.stride > self.window:
            raise ParameterError(
                f"stride ({self.stride}) is larger than window ({self.window}): steps between "
                "windows would never be scored. Use stride <= window."
            )
        params = self.autoencoder_params or {}
        if not isinstance(params, dict):
            raise ParameterError(
                f"autoencoder_params must be a dict or None, got {type(params).__name__}."
            )
        unknown = sorted(set(params) - set(AUTOENCODER_PARAMS))
        if unknown:
            raise ParameterError(
                f"Unknown autoencoder parameter(s) {unknown}; HierarchicalAutoencoder takes "
                f"{list(AUTOENCODER_PARAMS)}."
            )
        HierarchicalAutoencoder(**params)._check_params()

    def _stride(self) -> int:
        return int(self.stride) if self.stride is not None else max(1, int(self.window) // 4)

    def _sequences(self, X: Any, lengths: Any = None, **table: Any) -> Sequences:
        """Validate the input; in stream mode a single (T, F) or (T,) array is one recording."""
        missing = (self.autoencoder_params or {}).get("missing", "error")
        if isinstance(X, np.ndarray) and X.dtype != object and X.ndim <= 2:
            if not self._stream:
                raise InputError(
                    f"Got one array of shape {X.shape}: in collection mode (window=None) "
                    "every sequence is one sample. To score one long recording step by "
                    "step, set window (stream mode); for a collection, pass a list of "
                    "(T_i, F) arrays or an (n, T, F) array."
                )
            X = [X.reshape(-1, 1) if X.ndim == 1 else X]
        fitted = hasattr(self, "autoencoder_")
        seqs = as_sequences(
            X,
            lengths=lengths,
            missing=missing,
            min_length=1,
            n_features=self.n_features_in_ if fitted else None,
            **table,
        )
        if self._stream:
            short = np.flatnonzero(seqs.lengths < self.window)
            if len(short) == len(seqs):
                raise InputError(
                    f"window={self.window} is longer than every sequence (the longest has "
                    f"{int(seqs.lengths.max())} steps). Use a window of at most "
                    f"{int(seqs.lengths.max())} steps."
                )
            if len(short):
                i = int(short[0])
                raise InputError(
                    f"Recording {seqs.ids[i]!r} has {int(seqs.lengths[i])} steps, fewer than "
                    f"one window ({self.window}); {len(short)} recording(s) are that short. "
                    "Drop them, or use a shorter window."
                )
        else:
            short = np.flatnonzero(seqs.lengths < 2)
            if len(short):
                raise InputError(
                    f"Sequence {seqs.ids[int(short[0])]!r} has a single step; every sequence "
                    "needs at least 2. For one long recording, set window to score it in "
                    "stream mode."
                )
        return seqs

    # -- fit ------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        lengths: Any = None,
        callback: Callable[[dict], None] | None = None,
        **table: Any,
    ) -> AnomalyDetector:
        """Train the autoencoder on ``X`` and set the scores and threshold of ``X``.

        Parameters
        ----------
        X : list of (T_i, F) arrays, (n, T, F) array, pandas long table; or, in stream mode,
            one (T, F) or (T,) array
            Training data, mostly normal.
        y : ignored
        lengths : array-like of int, optional
            Observed lengths for a padded ``(n, T, F)`` array.
        callback : callable, optional
            Called with each training epoch's record (for progress bars).
        **table
            ``id_column``, ``order_column``, ``feature_columns`` for a long table.

        Returns
        -------
        self

        Raises
        ------
        ParameterError
            When a parameter is out of range (before anything is trained).
        InputError
            When the data cannot be used, for instance a recording shorter than one window
            (before anything is trained).
        """
        self._check_params()
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        seqs = self._sequences(X, lengths, **table)
        train = self._windows(seqs.values)[0] if self._stream else seqs.values
        logger.info(
            "Training the autoencoder on %d %s",
            len(train),
            "windows" if self._stream else "sequences",
        )
        params = dict(self.autoencoder_params or {})
        if "augmentation" not in params:
            # Scaling and time warping would teach the autoencoder to reconstruct changes of
            # amplitude and tempo, which are anomalies here; keep only the noise.
            params["augmentation"] = ("jitter",) if len(train) < SMALL_DATA else None
        autoencoder = HierarchicalAutoencoder(**params)
        autoencoder.fit(train, callback=callback)
        self._calibrate(autoencoder, seqs)
        return self

    @classmethod
    def from_autoencoder(
        cls,
        autoencoder: HierarchicalAutoencoder,
        X: Any,
        *,
        contamination: float = 0.1,
        window: int | None = None,
        stride: int | None = None,
        score: str = "mahalanobis",
        smoothing: int | None = None,
        lengths: Any = None,
        **table: Any,
    ) -> AnomalyDetector:
        """Wrap an already trained autoencoder; calibrate scores and threshold on ``X``.

        Nothing is trained. ``X`` plays the part of the training data: the Mahalanobis
        statistics (``score="mahalanobis"``) are fitted on its errors and the threshold is
        the ``1 - contamination`` quantile of its scores, so about ``contamination`` of
        ``X`` is labelled anomalous. Pass the data the autoencoder was trained on (or other
        normal data) to get a threshold for new data.

        Parameters
        ----------
        autoencoder : HierarchicalAutoencoder
            A fitted autoencoder. In stream mode it should have been trained on windows of
            ``window`` steps.
        X : sequences or recording(s)
            Reference data, as for :meth:`fit`.
        contamination, window, stride, score, smoothing
            As for the constructor.

        Returns
        -------
        AnomalyDetector
            A fitted detector whose ``autoencoder_params`` are the autoencoder's.
        """
        check_is_fitted(autoencoder, "module_")
        detector = cls(
            contamination=contamination,
            window=window,
            stride=stride,
            score=score,
            smoothing=smoothing,
            autoencoder_params=autoencoder.get_params(),
        )
        detector._check_params()
        detector._calibrate(autoencoder, detector._sequences(X, lengths, **table))
        return detector

    def _calibrate(self, autoencoder: HierarchicalAutoencoder, seqs: Sequences) -> None:
        """Fit the score statistics and the threshold on ``seqs``' errors."""
        self.autoencoder_ = autoencoder
        self.n_features_in_ = autoencoder.n_features_in_
        self.feature_names_in_ = autoencoder.feature_names_in_
        residuals, starts = self._unit_residuals(seqs.values)
        if self.score == "mahalanobis":
            # whiten the signed errors with their covariance over all training steps
            rows = np.concatenate(residuals).astype(np.float64)
            rows = _subsample(rows[~np.isnan(rows).any(axis=1)])
            covariance = LedoitWolf().fit(rows).covariance_
            eigenvalues, eigenvectors = np.linalg.eigh(covariance)
            eigenvalues = np.maximum(eigenvalues, 1e-12 * max(eigenvalues.max(), 1e-12))
            self.error_location_ = rows.mean(axis=0)
            self.error_whitening_ = eigenvectors / np.sqrt(eigenvalues)
        errors = self._step_errors(residuals, starts, seqs.values)
        if self.score == "mahalanobis":
            # where the error profiles of normal sequences (or stretches) lie
            profiles = _subsample(np.concatenate(self._profiles(errors)))
            covariance = LedoitWolf().fit(profiles)
            self.profile_location_ = covariance.location_
            self.profile_precision_ = covariance.precision_
        self.decision_scores_ = self._sample_scores(errors)
        self._set_threshold()

    def _set_threshold(self) -> None:
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)

    # -- errors ---------------------------------------------------------------------------
    def _smoothing(self) -> int:
        if self.smoothing is not None:
            return int(self.smoothing)
        return max(1, int(self.window) // 4)

    def _windows(self, values: list[np.ndarray]) -> tuple[list[np.ndarray], list[list[int]]]:
        """Cut recordings into windows; also return each recording's window starts."""
        window, stride = int(self.window), self._stride()
        windows, starts = [], []
        for v in values:
            s = list(range(0, len(v) - window + 1, stride))
            if s[-1] != len(v) - window:
                s.append(len(v) - window)  # the last window ends at the last step
            starts.append(s)
            windows.extend(v[t : t + window] for t in s)
        return windows, starts

    def _unit_residuals(
        self, values: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[list[int]] | None]:
        """Signed errors (reconstruction minus input, scaled units) of what the model sees.

        Collection mode: one ``(T_i, F)`` array per sequence, and no window starts. Stream
        mode: one ``(window, F)`` array per window, and each recording's window starts.
        """
        model = self.autoencoder_
        units, starts = (self._windows(values)) if self._stream else (list(values), None)
        recon = model.scaler_.transform(model.reconstruct(units))
        scaled = model.scaler_.transform(units)
        return [(r - x).astype(np.float64) for r, x in zip(recon, scaled)], starts

    def _step_errors(
        self,
        residuals: list[np.ndarray],
        starts: list[list[int]] | None,
        values: list[np.ndarray],
    ) -> list[np.ndarray]:
        """Squared errors per step and feature, ``(T_i, F)`` per sequence or recording.

        For ``score="mahalanobis"`` the errors are whitened first (their components are
        uncorrelated with unit variance on the training data). In stream mode each step's
        errors are averaged over the windows that cover it.
        """
        if self.score == "mahalanobis":
            squared = [
                ((np.nan_to_num(r - self.error_location_)) @ self.error_whitening_) ** 2
                for r in residuals
            ]
        else:
            squared = [r**2 for r in residuals]
        if not self._stream:
            return squared
        errors, k, w = [], 0, int(self.window)
        for v, recording_starts in zip(values, starts):
            total = np.zeros(v.shape, dtype=np.float64)
            count = np.zeros(v.shape, dtype=np.float64)
            for t in recording_starts:
                observed = ~np.isnan(squared[k])
                total[t : t + w] += np.where(observed, squared[k], 0.0)
                count[t : t + w] += observed
                k += 1
            with np.errstate(invalid="ignore", divide="ignore"):
                errors.append(np.where(count > 0, total / count, np.nan))
        return errors

    def _profiles(self, errors: list[np.ndarray]) -> list[np.ndarray]:
        """Log error level per whitened component: of each sequence, or around each step.

        The level over ``n`` steps is estimated as ``(sum of squared errors + k) / (n + k)``
        with ``k = PRIOR_STEPS``: as if a few more steps of typical error (1 after
        whitening) had been seen, so that short stretches are not extreme by chance.
        Too low a level is as unusual as too high a one (a frozen sensor, a class with
        less variation than the training data).
        """
        if not self._stream:
            return [
                np.log((e.sum(axis=0, keepdims=True) + PRIOR_STEPS) / (len(e) + PRIOR_STEPS))
                for e in errors
            ]
        width = self._smoothing()
        profiles = []
        for e in errors:
            total = np.column_stack([_moving_sum(e[:, j], width) for j in range(e.shape[1])])
            n = _moving_sum(np.ones(len(e)), width)[:, None]
            profiles.append(np.log((total + PRIOR_STEPS) / (n + PRIOR_STEPS)))
        return profiles

    def _step_scores(self, errors: list[np.ndarray]) -> list[np.ndarray]:
        if self.score == "mahalanobis":
            if self._stream:
                return [self._profile_distance(p) for p in self._profiles(errors)]
            return [e.sum(axis=1) for e in errors]
        reduce = np.nanmean if self.score == "mean" else np.nanmax
        steps = [_nan_reduce(reduce, e) for e in errors]
        if self._stream:
            width = self._smoothing()
            steps = [_moving_sum(s, width) / _moving_sum(np.ones(len(s)), width) for s in steps]
        return steps

    def _profile_distance(self, profiles: np.ndarray) -> np.ndarray:
        centred = profiles - self.profile_location_
        return np.einsum("nf,fg,ng->n", centred, self.profile_precision_, centred)

    def _sample_scores(self, errors: list[np.ndarray]) -> np.ndarray:
        if self._stream:
            return np.concatenate(self._step_scores(errors))
        if self.score == "mean":
            # the sequence's mean squared error over its observed values
            return np.array([np.nanmean(e) for e in errors])
        if self.score == "max":
            return np.array([np.nanmax(e) for e in errors])
        return self._profile_distance(np.concatenate(self._profiles(errors)))

    def _scores_of(self, X: Any, lengths: Any, table: dict) -> list[np.ndarray]:
        """Per-step errors of new data, ready for the score functions."""
        check_is_fitted(self, "autoencoder_")
        seqs = self._sequences(X, lengths, **table)
        residuals, starts = self._unit_residuals(seqs.values)
        return self._step_errors(residuals, starts, seqs.values)

    # -- scoring --------------------------------------------------------------------------
    def decision_function(self, X: Any, *, lengths: Any = None, **table: Any) -> np.ndarray:
        """Anomaly scores; higher is more anomalous.

        Returns
        -------
        ndarray of shape (n_samples,)
            One score per sequence (collection mode), or one per step with the recordings
            concatenated in order (stream mode).
        """
        return self._sample_scores(self._scores_of(X, lengths, table))

    def score_steps(self, X: Any, *, lengths: Any = None, **table: Any) -> list[np.ndarray]:
        """Scores per step: where in each sequence the error sits.

        In stream mode these are the scores :meth:`decision_function` gives, split by
        recording; compare them with ``threshold_``. In collection mode they show which
        steps make a sequence's score (``threshold_`` is for whole sequences there).

        Returns
        -------
        list of ndarray
            One array ``(T_i,)`` per sequence or recording.
        """
        return self._step_scores(self._scores_of(X, lengths, table))

    def predict(self, X: Any, *, lengths: Any = None, **table: Any) -> np.ndarray:
        """Labels: 1 for anomalous (score above ``threshold_``), 0 for normal."""
        scores = self.decision_function(X, lengths=lengths, **table)
        return (scores > self.threshold_).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """Fit on ``X`` and return ``labels_``."""
        return self.fit(X, **kwargs).labels_

    def predict_proba(
        self, X: Any, *, method: str = "linear", lengths: Any = None, **table: Any
    ) -> np.ndarray:
        """Probability of being normal and anomalous, ``(n_samples, 2)``.

        Parameters
        ----------
        method : {"linear", "rank"}, default="linear"
            ``"linear"``: the score rescaled so that the lowest training score maps to 0
            and the highest to 1, clipped to [0, 1] (PyOD's default). ``"rank"``: the share
            of training scores below the score (its empirical quantile).
        """
        check_is_fitted(self, "autoencoder_")
        if method not in PROBA_METHODS:
            raise ParameterError(f"method must be one of {PROBA_METHODS}, got {method!r}.")
        scores = self.decision_function(X, lengths=lengths, **table)
        train = np.sort(self.decision_scores_)
        if method == "linear":
            span = train[-1] - train[0]
            anomalous = np.clip((scores - train[0]) / (span if span > 0 else 1.0), 0.0, 1.0)
        else:
            anomalous = np.searchsorted(train, scores, side="left") / len(train)
        return np.column_stack([1.0 - anomalous, anomalous])

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a directory; no pickle.

        ``detector.json`` holds the parameters and threshold, ``detector.safetensors`` the
        training scores (and Mahalanobis statistics), ``autoencoder/`` the autoencoder as
        :meth:`HierarchicalAutoencoder.save` writes it. Load with :meth:`load`.
        """
        from safetensors.numpy import save_file

        check_is_fitted(self, "autoencoder_")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.autoencoder_.save(path / AUTOENCODER_DIR)
        params = self.get_params()
        params["autoencoder_params"] = _jsonable(params["autoencoder_params"] or {})
        config = {
            "format_version": FORMAT_VERSION,
            "kind": "hlae.AnomalyDetector",
            "params": params,
            "threshold": self.threshold_,
        }
        arrays = {"decision_scores": np.asarray(self.decision_scores_, dtype=np.float64)}
        if self.score == "mahalanobis":
            for name in MAHALANOBIS_STATE:
                arrays[name] = np.asarray(getattr(self, name + "_"), dtype=np.float64)
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            save_file(arrays, os.path.join(tmp, ARRAYS_FILE))
            with open(os.path.join(tmp, DETECTOR_FILE), "w") as fh:
                json.dump(config, fh, indent=2)
            os.replace(os.path.join(tmp, ARRAYS_FILE), path / ARRAYS_FILE)
            os.replace(os.path.join(tmp, DETECTOR_FILE), path / DETECTOR_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AnomalyDetector:
        """Load a detector written by :meth:`save`; see :func:`load_detector`."""
        return load_detector(path)


def is_detector_dir(path: str | Path) -> bool:
    """True when ``path`` holds a saved :class:`AnomalyDetector`."""
    return (Path(path) / DETECTOR_FILE).exists()


def load_detector(path: str | Path) -> AnomalyDetector:
    """Load a detector saved with :meth:`AnomalyDetector.save`.

    Raises
    ------
    ModelFileError
        When the directory is not a saved detector or one of its files is damaged.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    config_path, arrays_path = path / DETECTOR_FILE, path / ARRAYS_FILE
    for p in (config_path, arrays_path):
        if not p.exists():
            raise ModelFileError(
                f"{str(p)!r} does not exist: {str(path)!r} is not a saved hlae anomaly "
                "detector (a directory written by detector.save(path) or `hlae fit-detector`)."
            )
    try:
        config = json.loads(config_path.read_text())
        params = dict(config["params"])
        threshold = float(config["threshold"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        msg = f"{str(config_path)!r} is damaged ({exc}); re-save the detector."
        raise ModelFileError(msg) from None
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(
            f"{str(arrays_path)!r} could not be read ({exc}); re-save the detector."
        ) from None
    ae_params = params.get("autoencoder_params") or {}
    for key in ("chunk_length", "augmentation"):
        if isinstance(ae_params.get(key), list):
            ae_params[key] = tuple(ae_params[key])
    detector = AnomalyDetector(**params)
    detector.autoencoder_ = load_autoencoder(path / AUTOENCODER_DIR)
    detector.n_features_in_ = detector.autoencoder_.n_features_in_
    detector.feature_names_in_ = detector.autoencoder_.feature_names_in_
    detector.decision_scores_ = arrays["decision_scores"]
    if detector.score == "mahalanobis":
        if any(name not in arrays for name in MAHALANOBIS_STATE):
            raise ModelFileError(f"{str(arrays_path)!r} lacks the Mahalanobis statistics.")
        for name in MAHALANOBIS_STATE:
            setattr(detector, name + "_", arrays[name])
    detector.threshold_ = threshold
    detector.labels_ = (detector.decision_scores_ > threshold).astype(np.int64)
    return detector


def plot_step_scores(
    values: np.ndarray,
    step_scores: np.ndarray,
    threshold: float | None,
    path: str | Path,
    *,
    labels: np.ndarray | None = None,
    feature_names: list[str] | None = None,
    title: str = "Anomaly scores",
    max_features: int = 4,
) -> Path:
    """Plot a recording (top) above its per-step scores and the threshold (bottom); PNG.

    Steps scored above the threshold are shaded in both panels; ``labels`` (1 at truly
    anomalous steps), when given, are shaded in another colour for comparison.
    """
    from hlae.plotting import _pyplot

    plt = _pyplot()
    values = np.asarray(values)
    values = values.reshape(-1, 1) if values.ndim == 1 else values
    steps = np.arange(len(values))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for j in range(min(max_features, values.shape[1])):
        name = feature_names[j] if feature_names else f"feature {j}"
        top.plot(steps, values[:, j], lw=0.8, label=name)
    bottom.plot(steps, step_scores, color="black", lw=0.8, label="score")
    if threshold is not None:
        bottom.axhline(threshold, color="tab:red", ls="--", lw=1, label="threshold")
        _shade(top, bottom, np.asarray(step_scores) > threshold, "tab:red", "flagged")
    if labels is not None:
        _shade(top, bottom, np.asarray(labels) > 0, "tab:green", "labelled anomaly")
    scores = np.asarray(step_scores, dtype=float)
    if (scores > 0).all() and scores.max() > 50 * np.median(scores):
        bottom.set_yscale("log")  # scores spanning decades: keep the threshold visible
        bottom.set_ylim(bottom=float(np.percentile(scores, 5)))
    top.set_ylabel("value")
    bottom.set_ylabel("score")
    bottom.set_xlabel("step")
    top.set_title(title)
    top.legend(fontsize=7, loc="upper right")
    bottom.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shade(top, bottom, flags: np.ndarray, colour: str, label: str) -> None:
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(np.int8), 0]))
    for k, (start, stop) in enumerate(zip(edges[::2], edges[1::2])):
        for ax in (top, bottom):
            ax.axvspan(
                start - 0.5,
                stop - 0.5,
                color=colour,
                alpha=0.15,
                lw=0,
                label=label if (k == 0 and ax is bottom) else None,
            )


def _nan_reduce(reduce: Callable, errors: np.ndarray) -> np.ndarray:
    """Reduce over features ignoring missing values; a step with none observed scores 0."""
    observed = ~np.isnan(errors)
    if observed.all():
        return reduce(errors, axis=1)
    out = np.zeros(len(errors))
    rows = observed.any(axis=1)
    out[rows] = reduce(errors[rows], axis=1)
    return out


def _moving_sum(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving sum over ``width`` steps (fewer steps at the ends); NaN counts as 0."""
    if width <= 1:
        return np.nan_to_num(values)
    return np.convolve(np.nan_to_num(values), np.ones(width), mode="same")


def _subsample(rows: np.ndarray) -> np.ndarray:
    """At most MAX_COVARIANCE_ROWS rows, picked at random with a fixed seed."""
    if len(rows) <= MAX_COVARIANCE_ROWS:
        return rows
    pick = np.random.default_rng(0).choice(len(rows), MAX_COVARIANCE_ROWS, replace=False)
    return rows[pick]
