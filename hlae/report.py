"""One self-contained HTML page about a fitted model on a data set.

The page holds the loss curves, reconstructions of the best, a typical and the worst
sequence, a 2-D map of the embeddings (coloured by label when labels are given), the
distribution of reconstruction errors against PCA's, and the doctor's findings when a
doctor report is given. Pictures are PNG images inlined as base64, so the file can be
mailed or archived on its own; the page runs no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from hlae.data import Sequences
from hlae.exceptions import InputError, ParameterError

__all__ = ["build_report", "write_report", "read_doctor_report", "ReportMismatchError"]

MAX_SEQUENCES = 5000  # larger data sets are subsampled (evenly, reproducibly) for the page


class ReportMismatchError(InputError):
    """The data given to a report does not fit the model (feature count or names)."""


# -- pictures -----------------------------------------------------------------------------
def _pyplot():
    from hlae.plotting import _pyplot

    return _pyplot()


def _png(fig) -> str:
    """Render a figure to a base64 PNG string and close it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _loss_figure(history: list[dict], best_epoch: int) -> str:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] for r in history], label="training", color="tab:blue")
    val = np.array([r.get("val_loss", np.nan) for r in history], dtype=float)
    if np.isfinite(val).any():
        ax.plot(epochs, val, label="validation", color="tab:orange")
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(best_epoch, color="tab:red", linestyle="--", alpha=0.6, label="kept weights")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled units)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _reconstruction_figure(
    picks: list[tuple[str, int]],
    values: list[np.ndarray],
    recon: list[np.ndarray],
    errors: np.ndarray,
    ids: list,
    feature_names: list[str],
) -> str:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    # show the features that vary most across the data, at most four
    spread = np.nanstd(np.concatenate([values[i] for _, i in picks]), axis=0)
    features = sorted(np.argsort(-np.nan_to_num(spread))[: min(4, len(feature_names))])
    fig, axes = plt.subplots(
        len(picks),
        len(features),
        figsize=(2.9 * len(features) + 0.6, 2.1 * len(picks)),
        squeeze=False,
    )
    for row, (kind, i) in enumerate(picks):
        for col, j in enumerate(features):
            ax = axes[row, col]
            ax.plot(values[i][:, j], color="black", lw=1.2, label="data")
            ax.plot(recon[i][:, j], color="tab:orange", lw=1.2, label="reconstruction")
            ax.set_title(f"{feature_names[j]!s:.24}", fontsize=8)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel(f"{kind}\nid {ids[i]!s:.16}\nerror {errors[i]:.3g}", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(picks) - 1:
                ax.set_xlabel("step", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def _embedding_figure(z: np.ndarray, labels: np.ndarray | None, errors: np.ndarray) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    if z.shape[1] >= 2 and len(z) >= 2:
        pca = PCA(2).fit(z)
        xy = pca.transform(z)
        share = pca.explained_variance_ratio_
        ax.set_xlabel(f"first principal component ({100 * share[0]:.0f}% of variance)")
        ax.set_ylabel(f"second principal component ({100 * share[1]:.0f}%)")
    else:
        xy = np.column_stack([z[:, 0], np.zeros(len(z))])
        ax.set_xlabel("latent value")
    if labels is None:
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.log10(errors + 1e-12), s=14, cmap="viridis")
        fig.colorbar(points, ax=ax, label="log10 reconstruction error")
    elif labels.dtype.kind in "fi" and len(np.unique(labels)) > 12:
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.astype(float), s=14, cmap="viridis")
        fig.colorbar(points, ax=ax, label="label")
    else:
        classes = np.unique(labels.astype(str))
        colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
        for k, name in enumerate(classes):
            chosen = labels.astype(str) == name
            ax.scatter(*xy[chosen].T, s=14, color=colours(k % colours.N), label=str(name)[:20])
        ax.legend(
            fontsize=7,
            title="label",
            title_fontsize=8,
            markerscale=1.2,
            ncol=1 + len(classes) // 12,
        )
    worst = np.argsort(errors)[-5:]
    ax.scatter(*xy[worst].T, s=70, facecolors="none", edgecolors="tab:red", label="_worst")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _error_figure(errors: np.ndarray, pca_errors: np.ndarray | None, k: int) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    both = errors if pca_errors is None else np.concatenate([errors, pca_errors])
    positive = both[both > 0]
    lo, hi = (positive.min(), positive.max()) if len(positive) else (1e-6, 1.0)
    bins = np.geomspace(lo * 0.9, hi * 1.1, 40) if hi > lo else 20
    ax.hist(errors, bins=bins, alpha=0.75, label="hlae", color="tab:blue")
    if pca_errors is not None:
        ax.hist(pca_errors, bins=bins, alpha=0.45, label=f"PCA({k}) on this data", color="grey")
    for q, style in ((50, "--"), (100, ":")):
        ax.axvline(np.percentile(errors, q), color="tab:blue", linestyle=style, lw=1)
    if hi > lo:
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # labels at 1, 2 and 5 times powers of ten only, as plain numbers
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("reconstruction error per sequence (MSE, scaled units)")
    ax.set_ylabel("sequences")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# -- numbers ------------------------------------------------------------------------------
