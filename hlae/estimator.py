"""The scikit-learn style estimator: :class:`HierarchicalAutoencoder`."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hlae import distributed
from hlae.data import FeatureScaler, Sequences, as_sequences, length_batches, pad_batch
from hlae.exceptions import DivergenceError, ModelFileError, ParameterError, TrainingWarning
from hlae.model import HierarchicalLSTMAutoencoder
from hlae.streaming import ParquetDataset
from hlae.training import AUGMENTATIONS, LOSSES, Trainer, autocast_dtype, load_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["HierarchicalAutoencoder", "load", "default_chunk_lengths", "default_n_basis"]

HIERARCHIES = ("time", "variables", "time+variables", "flat")
FORMAT_VERSION = 1
SMALL_DATA = 1000  # sequences; below this, augmentation="auto" switches augmentation on


def default_chunk_lengths(lengths: np.ndarray) -> tuple[int, ...]:
    """Chunk length(s) for the time hierarchy, from the lengths in the data.

    Chunks of about ``sqrt(S)`` steps, ``S`` the 10th percentile of the lengths: a short
    sequence still reaches the top level as about ``sqrt(S)`` units, so its shape is
    resolved there (with chunks sized for the long sequences, the short ones of a widely
    spread set arrive as two or three units and are reconstructed worse than by PCA). For
    sequences of one length this is ``sqrt(T)``, which keeps the sequential depth near
    ``2 sqrt(T)``. More levels are added while the top level would still see more than 64
    units of a long sequence (the 90th percentile).
    """
    S = float(np.percentile(lengths, 10))
    T = float(np.percentile(lengths, 90))
    L = int(np.clip(round(math.sqrt(S)), 3, 64))
    levels = [L]
    while T / math.prod(levels) > 64:
        levels.append(int(np.clip(round(math.sqrt(T / math.prod(levels))), 2, 64)))
    return tuple(levels)


def default_n_basis(lengths: np.ndarray, chunk_lengths: tuple[int, ...]) -> int:
    """Relative-time points of the top level's linear paths, from the lengths in the data.

    One point per top-level unit of a long sequence (the 90th percentile of the lengths),
    between 8 and 64: with fewer points than units the linear paths smooth the sequence
    over time and the model cannot even match PCA on long sequences; with more they add
    parameters that carry nothing.
    """
    T = float(np.percentile(lengths, 90))
    units = math.ceil(T / math.prod(chunk_lengths)) if chunk_lengths else math.ceil(T)
    return int(np.clip(units, 8, 64))


class HierarchicalAutoencoder(TransformerMixin, BaseEstimator):
    """Hierarchical LSTM autoencoder for multivariate sequences of unequal length.

    Parameters
    ----------
    latent_dim : int, default=10
        Size of the embedding of a sequence.
    hierarchy : {"time", "variables", "time+variables", "flat"}, default="time"
        ``"time"`` cuts sequences into chunks and reads chunks, then the sequence of chunk
        summaries; ``"variables"`` reads each variable on its own (weights shared), then
        their relations; ``"time+variables"`` does both; ``"flat"`` is a one-level LSTM
        autoencoder over whole sequences (the non-hierarchical reference).
    chunk_length : int or tuple of int, optional
        Steps per chunk (a tuple stacks more levels: chunks of chunks). By default about the
        square root of the 10th percentile of the training lengths (see
        :func:`default_chunk_lengths`).
    hidden_size : int, default=64
        Width of every LSTM level.
    variable_size : int, default=8
        Width of the per-variable LSTM (hierarchies over variables).
    dropout : float, default=0.1
        Dropout between levels.
    loss : {"mse", "mae", "huber", "cosine"}, default="mse"
        Training loss, always over observed values only.
    scaler : {"standard", "robust", "minmax"} or None, default="standard"
        Per-feature scaling fitted on observed steps only; ``None`` switches it off.
    lr : float or "auto", default=3e-3
        Peak learning rate of AdamW (after a linear warm-up, then cosine decay). ``"auto"``
        runs a short learning-rate range test before training and uses the rate it
        suggests (stored in ``lr_``).
    weight_decay : float, default=1e-4
        AdamW's decoupled weight decay.
    batch_size : int, default=32
        Sequences per batch; batches are grouped by length. Under ``torchrun`` this is per
        process: one step sees ``batch_size * world_size`` sequences.
    max_epochs : int or "auto", default="auto"
        Upper bound on epochs; the learning-rate schedule spans it. ``"auto"`` gives at
        least 100 epochs and at least 1000 optimisation steps (at most 1000 epochs), so
        small data sets with few batches per epoch still train long enough.
    patience : int, default=20
        Early stopping: epochs without improvement of the validation loss before stopping.
        The best weights are restored.
    validation_fraction : float, default=0.15
        Share of sequences held out for early stopping (none when fewer than 10 sequences).
    warmup : float, default=0.05
        Share of all optimisation steps spent warming up the learning rate.
    grad_clip : float, default=1.0
        Maximum global gradient norm.
    augmentation : "auto", None or sequence of str, default="auto"
        Any of ``"jitter"``, ``"scaling"``, ``"cropping"``, ``"time_warp"``. ``"auto"``
        uses jitter, scaling and time warping on data sets of fewer than 1000 sequences.
    missing : {"error", "mask"}, default="error"
        NaN values are an error, or missing values masked out of the loss.
    max_time : float, optional
        Stop training after this many seconds (the best weights are kept).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when PyTorch sees a GPU, else the CPU).
        Under ``torchrun`` each process uses the GPU numbered by its local rank.
    precision : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Type of the training forward pass: ``"auto"`` is float32 on CPU and mixed precision
        on CUDA (bfloat16 where the GPU supports it, else float16 with loss scaling).
    random_state : int, optional
        Seed; the same seed gives the same model on one machine.

    Attributes
    ----------
    module_ : HierarchicalLSTMAutoencoder
        The trained PyTorch module.
    scaler_ : FeatureScaler
        The fitted per-feature scaling.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``grad_norm``,
        ``lr``, ``seconds``.
    chunk_lengths_ : tuple of int
        Chunk lengths used (empty for ``"flat"``).
    n_basis_ : int
        Points of relative time in the top level's linear paths (see
        :func:`default_n_basis`).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    n_missing_ : int
        Missing (NaN) values in the training data, masked out of the loss
        (``missing="mask"``); 0 otherwise.
    best_epoch_ : int
    stop_reason_ : str
        ``"max_epochs"``, ``"early_stopping"``, ``"max_time"``, ``"interrupted"`` (SIGINT or
        SIGTERM; the best weights so far are kept) or ``"diverged"``.

    Examples
    --------
    >>> import numpy as np, hlae
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(int(n), 3)) for n in rng.integers(20, 40, size=30)]
    >>> model = hlae.HierarchicalAutoencoder(latent_dim=4, max_epochs=2, random_state=0)
    >>> model.fit(X).transform(X).shape
    (30, 4)
    """

    def __init__(
        self,
        *,
        latent_dim: int = 10,
        hierarchy: str = "time",
        chunk_length: int | tuple[int, ...] | None = None,
        hidden_size: int = 64,
        variable_size: int = 8,
        dropout: float = 0.1,
        loss: str = "mse",
        scaler: str | None = "standard",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int | str = "auto",
        patience: int = 20,
        validation_fraction: float = 0.15,
        warmup: float = 0.05,
        grad_clip: float = 1.0,
        augmentation: str | tuple[str, ...] | None = "auto",
        missing: str = "error",
        max_time: float | None = None,
        device: str = "cpu",
        precision: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hierarchy = hierarchy
        self.chunk_length = chunk_length
        self.hidden_size = hidden_size
        self.variable_size = variable_size
        self.dropout = dropout
        self.loss = loss
        self.scaler = scaler
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.warmup = warmup
        self.grad_clip = grad_clip
        self.augmentation = augmentation
        self.missing = missing
        self.max_time = max_time
        self.device = device
        self.precision = precision
        self.random_state = random_state

    # -- checks ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        def positive_int(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}.")

        for name in ("latent_dim", "hidden_size", "variable_size", "batch_size"):
            positive_int(name, getattr(self, name))
        positive_int("patience", self.patience)
        if self.max_epochs != "auto":
            positive_int("max_epochs", self.max_epochs)
        if self.hierarchy not in HIERARCHIES:
            raise ParameterError(
                f"hierarchy must be one of {HIERARCHIES}, got {self.hierarchy!r}."
            )
        if self.chunk_length is not None:
            chunks = (
                (self.chunk_length,)
                if isinstance(self.chunk_length, (int, np.integer))
                else tuple(self.chunk_length)
            )
            if not chunks or any(
                isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 2
                for c in chunks
            ):
                raise ParameterError(
                    f"chunk_length must be an integer >= 2 (or a tuple of them), got "
                    f"{self.chunk_length!r}."
                )
        if self.loss not in LOSSES:
            raise ParameterError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ParameterError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if self.lr != "auto" and not (
            isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)
        ):
            raise ParameterError(f"lr must be a positive number or 'auto', got {self.lr!r}.")
        if not (0.0 <= float(self.validation_fraction) < 0.9):
            raise ParameterError(
                f"validation_fraction must be in [0, 0.9), got {self.validation_fraction!r}."
            )
        if float(self.weight_decay) < 0 or float(self.grad_clip) <= 0:
            raise ParameterError("weight_decay must be >= 0 and grad_clip > 0.")
        self._augmentations()
        self._device()
        autocast_dtype("cpu", self.precision)  # checks the value

    def _augmentations(self, n_sequences: int | None = None) -> tuple[str, ...]:
        aug = self.augmentation
        if aug is None or aug is False:
            return ()
        if aug == "auto":
            if n_sequences is None or n_sequences < SMALL_DATA:
                return ("jitter", "scaling", "time_warp")
            return ()
        if aug is True:
            return ("jitter", "scaling", "cropping", "time_warp")
        kinds = (aug,) if isinstance(aug, str) else tuple(aug)
        unknown = [k for k in kinds if k not in AUGMENTATIONS]
        if unknown:
            raise ParameterError(
                f"Unknown augmentation {unknown}; choose from {AUGMENTATIONS}, 'auto' or None."
            )
        return kinds

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError(
                "device='cuda' was asked for but PyTorch sees no CUDA device. Use "
                "device='cpu' or 'auto', or install a CUDA build of PyTorch."
            )
        if str(self.device) not in ("cpu",) and not str(self.device).startswith("cuda"):
            raise ParameterError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}.")
        return torch.device(self.device)

    def _max_epochs(self, n_train: int) -> int:
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        # batch_size is per process: a distributed step takes world_size batches
        global_batch = int(self.batch_size) * distributed.world_size()
        steps_per_epoch = max(1, math.ceil(n_train / global_batch))
        return int(min(1000, max(100, math.ceil(1000 / steps_per_epoch))))

    def _resolve_chunks(self, lengths: np.ndarray) -> tuple[int, ...]:
        if self.hierarchy in ("flat", "variables"):
            return ()
        if self.chunk_length is None:
            return default_chunk_lengths(lengths)
        if isinstance(self.chunk_length, (int, np.integer)):
            return (int(self.chunk_length),)
        return tuple(int(c) for c in self.chunk_length)

    def _resolve_shape(self, lengths: np.ndarray) -> None:
        """Set ``chunk_lengths_`` and ``n_basis_`` from the training lengths."""
        self.chunk_lengths_ = self._resolve_chunks(lengths)
        self.n_basis_ = default_n_basis(lengths, self.chunk_lengths_)

    def _build_module(self) -> HierarchicalLSTMAutoencoder:
        return HierarchicalLSTMAutoencoder(
            self.n_features_in_,
            latent_dim=self.latent_dim,
            hidden_size=self.hidden_size,
            chunk_lengths=self.chunk_lengths_,
            variables=self.hierarchy in ("variables", "time+variables"),
            variable_size=self.variable_size,
            dropout=self.dropout,
            n_basis=self.n_basis_,
        )

    def _sequences(self, X: Any, lengths: Any = None, **table: Any) -> Sequences:
        fitted = hasattr(self, "module_")
        return as_sequences(
            X,
            lengths=lengths,
            missing=self.missing,
            n_features=self.n_features_in_ if fitted else None,
            feature_names=list(self.feature_names_in_) if fitted else None,
            **table,
        )

    # -- fit ------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        lengths: Any = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        callback: Callable[[dict], None] | None = None,
        **table: Any,
    ) -> HierarchicalAutoencoder:
        """Fit the autoencoder.

        Parameters
        ----------
        X : list of (T_i, F) arrays, (n, T, F) array, pandas long table, or ParquetDataset
            Training sequences; a :class:`hlae.streaming.ParquetDataset` streams Parquet
            files larger than memory.
        y : ignored
        lengths : array-like of int, optional
            Observed lengths for a padded array.
        checkpoint_dir : path, optional
            Write a checkpoint there after every epoch (atomically).
        resume : bool
            Continue from the checkpoint in ``checkpoint_dir`` with the run's own seed, so
            the result equals that of an uninterrupted run. Without a checkpoint there yet,
            training starts from the first epoch (with a warning).
        callback : callable, optional
            Called with each epoch's record (used for progress bars).
        **table
            ``id_column``, ``order_column``, ``feature_columns`` for a long table.

        Returns
        -------
        self
        """
        self._check_params()
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        stream = isinstance(X, ParquetDataset)
        seqs = None if stream else self._sequences(X, lengths, **table)
        device = self._device()
        # under torchrun: join the process group; every rank uses rank 0's seed
        if distributed.setup(device) > 1 and device.type == "cuda":
            device = torch.device("cuda", distributed.local_rank())
        distributed.configure_threads(device)
        state = _read_checkpoint(checkpoint_dir) if resume else None
        seed = distributed.broadcast_int(
            int(self.random_state)
            if self.random_state is not None
            else int(np.random.SeedSequence().entropy % (2**31))
        )
        if state is not None and "seed" in state:
            seed = int(state["seed"])  # the run's own seed: same split, same epochs
        torch.manual_seed(seed)

        if stream:
            # data larger than memory: the scaler is fitted in one streaming pass, batches
            # stream from the files, the validation share is chosen by a hash of the id
            train, validation, seq_lengths = X.prepare(self, seed)
        else:
            train, validation, seq_lengths = self._prepare(seqs, seed)
        n_val = len(validation) if validation else 0
        data_id = _data_summary(seq_lengths, self.scaler_)
        if state is not None:
            _check_same_data(state.get("data"), data_id, checkpoint_dir)

        # build the model
        self._resolve_shape(seq_lengths)
        self.module_ = self._build_module().to(device)
        self.train_lengths_ = (int(seq_lengths.min()), int(seq_lengths.max()))
        n_params = sum(p.numel() for p in self.module_.parameters())
        logger.info(
            "Fitting %s hierarchy, chunks %s, %d parameters on %d sequences (%d validation)",
            self.hierarchy,
            self.chunk_lengths_,
            n_params,
            len(train),
            n_val,
        )

        # train (lr="auto": a short learning-rate range test chooses the rate first)
        self.lr_ = self._auto_lr(train, seed) if self.lr == "auto" else float(self.lr)
        trainer = Trainer(
            self.module_,
            loss=self.loss,
            lr=self.lr_,
            weight_decay=float(self.weight_decay),
            batch_size=int(self.batch_size),
            max_epochs=self._max_epochs(len(train)),
            patience=int(self.patience),
            warmup=float(self.warmup),
            grad_clip=float(self.grad_clip),
            augmentation=self._augmentations(len(train)),
            seed=seed,
            device=device,
            max_time=self.max_time,
            checkpoint_dir=checkpoint_dir,
            callback=callback,
            precision=self.precision,
        )
        trainer.data = json.dumps(data_id)  # written into every checkpoint
        started = time.perf_counter()
        try:
            trainer.fit(train, validation, resume=state)
        except DivergenceError:
            self._finish(trainer, started)
            raise
        self._finish(trainer, started)
        return self

    def _auto_lr(self, train: Any, seed: int) -> float:
        """The rate a learning-rate range test suggests (see hlae.doctor.lr_range_test)."""
        from hlae.doctor import lr_range_test

        if not isinstance(train, list):
            raise ParameterError(
                "lr='auto' runs a range test on data in memory; with streamed data pass a "
                "number (find one with hlae.doctor.lr_range_test on a sample)."
            )
        result = lr_range_test(
            self.module_,
            train,
            loss=self.loss,
            batch_size=int(self.batch_size),
            weight_decay=float(self.weight_decay),
            grad_clip=float(self.grad_clip),
            random_state=seed,
        )
        logger.info("lr='auto': the range test suggests %.3g", result["suggested_lr"])
        return float(result["suggested_lr"])

    def _prepare(self, seqs: Sequences, seed: int):
        """Scale in-memory sequences and split off a validation set for early stopping.

        Returns ``(train, validation or None, lengths)``.
        """
        # scale on observed steps only
        self.n_features_in_ = seqs.n_features
        self.feature_names_in_ = np.asarray(seqs.feature_names, dtype=object)
        self.n_missing_ = int(sum(np.isnan(v).sum() for v in seqs.values))
        if self.n_missing_:
            logger.info(
                "%d missing value(s) (%.2g%% of all) are masked out of the loss",
                self.n_missing_,
                100 * self.n_missing_ / sum(v.size for v in seqs.values),
            )
        self.scaler_ = FeatureScaler(self.scaler).fit(seqs.values)
        scaled = self.scaler_.transform(seqs.values)

        # split off a validation set for early stopping
        n = len(scaled)
        rng = np.random.default_rng(seed)
        n_val = int(round(self.validation_fraction * n)) if n >= 10 else 0
        order = rng.permutation(n)
        val_index, train_index = order[:n_val], order[n_val:]
        train = [scaled[i] for i in train_index]
        validation = [scaled[i] for i in val_index] or None
        return train, validation, seqs.lengths

    def _finish(self, trainer: Trainer, started: float) -> None:
        self.module_.eval()
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best_epoch
        self.stop_reason_ = trainer.stop_reason
        self.fit_seconds_ = time.perf_counter() - started
        if trainer.stop_reason == "max_epochs" and len(self.history_) > 10:
            recent = [r["val_loss"] for r in self.history_[-10:]]
            if math.isfinite(recent[-1]) and recent[-1] < min(recent[:-1]):
                warnings.warn(
                    f"Training reached max_epochs={self.max_epochs} while the validation loss "
                    "was still falling; more epochs may give a better model.",
                    TrainingWarning,
                    stacklevel=3,
                )

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, seqs: Sequences, batch_size: int = 256):
        """Scaled inputs, scaled reconstructions and latents, in input order."""
        check_is_fitted(self, "module_")
        scaled = self.scaler_.transform(seqs.values)
        device = next(self.module_.parameters()).device
        self.module_.eval()
        recon: list[np.ndarray | None] = [None] * len(scaled)
        latent = np.zeros((len(scaled), self.latent_dim), dtype=np.float32)
        for index in length_batches(seqs.lengths, batch_size):
            x, mask, lens = pad_batch(scaled, index, device)
            pred, z = self.module_(x, mask, lens)
            pred, z = pred.cpu().numpy(), z.cpu().numpy()
            for row, i in enumerate(index):
                recon[i] = pred[row, : len(scaled[i])]
            latent[index] = z
        return scaled, recon, latent

    def transform(self, X: Any, *, lengths: Any = None, **table: Any) -> np.ndarray:
        """Embed each sequence: an ``(n, latent_dim)`` array."""
        check_is_fitted(self, "module_")
        return self._run(self._sequences(X, lengths, **table))[2]

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit, then embed the same data (``lengths`` and table columns apply to both)."""
        read = {k: fit_params[k] for k in ("lengths", *_READ_OPTIONS) if k in fit_params}
        return self.fit(X, y, **fit_params).transform(X, **read)

    def reconstruct(self, X: Any, *, lengths: Any = None, **table: Any) -> Any:
        """Reconstruct sequences in the input's units, shaped like the input.

        A list gives a list of ``(T_i, F)`` arrays; an ``(n, T, F)`` array gives an array of
        the same shape (padded steps set to 0, or NaN for NaN-padded input); a long table
        gives a long table with the same id and order columns.
        """
        check_is_fitted(self, "module_")
        seqs = self._sequences(X, lengths, **table)
        recon = self.scaler_.inverse_transform(self._run(seqs)[1])
        return _shape_like(seqs, recon, X)

    def reconstruction_error(self, X: Any, *, lengths: Any = None, **table: Any) -> np.ndarray:
        """Mean squared error per sequence over its observed values, in scaled units."""
        check_is_fitted(self, "module_")
        scaled, recon, _ = self._run(self._sequences(X, lengths, **table))
        errors = np.empty(len(scaled))
        for i, (x, r) in enumerate(zip(scaled, recon)):
            observed = ~np.isnan(x)
            errors[i] = float(np.mean((r[observed] - x[observed]) ** 2))
        return errors

    def step_errors(self, X: Any, *, lengths: Any = None, **table: Any) -> list[np.ndarray]:
        """Squared error per step and feature, ``(T_i, F)`` per sequence, in scaled units."""
        check_is_fitted(self, "module_")
        scaled, recon, _ = self._run(self._sequences(X, lengths, **table))
        return [(r - x) ** 2 for x, r in zip(scaled, recon)]

    def score(self, X: Any, y: Any = None) -> float:
        """Negative mean reconstruction error (higher is better, as scikit-learn expects)."""
        return -float(np.mean(self.reconstruction_error(X)))

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a directory: ``weights.safetensors`` and ``model.json``; no pickle.

        Files are written to temporary names first and renamed, so an interrupted save
        never leaves a damaged model in place of a good one.
        """
        from safetensors.torch import save_file

        check_is_fitted(self, "module_")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "params": _jsonable(self.get_params()),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": [str(f) for f in self.feature_names_in_],
            "chunk_lengths": list(self.chunk_lengths_),
            "n_basis": int(self.n_basis_),
            "n_missing": int(getattr(self, "n_missing_", 0)),
            "scaler": self.scaler_.to_dict(),
            "history": self.history_,
            "best_epoch": int(self.best_epoch_),
            "stop_reason": self.stop_reason_,
            "train_lengths": list(self.train_lengths_),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            save_file(state, os.path.join(tmp, "weights.safetensors"))
            with open(os.path.join(tmp, "model.json"), "w") as fh:
                json.dump(config, fh, indent=2, allow_nan=True)
            os.replace(os.path.join(tmp, "weights.safetensors"), path / "weights.safetensors")
            os.replace(os.path.join(tmp, "model.json"), path / "model.json")
        return path


def _data_summary(lengths: np.ndarray, scaler: FeatureScaler) -> dict:
    """What identifies the training data in a checkpoint: counts and the fitted scaler."""
    state = scaler.to_dict()
    return {
        "sequences": int(len(lengths)),
        "steps": int(np.sum(lengths)),
        "features": len(state["shift"]),
        "shift": state["shift"],
        "scale": state["scale"],
    }


def _check_same_data(saved: str | None, current: dict, checkpoint_dir: Any) -> None:
    """Refuse to resume a run on data other than the data its checkpoint was trained on."""
    if saved is None:  # written before checkpoints recorded their data
        return
    before = json.loads(saved)
    same = all(before[k] == current[k] for k in ("sequences", "steps", "features")) and all(
        np.allclose(before[k], current[k], rtol=1e-5, atol=1e-8) for k in ("shift", "scale")
    )
    if not same:
        raise ModelFileError(
            f"The checkpoint in {str(checkpoint_dir)!r} was written while training on other "
            f"data ({before['sequences']} sequences, {before['steps']} steps, "
            f"{before['features']} features, scaled by other statistics than now: "
            f"{current['sequences']} sequences, {current['steps']} steps, "
            f"{current['features']} features). Resume with the data the run started on, or "
            "start a new run in another directory (or without resume)."
        )


def _read_checkpoint(checkpoint_dir: str | Path | None) -> dict | None:
    """The checkpoint to resume from, or None (with a warning) when there is none yet."""
    if checkpoint_dir is None:
        raise ParameterError("resume=True needs checkpoint_dir, the directory to resume from.")
    try:
        return load_checkpoint(checkpoint_dir)
    except FileNotFoundError:
        warnings.warn(
            f"resume=True but {str(checkpoint_dir)!r} holds no checkpoint yet; training "
            "starts from the first epoch.",
            TrainingWarning,
            stacklevel=3,
        )
        return None


def load(path: str | Path) -> HierarchicalAutoencoder:
    """Load a model saved with :meth:`HierarchicalAutoencoder.save`.

    Raises
    ------
    ModelFileError
        When the directory, its configuration or its weights are missing or damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / "model.json", path / "weights.safetensors"
    for p in (config_path, weights_path):
        if not p.exists():
            raise ModelFileError(
                f"{str(p)!r} does not exist: {str(path)!r} is not a saved hlae model "
                "(a directory written by model.save(path) or `hlae fit --out`)."
            )
    try:
        config = json.loads(config_path.read_text())
        if int(config.get("format_version", 1)) > FORMAT_VERSION:
            raise ModelFileError(
                f"{str(path)!r} was saved by a newer hlae (format "
                f"{config['format_version']}); upgrade hlae to load it."
            )
        params = config["params"]
        if isinstance(params.get("chunk_length"), list):
            params["chunk_length"] = tuple(params["chunk_length"])
        if isinstance(params.get("augmentation"), list):
            params["augmentation"] = tuple(params["augmentation"])
        model = HierarchicalAutoencoder(**params)
        model.n_features_in_ = config["n_features_in"]
        model.feature_names_in_ = np.asarray(config["feature_names_in"], dtype=object)
        model.chunk_lengths_ = tuple(config["chunk_lengths"])
        model.n_basis_ = int(config.get("n_basis", 8))  # 8 before it was chosen from the data
        model.n_missing_ = int(config.get("n_missing", 0))
        model.scaler_ = FeatureScaler.from_dict(config["scaler"])
        model.history_ = config["history"]
        model.best_epoch_ = config["best_epoch"]
        model.stop_reason_ = config["stop_reason"]
        model.train_lengths_ = tuple(config["train_lengths"])
        module = model._build_module()
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(
            f"{str(config_path)!r} is damaged ({type(exc).__name__}: {exc}); re-save the model."
        ) from None
    try:
        state = load_file(str(weights_path))
        module.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ModelFileError(
            f"The weights in {str(weights_path)!r} could not be loaded ({exc}); the file is "
            "damaged or belongs to another model. Re-save or retrain the model."
        ) from None
    model.module_ = module.eval()
    return model


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.floating):
            v = float(v)
        out[k] = v
    return out


# keyword arguments of fit that say how to read X, so fit_transform passes them on
_READ_OPTIONS = ("id_column", "order_column", "feature_columns", "layout")


def _shape_like(seqs: Sequences, recon: list[np.ndarray], X: Any) -> Any:
    feature_axis = 1 if seqs.channels_first else 2  # layout="nct" input is channels first
    if seqs.layout == "array":
        nan_padded = isinstance(X, np.ndarray) and np.isnan(X).all(axis=feature_axis).any()
        pad = np.nan if nan_padded else 0.0
        out = np.full((len(recon), seqs.padded_length, seqs.n_features), pad, dtype=np.float32)
        for i, r in enumerate(recon):
            out[i, : len(r)] = r
        return out.transpose(0, 2, 1) if seqs.channels_first else out
    if seqs.layout == "frame":
        id_col, order_col = seqs.frame_columns["id"], seqs.frame_columns["order"]
        frames = []
        for key, order, r in zip(seqs.ids, seqs.order_values, recon):
            frame = pd.DataFrame(r, columns=seqs.feature_names)
            frame.insert(0, order_col, order)
            frame.insert(0, id_col, key)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
    return [r.T for r in recon] if seqs.channels_first else recon
