"""Anomaly-detection benchmark: hlae's AnomalyDetector against PCA and IsolationForest.

Three tasks, all on data bundled with aeon:

* JapaneseVowels and BasicMotions novelty: for each class c, train on the training split
  without class c, score the whole test split; class c is the anomaly. AUC-ROC per class,
  averaged over classes.
* ECG stream (``ecg-diff-count-3``): train on the anomaly-free training stream, score the
  test stream per step; AUC-ROC and AUC-PR (average precision) per step.

Methods, all in the same run and on the same data:

* PCA with the same latent size, reconstruction error (sequences zero-padded to a common
  length and flattened; on the stream, windows of ``window`` steps every ``stride`` steps,
  each step scored by the mean error of the windows that cover it);
* IsolationForest on the same padded sequences or windows;
* hlae ``AnomalyDetector`` with ``hierarchy="flat"`` (a one-level LSTM autoencoder) and
  with the default hierarchy, each with the detector's default score and, from the same
  trained model, the other scores.

Run from the repository root (two cores, 10 to 15 minutes; ``--quick`` about 6)::

    OMP_NUM_THREADS=1 python -m benchmarks.anomaly
    OMP_NUM_THREADS=1 python -m benchmarks.anomaly --quick

The table is printed and written into ``docs/anomaly.md`` between the benchmark markers
(``--no-docs`` leaves the file alone).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

import hlae
from hlae.anomaly import SCORES, AnomalyDetector
from hlae.datasets import load_basic_motions, load_ecg_stream, load_japanese_vowels
from hlae.evaluation import Standardiser, pca_baseline
from hlae.exceptions import HlaeWarning

LATENT = 10
WINDOW, STRIDE = 100, 10  # baseline windows on the stream
DOCS = Path(__file__).resolve().parent.parent / "docs" / "anomaly.md"
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
COLLECTIONS = {"JapaneseVowels": load_japanese_vowels, "BasicMotions": load_basic_motions}


# -- baselines ----------------------------------------------------------------------------
def _padded(seqs: list[np.ndarray], T: int) -> np.ndarray:
    out = np.zeros((len(seqs), T, seqs[0].shape[1]))
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out.reshape(len(seqs), -1)


def baseline_collection_scores(
    train: list[np.ndarray], test: list[np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """PCA reconstruction error and IsolationForest scores of the test sequences."""
    std = Standardiser(train)
    recon = pca_baseline(train, test, LATENT)
    pca = np.array([np.mean(((r - x) / std.std) ** 2) for r, x in zip(recon, test)])
    T = max(max(map(len, train)), max(map(len, test)))
    forest = IsolationForest(random_state=seed).fit(_padded(std(train), T))
    return {
        f"PCA({LATENT})": pca,
        "IsolationForest": -forest.score_samples(_padded(std(test), T)),
    }


def _stream_windows(x: np.ndarray) -> tuple[np.ndarray, list[int]]:
    starts = list(range(0, len(x) - WINDOW + 1, STRIDE))
    if starts[-1] != len(x) - WINDOW:
        starts.append(len(x) - WINDOW)
    return np.stack([x[t : t + WINDOW].ravel() for t in starts]), starts


def _spread(window_scores: np.ndarray, starts: list[int], T: int) -> np.ndarray:
    total, count = np.zeros(T), np.zeros(T)
    for score, t in zip(window_scores, starts):
        total[t : t + WINDOW] += score
        count[t : t + WINDOW] += 1
    return total / count


def baseline_stream_scores(train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """Per-step PCA and IsolationForest scores of the test stream, from windows."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    train_windows, _ = _stream_windows((train - mean) / std)
    test_windows, starts = _stream_windows((test - mean) / std)
    pca = PCA(LATENT).fit(train_windows)
    error = ((pca.inverse_transform(pca.transform(test_windows)) - test_windows) ** 2).mean(1)
    forest = IsolationForest(random_state=seed).fit(train_windows)
    return {
        f"PCA({LATENT})": _spread(error, starts, len(test)),
        "IsolationForest": _spread(-forest.score_samples(test_windows), starts, len(test)),
    }


