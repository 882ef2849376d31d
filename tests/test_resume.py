"""Interrupted training loses nothing; divergence ends in a recovered run or a saved model.

The command-line tests run ``hlae fit`` in a subprocess and stop it from outside: SIGKILL
(nothing can be caught: only the atomic per-epoch checkpoint survives) and SIGTERM (caught:
the run stops after the current batch). Each run is then resumed (in this process, to save
the start-up time of another) and must end with the same weights as a run that was never
interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import hlae
import hlae.training
from hlae.cli import main
from hlae.exceptions import DivergenceError, ModelFileError, ParameterError, TrainingWarning
from hlae.training import load_checkpoint

MAX_EPOCHS = 10
FIT_OPTIONS = [
    "--max-epochs", str(MAX_EPOCHS), "--patience", "1000", "--hidden-size", "8",
    "--latent-dim", "3", "--batch-size", "8", "--random-state", "7",
]  # fmt: skip
FAST = dict(hidden_size=8, latent_dim=3, batch_size=4, patience=1000, random_state=7)


def walks(n=24, F=2, lo=8, hi=20, seed=0):
    """Random walks of lengths lo..hi."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(int(T), F)).cumsum(0).astype(np.float32)
        for T in rng.integers(lo, hi + 1, size=n)
    ]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    frame = pd.concat(
        [
            pd.DataFrame({"id": i, "step": np.arange(len(x)), "a": x[:, 0], "b": x[:, 1]})
            for i, x in enumerate(walks(32))
        ]
    )
    path = tmp_path_factory.mktemp("data") / "walks.csv"
    frame.to_csv(path, index=False)
    return path


