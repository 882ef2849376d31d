"""``hlae fit-detector`` and ``hlae score``: anomaly detection from the command line.

``hlae fit-detector DATA --out DIR`` trains an :class:`~hlae.AnomalyDetector` and saves it.
``hlae score MODEL DATA --out FILE`` writes one row per sequence (id, score, label), or one
row per step with ``--steps``, and with ``--plot`` a picture of a recording, its per-step
scores and the threshold.

MODEL may be a saved detector or a plain autoencoder (a directory written by ``hlae fit``
or ``model.save``). A plain autoencoder has no threshold of its own: it is calibrated on
the data given with ``--reference`` (normal data, such as its training data) or, without
it, on DATA itself, so that about ``--contamination`` of DATA is labelled anomalous.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hlae.anomaly import SCORES, AnomalyDetector, is_detector_dir, load_detector
from hlae.data import (
    ID_COLUMN_GUESSES,
    ORDER_COLUMN_GUESSES,
    Sequences,
    from_long_table,
    read_table,
    write_table,
)
from hlae.exceptions import InputError, ParameterError

STREAM_ID = "recording"  # id given to a table without an id column in stream mode


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fit-detector`` and ``score`` to the ``hlae`` command line."""
    from hlae.cli import _add_data_options, _add_model_options

    p = subparsers.add_parser(
        "fit-detector",
        help="train an anomaly detector and save it",
        description="Train an autoencoder on (mostly normal) DATA and save it as an anomaly "
        "detector with a threshold at the 1 - contamination quantile of DATA's scores.",
    )
    p.add_argument("data", help="long table (CSV/Parquet) or .ts file")
    p.add_argument("--out", required=True, help="directory for the detector")
    _add_detector_options(p)
    _add_data_options(p)
    _add_label_option(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_fit_detector)

    p = subparsers.add_parser(
        "score",
        help="anomaly scores and labels per sequence or per step",
        description="Score DATA with a saved detector or a plain autoencoder. Without "
        "--steps: one row per sequence (id, score, label); in stream mode a recording's "
        "score is its highest step score. With --steps: one row per step.",
    )
    p.add_argument("model", help="a saved detector, or an autoencoder directory")
    p.add_argument("data", help="long table (CSV/Parquet) or .ts file")
    p.add_argument("--out", required=True, help="output .csv, .parquet or .npz")
    p.add_argument("--steps", action="store_true", help="one row per step")
    p.add_argument("--plot", help="PNG of a recording with its step scores and the threshold")
    p.add_argument("--plot-id", help="id of the sequence to plot (default: the first)")
    p.add_argument(
        "--reference",
        help="plain autoencoder only: normal data to calibrate the threshold on "
        "(default: DATA itself)",
    )
    _add_detector_options(p, for_score=True)
    _add_data_options(p)
    _add_label_option(p)
    p.set_defaults(func=cmd_score)


def _add_detector_options(p: argparse.ArgumentParser, for_score: bool = False) -> None:
    later = " (plain autoencoder only)" if for_score else ""
    p.add_argument(
        "--contamination",
        type=float,
        default=None,
        help="expected share of anomalies, in (0, 0.5] (default 0.1)"
        + (
            "; with a saved detector, re-sets its threshold from its training scores"
            if for_score
            else ""
        ),
    )
    p.add_argument(
        "--window", type=int, default=None, help="steps per window: stream mode" + later
    )
    p.add_argument("--stride", type=int, default=None, help="steps between windows" + later)
    p.add_argument(
        "--score", choices=SCORES, default=None, help="how errors become scores" + later
    )
    p.add_argument("--smoothing", type=int, default=None, help="steps of score smoothing" + later)


def _add_label_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-column",
        help="column of known anomaly labels (0/1) to leave out of the features; plotted "
        "for comparison",
    )


def _detector_params(args: argparse.Namespace) -> dict:
    names = ("contamination", "window", "stride", "score", "smoothing")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


# -- data ---------------------------------------------------------------------------------
def read_sequences(
    path: str | Path, args: argparse.Namespace, *, stream: bool
) -> tuple[Sequences, list[np.ndarray] | None]:
    """Read DATA; also return the known labels per step when ``--label-column`` is given.

    In stream mode a table without an id column is one recording.
    """
    from hlae.cli import load_data

    path = Path(path)
    label = getattr(args, "label_column", None)
    if path.suffix.lower() in (".ts", ".npz"):
        if label:
            raise ParameterError("--label-column applies to CSV and Parquet tables only.")
        return load_data(path, args), None
    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    if label and label not in columns:
        raise InputError(f"--label-column {label!r} is not a column of {str(path)!r}: {columns}.")
    id_column = args.id_column or next((c for c in ID_COLUMN_GUESSES if c in columns), None)
    if id_column is None and stream:
        frame = frame.copy()
        frame.insert(0, STREAM_ID, 0)
        id_column = STREAM_ID
    order_column = args.order_column or next(
        (c for c in ORDER_COLUMN_GUESSES if c in columns), None
    )
    if args.features:
        features = args.features.split(",")
    else:
        skip = {id_column, order_column, label}
        features = [c for c in columns if c not in skip]
    seqs = from_long_table(
        frame,
        id_column=id_column,
        order_column=order_column,
        feature_columns=features + ([label] if label else []),
    )
    if not label:
        return seqs, None
    labels = [v[:, -1].astype(np.int64) for v in seqs.values]
    values = [np.ascontiguousarray(v[:, :-1]) for v in seqs.values]
    seqs = Sequences(
        values, seqs.ids, seqs.feature_names[:-1], "list", frame_columns=seqs.frame_columns
    )
    return seqs, labels