# -- hlae ---------------------------------------------------------------------------------
def hlae_scores(
    train: list[np.ndarray] | np.ndarray,
    test: list[np.ndarray] | np.ndarray,
    params: dict,
    detector_params: dict,
) -> tuple[dict[str, np.ndarray], dict]:
    """Scores of ``test`` from one trained detector: its own score, then the other scores."""
    detector = AnomalyDetector(**detector_params, autoencoder_params=params)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HlaeWarning)
        detector.fit(train)
    seconds = time.perf_counter() - started
    ae = detector.autoencoder_
    out = {detector.score: detector.decision_function(test)}
    for score in SCORES:
        if score != detector.score:
            other = AnomalyDetector.from_autoencoder(
                ae, train, **{**detector_params, "score": score}
            )
            out[score] = other.decision_function(test)
    info = {
        "seconds": seconds,
        "epochs": len(ae.history_),
        "stop": ae.stop_reason_,
        "flagged": float(np.mean(out[detector.score] > detector.threshold_)),
    }
    return out, info


def hlae_variants(args: argparse.Namespace) -> dict[str, dict]:
    common = {"latent_dim": LATENT, "random_state": args.seed, "max_time": args.max_time}
    common.update(json.loads(args.hlae_params))
    variants = {
        "hlae flat": {**common, "hierarchy": "flat"},
        "hlae default": dict(common),
    }
    return {k: v for k, v in variants.items() if k.split()[-1] in args.variants.split(",")}


# -- tasks --------------------------------------------------------------------------------
def run_collection(name: str, args: argparse.Namespace) -> dict:
    loader = COLLECTIONS[name]
    X_train, y_train = loader("train")
    X_test, y_test = loader("test")
    classes = np.unique(y_train)
    aucs: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for c in classes:
        train = [x for x, y in zip(X_train, y_train) if y != c]
        truth = (y_test == c).astype(int)
        scores = baseline_collection_scores(train, X_test, args.seed)
        for variant, params in hlae_variants(args).items():
            by_score, info = hlae_scores(train, X_test, params, json.loads(args.detector))
            seconds[variant] = seconds.get(variant, 0.0) + info["seconds"]
            for score, s in by_score.items():
                scores[f"{variant}, score={score}"] = s
            print(
                f"  {name} class {str(c)!r}: {variant} {info['epochs']} epochs in "
                f"{info['seconds']:.0f} s ({info['stop']})",
                flush=True,
            )
        for method, s in scores.items():
            aucs.setdefault(method, []).append(roc_auc_score(truth, s))
        line = ", ".join(f"{m} {v[-1]:.3f}" for m, v in aucs.items())
        print(f"  {name} class {str(c)!r}: AUC-ROC {line}", flush=True)
    return {
        "auc_roc": {m: float(np.mean(v)) for m, v in aucs.items()},
        "per_class": {m: [round(float(a), 3) for a in v] for m, v in aucs.items()},
        "classes": [str(c) for c in classes],
        "seconds": seconds,
    }


def run_stream(args: argparse.Namespace) -> dict:
    data = load_ecg_stream()
    train, test, truth = data["train"], data["test"], data["test_labels"]
    scores = baseline_stream_scores(train, test, args.seed)
    seconds, flagged = {}, {}
    window = json.loads(args.detector).get("window", WINDOW)
    for variant, params in hlae_variants(args).items():
        detector_params = {"window": window, **json.loads(args.detector)}
        params = {**params, "max_time": args.max_time * args.stream_time_factor}
        by_score, info = hlae_scores(train, test, params, detector_params)
        seconds[variant] = info["seconds"]
        flagged[variant] = info["flagged"]
        for score, s in by_score.items():
            scores[f"{variant}, score={score}"] = s
        print(
            f"  ECG stream: {variant} {info['epochs']} epochs in {info['seconds']:.0f} s "
            f"({info['stop']})",
            flush=True,
        )
    return {
        "auc_roc": {m: float(roc_auc_score(truth, s)) for m, s in scores.items()},
        "auc_pr": {m: float(average_precision_score(truth, s)) for m, s in scores.items()},
        "seconds": seconds,
        "flagged": flagged,
        "anomalous": float(np.mean(truth)),
    }


