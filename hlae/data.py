"""Turning user data into validated sequences, scaling them, and batching them by length.

Every public entry point of hlae goes through :func:`as_sequences`, so a bad input gets the
same clear error wherever it comes in, before any model is built.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hlae.exceptions import DataFileError, InputError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS",
    "Sequences",
    "as_sequences",
    "from_aeon",
    "from_long_table",
    "read_table",
    "write_table",
    "FeatureScaler",
    "length_batches",
    "pad_batch",
]

ID_COLUMN_GUESSES = ("id", "sequence_id", "series_id", "seq_id", "case_id")
ORDER_COLUMN_GUESSES = ("time", "step", "timestamp", "t", "order", "index")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# "ntf": (n, time, features) / (T_i, F), hlae's default and tslearn's; "nct": (n, channels,
# time) / (C, T_i), the layout of aeon and sktime collections.
LAYOUTS = ("ntf", "nct")


@dataclass
class Sequences:
    """A validated collection of multivariate sequences.

    Attributes
    ----------
    values : list of ndarray
        One float32 array ``(T_i, F)`` per sequence, in the input's units. Missing values
        are NaN (only when ``missing="mask"`` was asked for).
    ids : list
        One identifier per sequence (the long table's id, or the position).
    feature_names : list of str
        One name per feature.
    layout : str
        ``"list"``, ``"array"`` or ``"frame"``: the form the input came in, so outputs can
        be returned in the same form.
    padded_length : int or None
        For ``"array"`` input, the time dimension of the array.
    channels_first : bool
        The input was laid out channels first (``layout="nct"``), so outputs shaped like the
        input are too.
    """

    values: list[np.ndarray]
    ids: list[Any]
    feature_names: list[str]
    layout: str = "list"
    padded_length: int | None = None
    frame_columns: dict[str, str] = field(default_factory=dict)
    order_values: list[np.ndarray] | None = None
    channels_first: bool = False

    @property
    def lengths(self) -> np.ndarray:
        """Number of steps of each sequence, ``(n,)`` int64."""
        return np.array([len(v) for v in self.values], dtype=np.int64)

    @property
    def n_features(self) -> int:
        """Number of features per step."""
        return self.values[0].shape[1]

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, index: np.ndarray | list[int]) -> Sequences:
        """The sequences at positions ``index``, with their ids, as a ``"list"`` collection."""
        return Sequences(
            [self.values[i] for i in index],
            [self.ids[i] for i in index],
            self.feature_names,
            "list",
        )


def as_sequences(
    X: Any,
    *,
    lengths: Any = None,
    id_column: str | None = None,
    order_column: str | None = None,
    feature_columns: list[str] | None = None,
    missing: str = "error",
    min_length: int = 2,
    n_features: int | None = None,
    feature_names: list[str] | None = None,
    layout: str | None = None,
) -> Sequences:
    """Validate any accepted input form and return :class:`Sequences`.

    Parameters
    ----------
    X : list of array-like, ndarray of shape (n, T, F), pandas.DataFrame or Sequences
        A list of ``(T_i, F)`` arrays; a padded ``(n, T, F)`` array (with ``lengths``, or
        with trailing all-NaN steps as padding, as tslearn pads); or a long table with one
        row per step. With ``layout="nct"``, arrays are channels first instead.
    lengths : array-like of int, optional
        The observed length of each sequence of a padded array.
    id_column, order_column, feature_columns : optional
        Columns of a long table; see :func:`from_long_table`.
    missing : {"error", "mask"}
        What to do with NaN: raise (default) or keep them as missing values to be masked.
    min_length : int
        Shortest sequence accepted.
    n_features : int, optional
        The feature count the data must have (a fitted model's).
    feature_names : list of str, optional
        Names to use for array input.
    layout : {"ntf", "nct"}, optional
        How array input is laid out. ``"ntf"``: ``(n, T, F)`` arrays and ``(T_i, F)``
        sequences (hlae's and tslearn's layout). ``"nct"``: ``(n, channels, T)`` arrays and
        ``(channels, T_i)`` sequences (aeon's and sktime's collections). By default arrays
        are read as ``"ntf"``, except that a 3-D array with fewer steps than features
        (``X.shape[1] < X.shape[2]``) is ambiguous and refused until ``layout`` is given;
        with a fitted model's ``n_features``, the axis that matches it decides.

    Raises
    ------
    InputError
        With a message that names the problem, where it is, and what to do.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((5, 3, 40))  # aeon's layout: 5 cases, 3 channels, 40 steps
    >>> seqs = as_sequences(X, layout="nct")
    >>> seqs.values[0].shape, seqs.channels_first
    ((40, 3), True)
    """
    if missing not in ("error", "mask"):
        raise ParameterError(f"missing must be 'error' or 'mask', got {missing!r}.")
    if layout is not None and layout not in LAYOUTS:
        raise ParameterError(
            f"layout must be 'ntf' (n, time, features) or 'nct' (n, channels, time), got "
            f"{layout!r}."
        )
    if layout == "nct" and isinstance(X, (pd.DataFrame, Sequences)):
        raise ParameterError(
            "layout='nct' describes arrays; a long table or Sequences object has no layout "
            "to choose. Leave layout unset for tables."
        )
    channels_first = layout == "nct"
    if isinstance(X, Sequences):
        seqs = X
    elif isinstance(X, pd.DataFrame):
        seqs = from_long_table(
            X, id_column=id_column, order_column=order_column, feature_columns=feature_columns
        )
    elif isinstance(X, (str, Path)):
        raise InputError(
            f"Got a path ({X!s}) where data was expected. Read it first with "
            "hlae.data.read_table(path), or use the command line, which reads files."
        )
    elif isinstance(X, np.ndarray) and X.dtype != object:
        seqs = _from_array(_time_major(X, layout, n_features), lengths, feature_names)
    elif isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
        seqs = _from_list(list(X), feature_names, channels_first)
    elif hasattr(X, "__array__"):
        X = np.asarray(X)
        seqs = _from_array(_time_major(X, layout, n_features), lengths, feature_names)
    else:
        raise InputError(
            f"Cannot read sequences from an object of type {type(X).__name__}. Pass a list "
            "of (T_i, F) arrays, an (n, T, F) array, or a pandas long table."
        )
    if not isinstance(X, Sequences):
        seqs.channels_first = channels_first
    if n_features is not None and seqs.n_features != n_features:
        hint = ""
        if layout is None and seqs.layout in ("list", "array"):
            if all(len(v) == n_features for v in seqs.values):
                hint = (
                    f" Each sequence has {n_features} steps, the model's feature count: if "
                    "the data is laid out (channels, time), as in aeon and sktime, pass "
                    "layout='nct'."
                )
        raise InputError(
            f"The data has {seqs.n_features} features but the model was fitted on "
            f"{n_features}. Pass data with the same features, in the same order, as in "
            f"fit.{hint}"
        )
    _check_values(seqs, missing=missing, min_length=min_length)
    return seqs


def from_aeon(X: Any, **kwargs: Any) -> Sequences:
    """Read an aeon or sktime collection: ``(n, channels, T)`` array or ``(channels, T_i)`` list.

    The same as ``as_sequences(X, layout="nct", **kwargs)``; estimators accept
    ``layout="nct"`` in ``fit``, ``transform`` and the other methods to the same effect.

    Parameters
    ----------
    X : ndarray of shape (n, channels, T), list of (channels, T_i) arrays, or DataFrame
        The collection, as aeon's loaders return it (``load_classification`` and friends),
        or a "pd-multiindex" DataFrame (index levels case and time point, one column per
        channel), which is read as a long table.
    **kwargs
        Passed on to :func:`as_sequences` (``missing``, ``lengths``, ...).

    Returns
    -------
    Sequences
        One ``(T_i, channels)`` array per case, with ``channels_first`` set so that
        reconstructions of arrays are returned channels first again.
    """
    if isinstance(X, pd.DataFrame):
        if X.index.nlevels != 2:
            raise InputError(
                "An aeon DataFrame collection must have a two-level index (case, time "
                f"point), got {X.index.nlevels} level(s)."
            )
        names = [n if n is not None else d for n, d in zip(X.index.names, ("case", "timepoint"))]
        frame = X.rename_axis(names).reset_index()
        return as_sequences(frame, id_column=names[0], order_column=names[1], **kwargs)
    return as_sequences(X, layout="nct", **kwargs)


def _time_major(X: np.ndarray, layout: str | None, n_features: int | None) -> np.ndarray:
    """Return a 3-D array as (n, T, F), refusing a layout that cannot be told apart."""
    if X.ndim != 3:
        return X  # _from_array explains what shapes are accepted
    if layout == "nct":
        return X.transpose(0, 2, 1)
    if layout == "ntf":
        return X
    n, A, B = X.shape
    if n_features is not None:
        if B == n_features or A != n_features:
            return X  # time major, or a feature count error that _from_array's caller gives
        raise InputError(
            f"The array has shape {X.shape}: its last axis ({B}) does not match the model's "
            f"{n_features} features but its second axis does, so it looks laid out (n, "
            "channels, time) as in aeon and sktime. Pass layout='nct' (or layout='ntf' if "
            "it really is (n, time, features))."
        )
    if A < B:
        raise InputError(
            f"The array of shape {X.shape} is ambiguous: read as hlae's default (n, time, "
            f"features) it has {A} steps of {B} features; read as aeon's and sktime's (n, "
            f"channels, time) it has {A} channels of {B} steps. Say which with layout='ntf' "
            "or layout='nct' (hlae.data.from_aeon(X) reads aeon collections)."
        )
    return X


def _from_array(X: np.ndarray, lengths: Any, feature_names: list[str] | None) -> Sequences:
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise InputError(
            f"The array has dtype {X.dtype}, which is not numeric. Convert it with "
            "np.asarray(X, dtype=float) after removing text values."
        )
    if X.ndim != 3:
        hint = {
            1: "a 1-D array is one univariate sequence: pass [x.reshape(-1, 1)]",
            2: "a 2-D array is one sequence of shape (T, F): pass [x], or x[None] for a "
            "batch of one",
            4: "a 4-D array has one axis too many: reshape it to (n, T, F)",
        }.get(X.ndim, "reshape it to (n, T, F)")
        raise InputError(
            f"Expected an (n_sequences, n_steps, n_features) array, got {X.ndim} dimension(s) "
            f"with shape {X.shape}; {hint}."
        )
    n, T, F = X.shape
    if n == 0:
        raise InputError("The array holds no sequences (its first dimension is 0).")
    if F == 0:
        raise InputError("The array has no features (its last dimension is 0).")
    X = X.astype(np.float64, copy=False)
    if lengths is None:
        # NaN-padded arrays (tslearn's convention): trailing steps that are NaN in every
        # feature are padding.
        all_nan = np.isnan(X).all(axis=2)  # (n, T)
        if all_nan.any():
            observed = ~all_nan
            last = np.where(observed.any(axis=1), T - np.argmax(observed[:, ::-1], axis=1), 0)
            lengths = last
        else:
            lengths = np.full(n, T)
    lengths = np.asarray(lengths)
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
        raise InputError(
            f"lengths must be {n} integers (one per sequence), got shape {lengths.shape} and "
            f"dtype {lengths.dtype}."
        )
    if (lengths > T).any() or (lengths < 0).any():
        bad = int(np.flatnonzero((lengths > T) | (lengths < 0))[0])
        raise InputError(
            f"lengths[{bad}] = {int(lengths[bad])} is outside 0..{T}, the array's time dimension."
        )
    names = list(feature_names) if feature_names is not None else _default_names(F)
    values = [_float32(X[i, : int(lengths[i])], f"Sequence {i}", names) for i in range(n)]
    return Sequences(values, list(range(n)), names, "array", T)


def _from_list(
    items: list, feature_names: list[str] | None, channels_first: bool = False
) -> Sequences:
    if len(items) == 0:
        raise InputError("The collection is empty: pass at least one sequence.")
    values = []
    width = None
    for i, item in enumerate(items):
        if isinstance(item, pd.DataFrame):
            non_numeric = [c for c in item.columns if not pd.api.types.is_numeric_dtype(item[c])]
            if non_numeric:
                raise InputError(
                    f"Sequence {i} has non-numeric column(s) {non_numeric}; drop them or "
                    "convert them to numbers."
                )
            item = item.to_numpy()
        try:
            arr = np.asarray(item)
        except ValueError as exc:  # ragged nested lists
            raise InputError(
                f"Sequence {i} cannot be read as an array of shape (T, F): {str(exc).rstrip('.')}."
            ) from None
        if arr.dtype == object and pd.api.types.infer_dtype(arr.ravel(), skipna=True) in (
            "floating",
            "integer",
            "mixed-integer-float",
            "boolean",
            "empty",
        ):
            arr = arr.astype(np.float64)  # numbers (and None) held as Python objects
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            numbers = (int, float, np.number, type(None))
            sample = next((e for e in arr.ravel() if not isinstance(e, numbers)), None)
            example = f", for example {str(sample)!r}" if isinstance(sample, str) else ""
            raise InputError(
                f"Sequence {i} holds non-numeric values (dtype {arr.dtype}{example}). Convert "
                "it to a float array, e.g. np.asarray(seq, dtype=float), after removing text "
                "values."
            )
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        elif arr.ndim == 2 and channels_first:
            arr = arr.T
        if arr.ndim != 2:
            shape = "(channels, T)" if channels_first else "(T, F)"
            raise InputError(
                f"Sequence {i} has shape {arr.shape}; each sequence must be a {shape} array "
                + (
                    "(channels first, time second)."
                    if channels_first
                    else "(time first, features second)."
                )
            )
        if width is None:
            width = arr.shape[1]
        elif arr.shape[1] != width:
            hint = ""
            if not channels_first and len(arr) == len(values[0]):
                hint = (
                    f" Both have {len(arr)} rows: if the sequences are laid out (channels, "
                    "time), as in aeon and sktime, pass layout='nct'."
                )
            raise InputError(
                f"Sequence {i} has {arr.shape[1]} features but sequence 0 has {width}. All "
                f"sequences must have the same features in the same order.{hint}"
            )
        values.append(arr.astype(np.float64, copy=False))
    if width == 0:
        raise InputError("The sequences have no features (their second dimension is 0).")
    names = list(feature_names) if feature_names is not None else _default_names(width)
    values = [_float32(v, f"Sequence {i}", names) for i, v in enumerate(values)]
    return Sequences(values, list(range(len(values))), names, "list")


def _float32(v: np.ndarray, where: str, names: list[str]) -> np.ndarray:
    """Cast one ``(T, F)`` sequence to float32, refusing values too large for float32."""
    with np.errstate(invalid="ignore"):
        too_large = np.isfinite(v) & (np.abs(v) > FLOAT32_MAX)
    if too_large.any():
        step, feat = (int(a[0]) for a in np.nonzero(too_large))
        raise InputError(
            f"{where} has a value ({v[step, feat]:.3g}) at step {step}, feature {feat} "
            f"({names[feat]!r}) that is too large for float32 (largest about 3.4e38); "
            f"{int(too_large.sum())} such value(s) in this sequence. Rescale the data (other "
            "units, a log transform) or clip it."
        )
    return v.astype(np.float32)


def _check_values(seqs: Sequences, *, missing: str, min_length: int) -> None:
    if len(seqs.values) == 0:
        raise InputError("The collection is empty: pass at least one sequence.")
    for i, v in enumerate(seqs.values):
        where = f"Sequence {i}" if seqs.layout != "frame" else f"Sequence {seqs.ids[i]!r}"
        if len(v) == 0:
            raise InputError(
                f"{where} has no steps. Remove empty sequences before passing the data."
            )
        if len(v) < min_length:
            raise InputError(
                f"{where} has {len(v)} step(s); at least {min_length} are needed to learn "
                "anything about dynamics. Remove or merge such short sequences."
            )
        finite = np.isfinite(v)
        if finite.all():
            continue
        nan = np.isnan(v)
        if missing == "mask" and not (~finite & ~nan).any():
            if nan.all(axis=1).all():
                raise InputError(f"{where} is missing every value; remove it.")
            continue
        bad = ~finite if missing == "error" else (~finite & ~nan)
        step, feat = (int(a[0]) for a in np.nonzero(bad))
        value = v[step, feat]
        name = seqs.feature_names[feat]
        if np.isnan(value):
            fix = (
                "Fill or drop missing values, or pass missing='mask' to treat NaN as missing "
                "(masked out of the loss)."
            )
        else:
            fix = (
                "Infinite values (or values too large for float32, whose limit is about "
                "3.4e38) cannot be scaled; clip or remove them."
            )
        raise InputError(
            f"{where} has a non-finite value ({value}) at step {step}, feature {feat} "
            f"({name!r}); {int(bad.sum())} such value(s) in this sequence. {fix}"
        )


def _default_names(n: int) -> list[str]:
    return [f"x{j}" for j in range(n)]


def from_long_table(
    frame: pd.DataFrame,
    *,
    id_column: str | None = None,
    order_column: str | None = None,
    feature_columns: list[str] | None = None,
) -> Sequences:
    """Read a long table: one row per step, a sequence-id column, an order column, features.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table.
    id_column : str, optional
        Column that says which sequence a row belongs to. By default the first of
        ``id``, ``sequence_id``, ``series_id``, ``seq_id``, ``case_id`` that exists.
    order_column : str, optional
        Column that orders the steps of a sequence. By default the first of ``time``,
        ``step``, ``timestamp``, ``t``, ``order``, ``index`` that exists; when none exists
        the rows' order is used. Rows are sorted by it; duplicate keys are an error.
    feature_columns : list of str, optional
        Feature columns; by default every other column.
    """
    if len(frame.columns) == 0 or len(frame) == 0:
        raise InputError("The table is empty: it has no rows or no columns.")
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if id_column is None:
        id_column = next((c for c in ID_COLUMN_GUESSES if c in columns), None)
        if id_column is None:
            raise InputError(
                f"No sequence-id column found among {columns}. Name it with id_column= (on "
                "the command line --id-column), or call the column 'id'."
            )
    elif id_column not in columns:
        raise InputError(f"id_column {id_column!r} is not a column of the table: {columns}.")
    if order_column is None:
        order_column = next((c for c in ORDER_COLUMN_GUESSES if c in columns), None)
    elif order_column not in columns:
        raise InputError(f"order_column {order_column!r} is not a column of the table: {columns}.")
    if feature_columns is None:
        feature_columns = [c for c in columns if c not in (id_column, order_column)]
    else:
        feature_columns = [str(c) for c in feature_columns]
        absent = [c for c in feature_columns if c not in columns]
        if absent:
            raise InputError(f"Feature column(s) {absent} are not in the table: {columns}.")
    if not feature_columns:
        raise InputError("The table has no feature columns besides the id and order columns.")
    for c in feature_columns:
        col = frame[c]
        if col.isna().all():
            raise InputError(
                f"Column {c!r} is empty (every value is missing). Drop it, or list the "
                "feature columns you want with feature_columns= (--features)."
            )
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            text = col.notna() & pd.to_numeric(col, errors="coerce").isna()
            sample = str((col[text] if text.any() else col.dropna()).iloc[0])
            raise InputError(
                f"Column {c!r} is not numeric (for example {sample!r}). Drop it, convert it "
                "to numbers, or list the feature columns with feature_columns= (--features)."
            )
    if frame[id_column].isna().any():
        row = int(np.flatnonzero(frame[id_column].isna().to_numpy())[0])
        raise InputError(f"The id column {id_column!r} is missing a value at row {row}.")
    if order_column is not None:
        if frame[order_column].isna().any():
            row = int(np.flatnonzero(frame[order_column].isna().to_numpy())[0])
            raise InputError(
                f"The order column {order_column!r} is missing a value at row {row}; every "
                "step needs its position."
            )
        dup = frame.duplicated([id_column, order_column])
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            # .tolist() turns NumPy scalars into plain Python values for the message
            key, step = (
                frame[c].iloc[row : row + 1].tolist()[0] for c in (id_column, order_column)
            )
            raise InputError(
                f"Sequence {key!r} has two rows with {order_column} = {step!r} (row {row}). "
                "Each step must appear once; remove duplicates or aggregate them."
            )
        try:
            frame = frame.sort_values([order_column], kind="stable")
        except TypeError as exc:
            raise InputError(
                f"The order column {order_column!r} mixes values that cannot be compared "
                f"({exc}); make it all numbers or all timestamps."
            ) from None
    values, ids, orders = [], [], []
    for key, group in frame.groupby(id_column, sort=False):
        ids.append(key)
        steps = group[feature_columns].to_numpy(dtype=np.float64, na_value=np.nan)
        values.append(_float32(steps, f"Sequence {key!r}", feature_columns))
        orders.append(group[order_column].to_numpy() if order_column else np.arange(len(group)))
    # Keep the order in which ids first appear in the table.
    first_seen = {k: i for i, k in enumerate(pd.unique(frame.sort_index()[id_column]))}
    order = np.argsort([first_seen[k] for k in ids], kind="stable")
    return Sequences(
        [values[i] for i in order],
        [ids[i] for i in order],
        feature_columns,
        "frame",
        frame_columns={"id": id_column, "order": order_column or "step"},
        order_values=[orders[i] for i in order],
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet long table (or a directory of Parquet files).

    Raises
    ------
    DataFileError
        When the file does not exist, is empty, is of an unknown kind or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"No such file or directory: {str(path)!r}. Check the path.")
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataFileError(f"The directory {str(path)!r} holds no .parquet files.")
        return pd.concat([read_table(f) for f in files], ignore_index=True)
    if path.stat().st_size == 0:
        raise DataFileError(f"The file {str(path)!r} is empty.")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz", ".txt", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataFileError(
                f"Cannot tell the format of {str(path)!r} from its extension {suffix!r}. "
                "Use a .csv or .parquet long table (one row per step)."
            )
    except DataFileError:
        raise
    except UnicodeDecodeError:
        raise DataFileError(
            f"{str(path)!r} is not a text CSV file (it could not be decoded as UTF-8). "
            "Check the file, or save it as CSV or Parquet."
        ) from None
    except Exception as exc:  # the parsers raise many kinds of error for damaged files
        raise DataFileError(
            f"Could not read {str(path)!r} as {suffix[1:].upper()}: {exc}. The file may be "
            "truncated or of another format."
        ) from None
    if len(frame) == 0:
        raise DataFileError(f"{str(path)!r} holds a header but no rows.")
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table to CSV, Parquet or .npz, chosen by the file's extension.

    A ``.npz`` file gets one 1-D array per column (text columns as string arrays, so the
    file loads without pickle); :func:`hlae.formats.read_npz` reads it back as a table.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix == ".npz":
        np.savez(path, **{str(c): _npz_column(frame[c]) for c in frame.columns})
    else:
        raise ParameterError(
            f"Cannot write {str(path)!r}: use an output file ending in .csv, .parquet or .npz."
        )
    return path


def _npz_column(column: pd.Series) -> np.ndarray:
    """A column as an array that loads without pickle: text ids become a string array."""
    values = column.to_numpy()
    if values.dtype == object:
        values = np.asarray([str(v) for v in values], dtype=str)
    return values


class FeatureScaler:
    """Per-feature affine scaling fitted on observed values only.

    ``kind`` is ``"standard"``, ``"robust"``, ``"minmax"`` or ``None`` (identity). The
    statistics come from scikit-learn's scalers, fitted on the concatenation of every
    sequence's observed steps, so padding never enters them; they are stored as
    ``shift_`` and ``scale_`` with ``scaled = (x - shift_) / scale_``.
    """

    def __init__(self, kind: str | None = "standard") -> None:
        if kind not in ("standard", "robust", "minmax", None):
            raise ParameterError(
                f"scaler must be 'standard', 'robust', 'minmax' or None, got {kind!r}."
            )
        self.kind = kind

    def fit(self, values: list[np.ndarray]) -> FeatureScaler:
        """Fit the per-feature statistics on the observed steps of ``values``; return self."""
        from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

        stacked = np.concatenate(values, axis=0).astype(np.float64)
        F = stacked.shape[1]
        if self.kind is None:
            self.shift_, self.scale_ = np.zeros(F), np.ones(F)
            return self
        if self.kind == "standard":
            sk = StandardScaler().fit(stacked)
            shift, scale = sk.mean_, sk.scale_
        elif self.kind == "robust":
            sk = RobustScaler().fit(stacked)
            shift, scale = sk.center_, sk.scale_
        else:
            sk = MinMaxScaler().fit(stacked)
            scale = 1.0 / sk.scale_
            shift = -sk.min_ * scale
        shift = np.nan_to_num(np.asarray(shift, dtype=np.float64))
        scale = np.asarray(scale, dtype=np.float64)
        # Constant (or all-missing) features keep unit scale so they stay finite.
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        self.shift_, self.scale_ = shift, scale
        return self

    def transform(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """Scale each ``(T_i, F)`` sequence: ``(x - shift_) / scale_``, as float32."""
        shift, scale = self.shift_.astype(np.float32), self.scale_.astype(np.float32)
        return [((v - shift) / scale).astype(np.float32) for v in values]

    def inverse_transform(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """Undo :meth:`transform`: back to the input's units, as float32."""
        shift, scale = self.shift_.astype(np.float32), self.scale_.astype(np.float32)
        return [(v * scale + shift).astype(np.float32) for v in values]

    def to_dict(self) -> dict:
        """The fitted state as plain JSON-friendly values."""
        return {"kind": self.kind, "shift": self.shift_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> FeatureScaler:
        """Rebuild a fitted scaler from :meth:`to_dict`'s output."""
        scaler = cls(state["kind"])
        scaler.shift_ = np.asarray(state["shift"], dtype=np.float64)
        scaler.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return scaler


def length_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Split indices into batches of sequences of similar length.

    With ``rng``, ties are broken at random, batch membership varies a little between epochs
    (lengths are jittered by up to 10% before sorting) and the order of batches is shuffled;
    without it the split is deterministic (for inference).
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        jitter = rng.uniform(0.0, 0.1, size=n) * lengths + rng.uniform(0, 1e-3, size=n)
        order = np.argsort(lengths + jitter, kind="stable")
    n_batches = max(1, math.ceil(n / batch_size))
    batches = [b for b in np.array_split(order, n_batches) if len(b)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad_batch(
    values: list[np.ndarray], index: np.ndarray, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad the chosen sequences into one batch.

    Returns
    -------
    x : Tensor (B, T, F)
        Values, with padding and missing values set to 0.
    mask : Tensor (B, T, F) of bool
        True where a value is observed.
    lengths : Tensor (B,) of int64
    """
    chosen = [values[i] for i in index]
    lengths = torch.tensor([len(v) for v in chosen], dtype=torch.long)
    T, F = int(lengths.max()), chosen[0].shape[1]
    x = np.zeros((len(chosen), T, F), dtype=np.float32)
    observed = np.zeros((len(chosen), T, F), dtype=bool)
    for b, v in enumerate(chosen):
        x[b, : len(v)] = v
        observed[b, : len(v)] = True
    nan = np.isnan(x)
    if nan.any():
        observed &= ~nan
        x[nan] = 0.0
    return (
        torch.from_numpy(x).to(device),
        torch.from_numpy(observed).to(device),
        lengths.to(device),
    )
