"""The ``hlae`` command line. This layer alone prints; the library logs and warns."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hlae.exceptions import HlaeWarning

logger = logging.getLogger("hlae")


# -- data in and out ----------------------------------------------------------------------
def load_data(path: str | Path, args: argparse.Namespace):
    """Read DATA from a CSV/Parquet long table (file or directory), a .npz or a .ts file."""
    from hlae.data import Sequences, from_long_table, read_table
    from hlae.exceptions import DataFileError

    path = Path(path)
    if path.suffix.lower() == ".ts":
        if not path.exists():
            raise DataFileError(f"No such file: {str(path)!r}. Check the path.")
        try:
            from aeon.datasets import load_from_ts_file
        except ImportError:
            raise DataFileError(
                "Reading .ts files needs aeon: pip install 'hlae[aeon]'."
            ) from None
        try:
            X, _ = load_from_ts_file(str(path))
        except Exception as exc:
            raise DataFileError(f"Could not read {str(path)!r} as a .ts file: {exc}") from None
        values = [np.asarray(x, dtype=np.float32).T for x in X]
        names = [f"x{j}" for j in range(values[0].shape[1])]
        return Sequences(values, list(range(len(values))), names, "list")
    features = args.features.split(",") if getattr(args, "features", None) else None
    if path.suffix.lower() == ".npz":
        from hlae.formats import read_npz

        return read_npz(
            path,
            layout=getattr(args, "layout", None),
            id_column=getattr(args, "id_column", None),
            order_column=getattr(args, "order_column", None),
            feature_columns=features,
        )
    frame = read_table(path)
    return from_long_table(
        frame,
        id_column=getattr(args, "id_column", None),
        order_column=getattr(args, "order_column", None),
        feature_columns=features,
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id-column", help="column naming the sequence of each row (default: id)")
    p.add_argument("--order-column", help="column ordering the steps (default: time or step)")
    p.add_argument("--features", help="comma-separated feature columns (default: the rest)")
    p.add_argument(
        "--layout",
        choices=["ntf", "nct"],
        help="axis order of .npz arrays: (n, time, features) or aeon's (n, channels, time)",
    )


MODEL_OPTIONS = {
    "latent_dim": int,
    "hierarchy": str,
    "hidden_size": int,
    "dropout": float,
    "loss": str,
    "lr": lambda v: v if v == "auto" else float(v),
    "weight_decay": float,
    "batch_size": int,
    "max_epochs": lambda v: v if v == "auto" else int(v),
    "patience": int,
    "validation_fraction": float,
    "max_time": float,
    "random_state": int,
    "device": str,
    "precision": str,
    "missing": str,
}


def _add_model_options(p: argparse.ArgumentParser) -> None:
    for name, kind in MODEL_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--chunk-length", type=int, nargs="+", default=None)
    p.add_argument("--scaler", choices=["standard", "robust", "minmax", "none"], default=None)
    p.add_argument("--augmentation", default=None, help="auto, none, or a comma-separated list")


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    """Estimator parameters given on the command line (those left out keep defaults)."""
    params = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k, None) is not None}
    if getattr(args, "chunk_length", None):
        cl = args.chunk_length
        params["chunk_length"] = cl[0] if len(cl) == 1 else tuple(cl)
    if getattr(args, "scaler", None):
        params["scaler"] = None if args.scaler == "none" else args.scaler
    if getattr(args, "augmentation", None):
        a = args.augmentation
        params["augmentation"] = None if a == "none" else a if a == "auto" else tuple(a.split(","))
    return params


class EpochBar:
    """A tqdm progress bar fed by the trainer's per-epoch callback."""

    def __init__(self, total: int, desc: str = "training") -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr)

    def __call__(self, record: dict) -> None:
        val = record["val_loss"]
        self.bar.set_postfix(
            train=f"{record['train_loss']:.4f}",
            val=f"{val:.4f}" if np.isfinite(val) else "-",
        )
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def _write_outputs(model, out: Path, history_title: str) -> None:
    from hlae.plotting import plot_history

    pd.DataFrame(model.history_).to_csv(out / "history.csv", index=False)
    marks = [(model.best_epoch_, "best epoch")]
    plot_history(model.history_, out / "loss_curve.png", title=history_title, marks=marks)


def _parquet_dataset(args: argparse.Namespace):
    from hlae.streaming import ParquetDataset

    return ParquetDataset(
        args.data,
        id_column=getattr(args, "id_column", None),
        order_column=getattr(args, "order_column", None),
        feature_columns=args.features.split(",") if getattr(args, "features", None) else None,
        buffer_size=getattr(args, "buffer_size", 4096),
    )


def say(message: str, *, error: bool = False) -> None:
    """Write one message of a command to the terminal: stdout, or stderr for ``error``.

    The subcommands in :mod:`hlae.commands` write through this, so that printing stays in
    the command line and out of the library modules.
    """
    print(message, file=sys.stderr if error else sys.stdout)


