"""The catalogue of bad inputs (docs/bad-input.md): every row of its table is a test here.

Each case says what goes in and what must come out: an error of hlae's own type with a
message naming the problem, raised before any training starts; or, where the input is
usable, the documented result. On the command line every error is ``error: ...`` on stderr
and exit code 2, never a traceback. ``test_the_docs_table_lists_exactly_these_cases`` keeps
the table and this file in step.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlae
import hlae.estimator
from hlae.cli import main
from hlae.data import as_sequences, from_long_table, read_table
from hlae.exceptions import (
    DataFileError,
    InputError,
    ModelFileError,
    NotFittedError,
    ParameterError,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
TINY = dict(hidden_size=8, latent_dim=2, max_epochs=1, batch_size=8, random_state=0)
COVERED: set[str] = set()


def covers(*ids: str):
    """Mark a test as the one backing rows ``ids`` of the catalogue."""
    COVERED.update(ids)
    return lambda test: test


def case(case_id: str, *values, **kwargs):
    COVERED.add(case_id)
    return pytest.param(*values, id=case_id, **kwargs)


def walks(n=6, F=2, lo=8, hi=14, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(int(T), F)).cumsum(0).astype(np.float32)
        for T in rng.integers(lo, hi + 1, size=n)
    ]


def long_table(seqs=None) -> pd.DataFrame:
    seqs = walks() if seqs is None else seqs
    return pd.concat(
        [
            pd.DataFrame({"id": i, "step": np.arange(len(x)), "a": x[:, 0], "b": x[:, 1]})
            for i, x in enumerate(seqs)
        ],
        ignore_index=True,
    )


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started on bad input")

    monkeypatch.setattr(hlae.estimator.Trainer, "fit", refuse)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model"
    hlae.HierarchicalAutoencoder(**TINY).fit(walks()).save(path)
    return path


@pytest.fixture
def model_copy(saved_model, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(saved_model, path)
    return path


def cli_error(capsys, argv: list[str]) -> str:
    """Run the command line; it must fail with exit code 2 and a one-line error."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def with_value(value, seq=3, step=5, feature=1):
    X = [x.astype(np.float64) for x in walks()]
    X[seq][step, feature] = value
    return X


# -- values --------------------------------------------------------------------------------
def nullable_int_table():
    frame = long_table()
    frame["c"] = pd.array(np.arange(len(frame)), dtype="Int64")
    frame.loc[4, "c"] = pd.NA
    return frame


VALUE_ERRORS = [
    case("B01", with_value(np.nan), "error", r"Sequence 3 .*\(nan\) at step 5, feature 1 \('x1"),
    case("B03", with_value(np.inf), "mask", r"Sequence 3 .*\(inf\) at step 5, feature 1"),
    case("B04", with_value(-np.inf), "error", r"Sequence 3 .*\(-inf\) at step 5, feature 1"),
    case("B05", with_value(1e39), "error", r"Sequence 3 .*\(1e\+39\) at step 5, .*float32"),
    case("B06", [np.full((9, 2), np.nan)] + walks(), "mask", r"Sequence 0 is missing every"),
    case("B33", nullable_int_table(), "error", r"Sequence 0 .*\(nan\) at step 4, feature 2 \('c'"),
]  # fmt: skip


@pytest.mark.parametrize("X,missing,message", VALUE_ERRORS)
def test_non_finite_values_are_named(X, missing, message, no_training):
    with pytest.raises(InputError, match=message):
        hlae.HierarchicalAutoencoder(missing=missing, **TINY).fit(X)


@covers("B02")
def test_missing_values_are_masked_counted_and_filled_with_the_mean(tmp_path):
    X = walks(12)
    for i, (step, feature) in enumerate([(1, 0), (4, 1), (7, 0)]):
        X[i] = X[i].copy()
        X[i][step, feature] = np.nan
    model = hlae.HierarchicalAutoencoder(missing="mask", **TINY).fit(X)
    assert model.n_missing_ == 3
    model.save(tmp_path / "m")
    assert hlae.load(tmp_path / "m").n_missing_ == 3  # the count travels with the model
    assert np.isfinite([r["train_loss"] for r in model.history_]).all()
    assert np.isfinite(model.reconstruction_error(X)).all()
    # the encoder sees a missing value as the feature's mean (0 after scaling)
    filled = [np.where(np.isnan(x), model.scaler_.shift_.astype(np.float32), x) for x in X]
    np.testing.assert_allclose(model.transform(X), model.transform(filled), atol=1e-6)
    # a missing value has no error; every observed value has one
    errors = model.step_errors(X)
    assert np.isnan(errors[0][1, 0]) and np.isfinite(errors[0][0]).all()
    # without missing="mask" the same data is an error
    with pytest.raises(InputError, match="missing='mask'"):
        hlae.HierarchicalAutoencoder(**TINY).fit(X)


