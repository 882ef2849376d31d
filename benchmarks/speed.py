"""Speed and scale: time to quality, throughput, padding waste and streaming memory.

Every comparison runs in this one invocation and is reported as a ratio against its
baseline measured in the same run (machine load changes from run to run):

- time to quality: training seconds until held-out MSE (standardised units, latent size
  10) first reaches PCA(10)'s, on OSULeaf (427 steps, univariate) and on synthetic
  oscillators of 1,024 and 4,096 steps (4 features); hlae's default against
  ``hierarchy="flat"`` at the same widths. Held-out error is measured on the weights fit()
  would keep (the running average), every few seconds of training; the time spent
  measuring is not counted.
- throughput: sequences per second in training (forward, backward, AdamW step) and in
  inference at 256, 1,024 and 4,096 steps (8 features, batch 32), default against flat,
  and the LSTMs' floating-point rate as a fraction of a large matrix multiply's measured
  here. LSTM work is counted exactly from the steps each LSTM runs: ``8 H (D + H)`` per
  step and direction forward, three times that for training; the linear layers are left
  out, so the fraction is a lower bound.
- padding: share of computed steps that are padding on lengths spread 10x (100 to 1,000),
  batches grouped by length (hlae.data.length_batches) against random batches.
- memory: peak resident memory of ``hlae fit`` streaming a Parquet directory, 10x the
  data against 1x (and the in-memory reader beside it).

    python -m benchmarks.speed                 # everything, full budgets (over an hour)
    python -m benchmarks.speed --quick         # short budgets and smaller sets
    python -m benchmarks.speed --parts padding throughput --quick

Results are printed and written to docs/speed.md (``--out``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import hlae
from hlae import model as hlae_model
from hlae.data import length_batches, pad_batch
from hlae.datasets import load_osuleaf, make_oscillators
from hlae.estimator import default_chunk_lengths
from hlae.evaluation import pca_baseline, standardised_mse
from hlae.model import HierarchicalLSTMAutoencoder
from hlae.training import Trainer

PARTS = ("padding", "throughput", "memory", "quality")
LATENT = 10


# -- time to quality ----------------------------------------------------------------------
class _OutOfTime(Exception):
    pass


def time_to_quality(train, test, targets: dict[str, float], budget: float, every: float,
                    seed: int = 0, epochs: int | None = None, **params) -> dict:  # fmt: skip
    """Train once; record held-out MSE against training seconds; first time under targets.

    ``epochs`` stops after that many epochs instead (with ``every=0``, one point per epoch).
    """
    trainers: list[Trainer] = []
    original = Trainer.evaluate

    def evaluate(self, values, batch_size=256):  # remember the trainer, to read its weights
        trainers[:] = [self]
        return original(self, values, batch_size)

    model = hlae.HierarchicalAutoencoder(latent_dim=LATENT, random_state=seed, **params)
    curve: list[tuple[float, float]] = []
    clock = {"start": time.perf_counter(), "excluded": 0.0, "last": -math.inf}

    def held_out() -> float:
        trained = model.module_
        if trainers:
            model.module_ = trainers[0].kept_module
        try:
            return standardised_mse(model.reconstruct(test), test, train)
        finally:
            model.module_ = trained

    def callback(record: dict) -> None:
        tick = time.perf_counter()
        seconds = tick - clock["start"] - clock["excluded"]
        if seconds - clock["last"] >= every or seconds >= budget:
            curve.append((seconds, held_out()))
            clock["last"] = seconds
        clock["excluded"] += time.perf_counter() - tick
        if seconds >= budget or (epochs is not None and record["epoch"] + 1 >= epochs):
            raise _OutOfTime

    Trainer.evaluate = evaluate
    stop = "budget"
    try:
        model.fit(train, callback=callback)
        stop = model.stop_reason_
        seconds = time.perf_counter() - clock["start"] - clock["excluded"]
        curve.append((seconds, standardised_mse(model.reconstruct(test), test, train)))
    except _OutOfTime:
        pass
    finally:
        Trainer.evaluate = original
    reached = {
        name: next((t for t, mse in curve if mse <= value), None)
        for name, value in targets.items()
    }
    best = min(curve, key=lambda c: c[1])
    return {"curve": curve, "reached": reached, "best": best, "stop": stop}


def _mse_at(curve, seconds: float) -> float:
    before = [mse for t, mse in curve if t <= seconds]
    return min(before) if before else math.nan


def part_quality(args, lines: list[str]) -> None:
    sets = {}
    train, _ = load_osuleaf("train")
    test, _ = load_osuleaf("test")
    sets["OSULeaf (427 steps, 1 feature)"] = (train, test, args.budget)
    for T in (1024, 4096):
        # equal lengths: flat then runs PyTorch's fused LSTM on CPU (see Throughput)
        n = (96 if T == 1024 else 48) * (1 if args.quick else 2)
        kwargs = {"n_features": 4, "min_length": T, "max_length": T}
        tr = make_oscillators(n_sequences=n, random_state=1, **kwargs)
        te = make_oscillators(n_sequences=n // 2, random_state=2, **kwargs)
        sets[f"oscillators ({n} x {T} steps, 4 features)"] = (tr, te, args.budget_long)

    lines += [
        "## Time to quality",
        "",
        f"Training seconds until held-out MSE first reaches a target (checked every "
        f"{args.every:g} s of training; budget per run in the last column). Latent size "
        f'{LATENT}, default parameters otherwise; flat = `hierarchy="flat"` at the same '
        "widths. 'no' = not reached within the budget. An epoch in progress when the "
        "budget runs out is finished, so a run can pass its budget."
        + (
            " Every LSTM batch of hlae was packed, the path before full-length rows ran "
            "unpacked (`--packed-lstm`)."
            if args.packed_lstm
            else ""
        ),
        "",
        "| data | model | PCA(10) | 2 x PCA | reaches 2 x PCA after | reaches PCA after | "
        "MSE at 120 s | best (at s) | stop | budget s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (train, test, budget) in sets.items():
        pca = standardised_mse(pca_baseline(train, test, LATENT), test, train)
        targets = {"2pca": 2 * pca, "pca": pca}
        for label, params in (("hlae default", {}), ("flat", {"hierarchy": "flat"})):
            print(f"  time to quality: {name}, {label} ...", flush=True)
            r = time_to_quality(train, test, targets, budget, args.every, **params)

            def when(key, r=r):
                t = r["reached"][key]
                return f"{t:.0f} s" if t is not None else "no"

            lines.append(
                f"| {name} | {label} | {pca:.3f} | {2 * pca:.3f} | {when('2pca')} | "
                f"{when('pca')} | {_mse_at(r['curve'], 120):.3f} | {r['best'][1]:.3f} "
                f"({r['best'][0]:.0f}) | {r['stop']} | {budget:.0f} |"
            )
            curve = ", ".join(f"{t:.0f}s:{m:.3f}" for t, m in r["curve"])
            print(f"    {lines[-1]}\n    curve: {curve}", flush=True)
    lines.append("")


def part_settings(args, lines: list[str]) -> None:
    """OSULeaf held-out MSE per epoch for a few settings (asked for by name only)."""
    train, _ = load_osuleaf("train")
    test, _ = load_osuleaf("test")
    pca = standardised_mse(pca_baseline(train, test, LATENT), test, train)
    n = args.settings_epochs or (25 if args.quick else 80)
    settings = [
        {},
        {"batch_size": 8},
        {"batch_size": 4},
        {"lr": 0.01},
        {"batch_size": 8, "lr": 0.01},
        {"augmentation": None},
        {"chunk_length": 8},
    ]
    lines += [
        "## OSULeaf: settings against epochs",
        "",
        f"Held-out MSE of the kept (averaged) weights after each epoch, {n} epochs at most, "
        f"PCA(10) = {pca:.3f}; seconds are training seconds on this machine"
        + (", every LSTM batch packed" if args.packed_lstm else "")
        + ". Everything else default.",
        "",
        "| setting | epochs to <= 2 x PCA | MSE after 25 epochs | MSE after the last epoch "
        "| best | seconds per epoch |",
        "|---|---|---|---|---|---|",
    ]
    for params in settings:
        print(f"  settings: {params} ...", flush=True)
        r = time_to_quality(train, test, {}, math.inf, 0.0, epochs=n, **params)
        mses = [m for _, m in r["curve"]]
        first = next((i + 1 for i, m in enumerate(mses) if m <= 2 * pca), None)
        at25 = mses[min(24, len(mses) - 1)]
        lines.append(
            f"| {params or 'default'} | {first or 'no'} | {at25:.3f} | {mses[-1]:.3f} "
            f"({len(mses)}) | {min(mses):.3f} | {r['curve'][-1][0] / len(mses):.1f} |"
        )
        print(f"    {lines[-1]}", flush=True)
    lines.append("")


# -- throughput ---------------------------------------------------------------------------
def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large float32 matrix multiply on this machine and thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - tick)
    return 2 * n**3 / best


def lstm_flops(module: nn.Module, x, mask, lengths) -> float:
    """Forward FLOPs of every LSTM in ``module`` on one batch, counted from packed steps."""
    total = [0.0]

    def hook(lstm, inputs, output):
        data = inputs[0]
        steps = (
            data.data.shape[0] if hasattr(data, "batch_sizes") else data.shape[0] * data.shape[1]
        )
        directions = 2 if lstm.bidirectional else 1
        H, D = lstm.hidden_size, lstm.input_size
        total[0] += steps * directions * 8 * H * (D + H)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.LSTM)]
    with torch.no_grad():
        module(x, mask, lengths)
    for h in handles:
        h.remove()
    return total[0]


def _time(fn, repeats: int) -> float:
    """Best of ``repeats`` timed calls after a warm-up; one timed call when ``repeats`` is 0."""
    if repeats == 0:
        tick = time.perf_counter()
        fn()
        return time.perf_counter() - tick
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


@contextmanager
def lstm_path(all_packed: bool):
    """Run hlae's LSTMs with every batch packed (True: the path before full-length rows ran
    unpacked, ``hlae.model._run_all_packed``) or through hlae's own path (False)."""
    original = hlae_model._run_packed
    if all_packed:
        hlae_model._run_packed = hlae_model._run_all_packed
    try:
        yield
    finally:
        hlae_model._run_packed = original