# -- commands -----------------------------------------------------------------------------
def cmd_fit(args: argparse.Namespace) -> int:
    """``hlae fit``: train, then write the model, history.csv and loss_curve.png."""
    from hlae import distributed
    from hlae.config import apply_config, data_options, resolved_config, write_config
    from hlae.data import as_sequences
    from hlae.estimator import HierarchicalAutoencoder
    from hlae.exceptions import DivergenceError, ParameterError
    from hlae.streaming import wants_streaming
    from hlae.training import CHECKPOINT_NAME, load_checkpoint

    # under torchrun every process trains, but only rank 0 writes files and prints
    main_rank = distributed.is_main()
    # every check on the data and the parameters comes before anything is written to --out
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {str(out)!r} is a file; give a directory for the run.")
    config = apply_config(args)  # --config: the file's values where no flag was given
    # a directory or glob of Parquet files streams: data larger than memory
    stream = wants_streaming(args.data, getattr(args, "stream", None))
    seqs = _parquet_dataset(args) if stream else load_data(args.data, args)
    params = {**config.params, **model_params(args)}
    if args.resume:
        saved = out / "run.json"
        if not saved.exists():
            print(f"error: nothing to resume in {out}: no run.json there", file=sys.stderr)
            return 2
        params = {**json.loads(saved.read_text())["params"], **params}
    model = HierarchicalAutoencoder(**params)
    model._check_params()
    if not stream:
        seqs = as_sequences(seqs, missing=model.missing)
    if args.resume and (out / "checkpoint" / CHECKPOINT_NAME).exists():
        load_checkpoint(out / "checkpoint")  # a damaged checkpoint is an error, here
    tensorboard = None
    if main_rank and (args.tensorboard or config.output.get("tensorboard")):
        from hlae.tensorboard import TensorBoardLogger

        tensorboard = TensorBoardLogger(
            out / "tensorboard", model=model, sample=seqs.head(4) if stream else seqs.values[:4]
        )
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    if not args.resume and main_rank:
        # a new run: an older run's checkpoint must never be resumed with these settings
        (out / "checkpoint" / "checkpoint.pt").unlink(missing_ok=True)
        (out / "run.json").write_text(json.dumps({"params": params, "data": str(args.data)}))
        output = {"tensorboard": bool(tensorboard)}
        write_config(
            resolved_config(model.get_params(), data=data_options(args), output=output),
            out / "config.toml",
        )
    bar = (
        EpochBar(None if model.max_epochs == "auto" else int(model.max_epochs))
        if main_rank
        else None
    )

    def callback(record: dict) -> None:
        for each in (bar, tensorboard):
            if each is not None:
                each(record)

    diverged = None
    try:
        with warnings.catch_warnings():
            # an interrupt is reported below, with the command that resumes the run
            warnings.filterwarnings("ignore", "Training stopped by", HlaeWarning)
            model.fit(
                seqs, checkpoint_dir=out / "checkpoint", resume=args.resume, callback=callback
            )
    except DivergenceError as exc:
        diverged = exc
    finally:
        if bar is not None:
            bar.close()
        if tensorboard is not None:
            tensorboard.close()
    if not main_rank:
        interrupted = model.stop_reason_ == "interrupted" or not model.history_
        return 1 if diverged is not None else 130 if interrupted else 0
    resume_hint = f"continue with: hlae fit {args.data} --out {out} --resume"
    if not model.history_:  # stopped before the first epoch finished: nothing to save
        if diverged is not None:
            print(f"error: {diverged}", file=sys.stderr)
            return 1
        print(f"interrupted before the first epoch finished; {resume_hint}", file=sys.stderr)
        return 130
    model.save(out / "model")
    _write_outputs(model, out, f"hlae fit {Path(args.data).name}")
    if diverged is not None:
        print(
            f"error: {diverged}\nthe best model so far is saved in {out / 'model'}",
            file=sys.stderr,
        )
        return 1
    if model.n_missing_:
        print(f"{model.n_missing_} missing value(s) were masked out of the loss")
    last = model.history_[model.best_epoch_] if model.history_ else {}
    print(
        f"trained {len(model.history_)} epochs ({model.stop_reason_}), best epoch "
        f"{model.best_epoch_}: train {last.get('train_loss', float('nan')):.4f}, "
        f"validation {last.get('val_loss', float('nan')):.4f}"
    )
    print(
        f"model: {out / 'model'}\nhistory: {out / 'history.csv'}\nloss curve: "
        f"{out / 'loss_curve.png'}"
    )
    if model.stop_reason_ == "interrupted":  # by SIGINT or SIGTERM
        print(
            "interrupted: the best model so far is saved and the checkpoint of the last "
            f"completed epoch is in {out / 'checkpoint'}; {resume_hint}",
            file=sys.stderr,
        )
        return 130
    return 0


def _load_model(path: str):
    from hlae.estimator import load

    p = Path(path)
    if (p / "model" / "model.json").exists():
        p = p / "model"
    return load(p)


