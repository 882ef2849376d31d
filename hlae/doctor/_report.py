"""Findings and the ranked report the doctor returns."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Finding", "Report", "CHECKS", "SEVERITIES"]

SEVERITIES = ("info", "warning", "error")

# code -> (stage, prior). The prior says how likely a finding of this code is the root cause
# rather than a consequence of something else: broken data and padding that leaks into the
# loss come first, optimisation settings next, and symptoms seen only in the outcome (a
# result worse than PCA, underfitting) last, since they usually follow from the others.
CHECKS: dict[str, tuple[str, float]] = {
    "nonfinite-values": ("data", 100),
    "module-error": ("dynamics", 99),
    "zero-padding-in-data": ("data", 96),
    "padding-in-scaler": ("data", 95),
    "padding-in-loss": ("dynamics", 93),
    "padding-in-output": ("dynamics", 92),
    "feature-scale-spread": ("data", 90),
    "constant-feature": ("data", 86),
    "too-little-data": ("data", 85),
    "short-sequences": ("data", 82),
    "lr-too-high": ("dynamics", 80),
    "lr-too-low": ("dynamics", 79),
    "exploding-gradients": ("dynamics", 76),
    "vanishing-gradients": ("dynamics", 74),
    "latent-too-small": ("outcome", 70),
    "cannot-overfit-batch": ("dynamics", 65),
    "training-diverged": ("dynamics", 64),
    "length-spread": ("data", 60),
    "mean-collapse": ("outcome", 55),
    "dead-latent": ("outcome", 50),
    "overfitting": ("outcome", 45),
    "underfitting": ("outcome", 40),
    "worse-than-pca": ("outcome", 30),
}


def _plain(value: Any) -> Any:
    """Turn numpy scalars and arrays (possibly nested) into JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _round(value: Any) -> Any:
    """Round floats to four significant figures for display."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


@dataclass
class Finding:
    """One thing the doctor found.

    Attributes
    ----------
    code : str
        Stable identifier of the check, e.g. ``"lr-too-high"``.
    severity : {"info", "warning", "error"}
        ``error``: training cannot work as set up; ``warning``: it works badly or the
        result cannot be trusted; ``info``: worth knowing, nothing to fix.
    message : str
        What was found, in one or two sentences.
    evidence : dict
        The measurements behind the finding.
    fix : str
        What to change: which parameter to what, or what to do to the data.
    stage : {"data", "dynamics", "outcome"}
        Which group of checks produced it.
    prior : float
        How likely a finding of this kind is the root cause (used for ranking).
    """

    code: str
    severity: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    stage: str = ""
    prior: float = 0.0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}.")
        stage, prior = CHECKS.get(self.code, ("other", 0.0))
        self.stage = self.stage or stage
        self.prior = self.prior or prior
        self.evidence = _plain(self.evidence)

    @property
    def rank_key(self) -> tuple[int, float]:
        return (SEVERITIES.index(self.severity), self.prior)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "stage": self.stage,
            "message": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code}: {self.message}"


@dataclass
class Report:
    """The doctor's ranked findings, with the measurements and pictures behind them.

    Attributes
    ----------
    findings : list of Finding
        Most likely cause first: ranked by severity, then by how often a finding of that
        kind is the root cause rather than a consequence.
    measurements : dict
        Numbers measured along the way (data summary, learning-rate range test, held-out
        errors of the model and of the baselines, ...).
    skipped : list of str
        Checks that could not run, and why.
    pictures : dict of str to str
        Paths of the PNG files written (only when an output directory was given).
    seconds : float
        Wall time of the diagnosis.
    history : list of dict
        Per-epoch records of the training run behind the outcome checks.
    range_test : dict or None
        The learning-rate range test: ``lr``, ``loss``, ``smoothed`` and the chosen rates.
    gradient_probe : dict or None
        Gradient norm per level at every step of the short probe run.
    overfit_probe : dict or None
        The one-batch overfitting probe: errors before and after, steps, rate.
    model : object
        The model trained for the outcome checks (a fitted
        :class:`~hlae.HierarchicalAutoencoder`, or a trained copy of the user's module).
    """

    findings: list[Finding] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    pictures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    range_test: dict | None = None
    gradient_probe: dict | None = None
    overfit_probe: dict | None = None
    model: Any = None

    def rank(self) -> Report:
        """Sort the findings in place, most likely cause first; return ``self``."""
        self.findings.sort(key=lambda f: f.rank_key, reverse=True)
        return self

    @property
    def codes(self) -> list[str]:
        """Codes of the findings, in rank order."""
        return [f.code for f in self.findings]

    @property
    def top(self) -> Finding | None:
        """The most likely cause, or None when nothing was found."""
        return self.findings[0] if self.findings else None

    def at_least(self, severity: str) -> list[Finding]:
        """Findings of ``severity`` or worse."""
        level = SEVERITIES.index(severity)
        return [f for f in self.findings if SEVERITIES.index(f.severity) >= level]

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or an error."""
        return not self.at_least("warning")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary (the trained model is left out)."""
        return _plain(
            {
                "findings": [f.to_dict() for f in self.findings],
                "measurements": self.measurements,
                "skipped": self.skipped,
                "pictures": self.pictures,
                "seconds": self.seconds,
                "history": self.history,
                "range_test": self.range_test,
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        """The report as JSON text (non-finite numbers become ``null``)."""
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    def summary(self) -> str:
        """A plain-text summary: one block per finding, then the key measurements."""
        lines = []
        if not self.findings:
            lines.append("No findings: nothing looks wrong.")
        for i, f in enumerate(self.findings, 1):
            lines.append(f"{i}. [{f.severity}] {f.code} ({f.stage})")
            lines.append(f"   {f.message}")
            if f.evidence:
                shown = ", ".join(f"{k}={_round(v)}" for k, v in f.evidence.items())
                lines.append(f"   evidence: {shown}")
            if f.fix:
                lines.append(f"   fix: {f.fix}")
        keys = ("model_error", "pca_error", "mean_error", "suggested_lr", "configured_lr")
        shown = {k: _round(_plain(self.measurements[k])) for k in keys if k in self.measurements}
        if shown:
            lines.append("measured: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        for reason in self.skipped:
            lines.append(f"not checked: {reason}")
        for name, path in self.pictures.items():
            lines.append(f"{name}: {path}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
