"""``hlae export MODEL --length T --out FILE``: the encoder as a ``torch.export`` program."""

from __future__ import annotations

import argparse

import numpy as np

TOLERANCE = 1e-4  # largest difference from the PyTorch model accepted after export


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export the encoder for fixed-length input with torch.export (.pt2)",
        description=(
            "Export the trained encoder for sequences of exactly LENGTH steps. The program "
            "takes float32 (batch, LENGTH, n_features) values in the data's units and returns "
            "(batch, latent_dim) embeddings; load it with torch.export.load(FILE).module()."
        ),
    )
    p.add_argument("model", help="a model directory (or a run directory of hlae fit)")
    p.add_argument("--length", type=int, required=True, help="steps per input sequence")
    p.add_argument("--out", required=True, help="output file, e.g. encoder.pt2")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Export, then check the exported encoder against the model on random input."""
    from hlae.cli import _load_model, say
    from hlae.export import export_encoder, load_encoder, max_difference

    model = _load_model(args.model)
    path = export_encoder(model, args.out, args.length)

    # random input on the data's scale: the exported program must agree with the model
    rng = np.random.default_rng(0)
    shape = (4, args.length, model.n_features_in_)
    X = model.scaler_.shift_ + model.scaler_.scale_ * rng.standard_normal(shape)
    difference = max_difference(model, load_encoder(path), X.astype(np.float32))
    if not difference <= TOLERANCE:
        say(
            f"error: the exported encoder differs from the model by up to {difference:.3g} "
            f"(more than {TOLERANCE:g}); do not use {path}",
            error=True,
        )
        return 1
    say(
        f"exported the encoder for {args.length}-step sequences of {model.n_features_in_} "
        f"features to {path}; largest difference from the model on random input "
        f"{difference:.2g}"
    )
    return 0
