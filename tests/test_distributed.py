"""Distributed training under torchrun (gloo on CPU) against a one-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hlae import distributed
from hlae.cli import main

# the same run in one process (global batch 8) and in two (4 per process)
COMMON = [
    "--hidden-size", "16", "--latent-dim", "4", "--max-epochs", "2", "--dropout", "0",
    "--random-state", "3", "--validation-fraction", "0.2",
]  # fmt: skip


def _write_table(path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(32):
        T = int(rng.integers(20, 41))
        t = np.arange(T)
        x = np.stack([np.sin(t / 5 + i), np.cos(t / 7 + 0.3 * i), 0.1 * rng.normal(size=T)], 1)
        frame = pd.DataFrame(x, columns=["a", "b", "c"])
        frame.insert(0, "step", t)
        frame.insert(0, "id", i)
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)


def _torchrun() -> list[str]:
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    _write_table(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*_torchrun(), "--standalone", "--nproc-per-node=2", "-m", "hlae", "fit", str(data)]
    cmd += ["--out", str(tmp_path / "two"), *COMMON, "--batch-size", "4"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        main(
            ["-q", "fit", str(data), "--out", str(tmp_path / "one"), *COMMON, "--batch-size", "8"]
        )
        == 0
    )

    # rank 0 alone wrote the outputs and printed the summary
    assert run.stdout.count("trained 2 epochs") == 1
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoint").iterdir()) == ["checkpoint.pt"]
    assert (tmp_path / "two" / "model" / "model.json").exists()

    two = pd.read_csv(tmp_path / "two" / "history.csv")
    one = pd.read_csv(tmp_path / "one" / "history.csv")
    assert len(two) == len(one) == 2
    assert two["train_loss"].iloc[-1] < two["train_loss"].iloc[0]  # it trains
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)


def test_single_process_helpers_answer_without_a_process_group(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == 1
    assert not distributed.is_distributed()
    assert distributed.is_main() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    assert distributed.any_true(True) and not distributed.any_true(False)
    assert distributed.broadcast_int(7) == 7


@pytest.mark.parametrize(("env", "expected"), [({"HLAE_NUM_THREADS": "1"}, 1), ({}, None)])
def test_threads_follow_the_environment(monkeypatch, env, expected) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("HLAE_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        assert distributed.configure_threads("cpu") == expected
        if expected is not None:
            assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
