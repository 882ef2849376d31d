"""TensorBoard logging: what is written, and that logging does not change training."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import hlae
from hlae.cli import main
from hlae.exceptions import ParameterError

PARAMS = dict(latent_dim=3, hidden_size=8, max_epochs=3, batch_size=8, random_state=0)


def sequences(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (np.sin(0.4 * np.arange(T))[:, None] + 0.1 * rng.normal(size=(T, 2))).astype(np.float32)
        for T in rng.integers(10, 18, size=n)
    ]


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_logger_writes_scalars_and_figures_without_changing_training(tmp_path):
    pytest.importorskip("tensorboard")
    from hlae.tensorboard import TensorBoardLogger

    X = sequences()
    plain = hlae.HierarchicalAutoencoder(**PARAMS).fit(X)
    model = hlae.HierarchicalAutoencoder(**PARAMS)
    logger = TensorBoardLogger(tmp_path / "tb", model=model, sample=X[:3], figure_every=2)
    model.fit(X, callback=logger)
    logger.close()

    # logging only reads the model: the same losses and the same embeddings
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in model.history_] == [r[key] for r in plain.history_]
    np.testing.assert_array_equal(model.transform(X), plain.transform(X))

    events = read_events(tmp_path / "tb")
    tags = events.Tags()
    for tag in (
        "loss/train",
        "loss/validation",
        "optimiser/learning_rate",
        "optimiser/gradient_norm",
    ):
        assert tag in tags["scalars"]
    train = [e.value for e in events.Scalars("loss/train")]
    assert np.allclose(train, [r["train_loss"] for r in model.history_])
    # figures at epochs 0 and 2, and the final one at close
    assert [e.step for e in events.Images("reconstructions")] == [0, 2, 3]
    assert all(e.width > 100 and e.height > 100 for e in events.Images("reconstructions"))


def test_cli_tensorboard(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    rows = [
        pd.DataFrame({"id": i, "step": np.arange(len(x)), "a": x[:, 0], "b": x[:, 1]})
        for i, x in enumerate(sequences())
    ]
    pd.concat(rows).to_csv(tmp_path / "train.csv", index=False)
    flags = ["--latent-dim", "3", "--hidden-size", "8", "--max-epochs", "2"]
    run = tmp_path / "run"
    assert (
        main(["fit", str(tmp_path / "train.csv"), "--out", str(run), "--tensorboard", *flags]) == 0
    )
    assert len(read_events(run / "tensorboard").Scalars("loss/train")) == 2
    assert (run / "history.csv").exists()  # the CSV of every epoch is always written


def test_missing_tensorboard_is_a_clear_error(monkeypatch, tmp_path):
    from hlae.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ParameterError, match=r"pip install 'hlae\[tensorboard\]'"):
        TensorBoardLogger(tmp_path / "tb")
