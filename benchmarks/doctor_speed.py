"""How long the doctor takes on JapaneseVowels, and what it says about the default set-up.

Runs ``hlae.diagnose`` on the JapaneseVowels training split with the default
``HierarchicalAutoencoder`` set-up, in full and in quick mode, and prints for each the wall
time, its ratio to the budget (90 s full, 20 s quick: a ratio at or below 1 meets it) and
every finding of severity warning or above (the default set-up should have none).

Run from the repository root::

    python -m benchmarks.doctor_speed                 # both modes, two threads
    python -m benchmarks.doctor_speed --mode quick --repeat 2 --threads 1

Timings depend on the load of the machine: run twice and take the better, and say what else
was running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

BUDGETS = {"full": 90.0, "quick": 20.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["full", "quick", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (two cores)")
    parser.add_argument("--out", default=None, help="directory for the doctor's pictures")
    args = parser.parse_args(argv)

    import torch

    try:
        import hlae
        from hlae.datasets import load_japanese_vowels
    except ImportError:  # run as a script: put the repository root on the path
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import hlae
        from hlae.datasets import load_japanese_vowels

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    X, _ = load_japanese_vowels("train")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"JapaneseVowels train: {len(X)} sequences; torch threads {args.threads}; "
        f"{os.cpu_count()} cores; load average {load:.1f} at start"
    )
    modes = ["full", "quick"] if args.mode == "both" else [args.mode]
    failed = False
    for mode in modes:
        best, report = float("inf"), None
        for run in range(args.repeat):
            started = time.perf_counter()
            out = os.path.join(args.out, mode) if args.out else None
            report = hlae.diagnose(X, quick=mode == "quick", random_state=0, out=out)
            seconds = time.perf_counter() - started
            best = min(best, seconds)
            print(f"  {mode} run {run + 1}: {seconds:.1f} s")
        ratio = best / BUDGETS[mode]
        m = report.measurements
        flagged = report.at_least("warning")
        print(
            f"{mode}: {best:.1f} s, budget {BUDGETS[mode]:.0f} s, ratio {ratio:.2f}; "
            f"training {m.get('epochs')} epochs ({m.get('stop_reason')}); held-out error "
            f"{m.get('model_error', float('nan')):.3f} vs PCA(10) "
            f"{m.get('pca_error', float('nan')):.3f}; suggested lr "
            f"{m.get('suggested_lr', float('nan')):.2g}"
        )
        print(f"  findings: {[(f.code, f.severity) for f in report.findings] or 'none'}")
        print(f"  warnings or errors: {[f.code for f in flagged] or 'none'}")
        failed |= ratio > 1 or bool(flagged)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
