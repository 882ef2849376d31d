"""Checks on the result of training: collapse to the mean, unused latent dimensions, a
result no better than PCA, overfitting and underfitting.

All errors are mean squared errors over observed values in units standardised by the
training split (see :mod:`hlae.evaluation`), so predicting the mean scores about 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from hlae.doctor._report import Finding
from hlae.evaluation import Standardiser, _pad_flat, mean_baseline, pca_baseline, standardised_mse

__all__ = [
    "input_dependence",
    "pca_error_curve",
    "outcome_findings",
    "dead_latent_findings",
    "inconclusive",
    "trend",
]

JUDGED_ON_TRAINING = (
    "mean-collapse",
    "dead-latent",
    "overfitting",
    "underfitting",
    "worse-than-pca",
)


def input_dependence(recons: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Share of the between-sequence variation of ``truths`` that ``recons`` reproduce.

    Both are compared, step by step, with their own mean over sequences (aligned at the
    first step). A model that ignores its input gives the same reconstruction for every
    sequence of a length, and a ratio near 0; a faithful one gives about 1.
    """
    T = max(len(t) for t in truths)
    F = truths[0].shape[1]

    def centred_energy(seqs: list[np.ndarray], reference: list[np.ndarray]) -> float:
        total = np.zeros((T, F))
        count = np.zeros((T, F))
        for s, r in zip(seqs, reference):
            observed = ~np.isnan(r)
            total[: len(r)] += np.where(observed, s[: len(r)], 0.0)
            count[: len(r)] += observed
        mean = total / np.maximum(count, 1)
        energy = 0.0
        for s, r in zip(seqs, reference):
            observed = ~np.isnan(r)
            energy += float(((s[: len(r)] - mean[: len(r)])[observed] ** 2).sum())
        return energy

    std = Standardiser(truths)
    scaled_truth, scaled_recon = std(truths), std(recons)
    denominator = centred_energy(scaled_truth, scaled_truth)
    return centred_energy(scaled_recon, scaled_truth) / max(denominator, 1e-12)


def pca_error_curve(train: list[np.ndarray], max_components: int) -> np.ndarray:
    """Training error of PCA with 1..k components (zero-padded, standardised, flattened)."""
    std = Standardiser(train)
    T = max(len(s) for s in train)
    flat = _pad_flat(std(train), T)
    k = int(min(max_components, flat.shape[0], flat.shape[1]))
    pca = PCA(k).fit(flat)
    observed_share = sum(np.isfinite(s).sum() for s in train) / flat.size
    total = float(((flat - flat.mean(0)) ** 2).sum() / flat.shape[0])
    left = total - np.cumsum(pca.explained_variance_) * (flat.shape[0] - 1) / flat.shape[0]
    # per observed value, as standardised_mse counts it
    return np.maximum(left, 0.0) / (flat.shape[1] * observed_share)


def trend(history: list[dict], key: str = "val_loss", window: int = 5) -> float:
    """Relative change per epoch of ``key`` over the last ``window`` epochs (negative: falling)."""
    values = [r[key] for r in history if r.get(key) is not None and math.isfinite(r[key])]
    window = min(window, len(values) - 1)
    if window < 1:
        return math.nan
    recent = np.asarray(values[-window - 1 :])
    return float((recent[-1] - recent[0]) / window / max(abs(recent[0]), 1e-12))


