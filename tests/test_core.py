"""Core behaviour: masking, scaling, shapes, persistence, seeding, training, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import hlae
from hlae.cli import main
from hlae.data import FeatureScaler, as_sequences, length_batches, pad_batch
from hlae.exceptions import InputError, ParameterError
from hlae.model import HierarchicalLSTMAutoencoder
from hlae.training import masked_loss

FAST = dict(hidden_size=16, max_epochs=3, batch_size=8, random_state=0)


def sines(n=24, F=3, lo=12, hi=30, seed=0):
    """Noisy sines with a random frequency and phase per sequence; lengths lo..hi."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        T = int(rng.integers(lo, hi + 1))
        t = np.arange(T)[:, None]
        freq, phase = rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)
        x = np.sin(freq * t + phase + np.arange(F)[None, :]) * 3 + 10
        out.append((x + 0.05 * rng.normal(size=x.shape)).astype(np.float32))
    return out


@pytest.mark.parametrize(
    "chunks,variables", [((), False), ((4,), False), ((3, 2), False), ((4,), True)]
)
def test_padding_changes_nothing(chunks, variables):
    torch.manual_seed(0)
    module = HierarchicalLSTMAutoencoder(
        3, latent_dim=4, hidden_size=8, chunk_lengths=chunks, variables=variables
    )
    module.eval()
    seqs = sines(5, lo=5, hi=17)
    x, mask, lengths = pad_batch(seqs, np.arange(5))
    x_other = x.clone()
    x_other[~mask] = 1e3  # garbage in every padded position

    outputs = []
    for inp in (x, x_other):
        module.zero_grad()
        pred, z = module(inp, mask, lengths)
        loss = masked_loss(pred, inp, mask)
        loss.backward()
        grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
        outputs.append((pred[mask], z, loss, grads))
    (p1, z1, l1, g1), (p2, z2, l2, g2) = outputs
    assert torch.equal(p1, p2)
    assert torch.equal(z1, z2)
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_outputs_do_not_depend_on_batch_company():
    torch.manual_seed(0)
    module = HierarchicalLSTMAutoencoder(3, latent_dim=4, hidden_size=8, chunk_lengths=(4,))
    module.eval()
    seqs = sines(6, lo=5, hi=25)
    x, mask, lengths = pad_batch(seqs, np.arange(6))
    together, _ = module(x, mask, lengths)
    for i in range(6):
        xi, mi, li = pad_batch(seqs, np.array([i]))
        alone, _ = module(xi, mi, li)
        assert torch.allclose(alone[0], together[i, : len(seqs[i])], atol=1e-5)


def test_scaler_ignores_padding():
    seqs = [np.full((10, 2), 5.0, np.float32), np.full((2, 2), 7.0, np.float32)]
    seqs[0][:, 1] = np.arange(10)
    scaler = FeatureScaler("standard").fit(seqs)
    observed = np.concatenate(seqs)
    np.testing.assert_allclose(scaler.shift_, observed.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scaler.scale_, observed.std(0), rtol=1e-6)
    # a padded (n, T, F) array with lengths gives the same statistics
    padded = np.zeros((2, 10, 2), np.float32)
    padded[0], padded[1, :2] = seqs[0], seqs[1]
    from_array = as_sequences(padded, lengths=[10, 2])
    scaler2 = FeatureScaler("standard").fit(from_array.values)
    np.testing.assert_allclose(scaler2.shift_, scaler.shift_)
    # constant features stay finite, and scaling round-trips
    const = [np.ones((5, 1), np.float32) * 3]
    s = FeatureScaler("standard").fit(const)
    assert np.isfinite(s.transform(const)[0]).all()
    for kind in ("standard", "robust", "minmax"):
        sc = FeatureScaler(kind).fit(seqs)
        back = sc.inverse_transform(sc.transform(seqs))
        for a, b in zip(back, seqs):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_length_batches_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, size=400)
    batches = length_batches(lengths, 32, rng=rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(400))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert lengths.sum() / padded > 0.85


