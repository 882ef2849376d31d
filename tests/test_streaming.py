"""Streaming Parquet data larger than memory: reading, scaling, batching, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlae
from hlae.cli import main
from hlae.data import FeatureScaler, from_long_table
from hlae.exceptions import DataFileError, InputError, ParameterError
from hlae.streaming import ParquetDataset


def _table(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        T = int(rng.integers(8, 40))
        t = np.arange(T)
        x = np.stack([np.sin(t / 4 + i), 3 + 2 * rng.normal(size=T)], 1)
        frames.append(pd.DataFrame({"id": f"s{i}", "step": t, "a": x[:, 0], "b": x[:, 1]}))
    return pd.concat(frames, ignore_index=True)


def _write_parts(frame: pd.DataFrame, directory: Path, parts: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ids = frame["id"].unique()
    for k in range(parts):
        part = frame[frame["id"].isin(ids[k::parts])]
        part.to_parquet(directory / f"part-{k}.parquet", index=False, row_group_size=50)
    return directory


def test_streamed_sequences_equal_the_in_memory_table(tmp_path: Path) -> None:
    frame = _table()
    # record batches of 7 rows: most sequences span several of them
    data = ParquetDataset(_write_parts(frame, tmp_path / "d"), read_rows=7)
    assert (data.id_column, data.order_column, data.feature_columns) == ("id", "step", ["a", "b"])
    streamed = dict(data._sequences())
    reference = from_long_table(frame)
    assert sorted(streamed) == sorted(reference.ids)
    for key, values in zip(reference.ids, reference.values):
        np.testing.assert_allclose(streamed[key], values, rtol=1e-6)


def test_a_glob_pattern_names_the_same_files(tmp_path: Path) -> None:
    _write_parts(_table(), tmp_path / "d")
    assert ParquetDataset(str(tmp_path / "d" / "part-*.parquet")).files == (
        ParquetDataset(tmp_path / "d").files
    )


def test_batches_cover_each_training_sequence_once_grouped_by_length(tmp_path: Path) -> None:
    frame = _table(n=40)
    data = ParquetDataset(_write_parts(frame, tmp_path / "d"), buffer_size=10)
    model = hlae.HierarchicalAutoencoder(batch_size=4, validation_fraction=0.2)
    train, validation, lengths = data.prepare(model, seed=0)
    assert len(train) + len(validation) == 40 and len(validation) > 0
    assert lengths.min() == frame.groupby("id").size().min()

    rng = np.random.default_rng(0)
    seen = [len(v) for batch in train.batches(rng) for v in batch]
    assert len(seen) == len(train)
    # each process keeps a disjoint share; together they hold every sequence
    shares = [
        sum(len(b) for b in train.batches(np.random.default_rng(0), rank=r, world_size=2))
        for r in range(2)
    ]
    assert sum(shares) == len(train) and min(shares) > 0
    # batches come from a buffer sorted by length: the spread inside a batch is small
    spreads = [np.ptp([len(v) for v in b]) for b in train.batches(None)]
    assert np.mean(spreads) < 0.5 * np.ptp(seen)


@pytest.mark.parametrize("kind", ["standard", "minmax", None])
def test_the_streaming_scaler_equals_the_in_memory_one(tmp_path: Path, kind) -> None:
    frame = _table()
    data = ParquetDataset(_write_parts(frame, tmp_path / "d"), read_rows=11)
    model = hlae.HierarchicalAutoencoder(scaler=kind)
    data.prepare(model, seed=0)
    reference = FeatureScaler(kind).fit(from_long_table(frame).values)
    np.testing.assert_allclose(model.scaler_.shift_, reference.shift_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.scaler_.scale_, reference.scale_, rtol=1e-6)


def test_robust_scaling_is_refused_for_streams(tmp_path: Path) -> None:
    data = ParquetDataset(_write_parts(_table(), tmp_path / "d"))
    with pytest.raises(ParameterError, match="scaler='robust' cannot be fitted in one"):
        hlae.HierarchicalAutoencoder(scaler="robust").fit(data)


def test_fit_on_a_stream_trains_and_encodes(tmp_path: Path) -> None:
    frame = _table()
    data = ParquetDataset(_write_parts(frame, tmp_path / "d"), buffer_size=8)
    model = hlae.HierarchicalAutoencoder(
        hidden_size=8, latent_dim=3, max_epochs=3, batch_size=4, random_state=0
    ).fit(data)
    assert len(model.history_) == 3
    assert all(np.isfinite(r["val_loss"]) for r in model.history_)
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert model.transform(frame).shape == (30, 3)


def test_command_line_streams_a_directory(tmp_path: Path, capsys) -> None:
    directory = _write_parts(_table(), tmp_path / "d")
    out = tmp_path / "run"
    args = ["fit", str(directory), "--out", str(out), "--max-epochs", "2", "--hidden-size", "8"]
    assert main(["-q", *args]) == 0
    assert (out / "model" / "model.json").exists()
    assert "trained 2 epochs" in capsys.readouterr().out


# -- bad files: a clear error naming the file, before anything is written --------------------
def _disagreeing_columns(d: Path) -> str:
    frame = _table()
    _write_parts(frame, d, parts=2)
    frame.rename(columns={"b": "c"}).head(50).to_parquet(d / "part-9.parquet", index=False)
    return r"part-9.parquet' has columns .*missing \['b'\], extra \['c'\]"


def _disagreeing_types(d: Path) -> str:
    frame = _table()
    _write_parts(frame, d, parts=2)
    frame.head(50).astype({"step": "float64"}).to_parquet(d / "part-9.parquet", index=False)
    return r"Column 'step' is double in .*part-9.parquet' but int64 in .*part-0.parquet'"


def _no_rows(d: Path) -> str:
    d.mkdir()
    _table().head(0).to_parquet(d / "part-0.parquet", index=False)
    return r"holds no rows"


def _no_parquet(d: Path) -> str:
    d.mkdir()
    (d / "notes.txt").write_text("nothing")
    return r"holds no .parquet files"


def _damaged(d: Path) -> str:
    _write_parts(_table(), d, parts=2)
    (d / "part-1.parquet").write_bytes(b"not parquet at all")
    return r"Could not read .*part-1.parquet' as PARQUET"


@pytest.mark.parametrize(
    "make", [_disagreeing_columns, _disagreeing_types, _no_rows, _no_parquet, _damaged]
)
def test_bad_directories_are_refused_naming_the_file(tmp_path: Path, make, capsys) -> None:
    d = tmp_path / "d"
    message = make(d)
    with pytest.raises(DataFileError, match=message):
        ParquetDataset(d)
    out = tmp_path / "run"
    assert main(["fit", str(d), "--out", str(out), "--max-epochs", "1"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_rows_out_of_order_or_scattered_are_refused(tmp_path: Path) -> None:
    frame = _table(n=6)
    d = tmp_path / "unsorted"
    d.mkdir()
    frame.sort_values(["step", "id"]).to_parquet(d / "part-0.parquet", index=False)
    with pytest.raises(InputError, match="contiguous|sort each file"):
        hlae.HierarchicalAutoencoder(max_epochs=1).fit(ParquetDataset(d))

    d = tmp_path / "backwards"
    d.mkdir()
    frame.iloc[::-1].to_parquet(d / "part-0.parquet", index=False)
    with pytest.raises(InputError, match="increasing order of 'step'"):
        hlae.HierarchicalAutoencoder(max_epochs=1).fit(ParquetDataset(d))


def test_two_processes_stream_unequal_shares_and_agree(tmp_path: Path) -> None:
    # the two ranks hold different numbers of sequences, so one runs out of batches first
    directory = _write_parts(_table(n=40), tmp_path / "d")
    script = tmp_path / "fit.py"
    script.write_text(
        "import json, sys, hlae\n"
        "from pathlib import Path\n"
        "from hlae import distributed\n"
        "from hlae.streaming import ParquetDataset\n"
        f"data = ParquetDataset({str(directory)!r}, buffer_size=5)\n"
        "model = hlae.HierarchicalAutoencoder(hidden_size=8, latent_dim=3, max_epochs=2,\n"
        "                                     batch_size=3, random_state=1).fit(data)\n"
        "history = [(r['train_loss'], r['val_loss']) for r in model.history_]\n"
        # one file per rank: the ranks share stdout, where their lines can interleave
        f"out = Path({str(tmp_path)!r}, f'rank{{distributed.rank()}}.json')\n"
        "out.write_text(json.dumps(history))\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*cmd, "--standalone", "--nproc-per-node=2", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    histories = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(histories[0]) == 2 and histories[0] == histories[1]  # same history on both ranks