def _batch(T: int, spread: bool, rng: np.random.Generator, B: int = 32, F: int = 8):
    lengths = rng.integers(int(0.9 * T), T + 1, size=B) if spread else np.full(B, T)
    seqs = [np.cumsum(rng.normal(size=(n, F)), 0).astype(np.float32) / 10 for n in lengths]
    return pad_batch(seqs, np.arange(B))


def part_throughput(args, lines: list[str]) -> None:
    peak = matmul_rate()
    B, F, H = 32, 8, 64
    rng = np.random.default_rng(0)
    rows = []
    variants = [("hlae default", False, False), ("flat", True, False),
                ("hlae default, every LSTM batch packed (before)", False, True)]  # fmt: skip
    for spread in (False, True):
        for T in (256, 1024, 4096):
            x, mask, lengths = _batch(T, spread, rng, B, F)
            runs = []
            for label, flat, all_packed in variants:
                if spread and flat and T > args.flat_spread_max:
                    continue  # hours per step on CPU: see the note under the table
                if not spread and all_packed:
                    continue  # the same as hlae's path when every length is equal
                chunks = () if flat else default_chunk_lengths(np.array([T]))
                torch.manual_seed(0)
                module = HierarchicalLSTMAutoencoder(
                    F, latent_dim=LATENT, hidden_size=H, chunk_lengths=chunks
                )
                optimiser = torch.optim.AdamW(module.parameters(), lr=1e-3)

                def train_step(module=module, opt=optimiser, x=x, mask=mask, lengths=lengths):
                    module.train()
                    pred, _ = module(x, mask, lengths)
                    loss = (pred - x).square().mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

                def infer(module=module, x=x, mask=mask, lengths=lengths):
                    module.eval()
                    with torch.no_grad():
                        module(x, mask, lengths)

                with lstm_path(all_packed):
                    flops = lstm_flops(module, x, mask, lengths)
                    if not (spread and flat):  # warm-up (flat on spread lengths is too slow)
                        train_step()
                        infer()
                runs.append(
                    {
                        "label": label,
                        "all_packed": all_packed,
                        "chunks": chunks,
                        "train": train_step,
                        "infer": infer,
                        "flops": flops,
                        "train_s": math.inf,
                        "infer_s": math.inf,
                        "slow": spread and flat,
                    }
                )
            # rounds over the variants in turn, best time of each: a burst of load from
            # other processes then slows every variant alike rather than one
            for round_ in range(args.repeats):
                for run in runs:
                    if run["slow"] and round_ > 0:
                        continue
                    print(
                        f"  throughput: {T} steps, spread {spread}, {run['label']} "
                        f"(round {round_ + 1}) ...",
                        flush=True,
                    )
                    with lstm_path(run["all_packed"]):
                        run["train_s"] = min(run["train_s"], _time(run["train"], 0))
                        run["infer_s"] = min(run["infer_s"], _time(run["infer"], 0))
            for run in runs:
                rows.append(
                    {"spread": spread, "T": T, "model": run["label"], "chunks": run["chunks"],
                     "train_s": run["train_s"], "infer_s": run["infer_s"],
                     "train_rate": 3 * run["flops"] / run["train_s"] / peak,
                     "infer_rate": run["flops"] / run["infer_s"] / peak}
                )  # fmt: skip
                print(f"    {rows[-1]}", flush=True)
    frame = pd.DataFrame(rows)
    lines += [
        "## Throughput",
        "",
        f"Batch of {B} sequences, {F} features, hidden size {H}, latent {LATENT}; best of "
        f"{args.repeats} timed steps after a warm-up, the variants timed in turn (flat on "
        "spread lengths: one step, no warm-up). Large-matmul rate measured here: "
        f"{peak / 1e9:.1f} GFLOP/s "
        f"({torch.get_num_threads()} thread(s)). 'of peak' = the LSTMs' FLOP rate (counted "
        "from the steps they run) over that rate. 'equal': every sequence has the length "
        "shown; 'spread': lengths uniform in 0.9T..T, as in a batch grouped by length from "
        "real data. 'every LSTM batch packed (before)' = hlae's model with "
        "`hlae.model._run_all_packed` for every LSTM, the path before full-length rows ran "
        "through the fused kernel unpacked.",
        "",
        "| lengths | steps | model | chunks | train seq/s | inference seq/s | train, of peak "
        "| inference, of peak | train speed vs flat | inference speed vs flat |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = frame[(frame["T"] == r["T"]) & (frame["spread"] == r["spread"])]
        flat = same[same["model"] == "flat"]
        vs = ("-", "-")
        if len(flat):
            f = flat.iloc[0]
            vs = (f"{f['train_s'] / r['train_s']:.2f}x", f"{f['infer_s'] / r['infer_s']:.2f}x")
        lines.append(
            f"| {'spread' if r['spread'] else 'equal'} | {r['T']} | {r['model']} | "
            f"{r['chunks'] or '-'} | {B / r['train_s']:.2f} | {B / r['infer_s']:.1f} | "
            f"{r['train_rate']:.1%} | {r['infer_rate']:.1%} | {vs[0]} | {vs[1]} |"
        )
    lines.append("")
    for spread in (False, True):
        for label, _, _ in variants:
            t = frame[(frame["model"] == label) & (frame["spread"] == spread)]
            t = t.set_index("T")["train_s"]
            if 4096 in t and 1024 in t:
                lines.append(
                    f"- {label}, {'spread' if spread else 'equal'} lengths: training time per "
                    f"batch grows {t[4096] / t[1024]:.2f}x from 1,024 to 4,096 steps (4x "
                    f"would be linear), {t[1024] / t[256]:.2f}x from 256 to 1,024."
                )
    lines += [
        f"- flat on spread lengths is measured up to {args.flat_spread_max} steps only: on "
        "CPU PyTorch's LSTM over a packed batch of unequal lengths takes a step-by-step path "
        "whose backward pass costs about (steps x all steps); its time grows about 8x per 2x "
        "in length here, so 4,096 steps take hours per batch.",
        "",
    ]


# -- padding ------------------------------------------------------------------------------
def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    computed = sum(len(b) * lengths[b].max() for b in batches)
    return 1.0 - lengths.sum() / computed


def part_padding(args, lines: list[str]) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 1001, size=2000)
    grouped, shuffled = [], []
    for epoch in range(5):
        epoch_rng = np.random.default_rng([0, epoch])
        grouped.append(padding_share(lengths, length_batches(lengths, 32, rng=epoch_rng)))
        order = epoch_rng.permutation(len(lengths))
        shuffled.append(padding_share(lengths, np.array_split(order, len(lengths) // 32)))
    g, s = float(np.mean(grouped)), float(np.mean(shuffled))
    lines += [
        "## Padding waste",
        "",
        "2,000 sequences with lengths uniform in 100..1,000 (10x spread), batches of 32, "
        "mean over 5 epochs' batches. Share of computed steps (batch size x longest in "
        "batch) that are padding.",
        "",
        "| batching | padding share |",
        "|---|---|",
        f"| grouped by length (hlae.data.length_batches, with its 10% jitter) | {g:.1%} |",
        f"| random batches | {s:.1%} |",
        f"| ratio random / grouped | {s / g:.1f}x |",
        "",
    ]
    print(f"  padding: grouped {g:.1%}, random {s:.1%}", flush=True)


# -- memory -------------------------------------------------------------------------------
def _write_parquet(directory: Path, copies: int, n: int, files_per_copy: int = 4) -> int:
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = []
    for _ in range(n):
        T = int(rng.integers(50, 151))
        values = np.cumsum(rng.normal(size=(T, 8)), 0) / 5
        base.append((T, values))
    rows = 0
    for c in range(copies):
        for k in range(files_per_copy):
            part = base[k::files_per_copy]
            frame = pd.concat(
                pd.DataFrame(values, columns=[f"x{j}" for j in range(8)]).assign(
                    id=f"c{c}-s{k}-{i}", step=np.arange(T)
                )
                for i, (T, values) in enumerate(part)
            )
            frame.to_parquet(directory / f"part-{c:03d}-{k}.parquet", index=False)
            rows += len(frame)
    return rows


# Runs ``python -m hlae ...`` and, at exit, writes the process's own peak resident memory
# (VmHWM, in KiB). ru_maxrss from wait4 would not do: Linux carries the parent's peak over
# fork and exec, so a child of a large benchmark process reports the parent's size.
_HLAE_WITH_PEAK = """
import atexit, os, runpy, sys

def report():
    with open("/proc/self/status") as fh:
        peak = next(line for line in fh if line.startswith("VmHWM"))
    with open(os.environ["HLAE_PEAK_FILE"], "w") as fh:
        fh.write(peak.split()[1])

atexit.register(report)
sys.argv[0] = "hlae"
runpy.run_module("hlae", run_name="__main__")
"""


def _peak_rss_of(args: list[str], env: dict) -> tuple[float, float, int]:
    """Run ``hlae *args``; return (its peak resident memory in MiB, seconds, exit code)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        tick = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", _HLAE_WITH_PEAK, *args],
            env={**env, "HLAE_PEAK_FILE": str(peak_file)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - tick
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
        peak = float(peak_file.read_text()) / 1024 if peak_file.exists() else math.nan
    return peak, seconds, run.returncode


def part_memory(args, lines: list[str]) -> None:
    n = 500 if args.quick else 1000
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    fit = ["--max-epochs", "1", "--hidden-size", "8", "--latent-dim", "4", "--batch-size",
           "64", "--augmentation", "none", "--random-state", "0"]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (1, 10):
            data = Path(tmp) / f"x{copies}"
            rows = _write_parquet(data, copies, n)
            for mode in ("--stream", "--no-stream"):
                if mode == "--no-stream" and copies == 10 and args.quick:
                    continue
                print(f"  memory: {copies}x ({rows} rows), {mode} ...", flush=True)
                out = Path(tmp) / f"run-{copies}{mode}"
                cmd = ["-q", "fit", str(data), "--out", str(out), mode, *fit]
                results[(copies, mode)] = (*_peak_rss_of(cmd, env), rows)
                shutil.rmtree(out, ignore_errors=True)
                print(f"    {results[(copies, mode)]}", flush=True)
    lines += [
        "## Memory",
        "",
        "Peak resident memory (the process's own VmHWM) of `hlae fit DIR --max-epochs 1` "
        f"(hidden size 8) on a Parquet directory of {n} sequences x 50..150 steps x 8 "
        "features per copy (1x: 4 files, "
        "10x: 40 files), streamed (the default for a directory) or read into memory "
        "(`--no-stream`).",
        "",
        "| data | reader | rows | peak RSS MiB | seconds | exit |",
        "|---|---|---|---|---|---|",
    ]
    for (copies, mode), (rss, seconds, code, rows) in results.items():
        lines.append(f"| {copies}x | {mode} | {rows} | {rss:.0f} | {seconds:.0f} | {code} |")
    s1, s10 = results[(1, "--stream")][0], results[(10, "--stream")][0]
    lines += ["", f"- streaming: peak memory 10x / 1x = {s10 / s1:.2f} (target <= 1.3)"]
    if (10, "--no-stream") in results:
        m1, m10 = results[(1, "--no-stream")][0], results[(10, "--no-stream")][0]
        lines.append(f"- in memory: peak memory 10x / 1x = {m10 / m1:.2f}")
    lines.append("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=(*PARTS, "settings"),
        default=list(PARTS),
        help="'settings' (OSULeaf per epoch under a few settings) runs only when named",
    )
    parser.add_argument("--quick", action="store_true", help="short budgets, small sets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=None, help="seconds, OSULeaf runs")
    parser.add_argument("--budget-long", type=float, default=None, help="seconds, long runs")
    parser.add_argument("--every", type=float, default=None, help="seconds between checks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--settings-epochs", type=int, default=None, help="epochs per setting")
    parser.add_argument(
        "--flat-spread-max", type=int, default=None, help="longest flat run on spread lengths"
    )
    parser.add_argument(
        "--packed-lstm",
        action="store_true",
        help="time to quality with every LSTM batch packed (the path before)",
    )
    parser.add_argument("--out", default="docs/speed.md")
    args = parser.parse_args()
    args.budget = args.budget or (150.0 if args.quick else 600.0)
    args.budget_long = args.budget_long or (60.0 if args.quick else 600.0)
    args.every = args.every or (10.0 if args.quick else 5.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.flat_spread_max = args.flat_spread_max or (256 if args.quick else 1024)
    if args.packed_lstm:
        hlae_model._run_packed = hlae_model._run_all_packed
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    started = time.perf_counter()
    lines = [
        "# Speed and scale",
        "",
        "Written by `python -m benchmarks.speed"
        + "".join(f" {a}" for a in sys.argv[1:] if not a.startswith("--out"))
        + f"` on {platform.machine()} with {os.cpu_count()} CPU core(s), "
        f"{args.threads} torch thread(s), torch {torch.__version__}. Load average at the "
        f"start: {load_before[0]:.1f} (1 min). Timings on a shared machine are noisy; the "
        "ratios compare runs made minutes apart under the same conditions.",
        "",
    ]
    for part in (*PARTS, "settings"):
        if part in args.parts:
            print(f"{part}:", flush=True)
            globals()[f"part_{part}"](args, lines)
    load_after = os.getloadavg()
    lines += [
        f"Total {time.perf_counter() - started:.0f} s; load average at the end "
        f"{load_after[0]:.1f} (1 min).",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
