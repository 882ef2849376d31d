"""TensorBoard event files for a training run, written from the trainer's per-epoch callback.

Scalars per epoch: ``loss/train``, ``loss/validation``, ``optimiser/learning_rate``,
``optimiser/gradient_norm`` (the mean global norm before clipping) and
``time/epoch_seconds``; a figure ``reconstructions`` of a few training sequences every
``figure_every`` epochs and at the end; the parameters as text. Needs the ``tensorboard``
package (``pip install 'hlae[tensorboard]'``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hlae.data import pad_batch
from hlae.exceptions import ParameterError

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """A training callback that writes TensorBoard event files.

    Pass it as ``callback=`` to :meth:`hlae.HierarchicalAutoencoder.fit`, or use
    ``hlae fit --tensorboard``. It only reads the model; the trained weights and the
    history are the same with and without it.

    Parameters
    ----------
    log_dir : str or Path
        Directory for the event files (``tensorboard --logdir`` points at it).
    model : HierarchicalAutoencoder, optional
        The estimator being fitted; needed for the reconstruction figures.
    sample : list of (T_i, F) arrays, optional
        A few sequences, in input units, to draw reconstructions of (at most four are
        drawn).
    figure_every : int, default=10
        Draw the reconstruction figure every this many epochs (and at :meth:`close`).

    Raises
    ------
    ParameterError
        When the ``tensorboard`` package is not installed.

    Examples
    --------
    >>> logger = TensorBoardLogger("runs/first", model=model, sample=X[:4])  # doctest: +SKIP
    >>> model.fit(X, callback=logger); logger.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        log_dir: str | Path,
        *,
        model: Any = None,
        sample: list[np.ndarray] | None = None,
        figure_every: int = 10,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ParameterError(
                "TensorBoard logging needs the tensorboard package: pip install "
                "'hlae[tensorboard]' (or pip install tensorboard)."
            ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.model = model
        self.sample = [np.asarray(s, dtype=np.float32) for s in (sample or [])][:4]
        self.figure_every = max(1, int(figure_every))
        self.last_epoch = -1
        if model is not None:
            params = {k: repr(v) for k, v in model.get_params().items()}
            self.writer.add_text("parameters", "    " + json.dumps(params, indent=2))

    def __call__(self, record: dict) -> None:
        """Write one epoch's record (the trainer calls this after every epoch)."""
        epoch = int(record["epoch"])
        self.last_epoch = epoch
        self.writer.add_scalar("loss/train", record["train_loss"], epoch)
        if math.isfinite(record.get("val_loss", math.nan)):
            self.writer.add_scalar("loss/validation", record["val_loss"], epoch)
        for key, tag in (
            ("lr", "optimiser/learning_rate"),
            ("grad_norm", "optimiser/gradient_norm"),
            ("seconds", "time/epoch_seconds"),
        ):
            if key in record and math.isfinite(record[key]):
                self.writer.add_scalar(tag, record[key], epoch)
        if epoch % self.figure_every == 0:
            self.add_reconstructions(epoch)
        self.writer.flush()

    def add_reconstructions(self, step: int) -> None:
        """Draw the sample's reconstructions with the model's current weights."""
        if self.model is None or not self.sample or not hasattr(self.model, "module_"):
            return
        from hlae.plotting import _pyplot

        module = self.model.module_
        was_training = module.training
        module.eval()  # no dropout: the forward pass draws no random numbers
        try:
            scaled = self.model.scaler_.transform(self.sample)
            device = next(module.parameters()).device
            with torch.no_grad():
                x, mask, lengths = pad_batch(scaled, np.arange(len(scaled)), device)
                pred, _ = module(x, mask, lengths)
            pred = pred.float().cpu().numpy()
        finally:
            module.train(was_training)
        recon = self.model.scaler_.inverse_transform(
            [pred[i, : len(s)] for i, s in enumerate(self.sample)]
        )
        plt = _pyplot()
        n_feat = min(3, self.sample[0].shape[1])
        fig, axes = plt.subplots(
            len(self.sample), n_feat, figsize=(3 * n_feat, 1.8 * len(self.sample)), squeeze=False
        )
        for i, (x, r) in enumerate(zip(self.sample, recon)):
            for j in range(n_feat):
                axes[i, j].plot(x[:, j], color="black", lw=1, label="original")
                axes[i, j].plot(r[:, j], color="tab:orange", lw=1, label="reconstruction")
                axes[i, j].tick_params(labelsize=6)
        axes[0, 0].legend(fontsize=6)
        fig.tight_layout()
        self.writer.add_figure("reconstructions", fig, step, close=True)

    def close(self) -> None:
        """Draw the final reconstructions (the kept weights) and close the event file."""
        if self.last_epoch >= 0:
            self.add_reconstructions(self.last_epoch + 1)
        self.writer.close()
