"""Device and precision selection: CUDA chosen only when present, clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlae
from hlae import training
from hlae.exceptions import ParameterError
from hlae.training import autocast_dtype


def _data(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.cumsum(rng.normal(size=(int(T), 2)), 0) for T in rng.integers(12, 30, size=n)]


def test_auto_device_is_cpu_without_cuda_and_cuda_with_it(monkeypatch) -> None:
    model = hlae.HierarchicalAutoencoder(device="auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert model._device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert model._device() == torch.device("cuda")


def test_auto_device_fits_on_this_machine() -> None:
    model = hlae.HierarchicalAutoencoder(
        device="auto", hidden_size=8, latent_dim=2, max_epochs=1, random_state=0
    ).fit(_data())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.module_.parameters()).device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_one_is_a_clear_error() -> None:
    model = hlae.HierarchicalAutoencoder(device="cuda", max_epochs=1)
    with pytest.raises(ParameterError, match="no CUDA device.*device='cpu' or 'auto'"):
        model.fit(_data())


def test_unknown_device_and_precision_are_refused() -> None:
    with pytest.raises(ParameterError, match="device must be"):
        hlae.HierarchicalAutoencoder(device="tpu").fit(_data())
    with pytest.raises(ParameterError, match="precision must be one of"):
        hlae.HierarchicalAutoencoder(precision="half").fit(_data())


def test_precision_auto_is_float32_on_cpu_and_mixed_on_cuda(monkeypatch) -> None:
    assert autocast_dtype("cpu") is None
    assert autocast_dtype("cpu", "bfloat16") is torch.bfloat16
    assert autocast_dtype("cuda", "float32") is None
    monkeypatch.setattr(training, "_lstm_runs_in_bfloat16", lambda device: True)
    assert autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(training, "_lstm_runs_in_bfloat16", lambda device: False)
    assert autocast_dtype("cuda") is torch.float16


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_training_stays_close_to_float32(precision: str) -> None:
    # on CPU autocast runs the linear layers in low precision (the LSTMs stay float32);
    # float16 also goes through the gradient scaler
    X = _data()
    kwargs = {"hidden_size": 8, "latent_dim": 2, "max_epochs": 2, "random_state": 0}
    low = hlae.HierarchicalAutoencoder(precision=precision, **kwargs).fit(X)
    full = hlae.HierarchicalAutoencoder(precision="float32", **kwargs).fit(X)
    assert np.isfinite(low.history_[-1]["train_loss"])
    np.testing.assert_allclose(
        [r["train_loss"] for r in low.history_],
        [r["train_loss"] for r in full.history_],
        rtol=0.05,
    )
