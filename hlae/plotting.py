"""Pictures: loss curves and reconstructions, written as PNG files with matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_history", "plot_reconstructions"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_history(
    history: list[dict],
    path: str | Path,
    *,
    title: str = "Loss curve",
    marks: list[tuple[int, str]] | None = None,
    baselines: dict[str, float] | None = None,
) -> Path:
    """Plot train and validation loss per epoch (log scale) with optional annotations.

    ``marks`` are ``(epoch, label)`` pairs drawn as vertical lines (the doctor's findings,
    the best epoch); ``baselines`` are horizontal reference lines (the mean, PCA).
    """
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    val = [r.get("val_loss", np.nan) for r in history]
    if np.isfinite(np.asarray(val, dtype=float)).any():
        ax.plot(epochs, val, label="validation")
    for name, value in (baselines or {}).items():
        ax.axhline(value, linestyle=":", color="grey")
        ax.annotate(name, (epochs[0] if epochs else 0, value), fontsize=8, color="grey")
    for epoch, label in marks or []:
        ax.axvline(epoch, linestyle="--", color="tab:red", alpha=0.6)
        ax.annotate(label, (epoch, ax.get_ylim()[1]), fontsize=8, rotation=90, va="top")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled units)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reconstructions(
    originals: list[np.ndarray],
    reconstructions: list[np.ndarray],
    path: str | Path,
    *,
    n_sequences: int = 4,
    n_features: int = 3,
    feature_names: list[str] | None = None,
    titles: list[str] | None = None,
) -> Path:
    """Plot a few sequences (rows) and features (columns): original against reconstruction."""
    plt = _pyplot()
    n_seq = min(n_sequences, len(originals))
    n_feat = min(n_features, originals[0].shape[1])
    fig, axes = plt.subplots(n_seq, n_feat, figsize=(3.2 * n_feat, 2.2 * n_seq), squeeze=False)
    for i in range(n_seq):
        for j in range(n_feat):
            ax = axes[i, j]
            ax.plot(originals[i][:, j], color="black", lw=1.2, label="original")
            ax.plot(reconstructions[i][:, j], color="tab:orange", lw=1.2, label="reconstruction")
            name = feature_names[j] if feature_names else f"feature {j}"
            head = titles[i] if titles else f"sequence {i}"
            ax.set_title(f"{head}, {name}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