def test_variable_length_round_trip_and_shapes():
    X = sines(20)
    model = hlae.HierarchicalAutoencoder(latent_dim=3, **FAST).fit(X)
    recon = model.reconstruct(X)
    assert [r.shape for r in recon] == [x.shape for x in X]
    assert model.transform(X).shape == (20, 3)
    errors = model.reconstruction_error(X)
    assert errors.shape == (20,) and np.isfinite(errors).all()
    # reconstructions are in the input's units (the data sit around 10, not 0)
    assert abs(np.concatenate(recon).mean() - np.concatenate(X).mean()) < 2.0
    # an (n, T, F) array with lengths comes back as an array of the same shape
    T = max(len(x) for x in X)
    arr = np.zeros((20, T, 3), np.float32)
    for i, x in enumerate(X):
        arr[i, : len(x)] = x
    lengths = [len(x) for x in X]
    out = model.reconstruct(arr, lengths=lengths)
    assert out.shape == arr.shape
    np.testing.assert_allclose(out[0, : lengths[0]], recon[0], atol=1e-5)
    np.testing.assert_allclose(model.transform(arr, lengths=lengths), model.transform(X), 1e-5)


def test_long_table_input_and_output():
    X = sines(12)
    rows = []
    for i, x in enumerate(X):
        for t, v in enumerate(x):
            rows.append({"id": f"s{i}", "time": t, "a": v[0], "b": v[1], "c": v[2]})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # rows shuffled
    model = hlae.HierarchicalAutoencoder(latent_dim=3, **FAST).fit(frame)
    recon = model.reconstruct(frame)
    assert isinstance(recon, pd.DataFrame)
    assert list(recon.columns) == ["id", "time", "a", "b", "c"]
    assert len(recon) == len(frame)
    z_frame = model.transform(frame)
    np.testing.assert_allclose(z_frame, model.transform(X), atol=1e-5)


def test_save_load_identical(tmp_path):
    X = sines(16)
    model = hlae.HierarchicalAutoencoder(latent_dim=3, hierarchy="time+variables", **FAST)
    model.fit(X)
    model.save(tmp_path / "m")
    loaded = hlae.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    for a, b in zip(loaded.reconstruct(X), model.reconstruct(X)):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_params() == model.get_params()
    assert not list(tmp_path.glob("m/*.pkl"))


def test_same_seed_same_model():
    X = sines(16)
    a = hlae.HierarchicalAutoencoder(latent_dim=3, **FAST).fit(X)
    b = hlae.HierarchicalAutoencoder(latent_dim=3, **FAST).fit(X)
    for (ka, va), (kb, vb) in zip(a.module_.state_dict().items(), b.module_.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = hlae.HierarchicalAutoencoder(latent_dim=3, **{**FAST, "random_state": 1}).fit(X)
    assert not np.allclose(a.transform(X), c.transform(X))


@pytest.mark.parametrize("hierarchy", ["time", "variables", "time+variables", "flat"])
def test_each_hierarchy_trains(hierarchy):
    X = sines(16, F=2, lo=12, hi=16)
    model = hlae.HierarchicalAutoencoder(
        latent_dim=4,
        hierarchy=hierarchy,
        chunk_length=4,
        hidden_size=16,
        max_epochs=30,
        patience=30,
        batch_size=8,
        augmentation=None,
        validation_fraction=0.0,
        random_state=0,
    ).fit(X)
    losses = [r["train_loss"] for r in model.history_]
    assert min(losses[-5:]) <= 0.5 * losses[0], (hierarchy, losses[0], losses[-5:])
    if hierarchy in ("flat", "variables"):
        assert model.chunk_lengths_ == ()
    else:
        assert model.chunk_lengths_ == (4,)


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "cosine"])
def test_losses_train(loss):
    X = sines(16)
    model = hlae.HierarchicalAutoencoder(latent_dim=3, loss=loss, **FAST).fit(X)
    assert all(np.isfinite(r["train_loss"]) for r in model.history_)
    assert set(model.history_[0]) >= {"train_loss", "val_loss", "grad_norm", "lr", "seconds"}


