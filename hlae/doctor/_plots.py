"""The doctor's pictures: loss curve marked with the findings, range test, gradient norms."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hlae.doctor._report import Report

__all__ = ["write_pictures"]

COLOURS = {"error": "tab:red", "warning": "tab:orange", "info": "tab:blue"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)


def _finite(values: list[Any]) -> np.ndarray:
    out = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return np.where(np.isfinite(out), out, np.nan)


def plot_loss_curve(report: Report, path: Path) -> str | None:
    """Train and validation loss per epoch, the baselines, and the findings beside it."""
    history = report.history
    if not history:
        return None
    plt = _pyplot()
    fig, (ax, side) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    epochs = [r["epoch"] for r in history]
    user = report.measurements.get("user_module", False)
    train_label = "train (your loss)" if user else "train"
    val_label = "validation (MSE over observed values)" if user else "validation"
    ax.plot(epochs, _finite([r["train_loss"] for r in history]), label=train_label)
    val = _finite([r.get("val_loss") for r in history])
    if np.isfinite(val).any():
        ax.plot(epochs, val, label=val_label)
    m = report.measurements
    if m.get("loss_units_standardised"):
        for name, key, style in (("PCA", "pca_error", ":"), ("mean", "mean_error", "--")):
            if key in m and m[key] is not None and math.isfinite(m[key]):
                ax.axhline(m[key], linestyle=style, color="grey", lw=1)
                ax.annotate(f"{name} (held-out)", (epochs[0], m[key]), fontsize=8, color="grey")
    best = m.get("best_epoch")
    if best is not None and best >= 0:
        ax.axvline(best, color="tab:green", linestyle="--", lw=1)
        ax.annotate("best epoch", (best, ax.get_ylim()[1]), fontsize=8, rotation=90, va="top")
    for f in report.findings:
        epoch = f.evidence.get("epoch") if isinstance(f.evidence, dict) else None
        if epoch is not None:
            ax.axvline(epoch, color=COLOURS[f.severity], alpha=0.6, lw=1)
    if all(v > 0 for v in _finite([r["train_loss"] for r in history]) if np.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Loss curve of the doctor's training run")
    ax.legend(fontsize=8)

    side.axis("off")
    side.set_title("Findings, most likely cause first", fontsize=9)
    lines = report.findings[:10] or []
    if not lines:
        side.text(0, 0.95, "no findings", fontsize=9, va="top")
    for i, f in enumerate(lines):
        side.text(
            0,
            0.95 - i * 0.09,
            f"{i + 1}. [{f.severity}] {f.code}",
            fontsize=9,
            va="top",
            color=COLOURS[f.severity],
            transform=side.transAxes,
        )
    path = Path(path)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_range_test(report: Report, path: Path) -> str | None:
    """Smoothed loss against learning rate, with the chosen and configured rates."""
    rt = report.range_test
    if not rt or not rt.get("lr"):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rt["lr"], _finite(rt["loss"]), color="lightgrey", lw=1, label="loss per step")
    ax.plot(rt["lr"], _finite(rt["smoothed"]), color="tab:blue", label="smoothed")
    marks = [
        ("suggested", rt.get("suggested_lr"), "tab:green"),
        ("lowest loss", rt.get("min_loss_lr"), "tab:blue"),
        ("blow-up", rt.get("blowup_lr"), "tab:red"),
        ("configured", report.measurements.get("configured_lr"), "black"),
    ]
    for label, lr, colour in marks:
        if lr is not None and math.isfinite(lr):
            ax.axvline(lr, color=colour, linestyle="--", lw=1, label=f"{label} {lr:.2g}")
    ax.set_xscale("log")
    smoothed = _finite(rt["smoothed"])
    if np.isfinite(smoothed).any():
        low, high = np.nanmin(smoothed), np.nanmax(smoothed[: max(1, len(smoothed) // 2)])
        ax.set_ylim(low * 0.8 if low > 0 else low - 0.1, max(high, low) * 1.5 + 1e-12)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test")
    ax.legend(fontsize=8)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_gradients(report: Report, path: Path) -> str | None:
    """Root-mean-square gradient of each level over the probe run, and the total norm."""
    probe = report.gradient_probe
    if not probe or not probe.get("total"):
        return None
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, values in probe["levels"].items():
        v = _finite(values)
        ax.plot(np.arange(len(v)), np.where(v > 0, v, np.nan), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("probe step")
    ax.set_ylabel("gradient RMS per parameter")
    ax.set_title("Gradient per level")
    ax.legend(fontsize=7)
    total = _finite(probe["total"])
    ax2.plot(np.arange(len(total)), total, color="black")
    ax2.set_yscale("log")
    ax2.set_xlabel("probe step")
    ax2.set_ylabel("global gradient norm (before clipping)")
    ax2.set_title(f"Total gradient norm at lr={probe['lr']:.2g}")
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def write_pictures(report: Report, out: str | Path) -> dict[str, str]:
    """Write every picture the report has data for into ``out``; return their paths."""
    out = Path(out)
    pictures = {}
    for name, fn in (
        ("loss curve", plot_loss_curve),
        ("learning-rate range test", plot_range_test),
        ("gradient norms", plot_gradients),
    ):
        file = out / (name.replace(" ", "_").replace("-", "_") + ".png")
        path = fn(report, file)
        if path:
            pictures[name] = path
    return pictures
