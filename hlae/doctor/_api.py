"""The doctor's entry points: :func:`diagnose` for hlae's own model, :func:`diagnose_model`
for a user's PyTorch module."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from hlae.data import FeatureScaler
from hlae.doctor._data import DataView, data_checks, read_leniently, strip_padding
from hlae.doctor._dynamics import (
    distrust_lr,
    failure_finding,
    gradient_findings,
    input_dependence_finding,
    lr_findings,
    overfit_findings,
    padding_findings,
)
from hlae.doctor._outcome import dead_latent_findings, inconclusive, outcome_findings
from hlae.doctor._plots import write_pictures
from hlae.doctor._probes import (
    ModuleFailure,
    Subject,
    device_of,
    gradient_probe,
    make_batches,
    overfit_batch,
    range_test_on,
    reconstruct_values,
    train_module,
)
from hlae.doctor._report import Finding, Report
from hlae.exceptions import DivergenceError, HlaeWarning, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["diagnose", "diagnose_model"]

Progress = Callable[[str, dict | None], None]


@dataclass(frozen=True)
class _Plan:
    """How much probing a diagnosis does.

    The probes take a fixed number of steps; each also has a time cap (a share of the
    mode's standard budget, not of ``time_budget``) that only slow machines reach. Training
    gets what is left of ``budget``, and at least one epoch.
    """

    budget: float  # seconds for the whole diagnosis
    range_steps: int
    gradient_steps: int
    overfit_steps: int
    reserve: float  # seconds kept for evaluation after training
    probe_time: float  # the mode's standard budget, which the probes' time caps share

    @classmethod
    def make(cls, quick: bool, time_budget: float | None) -> _Plan:
        if quick:
            plan = cls(16.0, 36, 16, 150, 1.5, 16.0)
        else:
            plan = cls(80.0, 80, 40, 300, 3.0, 80.0)
        if time_budget is not None:
            if not (time_budget > 0 and math.isfinite(time_budget)):
                raise ParameterError(f"time_budget must be positive, got {time_budget!r}.")
            plan = replace(
                plan, budget=float(time_budget), reserve=min(plan.reserve, 0.1 * time_budget)
            )
        return plan

    @property
    def range_cap(self) -> float:
        return 0.3 * self.probe_time

    @property
    def gradient_cap(self) -> float:
        return 0.1 * self.probe_time

    @property
    def overfit_cap(self) -> float:
        return 0.2 * self.probe_time


def _notify(progress: Progress | None, stage: str, record: dict | None = None) -> None:
    if progress is not None:
        progress(stage, record)


@contextlib.contextmanager
def _quiet_numerics():
    """One BLAS thread (the matrices are small: threads only cost), and no warnings from
    degenerate cases (constant data), which the findings already describe."""
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training part and the held-out part (none below 20 sequences)."""
    order = np.random.default_rng(seed + 7919).permutation(n)
    n_test = int(round(0.2 * n)) if n >= 20 else 0
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _batch_variance(batch) -> float:
    """Error of predicting each feature's batch mean, over observed values."""
    x, mask, _ = batch
    m = mask.double()
    mean = (x.double() * m).sum((0, 1)) / m.sum((0, 1)).clamp(min=1)
    return float((((x.double() - mean) ** 2) * m).sum() / m.sum().clamp(min=1))


def _finish(report: Report, findings: list[Finding], out, started: float) -> Report:
    report.findings = findings
    report.rank()
    if out is not None:
        report.pictures = write_pictures(report, out)
    report.seconds = time.perf_counter() - started
    return report


def _table(id_column, order_column, feature_columns) -> dict[str, Any]:
    table = {"id_column": id_column, "order_column": order_column}
    table["feature_columns"] = feature_columns
    return {k: v for k, v in table.items() if v is not None}


# -- hlae's own model ---------------------------------------------------------------------
def diagnose(
    X: Any,
    *,
    lengths: Any = None,
    quick: bool = False,
    out: str | Path | None = None,
    time_budget: float | None = None,
    progress: Progress | None = None,
    id_column: str | None = None,
    order_column: str | None = None,
    feature_columns: list[str] | None = None,
    **autoencoder_params: Any,
) -> Report:
    """Diagnose a :class:`~hlae.HierarchicalAutoencoder` set-up on data ``X``.

    Runs data checks, short probe runs on fresh copies of the model (a learning-rate
    range test, gradient norms per level at the configured rate, overfitting one batch,
    padding checks), then trains the model on 80% of the sequences within the time budget
    and checks the outcome on the other 20% against PCA and the mean.

    Parameters
    ----------
    X : list of (T_i, F) arrays, (n, T, F) array, or pandas long table
        The data, as you would pass it to ``fit``. Non-finite values, constant features or
        very few sequences are reported as findings, not raised.
    lengths : array-like of int, optional
        Observed lengths for a padded array.
    quick : bool, default=False
        A shorter diagnosis (about 16 s on JapaneseVowels instead of 80 s): fewer probe
        steps and a shorter training run, whose outcome may be inconclusive.
    out : path, optional
        Directory for the pictures (PNG): loss curve with the findings, range test,
        gradient norms per level.
    time_budget : float, optional
        Seconds for the whole diagnosis (default 80, or 16 with ``quick``). The probes
        take a fixed number of steps (fewer only on a very slow machine) and training gets
        what is left, at least one epoch; a run cut short by the budget makes the outcome
        findings inconclusive (severity ``info``).
    progress : callable, optional
        Called as ``progress(stage, record)``: ``record`` is None when a stage starts, and
        each epoch's record during training.
    id_column, order_column, feature_columns : optional
        Columns of a long table.
    **autoencoder_params
        Parameters of :class:`~hlae.HierarchicalAutoencoder` (the set-up to diagnose).

    Returns
    -------
    Report
        Findings ranked with the most likely cause first, the measurements behind them,
        the trained model (``report.model``) and, with ``out``, the pictures.

    Examples
    --------
    >>> import hlae
    >>> from hlae.datasets import make_oscillators
    >>> X = make_oscillators(40, n_features=2, min_length=20, max_length=30, random_state=0)
    >>> report = hlae.diagnose(X, hidden_size=16, latent_dim=4, time_budget=5)
    >>> [f.code for f in report.findings if f.severity != "info"]  # doctest: +SKIP
    []
    """
    from hlae.estimator import HierarchicalAutoencoder

    started = time.perf_counter()
    plan = _Plan.make(quick, time_budget)
    try:
        est = HierarchicalAutoencoder(**autoencoder_params)
    except TypeError as exc:
        raise ParameterError(f"Unknown parameter for HierarchicalAutoencoder: {exc}") from None
    est._check_params()
    seed = int(est.random_state) if est.random_state is not None else 0
    report = Report()
    m = report.measurements

    # data
    _notify(progress, "data checks")
    data = read_leniently(X, lengths, **_table(id_column, order_column, feature_columns))
    m.update(_describe(data))
    module, shaper = None, clone(est)
    torch.manual_seed(seed)
    if data.values:
        shaper.n_features_in_ = data.values[0].shape[1]
        shaper._resolve_shape(data.lengths)
        module = shaper._build_module().to(est._device())
    n_params = sum(p.numel() for p in module.parameters()) if module is not None else None
    findings = data_checks(
        data,
        scaler=est.scaler,
        missing=est.missing,
        n_parameters=n_params,
        batch_size=est.batch_size,
    )
    if len(data.values) < 2:
        report.skipped.append("probes and training: fewer than two usable sequences")
        return _finish(report, findings, out, started)
    m["parameters"] = n_params
    m["chunk_lengths"] = list(shaper.chunk_lengths_)

    # scale as fit would, split off a held-out part
    scaler = FeatureScaler(est.scaler).fit(data.values)
    scaled = scaler.transform(data.values)
    train_idx, test_idx = _split(len(scaled), seed)
    train_scaled = [scaled[i] for i in train_idx]
    subject = Subject(module, loss=est.loss)
    device = device_of(module)
    batches = make_batches(train_scaled, est.batch_size, seed=seed, limit=8, device=device)

    # dynamics: padding, learning rate, gradients, one batch
    _notify(progress, "padding checks")
    findings += padding_findings(subject, module, train_scaled, data.lengths[train_idx], m)
    _notify(progress, "learning-rate range test")
    report.range_test = range_test_on(
        subject,
        module,
        batches,
        n_steps=plan.range_steps,
        weight_decay=float(est.weight_decay),
        grad_clip=float(est.grad_clip),
        seed=seed,
        time_cap=plan.range_cap,
    )
    suggested = report.range_test["suggested_lr"]
    lr = suggested if est.lr == "auto" else float(est.lr)
    m.update(configured_lr=lr, suggested_lr=suggested)
    _notify(progress, "gradient probe")
    report.gradient_probe = gradient_probe(
        subject,
        module,
        batches,
        lr=lr,
        n_steps=plan.gradient_steps,
        weight_decay=float(est.weight_decay),
        grad_clip=float(est.grad_clip),
        seed=seed,
        time_cap=plan.gradient_cap,
    )
    if est.lr != "auto":
        findings += lr_findings(report.range_test, lr, report.gradient_probe)
    findings = distrust_lr(findings + gradient_findings(report.gradient_probe, lr))
    _notify(progress, "overfitting one batch")
    small = make_batches(train_scaled, 4, by_length=False, seed=seed, limit=1, device=device)[0]
    report.overfit_probe = overfit_batch(
        subject,
        module,
        small,
        lr=float(np.clip(suggested, 1e-3, 1e-2)),
        n_steps=plan.overfit_steps,
        grad_clip=float(est.grad_clip),
        seed=seed,
        target=0.5 * _batch_variance(small),
        time_cap=plan.overfit_cap,
    )
    findings += overfit_findings(report.overfit_probe, _batch_variance(small))

    # outcome: train within what is left of the budget, judge on the held-out part
    _notify(progress, "training")
    left = plan.budget - (time.perf_counter() - started) - plan.reserve
    max_time = max(1.0, left)
    budget_cut = est.max_time is None or est.max_time > max_time
    fitted = clone(est).set_params(
        lr=lr,
        max_time=max_time if budget_cut else est.max_time,
        missing="mask" if data.has_nan else est.missing,
    )
    train_values = [data.values[i] for i in train_idx]
    test_values = [data.values[i] for i in test_idx] or None
    try:
        with warnings.catch_warnings():
            # the doctor reports what these warnings say, as findings
            warnings.simplefilter("ignore", HlaeWarning)
            fitted.fit(train_values, callback=lambda r: _notify(progress, "training", r))
    except DivergenceError as exc:
        findings.append(
            Finding(
                "training-diverged",
                "error",
                f"Training diverged: {exc}",
                {"lr": lr, "epochs": len(getattr(fitted, "history_", []))},
                "Lower lr (see the range test) and check the data's scale.",
            )
        )
    if not getattr(fitted, "history_", None):
        report.skipped.append("outcome checks: training produced no epoch")
        return _finish(report, findings, out, started)
    report.model, report.history = fitted, fitted.history_
    m.update(
        best_epoch=fitted.best_epoch_,
        loss_units_standardised=est.scaler == "standard" and est.loss == "mse",
    )
    _notify(progress, "outcome checks")
    with _quiet_numerics():
        findings += _hlae_outcome(fitted, train_values, test_values, budget_cut, m)
    if not test_values:
        report.skipped.append("held-out checks: fewer than 20 sequences, judged on training data")
    return _finish(report, findings, out, started)


def _hlae_outcome(fitted, train_values, test_values, budget_cut, m) -> list[Finding]:
    findings = outcome_findings(
        train=train_values,
        test=test_values,
        recon_train=fitted.reconstruct(train_values),
        recon_test=fitted.reconstruct(test_values) if test_values else None,
        latent_dim=int(fitted.latent_dim),
        history=fitted.history_,
        stop_reason=fitted.stop_reason_,
        measurements=m,
    )
    judged = fitted.scaler_.transform(test_values or train_values)
    findings += dead_latent_findings(fitted.module_, judged, int(fitted.latent_dim), m)
    if budget_cut and fitted.stop_reason_ == "max_time":
        findings = inconclusive(findings, len(fitted.history_))
    return findings


def _describe(data: DataView) -> dict[str, Any]:
    lengths = data.lengths
    out: dict[str, Any] = {
        "sequences_given": data.n_given,
        "sequences_used": len(data.values),
        "features": len(data.feature_names),
    }
    if len(lengths):
        out.update(
            min_length=int(lengths.min()),
            median_length=float(np.median(lengths)),
            max_length=int(lengths.max()),
        )
    return out


# -- a user's module ----------------------------------------------------------------------
def diagnose_model(
    module: torch.nn.Module,
    X: Any,
    *,
    lengths: Any = None,
    loss_fn: Callable | None = None,
    latent_dim: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 32,
    optimizer: str | Callable = "adam",
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    max_epochs: int = 200,
    patience: int = 20,
    pad_value: float = 0.0,
    scaler: str | None = None,
    fit: bool = True,
    quick: bool = False,
    out: str | Path | None = None,
    time_budget: float | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Diagnose your own PyTorch autoencoder on data ``X``.

    The module is never changed: every probe and the training run work on copies.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a padded batch ``x`` of shape ``(batch, steps, features)`` (float32, padded
        steps set to ``pad_value``) and its ``lengths`` (int64) to a reconstruction of the
        same shape: ``module(x, lengths)``, or ``module(x)`` when ``forward`` takes one
        argument. A tuple output is read as ``(reconstruction, ...)``.
    X : list of (T_i, F) arrays, (n, T, F) array, or pandas long table
        The data as you train on it (already scaled, unless ``scaler`` is given). A padded
        array passed without lengths is recognised and reported.
    lengths : array-like of int, optional
        Observed lengths for a padded array.
    loss_fn : callable, optional
        Your training loss, ``loss_fn(reconstruction, x)`` or
        ``loss_fn(reconstruction, x, lengths)``, returning a scalar tensor. It is checked
        for padding; by default the probes use the mean squared error over observed values.
    latent_dim : int, optional
        Size of the module's latent, for the PCA baseline (default: ``module.latent_dim``
        if it exists, else 10).
    lr, batch_size, weight_decay, grad_clip : optional
        Your training settings (``grad_clip=None``: no clipping).
    optimizer : {"adam", "adamw", "sgd"} or callable, default="adam"
        Or ``optimizer(params, lr) -> torch.optim.Optimizer``.
    max_epochs, patience : int
        Bounds of the doctor's training run (early stopping on 15% of the training part).
    pad_value : float, default=0.0
        Value in padded steps of the batches given to the module.
    scaler : {"standard", "robust", "minmax"} or None, default=None
        Scale the data before anything else (None: use ``X`` as given).
    fit : bool, default=True
        Train a copy of the module for the outcome checks; False judges the module as it is.
    quick, out, time_budget, progress
        As in :func:`diagnose`.
    random_state : int, default=0
        Seed of the probes.

    Returns
    -------
    Report
        Ranked findings; ``report.model`` is the trained copy of the module.
    """
    started = time.perf_counter()
    plan = _Plan.make(quick, time_budget)
    report = Report()
    m = report.measurements
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
    if latent_dim is None:
        latent_dim = getattr(module, "latent_dim", None)
        if not isinstance(latent_dim, (int, np.integer)):
            latent_dim = 10
            report.skipped.append("latent size unknown: PCA baseline uses 10 components")
    latent_dim = int(latent_dim)
    seed = int(random_state)
    torch.manual_seed(seed)

    # data
    _notify(progress, "data checks")
    data = read_leniently(X, lengths)
    m.update(_describe(data))
    n_params = sum(p.numel() for p in module.parameters())
    findings = data_checks(
        data,
        scaler=scaler,
        n_parameters=n_params,
        user_module=True,
        batch_size=batch_size,
    )
    if len(data.values) < 2:
        report.skipped.append("probes and training: fewer than two usable sequences")
        return _finish(report, findings, out, started)
    values = data.values
    if scaler is not None:
        values = FeatureScaler(scaler).fit(values).transform(values)
    observed_lengths = data.lengths
    padding = data.padding
    if padding is not None:
        observed_lengths = padding["observed_lengths"]
        m["observed_lengths_inferred"] = True
    train_idx, test_idx = _split(len(values), seed)
    train = [values[i] for i in train_idx]
    test = [values[i] for i in test_idx] or None
    subject = Subject(module, loss_fn=loss_fn, pad_value=pad_value)
    device = device_of(module)
    batches = make_batches(train, batch_size, by_length=False, seed=seed, limit=8, device=device)

    try:
        # does the output depend on the input at all? does padding leak in?
        stage = "input check"
        _notify(progress, stage)
        found = input_dependence_finding(subject, module, batches[0], m)
        findings += [found] if found else []
        stage = "padding checks"
        _notify(progress, stage)
        findings += padding_findings(subject, module, train, observed_lengths[train_idx], m)

        stage = "learning-rate range test"
        _notify(progress, stage)
        report.range_test = range_test_on(
            subject,
            module,
            batches,
            n_steps=plan.range_steps,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            optimizer=optimizer,
            seed=seed,
            time_cap=plan.range_cap,
        )
        suggested = report.range_test["suggested_lr"]
        m.update(configured_lr=lr, suggested_lr=suggested)
        stage = "gradient probe"
        _notify(progress, stage)
        report.gradient_probe = gradient_probe(
            subject,
            module,
            batches,
            lr=lr,
            n_steps=plan.gradient_steps,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            optimizer=optimizer,
            seed=seed,
            time_cap=plan.gradient_cap,
        )
        findings += lr_findings(report.range_test, lr, report.gradient_probe)
        findings = distrust_lr(findings + gradient_findings(report.gradient_probe, lr))
        stage = "overfitting one batch"
        _notify(progress, stage)
        small = make_batches(train, 4, by_length=False, seed=seed, limit=1, device=device)[0]
        report.overfit_probe = overfit_batch(
            subject,
            module,
            small,
            lr=float(np.clip(suggested, 1e-3, 1e-2)),
            n_steps=plan.overfit_steps,
            grad_clip=grad_clip,
            optimizer=optimizer,
            seed=seed,
            target=0.5 * _batch_variance(small),
            time_cap=plan.overfit_cap,
        )
        findings += overfit_findings(report.overfit_probe, _batch_variance(small))

        # outcome
        stage = "training"
        _notify(progress, stage)
        trained, history, stop_reason = module, [], "not trained"
        budget_cut = False
        if fit:
            n_val = int(round(0.15 * len(train))) if len(train) >= 10 else 0
            inner = np.random.default_rng(seed + 1).permutation(len(train))
            fit_part = [train[i] for i in inner[n_val:]]
            val_part = [train[i] for i in inner[:n_val]] or None
            left = plan.budget - (time.perf_counter() - started) - plan.reserve
            trained, history = train_module(
                subject,
                module,
                fit_part,
                val_part,
                lr=lr,
                batch_size=batch_size,
                max_epochs=max_epochs,
                patience=patience,
                max_time=max(1.0, left),
                grad_clip=grad_clip,
                weight_decay=weight_decay,
                optimizer=optimizer,
                seed=seed,
                callback=lambda r: _notify(progress, "training", r),
            )
            ended = len(history) >= max_epochs
            stop_reason = "max_epochs" if ended else "max_time"
            if history and (len(history) - 1) - _best(history) >= patience:
                stop_reason = "early_stopping"
            budget_cut = stop_reason == "max_time"
            report.history = history
            m["best_epoch"] = _best(history)
        report.model = trained
        stage = "outcome checks"
        _notify(progress, stage)
        recon_train = reconstruct_values(subject, trained, train)
        recon_test = reconstruct_values(subject, trained, test) if test else None
    except ModuleFailure as failure:
        findings.append(failure_finding(failure, stage))
        report.skipped.append(f"everything after the {stage}: the module failed")
        return _finish(report, findings, out, started)

    judge_train, judge_test = train, test
    if padding is not None:
        # judge on the real steps only: cut the padding off truth and reconstruction alike
        cut = {"side": padding["side"]}
        cut_train = {**cut, "runs": padding["runs"][train_idx]}
        judge_train = strip_padding(train, cut_train)
        recon_train = strip_padding(recon_train, cut_train)
        if test:
            cut_test = {**cut, "runs": padding["runs"][test_idx]}
            judge_test = strip_padding(test, cut_test)
            recon_test = strip_padding(recon_test, cut_test)
    m.update(loss_units_standardised=False, user_module=True)
    with _quiet_numerics():
        findings += _user_outcome(
            judge_train, judge_test, recon_train, recon_test, latent_dim, history, stop_reason, m
        )
    if budget_cut:
        findings = inconclusive(findings, len(history))
    if not test:
        report.skipped.append("held-out checks: fewer than 20 sequences, judged on training data")
    report.skipped.append("dead-latent: the module's latent is not accessible")
    return _finish(report, findings, out, started)


def _user_outcome(
    judge_train, judge_test, recon_train, recon_test, latent_dim, history, stop_reason, m
) -> list[Finding]:
    return outcome_findings(
        train=judge_train,
        test=judge_test,
        recon_train=recon_train,
        recon_test=recon_test,
        latent_dim=latent_dim,
        history=history,
        stop_reason=stop_reason,
        measurements=m,
        epochs_param="max_epochs",
    )


def _best(history: list[dict]) -> int:
    key = "val_loss" if any(math.isfinite(r["val_loss"]) for r in history) else "train_loss"
    values = [r[key] if math.isfinite(r[key]) else math.inf for r in history]
    return int(np.argmin(values)) if values else -1
