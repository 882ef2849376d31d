"""Training on Parquet data larger than memory.

:class:`ParquetDataset` names a directory, a glob pattern or a file of Parquet tables in the
long layout (one row per step: a sequence-id column, an optional order column, features).
``HierarchicalAutoencoder().fit(ParquetDataset(path))`` (or ``hlae fit DIR``) then

1. checks every file's schema before training (columns and types must agree, and there
   must be rows), naming the file at fault;
2. fits the scaler in one streaming pass (scikit-learn's ``partial_fit``) and counts the
   sequences and their lengths;
3. in every epoch streams the files again with PyArrow, groups rows into sequences, keeps
   a bounded buffer of sequences, sorts it by length and yields length-grouped batches.

Memory is bounded by the buffer (``buffer_size`` sequences), one Arrow record batch
(``read_rows`` rows) and the Parquet row group being decoded, not by the data set.

Requirements on the files: the rows of a sequence are contiguous and in order within one
file (sorted by id, then by the order column, as a database export or
``df.sort_values([id, order]).to_parquet(...)`` writes them). Rows that break this are
reported with the file and sequence. The validation share is chosen by a hash of the
sequence id, so it is the same in every epoch and on every process; under ``torchrun`` each
process trains on the sequences whose id hashes to its rank (every process reads the files,
and keeps its share).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hlae.data import (
    FLOAT32_MAX,
    ID_COLUMN_GUESSES,
    ORDER_COLUMN_GUESSES,
    FeatureScaler,
    length_batches,
)
from hlae.exceptions import DataFileError, InputError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["ParquetDataset", "parquet_files", "wants_streaming"]

# sequence ids remembered to notice rows of one sequence that are not contiguous
RECENT_IDS = 10_000
# bound on the sample of lengths kept for choosing the chunk length
LENGTH_SAMPLE = 100_000


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files named by a directory, a glob pattern or a single file, sorted.

    Raises
    ------
    DataFileError
        When the path matches no Parquet file.
    """
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataFileError(f"The pattern {text!r} matches no file. Check the path.")
        return files
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"No such file or directory: {text!r}. Check the path.")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq"))
        if not files:
            raise DataFileError(f"The directory {text!r} holds no .parquet files.")
        return files
    return [path]


