"""Losses over observed values, augmentation, and the training loop.

The loop is a list of steps: build length-grouped batches, augment, forward, masked loss,
backward, clip, step, schedule; then validate, keep the best weights, stop early, and write
a checkpoint. A non-finite loss or gradient rolls the epoch back and retries at a lower
learning rate a bounded number of times. SIGINT or SIGTERM stops training after the current
batch: the unfinished epoch is dropped, the checkpoint of the last completed epoch is kept,
and the best weights are restored.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from hlae import distributed
from hlae.data import length_batches, pad_batch
from hlae.exceptions import DivergenceError, ModelFileError, ParameterError, TrainingWarning

logger = logging.getLogger(__name__)

LOSSES = ("mse", "mae", "huber", "cosine")
AUGMENTATIONS = ("jitter", "scaling", "cropping", "time_warp")
CHECKPOINT_NAME = "checkpoint.pt"
# A batch loss this many times the untrained model's first loss counts as diverged.
EXPLODING_LOSS = 1e4
# How a rank names a stop that a signal to another rank of a distributed run asked for.
OTHER_RANK_STOP = "a stop request to another process"


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Mean loss over observed values only; padding and missing values never count."""
    m = mask.to(pred.dtype)
    if kind == "cosine":
        # one minus the cosine similarity between predicted and true step vectors
        p, t = pred * m, target * m
        cos = nn.functional.cosine_similarity(p, t, dim=-1, eps=1e-6)
        step_observed = mask.any(-1).to(pred.dtype)
        return ((1.0 - cos) * step_observed).sum() / step_observed.sum().clamp(min=1.0)
    diff = pred - target
    if kind == "mse":
        per_value = diff.square()
    elif kind == "mae":
        per_value = diff.abs()
    elif kind == "huber":
        per_value = nn.functional.huber_loss(pred, target, reduction="none", delta=1.0)
    else:
        raise ParameterError(f"loss must be one of {LOSSES}, got {kind!r}.")
    return (per_value * m).sum() / m.sum().clamp(min=1.0)


