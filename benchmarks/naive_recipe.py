"""The "naive recipe" LSTM autoencoder, as a baseline for the benchmarks.

This is the model people commonly build (and then report that it "does not train"), written
in plain PyTorch: zero-pad every sequence to the longest training sequence, fit a standard
scaler on the padded data (so the padding zeros pollute the statistics), and train a stacked
LSTM autoencoder with a repeat-vector decoder on the mean squared error over every step,
padding included. Lengths are ignored throughout; that is the point.

Run ``python -m benchmarks.naive_recipe`` from the repository root to train it on
JapaneseVowels and print its test reconstruction error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["NaiveLSTMAutoencoder", "fit_naive_recipe", "predict_naive_recipe", "pad_post"]


class NaiveLSTMAutoencoder(nn.Module):
    """Stacked LSTM autoencoder with a repeat-vector decoder, blind to sequence lengths.

    Encoder: LSTM (``n_features`` wide) -> per-step dense (``n_features`` wide) -> LSTM
    (``latent_dim`` wide), whose hidden state after the last step (padding or not) is the
    latent code. Decoder: the latent code repeated at every step -> LSTM (``latent_dim``
    wide) -> LSTM (``2 * n_features`` wide) -> per-step dense back to ``n_features``.

    Parameters
    ----------
    n_features : int
        Number of features per step.
    latent_dim : int, default 10
        Width of the latent code.

    Notes
    -----
    The recipe is usually posted as Keras code, so the weights start as Keras initialises
    them (see :meth:`reset_parameters`), not with PyTorch's defaults.
    """

    def __init__(self, n_features: int, latent_dim: int = 10) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.latent_dim = int(latent_dim)
        self.enc1 = nn.LSTM(n_features, n_features, batch_first=True)
        self.enc_dense = nn.Linear(n_features, n_features)
        self.enc2 = nn.LSTM(n_features, latent_dim, batch_first=True)
        self.dec1 = nn.LSTM(latent_dim, latent_dim, batch_first=True)
        self.dec2 = nn.LSTM(latent_dim, 2 * n_features, batch_first=True)
        self.out = nn.Linear(2 * n_features, n_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the weights with Keras's defaults for ``LSTM`` and ``Dense`` layers.

        Input kernels and dense weights: Glorot uniform; recurrent kernels: orthogonal;
        biases: zero, except the LSTM forget gates' biases, which start at one.
        """
        for module in self.modules():
            if isinstance(module, nn.LSTM):
                for name, param in module.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(param)
                    elif name.startswith("weight_hh"):
                        nn.init.orthogonal_(param)
                    elif name.startswith("bias_ih"):
                        nn.init.zeros_(param)
                        hidden = param.shape[0] // 4
                        with torch.no_grad():
                            param[hidden : 2 * hidden] = 1.0  # PyTorch gate order: i, f, g, o
                    else:
                        nn.init.zeros_(param)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch ``(B, T, F)`` into latent codes ``(B, latent_dim)``.

        Parameters
        ----------
        x : Tensor of shape (B, T, F)
            Padded batch; padding is treated as data.

        Returns
        -------
        Tensor of shape (B, latent_dim)
            The second encoder LSTM's hidden state after step ``T``.
        """
        h, _ = self.enc1(x)
        h = self.enc_dense(h)
        _, (h_n, _) = self.enc2(h)
        return h_n[-1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct a batch ``(B, T, F)``; ``lengths`` is accepted and ignored.

        Parameters
        ----------
        x : Tensor of shape (B, T, F)
            Padded batch.
        lengths : Tensor, optional
            Ignored: the naive recipe does not look at sequence lengths.

        Returns
        -------
        Tensor of shape (B, T, F)
            The reconstruction.
        """
        z = self.encode(x)
        repeated = z.unsqueeze(1).expand(-1, x.shape[1], -1)
        h, _ = self.dec1(repeated)
        h, _ = self.dec2(h)
        return self.out(h)


