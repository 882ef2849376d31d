"""Sequence files hlae reads and writes besides CSV and Parquet tables: NumPy ``.npz`` and ``.ts``.

A ``.npz`` file holds sequences in one of three layouts, told apart by its arrays:

padded
    An array ``values`` of shape ``(n, T, F)`` (or ``(n, F, T)`` with ``layout="nct"``),
    with optional ``lengths`` ``(n,)`` (otherwise trailing all-NaN steps are padding, as
    tslearn pads), ``ids`` ``(n,)`` and ``feature_names`` ``(F,)``. :func:`write_npz`
    writes this layout.
one array per sequence
    Every array is 2-D, ``(T_i, F)``; the array's name is the sequence's id and the file's
    order is kept. A univariate sequence is stored as ``x[:, None]``.
columns of a long table
    Every array is 1-D and all have the same length: the columns of a long table (one row
    per step), as :func:`hlae.data.write_table` writes ``encode`` and ``reconstruct``
    results. Read with the id, order and feature columns of
    :func:`hlae.data.from_long_table`.

Files are read with ``allow_pickle=False``: an ``.npz`` never runs code when it is loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hlae.data import LAYOUTS, Sequences, as_sequences, from_long_table, read_table
from hlae.exceptions import DataFileError, ParameterError

__all__ = ["read_npz", "write_npz", "read_ts", "read_sequences", "SEQUENCE_SUFFIXES"]

SEQUENCE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt", ".parquet", ".pq", ".npz", ".ts")
PADDED_KEYS = ("values", "lengths", "ids", "feature_names", "layout")


def read_npz(
    path: str | Path,
    *,
    layout: str | None = None,
    id_column: str | None = None,
    order_column: str | None = None,
    feature_columns: list[str] | None = None,
    missing: str = "mask",
) -> Sequences:
    """Read sequences from a ``.npz`` file in any of the three layouts of this module.

    Parameters
    ----------
    path : str or Path
        The file.
    layout : {"ntf", "nct"}, optional
        Axis order of the ``values`` array (padded layout) or of each sequence (one array
        per sequence). A ``layout`` array stored in the file is used when this is not given.
    id_column, order_column, feature_columns : optional
        Columns, when the file holds the columns of a long table.
    missing : {"error", "mask"}
        Passed to :func:`hlae.data.as_sequences`. The default keeps NaN values, so that an
        estimator's own ``missing`` parameter decides what to do with them.

    Returns
    -------
    Sequences

    Raises
    ------
    DataFileError
        When the file is missing, damaged, or holds arrays in none of the three layouts.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"No such file: {str(path)!r}. Check the path.")
    if not zipfile.is_zipfile(path):
        raise DataFileError(
            f"{str(path)!r} is not a .npz archive (not a zip file); it may be truncated or of "
            "another format. Write it with numpy.savez or hlae.formats.write_npz."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataFileError(
                f"{str(path)!r} holds Python objects (pickled arrays), which hlae does not "
                "load. Save numbers as float arrays and ids as strings or integers."
            ) from None
        raise DataFileError(f"Could not read {str(path)!r} as .npz: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataFileError(
            f"Could not read {str(path)!r} as .npz ({exc}); the file may be truncated or of "
            "another format."
        ) from None
    if not arrays:
        raise DataFileError(f"{str(path)!r} holds no arrays.")

    if "values" in arrays:
        return _padded(path, arrays, layout, missing)
    if all(a.ndim == 2 for a in arrays.values()):
        return _one_per_sequence(path, arrays, layout, missing)
    if all(a.ndim == 1 for a in arrays.values()) and len({len(a) for a in arrays.values()}) == 1:
        frame = pd.DataFrame(arrays)
        return from_long_table(
            frame, id_column=id_column, order_column=order_column, feature_columns=feature_columns
        )
    shapes = {name: a.shape for name, a in arrays.items()}
    raise DataFileError(
        f"{str(path)!r} holds arrays {shapes}, which hlae cannot read as sequences. Store "
        "either a padded array 'values' (n, T, F) with optional 'lengths', 'ids' and "
        "'feature_names'; or one 2-D array (T_i, F) per sequence, named by its id; or the "
        "1-D columns of a long table, all of one length."
    )


def _layout(path: Path, arrays: dict[str, np.ndarray], layout: str | None) -> str | None:
    if layout is None and "layout" in arrays:
        layout = str(arrays["layout"])
    if layout is not None and layout not in LAYOUTS:
        raise DataFileError(f"{str(path)!r}: layout must be 'ntf' or 'nct', got {layout!r}.")
    return layout


def _padded(
    path: Path, arrays: dict[str, np.ndarray], layout: str | None, missing: str
) -> Sequences:
    unknown = sorted(set(arrays) - set(PADDED_KEYS))
    if unknown:
        raise DataFileError(
            f"{str(path)!r} has a 'values' array and also {unknown}; a padded file holds only "
            f"{list(PADDED_KEYS)}."
        )
    layout = _layout(path, arrays, layout)
    values = arrays["values"]
    names = arrays.get("feature_names")
    seqs = as_sequences(
        values,
        lengths=arrays.get("lengths"),
        layout=layout,
        missing=missing,
        feature_names=None if names is None else [str(n) for n in names],
    )
    if "ids" in arrays:
        ids = arrays["ids"]
        if ids.shape != (len(seqs),):
            raise DataFileError(
                f"{str(path)!r}: 'ids' has shape {ids.shape} but 'values' holds {len(seqs)} "
                "sequences; give one id per sequence."
            )
        seqs.ids = ids.tolist()
    return seqs


def _one_per_sequence(
    path: Path, arrays: dict[str, np.ndarray], layout: str | None, missing: str
) -> Sequences:
    layout = _layout(path, arrays, layout)
    seqs = as_sequences(list(arrays.values()), layout=layout or "ntf", missing=missing)
    seqs.ids = list(arrays)
    return seqs


def write_npz(
    path: str | Path,
    X: Any,
    *,
    ids: list | None = None,
    feature_names: list[str] | None = None,
    lengths: Any = None,
    layout: str | None = None,
) -> Path:
    """Write sequences to ``.npz`` in the padded layout (NaN padding, with ``lengths``).

    Parameters
    ----------
    path : str or Path
        The output file; ``.npz`` is added by NumPy when missing.
    X : any input :func:`hlae.data.as_sequences` accepts
        The sequences.
    ids : list, optional
        One id per sequence (strings or integers); by default the input's ids.
    feature_names : list of str, optional
        By default the input's feature names.
    lengths, layout : optional
        As in :func:`hlae.data.as_sequences`, to read ``X``.

    Returns
    -------
    Path
        The file written.
    """
    seqs = as_sequences(X, lengths=lengths, layout=layout, missing="mask", min_length=1)
    ids = list(seqs.ids) if ids is None else list(ids)
    if len(ids) != len(seqs):
        raise ParameterError(f"ids has {len(ids)} entries for {len(seqs)} sequences.")
    names = seqs.feature_names if feature_names is None else [str(n) for n in feature_names]
    T = int(seqs.lengths.max())
    values = np.full((len(seqs), T, seqs.n_features), np.nan, dtype=np.float32)
    for i, v in enumerate(seqs.values):
        values[i, : len(v)] = v
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        values=values,
        lengths=seqs.lengths,
        ids=_plain_array(ids),
        feature_names=np.asarray(names, dtype=str),
    )
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _plain_array(items: list) -> np.ndarray:
    """Ids as an array NumPy can load without pickle (numbers stay numbers)."""
    arr = np.asarray(items)
    return arr if arr.dtype != object else np.asarray([str(i) for i in items])


