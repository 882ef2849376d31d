"""Held-out errors and the trivial baselines every model must beat.

All errors here are mean squared errors over observed values, in units standardised by the
mean and standard deviation of the training split's observed steps, so that predicting the
training mean scores about 1.0 whatever the data.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["Standardiser", "standardised_mse", "pca_baseline", "mean_baseline"]


class Standardiser:
    """Per-feature mean and standard deviation of the observed steps of ``train``."""

    def __init__(self, train: list[np.ndarray]) -> None:
        stacked = np.concatenate(train, axis=0).astype(np.float64)
        self.mean = np.nanmean(stacked, axis=0)
        std = np.nanstd(stacked, axis=0)
        self.std = np.where(std > 1e-12, std, 1.0)

    def __call__(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        return [(np.asarray(s, dtype=np.float64) - self.mean) / self.std for s in seqs]


def standardised_mse(
    reconstructions: list[np.ndarray], truth: list[np.ndarray], train: list[np.ndarray]
) -> float:
    """Mean squared error over observed values of ``truth``, in standardised units."""
    std = Standardiser(train)
    num, den = 0.0, 0
    for r, t in zip(std(reconstructions), std(truth)):
        observed = ~np.isnan(t)
        num += float(((r[: len(t)] - t)[observed] ** 2).sum())
        den += int(observed.sum())
    return num / max(den, 1)


def _pad_flat(seqs: list[np.ndarray], T: int) -> np.ndarray:
    out = np.zeros((len(seqs), T, seqs[0].shape[1]))
    for i, s in enumerate(seqs):
        n = min(len(s), T)
        out[i, :n] = np.nan_to_num(s[:n])
    return out.reshape(len(seqs), -1)


def pca_baseline(
    train: list[np.ndarray], test: list[np.ndarray], n_components: int = 10
) -> list[np.ndarray]:
    """Reconstruct ``test`` with PCA fitted on zero-padded, flattened, standardised ``train``.

    Returns reconstructions in the input's units, cut to each sequence's length.
    """
    std = Standardiser(train)
    T = max(max(len(s) for s in train), max(len(s) for s in test))
    F = train[0].shape[1]
    k = min(n_components, len(train), T * F)
    pca = PCA(k).fit(_pad_flat(std(train), T))
    flat = pca.inverse_transform(pca.transform(_pad_flat(std(test), T))).reshape(len(test), T, F)
    return [flat[i, : len(s)] * std.std + std.mean for i, s in enumerate(test)]


def mean_baseline(train: list[np.ndarray], test: list[np.ndarray]) -> list[np.ndarray]:
    """Predict the training mean of each feature at every step."""
    mean = Standardiser(train).mean
    return [np.broadcast_to(mean, s.shape).copy() for s in test]


def across_sequence_variance(seqs: list[np.ndarray]) -> float:
    """Variance across sequences at the same step, averaged over steps and features.

    Sequences are aligned at their first step; at each step only the sequences observed
    there count. A model that collapses to the mean has a value near zero.
    """
    T = max(len(s) for s in seqs)
    stacked = np.full((len(seqs), T, seqs[0].shape[1]), np.nan)
    for i, s in enumerate(seqs):
        stacked[i, : len(s)] = s
    enough = (~np.isnan(stacked)).sum(0) >= 2  # (T, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.nanvar(stacked, axis=0)
    return float(np.mean(var[enough]))


def collapse_ratio(reconstructions: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Across-sequence variance of the reconstructions over that of the data (1 is ideal)."""
    std = Standardiser(truth)
    return across_sequence_variance(std(reconstructions)) / across_sequence_variance(std(truth))