def test_masked_loss_ignores_padding():
    pred = torch.zeros(2, 4, 1)
    target = torch.tensor([[[1.0], [1.0], [9.0], [9.0]], [[1.0], [1.0], [1.0], [1.0]]])
    mask = torch.tensor([[[True], [True], [False], [False]], [[True]] * 4])
    assert masked_loss(pred, target, mask, "mse").item() == pytest.approx(1.0)
    assert masked_loss(pred, target, mask, "mae").item() == pytest.approx(1.0)


def test_more_than_two_levels():
    X = sines(10, lo=40, hi=60)
    model = hlae.HierarchicalAutoencoder(latent_dim=3, chunk_length=(4, 3), **FAST).fit(X)
    assert model.chunk_lengths_ == (4, 3)
    assert [r.shape for r in model.reconstruct(X)] == [x.shape for x in X]


@pytest.mark.parametrize("bidirectional,with_state", [(True, False), (False, True)])
def test_full_rows_unpacked_give_the_packed_results(bidirectional, with_state):
    from hlae.model import _run_all_packed, _run_packed

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=bidirectional)
    lengths = torch.tensor([6, 2, 6, 6, 4, 1, 6])  # mostly full rows, as chunks are
    x = torch.randn(7, 6, 3)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    D = 2 if bidirectional else 1
    state = (torch.randn(D, 7, 5), torch.randn(D, 7, 5)) if with_state else None
    results = []
    for run in (_run_packed, _run_all_packed):
        xi = x.clone().requires_grad_(True)
        out, h = run(lstm, xi, lengths, state)
        (out.square().sum() + h.sum()).backward()
        results.append((out.detach(), h.detach(), xi.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # all rows full: the fused path alone
    out, h = _run_packed(lstm, x[[0, 2, 3, 6]], lengths[[0, 2, 3, 6]])
    ref, ref_h = _run_all_packed(lstm, x[[0, 2, 3, 6]], lengths[[0, 2, 3, 6]])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-6)
    # oneDNN has no float16 LSTM: under float16 autocast on CPU it runs in float32, for
    # batches of one length (which PyTorch would send to oneDNN even packed) and mixed ones
    for rows in ([0, 2, 3, 6], list(range(7))):
        ref, _ = _run_all_packed(lstm, x[rows], lengths[rows])
        with torch.autocast("cpu", dtype=torch.float16):
            out, _ = _run_packed(lstm, x[rows], lengths[rows])
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_default_chunks_leave_short_sequences_several_top_level_units():
    from hlae.estimator import default_chunk_lengths

    assert default_chunk_lengths(np.full(50, 100)) == (10,)  # one length: sqrt(T)
    assert default_chunk_lengths(np.full(50, 4096)) == (64,)
    long = default_chunk_lengths(np.full(50, 10_000))  # the top would see 157 units
    assert len(long) == 2 and 10_000 / np.prod(long) <= 64
    # lengths spread 10x: chunks sized for the short sequences, not for the long ones
    lengths = np.random.default_rng(0).integers(30, 361, size=200)
    (L,) = default_chunk_lengths(lengths)
    short = np.percentile(lengths, 10)
    assert short / L >= np.sqrt(short) - 1  # a short sequence is still several units
    assert np.percentile(lengths, 90) / L <= 64
    assert default_chunk_lengths(np.array([7, 8, 9, 30, 30])) == (3,)  # at least 3 steps


def test_top_linear_paths_resolve_every_unit_of_long_sequences(tmp_path):
    # 90th percentile of the lengths is 100: 20 chunks of 5 steps (flat: 100 steps, capped)
    X = sines(10, lo=90, hi=101)
    T90 = np.percentile([len(x) for x in X], 90)
    model = hlae.HierarchicalAutoencoder(latent_dim=3, chunk_length=5, **FAST).fit(X)
    assert model.n_basis_ == int(np.ceil(T90 / 5)) > 8
    assert model.module_.top_encoder.n_basis == model.module_.top_decoder.n_basis
    assert model.module_.top_decoder.n_basis == model.n_basis_
    flat = hlae.HierarchicalAutoencoder(latent_dim=3, hierarchy="flat", **FAST).fit(X)
    assert flat.n_basis_ == 64
    assert hlae.HierarchicalAutoencoder(latent_dim=3, **FAST).fit(sines(8)).n_basis_ == 8

    # the choice is saved with the model: the weights only fit a module of the same shape
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(hlae.load(tmp_path / "m").transform(X), model.transform(X))


def test_sklearn_conventions():
    model = hlae.HierarchicalAutoencoder(latent_dim=3, hierarchy="flat", **FAST)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()
    model.set_params(latent_dim=5)
    assert model.latent_dim == 5
    X = sines(12)
    assert model.fit(X) is model
    with pytest.raises(hlae.exceptions.NotFittedError):
        clone(model).transform(X)


def test_bad_input_is_named_before_training():
    X = sines(6)
    bad = [x.copy() for x in X]
    bad[3][5, 1] = np.nan
    with pytest.raises(InputError, match=r"Sequence 3 .* step 5, feature 1"):
        hlae.HierarchicalAutoencoder(**FAST).fit(bad)
    with pytest.raises(InputError, match="empty"):
        hlae.HierarchicalAutoencoder(**FAST).fit([])
    with pytest.raises(InputError, match="Sequence 2 has 4 features"):
        hlae.HierarchicalAutoencoder(**FAST).fit(X[:2] + [np.ones((10, 4))])
    with pytest.raises(ParameterError, match="hierarchy"):
        hlae.HierarchicalAutoencoder(hierarchy="deep").fit(X)
    model = hlae.HierarchicalAutoencoder(latent_dim=2, **FAST).fit(X)
    with pytest.raises(InputError, match="fitted on 3"):
        model.transform([np.ones((10, 5))])
    frame = pd.DataFrame({"id": [1, 1, 2, 2], "a": [1.0, 2, 3, 4], "b": ["x", "y", "z", "w"]})
    with pytest.raises(InputError, match="Column 'b' is not numeric"):
        hlae.HierarchicalAutoencoder(**FAST).fit(frame)
    assert issubclass(InputError, ValueError)


def test_cli_fit_encode_reconstruct_on_csv(tmp_path, capsys):
    X = sines(12)
    frame = pd.concat(
        [
            pd.DataFrame({"id": i, "step": np.arange(len(x)), "a": x[:, 0], "b": x[:, 1]})
            for i, x in enumerate(X)
        ]
    )
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "run"
    code = main(
        [
            "fit",
            str(csv),
            "--out",
            str(out),
            "--max-epochs",
            "3",
            "--hidden-size",
            "8",
            "--latent-dim",
            "3",
            "--random-state",
            "0",
        ]
    )
    assert code == 0
    for name in ("model/weights.safetensors", "model/model.json", "history.csv", "loss_curve.png"):
        assert (out / name).exists(), name
    assert len(pd.read_csv(out / "history.csv")) == 3

    emb = tmp_path / "z.csv"
    assert main(["encode", str(out / "model"), str(csv), "--out", str(emb)]) == 0
    z = pd.read_csv(emb)
    assert list(z.columns) == ["id", "z0", "z1", "z2"] and len(z) == 12
    rec = tmp_path / "rec.parquet"
    assert main(["reconstruct", str(out), str(csv), "--out", str(rec)]) == 0
    assert len(pd.read_parquet(rec)) == len(frame)

    # bad input on the command line: an error message, exit code 2, no traceback
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,step,a\n1,0,1.0\n1,1,oops\n")
    assert main(["fit", str(bad), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not numeric" in err and "Traceback" not in err
