"""Run configuration files: every model and training parameter of ``hlae fit`` in TOML.

A configuration has four tables; every key is optional and a missing key keeps its default::

    [model]                      # the architecture and what it reconstructs
    latent_dim = 8
    hierarchy = "time"
    chunk_length = [6, 4]        # a list stacks levels; leave out for the default
    scaler = "none"              # "none" stands for None wherever None is allowed

    [training]                   # the optimiser, stopping and resources
    lr = 0.003
    max_epochs = 200
    augmentation = ["jitter", "scaling"]
    random_state = 0

    [data]                       # how to read DATA (as the command-line options)
    path = "train.csv"           # used when the command line gives no DATA
    id_column = "unit"
    order_column = "time"
    features = ["a", "b"]
    layout = "ntf"

    [output]
    tensorboard = true

:func:`load_config` checks every key and type and says which key is wrong and what it
accepts; the estimator's own checks then test the values. ``hlae fit`` writes the resolved
configuration (every parameter, defaults included) as ``config.toml`` beside the model, so
``hlae fit --config RUN/config.toml`` repeats a run.
"""

from __future__ import annotations

import difflib
import inspect
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlae.exceptions import ParameterError

__all__ = [
    "ConfigError",
    "RunConfig",
    "load_config",
    "parse_config",
    "resolved_config",
    "write_config",
    "apply_config",
    "data_options",
    "section_keys",
    "MODEL_KEYS",
    "DATA_KEYS",
    "OUTPUT_KEYS",
]

# Estimator parameters that shape the model; every other estimator parameter is training.
MODEL_KEYS = (
    "latent_dim",
    "hierarchy",
    "chunk_length",
    "hidden_size",
    "variable_size",
    "dropout",
    "loss",
    "scaler",
    "missing",
)
# key -> (accepted Python types, description used in messages)
DATA_KEYS: dict[str, tuple[Any, str]] = {
    "path": (str, "a string (the data file)"),
    "id_column": (str, "a string (a column name)"),
    "order_column": (str, "a string (a column name)"),
    "features": (list[str], "a list of strings (column names)"),
    "layout": (str, 'a string, "ntf" or "nct"'),
}
OUTPUT_KEYS: dict[str, tuple[Any, str]] = {
    "tensorboard": (bool, "true or false"),
}
NONE = "none"  # TOML has no null: this string stands for None where None is allowed


class ConfigError(ParameterError):
    """A configuration file that cannot be used: unknown key, wrong type, bad value."""


@dataclass
class RunConfig:
    """A checked configuration.

    Attributes
    ----------
    params : dict
        Estimator parameters (``[model]`` and ``[training]`` together), ready for
        ``HierarchicalAutoencoder(**params)``.
    data : dict
        Data options: ``path``, ``id_column``, ``order_column``, ``features``, ``layout``.
    output : dict
        Output options: ``tensorboard``.
    source : str
        Where the configuration came from (for messages).
    """

    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    source: str = "<config>"


def _estimator_hints() -> dict[str, Any]:
    from hlae.estimator import HierarchicalAutoencoder

    hints = typing.get_type_hints(HierarchicalAutoencoder.__init__)
    names = [p for p in inspect.signature(HierarchicalAutoencoder.__init__).parameters][1:]
    return {name: hints.get(name, Any) for name in names}


def section_keys() -> dict[str, list[str]]:
    """The keys each table accepts, in order: ``model``, ``training``, ``data``, ``output``."""
    names = list(_estimator_hints())
    return {
        "model": [n for n in names if n in MODEL_KEYS],
        "training": [n for n in names if n not in MODEL_KEYS],
        "data": list(DATA_KEYS),
        "output": list(OUTPUT_KEYS),
    }