def cmd_encode(args: argparse.Namespace) -> int:
    """``hlae encode``: one embedding per sequence, keyed by the sequence ids."""
    from hlae.data import write_table

    model = _load_model(args.model)
    seqs = load_data(args.data, args)
    z = model.transform(seqs)
    frame = pd.DataFrame(z, columns=[f"z{j}" for j in range(z.shape[1])])
    frame.insert(0, seqs.frame_columns.get("id", "id") or "id", seqs.ids)
    write_table(frame, args.out)
    print(f"wrote {len(frame)} embeddings of size {z.shape[1]} to {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``hlae reconstruct``: reconstructions as a long table in the input's units."""
    from hlae.data import write_table

    model = _load_model(args.model)
    seqs = load_data(args.data, args)
    errors = model.reconstruction_error(seqs)
    if seqs.layout != "frame":  # a .ts file: write it as a long table
        seqs.frame_columns = {"id": "id", "order": "step"}
        seqs.order_values = [np.arange(len(v)) for v in seqs.values]
        seqs.layout = "frame"
    recon = model.reconstruct(seqs)
    write_table(recon, args.out)
    print(
        f"wrote reconstructions of {len(seqs)} sequences to {args.out}; mean reconstruction "
        f"error {errors.mean():.4f} (scaled units)"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``hlae demo``: JapaneseVowels train -> test beside PCA and the mean, with pictures."""
    from hlae.datasets import load_japanese_vowels
    from hlae.estimator import HierarchicalAutoencoder
    from hlae.evaluation import mean_baseline, pca_baseline, standardised_mse
    from hlae.plotting import plot_history, plot_reconstructions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, _ = load_japanese_vowels("train")
    test, _ = load_japanese_vowels("test")
    print(
        f"JapaneseVowels: {len(train)} training and {len(test)} test sequences, "
        f"{train[0].shape[1]} features, lengths {min(map(len, train))} to "
        f"{max(map(len, train))}"
    )
    params = {"latent_dim": 10, "random_state": 0}
    if args.max_time:
        params["max_time"] = args.max_time
    model = HierarchicalAutoencoder(**params)
    bar = EpochBar(None)
    started = time.perf_counter()
    try:
        model.fit(train, callback=bar)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    recon = model.reconstruct(test)
    rows = [
        ("hlae (default, hierarchy='time')", standardised_mse(recon, test, train)),
        ("PCA(10), zero-padded", standardised_mse(pca_baseline(train, test, 10), test, train)),
        ("predict the mean", standardised_mse(mean_baseline(train, test), test, train)),
    ]
    print(
        f"\ntrained in {seconds:.1f} s, {len(model.history_)} epochs "
        f"(best {model.best_epoch_}, {model.stop_reason_})"
    )
    print("\nheld-out MSE on the test split (standardised units, lower is better)")
    for name, value in rows:
        print(f"  {name:<36} {value:.4f}")
    print(f"  hlae / PCA ratio: {rows[0][1] / rows[1][1]:.2f}")
    plot_history(
        model.history_,
        out / "loss_curve.png",
        title="hlae on JapaneseVowels",
        marks=[(model.best_epoch_, "best epoch")],
    )
    plot_reconstructions(test, recon, out / "reconstructions.png")
    pd.DataFrame(model.history_).to_csv(out / "history.csv", index=False)
    model.save(out / "model")
    print(
        f"\nloss curve: {out / 'loss_curve.png'}\nreconstructions: "
        f"{out / 'reconstructions.png'}\nmodel: {out / 'model'}"
    )
    return 0


# -- entry point --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command, the registered extra commands included."""
    parser = argparse.ArgumentParser(
        prog="hlae", description="Hierarchical LSTM autoencoders for multivariate sequences."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="train a model on a long table (CSV/Parquet) or .ts file")
    p.add_argument("data", nargs="?", help="data file (or path in the [data] table of --config)")
    p.add_argument("--out", required=True, help="directory for model, history and plots")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--config", help="TOML file of parameters; command-line flags override it")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard event files to OUT/tensorboard",
    )
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream Parquet data larger than memory (default: for a directory or glob)",
    )
    p.add_argument("--buffer-size", type=int, default=4096, help="sequences held when streaming")
    _add_data_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("encode", help="write one embedding per sequence")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--out", required=True, help="output .csv, .parquet or .npz")
    _add_data_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("reconstruct", help="write reconstructions in the input's units")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--out", required=True, help="output .csv, .parquet or .npz")
    _add_data_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("demo", help="train on JapaneseVowels and compare with PCA and the mean")
    p.add_argument("--out", default="hlae-demo", help="directory for the pictures and model")
    p.add_argument("--max-time", type=float, default=None, help="seconds of training at most")
    p.set_defaults(func=cmd_demo)

    import importlib
    import pkgutil

    import hlae.commands

    for info in sorted(pkgutil.iter_modules(hlae.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hlae.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for bad input or parameters)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        warnings.simplefilter("ignore", HlaeWarning)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # every data and parameter error of hlae is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
