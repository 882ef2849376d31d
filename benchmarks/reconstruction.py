"""Held-out reconstruction error on JapaneseVowels and BasicMotions (train -> test).

For each data set, with ``latent_dim=10``: predicting the mean, PCA(10) on zero-padded
flattened sequences, the naive recipe (benchmarks/naive_recipe.py), hlae with
``hierarchy="flat"`` and hlae's default. Errors are MSE over observed steps in units
standardised by the training split's observed steps; median over seeds, with the training
seconds of each. The table is printed and written to docs/reconstruction.md.

    python -m benchmarks.reconstruction            # 3 seeds, both data sets
    python -m benchmarks.reconstruction --seeds 1  # quicker
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import hlae
from benchmarks.naive_recipe import fit_naive_recipe, predict_naive_recipe
from hlae.datasets import load_basic_motions, load_japanese_vowels
from hlae.evaluation import collapse_ratio, mean_baseline, pca_baseline, standardised_mse

DATASETS = {"JapaneseVowels": load_japanese_vowels, "BasicMotions": load_basic_motions}
LATENT = 10


def run_hlae(train, test, seed, **params):
    started = time.perf_counter()
    model = hlae.HierarchicalAutoencoder(latent_dim=LATENT, random_state=seed, **params)
    model.fit(train)
    seconds = time.perf_counter() - started
    recon = model.reconstruct(test)
    return standardised_mse(recon, test, train), seconds, collapse_ratio(recon, test)


def run_naive(train, test, seed):
    fitted = fit_naive_recipe(train, latent_dim=LATENT, seed=seed)
    recon = predict_naive_recipe(fitted, test)
    return standardised_mse(recon, test, train), fitted["seconds"], collapse_ratio(recon, test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--out", default="docs/reconstruction.md")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines = [
        "# Reconstruction benchmark",
        "",
        "Held-out MSE over observed steps, standardised by the training split's observed "
        f"steps; `latent_dim={LATENT}`; median of {args.seeds} seed(s), with the median "
        "training seconds. Reproduce with `python -m benchmarks.reconstruction`.",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads.",
        "",
        "| data set | method | test MSE | / PCA(10) | train s | recon. variance / data's |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.datasets:
        train, _ = DATASETS[name]("train")
        test, _ = DATASETS[name]("test")
        pca = standardised_mse(pca_baseline(train, test, LATENT), test, train)
        rows = {
            "predict the mean": [
                (standardised_mse(mean_baseline(train, test), test, train), 0.0, 0.0)
            ],
            f"PCA({LATENT}), zero-padded": [(pca, 0.0, float("nan"))],
        }
        methods = {
            "naive recipe": run_naive,
            "hlae hierarchy='flat'": lambda tr, te, s: run_hlae(tr, te, s, hierarchy="flat"),
            "hlae default": lambda tr, te, s: run_hlae(tr, te, s),
        }
        for label, method in methods.items():
            rows[label] = []
            for seed in range(args.seeds):
                rows[label].append(method(train, test, seed))
                mse, sec, _ = rows[label][-1]
                print(
                    f"{name:15s} {label:24s} seed {seed}: MSE {mse:.4f} in {sec:.1f} s", flush=True
                )
        for label, results in rows.items():
            mse = statistics.median(r[0] for r in results)
            sec = statistics.median(r[1] for r in results)
            var = statistics.median(r[2] for r in results)
            var_text = "" if np.isnan(var) else f"{var:.2f}"
            lines.append(
                f"| {name} | {label} | {mse:.4f} | {mse / pca:.2f} | {sec:.1f} | {var_text} |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