def load_config(path: str | Path) -> RunConfig:
    """Read and check a TOML run configuration.

    Parameters
    ----------
    path : str or Path
        The ``.toml`` file.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        When the file is missing or not valid TOML, or a key is unknown, of the wrong type
        or out of range; the message names the file, the table and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No such configuration file: {str(path)!r}.")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    config = parse_config(document, source=str(path))
    if "path" in config.data:  # relative to the configuration file, not to where hlae runs
        config.data["path"] = str((path.parent / config.data["path"]).resolve())
    return config


def parse_config(document: dict[str, Any], *, source: str = "<config>") -> RunConfig:
    """Check a configuration already parsed into a dictionary (see :func:`load_config`).

    Parameters
    ----------
    document : dict
        Tables ``model``, ``training``, ``data`` and ``output``.
    source : str
        Name used in error messages.

    Returns
    -------
    RunConfig
    """
    from hlae.estimator import HierarchicalAutoencoder

    sections = section_keys()
    hints = _estimator_hints()
    config = RunConfig(source=source)
    for name, table in document.items():
        if name not in sections:
            home = next((s for s, keys in sections.items() if name in keys), None)
            if home is not None:
                raise ConfigError(f"{source}: key {name!r} belongs in the [{home}] table.")
            raise ConfigError(
                f"{source}: unknown table or key {name!r}{_close(name, list(sections))}; the "
                f"valid tables are {', '.join(f'[{s}]' for s in sections)}."
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"{source}: {name!r} must be a table ([{name}] followed by keys), got "
                f"{_describe(table)}."
            )
        for key, value in table.items():
            if key not in sections[name]:
                home = next((s for s, keys in sections.items() if key in keys), None)
                where = f"; it belongs in [{home}]" if home else _close(key, sections[name])
                raise ConfigError(
                    f"{source}: unknown key {key!r} in [{name}]{where}. Valid keys of "
                    f"[{name}]: {', '.join(sections[name])}."
                )
            if name in ("model", "training"):
                config.params[key] = _convert(value, hints[key], f"{source}: [{name}] {key}")
            else:
                kind, text = (DATA_KEYS if name == "data" else OUTPUT_KEYS)[key]
                config_part = config.data if name == "data" else config.output
                config_part[key] = _check_plain(value, kind, text, f"{source}: [{name}] {key}")
    if config.data.get("layout") not in (None, "ntf", "nct"):
        raise ConfigError(
            f'{source}: [data] layout must be "ntf" or "nct", got {config.data["layout"]!r}.'
        )
    try:
        HierarchicalAutoencoder(**config.params)._check_params()
    except ParameterError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def _close(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "a table"})
    return f"{value!r} ({names.get(type(value), type(value).__name__)})"


def _type_text(hint: Any) -> str:
    """Words for a type hint: ``int | tuple[int, ...] | None`` -> an integer, ..."""
    words = []
    for part in _union(hint):
        if part is type(None):
            words.append(f'"{NONE}"')
        elif typing.get_origin(part) is tuple:
            inner = typing.get_args(part)[0]
            words.append(f"a list of {_type_text(inner).removeprefix('an ').removeprefix('a ')}s")
        else:
            words.append(
                {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
                    part, getattr(part, "__name__", str(part))
                )
            )
    return " or ".join(words)


def _union(hint: Any) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check a TOML value against an estimator parameter's type hint; return the value."""
    parts = _union(hint)
    if isinstance(value, str) and value == NONE and type(None) in parts:
        return None
    for part in parts:
        if part is Any:
            return value
        if part is bool and isinstance(value, bool):
            return value
        if part is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if part is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if part is str and isinstance(value, str):
            return value
        if typing.get_origin(part) is tuple and isinstance(value, list):
            inner = typing.get_args(part)[0]
            try:
                return tuple(_convert(v, inner, where) for v in value)
            except ConfigError:
                continue
    raise ConfigError(f"{where} must be {_type_text(hint)}, got {_describe(value)}.")


def _check_plain(value: Any, kind: Any, text: str, where: str) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    else:  # a list of strings
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        raise ConfigError(f"{where} must be {text}, got {_describe(value)}.")
    return value


def resolved_config(
    params: dict[str, Any],
    *,
    data: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every parameter in its table, ready for :func:`write_config`.

    Parameters
    ----------
    params : dict
        Estimator parameters, typically ``model.get_params()``.
    data, output : dict, optional
        Data and output options; None values are left out.

    Returns
    -------
    dict
        ``{"model": {...}, "training": {...}, "data": {...}, "output": {...}}`` with None
        written as ``"none"`` and tuples as lists.
    """
    sections = section_keys()
    document: dict[str, dict[str, Any]] = {}
    for name in ("model", "training"):
        document[name] = {k: _plain(params[k]) for k in sections[name] if k in params}
    document["data"] = {k: _plain(v) for k, v in (data or {}).items() if v is not None}
    document["output"] = {k: v for k, v in (output or {}).items() if v is not None}
    return document


def _plain(value: Any) -> Any:
    if value is None:
        return NONE
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


def write_config(document: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Write a configuration (as :func:`resolved_config` returns it) to a TOML file.

    Returns
    -------
    Path
        The file written.
    """
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# The resolved configuration of this run: every parameter, defaults included.\n"
        "# Repeat the run with: hlae fit --config config.toml --out NEW_DIR\n"
        f'# "{NONE}" stands for None (a default chosen from the data, or switched off).\n\n'
    )
    path.write_text(header + tomli_w.dumps(document), encoding="utf-8")
    return path


def apply_config(args: Any) -> RunConfig:
    """Read ``args.config`` (if any) and fill the data options the command line left unset.

    Command-line values always win: a data option is taken from the file only when its
    attribute on ``args`` is None. Estimator parameters are returned in
    :attr:`RunConfig.params` for the caller to merge under the command-line flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``hlae fit`` arguments (``config``, ``data``, ``id_column``, ...).

    Returns
    -------
    RunConfig
        Empty when no configuration was given.
    """
    config = load_config(args.config) if getattr(args, "config", None) else RunConfig()
    data = config.data
    if getattr(args, "data", None) is None:
        if "path" not in data:
            raise ConfigError(
                "No data given: name the data file on the command line (hlae fit DATA ...) "
                "or as path in the [data] table of --config."
            )
        args.data = data["path"]
    for key in ("id_column", "order_column", "layout"):
        if getattr(args, key, None) is None and key in data:
            setattr(args, key, data[key])
    if getattr(args, "features", None) is None and "features" in data:
        args.features = ",".join(data["features"])
    return config


def data_options(args: Any) -> dict[str, Any]:
    """The data options of parsed arguments, as the ``[data]`` table of a configuration."""
    features = getattr(args, "features", None)
    return {
        "path": str(Path(args.data).resolve()),
        "id_column": getattr(args, "id_column", None),
        "order_column": getattr(args, "order_column", None),
        "features": features.split(",") if features else None,
        "layout": getattr(args, "layout", None),
    }
