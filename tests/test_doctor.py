"""Tests of the doctor: planted failures, bad input, the report, lr="auto" and the command.

Each planted failure breaks exactly one thing in a healthy small set-up (oscillators, 60
sequences of 15 to 30 steps, hidden_size 16) and checks that the top-ranked finding names
it. Diagnoses run in quick mode with a few seconds of budget, so training is cut short and
its outcome findings are reported as inconclusive (info); the checks that decide these tests
are the data checks and the probe runs, which do not depend on the machine's speed.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import hlae
from hlae.datasets import make_oscillators
from hlae.doctor import CHECKS, Finding, Report, lr_range_test
from hlae.exceptions import ParameterError

needs_aeon = pytest.mark.skipif(
    importlib.util.find_spec("aeon") is None, reason="the optional dependency aeon is missing"
)

FAST = dict(quick=True, time_budget=2.5)
HEALTHY = dict(hidden_size=16, latent_dim=4, batch_size=16, random_state=0, **FAST)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # user modules are built in the tests: the same weights every run
    yield
    torch.set_num_threads(threads)


def oscillators(n: int = 60, **kwargs) -> list[np.ndarray]:
    return make_oscillators(
        n, n_features=3, min_length=15, max_length=30, random_state=0, **kwargs
    )


def rich(n: int = 60, n_features: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Every feature an independent sine of its own frequency and phase: many factors."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(int(rng.integers(15, 31)))[:, None]
        f = rng.uniform(0.03, 0.25, n_features)
        phase = rng.uniform(0, 2 * np.pi, n_features)
        amp = rng.uniform(0.5, 1.5, n_features)
        noise = 0.05 * rng.standard_normal((len(t), n_features))
        out.append((amp * np.sin(2 * np.pi * f * t + phase) + noise).astype(np.float32))
    return out


def zero_padded(seqs: list[np.ndarray]) -> np.ndarray:
    T = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), T, seqs[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


class TinyAE(nn.Module):
    """A sound small LSTM autoencoder of the kind users write: packed encoder, latent and
    relative position at every decoder step. Switches plant one fault each."""

    def __init__(
        self,
        n_features: int,
        *,
        latent_dim: int = 4,
        read_padding: bool = False,
        ignore_input: bool = False,
        init_gain: float = 1.0,
        bottleneck_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.LSTM(n_features, 16, batch_first=True)
        self.to_latent = nn.Linear(16, latent_dim)
        self.decoder = nn.LSTM(latent_dim + 1, 16, batch_first=True)
        self.head = nn.Linear(16, n_features)
        self.read_padding, self.ignore_input = read_padding, ignore_input
        self.bottleneck_gain = bottleneck_gain
        if init_gain != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(init_gain)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        if self.ignore_input:
            x = torch.zeros_like(x)
        if self.read_padding:
            _, (h, _) = self.encoder(x)  # the state after the last padded step
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.encoder(packed)
        z = self.to_latent(h[-1])
        if self.bottleneck_gain != 1.0:
            z = torch.tanh(self.bottleneck_gain * z)  # saturated: almost no gradient passes
        position = torch.arange(T, dtype=x.dtype)[None, :] / lengths[:, None].to(x.dtype)
        steps = torch.cat([z[:, None, :].expand(B, T, -1), position[..., None]], dim=-1)
        out, _ = self.decoder(steps)
        return self.head(out)


def loss_with_padding(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mean squared error over every step of the padded batch: the common mistake."""
    return ((recon - x) ** 2).mean()


def above_info(report: Report) -> list[str]:
    return [f.code for f in report.at_least("warning")]


# -- healthy set-ups: nothing to report ---------------------------------------------------
def test_healthy_setup_has_no_warning_and_draws_pictures(tmp_path):
    report = hlae.diagnose(oscillators(), out=tmp_path, **HEALTHY)
    assert above_info(report) == [], report.summary()
    assert report.range_test["suggested_lr"] > 0
    assert report.measurements["padding_output_change"] == 0.0  # hlae masks padding
    for name in ("loss curve", "learning-rate range test", "gradient norms"):
        path = report.pictures[name]
        assert path.endswith(".png") and (tmp_path / path.split("/")[-1]).stat().st_size > 0
    data = json.loads(report.to_json())
    assert data["range_test"]["suggested_lr"] == report.range_test["suggested_lr"]
    assert "loss curve" in report.summary()


