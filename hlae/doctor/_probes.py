"""Short probe runs on copies of a model: learning-rate range test, one-batch overfitting,
gradient norms per level, and the checks that padding stays out of the output and the loss.

A probe never touches the caller's module: each works on a deep copy.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from hlae.data import length_batches, pad_batch
from hlae.training import masked_loss

__all__ = [
    "Subject",
    "ModuleFailure",
    "lr_range_test",
    "range_test_on",
    "overfit_batch",
    "gradient_probe",
    "make_batches",
    "train_module",
    "reconstruct_values",
    "device_of",
]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, mask, lengths


class ModuleFailure(RuntimeError):
    """The user's module (or loss) raised or returned something unusable."""

    def __init__(self, what: str, exc: BaseException | None, shape: tuple[int, ...]) -> None:
        self.what, self.exc, self.shape = what, exc, shape
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        super().__init__(f"{what} (batch shape {shape}) {detail}".strip())


def _n_positional(fn: Callable) -> int:
    """How many positional arguments ``fn`` takes (a large number for ``*args``)."""
    if isinstance(fn, nn.Module):
        fn = fn.forward  # an nn.MSELoss() instance: its __call__ takes *args
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    count = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
            count += 1
    return count


class Subject:
    """How the doctor runs a module and scores its output.

    Parameters
    ----------
    module : torch.nn.Module
        An :class:`hlae.model.HierarchicalLSTMAutoencoder`, called as
        ``module(x, mask, lengths) -> (reconstruction, latent)``, or any module called as
        ``module(x, lengths)`` (or ``module(x)``) returning a reconstruction of ``x``'s
        shape (or a tuple whose first item is one).
    loss : str
        hlae's loss kind (for hlae modules and as the default for user modules).
    loss_fn : callable, optional
        The user's training loss, ``loss_fn(reconstruction, x)`` or
        ``loss_fn(reconstruction, x, lengths)``; by default the mean squared error over
        observed values.
    pad_value : float
        Value written into padded steps of the batches given to a user module.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        loss: str = "mse",
        loss_fn: Callable | None = None,
        pad_value: float = 0.0,
    ) -> None:
        from hlae.model import HierarchicalLSTMAutoencoder

        self.is_hlae = isinstance(module, HierarchicalLSTMAutoencoder)
        self.kind, self.loss_fn, self.pad_value = loss, loss_fn, float(pad_value)
        self.takes_lengths = self.is_hlae or _n_positional(module) >= 2
        self.loss_takes_lengths = loss_fn is not None and _n_positional(loss_fn) >= 3

    # -- running the module -----------------------------------------------------------
    def inputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The tensor a user module is given: padded steps set to ``pad_value``."""
        if self.is_hlae or self.pad_value == 0.0:
            return x
        steps = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return torch.where(steps[..., None], x, torch.full_like(x, self.pad_value))

    def forward(self, module: nn.Module, x: torch.Tensor, mask: torch.Tensor, lengths):
        if self.is_hlae:
            return module(x, mask, lengths)[0]
        x_in = self.inputs(x, lengths)
        try:
            out = module(x_in, lengths) if self.takes_lengths else module(x_in)
        except Exception as exc:  # the user's code can raise anything
            raise ModuleFailure("The module raised when called", exc, tuple(x.shape)) from exc
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModuleFailure(
                f"The module returned {got}, not a reconstruction of the input's shape",
                None,
                tuple(x.shape),
            )
        return out

    def loss(self, recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, lengths):
        """The training loss: the user's loss function, or the masked loss."""
        if self.loss_fn is None:
            return masked_loss(recon, x, mask, self.kind)
        target = self.inputs(x, lengths)
        try:
            value = (
                self.loss_fn(recon, target, lengths)
                if self.loss_takes_lengths
                else self.loss_fn(recon, target)
            )
        except Exception as exc:
            raise ModuleFailure("The loss function raised", exc, tuple(x.shape)) from exc
        if not isinstance(value, torch.Tensor):
            raise ModuleFailure(
                f"The loss function returned {type(value).__name__}, not a tensor",
                None,
                tuple(x.shape),
            )
        return value.mean() if value.dim() else value

    @staticmethod
    def observed_error(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean squared error over observed values (the doctor's own yardstick)."""
        return float(masked_loss(recon, x, mask, "mse"))

    def levels(self, module: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped by level: hlae's levels, or a user module's children."""
        if hasattr(module, "level_parameters"):
            groups = module.level_parameters()
        else:
            groups = {}
            for name, child in module.named_children():
                params = [p for p in child.parameters() if p.requires_grad]
                if params:
                    groups[name] = params
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                groups["(own parameters)"] = own
        return {k: v for k, v in groups.items() if v}


# -- batches ------------------------------------------------------------------------------
def make_batches(
    values: list[np.ndarray],
    batch_size: int,
    *,
    by_length: bool = True,
    seed: int = 0,
    limit: int | None = None,
    device: torch.device | str = "cpu",
) -> list[Batch]:
    """Padded batches: grouped by length (as hlae trains) or drawn at random."""
    rng = np.random.default_rng(seed)
    lengths = np.array([len(v) for v in values])
    if by_length:
        index = length_batches(lengths, batch_size, rng=rng)
    else:
        order = rng.permutation(len(values))
        index = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if limit is not None:
        index = index[:limit]
    return [pad_batch(values, i, device) for i in index]


def _optimiser(
    params, lr: float, weight_decay: float, optimizer: str | Callable
) -> torch.optim.Optimizer:
    if callable(optimizer):
        opt = optimizer(params, lr)
        for group in opt.param_groups:
            group["lr"] = lr
        return opt
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _level_norms(groups: dict[str, list[nn.Parameter]]) -> dict[str, float]:
    """Root-mean-square gradient per parameter of each level (0 when it got none)."""
    out = {}
    for name, params in groups.items():
        sq, count = 0.0, 0
        for p in params:
            count += p.numel()
            if p.grad is not None:
                sq += float(p.grad.detach().double().square().sum())
        out[name] = math.sqrt(sq / max(count, 1))
    return out


def _step(
    subject: Subject,
    module: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    grad_clip: float | None,
    groups: dict | None = None,
) -> tuple[float, float, dict[str, float] | None]:
    """One optimisation step; returns the loss, the pre-clip gradient norm, level norms."""
    x, mask, lengths = batch
    recon = subject.forward(module, x, mask, lengths)
    loss = subject.loss(recon, x, mask, lengths)
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return math.nan, math.nan, None
    try:
        loss.backward()
    except Exception as exc:
        if subject.is_hlae:
            raise
        raise ModuleFailure(
            "Back-propagation through the module failed", exc, tuple(x.shape)
        ) from exc
    levels = _level_norms(groups) if groups is not None else None
    params = [p for p in module.parameters() if p.requires_grad]
    norm = float(nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf))
    if math.isfinite(norm):
        opt.step()
    return float(loss.detach()), norm, levels


def device_of(module: nn.Module) -> torch.device:
    """Where the module's parameters live (CPU for a module without parameters)."""
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _fresh(module: nn.Module, dropout: bool = True) -> nn.Module:
    copy_ = copy.deepcopy(module)
    if not dropout:
        for m in copy_.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    return copy_.train()


# -- learning-rate range test -------------------------------------------------------------
def range_test_on(
    subject: Subject,
    module: nn.Module,
    batches: list[Batch],
    *,
    start_lr: float = 1e-5,
    end_lr: float = 3.0,
    n_steps: int = 60,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    optimizer: str | Callable = "adamw",
    seed: int = 0,
    time_cap: float | None = None,
) -> dict[str, Any]:
    """Raise the learning rate exponentially, one step per batch, and watch the loss.

    Returns the rates and losses tried (raw and smoothed) and three rates read from the
    curve: ``min_loss_lr`` (lowest smoothed loss), ``blowup_lr`` (first rate past the
    minimum where the smoothed loss climbs back above its starting value, or None) and
    ``suggested_lr`` (a tenth of ``min_loss_lr``, a rate that still descends steadily).
    With ``time_cap`` (seconds), the sweep takes fewer, larger steps when steps are slow,
    so that it still spans the whole range in time (never fewer than 16 steps).
    """
    torch.manual_seed(seed)
    model = _fresh(module)
    opt = _optimiser(
        [p for p in model.parameters() if p.requires_grad], start_lr, weight_decay, optimizer
    )
    lrs, losses, smoothed, norms = [], [], [], []
    avg, beta = 0.0, 0.8
    started, lr, step = time.perf_counter(), start_lr, 0
    while step < n_steps:
        if step > 0:
            # the rate grows so that it reaches end_lr at the last step planned
            if time_cap is not None and step == 3:
                per_step = (time.perf_counter() - started) / 3
                n_steps = int(np.clip(time_cap / per_step, 16, n_steps))
            lr = lr * (end_lr / lr) ** (1.0 / max(n_steps - step, 1))
        step += 1
        for group in opt.param_groups:
            group["lr"] = lr
        loss, norm, _ = _step(subject, model, opt, batches[(step - 1) % len(batches)], grad_clip)
        lrs.append(lr)
        losses.append(loss)
        norms.append(norm)
        if not math.isfinite(loss):
            smoothed.append(math.inf)
            break
        avg = beta * avg + (1 - beta) * loss
        smoothed.append(avg / (1 - beta**step))
        if step > 5 and smoothed[-1] > 4 * min(smoothed) and smoothed[-1] > smoothed[0]:
            break
    return _read_range_test(lrs, losses, smoothed, norms)


def _read_range_test(lrs, losses, smoothed, norms) -> dict[str, Any]:
    s = np.asarray(smoothed, dtype=float)
    finite = np.isfinite(s)
    if not finite.any():
        i_min = 0
    else:
        i_min = int(np.nanargmin(np.where(finite, s, np.nan)))
    # the starting level: the mean loss of the first few steps (batches differ in difficulty)
    raw = np.asarray(losses, dtype=float)
    k = max(3, len(raw) // 8)
    start = float(np.mean(raw[:k])) if np.isfinite(raw[:k]).all() else math.inf
    blowup = None
    for i in range(i_min + 1, len(s)):
        if not finite[i] or s[i] > max(start, 1.5 * s[i_min]):
            blowup = lrs[i]
            break
    if blowup is None and len(s) and not finite[-1]:
        blowup = lrs[-1]
    min_lr = float(lrs[i_min]) if lrs else math.nan
    # the steepest descent of the smoothed loss over log(lr), before the minimum
    steepest = min_lr
    if i_min >= 3:
        slope = np.gradient(np.log(np.maximum(s[: i_min + 1], 1e-12)), np.log(lrs[: i_min + 1]))
        steepest = float(lrs[int(np.argmin(slope))])
    improved = bool(finite.any() and s[i_min] < 0.9 * start)
    return {
        "lr": [float(v) for v in lrs],
        "loss": [float(v) for v in losses],
        "smoothed": [float(v) for v in s],
        "grad_norm": [float(v) for v in norms],
        "min_loss_lr": min_lr,
        "steepest_lr": steepest,
        "blowup_lr": None if blowup is None else float(blowup),
        "suggested_lr": min_lr / 10.0,
        "improved": improved,
        "start_loss": float(start),
        "min_loss": float(s[i_min]) if len(s) else math.nan,
    }


def lr_range_test(
    module: nn.Module,
    sequences: list[np.ndarray],
    *,
    loss: str = "mse",
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    grad_clip: float | None = 1.0,
    n_steps: int = 60,
    start_lr: float = 1e-5,
    end_lr: float = 3.0,
    max_batches: int = 8,
    random_state: int = 0,
    loss_fn: Callable | None = None,
) -> dict[str, Any]:
    """Learning-rate range test of ``module`` on (scaled) ``sequences``.

    The module is copied; the original is left untouched. The learning rate grows
    exponentially from ``start_lr`` to ``end_lr`` over ``n_steps`` AdamW steps on up to
    ``max_batches`` length-grouped batches, and the smoothed loss is recorded.

    Parameters
    ----------
    module : torch.nn.Module
        An hlae module, or a module called as ``module(x, lengths)`` (see
        :func:`hlae.diagnose_model`).
    sequences : list of ndarray
        Training sequences ``(T_i, F)``, already scaled.
    loss : str
        hlae's loss kind.
    batch_size, weight_decay, grad_clip : optional
        As in training.
    n_steps, start_lr, end_lr : optional
        The sweep.
    max_batches : int
        Batches cycled through during the sweep.
    random_state : int
        Seed of batching and of the module's randomness (dropout).
    loss_fn : callable, optional
        A user loss (see :class:`Subject`).

    Returns
    -------
    dict
        ``lr``, ``loss``, ``smoothed``, ``grad_norm`` (one per step) and the rates read
        from the curve: ``suggested_lr``, ``min_loss_lr``, ``steepest_lr``, ``blowup_lr``.
    """
    subject = Subject(module, loss=loss, loss_fn=loss_fn)
    device = device_of(module)
    batches = make_batches(
        sequences, batch_size, seed=random_state, limit=max_batches, device=device
    )
    return range_test_on(
        subject,
        module,
        batches,
        start_lr=start_lr,
        end_lr=end_lr,
        n_steps=n_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        seed=random_state,
    )


# -- one batch, overfitted ----------------------------------------------------------------
def overfit_batch(
    subject: Subject,
    module: nn.Module,
    batch: Batch,
    *,
    lr: float,
    n_steps: int,
    grad_clip: float | None = 1.0,
    optimizer: str | Callable = "adam",
    seed: int = 0,
    target: float = 0.0,
    time_cap: float | None = None,
) -> dict[str, Any]:
    """Train a copy on one small batch only (dropout off); a sound model memorises it.

    Stops early once the observed-value error falls to ``target`` (checked every 10 steps),
    or when ``time_cap`` seconds have passed (then ``cut`` is True).
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = _fresh(module, dropout=False)
    opt = _optimiser([p for p in model.parameters() if p.requires_grad], lr, 0.0, optimizer)
    x, mask, lengths = batch

    def error() -> float:
        with torch.no_grad():
            model.eval()
            value = subject.observed_error(subject.forward(model, x, mask, lengths), x, mask)
            model.train()
        return value

    first = last = error()
    losses, cut = [], False
    for step in range(n_steps):
        loss, _, _ = _step(subject, model, opt, batch, grad_clip)
        losses.append(loss)
        if not math.isfinite(loss):
            break
        if (step + 1) % 10 == 0:
            last = error()
            if last <= target:
                break
            if time_cap is not None and time.perf_counter() - started > time_cap:
                cut = True
                break
    last = error()
    return {
        "lr": lr,
        "steps": len(losses),
        "loss": losses,
        "initial_error": first,
        "final_error": last,
        "batch_shape": list(x.shape),
        "cut": cut and last > target,
    }


# -- gradient norms per level -------------------------------------------------------------
def gradient_probe(
    subject: Subject,
    module: nn.Module,
    batches: list[Batch],
    *,
    lr: float,
    n_steps: int,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    optimizer: str | Callable = "adamw",
    seed: int = 0,
    time_cap: float | None = None,
) -> dict[str, Any]:
    """Train a copy at the configured rate for a few steps, recording gradient norms
    (at least 8 steps, fewer than ``n_steps`` when ``time_cap`` seconds run out)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = _fresh(module)
    groups = subject.levels(model)
    opt = _optimiser(
        [p for p in model.parameters() if p.requires_grad], lr, weight_decay, optimizer
    )
    total, losses = [], []
    levels: dict[str, list[float]] = {name: [] for name in groups}
    for step in range(n_steps):
        loss, norm, per_level = _step(
            subject, model, opt, batches[step % len(batches)], grad_clip, groups
        )
        losses.append(loss)
        total.append(norm)
        if per_level is None:
            break
        for name, value in per_level.items():
            levels[name].append(value)
        if not math.isfinite(norm):
            break
        if time_cap is not None and step >= 7 and time.perf_counter() - started > time_cap:
            break
    sizes = {name: int(sum(p.numel() for p in params)) for name, params in groups.items()}
    return {"lr": lr, "loss": losses, "total": total, "levels": levels, "level_sizes": sizes}


# -- training a user's module -------------------------------------------------------------
def train_module(
    subject: Subject,
    module: nn.Module,
    train: list[np.ndarray],
    validation: list[np.ndarray] | None,
    *,
    lr: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    max_time: float,
    grad_clip: float | None,
    weight_decay: float,
    optimizer: str | Callable,
    seed: int = 0,
    callback: Callable[[dict], None] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Train a copy of a user's module as a plain loop would: random batches, early stopping
    on the observed-value error of ``validation``. Returns the best copy and the history."""
    torch.manual_seed(seed)
    model = _fresh(module)
    opt = _optimiser(
        [p for p in model.parameters() if p.requires_grad], lr, weight_decay, optimizer
    )
    history: list[dict] = []
    best, best_state, best_epoch = math.inf, copy.deepcopy(model.state_dict()), -1
    started = time.perf_counter()
    for epoch in range(max_epochs):
        tick = time.perf_counter()
        model.train()
        total, count, norms = 0.0, 0, []
        batches = make_batches(
            train, batch_size, by_length=False, seed=seed + epoch, device=device_of(model)
        )
        for batch in batches:
            loss, norm, _ = _step(subject, model, opt, batch, grad_clip)
            if not math.isfinite(loss):
                total = math.nan
                break
            total += loss * len(batch[2])
            count += len(batch[2])
            norms.append(norm)
        train_loss = total / max(count, 1)
        val = _observed_error(subject, model, validation) if validation else math.nan
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val,
            "grad_norm": float(np.mean(norms)) if norms else math.nan,
            "lr": lr,
            "seconds": time.perf_counter() - tick,
        }
        history.append(record)
        if callback is not None:
            callback(record)
        if not math.isfinite(train_loss):
            break
        monitor = val if validation else train_loss
        if monitor < best * (1 - 1e-4):
            best, best_epoch = monitor, epoch
            best_state = copy.deepcopy(model.state_dict())
        if epoch - best_epoch >= patience or time.perf_counter() - started > max_time:
            break
    model.load_state_dict(best_state)
    return model.eval(), history


@torch.no_grad()
def _observed_error(subject: Subject, module: nn.Module, values: list[np.ndarray]) -> float:
    module.eval()
    total, weight = 0.0, 0.0
    for x, mask, lengths in make_batches(values, 128, device=device_of(module)):
        recon = subject.forward(module, x, mask, lengths)
        n = float(mask.sum())
        total += subject.observed_error(recon, x, mask) * n
        weight += n
    module.train()
    return total / max(weight, 1.0)


@torch.no_grad()
def reconstruct_values(
    subject: Subject, module: nn.Module, values: list[np.ndarray], batch_size: int = 128
) -> list[np.ndarray]:
    """Reconstructions of ``values`` (same units), cut to each sequence's length."""
    module.eval()
    out: list[np.ndarray | None] = [None] * len(values)
    lengths = np.array([len(v) for v in values])
    for index in length_batches(lengths, batch_size):
        x, mask, lens = pad_batch(values, index, device_of(module))
        recon = subject.forward(module, x, mask, lens).cpu().numpy()
        for row, i in enumerate(index):
            out[i] = recon[row, : lengths[i]]
    return out