def pad_post(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """Zero-pad (at the end) or truncate each ``(T_i, F)`` sequence to ``length`` steps.

    Parameters
    ----------
    sequences : list of ndarray
        Arrays shaped ``(T_i, F)``.
    length : int
        Number of steps of the output.

    Returns
    -------
    ndarray of shape (n, length, F)
        Float32 array, zeros after each sequence's end.
    """
    n_features = sequences[0].shape[1]
    out = np.zeros((len(sequences), length, n_features), dtype=np.float32)
    for i, seq in enumerate(sequences):
        steps = min(len(seq), length)
        out[i, :steps] = seq[:steps]
    return out


def _check_sequences(sequences: list[np.ndarray], name: str) -> list[np.ndarray]:
    """Validate a non-empty list of 2-D arrays with the same number of features."""
    if len(sequences) == 0:
        raise ValueError(f"{name} is empty; pass a non-empty list of (T_i, F) arrays.")
    arrays = [np.asarray(seq, dtype=np.float32) for seq in sequences]
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(
            f"{name} must be a list of 2-D arrays (T_i, F) with the same F; "
            "reshape univariate sequences with x.reshape(-1, 1)."
        )
    return arrays


def fit_naive_recipe(
    train: list[np.ndarray],
    *,
    latent_dim: int = 10,
    epochs: int = 100,
    batch_size: int = 16,
    lr: float = 5e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the naive recipe: pad, scale the padding with the data, train on every step.

    Parameters
    ----------
    train : list of ndarray
        Training sequences shaped ``(T_i, F)``.
    latent_dim : int, default 10
        Width of the latent code.
    epochs : int, default 100
        Passes over the training set.
    batch_size : int, default 16
        Sequences per mini-batch.
    lr : float, default 5e-4
        Adam learning rate.
    seed : int, default 0
        Seed of the weight initialisation and of the batch shuffling.

    Returns
    -------
    dict
        ``"module"``: the trained :class:`NaiveLSTMAutoencoder` (in eval mode);
        ``"scaler"``: the :class:`~sklearn.preprocessing.StandardScaler` fitted on the padded
        data; ``"padded_length"``: the length everything is padded to; ``"seconds"``: the
        training wall time; ``"losses"``: the mean training loss of every epoch.
    """
    arrays = _check_sequences(train, "train")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()

    padded_length = max(len(a) for a in arrays)
    padded = pad_post(arrays, padded_length)
    n, _, n_features = padded.shape
    scaler = StandardScaler().fit(padded.reshape(n * padded_length, n_features))
    scaled = scaler.transform(padded.reshape(-1, n_features)).reshape(padded.shape)
    data = torch.from_numpy(scaled.astype(np.float32))

    module = NaiveLSTMAutoencoder(n_features, latent_dim)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    losses = []
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for begin in range(0, n, batch_size):
            batch = data[order[begin : begin + batch_size]]
            optimizer.zero_grad()
            loss = loss_fn(module(batch), batch)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / n)
        logger.debug("epoch %d: loss %.4f", epoch + 1, losses[-1])
    module.eval()
    seconds = time.perf_counter() - start
    return {
        "module": module,
        "scaler": scaler,
        "padded_length": padded_length,
        "seconds": seconds,
        "losses": losses,
    }


def predict_naive_recipe(fitted: dict[str, Any], sequences: list[np.ndarray]) -> list[np.ndarray]:
    """Reconstruct sequences with a fitted naive recipe, in the input's units.

    Sequences are zero-padded or truncated to the training padded length, scaled with the
    naive scaler, reconstructed, and inverse-scaled. Each reconstruction is cut back to its
    sequence's own length; steps beyond the padded length (which the model never sees) are
    filled with the scaler's mean.

    Parameters
    ----------
    fitted : dict
        The result of :func:`fit_naive_recipe`.
    sequences : list of ndarray
        Sequences shaped ``(T_i, F)``.

    Returns
    -------
    list of ndarray
        One float32 array ``(T_i, F)`` per input sequence.
    """
    arrays = _check_sequences(sequences, "sequences")
    module: NaiveLSTMAutoencoder = fitted["module"]
    scaler: StandardScaler = fitted["scaler"]
    length = int(fitted["padded_length"])
    padded = pad_post(arrays, length)
    n_features = padded.shape[2]
    if n_features != module.n_features:
        raise ValueError(
            f"sequences have {n_features} features but the model was fitted on "
            f"{module.n_features}; pass sequences with the training features."
        )
    scaled = scaler.transform(padded.reshape(-1, n_features)).reshape(padded.shape)
    module.eval()
    with torch.no_grad():
        recon = module(torch.from_numpy(scaled.astype(np.float32))).numpy()
    recon = scaler.inverse_transform(recon.reshape(-1, n_features)).reshape(recon.shape)
    out = []
    for i, seq in enumerate(arrays):
        rec = np.empty(seq.shape, dtype=np.float32)
        steps = min(len(seq), length)
        rec[:steps] = recon[i, :steps]
        rec[steps:] = scaler.mean_
        out.append(rec)
    return out


def _main() -> None:
    """Train on JapaneseVowels train and print the standardised test MSE."""
    import os
    import sys

    try:
        from hlae.datasets import load_japanese_vowels
    except ImportError:  # run as a script: put the repository root on the path
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from hlae.datasets import load_japanese_vowels

    train, _ = load_japanese_vowels("train")
    test, _ = load_japanese_vowels("test")
    fitted = fit_naive_recipe(train)
    recon = predict_naive_recipe(fitted, test)

    observed = np.concatenate(train).astype(np.float64)
    mean, std = observed.mean(axis=0), observed.std(axis=0)
    errors = np.concatenate([((r - x) / std) ** 2 for r, x in zip(recon, test)])
    mse = float(errors.mean())
    mean_mse = float(np.concatenate([((x - mean) / std) ** 2 for x in test]).mean())
    beyond = sum(max(0, len(x) - fitted["padded_length"]) for x in test)
    print(f"naive recipe on JapaneseVowels: padded length {fitted['padded_length']}")
    print(f"train seconds: {fitted['seconds']:.1f}, final train loss {fitted['losses'][-1]:.4f}")
    print(f"test MSE (observed steps, standardised units): {mse:.4f}")
    print(f"mean predictor test MSE: {mean_mse:.4f}")
    print(f"test steps beyond the padded length (filled with the scaler mean): {beyond}")


if __name__ == "__main__":
    _main()
