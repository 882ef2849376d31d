"""Checks on the data alone: values, scales, lengths, padding passed as data, size.

The data are read leniently here: a non-finite value or a constant feature is something to
report, not a reason to stop, so the doctor does not use :func:`hlae.data.as_sequences`'s
value checks. Only input it cannot read as sequences at all (text, wrong shapes) raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hlae.data import FLOAT32_MAX, Sequences, as_sequences
from hlae.doctor._report import Finding

__all__ = ["DataView", "read_leniently", "data_checks"]

SHORT = 5  # steps; shorter sequences say little about dynamics


@dataclass
class DataView:
    """The data as the doctor sees it.

    ``values`` hold the sequences in the input's units with infinite values turned into
    NaN, after dropping sequences with no finite value or fewer than two steps.
    """

    values: list[np.ndarray]
    feature_names: list[str]
    n_given: int
    nonfinite: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    padding: dict[str, Any] | None = None  # what the padding detector found

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)

    @property
    def has_nan(self) -> bool:
        return any(np.isnan(v).any() for v in self.values)


def _sanitise(a: np.ndarray, counts: dict[str, int]) -> np.ndarray:
    """Count infinite values (and values beyond float32's range) and turn them into NaN."""
    with np.errstate(invalid="ignore"):
        bad = np.isinf(a) | (np.isfinite(a) & (np.abs(a) > FLOAT32_MAX))
    if bad.any():
        counts["inf"] += int(bad.sum())
        a = np.where(bad, np.nan, a)
    return a


def read_leniently(X: Any, lengths: Any = None, **table: Any) -> DataView:
    """Read ``X`` in any form hlae accepts without rejecting bad values.

    Infinite values become NaN (and are counted), sequences without any finite value or
    with fewer than two steps are dropped (and counted); everything else goes through
    :func:`hlae.data.as_sequences` with ``missing="mask"``.

    Raises
    ------
    InputError
        Only when ``X`` cannot be read as sequences at all.
    """
    counts = {"inf": 0}
    dropped = {"empty": 0, "all_nonfinite": 0, "one_step": 0}
    if isinstance(X, Sequences):
        X = Sequences(
            [_sanitise(np.asarray(v, dtype=np.float64), counts) for v in X.values],
            list(X.ids),
            list(X.feature_names),
        )
    elif isinstance(X, pd.DataFrame):
        X = X.copy()
        for c in X.columns:
            if pd.api.types.is_float_dtype(X[c]):
                X[c] = _sanitise(X[c].to_numpy(dtype=np.float64), counts)
    elif isinstance(X, np.ndarray) and X.dtype != object:
        if np.issubdtype(X.dtype, np.floating):
            X = _sanitise(X.astype(np.float64), counts)
    elif isinstance(X, (list, tuple)) or isinstance(X, np.ndarray):
        items = []
        for item in X:
            try:
                arr = np.asarray(item, dtype=np.float64)
            except (TypeError, ValueError):
                items.append(item)  # as_sequences explains what is wrong with it
                continue
            arr = _sanitise(arr, counts)
            if arr.size == 0:
                dropped["empty"] += 1
            elif np.isnan(arr).all():
                dropped["all_nonfinite"] += 1
            else:
                items.append(arr)
        if not items:
            counts.update(nan=0, sequences=dropped["all_nonfinite"])
            return DataView([], [], len(X), counts, dropped)
        X = items
    seqs = as_sequences(X, lengths=lengths, missing="mask", min_length=1, **table)

    nonfinite = {"nan": 0, "inf": counts["inf"], "sequences": 0}
    per_feature = np.zeros(seqs.n_features, dtype=np.int64)
    values = []
    for v in seqs.values:
        nan = np.isnan(v)
        if nan.any():
            nonfinite["sequences"] += 1
            per_feature += nan.sum(axis=0)
        if len(v) == 0:
            dropped["empty"] += 1
        elif nan.all():
            dropped["all_nonfinite"] += 1
        elif len(v) < 2:
            dropped["one_step"] += 1
        else:
            values.append(np.asarray(v, dtype=np.float32))
    nonfinite["nan"] = max(0, int(per_feature.sum()) - counts["inf"])
    if per_feature.any():
        worst = np.argsort(per_feature)[::-1][:3]
        nonfinite["worst_features"] = [
            f"{seqs.feature_names[j]} ({int(per_feature[j])})" for j in worst if per_feature[j]
        ]
    n_given = len(seqs.values) + dropped["empty"] + dropped["all_nonfinite"]
    return DataView(values, list(seqs.feature_names), n_given, nonfinite, dropped)


# -- padding passed as data ---------------------------------------------------------------
def _run_length(v: np.ndarray, row: np.ndarray, from_end: bool) -> int:
    """Number of leading (or trailing) rows of ``v`` exactly equal to ``row``."""
    equal = (v == row).all(axis=1)
    if from_end:
        equal = equal[::-1]
    if equal.all():
        return len(v)
    return int(np.argmin(equal))


def detect_padding(values: list[np.ndarray]) -> dict[str, Any] | None:
    """Find padding passed as data: runs of one repeated row at the ends of sequences.

    Zero padding shows as runs of exact zeros in every feature; zero padding that went
    through a scaler fitted on the padded data shows as runs of one non-zero row (the
    scaled zero), the same in every padded sequence. Returns what was found, with the
    observed lengths this implies, or None.
    """
    n = len(values)
    if n < 4:
        return None
    best = None
    for side, index in (("end", -1), ("start", 0)):
        rows: dict[bytes, int] = {}
        for v in values:
            key = np.nan_to_num(v[index], nan=np.inf).tobytes()
            rows[key] = rows.get(key, 0) + 1
        key, count = max(rows.items(), key=lambda kv: kv[1])
        if count < max(3, 0.2 * n):
            continue
        row = np.frombuffer(key, dtype=values[0].dtype)
        if not np.isfinite(row).all():
            continue
        runs = np.array([_run_length(v, row, side == "end") for v in values])
        full = runs == np.array([len(v) for v in values])
        padded = (runs >= 2) & ~full  # padding follows (or precedes) real steps
        total_rows = sum(len(v) for v in values)
        interior = sum(int((v == row).all(axis=1).sum()) for v in values) - int(runs.sum())
        if padded.sum() < max(3, 0.2 * n) or interior > 0.01 * total_rows:
            continue
        found = {
            "side": side,
            "row": row.astype(np.float64),
            "runs": runs,
            "sequences_padded": int(padded.sum()),
            "share_padded": float(padded.mean()),
            "padded_steps_share": float(runs.sum() / total_rows),
            "median_run": float(np.median(runs[padded])),
            "zero": bool((row == 0).all()),
        }
        if best is None or found["padded_steps_share"] > best["padded_steps_share"]:
            best = found
    if best is not None:
        best["observed_lengths"] = np.array(
            [max(1, len(v) - r) for v, r in zip(values, best["runs"])], dtype=np.int64
        )
    return best


def strip_padding(values: list[np.ndarray], padding: dict[str, Any]) -> list[np.ndarray]:
    """The sequences without the detected padding runs."""
    out = []
    for v, r in zip(values, padding["runs"]):
        r = min(int(r), len(v) - 1)
        out.append(v[: len(v) - r] if padding["side"] == "end" else v[r:])
    return out


# -- the checks ---------------------------------------------------------------------------
def data_checks(
    data: DataView,
    *,
    scaler: str | None,
    missing: str = "error",
    n_parameters: int | None = None,
    user_module: bool = False,
    batch_size: int = 32,
) -> list[Finding]:
    """Run every check on the data alone."""
    findings: list[Finding] = []
    findings += _nonfinite(data, missing)
    if not data.values:
        findings.append(
            Finding(
                "too-little-data",
                "error",
                f"No usable sequence: of {data.n_given} given, none has two or more steps "
                "with a finite value.",
                {"sequences_given": data.n_given, **data.dropped},
                "Pass sequences of at least two steps with finite values.",
            )
        )
        return findings
    stacked = np.concatenate(data.values, axis=0).astype(np.float64)
    findings += _constant(data, stacked)
    if scaler is None:
        findings += _scale_spread(data, stacked, user_module)
    findings += _lengths(data, user_module, batch_size)
    findings += _padding(data)
    findings += _size(data, n_parameters)
    return findings


def _nonfinite(data: DataView, missing: str) -> list[Finding]:
    nf, dropped = data.nonfinite, data.dropped
    if not (nf.get("nan") or nf.get("inf") or dropped.get("all_nonfinite")):
        return []
    total = sum(v.size for v in data.values) + nf["nan"] + nf["inf"]
    evidence = {
        "nan_values": nf["nan"],
        "infinite_values": nf["inf"],
        "share_of_values": (nf["nan"] + nf["inf"]) / max(total, 1),
        "sequences_affected": nf["sequences"],
        "sequences_without_any_finite_value": dropped.get("all_nonfinite", 0),
        "features_most_affected": nf.get("worst_features", []),
    }
    if nf["inf"]:
        return [
            Finding(
                "nonfinite-values",
                "error",
                f"The data hold {nf['inf']} infinite value(s) (or values beyond float32's "
                f"range) and {nf['nan']} NaN value(s); training stops at the first one.",
                evidence,
                "Clip or remove infinite values (np.isinf) before fitting; fill NaN values or "
                "pass missing='mask' to treat them as missing.",
            )
        ]
    if missing == "mask":
        return [
            Finding(
                "nonfinite-values",
                "info",
                f"{nf['nan']} NaN value(s) are treated as missing and masked out of the loss "
                "(missing='mask').",
                evidence,
                "Nothing to do, unless NaN marks something other than a missing value.",
            )
        ]
    return [
        Finding(
            "nonfinite-values",
            "error",
            f"The data hold {nf['nan']} NaN value(s) in {nf['sequences']} sequence(s); with "
            "missing='error' fitting refuses them.",
            evidence,
            "Fill or drop the NaN values, or pass missing='mask' so they are masked out of "
            "the loss (the doctor ran its probes that way).",
        )
    ]


def _constant(data: DataView, stacked: np.ndarray) -> list[Finding]:
    with np.errstate(all="ignore"):
        std = np.nanstd(stacked, axis=0)
        mean = np.nanmean(stacked, axis=0)
    empty = np.isnan(stacked).all(axis=0)
    constant = ~empty & (std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
    if not constant.any():
        return []
    names = [data.feature_names[j] for j in np.flatnonzero(constant)]
    all_constant = bool(constant[~empty].all())
    return [
        Finding(
            "constant-feature",
            "error" if all_constant else "warning",
            (
                "Every feature is constant: there is nothing to learn."
                if all_constant
                else f"{len(names)} of {len(constant)} feature(s) never change: "
                f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}. They carry no "
                "information and dilute the loss."
            ),
            {
                "constant_features": names,
                "values": [float(mean[j]) for j in np.flatnonzero(constant)][:10],
            },
            f"Drop the constant feature(s) {names[:5]} before fitting.",
        )
    ]


def _scale_spread(data: DataView, stacked: np.ndarray, user_module: bool) -> list[Finding]:
    with np.errstate(all="ignore"):
        std = np.nanstd(stacked, axis=0)
        rms = np.sqrt(np.nanmean(stacked**2, axis=0))
    live = np.isfinite(std) & (std > 1e-12)
    if live.sum() == 0:
        return []
    spread = float(std[live].max() / std[live].min())
    largest = float(np.nanmax(rms))
    if spread < 10 and largest < 30:
        return []
    severity = "error" if spread >= 100 or largest >= 1e3 else "warning"
    j_big, j_small = (
        int(np.nanargmax(np.where(live, std, np.nan))),
        int(np.nanargmin(np.where(live, std, np.nan))),
    )
    fix = (
        "Scale each feature on its observed steps before passing the data (e.g. subtract "
        "the mean and divide by the standard deviation computed over the real steps only)."
        if user_module
        else "Switch scaling on: scaler='standard' (or 'robust' with outliers), which "
        "scales each feature on observed steps only."
    )
    return [
        Finding(
            "feature-scale-spread",
            severity,
            f"Scaling is off and the features' scales are far apart: standard deviations "
            f"from {std[j_small]:.3g} ({data.feature_names[j_small]}) to {std[j_big]:.3g} "
            f"({data.feature_names[j_big]}), a ratio of {spread:.3g}; the largest feature's "
            f"typical magnitude is {largest:.3g}. The loss is dominated by the large features "
            "and large inputs saturate the LSTMs.",
            {
                "std_ratio": spread,
                "largest_rms": largest,
                "std_min": float(std[j_small]),
                "std_max": float(std[j_big]),
            },
            fix,
        )
    ]


def _lengths(data: DataView, user_module: bool, batch_size: int) -> list[Finding]:
    lengths = data.lengths
    findings = []
    short = lengths < SHORT
    if short.mean() >= 0.1:
        findings.append(
            Finding(
                "short-sequences",
                "error" if np.median(lengths) < SHORT else "warning",
                f"{int(short.sum())} of {len(lengths)} sequences ({short.mean():.0%}) have "
                f"fewer than {SHORT} steps (median length {np.median(lengths):.0f}): too "
                "short to learn dynamics from, and a recurrent autoencoder gains nothing "
                "over a per-step model on them.",
                {
                    "share_short": float(short.mean()),
                    "median_length": float(np.median(lengths)),
                    "min_length": int(lengths.min()),
                },
                "Drop or merge the short sequences (e.g. join consecutive ones of the same "
                "source), or, if all are this short, treat each sequence as one flat vector "
                "(PCA or a dense autoencoder) instead.",
            )
        )
    lo, hi = np.percentile(lengths, [5, 95])
    ratio = float(hi / max(lo, 1))
    if ratio >= 4:
        # share of padding in batches drawn at random, as a plain DataLoader would draw them
        rng = np.random.default_rng(0)
        pad = []
        for _ in range(20):
            order = rng.permutation(len(lengths))
            for b in range(0, len(order), batch_size):
                chunk = lengths[order[b : b + batch_size]]
                pad.append(1.0 - chunk.mean() / chunk.max())
        padding_share = float(np.mean(pad))
        severe = user_module and padding_share >= 0.6
        findings.append(
            Finding(
                "length-spread",
                "warning" if severe else "info",
                f"Lengths range from {int(lengths.min())} to {int(lengths.max())} steps "
                f"(5th to 95th percentile ratio {ratio:.3g}); batches drawn at random would "
                f"be {padding_share:.0%} padding."
                + (
                    ""
                    if user_module
                    else " hlae groups sequences of similar length into batches, so this "
                    "costs little."
                ),
                {
                    "min_length": int(lengths.min()),
                    "max_length": int(lengths.max()),
                    "p95_p5_ratio": ratio,
                    "random_batch_padding_share": padding_share,
                },
                "Batch sequences of similar length together (sort by length, then batch) and "
                "mask padding out of the encoder and the loss."
                if user_module
                else "Nothing to change; if very long sequences dominate, crop them to "
                "windows of similar length.",
            )
        )
    return findings


def _padding(data: DataView) -> list[Finding]:
    found = detect_padding(data.values)
    data.padding = found
    if found is None:
        return []
    where = "end" if found["side"] == "end" else "start"
    evidence = {
        "sequences_padded": found["sequences_padded"],
        "share_of_sequences": found["share_padded"],
        "share_of_steps": found["padded_steps_share"],
        "median_padding_steps": found["median_run"],
        "padding_side": found["side"],
    }
    if found["zero"]:
        return [
            Finding(
                "zero-padding-in-data",
                "error",
                f"{found['sequences_padded']} of {len(data.values)} sequences "
                f"({found['share_padded']:.0%}) {where} in runs of exact zeros in every "
                f"feature (median {found['median_run']:.0f} steps; "
                f"{found['padded_steps_share']:.0%} of all steps): padding passed as data. "
                "The model is trained to reproduce the zeros, the scaler counts them, and "
                "the embeddings depend on how much padding a sequence got.",
                evidence,
                "Pass the sequences unpadded (a list of (T_i, F) arrays), or pass lengths= "
                "with the padded array, or pad with NaN so the padding is recognised.",
            )
        ]
    row = found["row"]
    return [
        Finding(
            "padding-in-scaler",
            "error",
            f"{found['sequences_padded']} of {len(data.values)} sequences "
            f"({found['share_padded']:.0%}) {where} in runs of one repeated row that is not "
            f"zero ({', '.join(f'{r:.3g}' for r in row[:4])}{', ...' if len(row) > 4 else ''}"
            f"; median {found['median_run']:.0f} steps): zero padding that went through a "
            "scaler fitted on the padded data, so the padding is in the scaler's statistics "
            "and in the data the model learns.",
            {**evidence, "padding_row": row[:12]},
            "Fit the scaler on the observed steps only (before padding), pad after "
            "scaling, and pass lengths so the padding is masked; or give hlae the unpadded "
            "sequences, which does all of this.",
        )
    ]


def _size(data: DataView, n_parameters: int | None) -> list[Finding]:
    n = len(data.values)
    observed = int(sum(np.isfinite(v).sum() for v in data.values))
    evidence: dict[str, Any] = {"sequences": n, "observed_values": observed}
    if n_parameters:
        evidence["parameters"] = n_parameters
        evidence["observed_values_per_parameter"] = observed / n_parameters
    fix = (
        "Collect more sequences. Until then keep the model small (hidden_size=16, "
        "latent_dim at most a few), keep augmentation on and weight_decay up (1e-3), and "
        "compare against PCA, which needs far less data."
    )
    if n < 10:
        return [
            Finding(
                "too-little-data",
                "error",
                f"Only {n} usable sequence(s): too few to train an autoencoder and to hold "
                "any out for validation; whatever it learns is memorised.",
                evidence,
                fix,
            )
        ]
    if n < 30:
        return [
            Finding(
                "too-little-data",
                "warning",
                f"Only {n} sequences: validation and held-out estimates are noisy and the "
                "model memorises easily.",
                evidence,
                fix,
            )
        ]
    return []