def test_healthy_user_module_has_no_warning():
    # A sound module raises nothing in the probes (data, padding, gradients, learning rate,
    # one-batch overfit). Its training run is always cut by the budget here (no epoch or
    # patience limit is reached), so the outcome may only be reported as inconclusive: a
    # run that ended by early stopping inside the budget would make the verdict depend on
    # the machine's speed.
    module = TinyAE(3)
    before = [p.detach().clone() for p in module.parameters()]
    report = hlae.diagnose_model(
        module, oscillators(), batch_size=16, max_epochs=100_000, patience=100_000, **FAST
    )
    assert above_info(report) == [], report.summary()
    assert report.measurements["stop_reason"] == "max_time"
    assert all(
        f.message.startswith("Inconclusive") for f in report.findings if f.stage == "outcome"
    )
    # the caller's module is left as it was: probes and training work on copies
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert isinstance(report.model, TinyAE) and report.model is not module


# -- planted failures: the top finding names the cause ------------------------------------
def unscaled():
    X = [x * np.array([1000.0, 1.0, 0.01], dtype=np.float32) for x in oscillators()]
    return hlae.diagnose(X, **{**HEALTHY, "scaler": None})


def nan_value():
    X = oscillators()
    X[3] = X[3].copy()
    X[3][5, 1] = np.nan
    return hlae.diagnose(X, **HEALTHY)


def infinite_value():
    X = oscillators()
    X[7] = X[7].copy()
    X[7][2, 0] = np.inf
    return hlae.diagnose(X, **HEALTHY)


def constant_feature():
    X = [np.concatenate([x, np.full((len(x), 1), 2.5, np.float32)], 1) for x in oscillators()]
    return hlae.diagnose(X, **HEALTHY)


def short_sequences():
    X = make_oscillators(60, n_features=3, min_length=2, max_length=4, random_state=0)
    return hlae.diagnose(X, **HEALTHY)


def padding_through_scaler():
    padded = zero_padded(oscillators())
    flat = padded.reshape(-1, 3)
    scaled = (flat - flat.mean(0)) / flat.std(0)  # statistics taken over the padding too
    return hlae.diagnose(scaled.reshape(padded.shape), **HEALTHY)


PLANTED = {
    "unscaled features, scaler=None": (unscaled, "feature-scale-spread"),
    "zero-padded array passed as equal length": (
        lambda: hlae.diagnose(zero_padded(oscillators()), **HEALTHY),
        "zero-padding-in-data",
    ),
    "padding scaled with the data": (padding_through_scaler, "padding-in-scaler"),
    "lr 100x too high": (
        lambda: hlae.diagnose(oscillators(), **{**HEALTHY, "lr": 0.3}),
        "lr-too-high",
    ),
    "lr 1000x too low": (
        lambda: hlae.diagnose(oscillators(), **{**HEALTHY, "lr": 3e-6}),
        "lr-too-low",
    ),
    "latent_dim=1 on rich data": (
        lambda: hlae.diagnose(rich(), **{**HEALTHY, "latent_dim": 1}),
        "latent-too-small",
    ),
    "five training sequences": (
        lambda: hlae.diagnose(oscillators()[:5], **HEALTHY),
        "too-little-data",
    ),
    "max_epochs=2": (
        lambda: hlae.diagnose(oscillators(), **{**HEALTHY, "max_epochs": 2}),
        "underfitting",
    ),
    "NaN in the data": (nan_value, "nonfinite-values"),
    "an infinite value": (infinite_value, "nonfinite-values"),
    "a constant feature": (constant_feature, "constant-feature"),
    "sequences of 2 to 4 steps": (short_sequences, "short-sequences"),
    "user loss includes padding": (
        lambda: hlae.diagnose_model(
            TinyAE(3), oscillators(), loss_fn=nn.MSELoss(), batch_size=16, **FAST
        ),
        "padding-in-loss",
    ),
    "user encoder reads padding": (
        lambda: hlae.diagnose_model(
            TinyAE(3, read_padding=True), oscillators(), batch_size=16, **FAST
        ),
        "padding-in-output",
    ),
    "user output ignores the input": (
        lambda: hlae.diagnose_model(
            TinyAE(3, ignore_input=True), oscillators(), batch_size=16, **FAST
        ),
        "mean-collapse",
    ),
    "user weights initialised 30x too large": (
        lambda: hlae.diagnose_model(TinyAE(3, init_gain=30.0), oscillators(), **FAST),
        "exploding-gradients",
    ),
    "user bottleneck saturated": (
        lambda: hlae.diagnose_model(TinyAE(3, bottleneck_gain=1e4), oscillators(), **FAST),
        "vanishing-gradients",
    ),
}


