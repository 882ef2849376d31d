"""The exported encoder gives the PyTorch model's embeddings (within 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlae
from hlae.cli import main
from hlae.exceptions import ParameterError
from hlae.export import FixedLengthEncoder, export_encoder, load_encoder, max_difference

TOL = 1e-4


def sequences(n=16, F=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (np.cumsum(rng.normal(size=(int(T), F)), axis=0) * 2 + 5).astype(np.float32)
        for T in rng.integers(12, 30, size=n)
    ]


def fitted(**params):
    base = dict(latent_dim=4, hidden_size=8, max_epochs=1, batch_size=8, random_state=0)
    return hlae.HierarchicalAutoencoder(**{**base, **params}).fit(sequences())


def data(n, T, F=3, seed=1):
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(size=(n, T, F)), axis=1) * 2 + 5).astype(np.float32)


@pytest.mark.parametrize(
    "params",
    [
        dict(hierarchy="time", chunk_length=5),
        dict(hierarchy="time", chunk_length=(4, 3)),
        dict(hierarchy="flat"),
        dict(hierarchy="variables"),
        dict(hierarchy="time+variables", chunk_length=4),
    ],
    ids=["time", "time-two-levels", "flat", "variables", "time+variables"],
)
def test_fixed_length_path_matches_the_model(params):
    model = fitted(**params)
    # lengths with a partial last chunk, whole chunks, and fewer steps than one chunk
    for T in (3, 12, 23):
        assert max_difference(model, FixedLengthEncoder(model, T), data(5, T)) < TOL


def test_exported_program_matches_the_model(tmp_path):
    model = fitted(chunk_length=(4, 3))
    path = export_encoder(model, tmp_path / "encoder.pt2", length=23)
    encoder = load_encoder(path)
    # the batch size is free; outputs match transform within the tolerance
    for n in (1, 9):
        X = data(n, 23, seed=n)
        with torch.no_grad():
            z = encoder(torch.from_numpy(X)).numpy()
        assert z.shape == (n, 4)
        np.testing.assert_allclose(z, model.transform(X), atol=TOL, rtol=0)
    # only torch is needed to run it
    program = torch.export.load(str(path))
    assert program.module()(torch.from_numpy(data(2, 23))).shape == (2, 4)


def test_bad_length():
    model = fitted()
    with pytest.raises(ParameterError, match="length must be an integer of at least 2"):
        FixedLengthEncoder(model, 1)


def test_cli_export(tmp_path, capsys):
    model = fitted(chunk_length=5)
    model.save(tmp_path / "model")
    out = tmp_path / "encoder.pt2"
    assert main(["export", str(tmp_path / "model"), "--length", "20", "--out", str(out)]) == 0
    assert "largest difference from the model" in capsys.readouterr().out
    X = data(3, 20)
    with torch.no_grad():
        z = load_encoder(out)(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(z, model.transform(X), atol=TOL, rtol=0)