def augment_sequence(
    x: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(input, target)`` for one scaled sequence.

    Scaling, cropping and time warping make a new plausible sequence that is both input
    and target; jitter adds noise to the input only, so the model learns to denoise.
    """
    T = len(x)
    if "cropping" in kinds and T > 4 and rng.random() < 0.5:
        keep = int(rng.integers(max(2, int(0.8 * T)), T + 1))
        start = int(rng.integers(0, T - keep + 1))
        x = x[start : start + keep]
        T = keep
    if "time_warp" in kinds and T > 4 and rng.random() < 0.5:
        # a smooth monotone warp through four random knots
        knots = np.linspace(0, T - 1, 4)
        warped = knots + rng.normal(0, 0.06 * T, size=4) * np.array([0, 1, 1, 0])
        warped = np.maximum.accumulate(np.clip(warped, 0, T - 1))
        src = np.interp(np.arange(T), knots, warped)
        x = np.stack([np.interp(src, np.arange(T), x[:, f]) for f in range(x.shape[1])], 1)
        x = x.astype(np.float32)
    if "scaling" in kinds:
        x = x * rng.normal(1.0, 0.1, size=(1, x.shape[1])).astype(np.float32)
    target = x
    if "jitter" in kinds:
        x = x + rng.normal(0.0, 0.03, size=x.shape).astype(np.float32)
    return x, target


class _StopRequests:
    """Turn SIGINT and SIGTERM during training into a request to stop after the batch.

    The first signal is remembered and the previous handlers are put back at once, so a
    second Ctrl-C (or SIGTERM) acts as it would without hlae. Handlers can only be set from
    the main thread; elsewhere this does nothing.
    """

    def __enter__(self) -> _StopRequests:
        self.received: str | None = None
        self._previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                    pass
        return self

    def _handle(self, signum: int, frame) -> None:
        self.received = signal.Signals(signum).name
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()


def _ema_with_warmup(decay: float):
    """Moving average whose decay grows from 0.1 towards ``decay`` over the first steps,
    so that the average follows the fast early progress instead of lagging behind it."""

    @torch.no_grad()
    def update(averaged: list, current: list, n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        for a, c in zip(averaged, current):
            a.lerp_(c, 1.0 - d)

    return update


def _epoch_generators(seed: int, epoch: int) -> np.random.Generator:
    """Random state of an epoch depends only on (seed, epoch): resuming is exact.

    The NumPy generator (batches, augmentation) is the same on every rank of a distributed
    run, so all ranks cut the same global batches; PyTorch's (dropout) differs by rank.
    """
    torch.manual_seed(seed * 1_000_003 + epoch + 7_919 * distributed.rank())
    return np.random.default_rng([seed, epoch])


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The lower-precision type the forward pass runs in, or None for plain float32.

    ``"auto"`` means float32 on CPU and, on CUDA, bfloat16 where the GPU and cuDNN's LSTM
    support it (checked with a tiny LSTM), float16 with loss scaling otherwise. The fused
    cuDNN LSTM is what ``nn.LSTM`` runs on CUDA, in either type.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    device = torch.device(device)
    if precision == "float32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bfloat16" or (precision == "auto" and _lstm_runs_in_bfloat16(device)):
        return torch.bfloat16
    return torch.float16


def _lstm_runs_in_bfloat16(device: torch.device) -> bool:
    if not torch.cuda.is_bf16_supported():
        return False
    try:  # older cuDNN has no bfloat16 LSTM; PyTorch then raises
        lstm = nn.LSTM(2, 4, batch_first=True, bidirectional=True).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, _ = lstm(torch.zeros(2, 3, 2, device=device))
        out.float().sum().backward()
        return True
    except RuntimeError:
        logger.info("This GPU's LSTM does not run in bfloat16; using float16")
        return False


@runtime_checkable
class BatchSource(Protocol):
    """Batches streamed from somewhere other than memory (see :mod:`hlae.streaming`).

    The trainer accepts such a source wherever it accepts a list of scaled sequences.
    """

    def batches(
        self, rng: np.random.Generator | None, *, rank: int = 0, world_size: int = 1
    ) -> Iterator[list[np.ndarray]]:
        """One epoch of this rank's batches: lists of scaled ``(T_i, F)`` float32 arrays.

        ``rng`` shuffles (training); ``None`` asks for a fixed order (validation). Ranks
        may yield different numbers of batches.
        """
        ...

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """About how many optimisation steps an epoch takes (sizes the schedule)."""
        ...


class Trainer:
    """Train a module that maps ``(x, mask, lengths)`` to ``(reconstruction, latent)``.

    Parameters mirror :class:`hlae.HierarchicalAutoencoder`; see its docstring.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        loss: str = "mse",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 200,
        patience: int = 20,
        warmup: float = 0.05,
        grad_clip: float = 1.0,
        augmentation: tuple[str, ...] = (),
        seed: int = 0,
        device: torch.device | str = "cpu",
        max_time: float | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: Callable[[dict], None] | None = None,
        max_retries: int = 3,
        ema_decay: float | None = 0.99,
        precision: str = "auto",
    ) -> None:
        self.module = module
        self.loss, self.lr, self.weight_decay = loss, lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.warmup, self.grad_clip, self.augmentation = warmup, grad_clip, augmentation
        self.seed, self.device, self.max_time = seed, torch.device(device), max_time
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.data: str | None = None  # what identifies the training data, for checkpoints
        self.callback, self.max_retries = callback, max_retries
        self.ema_decay = ema_decay
        self.precision = precision
        self.amp_dtype: torch.dtype | None = None
        self.grad_scaler: torch.amp.GradScaler | None = None

    # -- set-up ---------------------------------------------------------------------------
    def _build_optimiser(self, steps_per_epoch: int) -> None:
        self.optimiser = torch.optim.AdamW(
            self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        total = max(1, self.max_epochs * steps_per_epoch)
        warm = max(1, int(self.warmup * total))
        self.scheduler = torch.optim.lr_scheduler.SequentialLR(
            self.optimiser,
            [
                torch.optim.lr_scheduler.LinearLR(self.optimiser, 0.1, 1.0, total_iters=warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(
                    self.optimiser, T_max=max(1, total - warm), eta_min=self.lr * 0.05
                ),
            ],
            milestones=[warm],
        )
        # An exponential moving average of the weights is what gets validated and kept:
        # on small data sets it generalises better than the last iterate.
        self.averaged = None
        if self.ema_decay:
            self.averaged = torch.optim.swa_utils.AveragedModel(
                self.module, multi_avg_fn=_ema_with_warmup(self.ema_decay)
            )

    def _state(self) -> dict:
        state = {
            "module": copy.deepcopy(self.module.state_dict()),
            "optimiser": copy.deepcopy(self.optimiser.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
        }
        if self.averaged is not None:
            state["averaged"] = copy.deepcopy(self.averaged.state_dict())
        return state

    def _load_state(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.averaged is not None and "averaged" in state:
            self.averaged.load_state_dict(state["averaged"])

    @property
    def kept_module(self) -> nn.Module:
        """The weights that are validated and kept: the running average when there is one."""
        return self.averaged.module if self.averaged is not None else self.module

    def _autocast(self):
        """Mixed precision for the forward pass (a no-op in float32)."""
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )

    # -- one epoch ------------------------------------------------------------------------
    def _local_batches(self, train, rng: np.random.Generator):
        """This process's share of each batch of an epoch: ``(inputs, targets or None)``.

        A list of sequences is cut into global length-grouped batches of ``batch_size *
        world_size`` sequences, the same on every rank (``rng`` is); each rank takes every
        ``world_size``-th sequence of a global batch, so ranks get similar lengths and run
        the same number of steps. A batch source (see :class:`BatchSource`) yields this
        rank's batches itself.
        """
        W, r = distributed.world_size(), distributed.rank()
        if isinstance(train, list):
            lengths = np.array([len(v) for v in train])
            for index in length_batches(lengths, self.batch_size * W, rng=rng):
                # augment the whole global batch on every rank, so rng stays in step
                inputs, targets = self._augmented([train[i] for i in index], rng)
                yield inputs[r::W], (targets[r::W] if targets is not None else None)
        else:
            for seqs in train.batches(rng, rank=r, world_size=W):
                yield self._augmented(seqs, rng)

    def _augmented(self, seqs: list[np.ndarray], rng: np.random.Generator):
        if not self.augmentation:
            return seqs, None
        pairs = [augment_sequence(v, rng, self.augmentation) for v in seqs]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _batch_tensors(self, inputs: list[np.ndarray], targets: list[np.ndarray] | None):
        """Padded ``x, mask, lengths, target`` and the number of observed values."""
        if not inputs:
            # no share of this batch on this rank: a stand-in of weight zero, so the rank
            # still joins the gradient exchange
            inputs = [np.zeros((2, self.module.n_features), dtype=np.float32)]
            x, mask, lens = pad_batch(inputs, [0], self.device)
            return x, mask, lens, x, 0.0
        pos = np.arange(len(inputs))
        x, mask, lens = pad_batch(inputs, pos, self.device)
        y = x if targets is None else pad_batch(targets, pos, self.device)[0]
        return x, mask, lens, y, float(mask.sum())

    def _train_epoch(self, train, rng: np.random.Generator, stop=None):
        """One pass over ``train``: (loss, mean gradient norm); NaN when not finite, None
        when a stop was requested (the epoch is unfinished)."""
        self.module.train()
        W = distributed.world_size()
        # the ranks of a stream may run out of batches at different steps
        uneven = W > 1 and not isinstance(train, list)
        total, weight, norms = 0.0, 0.0, []
        batches = self._local_batches(train, rng)
        while True:
            item = next(batches, None)
            if uneven:
                if not distributed.any_true(item is not None):
                    break
                item = item if item is not None else ([], None)
            elif item is None:
                break
            x, mask, lens, y, n_obs = self._batch_tensors(*item)
            with self._autocast():
                pred, _ = self.forward_module(x, mask, lens)
            loss = masked_loss(pred.float(), y, mask, self.loss)
            value = loss.item()

            # agree across ranks, before any gradient exchange, on the batch's loss and on
            # a stop request: every rank then takes the same branch and none waits forever
            finite = math.isfinite(value)
            sum_loss, sum_obs, n_bad, n_stop = distributed.all_reduce_sum(
                [value * n_obs if finite else 0.0, n_obs, not finite, bool(stop and stop.received)]
            )
            if n_stop:
                return None, None
            batch_loss = sum_loss / sum_obs if sum_obs > 0 else value
            if self.loss_limit is None and not n_bad and math.isfinite(batch_loss):
                # the untrained model's first loss sets the scale of an exploding loss
                self.loss_limit = EXPLODING_LOSS * max(batch_loss, 1e-2)
            limit = self.loss_limit or math.inf
            if n_bad or not math.isfinite(batch_loss) or batch_loss > limit:
                return math.nan, math.nan

            self.optimiser.zero_grad(set_to_none=True)
            if W > 1:
                # DDP averages gradients over ranks; weighting each rank's mean by its share
                # of the observed values makes that the mean over the whole global batch
                loss = loss * (n_obs * W / sum_obs)
            if self.grad_scaler is None:
                loss.backward()
                norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
                if not torch.isfinite(norm):
                    return math.nan, math.nan
                self.optimiser.step()
            else:
                # float16: the loss is scaled up so small gradients survive; a step whose
                # gradients overflow is skipped and the scale lowered (not a divergence)
                self.grad_scaler.scale(loss).backward()
                self.grad_scaler.unscale_(self.optimiser)
                norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
                self.grad_scaler.step(self.optimiser)
                self.grad_scaler.update()
            self.scheduler.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.module)

            total += sum_loss
            weight += sum_obs
            if torch.isfinite(norm):
                norms.append(norm.item())
        return total / max(weight, 1.0), float(np.mean(norms)) if norms else math.nan

    @torch.no_grad()
    def evaluate(self, values, batch_size: int = 256) -> float:
        """Mean loss of the kept weights over the observed values of ``values``.

        ``values`` is a list of scaled sequences or a batch source. In a distributed run
        each rank evaluates its share of the batches and the result is over all of them.
        """
        module = self.kept_module
        module.eval()
        W, r = distributed.world_size(), distributed.rank()
        if isinstance(values, list):
            lengths = np.array([len(v) for v in values])
            shares = length_batches(lengths, batch_size)[r::W]
            batches = ([values[i] for i in index] for index in shares)
        else:
            batches = values.batches(None, rank=r, world_size=W)
        total, weight = 0.0, 0.0
        for seqs in batches:
            x, mask, lens = pad_batch(seqs, np.arange(len(seqs)), self.device)
            with self._autocast():
                pred, _ = module(x, mask, lens)
            pred = pred.float()
            n_obs = float(mask.sum())
            total += float(masked_loss(pred, x, mask, self.loss)) * n_obs
            weight += n_obs
        total, weight = distributed.all_reduce_sum([total, weight])
        return total / max(weight, 1.0)

    # -- the loop -------------------------------------------------------------------------
    def fit(
        self,
        train: list[np.ndarray] | BatchSource,
        validation: list[np.ndarray] | BatchSource | None = None,
        *,
        resume: dict | None = None,
    ) -> list[dict]:
        """Train; return the history (one record per epoch). Best weights are restored.

        ``train`` and ``validation`` are lists of scaled ``(T_i, F)`` arrays, or batch
        sources that stream them (:class:`BatchSource`). In a distributed run (see
        :mod:`hlae.distributed`) the module is wrapped in DistributedDataParallel,
        ``batch_size`` is per process, and every decision is taken by all ranks together.
        """
        W = distributed.world_size()
        self.forward_module = self.module
        if W > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_module = DistributedDataParallel(self.module, device_ids=ids)
        if isinstance(train, list):
            n_batches = math.ceil(len(train) / (self.batch_size * W))
        else:
            n_batches = train.steps_per_epoch(W)
        self._build_optimiser(n_batches)
        self.amp_dtype = autocast_dtype(self.device, self.precision)
        self.grad_scaler = (
            torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        )
        self.history: list[dict] = []
        self.best_loss, self.best_epoch, self.best_module = math.inf, -1, None
        self.loss_limit: float | None = None
        start_epoch, retries, started = 0, 0, time.perf_counter()
        if resume is not None:
            try:
                self._load_state(resume)
                self.history = resume["history"]
                self.best_loss, self.best_epoch = resume["best_loss"], resume["best_epoch"]
                self.best_module = resume["best_module"]
                self.loss_limit = resume.get("loss_limit")
                start_epoch = resume["epoch"] + 1
            except (KeyError, RuntimeError, ValueError) as exc:
                raise ModelFileError(
                    f"The checkpoint does not fit this model or is damaged ({exc}). Resume "
                    "with the same data and parameters, or start again without resume."
                ) from None
            logger.info("Resuming at epoch %d", start_epoch)
        monitor = "val_loss" if validation else "train_loss"
        self.stop_reason = "max_epochs"
        self.interrupted_by: str | None = None

        epoch = start_epoch
        with _StopRequests() as stop:
            while epoch < self.max_epochs:
                tick = time.perf_counter()
                good_state = self._state()
                rng = _epoch_generators(self.seed, epoch)

                # train one epoch; a stop request (SIGINT/SIGTERM) drops the unfinished epoch
                train_loss, grad_norm = self._train_epoch(train, rng, stop)
                if train_loss is None:
                    self._load_state(good_state)
                    self._interrupted(stop.received or OTHER_RANK_STOP, epoch)
                    break

                # a non-finite loss or gradient rolls the epoch back at a lower rate (with
                # float16's gradient scaler, overflowing steps are skipped, not divergence)
                bad_norm = not math.isfinite(grad_norm) and self.grad_scaler is None
                if not math.isfinite(train_loss) or bad_norm:
                    self._load_state(good_state)
                    retries += 1
                    if retries > self.max_retries:
                        self._restore_best()
                        self.stop_reason = "diverged"
                        kept = (
                            f"The best model so far (epoch {self.best_epoch}) was kept."
                            if self.best_module is not None
                            else "No epoch finished, so there is no model to keep."
                        )
                        raise DivergenceError(
                            f"Training diverged {retries} times at epoch {epoch} (a non-finite "
                            "or exploding loss, or a non-finite gradient) even after lowering "
                            "the learning rate to "
                            f"{self.optimiser.param_groups[0]['lr']:.3g}. {kept} Lower lr, "
                            "keep grad_clip on, and check the data's scale."
                        )
                    self._lower_learning_rate(0.3)
                    warnings.warn(
                        f"Diverged at epoch {epoch} (non-finite or exploding loss or gradient): "
                        "rolled the epoch back "
                        f"and lowered the learning rate to "
                        f"{self.optimiser.param_groups[0]['lr']:.3g} (retry {retries} of "
                        f"{self.max_retries}).",
                        TrainingWarning,
                        stacklevel=2,
                    )
                    continue

                # validate, remember the best weights
                val_loss = self.evaluate(validation) if validation else math.nan
                record = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "grad_norm": grad_norm,
                    "lr": self.optimiser.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - tick,
                }
                self.history.append(record)
                current = record[monitor]
                if current < self.best_loss * (1 - 1e-4):
                    self.best_loss, self.best_epoch = current, epoch
                    self.best_module = copy.deepcopy(self.kept_module.state_dict())
                if self.callback is not None:
                    self.callback(record)
                logger.debug("epoch %d: %s", epoch, record)

                if self.checkpoint_dir is not None:
                    self.save_checkpoint(epoch)
                # arrived while validating or writing: the epoch is complete
                if distributed.any_true(bool(stop.received)):
                    self._interrupted(stop.received or OTHER_RANK_STOP, epoch + 1)
                    break
                if epoch - self.best_epoch >= self.patience:
                    self.stop_reason = "early_stopping"
                    break
                out_of_time = (
                    self.max_time is not None and time.perf_counter() - started > self.max_time
                )
                if distributed.any_true(out_of_time):  # clocks differ: ranks agree
                    self.stop_reason = "max_time"
                    break
                epoch += 1

        self._restore_best()
        return self.history

    def _interrupted(self, signal_name: str, epoch: int) -> None:
        """Stop at a signal: the state is that of the end of epoch ``epoch - 1``."""
        self.stop_reason, self.interrupted_by = "interrupted", signal_name
        if self.checkpoint_dir is not None and self.history:
            self.save_checkpoint(epoch - 1)
        done = (
            f"the last completed epoch is {epoch - 1}"
            if self.history
            else "no epoch had completed"
        )
        warnings.warn(
            f"Training stopped by {signal_name} during epoch {epoch}; {done}. The best "
            f"weights so far (epoch {self.best_epoch}) are kept.",
            TrainingWarning,
            stacklevel=3,
        )

    def _lower_learning_rate(self, factor: float) -> None:
        # SequentialLR has no base_lrs of its own in recent PyTorch; its parts do
        for sched in (self.scheduler, *self.scheduler._schedulers):
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            if hasattr(sched, "eta_min"):
                sched.eta_min *= factor
        for group in self.optimiser.param_groups:
            group["lr"] *= factor

    def _restore_best(self) -> None:
        if self.best_module is not None:
            self.module.load_state_dict(self.best_module)

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint_state(self, epoch: int) -> dict:
        return {
            **self._state(),
            "epoch": epoch,
            "history": self.history,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_module": self.best_module,
            "seed": self.seed,
            "loss_limit": self.loss_limit,
            "data": self.data,
        }

    def save_checkpoint(self, epoch: int) -> Path:
        """Write the checkpoint atomically: a temporary file, then a rename.

        In a distributed run only rank 0 writes; every rank holds the same state.
        """
        path = self.checkpoint_dir / CHECKPOINT_NAME
        if not distributed.is_main():
            return path
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            torch.save(self.checkpoint_state(epoch), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path


def load_checkpoint(directory: str | Path) -> dict:
    """Read a checkpoint written by :meth:`Trainer.save_checkpoint` (no pickle).

    Raises
    ------
    FileNotFoundError
        When ``directory`` holds no checkpoint.
    ModelFileError
        When the checkpoint cannot be read.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds of error for a damaged file
        raise ModelFileError(
            f"The checkpoint {str(path)!r} could not be read ({exc}). Delete it to start "
            "again, or restore it from a copy."
        ) from None