def outcome_findings(
    *,
    train: list[np.ndarray],
    test: list[np.ndarray] | None,
    recon_train: list[np.ndarray],
    recon_test: list[np.ndarray] | None,
    latent_dim: int,
    history: list[dict],
    stop_reason: str,
    measurements: dict[str, Any],
    epochs_param: str = "max_epochs",
) -> list[Finding]:
    """Findings about the trained model; numbers go into ``measurements``."""
    findings: list[Finding] = []
    held_out = test is not None and recon_test is not None and len(test) > 0
    truth, recon = (test, recon_test) if held_out else (train, recon_train)
    where = "held-out" if held_out else "training"

    model_error = standardised_mse(recon, truth, train)
    train_error = standardised_mse(recon_train, train, train)
    pca_recon = pca_baseline(train, truth, latent_dim)
    pca_error = standardised_mse(pca_recon, truth, train)
    pca_train_error = standardised_mse(pca_baseline(train, train, latent_dim), train, train)
    mean_error = standardised_mse(mean_baseline(train, truth), truth, train)
    rho_model = input_dependence(recon, truth)
    rho_pca = input_dependence(pca_recon, truth)
    falling = (
        trend(history, "val_loss")
        if any(math.isfinite(r.get("val_loss", math.nan)) for r in history)
        else trend(history, "train_loss")
    )
    measurements.update(
        model_error=model_error,
        train_error=train_error,
        pca_error=pca_error,
        pca_train_error=pca_train_error,
        mean_error=mean_error,
        error_on=where,
        input_dependence=rho_model,
        pca_input_dependence=rho_pca,
        epochs=len(history),
        stop_reason=stop_reason,
        loss_trend_per_epoch=falling,
    )
    still_falling = math.isfinite(falling) and falling < -0.003

    # collapse to the mean: reconstructions that hardly vary with the input
    if rho_model < 0.1 and rho_model < 0.25 * rho_pca:
        findings.append(
            Finding(
                "mean-collapse",
                "error",
                f"The reconstructions barely depend on the input: they reproduce "
                f"{rho_model:.1%} of the differences between {where} sequences (PCA with the "
                f"same latent size: {rho_pca:.0%}). The model outputs roughly the average "
                "sequence whatever it is given.",
                {"input_dependence": rho_model, "pca_input_dependence": rho_pca},
                "Usually a consequence: see the findings above it. Otherwise give the decoder "
                "positions and the latent at every step, and check lr and scaling.",
            )
        )

    # latent too small for the data: PCA needs many more components
    curve = pca_error_curve(train, max(4 * latent_dim, 32))
    e_k = float(curve[min(latent_dim, len(curve)) - 1])
    e_4k = float(curve[min(4 * latent_dim, len(curve)) - 1])
    need = int(np.argmax(curve <= 0.2) + 1) if (curve <= 0.2).any() else len(curve)
    measurements.update(pca_train_error_curve=curve[:32], components_for_80_percent=need)
    small_latent = e_k > 0.5 and need >= 3 * latent_dim and train_error > 0.3
    if small_latent:
        findings.append(
            Finding(
                "latent-too-small",
                "error" if e_k > 0.6 else "warning",
                f"latent_dim={latent_dim} is too small for these data: even PCA with "
                f"{latent_dim} component(s) leaves {e_k:.0%} of the variance unexplained, "
                f"against {e_4k:.0%} with {min(4 * latent_dim, len(curve))}; the model's "
                f"training error is {train_error:.3g}.",
                {
                    "latent_dim": latent_dim,
                    "pca_error_at_latent_dim": e_k,
                    "pca_error_at_4x": e_4k,
                    "components_for_80_percent": need,
                    "train_error": train_error,
                },
                f"Raise latent_dim to about {min(need, 64)} (PCA needs {need} components to "
                "explain 80% of the variance).",
            )
        )

    # underfitting: the model does not even fit its training data as well as PCA
    if not small_latent and train_error > 1.05 * pca_train_error and train_error > 0.1:
        best_is_last = bool(history) and _best_epoch(history) == len(history) - 1
        # stopped by the epoch (or time) limit while improving, or after so few epochs
        # that no plateau can have been reached
        stopped_early = stop_reason in ("max_epochs", "max_time") and (
            still_falling or best_is_last or len(history) < 10
        )
        if stopped_early:
            findings.append(
                Finding(
                    "underfitting",
                    "error" if model_error >= pca_error else "warning",
                    f"Training stopped by its limit after {len(history)} epoch(s) "
                    + (
                        "while the loss was still improving"
                        if still_falling or best_is_last
                        else "(far too few to converge)"
                    )
                    + f"; the training error {train_error:.3g} is above PCA's "
                    f"{pca_train_error:.3g}.",
                    {
                        "epochs": len(history),
                        "epoch": len(history) - 1,
                        "loss_trend_per_epoch": falling,
                        "train_error": train_error,
                        "pca_train_error": pca_train_error,
                    },
                    f"Raise {epochs_param} (early stopping ends training when it stops "
                    "helping), or raise lr if the range test allows it.",
                    prior=62,
                )
            )
        else:
            findings.append(
                Finding(
                    "underfitting",
                    "warning",
                    f"The model fits its own training data worse than PCA with the same "
                    f"latent size ({train_error:.3g} against {pca_train_error:.3g}).",
                    {"train_error": train_error, "pca_train_error": pca_train_error},
                    "Give it more capacity or less regularisation: raise hidden_size, lower "
                    "dropout and weight_decay, and check the learning rate.",
                )
            )

    # overfitting: a large gap between training and held-out error
    if held_out and train_error > 0:
        gap = model_error / train_error
        measurements["generalisation_gap"] = gap
        if gap >= 1.5:
            harmful = gap >= 2.0 and model_error >= pca_error
            findings.append(
                Finding(
                    "overfitting",
                    "warning" if harmful else "info",
                    f"The held-out error ({model_error:.3g}) is {gap:.2g} times the training "
                    f"error ({train_error:.3g})"
                    + (", and no better than PCA." if harmful else "."),
                    {
                        "train_error": train_error,
                        "held_out_error": model_error,
                        "gap": gap,
                        "epoch": _best_epoch(history),
                    },
                    "Regularise: more dropout (0.2-0.3), weight_decay=1e-3, augmentation on, "
                    "a smaller hidden_size; collect more sequences if you can.",
                )
            )

    # the yardstick: PCA with the same latent size
    if model_error >= pca_error:
        worse_than_mean = model_error >= 0.95 * mean_error
        findings.append(
            Finding(
                "worse-than-pca",
                "error" if worse_than_mean else "warning",
                f"The {where} error ({model_error:.3g}) is not below PCA with "
                f"{latent_dim} component(s) ({pca_error:.3g})"
                + (
                    f", nor below predicting the mean ({mean_error:.3g})."
                    if worse_than_mean
                    else "."
                )
                + " A model that does not beat PCA is not trained, whatever its loss "
                "curve looks like.",
                {
                    "model_error": model_error,
                    "pca_error": pca_error,
                    "mean_error": mean_error,
                },
                "Fix the findings ranked above this one; if there are none, train longer "
                "and compare again.",
            )
        )
    return findings


