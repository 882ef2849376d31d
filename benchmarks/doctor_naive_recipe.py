"""The doctor's worked example: the naive recipe on JapaneseVowels, diagnosed and fixed.

1. The naive recipe as its users have it: every sequence zero-padded to the longest, a
   standard scaler fitted on the padded array, :class:`NaiveLSTMAutoencoder` trained with
   the mean squared error over every step. ``hlae.diagnose_model`` is given that module,
   the padded and scaled array, and that loss.
2. Half the fixes, in the user's own code: scaler fitted on the observed steps, unpadded
   sequences, a masked loss; the module is unchanged, so it still reads the padding.
3. All the fixes: hlae's default :class:`~hlae.HierarchicalAutoencoder`, diagnosed with
   ``hlae.diagnose``.

Then the held-out (test split) error of the naive recipe and of hlae's default model, in
standardised units (:mod:`hlae.evaluation`), against PCA(10) and the mean.

Run from the repository root (about 6 minutes on two cores)::

    python -m benchmarks.doctor_naive_recipe --out doctor-naive
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="directory for the doctor's pictures")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--epochs", type=int, default=100, help="naive recipe's epochs")
    parser.add_argument("--time-budget", type=float, default=150.0, help="doctor's seconds")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from torch import nn

    try:
        import hlae
    except ImportError:  # run as a script: put the repository root on the path
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import hlae
    from benchmarks.naive_recipe import (
        NaiveLSTMAutoencoder,
        fit_naive_recipe,
        pad_post,
        predict_naive_recipe,
    )
    from hlae.data import FeatureScaler
    from hlae.datasets import load_japanese_vowels
    from hlae.evaluation import mean_baseline, pca_baseline, standardised_mse

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    train, _ = load_japanese_vowels("train")
    test, _ = load_japanese_vowels("test")
    out = args.out

    def show(title: str, report) -> None:
        print(f"\n=== {title} ===")
        print(report.summary())

    # 1. the naive recipe as it is
    padded = pad_post(train, max(len(x) for x in train))
    flat = padded.reshape(-1, padded.shape[2])
    scaled = ((flat - flat.mean(0)) / flat.std(0)).reshape(padded.shape).astype(np.float32)
    torch.manual_seed(0)
    report = hlae.diagnose_model(
        NaiveLSTMAutoencoder(12, latent_dim=10),
        scaled,
        loss_fn=nn.MSELoss(),
        lr=5e-4,
        batch_size=16,
        time_budget=args.time_budget,
        out=os.path.join(out, "naive") if out else None,
    )
    show("1. naive recipe: padded array, scaler over the padding, MSE over every step", report)

    # 2. the user's own fixes: observed-step scaler, unpadded sequences, masked loss
    observed_scaled = FeatureScaler("standard").fit(train).transform(train)
    torch.manual_seed(0)
    report = hlae.diagnose_model(
        NaiveLSTMAutoencoder(12, latent_dim=10),
        observed_scaled,
        lr=5e-4,
        batch_size=16,
        quick=True,
        out=os.path.join(out, "half-fixed") if out else None,
    )
    show("2. same module; scaler on observed steps, unpadded data, masked loss", report)

    # 3. hlae's default model, which does all of it
    report = hlae.diagnose(train, random_state=0, out=os.path.join(out, "hlae") if out else None)
    show("3. hlae.HierarchicalAutoencoder() with its defaults", report)

    # held-out errors on the test split
    print("\n=== held-out error on the JapaneseVowels test split (standardised MSE) ===")
    started = time.perf_counter()
    naive = fit_naive_recipe(train, epochs=args.epochs)
    naive_error = standardised_mse(predict_naive_recipe(naive, test), test, train)
    naive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = hlae.HierarchicalAutoencoder(random_state=0).fit(train)
    hlae_error = standardised_mse(model.reconstruct(test), test, train)
    hlae_seconds = time.perf_counter() - started
    pca_error = standardised_mse(pca_baseline(train, test, 10), test, train)
    mean_error = standardised_mse(mean_baseline(train, test), test, train)
    print(f"predict the mean      {mean_error:.3f}")
    print(f"PCA(10)               {pca_error:.3f}")
    print(
        f"naive recipe          {naive_error:.3f}  ({args.epochs} epochs, {naive_seconds:.0f} s)"
    )
    print(
        f"hlae default model    {hlae_error:.3f}  ({len(model.history_)} epochs, "
        f"{hlae_seconds:.0f} s; ratio to PCA(10) {hlae_error / pca_error:.2f})"
    )
    return 0 if hlae_error < pca_error else 1


if __name__ == "__main__":
    sys.exit(main())