@covers("B02")
def test_cli_reports_how_many_values_were_masked(tmp_path, capsys):
    frame = long_table(walks(12))
    frame.loc[[3, 20], "a"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    argv = ["fit", str(tmp_path / "gaps.csv"), "--out", str(tmp_path / "run"), "--max-epochs",
            "1", "--hidden-size", "8", "--missing", "mask"]  # fmt: skip
    assert main(argv) == 0
    assert "2 missing value(s) were masked out of the loss" in capsys.readouterr().out


# -- collections and shapes ----------------------------------------------------------------
def ragged_object_array_of_text():
    X = np.empty(2, dtype=object)
    X[0], X[1] = np.ones((5, 2)), np.array([[1.5, "b"]] * 5, dtype=object)
    return X


SHAPE_ERRORS = [
    case("B07", [], r"collection is empty"),
    case("B08", np.zeros((0, 5, 2)), r"holds no sequences"),
    case("B09", walks(3) + [np.zeros((0, 2))], r"Sequence 3 has no steps"),
    case("B10", walks(3) + [np.zeros((1, 2))], r"Sequence 3 has 1 step\(s\); at least 2"),
    case("B11", walks(3) + [np.zeros((9, 3))], r"Sequence 3 has 3 features but sequence 0 has 2"),
    case("B12", np.arange(20.0), r"got 1 dimension\(s\).*x.reshape\(-1, 1\)"),
    case("B14", np.zeros((2, 9, 3, 2)), r"got 4 dimension\(s\).*one axis too many"),
    case("B15", np.zeros((30, 2)), r"one sequence of shape \(T, F\): pass \[x\]"),
    case("B17", ragged_object_array_of_text(), r"Sequence 1 holds non-numeric .*'b'"),
    case("B18", [[["a", "b"], ["c", "d"]]], r"Sequence 0 holds non-numeric .*'a'"),
    case("B19", (np.zeros((2, 9, 2)), [9, 12]), r"lengths\[1\] = 12 is outside 0..9"),
    case("B20", "data/train.csv", r"Got a path .*read_table"),
    case("B21", {"a": [1, 2, 3]}, r"Cannot read sequences from an object of type dict"),
    case("B22", [np.zeros((9, 0))], r"no features"),
    case("B23", [[[1.0, 2.0], [3.0]]], r"Sequence 0 cannot be read as an array"),
]  # fmt: skip


@pytest.mark.parametrize("X,message", SHAPE_ERRORS)
def test_bad_shapes_and_kinds_are_refused(X, message, no_training):
    lengths = None
    if isinstance(X, tuple):
        X, lengths = X
    with pytest.raises(InputError, match=message):
        hlae.HierarchicalAutoencoder(**TINY).fit(X, lengths=lengths)


@covers("B13")
def test_a_list_of_1d_arrays_is_univariate_sequences():
    X = [np.sin(np.arange(n) / 3.0) for n in (9, 12, 15)]
    seqs = as_sequences(X)
    assert [v.shape for v in seqs.values] == [(9, 1), (12, 1), (15, 1)]
    recon = hlae.HierarchicalAutoencoder(**TINY).fit(X).reconstruct(X)
    assert [r.shape for r in recon] == [(9, 1), (12, 1), (15, 1)]


@covers("B16")
def test_object_arrays_of_numbers_are_read_as_sequences():
    X = np.empty(3, dtype=object)
    for i, x in enumerate(walks(3)):
        X[i] = x.astype(object)  # numbers held as Python objects, as pandas often gives
    X[1][2, 0] = None  # None is a missing value
    seqs = as_sequences(X, missing="mask")
    assert [v.dtype for v in seqs.values] == [np.float32] * 3
    assert np.isnan(seqs.values[1][2, 0]) and np.isfinite(seqs.values[0]).all()
    with pytest.raises(InputError, match=r"Sequence 1 .*\(nan\) at step 2, feature 0"):
        as_sequences(X)


# -- long tables ---------------------------------------------------------------------------
def table_with(**changes) -> pd.DataFrame:
    frame = long_table()
    for column, (row, value) in changes.items():
        frame[column] = frame[column].astype(object) if isinstance(value, str) else frame[column]
        frame.loc[row, column] = value
    return frame


TABLE_ERRORS = [
    case("B24", table_with(a=(3, "n/a")), {}, r"Column 'a' is not numeric \(for example 'n/a'\)"),
    case("B25", long_table().assign(c=np.nan), {}, r"Column 'c' is empty"),
    case("B26", table_with(step=(3, 2)), {}, r"Sequence 0 has two rows with step = 2 \(row 3\)"),
    case("B28", long_table().rename(columns={"id": "unit"}), {}, r"No sequence-id column"),
    case("B29", table_with(id=(7, np.nan)), {}, r"id column 'id' is missing a value at row 7"),
    case("B30", table_with(step=(7, np.nan)), {}, r"order column 'step' is missing .* row 7"),
    case("B31", long_table(), {"id_column": "unit"}, r"id_column 'unit' is not a column"),
    case("B32", long_table().iloc[:0], {}, r"The table is empty"),
]  # fmt: skip


@pytest.mark.parametrize("frame,options,message", TABLE_ERRORS)
def test_bad_long_tables_are_refused(frame, options, message, no_training):
    with pytest.raises(InputError, match=message):
        hlae.HierarchicalAutoencoder(**TINY).fit(frame, **options)


@covers("B27")
def test_unsorted_order_keys_are_sorted_silently():
    frame = long_table()
    shuffled = frame.sample(frac=1.0, random_state=0)
    ordered, jumbled = from_long_table(frame), from_long_table(shuffled)
    assert sorted(map(str, ordered.ids)) == sorted(map(str, jumbled.ids))
    by_id = dict(zip(jumbled.ids, jumbled.values))
    for key, values in zip(ordered.ids, ordered.values):
        np.testing.assert_array_equal(by_id[key], values)
    # and the reconstruction comes back with each row's own order key
    model = hlae.HierarchicalAutoencoder(**TINY).fit(frame)
    recon = model.reconstruct(shuffled)
    assert set(zip(recon["id"], recon["step"])) == set(zip(frame["id"], frame["step"]))


# -- files ---------------------------------------------------------------------------------
def write_file(kind: str, path: Path) -> Path:
    """Write one kind of bad file at ``path`` (its name carries the extension)."""
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "header only":
        path.write_text("id,step,a,b\n")
    elif kind in ("binary", "unknown"):
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "csv text":
        long_table().to_csv(path, index=False)
    elif kind == "truncated parquet":
        long_table().to_parquet(path.with_suffix(".full"))
        path.write_bytes(path.with_suffix(".full").read_bytes()[:-200])
    elif kind == "no parquet inside":
        path.mkdir()
        (path / "notes.txt").write_text("nothing here")
    return path


FILE_ERRORS = [
    case("B34", "missing", "walks.csv", r"No such file or directory"),
    case("B35", "empty", "walks.csv", r"is empty"),
    case("B36", "header only", "walks.csv", r"holds a header but no rows"),
    case("B37", "unknown", "walks.xlsx", r"Cannot tell the format .* '.xlsx'"),
    case("B38", "binary", "walks.csv", r"is not a text CSV file|Could not read"),
    case("B39", "csv text", "walks.parquet", r"Could not read .* as PARQUET"),
    case("B40", "truncated parquet", "walks.parquet", r"Could not read .* as PARQUET"),
    case("B42", "no parquet inside", "walks", r"holds no .parquet files"),
]  # fmt: skip


@pytest.mark.parametrize("kind,name,message", FILE_ERRORS)
def test_bad_files_are_refused_by_the_reader_and_the_command_line(
    kind, name, message, tmp_path, capsys
):
    path = write_file(kind, tmp_path / name)
    with pytest.raises(DataFileError, match=message):
        read_table(path)
    out = tmp_path / "run"
    err = cli_error(capsys, ["fit", str(path), "--out", str(out)])
    assert re.search(message, err)
    assert not out.exists()  # nothing written for a run that never started


@covers("B41")
def test_a_truncated_csv_is_named_where_it_ends(tmp_path, capsys):
    frame = long_table()
    text = frame.to_csv(index=False)
    cut = text.rstrip("\n").rsplit(",", 1)[0] + ","  # the last row loses its last value
    path = tmp_path / "cut.csv"
    path.write_text(cut)
    last = len(walks()[-1]) - 1
    message = rf"Sequence 5 has a non-finite value \(nan\) at step {last}, feature 1 \('b'\)"
    err = cli_error(capsys, ["fit", str(path), "--out", str(tmp_path / "run")])
    assert re.search(message, err)


@covers("B43")
def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    long_table().to_csv(tmp_path / "walks.csv", index=False)
    (tmp_path / "taken").write_text("a file")
    err = cli_error(capsys, ["fit", str(tmp_path / "walks.csv"), "--out", str(tmp_path / "taken")])
    assert "is a file" in err and (tmp_path / "taken").read_text() == "a file"


@covers("B49")
def test_the_real_command_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hlae", "encode", str(tmp_path / "no-model"),
         str(tmp_path / "no.csv"), "--out", str(tmp_path / "z.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


# -- saved models --------------------------------------------------------------------------
def damage(kind: str, path: Path) -> None:
    weights, config = path / "weights.safetensors", path / "model.json"
    if kind == "no weights":
        weights.unlink()
    elif kind == "garbage weights":
        weights.write_bytes(b"\x00\x01 not safetensors " * 10)
    elif kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "other architecture":
        wider = hlae.HierarchicalAutoencoder(**{**TINY, "hidden_size": 12}).fit(walks())
        wider.save(path.parent / "wider")
        shutil.copy(path.parent / "wider" / "weights.safetensors", weights)
    elif kind == "damaged config":
        config.write_text(config.read_text()[:40])
    elif kind == "config without keys":
        config.write_text('{"params": {"latent_dim": 2}}')
    elif kind == "no directory":
        shutil.rmtree(path)


MODEL_ERRORS = [
    case("B44", "no weights", r"weights.safetensors' does not exist"),
    case("B45", "garbage weights", r"weights in .* could not be loaded"),
    case("B46", "truncated weights", r"weights in .* could not be loaded"),
    case("B47", "other architecture", r"damaged or belongs to another model"),
    case("B48", "damaged config", r"model.json' is damaged"),
    case("B48", "config without keys", r"model.json' is damaged \(KeyError"),
    case("B49", "no directory", r"model.json' does not exist"),
]


@pytest.mark.parametrize("kind,message", MODEL_ERRORS)
def test_damaged_models_are_refused(kind, message, model_copy, tmp_path, capsys):
    damage(kind, model_copy)
    with pytest.raises(ModelFileError, match=message):
        hlae.load(model_copy)
    long_table().to_csv(tmp_path / "walks.csv", index=False)
    argv = [str(model_copy), str(tmp_path / "walks.csv"), "--out", str(tmp_path / "z.csv")]
    for command in ("encode", "reconstruct"):
        assert re.search(message, cli_error(capsys, [command, *argv]))
    assert not (tmp_path / "z.csv").exists()


@covers("B50")
def test_a_fitted_model_refuses_another_feature_count(saved_model, tmp_path, capsys):
    model = hlae.load(saved_model)
    three = walks(F=3)
    for method in (model.transform, model.reconstruct, model.reconstruction_error):
        with pytest.raises(InputError, match="The data has 3 features but the model was fitted"):
            method(three)
    frame = long_table(walks()).assign(c=1.0)
    frame.to_csv(tmp_path / "three.csv", index=False)
    out = tmp_path / "z.csv"
    err = cli_error(capsys, ["encode", str(saved_model), str(tmp_path / "three.csv"), "--out",
                             str(out)])  # fmt: skip
    assert "3 features but the model was fitted on 2" in err and not out.exists()


@covers("B51")
def test_an_unfitted_model_says_so():
    with pytest.raises(NotFittedError):
        hlae.HierarchicalAutoencoder().transform(walks())


# -- parameters ----------------------------------------------------------------------------
PARAMETER_ERRORS = [
    case("B54", {"latent_dim": 0}, ["--latent-dim", "0"], r"latent_dim must be a positive"),
    case("B55", {"chunk_length": -4}, ["--chunk-length", "-4"], r"chunk_length must be an int"),
    case("B56", {"hierarchy": "deep"}, ["--hierarchy", "deep"], r"hierarchy must be one of"),
    case("B57", {"missing": "drop"}, ["--missing", "drop"], r"missing must be 'error' or 'mask'"),
    case("B58", {"lr": -1.0}, ["--lr", "-1"], r"lr must be a positive number"),
    case("B58", {"dropout": 1.5}, ["--dropout", "1.5"], r"dropout must be in \[0, 1\)"),
    case("B58", {"batch_size": 0}, ["--batch-size", "0"], r"batch_size must be a positive"),
    case("B58", {"validation_fraction": 0.95}, ["--validation-fraction", "0.95"],
         r"validation_fraction must be in"),
    case("B58", {"loss": "l3"}, ["--loss", "l3"], r"loss must be one of"),
    case("B58", {"augmentation": "flip"}, ["--augmentation", "flip"], r"Unknown augmentation"),
]  # fmt: skip


@pytest.mark.parametrize("params,options,message", PARAMETER_ERRORS)
def test_parameters_out_of_range_are_refused(
    params, options, message, no_training, tmp_path, capsys
):
    with pytest.raises(ParameterError, match=message):
        hlae.HierarchicalAutoencoder(**{**TINY, **params}).fit(walks())
    long_table().to_csv(tmp_path / "walks.csv", index=False)
    out = tmp_path / "run"
    err = cli_error(capsys, ["fit", str(tmp_path / "walks.csv"), "--out", str(out), *options])
    assert re.search(message, err) and not out.exists()


# -- runs already on disk ------------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path):
    long_table(walks(12)).to_csv(tmp_path / "walks.csv", index=False)
    out = tmp_path / "run"
    argv = ["fit", str(tmp_path / "walks.csv"), "--out", str(out), "--max-epochs", "1",
            "--hidden-size", "8"]  # fmt: skip
    assert main(argv) == 0
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@covers("B59")
def test_bad_data_into_an_existing_run_changes_nothing(finished_run, tmp_path, capsys):
    before = snapshot(finished_run)
    frame = long_table(walks(12))
    frame.loc[10, "b"] = np.inf
    frame.to_csv(tmp_path / "bad.csv", index=False)
    err = cli_error(capsys, ["fit", str(tmp_path / "bad.csv"), "--out", str(finished_run)])
    assert "non-finite value (inf)" in err
    err = cli_error(capsys, ["fit", str(tmp_path / "walks.csv"), "--out", str(finished_run),
                             "--latent-dim", "0"])  # fmt: skip
    assert "latent_dim" in err
    assert snapshot(finished_run) == before
    hlae.load(finished_run / "model")


@covers("B52", "B53")
def test_resume_problems_are_errors(finished_run, tmp_path, capsys):
    data = str(tmp_path / "walks.csv")
    err = cli_error(capsys, ["fit", data, "--out", str(tmp_path / "elsewhere"), "--resume"])
    assert "nothing to resume" in err
    (finished_run / "checkpoint" / "checkpoint.pt").write_bytes(b"half a checkpoint")
    before = snapshot(finished_run)
    err = cli_error(capsys, ["fit", data, "--out", str(finished_run), "--resume"])
    assert "checkpoint" in err and "could not be read" in err
    assert snapshot(finished_run) == before


# -- the documentation ---------------------------------------------------------------------
def test_the_docs_table_lists_exactly_these_cases():
    text = DOCS.read_text()
    rows = re.findall(r"^\|\s*(B\d\d)\s*\|", text, flags=re.MULTILINE)
    assert len(rows) == len(set(rows)), "a case appears twice in the table"
    assert set(rows) == COVERED
    assert len(rows) >= 25


@covers("B60")
def test_resume_on_other_data_is_refused_and_the_checkpoint_kept(tmp_path):
    X = walks(12)
    hlae.HierarchicalAutoencoder(**{**TINY, "max_epochs": 2}).fit(X, checkpoint_dir=tmp_path)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    other = [x * 2.0 for x in X]  # same shapes and counts, other values
    for data in (walks(13), other):
        with pytest.raises(ModelFileError, match="other data"):
            hlae.HierarchicalAutoencoder(**{**TINY, "max_epochs": 4}).fit(
                data, checkpoint_dir=tmp_path, resume=True
            )
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    # the data the run started on resumes
    model = hlae.HierarchicalAutoencoder(**{**TINY, "max_epochs": 4})
    model.fit(X, checkpoint_dir=tmp_path, resume=True)
    assert len(model.history_) == 4
