"""``hlae report MODEL DATA --out report.html``: one self-contained page about a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    from hlae.cli import _add_data_options

    p = subparsers.add_parser(
        "report",
        help="write an HTML report: loss curves, reconstructions, embeddings, errors, doctor",
        description=(
            "Write one self-contained HTML page about MODEL on DATA: loss curves, the best, "
            "typical and worst reconstructions, a map of the embeddings, the distribution of "
            "reconstruction errors, and the doctor's findings (--doctor, or RUN/doctor/"
            "report.json when it exists)."
        ),
    )
    p.add_argument("model", help="a model directory (or a run directory of hlae fit)")
    p.add_argument("data", help="data file: CSV/Parquet long table, .npz or .ts")
    p.add_argument("--out", default="report.html", help="output HTML file")
    p.add_argument(
        "--labels",
        help="a column of the long table holding each sequence's label, or a CSV file of "
        "labels (columns id,label; or one label per line, in the data's order)",
    )
    p.add_argument("--doctor", help="a doctor report (report.json of hlae doctor --out DIR)")
    p.add_argument("--title", help="page title")
    _add_data_options(p)
    p.set_defaults(func=cmd_report)


def _labels_from_file(path: Path, ids: list) -> Any:
    from hlae.exceptions import InputError

    frame = pd.read_csv(path)
    if frame.shape[1] >= 2:
        by_id = dict(zip(frame.iloc[:, 0].tolist(), frame.iloc[:, 1].tolist()))
        # ids read from text may be strings where the data's ids are numbers, or the reverse
        as_text = {str(k): v for k, v in by_id.items()}
        if all(i in by_id for i in ids):
            return by_id
        if all(str(i) in as_text for i in ids):
            return {i: as_text[str(i)] for i in ids}
        missing = [i for i in ids if str(i) not in as_text]
        raise InputError(
            f"The labels file {str(path)!r} has no label for {len(missing)} sequence(s), for "
            f"example {missing[0]!r}; its first column must hold the sequence ids."
        )
    values = pd.read_csv(path, header=None).iloc[:, 0].to_numpy()
    if len(values) != len(ids):
        raise InputError(
            f"The labels file {str(path)!r} has {len(values)} lines for {len(ids)} sequences; "
            "give one label per line, in the data's order, or two columns id,label."
        )
    return values


def _read(args: argparse.Namespace, model: Any):
    """The data (and labels from a column), with the model's features by default."""
    from hlae.cli import load_data
    from hlae.data import from_long_table, read_table
    from hlae.exceptions import InputError

    path = Path(args.data)
    label_column = args.labels if args.labels and not Path(args.labels).is_file() else None
    if path.suffix.lower() in (".npz", ".ts"):
        if label_column:
            raise InputError(
                f"--labels {label_column!r} names a column, but {str(path)!r} is not a long "
                "table; give a CSV file of labels instead."
            )
        return load_data(path, args), None
    frame = read_table(path)
    labels = None
    if label_column:
        id_column = args.id_column or next(
            (c for c in ("id", "sequence_id", "series_id", "seq_id", "case_id") if c in frame),
            None,
        )
        if label_column not in frame.columns:
            raise InputError(
                f"--labels {label_column!r} is neither a file nor a column of the table "
                f"({list(map(str, frame.columns))})."
            )
        if id_column is not None and id_column in frame:
            labels = frame.groupby(id_column, sort=False)[label_column].first().to_dict()
        frame = frame.drop(columns=[label_column])
    features = args.features.split(",") if args.features else None
    names = [str(n) for n in model.feature_names_in_]
    if features is None and all(n in frame.columns for n in names):
        features = names  # the model's own features, whatever else the table holds
    seqs = from_long_table(
        frame, id_column=args.id_column, order_column=args.order_column, feature_columns=features
    )
    return seqs, labels


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report and write it."""
    from hlae.cli import _load_model, say
    from hlae.report import write_report

    model = _load_model(args.model)
    seqs, labels = _read(args, model)
    if args.labels and Path(args.labels).is_file():
        labels = _labels_from_file(Path(args.labels), seqs.ids)
    doctor = args.doctor
    if doctor is None:  # a doctor report written next to the model, if there is one
        run = Path(args.model)
        candidates = [run / "doctor" / "report.json", run.parent / "doctor" / "report.json"]
        doctor = next((c for c in candidates if c.is_file()), None)
    title = args.title or f"hlae report: {Path(args.model).name} on {Path(args.data).name}"
    path = write_report(model, seqs, args.out, labels=labels, doctor=doctor, title=title)
    n = len(seqs)
    used = f", doctor findings from {doctor}" if doctor else ""
    say(f"wrote the report on {n} sequences to {path}{used}")
    return 0
