"""Every input format reaches fit and encode with the same sequences, in the same order.

The reference is a model fitted on a plain list of ``(T_i, F)`` arrays. Each format holds the
same sequences; a model fitted on that format with the same seed must give the same
embeddings, so any change of values, order or length on the way in fails the comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlae
from hlae.cli import main
from hlae.data import as_sequences, from_aeon, from_long_table, write_table
from hlae.exceptions import DataFileError, InputError, ParameterError
from hlae.formats import read_npz, read_sequences, write_npz

PARAMS = dict(latent_dim=3, hidden_size=8, max_epochs=2, batch_size=8, random_state=0)
N, F = 12, 3


def make_sequences(n=N, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for T in rng.integers(10, 21, size=n):
        t = np.arange(T)[:, None]
        x = np.sin(rng.uniform(0.2, 0.6) * t + np.arange(F)[None, :]) * 2 + 5
        out.append((x + 0.1 * rng.normal(size=x.shape)).astype(np.float32))
    return out


SEQS = make_sequences()
IDS = [f"case-{i:02d}" for i in range(N)]
LENGTHS = np.array([len(s) for s in SEQS])


def padded(fill=0.0, channels_first=False):
    T = int(LENGTHS.max())
    out = np.full((N, T, F), fill, dtype=np.float32)
    for i, s in enumerate(SEQS):
        out[i, : len(s)] = s
    return out.transpose(0, 2, 1) if channels_first else out


def long_frame():
    """A long table with non-default column names, an extra column and shuffled rows."""
    rng = np.random.default_rng(1)
    rows = []
    for key, s in zip(IDS, SEQS):
        frame = pd.DataFrame(s, columns=["a", "b", "c"])
        frame.insert(0, "tick", np.arange(len(s)) * 10)
        frame.insert(0, "unit", key)
        frame["note"] = 1.0  # not a feature: excluded with feature_columns
        rows.append(frame.iloc[rng.permutation(len(frame))])  # steps out of order
    return pd.concat(rows, ignore_index=True)


TABLE = dict(id_column="unit", order_column="tick", feature_columns=["a", "b", "c"])


@pytest.fixture(scope="module")
def reference():
    model = hlae.HierarchicalAutoencoder(**PARAMS).fit(SEQS)
    return model, model.transform(SEQS)


def fit_encode(X, **kwargs):
    model = hlae.HierarchicalAutoencoder(**PARAMS).fit(X, **kwargs)
    return model, model.transform(X, **kwargs)


def check_same(z, reference):
    assert z.shape == (N, PARAMS["latent_dim"])
    np.testing.assert_allclose(z, reference[1], atol=1e-5)


# -- the Python API ----------------------------------------------------------------------
def test_list_and_padded_arrays(reference):
    check_same(fit_encode(padded(), lengths=LENGTHS)[1], reference)
    # tslearn pads with NaN at the end: those steps are padding, not missing values
    check_same(fit_encode(padded(np.nan))[1], reference)


def test_nan_padding_is_padding_not_missing(reference):
    seqs = as_sequences(padded(np.nan))
    assert list(seqs.lengths) == list(LENGTHS)
    model = reference[0]
    recon = model.reconstruct(padded(np.nan))
    assert recon.shape == padded().shape
    for i, T in enumerate(LENGTHS):  # padding stays NaN, observed steps are reconstructed
        assert np.isnan(recon[i, T:]).all() and np.isfinite(recon[i, :T]).all()
    # a NaN inside a sequence is a missing value, not padding: an error by default
    holes = padded(np.nan)
    holes[0, 2, 1] = np.nan
    with pytest.raises(InputError, match="missing='mask'"):
        model.transform(holes)


def test_aeon_collections(reference):
    cube = padded(channels_first=True)  # (n, channels, time)
    check_same(fit_encode(cube, lengths=LENGTHS, layout="nct")[1], reference)
    listed = [s.T for s in SEQS]  # aeon's unequal-length collections: (channels, T_i)
    model, z = fit_encode(listed, layout="nct")
    check_same(z, reference)
    check_same(fit_encode(from_aeon(listed))[1], reference)
    # outputs come back channels first, like the input
    recon = model.reconstruct(listed, layout="nct")
    assert [r.shape for r in recon] == [s.shape for s in listed]
    assert model.reconstruct(cube, lengths=LENGTHS, layout="nct").shape == cube.shape
    # aeon's pd-multiindex DataFrame
    index = pd.MultiIndex.from_tuples(
        [(i, t) for i, s in enumerate(SEQS) for t in range(len(s))], names=["case", "tp"]
    )
    multi = pd.DataFrame(np.concatenate(SEQS), index=index, columns=["c0", "c1", "c2"])
    check_same(fit_encode(from_aeon(multi))[1], reference)


def test_ambiguous_layout_is_an_error(reference):
    cube = np.random.default_rng(0).normal(size=(6, 3, 40))
    with pytest.raises(InputError, match="ambiguous.*layout='ntf' or layout='nct'"):
        hlae.HierarchicalAutoencoder(**PARAMS).fit(cube)
    with pytest.raises(ParameterError, match="layout must be"):
        as_sequences(cube, layout="tnc")
    # an explicit layout settles it either way
    assert as_sequences(cube, layout="ntf").n_features == 40
    assert as_sequences(cube, layout="nct").n_features == 3
    # a fitted model knows its feature count: a channels-first array is named as such
    with pytest.raises(InputError, match="looks laid out \\(n, channels, time\\)"):
        reference[0].transform(padded(channels_first=True), lengths=LENGTHS)
    with pytest.raises(InputError, match="pass layout='nct'"):
        as_sequences([s.T for s in SEQS])


def test_long_table(reference):
    check_same(fit_encode(long_frame(), **TABLE)[1], reference)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_files(tmp_path, reference, suffix):
    path = tmp_path / f"data{suffix}"
    write_table(long_frame(), path)
    seqs = read_sequences(path, **TABLE)
    assert seqs.ids == IDS
    check_same(fit_encode(seqs)[1], reference)


def test_npz_layouts(tmp_path, reference):
    # padded, as write_npz writes it, with ids and feature names
    path = write_npz(tmp_path / "padded.npz", SEQS, ids=IDS, feature_names=["a", "b", "c"])
    seqs = read_npz(path)
    assert seqs.ids == IDS and seqs.feature_names == ["a", "b", "c"]
    check_same(fit_encode(seqs)[1], reference)
    # padded channels first, the layout stored in the file
    np.savez(tmp_path / "nct.npz", values=padded(channels_first=True), lengths=LENGTHS,
             layout="nct")  # fmt: skip
    check_same(fit_encode(read_npz(tmp_path / "nct.npz"))[1], reference)
    # one array per sequence, named by its id, file order kept
    np.savez(tmp_path / "each.npz", **dict(zip(IDS, SEQS)))
    seqs = read_npz(tmp_path / "each.npz")
    assert seqs.ids == IDS
    check_same(fit_encode(seqs)[1], reference)
    # the columns of a long table (what write_table writes)
    write_table(long_frame(), tmp_path / "table.npz")
    seqs = read_npz(tmp_path / "table.npz", **TABLE)
    assert seqs.ids == IDS
    check_same(fit_encode(seqs)[1], reference)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "odd.npz", a=np.zeros((2, 3, 4)), b=np.zeros(3))
    with pytest.raises(DataFileError, match="cannot read as sequences"):
        read_npz(tmp_path / "odd.npz")
    np.savez(tmp_path / "objects.npz", values=np.array([object()], dtype=object))
    with pytest.raises(DataFileError, match="pickle"):
        read_npz(tmp_path / "objects.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataFileError, match="truncated or of another format"):
        read_npz(tmp_path / "broken.npz")
    np.savez(tmp_path / "ids.npz", values=padded(), lengths=LENGTHS, ids=np.arange(3))
    with pytest.raises(DataFileError, match="one id per sequence"):
        read_npz(tmp_path / "ids.npz")


def test_ts_file(tmp_path, reference):
    from aeon.datasets import save_to_ts_file

    save_to_ts_file([s.T for s in SEQS], path=str(tmp_path), problem_name="seqs")
    path = next(tmp_path.glob("seqs*.ts"))
    check_same(fit_encode(read_sequences(path))[1], reference)


# -- the command line --------------------------------------------------------------------
CLI_FIT = ["--latent-dim", "3", "--hidden-size", "8", "--max-epochs", "2", "--batch-size", "8",
           "--random-state", "0"]  # fmt: skip


def write_input(kind, tmp_path):
    """Write the sequences in one file format; return the path and the data options."""
    if kind in ("csv", "parquet"):
        path = write_table(long_frame(), tmp_path / f"data.{kind}")
        return path, ["--id-column", "unit", "--order-column", "tick", "--features", "a,b,c"]
    if kind == "npz":
        return write_npz(tmp_path / "data.npz", SEQS, ids=IDS), []
    if kind == "npz-nct":
        np.savez(tmp_path / "data.npz", values=padded(channels_first=True), lengths=LENGTHS,
                 ids=np.asarray(IDS))  # fmt: skip
        return tmp_path / "data.npz", ["--layout", "nct"]
    from aeon.datasets import save_to_ts_file

    save_to_ts_file([s.T for s in SEQS], path=str(tmp_path), problem_name="data")
    return next(tmp_path.glob("data*.ts")), []


@pytest.mark.parametrize(
    "kind,output",
    [("csv", "csv"), ("parquet", "parquet"), ("npz", "npz"), ("npz-nct", "csv"), ("ts", "npz")],
)
def test_cli_fit_and_encode(tmp_path, reference, kind, output, capsys):
    data, options = write_input(kind, tmp_path)
    run = tmp_path / "run"
    assert main(["fit", str(data), "--out", str(run), *CLI_FIT, *options]) == 0
    out = tmp_path / f"z.{output}"
    assert main(["encode", str(run), str(data), "--out", str(out), *options]) == 0

    # the output is keyed by the input's ids, in the input's order
    if output == "npz":
        with np.load(out, allow_pickle=False) as f:
            frame = pd.DataFrame({k: f[k] for k in f.files})
    else:
        frame = pd.read_csv(out) if output == "csv" else pd.read_parquet(out)
    id_column = "unit" if kind in ("csv", "parquet") else "id"
    expected_ids = list(range(N)) if kind == "ts" else IDS
    assert frame[id_column].tolist() == expected_ids
    z = frame[[f"z{j}" for j in range(PARAMS["latent_dim"])]].to_numpy()
    check_same(z, reference)


def test_cli_reconstruct_npz_reads_back(tmp_path, reference):
    data, _ = write_input("npz", tmp_path)
    reference[0].save(tmp_path / "model")
    out = tmp_path / "recon.npz"
    assert main(["reconstruct", str(tmp_path / "model"), str(data), "--out", str(out)]) == 0
    seqs = read_npz(out)  # the columns of a long table, keyed by id and step
    assert seqs.ids == IDS
    expected = reference[0].reconstruct(SEQS)
    for got, want in zip(seqs.values, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_long_table_roundtrip_keeps_ids_and_order():
    seqs = from_long_table(long_frame(), **TABLE)
    assert seqs.ids == IDS
    for got, want in zip(seqs.values, SEQS):
        np.testing.assert_array_equal(got, want)