# -- commands -----------------------------------------------------------------------------
def cmd_fit_detector(args: argparse.Namespace) -> int:
    from hlae.cli import EpochBar, model_params, say

    detector = AnomalyDetector(**_detector_params(args), autoencoder_params=model_params(args))
    detector._check_params()
    seqs, _ = read_sequences(args.data, args, stream=detector.window is not None)
    bar = EpochBar(_epoch_guess(detector))
    try:
        detector.fit(seqs, callback=bar)
    finally:
        bar.close()
    detector.save(args.out)
    ae = detector.autoencoder_
    unit = "steps" if detector.window is not None else "sequences"
    say(
        f"trained {len(ae.history_)} epochs ({ae.stop_reason_}); threshold "
        f"{detector.threshold_:.4g} ({detector.score} score): {int(detector.labels_.sum())} of "
        f"{len(detector.labels_)} training {unit} above it"
    )
    say(f"detector: {args.out}")
    return 0


def _epoch_guess(detector: AnomalyDetector) -> int | None:
    epochs = (detector.autoencoder_params or {}).get("max_epochs", "auto")
    return None if epochs == "auto" else int(epochs)


def _saved_detector(args: argparse.Namespace, params: dict) -> AnomalyDetector:
    """Load a saved detector; only its threshold may change (``--contamination``)."""
    if args.reference:
        raise ParameterError("--reference applies to a plain autoencoder, not a detector.")
    fixed = sorted(set(params) - {"contamination"})
    if fixed:
        raise ParameterError(
            f"--{', --'.join(fixed)} cannot change a saved detector (they shape its "
            "scores); fit a new one with `hlae fit-detector`."
        )
    detector = load_detector(args.model)
    if "contamination" in params:
        detector.set_params(contamination=params["contamination"])
        detector._check_params()
        detector._set_threshold()
    return detector


def cmd_score(args: argparse.Namespace) -> int:
    from hlae.cli import _load_model, say

    params = _detector_params(args)
    if is_detector_dir(args.model):
        detector = _saved_detector(args, params)
        where = "from the detector's training scores"
        stream = detector.window is not None
    else:
        model = _load_model(args.model)
        AnomalyDetector(**params)._check_params()  # refuse bad options before reading data
        stream = params.get("window") is not None
    seqs, labels = read_sequences(args.data, args, stream=stream)
    if not is_detector_dir(args.model):
        if args.reference:
            reference, _ = read_sequences(args.reference, args, stream=stream)
            where = f"calibrated on {args.reference}"
        else:
            reference = seqs
            where = "calibrated on DATA itself (no --reference given)"
        detector = AnomalyDetector.from_autoencoder(model, reference, **params)

    id_col = seqs.frame_columns.get("id", "id") or "id"
    steps = detector.score_steps(seqs)

    if args.steps:
        frames = []
        for key, s in zip(seqs.ids, steps):
            part = {id_col: key, "step": np.arange(len(s)), "score": s}
            if stream:
                part["label"] = (s > detector.threshold_).astype(np.int64)
            frames.append(pd.DataFrame(part))
        table = pd.concat(frames, ignore_index=True)
    else:
        if stream:
            scores = np.array([s.max() for s in steps])
        else:
            scores = detector.decision_function(seqs)
        table = pd.DataFrame(
            {id_col: seqs.ids, "score": scores, "label": (scores > detector.threshold_) * 1}
        )
        if stream:
            table["anomalous_steps"] = [int((s > detector.threshold_).sum()) for s in steps]
    write_table(table, args.out)

    unit = "steps" if stream else "sequences"
    flagged = (
        sum(int((s > detector.threshold_).sum()) for s in steps)
        if stream
        else int(table["label"].sum())
    )
    total = sum(len(s) for s in steps) if stream else len(seqs)
    say(
        f"{flagged} of {total} {unit} above the threshold {detector.threshold_:.4g} "
        f"({detector.score} score, contamination {detector.contamination:g}, threshold {where})"
    )
    say(f"scores: {args.out}")
    if args.plot:
        path = _plot(args, detector, seqs, steps, labels)
        say(f"plot: {path}")
    return 0


def _plot(args, detector: AnomalyDetector, seqs: Sequences, steps, labels) -> Path:
    from hlae.anomaly import plot_step_scores

    index = 0
    if args.plot_id is not None:
        keys = [str(k) for k in seqs.ids]
        if args.plot_id not in keys:
            raise InputError(f"--plot-id {args.plot_id!r} is not among the ids of DATA.")
        index = keys.index(args.plot_id)
    stream = detector.window is not None
    return plot_step_scores(
        seqs.values[index],
        steps[index],
        detector.threshold_ if stream else None,
        args.plot,
        labels=labels[index] if labels is not None else None,
        feature_names=seqs.feature_names,
        title=f"{Path(args.data).name}, sequence {seqs.ids[index]!r}: {detector.score} score",
    )
