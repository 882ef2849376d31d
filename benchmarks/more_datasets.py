"""hlae default and flat against PCA on more of aeon's bundled data sets.

A check that the defaults are not tuned to the two data sets of ``benchmarks.reconstruction``:
held-out MSE (standardised by the training split's observed steps, ``latent_dim=10``) of
the default model and of ``hierarchy="flat"`` beside PCA(10), one seed each, with the chunk
length and number of top-level basis points the default chose.

Run from the repository root::

    python -m benchmarks.more_datasets
    python -m benchmarks.more_datasets --datasets GunPoint ItalyPowerDemand --threads 2

Printed only (one seed: a look across data sets, not a figure to quote to two decimals).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import hlae
from hlae.datasets import load_uea
from hlae.evaluation import collapse_ratio, pca_baseline, standardised_mse

DATASETS = (
    "ItalyPowerDemand",
    "CardanoSentiment",
    "GunPoint",
    "PickupGestureWiimoteZ",
    "ArrowHead",
)
LATENT = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-test", type=int, default=300, help="test sequences used at most")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)

    print("| data set | sequences | features | lengths | PCA(10) | model | MSE | / PCA | "
          "recon. variance / data's | chunks | basis | train s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        train, _ = load_uea(name, "train")
        test, _ = load_uea(name, "test")
        test = test[: args.max_test]
        lengths = np.array([len(x) for x in train])
        pca = standardised_mse(pca_baseline(train, test, LATENT), test, train)
        for label, params in (("default", {}), ("flat", {"hierarchy": "flat"})):
            started = time.perf_counter()
            model = hlae.HierarchicalAutoencoder(
                latent_dim=LATENT, random_state=args.seed, **params
            ).fit(train)
            seconds = time.perf_counter() - started
            recon = model.reconstruct(test)
            mse = standardised_mse(recon, test, train)
            print(
                f"| {name} | {len(train)} | {train[0].shape[1]} | {lengths.min()}-{lengths.max()} "
                f"| {pca:.4f} | {label} | {mse:.4f} | {mse / pca:.2f} | "
                f"{collapse_ratio(recon, test):.2f} | {model.chunk_lengths_ or '-'} | "
                f"{model.n_basis_} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
