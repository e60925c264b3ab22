"""Sharded TFRecord files: write them from arrays, stream them as `tf.data` pipelines.

Data that one machine cannot hold lives in many files. `tfrecord_dataset`
starts from `tf.data.Dataset.list_files`, so under
`tf.distribute.MultiWorkerMirroredStrategy` Keras' auto-sharding gives each
worker whole files (`AutoShardPolicy.FILE`); reads are interleaved over
several files at once and prefetched. `csv_dataset` (in
`keras_deepad.data.pipelines`) takes file patterns the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_deepad.data.pipelines import _check_positive_int, _check_seed

#: Name of the float feature holding a row (flattened) in each `tf.train.Example`.
FEATURE_KEY = "x"


def _float_example(row: np.ndarray, feature_key: str, label=None, label_key: str = "y") -> bytes:
    feature = {feature_key: tf.train.Feature(float_list=tf.train.FloatList(value=row.ravel()))}
    if label is not None:
        feature[label_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(
    x,
    path_prefix: str | os.PathLike,
    num_shards: int = 4,
    feature_key: str = FEATURE_KEY,
    y=None,
    label_key: str = "y",
) -> list[str]:
    """Writes the rows of `x` as `tf.train.Example`s into `num_shards` TFRecord files.

    Shard `i` of `n` is `{path_prefix}-{i:05d}-of-{n:05d}.tfrecord` and holds
    consecutive rows (about `len(x) / n` each). Every file is written under a
    temporary name and renamed when complete, so a failure never leaves a
    half-written shard under its final name. `tf.io.gfile` paths (``gs://``)
    work.

    Args:
        x: array-like of shape `(rows, *feature_shape)`, numeric, finite.
        path_prefix: path and file-name prefix of the shards.
        num_shards: number of files (at most `len(x)`).
        feature_key: name of the float feature holding each flattened row.
        y: optional integer labels, one per row, stored as `label_key`.
        label_key: name of the label feature.

    Returns:
        The shard paths, in row order.

    Raises:
        ValueError: if `x` is empty, not numeric or not finite, `y` has a
            different length, or `num_shards` is not a positive integer.
    """
    _check_positive_int("num_shards", num_shards)
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must hold at least one row of features. Received shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"x must be real-valued numeric. Received dtype {x.dtype}.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values: clean or impute them first.")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"y has {len(y)} labels for {len(x)} rows of x.")
    num_shards = min(int(num_shards), len(x))
    prefix = os.fspath(path_prefix)
    parent = os.path.dirname(prefix)
    if parent:
        tf.io.gfile.makedirs(parent)
    rows_per_shard = math.ceil(len(x) / num_shards)
    paths = []
    for shard in range(num_shards):
        path = f"{prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord"
        partial = f"{path}.partial"
        rows = range(shard * rows_per_shard, min((shard + 1) * rows_per_shard, len(x)))
        with tf.io.TFRecordWriter(partial) as writer:
            for i in rows:
                label = None if y is None else y[i]
                writer.write(_float_example(x[i], feature_key, label, label_key))
        tf.io.gfile.rename(partial, path, overwrite=True)
        paths.append(path)
    return paths


def _files(file_pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    patterns = (
        [os.fspath(file_pattern)]
        if isinstance(file_pattern, str | os.PathLike)
        else [os.fspath(p) for p in file_pattern]
    )
    if not patterns:
        raise ValueError("file_pattern is empty: name at least one file or glob pattern.")
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"No file matches {pattern!r}.")
        files.extend(matched)
    return files


def tfrecord_dataset(
    file_pattern: str | os.PathLike | Sequence[str | os.PathLike],
    feature_shape: Sequence[int],
    batch_size: int = 128,
    feature_key: str = FEATURE_KEY,
    label_key: str | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    parallel_files: int | None = None,
) -> tf.data.Dataset:
    """Streams `tf.train.Example` TFRecord files (as `write_tfrecords` writes them) in batches.

    The pipeline is the sorted file list (shuffled per iteration when
    `shuffle`) -> `interleave(TFRecordDataset)` over `parallel_files` files
    at once -> `batch` -> parse -> `prefetch`. Starting from the file list
    lets `tf.distribute` shard by file across workers. Pass it to `fit` (the
    normaliser adapts on the first `adapt_steps` batches; without it, on one
    whole pass), `score` or `calibrate`.

    Args:
        file_pattern: a glob pattern (``"data/train-*.tfrecord"``), a path,
            or a list of them.
        feature_shape: shape of one row, e.g. `(n_features,)` or `(28, 28, 1)`.
        batch_size: rows per batch.
        feature_key: name of the float feature holding each flattened row.
        label_key: name of an int64 label feature to yield as `(x, y)`, or
            `None` for `x` alone.
        shuffle: shuffle the file order and rows (10,000-row buffer), anew
            each iteration.
        seed: the shuffle seed.
        parallel_files: files read at once, their rows interleaved. Default:
            1 without `shuffle`, so the rows come in file order (scores line
            up with the files' rows); up to 8 with `shuffle`.

    Returns:
        A dataset of float32 `(batch, *feature_shape)` tensors, or `(x, y)`
        pairs with `label_key`.

    Raises:
        FileNotFoundError: if a pattern matches no file.
        ValueError: if `feature_shape` or `batch_size` is not positive.
    """
    _check_positive_int("batch_size", batch_size)
    _check_seed(seed)
    if parallel_files is not None:
        _check_positive_int("parallel_files", parallel_files)
    feature_shape = tuple(int(d) for d in feature_shape)
    if not feature_shape or min(feature_shape) < 1:
        raise ValueError(f"feature_shape must be positive sizes. Received: {feature_shape}")
    files = _files(file_pattern)
    size = math.prod(feature_shape)
    spec = {feature_key: tf.io.FixedLenFeature([size], tf.float32)}
    if label_key is not None:
        spec[label_key] = tf.io.FixedLenFeature([], tf.int64)

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        x = tf.reshape(parsed[feature_key], (-1, *feature_shape))
        return (x, parsed[label_key]) if label_key is not None else x

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=parallel_files or (min(len(files), 8) if shuffle else 1),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle,
    )
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)