def read_ts(path: str | Path) -> Sequences:
    """Read a ``.ts`` file (the UEA/UCR archive format) through aeon.

    Raises
    ------
    DataFileError
        When the file is missing or unreadable, or aeon is not installed
        (``pip install 'hlae[aeon]'``).
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"No such file: {str(path)!r}. Check the path.")
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError:
        raise DataFileError("Reading .ts files needs aeon: pip install 'hlae[aeon]'.") from None
    try:
        X, _ = load_from_ts_file(str(path))
    except Exception as exc:  # aeon raises many kinds of error for a malformed file
        raise DataFileError(f"Could not read {str(path)!r} as a .ts file: {exc}") from None
    return as_sequences(list(X), layout="nct", missing="mask")


def read_sequences(
    path: str | Path,
    *,
    id_column: str | None = None,
    order_column: str | None = None,
    feature_columns: list[str] | None = None,
    layout: str | None = None,
) -> Sequences:
    """Read sequences from any file hlae knows, chosen by the file's extension.

    ``.csv``/``.parquet`` long tables (or a directory of Parquet files), ``.npz`` (see this
    module's description) and ``.ts`` files.

    Parameters
    ----------
    path : str or Path
        The file or directory.
    id_column, order_column, feature_columns : optional
        Columns of a long table (CSV, Parquet, or the columns layout of ``.npz``).
    layout : {"ntf", "nct"}, optional
        Axis order of the arrays of an ``.npz`` file.

    Returns
    -------
    Sequences
        With ids from the file (the id column, the array names or ``ids``), so results can
        be written keyed by them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    table = dict(id_column=id_column, order_column=order_column, feature_columns=feature_columns)
    if suffix == ".ts":
        return read_ts(path)
    if suffix == ".npz":
        return read_npz(path, layout=layout, **table)
    return from_long_table(read_table(path), **table)