# -- report -------------------------------------------------------------------------------
def table(results: dict, default_score: str) -> str:
    tasks = [t for t in ("JapaneseVowels", "BasicMotions") if t in results]
    stream = results.get("ECG stream")
    methods = list(next(iter(results.values()))["auc_roc"])
    head = ["method"] + [f"{t} AUC-ROC" for t in tasks]
    if stream:
        head += ["ECG AUC-ROC", "ECG AUC-PR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def label(m: str) -> str:
        return f"**{m}**" if m == f"hlae default, score={default_score}" else m

    for m in methods:
        row = [label(m)] + [f"{results[t]['auc_roc'][m]:.3f}" for t in tasks]
        if stream:
            row += [f"{stream['auc_roc'][m]:.3f}", f"{stream['auc_pr'][m]:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def verdict(results: dict, default_score: str) -> list[str]:
    """Where hlae default stands against the best baseline, task by task."""
    ours = f"hlae default, score={default_score}"
    out = []
    for task, res in results.items():
        metrics = [("AUC-ROC", res["auc_roc"])] + (
            [("AUC-PR", res["auc_pr"])] if "auc_pr" in res else []
        )
        for metric, values in metrics:
            if ours not in values:
                continue
            baselines = {m: v for m, v in values.items() if not m.startswith("hlae")}
            best = max(baselines, key=baselines.get)
            diff = values[ours] - baselines[best]
            word = "above" if diff > 0 else "equal to" if diff == 0 else "BELOW"
            out.append(
                f"{task} {metric}: hlae default {values[ours]:.3f}, {word} the best baseline "
                f"({best} {baselines[best]:.3f}, difference {diff:+.3f})"
            )
        if "per_class" in res and ours in res["per_class"]:
            per_class = ", ".join(
                f"{c} {a:.2f}" for c, a in zip(res["classes"], res["per_class"][ours])
            )
            out.append(f"{task}, hlae default per class: {per_class}")
            per_class = ", ".join(
                f"{c} {a:.2f}" for c, a in zip(res["classes"], res["per_class"][best])
            )
            out.append(f"{task}, {best} per class: {per_class}")
        if "hlae default" in res.get("flagged", {}):
            out.append(
                f"{task}: hlae default labels {res['flagged']['hlae default']:.0%} of the test "
                f"steps anomalous at its default contamination (truly anomalous: "
                f"{res['anomalous']:.0%})"
            )
    return out


def write_docs(text: str, path: Path) -> None:
    doc = path.read_text() if path.exists() else f"# Anomaly detection\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc = doc.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    doc = pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s per model instead of 30")
    parser.add_argument("--max-time", type=float, default=None, help="seconds per model")
    parser.add_argument(
        "--stream-time-factor",
        type=float,
        default=3.0,
        help="stream models get this many "
        "times --max-time (one model per variant instead of one per class)",
    )
    parser.add_argument("--tasks", default="JapaneseVowels,BasicMotions,ECG stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="flat,default", help="hlae variants to train")
    parser.add_argument("--hlae-params", default="{}", help="JSON: extra autoencoder params")
    parser.add_argument("--detector", default="{}", help="JSON: extra detector params")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/anomaly.md")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.max_time is None:
        args.max_time = 10.0 if args.quick else 30.0
    torch.set_num_threads(1)

    default_score = json.loads(args.detector).get("score", AnomalyDetector().get_params()["score"])
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for task in args.tasks.split(","):
        print(f"{task} ...", flush=True)
        results[task] = run_stream(args) if task == "ECG stream" else run_collection(task, args)
    minutes = (time.perf_counter() - started) / 60

    given = list(argv if argv is not None else sys.argv[1:])
    for flag in ("--json", "--no-docs"):  # they change where results go, not the results
        if flag in given:
            i = given.index(flag)
            del given[i : i + (2 if flag == "--json" else 1)]
    command = " ".join(["OMP_NUM_THREADS=1 python -m benchmarks.anomaly", *given])
    text = "\n".join(
        [
            f"Measured with `{command}` (hlae {hlae.__version__}, torch {torch.__version__}, "
            f"{platform.machine()}, {torch.get_num_threads()} thread(s), {minutes:.0f} min "
            f"in all; hlae models trained for at most {args.max_time:g} s each, "
            f"{args.max_time * args.stream_time_factor:g} s on the stream).",
            "",
            table(results, default_score),
            "",
            *[f"- {line}" for line in verdict(results, default_score)],
        ]
    )
    print()
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.no_docs:
        write_docs(text, DOCS)
        print(f"\nwritten into {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