def _unit_hash(key: Any) -> int:
    """A stable 64-bit hash of a sequence id (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "little")


class ParquetDataset:
    """Sequences streamed from Parquet files in the long layout.

    Parameters
    ----------
    path : str or Path
        A directory (searched recursively for ``*.parquet``), a glob pattern such as
        ``"data/part-*.parquet"``, or one Parquet file.
    id_column, order_column, feature_columns : optional
        As for :func:`hlae.data.from_long_table`: by default the id column is the first of
        ``id``, ``sequence_id``, ... that exists, the order column the first of ``time``,
        ``step``, ... (rows are then taken in file order when none exists), and the features
        are the other columns.
    buffer_size : int, default=4096
        Sequences held at once for sorting by length; batches are cut from this buffer.
    read_rows : int, default=65536
        Rows per Arrow record batch read from a file.

    Examples
    --------
    >>> import hlae  # doctest: +SKIP
    >>> data = hlae.streaming.ParquetDataset("recordings/")  # doctest: +SKIP
    >>> model = hlae.HierarchicalAutoencoder().fit(data)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path,
        *,
        id_column: str | None = None,
        order_column: str | None = None,
        feature_columns: list[str] | None = None,
        buffer_size: int = 4096,
        read_rows: int = 65_536,
    ) -> None:
        if int(buffer_size) < 1 or int(read_rows) < 1:
            raise ParameterError("buffer_size and read_rows must be positive integers.")
        self.path = path
        self.files = parquet_files(path)
        self.buffer_size, self.read_rows = int(buffer_size), int(read_rows)
        self._resolve_columns(id_column, order_column, feature_columns)

    def head(self, n: int = 4) -> list[np.ndarray]:
        """The first ``n`` sequences, in the input's units (for pictures and checks)."""
        out = []
        for _, values in self._sequences():
            out.append(values.astype(np.float32))
            if len(out) == n:
                break
        return out

    # -- checks before training -----------------------------------------------------------
    def _resolve_columns(self, id_column, order_column, feature_columns) -> None:
        """Read every file's schema; columns and types must agree, and rows must exist."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schemas, rows = [], 0
        for f in self.files:
            try:
                meta = pq.ParquetFile(f).metadata
            except Exception as exc:  # pyarrow raises several kinds for damaged files
                raise DataFileError(
                    f"Could not read {str(f)!r} as PARQUET: {exc}. The file may be truncated "
                    "or of another format."
                ) from None
            schemas.append(meta.schema.to_arrow_schema())
            rows += meta.num_rows
        first = schemas[0]
        for f, schema in zip(self.files[1:], schemas[1:]):
            if schema.names != first.names:
                missing = [c for c in first.names if c not in schema.names]
                extra = [c for c in schema.names if c not in first.names]
                raise DataFileError(
                    f"{str(f)!r} has columns {schema.names}, but {str(self.files[0])!r} has "
                    f"{first.names} (missing {missing}, extra {extra}). Every file of a data "
                    "set must have the same columns in the same order."
                )
            for name in first.names:
                if schema.field(name).type != first.field(name).type:
                    raise DataFileError(
                        f"Column {name!r} is {schema.field(name).type} in {str(f)!r} but "
                        f"{first.field(name).type} in {str(self.files[0])!r}. Write every "
                        "file with the same column types."
                    )
        if rows == 0:
            raise DataFileError(
                f"{str(self.path)!r} holds no rows ({len(self.files)} Parquet file(s), "
                "every one empty)."
            )

        names = list(first.names)
        if id_column is None:
            id_column = next((c for c in ID_COLUMN_GUESSES if c in names), None)
            if id_column is None:
                raise InputError(
                    f"No sequence-id column found among {names}. Name it with id_column= "
                    "(on the command line --id-column), or call the column 'id'."
                )
        elif id_column not in names:
            raise InputError(f"id_column {id_column!r} is not a column of the files: {names}.")
        if order_column is None:
            order_column = next((c for c in ORDER_COLUMN_GUESSES if c in names), None)
        elif order_column not in names:
            raise InputError(
                f"order_column {order_column!r} is not a column of the files: {names}."
            )
        if feature_columns is None:
            feature_columns = [c for c in names if c not in (id_column, order_column)]
        else:
            feature_columns = [str(c) for c in feature_columns]
            absent = [c for c in feature_columns if c not in names]
            if absent:
                raise InputError(f"Feature column(s) {absent} are not in the files: {names}.")
        if not feature_columns:
            raise InputError("The files have no feature columns besides the id and order.")
        for c in feature_columns:
            kind = first.field(c).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind)):  # fmt: skip
                raise InputError(
                    f"Column {c!r} is not numeric ({kind}). Drop it, convert it to numbers, "
                    "or list the feature columns with feature_columns= (--features)."
                )
        self.id_column, self.order_column = id_column, order_column
        self.feature_columns = feature_columns
        self.n_rows = rows

    # -- reading sequences ----------------------------------------------------------------
    def _records(self, order: np.ndarray | None = None):
        """(file, ids, order values or None, features) for each Arrow record batch."""
        import pyarrow.parquet as pq

        columns = [self.id_column, *([self.order_column] if self.order_column else [])]
        columns += [c for c in self.feature_columns if c not in columns]
        files = self.files if order is None else [self.files[i] for i in order]
        for f in files:
            try:
                reader = pq.ParquetFile(f)
                for batch in reader.iter_batches(batch_size=self.read_rows, columns=columns):
                    for name in columns[:2] if self.order_column else columns[:1]:
                        if batch.column(name).null_count:
                            raise InputError(
                                f"The column {name!r} of {str(f)!r} is missing values; every "
                                "row needs its sequence id and its position."
                            )
                    ids = batch.column(self.id_column).to_numpy(zero_copy_only=False)
                    steps = (
                        batch.column(self.order_column).to_numpy(zero_copy_only=False)
                        if self.order_column
                        else None
                    )
                    values = np.column_stack(
                        [
                            np.asarray(
                                batch.column(c).to_numpy(zero_copy_only=False), dtype=np.float64
                            )
                            for c in self.feature_columns
                        ]
                    )
                    yield f, ids, steps, values
            except (DataFileError, InputError):
                raise
            except Exception as exc:
                raise DataFileError(f"Could not read {str(f)!r} as PARQUET: {exc}.") from None

    def _sequences(self, order: np.ndarray | None = None) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield ``(id, (T, F) float64 values)`` for every sequence, in file order."""
        recent: deque = deque(maxlen=RECENT_IDS)
        recent_set: set = set()
        pending_key, pending_parts, pending_file, last_step = None, [], None, None

        def finish():
            key = pending_key
            values = pending_parts[0] if len(pending_parts) == 1 else np.concatenate(pending_parts)
            if key in recent_set:
                raise InputError(
                    f"The rows of sequence {key!r} are not contiguous in {str(pending_file)!r} "
                    "(the sequence appears again after other sequences). Sort each file by "
                    f"{self.id_column!r}" + (f" and {self.order_column!r}" if self.order_column
                                             else "") + ", and keep a sequence in one file."
                )  # fmt: skip
            if len(recent) == recent.maxlen:
                recent_set.discard(recent[0])
            recent.append(key)
            recent_set.add(key)
            self._file_of_last = pending_file  # named in errors about this sequence
            return key, values

        for f, ids, steps, values in self._records(order):
            if f != pending_file and pending_key is not None:
                yield finish()  # a sequence ends with its file
                pending_key, pending_parts = None, []
            pending_file = f
            n = len(ids)
            if n == 0:
                continue
            # runs of equal ids: starts of new sequences within this record batch
            new = np.ones(n, dtype=bool)
            new[1:] = ids[1:] != ids[:-1]
            if steps is not None:
                same = ~new[1:]
                with np.errstate(invalid="ignore"):
                    backwards = same & ~(steps[1:] > steps[:-1])
                if backwards.any():
                    row = int(np.flatnonzero(backwards)[0]) + 1
                    raise InputError(
                        f"In {str(f)!r}, sequence {ids[row]!r} has {self.order_column} = "
                        f"{steps[row]!r} after {steps[row - 1]!r}: rows of a sequence must be "
                        f"in increasing order of {self.order_column!r} (without repeats). Sort "
                        f"each file by {self.id_column!r} and {self.order_column!r}."
                    )
            starts = np.flatnonzero(new)
            if pending_key is not None:
                if ids[0] == pending_key:
                    if steps is not None and not steps[0] > last_step:
                        raise InputError(
                            f"In {str(f)!r}, sequence {ids[0]!r} has {self.order_column} = "
                            f"{steps[0]!r} after {last_step!r}: rows of a sequence must be in "
                            f"increasing order of {self.order_column!r}."
                        )
                    stop = starts[1] if len(starts) > 1 else n
                    pending_parts.append(values[:stop])
                    starts = starts[1:]
                    if not len(starts):
                        last_step = steps[-1] if steps is not None else None
                        continue
                yield finish()
                pending_key, pending_parts = None, []
            bounds = [*starts.tolist(), n]
            for a, b in zip(bounds[:-1], bounds[1:-1]):
                pending_key, pending_parts = ids[a], [values[a:b]]
                yield finish()
            a = bounds[-2]
            pending_key, pending_parts = ids[a], [values[a:]]
            last_step = steps[-1] if steps is not None else None
        if pending_key is not None:
            yield finish()

    def _checked(self, key: Any, values: np.ndarray, missing: str):
        """Validate one sequence like :func:`hlae.data.as_sequences`; return float32."""
        where = f"Sequence {key!r} (in {str(getattr(self, '_file_of_last', self.path))!r})"
        if len(values) < 2:
            raise InputError(
                f"{where} has {len(values)} step(s); at least 2 are needed. If the files are "
                f"not sorted by {self.id_column!r}, the rows of a sequence are scattered: sort "
                "each file by id (and order) so every sequence's rows are contiguous."
            )
        finite = np.isfinite(values)
        if not finite.all():
            nan = np.isnan(values)
            if missing != "mask" or (~finite & ~nan).any():
                step, feat = (int(a[0]) for a in np.nonzero(~finite if missing != "mask"
                                                              else ~finite & ~nan))  # fmt: skip
                fix = (
                    "Fill or drop missing values, or pass missing='mask'."
                    if np.isnan(values[step, feat])
                    else "Clip or remove infinite values."
                )
                raise InputError(
                    f"{where} has a non-finite value ({values[step, feat]}) at step {step}, "
                    f"feature {self.feature_columns[feat]!r}. {fix}"
                )
            if nan.all():
                raise InputError(f"{where} is missing every value; remove it.")
        with np.errstate(invalid="ignore"):
            if (np.abs(values[finite]) > FLOAT32_MAX).any():
                raise InputError(
                    f"{where} has values too large for float32 (about 3.4e38); rescale them."
                )
        return values.astype(np.float32)

    # -- the streaming pass before training -----------------------------------------------
    def prepare(self, model: Any, seed: int):
        """Fit ``model``'s scaler in one pass and return ``(train, validation, lengths)``.

        Sets ``n_features_in_``, ``feature_names_in_``, ``n_missing_`` and ``scaler_`` on
        ``model`` (a :class:`hlae.HierarchicalAutoencoder`). ``train`` and ``validation``
        are batch sources for :class:`hlae.training.Trainer`; ``lengths`` is a sample of
        the sequence lengths (for the default chunk length), holding the shortest and
        longest.
        """
        from sklearn.preprocessing import MinMaxScaler, StandardScaler

        from hlae import distributed

        if model.scaler not in ("standard", "minmax", None):
            raise ParameterError(
                f"scaler={model.scaler!r} cannot be fitted in one streaming pass (it needs "
                "every value at once). Use scaler='standard' or 'minmax' for streamed data."
            )
        fraction = float(model.validation_fraction)
        partial = {"standard": StandardScaler, "minmax": MinMaxScaler}.get(model.scaler)
        sk = partial() if partial is not None else None
        rng = np.random.default_rng(seed)
        lengths_sample: list[int] = []
        shortest, longest = None, None
        n_seen, n_missing, n_values = 0, 0, 0
        n_split = {"train": 0, "validation": 0}
        block: list[np.ndarray] = []  # sequences not yet given to the scaler
        block_rows = 0
        for key, values in self._sequences():
            values = self._checked(key, values, model.missing)
            if sk is not None:
                # partial_fit has a fixed cost per call: give it blocks of rows
                block.append(values)
                block_rows += len(values)
                if block_rows >= self.read_rows:
                    sk.partial_fit(np.concatenate(block))
                    block, block_rows = [], 0
            n_missing += int(np.isnan(values).sum())
            n_values += values.size
            n_split[self._split_of(key, fraction)] += 1
            # a reservoir sample of lengths, plus the extremes
            T = len(values)
            shortest = T if shortest is None else min(shortest, T)
            longest = T if longest is None else max(longest, T)
            if len(lengths_sample) < LENGTH_SAMPLE:
                lengths_sample.append(T)
            else:
                j = int(rng.integers(0, n_seen + 1))
                if j < LENGTH_SAMPLE:
                    lengths_sample[j] = T
            n_seen += 1
        if sk is not None and block:
            sk.partial_fit(np.concatenate(block))
        if n_split["train"] == 0:
            raise InputError(
                "Every sequence fell into the validation share; lower validation_fraction."
            )
        if n_split["train"] < distributed.world_size():
            raise InputError(
                f"{n_split['train']} training sequence(s) for {distributed.world_size()} "
                "processes; every process needs at least one."
            )

        model.n_features_in_ = len(self.feature_columns)
        model.feature_names_in_ = np.asarray(self.feature_columns, dtype=object)
        model.n_missing_ = n_missing
        model.scaler_ = _scaler_from(model.scaler, sk, len(self.feature_columns))
        if n_missing:
            logger.info(
                "%d missing value(s) (%.2g%% of all) are masked out of the loss",
                n_missing,
                100 * n_missing / n_values,
            )
        logger.info(
            "Streaming %d sequences (%d for validation) from %d file(s)",
            n_seen,
            n_split["validation"],
            len(self.files),
        )
        batch_size = int(model.batch_size)
        train = _Split(self, "train", n_split["train"], model, batch_size, fraction)
        validation = None
        if n_split["validation"]:
            validation = _Split(self, "validation", n_split["validation"], model, 256, fraction)
        lengths = np.asarray([*lengths_sample, shortest, longest], dtype=np.int64)
        return train, validation, lengths

    @staticmethod
    def _split_of(key: Any, fraction: float) -> str:
        h = _unit_hash(key)
        return "validation" if (h % 100_003) / 100_003 < fraction else "train"

    @staticmethod
    def _rank_of(key: Any, world_size: int) -> int:
        return (_unit_hash(key) // 100_003) % world_size


def _scaler_from(kind: str | None, sk: Any, n_features: int) -> FeatureScaler:
    """A :class:`FeatureScaler` holding the statistics of a partially fitted sklearn scaler."""
    if kind is None:
        shift, scale = np.zeros(n_features), np.ones(n_features)
    elif kind == "standard":
        shift, scale = sk.mean_, sk.scale_
    else:
        scale = 1.0 / sk.scale_
        shift = -sk.min_ * scale
    shift = np.nan_to_num(np.asarray(shift, dtype=np.float64))
    scale = np.asarray(scale, dtype=np.float64)
    # constant (or all-missing) features keep unit scale so they stay finite
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    return FeatureScaler.from_dict({"kind": kind, "shift": shift, "scale": scale})


class _Split:
    """One share (training or validation) of a :class:`ParquetDataset`, as a batch source."""

    def __init__(self, data: ParquetDataset, split: str, n: int, model, batch_size: int, fraction):
        self.data, self.split, self.n = data, split, n
        self.scaler, self.missing = model.scaler_, model.missing
        self.batch_size, self.fraction = batch_size, fraction

    def __len__(self) -> int:
        return self.n

    def steps_per_epoch(self, world_size: int = 1) -> int:
        return max(1, math.ceil(self.n / (self.batch_size * world_size)))

    def batches(
        self, rng: np.random.Generator | None, *, rank: int = 0, world_size: int = 1
    ) -> Iterator[list[np.ndarray]]:
        """Length-grouped batches of this rank's scaled sequences, from a bounded buffer."""
        data = self.data
        order = rng.permutation(len(data.files)) if rng is not None else None
        buffer: list[np.ndarray] = []
        for key, values in data._sequences(order):
            if data._split_of(key, self.fraction) != self.split:
                continue
            if world_size > 1 and data._rank_of(key, world_size) != rank:
                continue
            # (every sequence was checked by the pass that fitted the scaler)
            buffer.append(self.scaler.transform([values])[0])
            if len(buffer) >= data.buffer_size:
                yield from self._cut(buffer, rng)
                buffer = []
        if buffer:
            yield from self._cut(buffer, rng)

    def _cut(self, buffer: list[np.ndarray], rng) -> Iterator[list[np.ndarray]]:
        lengths = np.array([len(v) for v in buffer])
        for index in length_batches(lengths, self.batch_size, rng=rng):
            yield [buffer[i] for i in index]


def wants_streaming(path: str | Path | None, stream: bool | None = None) -> bool:
    """Whether ``hlae fit`` should stream ``path``: asked for, or a directory or glob.

    ``stream=None`` decides by the path: a directory or a glob pattern of Parquet files
    streams, a single file is read into memory; True or False decides outright.
    """
    if stream is not None or path is None:
        return bool(stream)
    return any(ch in str(path) for ch in "*?[") or Path(path).is_dir()
