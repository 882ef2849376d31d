"""Findings read from the probe runs: learning rate, gradients, one-batch overfitting, and
whether padding or the input reach the output and the loss."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hlae.doctor._probes import Batch, ModuleFailure, Subject, _fresh, device_of
from hlae.doctor._report import Finding

__all__ = [
    "lr_findings",
    "overfit_findings",
    "gradient_findings",
    "padding_findings",
    "input_dependence_finding",
    "failure_finding",
    "distrust_lr",
]


def failure_finding(failure: ModuleFailure, stage: str) -> Finding:
    """A user module (or loss) that raised, reported with the exception and batch shape."""
    exc = failure.exc
    return Finding(
        "module-error",
        "error",
        f"{failure.what} during the {stage}: "
        + (f"{type(exc).__name__}: {exc}" if exc is not None else "")
        + f" (batch of shape {failure.shape}: batch, steps, features).",
        {
            "batch_shape": list(failure.shape),
            "exception": type(exc).__name__ if exc is not None else None,
            "stage": stage,
        },
        "Make the module accept a zero-padded float32 batch of shape (batch, steps, features) "
        "and a long tensor of lengths, and return a reconstruction of the same shape (or a "
        "tuple whose first item is one).",
    )


def lr_findings(range_test: dict[str, Any], lr: float, probe: dict | None) -> list[Finding]:
    """Compare the configured learning rate with the range test's curve and with what a
    short run at that rate did."""
    suggested, min_lr, blowup = (
        range_test["suggested_lr"],
        range_test["min_loss_lr"],
        range_test["blowup_lr"],
    )
    evidence: dict[str, Any] = {
        "lr": lr,
        "suggested_lr": suggested,
        "min_loss_lr": min_lr,
        "blowup_lr": blowup,
    }
    # what the probe run at the configured rate did: loss and gradient norm, early and late
    unstable = False
    if probe and probe["loss"]:
        losses = np.asarray(probe["loss"], dtype=float)
        norms = np.asarray(probe["total"], dtype=float)
        k = max(2, len(losses) // 4)
        if len(losses) >= 4 and np.isfinite(losses).all():
            first, last = float(losses[0]), float(np.mean(losses[-k:]))
            evidence.update(probe_loss_first=first, probe_loss_last=last)
            unstable = last > 1.2 * first
        else:
            unstable = not np.isfinite(losses).all()
        if len(norms) >= 4 and np.isfinite(norms[0]):
            growth = float(np.median(norms[-k:]) / max(norms[0], 1e-12))
            evidence["probe_gradient_growth"] = growth
            unstable = unstable or growth > 100 or not np.isfinite(norms).all()
    if not range_test["improved"] and not unstable:
        return []  # the loss never fell in the sweep: the rate is not what is wrong
    fix = f"Set lr={suggested:.2g} (or lr='auto' to run this range test in fit)."
    if (blowup is not None and lr >= blowup) or (unstable and lr > suggested):
        why = (
            f"past the rate at which the loss blows up in the range test ({blowup:.3g})"
            if blowup is not None and lr >= blowup
            else "so high that a short run at it destabilises: the loss or the gradient "
            "norm grows instead of falling"
        )
        return [
            Finding(
                "lr-too-high",
                "error",
                f"lr={lr:.3g} is {why}; the range test's best rate was {min_lr:.3g} and it "
                f"suggests {suggested:.3g}.",
                evidence,
                fix,
            )
        ]
    if lr >= min_lr:
        return [
            Finding(
                "lr-too-high",
                "warning",
                f"lr={lr:.3g} is at or above the rate of the lowest loss in the range test "
                f"({min_lr:.3g}), where training turns noisy and unstable; it suggests "
                f"{suggested:.3g}.",
                evidence,
                fix,
            )
        ]
    # too low: far below the suggestion, and a short run at it barely moves the loss
    stalled = evidence.get("probe_loss_last", 0.0) > 0.9 * evidence.get("probe_loss_first", 0.0)
    if range_test["improved"] and lr < suggested / 100 and stalled:
        return [
            Finding(
                "lr-too-low",
                "error" if lr < suggested / 300 else "warning",
                f"lr={lr:.3g} is {suggested / lr:.3g} times below the rate the range test "
                f"suggests ({suggested:.3g}), and a short run at it barely moved the loss "
                f"({evidence['probe_loss_first']:.3g} to {evidence['probe_loss_last']:.3g}); "
                "training will crawl.",
                evidence,
                fix,
            )
        ]
    return []


def overfit_findings(probe: dict[str, Any], batch_variance: float) -> list[Finding]:
    """A model that cannot memorise one small batch will not learn the data set."""
    final, initial = probe["final_error"], probe["initial_error"]
    reference = max(batch_variance, 1e-12)
    evidence = {
        "initial_error": initial,
        "final_error": final,
        "batch_variance": batch_variance,
        "steps": probe["steps"],
        "lr": probe["lr"],
        "batch_shape": probe["batch_shape"],
    }
    if math.isfinite(final) and final <= 0.5 * reference:
        return []
    if probe.get("cut"):
        return [
            Finding(
                "cannot-overfit-batch",
                "info",
                f"Inconclusive: the time for this probe ran out after {probe['steps']} steps, "
                f"with the error on one batch at {final:.3g} (from {initial:.3g}; predicting "
                f"the batch mean: {reference:.3g}).",
                evidence,
                "Give the doctor more time (time_budget=) to finish this probe.",
            )
        ]
    severe = not math.isfinite(final) or final > 0.85 * reference
    return [
        Finding(
            "cannot-overfit-batch",
            "error" if severe else "warning",
            f"Trained on one batch of {probe['batch_shape'][0]} sequences for {probe['steps']} "
            f"steps (dropout off, lr={probe['lr']:.2g}), the error only went from "
            f"{initial:.3g} to {final:.3g}, against {reference:.3g} for predicting the batch "
            "mean. A model that cannot memorise a handful of sequences has a bug or too "
            "little capacity.",
            evidence,
            "Check that the decoder receives the latent and position information and that the "
            "output layer is linear; raise hidden_size and latent_dim until one batch can be "
            "memorised.",
        )
    ]


def gradient_findings(probe: dict[str, Any], lr: float) -> list[Finding]:
    """Exploding gradients overall, and levels of the model that get almost no gradient."""
    findings = []
    total = np.asarray(probe["total"], dtype=float)
    if len(total) == 0:
        return []
    finite = np.isfinite(total)
    k = max(1, min(5, len(total) // 4))
    first = float(np.median(total[:k])) if finite[:k].all() else math.inf
    last = float(np.median(total[-k:])) if finite[-k:].all() else math.inf
    peak = float(np.max(total[finite])) if finite.any() else math.inf
    growth = last / max(first, 1e-12)
    evidence = {
        "initial_norm": float(total[0]),
        "first_norm": first,
        "last_norm": last,
        "max_norm": peak,
        "growth": growth,
        "steps": len(total),
        "lr": lr,
    }
    if not finite.all() or peak > 1e3 or (growth > 100 and last > 10):
        severe = not finite.all() or peak > 1e4
        at_init = bool(finite[0] and total[0] > 1e3) or not finite[0]
        evidence["at_initialisation"] = at_init
        findings.append(
            Finding(
                "exploding-gradients",
                "error" if severe else "warning",
                (
                    "The gradient became non-finite in the probe run."
                    if not finite.all()
                    else f"Gradient norms reach {peak:.3g} (first steps {first:.3g}, last "
                    f"{last:.3g}); a well-scaled model on scaled data has norms near 1."
                )
                + (
                    " They are huge from the first step, before the learning rate has done "
                    "anything: the weights' or the inputs' scale is wrong."
                    if at_init
                    else ""
                ),
                evidence,
                "Keep gradient clipping on (grad_clip=1.0), initialise weights at the usual "
                "scale (PyTorch's defaults), make sure inputs are scaled, and lower lr.",
                # huge from the start: the cause, not a consequence of the learning rate
                prior=81 if at_init else 0.0,
            )
        )
    levels = probe["levels"]
    if len(levels) >= 2:
        typical = {}
        for name, values in levels.items():
            v = np.asarray(values, dtype=float)
            v = v[np.isfinite(v)]
            typical[name] = float(np.exp(np.mean(np.log(v + 1e-30)))) if len(v) else 0.0
        top = max(typical.values())
        if top > 0:
            weak = {n: t / top for n, t in typical.items() if t / top < 1e-4}
            if weak:
                names = sorted(weak, key=weak.get)
                severe = any(weak[n] < 1e-6 for n in names)
                findings.append(
                    Finding(
                        "vanishing-gradients",
                        "error" if severe else "warning",
                        f"{len(names)} level(s) get almost no gradient: "
                        + ", ".join(f"{n} ({weak[n]:.2g} of the largest)" for n in names[:4])
                        + ". They barely train.",
                        {
                            "relative_gradient": {n: weak[n] for n in names},
                            "gradient_rms": typical,
                        },
                        "Look at what sits between these levels and the loss: saturated "
                        "tanh/sigmoid units, a tiny scale factor, detached tensors; use "
                        "shorter recurrent paths (hlae's chunked hierarchy) for long sequences.",
                    )
                )
    return findings


def _padded_batch(
    values: list[np.ndarray], lengths: np.ndarray, n: int = 16
) -> tuple[Batch, torch.Tensor] | None:
    """A batch of up to ``n`` sequences of different lengths; ``values`` may already hold
    padding past ``lengths``. Returns the batch and the mask of padded steps."""
    order = np.argsort(lengths, kind="stable")
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).astype(int))]
    lens = lengths[pick]
    if lens.min() == max(len(values[i]) for i in pick) and lens.max() == lens.min():
        return None
    T, F = max(len(values[i]) for i in pick), values[0].shape[1]
    x = np.zeros((len(pick), T, F), dtype=np.float32)
    for b, i in enumerate(pick):
        x[b, : len(values[i])] = np.nan_to_num(values[i])
    steps = np.arange(T)[None, :] < lens[:, None]
    mask = np.repeat(steps[..., None], F, axis=2)
    return (
        torch.from_numpy(x),
        torch.from_numpy(mask),
        torch.as_tensor(lens, dtype=torch.long),
    ), torch.from_numpy(~mask)


def padding_findings(
    subject: Subject,
    module: torch.nn.Module,
    values: list[np.ndarray],
    lengths: np.ndarray,
    measurements: dict[str, Any],
) -> list[Finding]:
    """Perturb padded values and see whether the output at observed steps or the loss move.

    ``values`` hold each sequence's steps (and, for data passed padded, the padding as given);
    ``lengths`` are the observed lengths.
    """
    made = _padded_batch(values, lengths)
    if made is None:
        measurements["padding_check"] = "not run: every sequence has the same length"
        return []
    (x, mask, lens), padded = made
    device = device_of(module)
    x, mask, lens, padded = x.to(device), mask.to(device), lens.to(device), padded.to(device)
    model = _fresh(module).eval()
    noise = torch.randn_like(x) * 3.0
    x_noisy = torch.where(padded, noise, x)
    findings = []
    with torch.no_grad():
        base = subject.forward(model, x, mask, lens)
        moved = subject.forward(model, x_noisy, mask, lens)
    observed = mask
    scale = float(base[observed].std()) + 1e-12
    change = float((base - moved)[observed].abs().max()) / scale
    padded_share = float(padded.float().mean())
    measurements["padding_output_change"] = change
    if change > 1e-4:
        findings.append(
            Finding(
                "padding-in-output",
                "error",
                f"Changing only the padded steps of a batch changes the output at the real "
                f"steps by up to {change:.3g} times its spread: the encoder reads the padding, "
                "so a sequence's embedding depends on how much padding its batch had.",
                {
                    "relative_change": change,
                    "padded_share_of_batch": padded_share,
                    "batch_shape": list(x.shape),
                },
                "Pack the sequences (torch.nn.utils.rnn.pack_padded_sequence with the "
                "lengths) or take each sequence's state at its own last step, and zero padded "
                "inputs with a mask; hlae's model does both.",
            )
        )
    if subject.loss_fn is not None:
        recon = base.detach().clone().requires_grad_(True)
        target = subject.inputs(x, lens)
        target_noisy = torch.where(padded, noise, target)
        loss = subject.loss(recon, x, mask, lens)
        loss.backward()
        grad = recon.grad.abs()
        grad_share = float(grad[padded].sum() / grad.sum().clamp(min=1e-30))
        with torch.no_grad():
            fn = subject.loss_fn
            args = (lens,) if subject.loss_takes_lengths else ()
            loss_noisy = float(fn(base, target_noisy, *args))
            loss_clean = float(fn(base, target, *args))
        loss_change = abs(loss_noisy - loss_clean) / (abs(loss_clean) + 1e-12)
        measurements["padding_loss_gradient_share"] = grad_share
        if grad_share > 1e-6 or loss_change > 1e-6:
            observed_error = Subject.observed_error(base, x, mask)
            findings.append(
                Finding(
                    "padding-in-loss",
                    "error",
                    f"The loss counts padded steps: {grad_share:.0%} of its gradient falls on "
                    f"padding (padding is {padded_share:.0%} of this batch's values), and "
                    f"changing padded targets changes the loss by {loss_change:.0%}. The model "
                    "is rewarded for predicting the padding, and the loss you watch is not "
                    "the error on the real steps.",
                    {
                        "padding_gradient_share": grad_share,
                        "padded_share_of_batch": padded_share,
                        "loss_change_when_padding_changes": loss_change,
                        "loss": loss_clean,
                        "error_on_observed_steps": observed_error,
                    },
                    "Average the loss over observed steps only: "
                    "((recon - x) ** 2 * mask).sum() / mask.sum(), with mask built from the "
                    "lengths (hlae.training.masked_loss does this).",
                )
            )
    return findings


def input_dependence_finding(
    subject: Subject, module: torch.nn.Module, batch: Batch, measurements: dict[str, Any]
) -> Finding | None:
    """At initialisation, does the output change at all when the input changes?"""
    x, mask, lengths = batch
    if x.shape[0] < 2:
        return None
    model = _fresh(module).eval()
    other = torch.randn_like(x) * (x[mask].std() + 1.0)
    x_other = torch.where(mask, other, x)
    with torch.no_grad():
        a = subject.forward(model, x, mask, lengths)
        b = subject.forward(model, x_other, mask, lengths)
    spread = float(a[mask].abs().mean()) + float(b[mask].abs().mean()) + 1e-30
    change = float((a - b)[mask].abs().mean()) / spread
    measurements["input_dependence_at_init"] = change
    if change > 1e-7:
        return None
    return Finding(
        "mean-collapse",
        "error",
        "The output does not change at all when the input changes (tested at "
        "initialisation on a batch of shape " + f"{tuple(x.shape)}): whatever it is trained "
        "to, it can only output one reconstruction for every sequence, the mean.",
        {"relative_output_change": change, "batch_shape": list(x.shape)},
        "Make sure forward() feeds x to the encoder and the encoder's result to the decoder "
        "(no detached, overwritten or unused tensors); check with a batch and its shuffle.",
        stage="dynamics",
        prior=97,
    )


def distrust_lr(findings: list[Finding]) -> list[Finding]:
    """A range test on a model whose gradients explode from the start says little."""
    if not any(
        f.code == "exploding-gradients" and f.evidence.get("at_initialisation") for f in findings
    ):
        return findings
    for f in findings:
        if f.code in ("lr-too-high", "lr-too-low"):
            f.severity = "info"
            f.message = "Unreliable while the gradients explode from the start: " + f.message
    return findings
