"""`tf.data` input pipelines from in-memory arrays and from CSV files."""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_deepad.data.tabular import select_columns
from keras_deepad.utils.validation import check_array

__all__ = ["csv_dataset", "make_dataset"]


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def _check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer or None. Received: seed={seed!r}")


def _labels(value):
    """pandas / lists / numpy -> numpy with their own dtype; tensors stay tensors."""
    if tf.is_tensor(value):
        return value
    if hasattr(value, "to_numpy"):  # pandas Series / DataFrame
        value = value.to_numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y could not be converted to an array: {error}") from error


def make_dataset(
    x,
    y=None,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str = False,
    prefetch: bool = True,
    drop_remainder: bool = False,
    buffer_size: int | None = None,
) -> tf.data.Dataset:
    """Builds a batched `tf.data.Dataset` from in-memory data.

    Args:
        x: Features of shape ``(n_samples, ...)``: a numpy array, a pandas
            DataFrame, a `tf.Tensor` or anything `np.asarray` accepts. Cast to
            ``float32``.
        y: Optional labels with ``n_samples`` rows (numpy, pandas or tensor);
            their dtype is kept.
        batch_size: Rows per batch.
        shuffle: Whether to shuffle. The order is redrawn at each iteration
            (epoch), deterministically for a given ``seed``.
        seed: Seed for the shuffle, or ``None`` for a random one.
        cache: ``True`` caches the (unshuffled) rows in memory, a string
            caches them in that file; ``False`` does not cache.
        prefetch: Whether to prefetch batches (``tf.data.AUTOTUNE``).
        drop_remainder: Whether to drop the last, smaller batch.
        buffer_size: Shuffle buffer size; defaults to ``n_samples`` (a full
            shuffle).

    Returns:
        A dataset yielding ``x`` batches, or ``(x, y)`` batches when ``y`` is
        given.

    Raises:
        ValueError: For non-numeric ``x``, NaN or infinite values, fewer than
            two dimensions, no rows, mismatched lengths or invalid arguments
            (``x`` is checked by `keras_deepad.utils.check_array`).

    Example:
        >>> ds = make_dataset(np.zeros((10, 4)), batch_size=4)
        >>> [int(b.shape[0]) for b in ds]
        [4, 4, 2]
    """
    _check_positive_int("batch_size", batch_size)
    _check_seed(seed)
    if buffer_size is not None:
        _check_positive_int("buffer_size", buffer_size)
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"cache must be a bool or a file name. Received: cache={cache!r}")

    x = check_array(x, name="x")
    n_samples = len(x)

    if y is None:
        dataset = tf.data.Dataset.from_tensor_slices(x)
    else:
        y = _labels(y)
        if len(y.shape) == 0 or int(y.shape[0]) != n_samples:
            raise ValueError(
                "x and y must have the same number of rows. Received: "
                f"x.shape={tuple(x.shape)}, y.shape={tuple(y.shape)}"
            )
        dataset = tf.data.Dataset.from_tensor_slices((x, y))

    if cache:
        dataset = dataset.cache("" if cache is True else cache)
    if shuffle:
        dataset = dataset.shuffle(
            buffer_size or n_samples, seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset


def _read_csv_head(path: str) -> tuple[list[str], bool]:
    """Returns the header's column names and whether a data row follows."""
    with tf.io.gfile.GFile(path, "r") as handle:
        header = handle.readline()
        has_row = any(line.strip() for line in itertools.islice(handle, 1000))
    # Parsed as make_csv_dataset parses it (names are not stripped).
    names = next(csv.reader(io.StringIO(header)), [])
    return names, has_row


def _csv_files(path) -> list[str]:
    """The files a path, glob pattern or list of them names, in sorted order per pattern."""
    patterns = (
        [os.fspath(path)] if isinstance(path, str | os.PathLike) else [os.fspath(p) for p in path]
    )
    if not patterns:
        raise ValueError("path is empty: name at least one CSV file or glob pattern.")
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in "*?[") else []
        if not matched and not tf.io.gfile.exists(pattern):
            raise FileNotFoundError(f"CSV file not found. Received: path={pattern!r}")
        files.extend(matched or [pattern])
    return files


def csv_dataset(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Streams CSV files with a header row as batches of feature matrices.

    The files are read with `tf.data.experimental.make_csv_dataset`, so they
    need not fit in memory (``gs://`` and other `tf.io.gfile` paths work).
    Column types are inferred from the first 100 rows; empty cells become
    the column's default (0 for numeric columns). Sharded data: pass a glob
    pattern or a list; the pipeline starts from the file list, so under
    `tf.distribute.MultiWorkerMirroredStrategy` each worker reads whole
    files.

    Args:
        path: Path of the CSV file, a glob pattern (``"data/part-*.csv"``)
            or a list of paths; every file starts with the same header row.
        label_column: Column to yield as labels, or ``None``.
        feature_columns: Feature columns; defaults to every column except
            ``label_column``. They are stacked in file order whatever the
            order given here.
        batch_size: Rows per batch.
        shuffle: Whether to shuffle rows (10,000-row buffer), reshuffled each
            iteration.
        seed: Shuffle seed.

    Returns:
        A dataset of ``float32`` ``(batch, n_features)`` tensors, or
        ``(x, y)`` pairs when ``label_column`` is given (``y`` keeps the
        inferred dtype, e.g. ``int32``). One pass over the file per
        iteration.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file has no header or no data rows, a column is
            missing, or a feature column is not numeric.

    Example:
        >>> for x, y in csv_dataset("data.csv", "label", batch_size=64):  # doctest: +SKIP
        ...     print(x.shape)
    """
    _check_positive_int("batch_size", batch_size)
    _check_seed(seed)
    files = _csv_files(path)
    path = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
    columns, has_row = _read_csv_head(files[0])
    if not columns or columns == [""]:
        raise ValueError(f"CSV file {files[0]!r} is empty (no header row).")
    for other in files[1:]:
        other_columns, other_has_row = _read_csv_head(other)
        has_row = has_row or other_has_row
        if other_columns != columns:
            raise ValueError(
                f"CSV file {other!r} has the columns {other_columns}; {files[0]!r} has "
                f"{columns}. Every file of a sharded data set needs the same header."
            )
    if not has_row:
        raise ValueError(f"CSV file {path!r} has a header but no data rows. Columns: {columns}")
    # Stacked in file order, whatever the order of feature_columns.
    wanted = set(select_columns(columns, feature_columns, label_column, path))
    features = [c for c in columns if c in wanted]

    dataset = tf.data.experimental.make_csv_dataset(
        files,
        batch_size=batch_size,
        select_columns=features + ([label_column] if label_column else []),
        label_name=label_column,
        num_epochs=1,
        shuffle=shuffle,
        shuffle_seed=seed,
        header=True,
    )
    feature_spec = dataset.element_spec[0] if label_column else dataset.element_spec
    non_numeric = [
        c
        for c in features
        if not (feature_spec[c].dtype.is_floating or feature_spec[c].dtype.is_integer)
    ]
    if non_numeric:
        raise ValueError(
            f"Feature column(s) {non_numeric} in {path!r} are not numeric "
            f"(inferred dtypes: {[feature_spec[c].dtype.name for c in non_numeric]}). "
            "Encode them as numbers or leave them out with feature_columns=."
        )

    def stack(columns_dict):
        return tf.stack([tf.cast(columns_dict[c], tf.float32) for c in features], axis=-1)

    if label_column:
        return dataset.map(lambda x, y: (stack(x), y))
    return dataset.map(stack)