def hlae_fit(csv: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hlae", "fit", str(csv), "--out", str(out), *extra]


def environment() -> dict:
    # one thread: the same arithmetic in every run, and polite on a shared machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def fit_here(csv: Path, out: Path, *extra: str) -> int:
    """``hlae fit`` in this process, on one thread like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(["fit", str(csv), "--out", str(out), *extra])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(csv, tmp_path_factory):
    """An uninterrupted run with the same seed."""
    out = tmp_path_factory.mktemp("reference")
    assert fit_here(csv, out, *FIT_OPTIONS) == 0
    return out


def start_and_stop(csv: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``hlae fit``, send ``sig`` once the first checkpoint exists, wait for the end."""
    proc = subprocess.Popen(
        hlae_fit(csv, out, *FIT_OPTIONS),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = out / "checkpoint" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_same_run(out: Path, reference: Path) -> None:
    """Same final weights (last epoch and kept best), same history, as the reference."""
    ours, theirs = load_checkpoint(out / "checkpoint"), load_checkpoint(reference / "checkpoint")
    assert ours["epoch"] == theirs["epoch"] == MAX_EPOCHS - 1
    for key in ("module", "best_module"):
        for name, value in theirs[key].items():
            torch.testing.assert_close(ours[key][name], value, rtol=0, atol=1e-6)
    best_ours = load_file(str(out / "model" / "weights.safetensors"))
    best_theirs = load_file(str(reference / "model" / "weights.safetensors"))
    assert best_ours.keys() == best_theirs.keys()
    for name, value in best_theirs.items():
        torch.testing.assert_close(best_ours[name], value, rtol=0, atol=1e-6)
    h_ours = pd.read_csv(out / "history.csv")
    h_theirs = pd.read_csv(reference / "history.csv")
    np.testing.assert_allclose(h_ours["train_loss"], h_theirs["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(h_ours["val_loss"], h_theirs["val_loss"], rtol=1e-6)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(csv, reference, tmp_path):
    out = tmp_path / "run"
    killed = start_and_stop(csv, out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    reached = load_checkpoint(out / "checkpoint")["epoch"]
    assert 0 <= reached < MAX_EPOCHS - 1
    assert not (out / "model").exists()

    assert fit_here(csv, out, "--resume") == 0
    assert_same_run(out, reference)


def test_sigterm_stops_cleanly_saves_and_resumes_exactly(csv, reference, tmp_path):
    out = tmp_path / "run"
    stopped = start_and_stop(csv, out, signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert f"hlae fit {csv} --out {out} --resume" in stopped.stderr
    reached = load_checkpoint(out / "checkpoint")["epoch"]
    assert 0 <= reached < MAX_EPOCHS - 1
    # the best model so far is saved and usable
    model = hlae.load(out / "model")
    assert model.stop_reason_ == "interrupted"
    assert len(model.history_) == reached + 1
    assert np.isfinite(model.transform(walks(3))).all()

    assert fit_here(csv, out, "--resume") == 0
    assert_same_run(out, reference)


# -- in-process: the same guarantees through the Python API --------------------------------
@pytest.fixture
def epoch_probe(monkeypatch):
    """Record the epoch the trainer is in, and optionally act inside a training batch."""
    probe = {"epoch": None, "calls": 0, "action": None}
    make_generators, masked_loss = hlae.training._epoch_generators, hlae.training.masked_loss

    def generators(seed, epoch):
        probe["epoch"] = epoch
        return make_generators(seed, epoch)

    def loss(pred, target, mask, kind="mse"):
        value = masked_loss(pred, target, mask, kind)
        if pred.requires_grad and probe["action"] is not None:  # training, not validation
            probe["calls"] += 1
            value = probe["action"](probe, value)
        return value

    monkeypatch.setattr(hlae.training, "_epoch_generators", generators)
    monkeypatch.setattr(hlae.training, "masked_loss", loss)
    return probe


def test_sigint_inside_a_batch_drops_the_epoch_and_resume_is_exact(tmp_path, epoch_probe):
    X = walks()
    full = hlae.HierarchicalAutoencoder(max_epochs=5, **FAST).fit(X)

    def interrupt_in_epoch_3(probe, value):
        if probe["epoch"] == 3 and not probe.get("sent"):
            probe["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)
        return value

    epoch_probe["action"] = interrupt_in_epoch_3
    model = hlae.HierarchicalAutoencoder(max_epochs=5, **FAST)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(TrainingWarning, match="stopped by SIGINT during epoch 3"):
        model.fit(X, checkpoint_dir=tmp_path)
    assert model.stop_reason_ == "interrupted"
    assert [r["epoch"] for r in model.history_] == [0, 1, 2]
    assert load_checkpoint(tmp_path)["epoch"] == 2
    # hlae's handler is gone again: the previous SIGINT handling is back
    assert signal.getsignal(signal.SIGINT) is handler

    epoch_probe["action"] = None
    resumed = hlae.HierarchicalAutoencoder(max_epochs=5, **FAST)
    resumed.fit(X, checkpoint_dir=tmp_path, resume=True)
    assert [r["train_loss"] for r in resumed.history_] == [r["train_loss"] for r in full.history_]
    for a, b in zip(resumed.module_.state_dict().values(), full.module_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_resume_without_a_seed_uses_the_runs_own_seed(tmp_path):
    X = walks()
    params = {**FAST, "random_state": None, "max_epochs": 4}

    class Stop(Exception):
        pass

    def stop_after_epoch_1(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        hlae.HierarchicalAutoencoder(**params).fit(
            X, checkpoint_dir=tmp_path, callback=stop_after_epoch_1
        )
    seed = load_checkpoint(tmp_path)["seed"]
    resumed = hlae.HierarchicalAutoencoder(**params).fit(X, checkpoint_dir=tmp_path, resume=True)
    same_seed = hlae.HierarchicalAutoencoder(**{**params, "random_state": seed}).fit(X)
    assert [r["val_loss"] for r in resumed.history_] == [r["val_loss"] for r in same_seed.history_]
    np.testing.assert_allclose(resumed.transform(X), same_seed.transform(X), atol=1e-6)


def test_resume_needs_a_directory_and_a_matching_checkpoint(tmp_path):
    X = walks(12)
    with pytest.raises(ParameterError, match="checkpoint_dir"):
        hlae.HierarchicalAutoencoder(max_epochs=1, **FAST).fit(X, resume=True)
    # nothing there yet: a warning, then training from the first epoch
    with pytest.warns(TrainingWarning, match="no checkpoint yet"):
        model = hlae.HierarchicalAutoencoder(max_epochs=2, **FAST)
        model.fit(X, checkpoint_dir=tmp_path, resume=True)
    assert len(model.history_) == 2
    # a checkpoint of another architecture is refused before training
    wider = hlae.HierarchicalAutoencoder(max_epochs=2, **{**FAST, "hidden_size": 12})
    with pytest.raises(ModelFileError, match="does not fit this model"):
        wider.fit(X, checkpoint_dir=tmp_path, resume=True)
    # a damaged checkpoint is refused; it is never silently replaced
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="could not be read"):
        hlae.HierarchicalAutoencoder(max_epochs=2, **FAST).fit(
            X, checkpoint_dir=tmp_path, resume=True
        )
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_a_checkpoint_write_that_dies_halfway_leaves_the_good_one(tmp_path, monkeypatch):
    X = walks(12)
    hlae.HierarchicalAutoencoder(max_epochs=2, **FAST).fit(X, checkpoint_dir=tmp_path)
    good = (tmp_path / "checkpoint.pt").read_bytes()

    def dying_save(obj, fh, *args, **kwargs):  # the disk fills up halfway through
        fh.write(b"the first half of a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        hlae.HierarchicalAutoencoder(max_epochs=2, **FAST).fit(X, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == good
    assert load_checkpoint(tmp_path)["epoch"] == 1


# -- divergence ----------------------------------------------------------------------------
def poison_from_epoch(first: int, times: int | None = None):
    """An action making the training loss NaN from epoch ``first`` on (``times`` batches)."""

    def action(probe, value):
        if probe["epoch"] >= first and (times is None or probe.get("poisoned", 0) < times):
            probe["poisoned"] = probe.get("poisoned", 0) + 1
            return value * float("nan")
        return value

    return action


def test_one_divergence_is_rolled_back_at_a_lower_rate(epoch_probe):
    X = walks()
    plain = hlae.HierarchicalAutoencoder(max_epochs=5, **FAST).fit(X)
    epoch_probe["action"] = poison_from_epoch(2, times=1)
    model = hlae.HierarchicalAutoencoder(max_epochs=5, **FAST)
    with pytest.warns(TrainingWarning, match="Diverged at epoch 2.*retry 1 of 3"):
        model.fit(X)
    assert model.stop_reason_ == "max_epochs"
    assert [r["epoch"] for r in model.history_] == [0, 1, 2, 3, 4]
    # epochs before the divergence are untouched; after it the rate is 0.3 times lower
    assert model.history_[1]["train_loss"] == plain.history_[1]["train_loss"]
    for r, p in zip(model.history_[2:], plain.history_[2:]):
        assert r["lr"] == pytest.approx(0.3 * p["lr"])
    assert np.isfinite(model.transform(X)).all()


def test_repeated_divergence_stops_with_the_best_model_kept(epoch_probe, tmp_path):
    X = walks()
    model = hlae.HierarchicalAutoencoder(max_epochs=8, **FAST)
    epoch_probe["action"] = poison_from_epoch(3)
    with pytest.warns(TrainingWarning, match="retry 3 of 3"):
        with pytest.raises(DivergenceError, match=r"diverged 4 times at epoch 3.*best model"):
            model.fit(X, checkpoint_dir=tmp_path / "checkpoint")
    assert model.stop_reason_ == "diverged"
    assert [r["epoch"] for r in model.history_] == [0, 1, 2]
    assert model.best_epoch_ == int(np.argmin([r["val_loss"] for r in model.history_]))
    # the weights are the best ones of the last good checkpoint (epoch 2)
    checkpoint = load_checkpoint(tmp_path / "checkpoint")
    assert checkpoint["epoch"] == 2
    for name, value in model.module_.state_dict().items():
        torch.testing.assert_close(value, checkpoint["best_module"][name], rtol=0, atol=0)
    # the best model is usable, saved and loaded like any other
    model.save(tmp_path / "model")
    again = hlae.load(tmp_path / "model")
    np.testing.assert_array_equal(again.transform(X), model.transform(X))
    assert np.isfinite(again.reconstruct(X[0:1])[0]).all()


def test_learning_rate_of_ten_recovers_or_stops_cleanly():
    X = walks()
    model = hlae.HierarchicalAutoencoder(max_epochs=4, **{**FAST, "lr": 10.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except DivergenceError as exc:
            assert "Lower lr" in str(exc)
    assert any("Diverged at epoch 0" in str(w.message) for w in caught)
    if model.history_:
        assert np.isfinite([r["train_loss"] for r in model.history_]).all()
        assert np.isfinite(model.transform(X)).all()


def test_cli_divergence_saves_the_best_model_and_exits_nonzero(csv, tmp_path, capsys, epoch_probe):
    out = tmp_path / "run"
    epoch_probe["action"] = poison_from_epoch(3)
    code = main(["fit", str(csv), "--out", str(out), "--max-epochs", "10", "--hidden-size", "8",
                 "--batch-size", "8", "--random-state", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "error: Training diverged" in err and "Traceback" not in err
    assert f"the best model so far is saved in {out / 'model'}" in err
    model = hlae.load(out / "model")
    assert model.stop_reason_ == "diverged" and len(model.history_) == 3
    assert (out / "history.csv").exists()


def test_cli_divergence_before_any_epoch_leaves_the_old_model(csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["fit", str(csv), "--out", str(out), "--max-epochs", "1", "--hidden-size", "8"]) == 0
    )
    before = (out / "model" / "weights.safetensors").read_bytes()
    huge = tmp_path / "huge.csv"
    frame = pd.read_csv(csv)
    frame[["a", "b"]] *= 1e15  # fits float32; with no scaling the loss overflows
    frame.to_csv(huge, index=False)
    capsys.readouterr()
    code = main(["fit", str(huge), "--out", str(out), "--scaler", "none", "--max-epochs", "2",
                 "--hidden-size", "8"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "error: Training diverged" in err and "no model to keep" in err
    assert "Traceback" not in err
    assert (out / "model" / "weights.safetensors").read_bytes() == before
