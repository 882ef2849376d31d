"""``hlae doctor``: say why a set-up does not train, and what to change.

``hlae doctor DATA [model options] [--out DIR] [--json] [--quick]`` runs
:func:`hlae.diagnose` on DATA with the model options given (the same as ``hlae fit``'s) and
prints the findings, most likely cause first. ``--out`` writes the pictures and
``report.json``; ``--json`` prints the report as JSON instead of the summary. The exit
status is 1 when a finding of severity ``error`` is present, else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STAGES = (
    "data checks",
    "padding checks",
    "learning-rate range test",
    "gradient probe",
    "overfitting one batch",
    "training",
    "outcome checks",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the ``hlae`` command line."""
    from hlae.cli import _add_data_options, _add_model_options

    p = subparsers.add_parser(
        "doctor",
        help="find out why a set-up does not train, and what to change",
        description="Check DATA and the model set-up given by the model options (as for "
        "'hlae fit'): data checks, short probe runs (learning-rate range test, gradient "
        "norms per level, overfitting one batch) and a short training run judged against "
        "PCA. Prints findings ranked with the most likely cause first.",
    )
    p.add_argument("data", help="long table (CSV/Parquet), .npz or .ts file")
    p.add_argument("--out", help="directory for the pictures and report.json")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--quick", action="store_true", help="a shorter diagnosis (about 16 s instead of 80 s)"
    )
    p.add_argument(
        "--time-budget", type=float, default=None, help="seconds for the whole diagnosis"
    )
    _add_data_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_doctor)


class _StageBar:
    """A progress bar over the doctor's stages; epochs show while it trains."""

    def __init__(self, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(STAGES), unit="stage", file=sys.stderr, disable=quiet)
        self.seen: set[str] = set()

    def __call__(self, stage: str, record: dict | None) -> None:
        if record is not None:
            self.bar.set_postfix(epoch=record["epoch"], loss=f"{record['train_loss']:.4f}")
            return
        self.bar.set_description(stage)
        if stage in STAGES and stage not in self.seen:
            self.seen.add(stage)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def cmd_doctor(args: argparse.Namespace) -> int:
    from hlae.cli import load_data, model_params, say
    from hlae.doctor import diagnose

    seqs = load_data(args.data, args)
    bar = _StageBar(quiet=args.json)
    try:
        report = diagnose(
            seqs,
            quick=args.quick,
            out=args.out,
            time_budget=args.time_budget,
            progress=bar,
            **model_params(args),
        )
    finally:
        bar.close()
    if args.out:
        path = Path(args.out) / "report.json"
        report.pictures["report"] = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_json())
    if args.json:
        say(report.to_json())
    else:
        say(report.summary())
    return 1 if report.at_least("error") else 0