def dead_latent_findings(
    module, values: list[np.ndarray], latent_dim: int, measurements: dict[str, Any]
) -> list[Finding]:
    """Latent dimensions whose removal (set to their mean) does not change the output."""
    import torch

    from hlae.data import pad_batch

    if latent_dim < 2 or len(values) < 4:
        return []
    module.eval()
    index = np.argsort([len(v) for v in values])[:256]
    with torch.no_grad():
        x, mask, lengths = pad_batch(values, index, next(module.parameters()).device)
        z = module.encode(x, mask, lengths)
        base = module.decode(z, lengths)
        error = float(((base - x) ** 2 * mask).sum() / mask.sum())
        increase = []
        for j in range(latent_dim):
            z_j = z.clone()
            z_j[:, j] = z[:, j].mean()
            recon = module.decode(z_j, lengths)
            increase.append(float(((recon - x) ** 2 * mask).sum() / mask.sum()) - error)
    increase = np.asarray(increase)
    measurements["latent_ablation_increase"] = increase
    top = float(increase.max())
    if top <= 0:
        dead = np.arange(latent_dim)
    else:
        dead = np.flatnonzero(increase < 0.01 * top)
    if len(dead) == 0:
        return []
    many = len(dead) > latent_dim / 2
    return [
        Finding(
            "dead-latent",
            "warning" if many else "info",
            f"{len(dead)} of {latent_dim} latent dimension(s) carry (almost) nothing: "
            f"holding them at their mean raises the error by less than 1% of what the most "
            f"used dimension adds ({top:.3g}).",
            {"dead_dimensions": dead, "error_increase": increase},
            (
                f"Use latent_dim={latent_dim - len(dead)}; if the error stays high with "
                "dead dimensions, the decoder is ignoring the latent: check lr and the "
                "findings above."
                if many
                else "Nothing to change unless you need a compact embedding: "
                f"latent_dim={latent_dim - len(dead)} would do."
            ),
        )
    ]


def inconclusive(findings: list[Finding], epochs: int) -> list[Finding]:
    """Downgrade outcome findings of a run cut short by the doctor's time budget to info.

    A model judged after a partial run may simply not have got there yet: say what was
    seen, but do not call it a problem.
    """
    for f in findings:
        if f.code in JUDGED_ON_TRAINING and f.stage == "outcome" and f.severity != "info":
            f.severity = "info"
            f.message = (
                f"Inconclusive: training was cut by the doctor's time budget after {epochs} "
                f"epoch(s). {f.message}"
            )
            f.fix = "Give the doctor more time (time_budget=, or drop --quick) to judge this."
    return findings


def _best_epoch(history: list[dict]) -> int:
    """Epoch of the lowest validation loss (training loss when there is no validation)."""
    key = (
        "val_loss"
        if any(math.isfinite(r.get("val_loss", math.nan)) for r in history)
        else ("train_loss")
    )
    values = [r[key] if math.isfinite(r[key]) else math.inf for r in history]
    return int(np.argmin(values)) if values else -1