def _pca_errors(scaled: list[np.ndarray], k: int) -> np.ndarray | None:
    """Per-sequence MSE of PCA(k) over zero-padded, flattened scaled sequences (in-sample)."""
    T, F = max(len(s) for s in scaled), scaled[0].shape[1]
    if len(scaled) < 3 or T * F > 200_000:
        return None
    flat = np.zeros((len(scaled), T * F))
    for i, s in enumerate(scaled):
        flat[i, : len(s) * F] = np.nan_to_num(s).ravel()
    k = min(k, len(scaled) - 1, T * F)
    pca = PCA(k, random_state=0).fit(flat)
    back = pca.inverse_transform(pca.transform(flat))
    errors = np.empty(len(scaled))
    for i, s in enumerate(scaled):
        diff = back[i, : len(s) * F].reshape(len(s), F) - s
        errors[i] = float(np.nanmean(diff**2))
    return errors


def read_doctor_report(path: str | Path) -> dict[str, Any]:
    """Read the ``report.json`` that ``hlae doctor --out DIR`` writes.

    Raises
    ------
    ParameterError
        When the file does not exist or is not a doctor report.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"No doctor report at {str(path)!r}.")
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{str(path)!r} is not a JSON doctor report ({exc}).") from None
    if not isinstance(report, dict) or not isinstance(report.get("findings"), list):
        raise ParameterError(
            f"{str(path)!r} is not a doctor report: it has no list of findings. Write one with "
            "hlae doctor DATA --out DIR (DIR/report.json)."
        )
    return report


def _check_match(model: Any, seqs: Sequences) -> None:
    names = [str(n) for n in model.feature_names_in_]
    default = [f"x{j}" for j in range(len(names))]
    if seqs.layout == "frame" and names != default and seqs.feature_names != names:
        missing = [n for n in names if n not in seqs.feature_names]
        extra = [n for n in seqs.feature_names if n not in names]
        raise ReportMismatchError(
            f"The data does not match the model: the model was trained on features {names}, "
            f"the data has {seqs.feature_names}"
            + (f" (missing {missing}" if missing else " (")
            + (f", not in the model {extra})" if extra else ")")
            + ". Give the data the model was made for, or name its feature columns "
            "(--features)."
        )


def _labels_for(labels: Any, seqs: Sequences) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, dict):
        absent = [i for i in seqs.ids if i not in labels]
        if absent:
            raise InputError(
                f"No label for {len(absent)} sequence(s), for example {absent[0]!r}; give a "
                "label for every sequence id."
            )
        return np.asarray([labels[i] for i in seqs.ids])
    labels = np.asarray(labels)
    if labels.shape != (len(seqs),):
        raise InputError(
            f"Got {labels.size} labels for {len(seqs)} sequences; give one label per sequence."
        )
    return labels


# -- the page -----------------------------------------------------------------------------
def build_report(
    model: Any,
    X: Any,
    *,
    labels: Any = None,
    doctor: str | Path | dict | None = None,
    title: str | None = None,
    lengths: Any = None,
    **table: Any,
) -> str:
    """Build the HTML report of ``model`` on data ``X``.

    Parameters
    ----------
    model : HierarchicalAutoencoder
        A fitted model.
    X : any input the model accepts
        The data to report on (training or held-out sequences).
    labels : array-like or dict, optional
        One label per sequence (in order), or a mapping from sequence id to label; colours
        the map of embeddings.
    doctor : path or dict, optional
        A doctor report (``report.json`` from ``hlae doctor --out DIR``, or its contents).
    title : str, optional
        Page title.
    lengths, **table
        How to read ``X``, as in :meth:`~hlae.HierarchicalAutoencoder.fit`.

    Returns
    -------
    str
        The page.

    Raises
    ------
    ReportMismatchError
        When the data has other features than the model was trained on.
    """
    check_is_fitted(model, "module_")
    try:
        seqs = model._sequences(X, lengths, **table)
    except InputError as exc:
        if "features but the model was fitted on" in str(exc):
            raise ReportMismatchError(f"The data does not match the model: {exc}") from None
        raise
    _check_match(model, seqs)
    label_values = _labels_for(labels, seqs)
    if len(seqs) > MAX_SEQUENCES:  # an even, reproducible subsample keeps the page quick
        keep = np.linspace(0, len(seqs) - 1, MAX_SEQUENCES).round().astype(int)
        seqs = seqs.subset(keep)
        label_values = None if label_values is None else label_values[keep]
    if isinstance(doctor, (str, Path)):
        doctor = read_doctor_report(doctor)

    # one pass of the model: embeddings, reconstructions and errors
    scaled, recon_scaled, z = model._run(seqs)
    errors = np.array(
        [float(np.nanmean((r - x) ** 2)) for x, r in zip(scaled, recon_scaled)], dtype=float
    )
    recon = model.scaler_.inverse_transform(recon_scaled)
    order = np.argsort(errors, kind="stable")
    picks = [("best", int(order[0])), ("typical", int(order[len(order) // 2]))]
    picks.append(("worst", int(order[-1])))
    pca_errors = _pca_errors(scaled, int(model.latent_dim))

    figures = {
        "loss": _loss_figure(model.history_, model.best_epoch_) if model.history_ else None,
        "reconstructions": _reconstruction_figure(
            picks, seqs.values, recon, errors, seqs.ids, seqs.feature_names
        ),
        "embeddings": _embedding_figure(z, label_values, errors),
        "errors": _error_figure(errors, pca_errors, int(model.latent_dim)),
    }
    return _page(model, seqs, errors, pca_errors, figures, order, doctor, title, label_values)


def _img(data: str | None, alt: str) -> str:
    if data is None:
        return f"<p class='note'>{html.escape(alt)}: not available.</p>"
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _page(model, seqs, errors, pca_errors, figures, order, doctor, title, labels) -> str:
    lengths = seqs.lengths
    history = model.history_ or []
    best = history[model.best_epoch_] if 0 <= model.best_epoch_ < len(history) else {}
    n_params = sum(p.numel() for p in model.module_.parameters())
    data_rows = [
        ("sequences", len(seqs)),
        (
            "features",
            f"{seqs.n_features}: {', '.join(map(str, seqs.feature_names[:12]))}"
            + (" ..." if seqs.n_features > 12 else ""),
        ),
        ("lengths", f"{lengths.min()} to {lengths.max()} steps (median {np.median(lengths):g})"),
    ]
    if labels is not None:
        data_rows.append(("labels", f"{len(np.unique(labels.astype(str)))} distinct"))
    model_rows = [
        ("hierarchy", model.hierarchy),
        ("chunk lengths", ", ".join(map(str, model.chunk_lengths_)) or "none (one level)"),
        ("latent size", model.latent_dim),
        ("hidden size", model.hidden_size),
        ("parameters", f"{n_params:,}"),
        (
            "training",
            f"{len(history)} epochs, stopped by {model.stop_reason_}; weights of "
            f"epoch {model.best_epoch_} kept",
        ),
        (
            "loss at kept epoch",
            f"training {_fmt(best.get('train_loss', math.nan))}, "
            f"validation {_fmt(best.get('val_loss', math.nan))}",
        ),
    ]
    result_rows = [
        ("mean reconstruction error", _fmt(float(errors.mean()))),
        ("median, worst", f"{_fmt(float(np.median(errors)))}, {_fmt(float(errors.max()))}"),
    ]
    verdict = ""
    if pca_errors is not None:
        ratio = errors.mean() / max(pca_errors.mean(), 1e-12)
        result_rows.append(
            (
                f"PCA({min(model.latent_dim, len(seqs) - 1)}) fitted on this data",
                f"{_fmt(float(pca_errors.mean()))} (hlae / PCA = {ratio:.2f})",
            )
        )
        if ratio > 1:
            verdict = (
                "<p class='warning'>hlae reconstructs this data worse than PCA with as many "
                "components: the model is not trained well enough to be trusted. Run the "
                "doctor (<code>hlae doctor DATA</code>) to find out why.</p>"
            )
    if model.scaler == "standard":
        result_rows.append(("predicting the mean", "about 1.0 in these units"))

    worst = order[::-1][:10]
    worst_rows = "".join(
        f"<tr><td>{html.escape(str(seqs.ids[i]))}</td><td>{lengths[i]}</td>"
        f"<td>{errors[i]:.4g}</td></tr>"
        for i in worst
    )
    title = title or "hlae report"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<div class='cards'>"
        f"<table><caption>Data</caption>{_rows(data_rows)}</table>"
        f"<table><caption>Model</caption>{_rows(model_rows)}</table>"
        f"<table><caption>Reconstruction on this data</caption>{_rows(result_rows)}</table>"
        "</div>",
        verdict,
        "<h2>Loss curves</h2>",
        "<p>Loss per epoch on the training and validation splits (log scale); the dashed line "
        "marks the epoch whose weights were kept.</p>",
        _img(figures["loss"], "loss curves"),
        "<h2>Reconstructions</h2>",
        "<p>The best, a typical (median) and the worst reconstructed sequence of this data, "
        "in the data's units, for the features that vary most.</p>",
        _img(figures["reconstructions"], "reconstructions of the best, typical and worst"),
        "<h2>Embeddings</h2>",
        "<p>The latent vector of every sequence, projected on its two principal components"
        + (", coloured by label" if labels is not None else ", coloured by error")
        + "; red circles mark the five worst reconstructed sequences.</p>",
        _img(figures["embeddings"], "map of the embeddings"),
        "<h2>Reconstruction errors</h2>",
        "<p>Mean squared error per sequence in the model's scaled units (log scale); dashed: "
        "median, dotted: worst."
        + (
            " Grey: PCA with as many components as the latent size, fitted on this same data "
            "(in-sample, so a flattering reference)."
            if pca_errors is not None
            else ""
        )
        + "</p>",
        _img(figures["errors"], "distribution of reconstruction errors"),
        "<h3>Worst sequences</h3>",
        f"<table class='list'><tr><th>id</th><th>steps</th><th>error</th></tr>{worst_rows}"
        "</table>",
    ]
    sections.append("<h2>Doctor</h2>")
    sections.append(_doctor_section(doctor))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;"
        "color:#222}h1{margin-bottom:8px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;"
        "margin-top:32px}img{max-width:100%;display:block;margin:8px 0}"
        ".cards{display:flex;flex-wrap:wrap;gap:16px}.cards table{flex:1 1 300px}"
        "table{border-collapse:collapse;font-size:14px}caption{text-align:left;"
        "font-weight:600;padding:4px 0}th,td{text-align:left;padding:3px 8px;"
        "border-bottom:1px solid #eee;vertical-align:top}th{color:#555;font-weight:500}"
        ".note{color:#777}.small{font-size:12px}.error{color:#b00020;font-weight:600}"
        ".warning{color:#a15c00;font-weight:600}.info{color:#2c5d8a}"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )


def _doctor_section(doctor: dict | None) -> str:
    if doctor is None:
        return (
            "<p class='note'>No doctor report given. Run <code>hlae doctor DATA --out "
            "RUN/doctor</code> and pass <code>--doctor RUN/doctor/report.json</code>.</p>"
        )
    findings = doctor.get("findings", [])
    if not findings:
        return "<p>The doctor found nothing wrong.</p>"
    rows = "".join(
        f"<tr><td class='{html.escape(str(f.get('severity', '')))}'>"
        f"{html.escape(str(f.get('severity', '')))}</td>"
        f"<td><code>{html.escape(str(f.get('code', '')))}</code></td>"
        f"<td>{html.escape(str(f.get('message', '')))}{_evidence(f.get('evidence'))}</td>"
        f"<td>{html.escape(str(f.get('fix', '')))}</td></tr>"
        for f in findings
    )
    skipped = "".join(f"<li>{html.escape(str(s))}</li>" for s in doctor.get("skipped", []))
    return (
        "<p>Findings ranked with the most likely cause first.</p>"
        "<table class='list'><tr><th>severity</th><th>finding</th><th>what was found</th>"
        f"<th>fix</th></tr>{rows}</table>"
        + (f"<p class='note'>Not checked:</p><ul class='note'>{skipped}</ul>" if skipped else "")
    )


def _evidence(evidence: Any) -> str:
    """The measurements behind a finding, in small print."""
    if not isinstance(evidence, dict) or not evidence:
        return ""
    shown = ", ".join(
        f"{k} = {_fmt(v) if isinstance(v, float) else v}" for k, v in evidence.items()
    )
    return f"<br><span class='note small'>{html.escape(shown[:400])}</span>"


def write_report(model: Any, X: Any, path: str | Path, **kwargs: Any) -> Path:
    """Build the report (see :func:`build_report`) and write it to ``path``.

    Returns
    -------
    Path
        The file written.
    """
    page = build_report(model, X, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