# what the top finding's evidence and fix must say, beyond its code
EVIDENCE = {
    # 1000 against 0.01 times the same signal
    "unscaled features, scaler=None": lambda f: (
        f.evidence["std_ratio"] > 1e4 and "scaler='standard'" in f.fix
    ),
    "lr 100x too high": lambda f: (
        f.evidence["lr"] == 0.3 and f.evidence["suggested_lr"] < f.evidence["min_loss_lr"] < 0.3
    ),
    "lr 1000x too low": lambda f: f.evidence["suggested_lr"] / f.evidence["lr"] > 300,
    "latent_dim=1 on rich data": lambda f: f.evidence["components_for_80_percent"] >= 3,
    "five training sequences": lambda f: f.evidence["sequences"] == 5,
    "a constant feature": lambda f: f.evidence["constant_features"] == ["x3"],
    "zero-padded array passed as equal length": lambda f: f.evidence["padding_side"] == "end",
    "user loss includes padding": lambda f: f.evidence["padding_gradient_share"] > 0.05,
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_planted_failure_is_the_top_finding(planted):
    run, cause = PLANTED[planted]
    report = run()
    assert report.top is not None, f"{planted}: nothing found"
    assert report.top.code == cause, f"{planted}:\n{report.summary()}"
    assert report.top.severity in ("warning", "error")
    assert report.top.fix and report.top.evidence
    assert EVIDENCE.get(planted, lambda f: True)(report.top), report.top.to_dict()


# -- bad input is reported, never raised --------------------------------------------------
@pytest.mark.parametrize("n", [1, 3])
def test_tiny_data_is_a_finding(n):
    report = hlae.diagnose(oscillators()[:n], **HEALTHY)
    assert report.top.code == "too-little-data"
    assert report.top.severity == "error"


def test_unusable_sequences_are_counted_not_raised():
    X = oscillators(12)
    X[0] = np.full((10, 3), np.nan, dtype=np.float32)  # nothing finite
    X[1] = X[1][:1]  # one step
    X[2] = np.zeros((0, 3), dtype=np.float32)  # empty
    report = hlae.diagnose(X, **HEALTHY)
    assert report.measurements["sequences_used"] == 9
    assert "nonfinite-values" in report.codes
    assert "too-little-data" in report.codes


def test_only_constant_features_and_nothing_finite():
    report = hlae.diagnose([np.ones((20, 2), np.float32)] * 30, **HEALTHY)
    assert report.top.code == "constant-feature" and report.top.severity == "error"
    report = hlae.diagnose([np.full((5, 2), np.inf)] * 3, **HEALTHY)
    assert report.codes[:2] == ["nonfinite-values", "too-little-data"]


def test_nan_with_missing_mask_is_only_information():
    X = oscillators()
    X[0] = X[0].copy()
    X[0][3:6, 0] = np.nan
    report = hlae.diagnose(X, **{**HEALTHY, "missing": "mask"})
    finding = next(f for f in report.findings if f.code == "nonfinite-values")
    assert finding.severity == "info" and finding.evidence["nan_values"] == 3
    assert above_info(report) == []


def test_module_that_raises_is_reported_with_the_batch_shape():
    class Broken(TinyAE):
        def forward(self, x, lengths):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    report = hlae.diagnose_model(Broken(3), oscillators(), batch_size=8, **FAST)
    assert report.top.code == "module-error"
    assert "mat1 and mat2" in report.top.message
    assert report.top.evidence["exception"] == "RuntimeError"
    assert report.top.evidence["batch_shape"][0] == 8
    assert report.top.evidence["batch_shape"][2] == 3


def test_module_with_wrong_output_shape_is_reported():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            return self.linear(x)

    report = hlae.diagnose_model(Flat(), oscillators(), **FAST)
    assert report.top.code == "module-error"
    assert "not a reconstruction" in report.top.message


# -- the report, the range test, lr="auto", the pictures and the command ------------------
def test_report_ranks_by_severity_then_prior_and_serialises():
    report = Report(
        findings=[
            Finding("worse-than-pca", "warning", "w"),
            Finding("nonfinite-values", "warning", "n"),
            Finding("underfitting", "error", "u"),
        ]
    ).rank()
    assert report.codes == ["underfitting", "nonfinite-values", "worse-than-pca"]
    data = json.loads(report.to_json())
    assert data["findings"][0]["code"] == "underfitting"
    assert set(CHECKS) >= {
        "nonfinite-values",
        "constant-feature",
        "feature-scale-spread",
        "length-spread",
        "short-sequences",
        "zero-padding-in-data",
        "too-little-data",
        "cannot-overfit-batch",
        "lr-too-high",
        "lr-too-low",
        "exploding-gradients",
        "vanishing-gradients",
        "padding-in-loss",
        "mean-collapse",
        "dead-latent",
        "worse-than-pca",
        "overfitting",
        "underfitting",
    }
    with pytest.raises(ValueError):
        Finding("x", "fatal", "bad severity")


def test_lr_range_test_leaves_the_module_alone():
    from hlae.model import HierarchicalLSTMAutoencoder

    module = HierarchicalLSTMAutoencoder(3, latent_dim=4, hidden_size=16, chunk_lengths=(5,))
    before = [p.detach().clone() for p in module.parameters()]
    result = lr_range_test(module, oscillators(), n_steps=30, batch_size=16)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert len(result["lr"]) == len(result["smoothed"]) <= 30
    assert result["suggested_lr"] == pytest.approx(result["min_loss_lr"] / 10)
    assert result["blowup_lr"] is None or result["blowup_lr"] > result["min_loss_lr"]


def test_lr_auto_uses_the_range_test():
    model = hlae.HierarchicalAutoencoder(
        lr="auto", hidden_size=16, latent_dim=4, max_epochs=2, random_state=0
    ).fit(oscillators(30))
    assert 1e-5 < model.lr_ < 1.0 and model.lr_ != 3e-3
    assert model.history_[0]["lr"] <= model.lr_
    with pytest.raises(ParameterError, match="auto"):
        hlae.HierarchicalAutoencoder(lr="fast").fit(oscillators(30))


def test_command_line_json(tmp_path, capsys):
    import pandas as pd

    from hlae.cli import main

    rows = [(i, t, *v) for i, x in enumerate(oscillators(30)) for t, v in enumerate(x)]
    path = tmp_path / "data.csv"
    pd.DataFrame(rows, columns=["id", "step", "a", "b", "c"]).to_csv(path, index=False)
    code = main(
        ["doctor", str(path), "--quick", "--time-budget", "3", "--json", "--hidden-size", "16"]
        + ["--lr", "0.3", "--out", str(tmp_path / "out")]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1  # an error finding: lr 0.3 is far too high
    assert data["findings"][0]["code"] == "lr-too-high"
    assert (tmp_path / "out" / "report.json").exists()
    assert (tmp_path / "out" / "learning_rate_range_test.png").exists()


# -- a real data set ----------------------------------------------------------------------
@needs_aeon
def test_default_setup_on_japanese_vowels_has_no_warning():
    """The default set-up trains on JapaneseVowels: the doctor must not cry wolf. The quick
    doctor is used here (the full one, about 80 s, runs in benchmarks/doctor_speed.py)."""
    from hlae.datasets import load_japanese_vowels

    X, _ = load_japanese_vowels("train")
    report = hlae.diagnose(X, quick=True, random_state=0)
    assert above_info(report) == [], report.summary()
    assert report.range_test["improved"]
    assert report.measurements["suggested_lr"] < report.range_test["min_loss_lr"]
