"""Run configuration files: checked keys and types, command-line precedence, saved config."""

from __future__ import annotations

import inspect
import tomllib

import numpy as np
import pandas as pd
import pytest

import hlae
from hlae.cli import main
from hlae.config import (
    ConfigError,
    load_config,
    parse_config,
    resolved_config,
    section_keys,
    write_config,
)


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_estimator_parameter_has_a_table():
    names = set(inspect.signature(hlae.HierarchicalAutoencoder).parameters)
    keys = section_keys()
    assert set(keys["model"]) | set(keys["training"]) == names
    assert not set(keys["model"]) & set(keys["training"])


def test_values_are_converted(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
            [model]
            latent_dim = 4
            chunk_length = [4, 3]
            scaler = "none"
            dropout = 0
            [training]
            lr = 1e-3
            max_epochs = "auto"
            augmentation = ["jitter", "scaling"]
            random_state = 7
            [data]
            path = "data/train.csv"
            features = ["a", "b"]
            [output]
            tensorboard = true
            """,
        )
    )
    assert config.params == {
        "latent_dim": 4,
        "chunk_length": (4, 3),
        "scaler": None,
        "dropout": 0.0,
        "lr": 1e-3,
        "max_epochs": "auto",
        "augmentation": ("jitter", "scaling"),
        "random_state": 7,
    }
    assert isinstance(config.params["dropout"], float)
    # a relative data path is relative to the configuration file
    assert config.data["path"] == str((tmp_path / "data" / "train.csv").resolve())
    assert config.output == {"tensorboard": True}
    hlae.HierarchicalAutoencoder(**config.params)._check_params()


@pytest.mark.parametrize(
    "document,message",
    [
        # an unknown key is named, with the valid keys and the likely intended one
        (
            {"model": {"latnt_dim": 4}},
            r"unknown key 'latnt_dim' in \[model\].*did you mean "
            r"'latent_dim'.*Valid keys of \[model\]: latent_dim, hierarchy",
        ),  # fmt: skip
        (
            {"training": {"latent_dim": 4}},
            r"unknown key 'latent_dim' in \[training\]; it "
            r"belongs in \[model\]",
        ),  # fmt: skip
        ({"latent_dim": 4}, r"key 'latent_dim' belongs in the \[model\] table"),
        (
            {"modle": {}},
            r"unknown table or key 'modle' \(did you mean 'model'\?\).*\[model\], "
            r"\[training\], \[data\], \[output\]",
        ),  # fmt: skip
        # a wrong type names the key and the expected type
        (
            {"model": {"latent_dim": "8"}},
            r"\[model\] latent_dim must be an integer, got '8' "
            r"\(a string\)",
        ),  # fmt: skip
        ({"model": {"latent_dim": True}}, r"latent_dim must be an integer, got True"),
        ({"training": {"lr": "fast"}}, r"\[training\] lr must be a number, got 'fast'"),
        (
            {"model": {"chunk_length": ["a"]}},
            r"chunk_length must be an integer or a list of "
            r"integers or \"none\"",
        ),  # fmt: skip
        ({"output": {"tensorboard": "yes"}}, r"\[output\] tensorboard must be true or false"),
        ({"data": {"features": "a,b"}}, r"\[data\] features must be a list of strings"),
        ({"model": 3}, r"'model' must be a table"),
        # a value of the right type but out of range: the estimator's own message
        ({"model": {"hierarchy": "tree"}}, r"run.toml: hierarchy must be one of"),
        ({"data": {"layout": "tnc"}}, r"layout must be \"ntf\" or \"nct\""),
    ],
)
def test_bad_configurations(document, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(document, source="run.toml")


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="No such configuration file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[model\nlatent_dim = 3"))


def test_resolved_config_round_trips(tmp_path):
    model = hlae.HierarchicalAutoencoder(latent_dim=5, chunk_length=(4, 2), scaler=None)
    path = write_config(resolved_config(model.get_params()), tmp_path / "config.toml")
    again = load_config(path)
    assert hlae.HierarchicalAutoencoder(**again.params).get_params() == model.get_params()


def long_table(n=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        T = int(rng.integers(10, 18))
        x = np.sin(0.3 * np.arange(T))[:, None] + 0.1 * rng.normal(size=(T, 2))
        rows.append(pd.DataFrame({"unit": i, "tick": np.arange(T), "a": x[:, 0], "b": x[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def test_cli_config_flags_override_and_saved(tmp_path, capsys):
    long_table().to_csv(tmp_path / "train.csv", index=False)
    config = write(
        tmp_path,
        """
        [model]
        latent_dim = 3
        hidden_size = 8
        [training]
        max_epochs = 3
        batch_size = 8
        random_state = 1
        [data]
        path = "train.csv"
        id_column = "unit"
        order_column = "tick"
        """,
    )
    run = tmp_path / "run"
    # DATA comes from the file; --max-epochs on the command line wins over the file
    assert main(["fit", "--config", str(config), "--out", str(run), "--max-epochs", "2"]) == 0
    model = hlae.load(run / "model")
    assert (model.latent_dim, model.hidden_size, model.random_state) == (3, 8, 1)
    assert model.max_epochs == 2 and len(model.history_) == 2

    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["training"]["max_epochs"] == 2
    assert saved["model"]["latent_dim"] == 3
    assert saved["model"]["chunk_length"] == "none"  # chosen from the data
    assert saved["data"]["id_column"] == "unit"
    assert set(saved["model"]) | set(saved["training"]) == set(model.get_params())

    # the saved configuration repeats the run exactly
    again = tmp_path / "again"
    assert main(["fit", "--config", str(run / "config.toml"), "--out", str(again)]) == 0
    repeated = hlae.load(again / "model").history_
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in repeated] == [r[key] for r in model.history_]


def test_cli_bad_config_is_a_clear_error(tmp_path, capsys):
    config = write(tmp_path, "[model]\nlatent_dim = 'eight'\n")
    code = main(["fit", "data.csv", "--config", str(config), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "latent_dim must be an integer, got 'eight'" in err
    assert not (tmp_path / "run").exists()  # nothing written before the checks
    assert main(["fit", "--out", str(tmp_path / "run")]) == 2
    assert "No data given" in capsys.readouterr().err
