"""Distributed batch scoring on Apache Beam with a SavedModel from `export_saved_model`.

Needs the `beam` extra: `pip install "keras-deepad[beam]"`.

`run_scoring` reads rows from sharded CSV, TFRecord or Parquet files in
blocks of consecutive rows, scores them with the `serving_default` signature
of an exported SavedModel through Beam's `RunInference` (the model is loaded
once per worker process and shared by its threads; one model call per block)
and writes one CSV line per input row:

    file,row,score,is_anomaly,threshold

`file` and `row` (the 0-based index of the data row in that file: a CSV
header and blank lines are not counted) identify the input row; with
`key_column=` the value of that column replaces them. The same pipeline runs
on the DirectRunner, Dataflow, Flink and Spark: pass the runner's options as
`pipeline_args`.

Example:
    >>> from keras_deepad.beam import run_scoring  # doctest: +SKIP
    >>> result = run_scoring("saved_models/ae", "data/part-*.csv", "scores/ae")  # doctest: +SKIP
    >>> result.rows, result.files  # doctest: +SKIP

The building blocks work in pipelines of your own:

- `ScoreWithSavedModel`: `(key, row)` pairs -> `ScoreResult(key, score,
  is_anomaly, threshold)`, one element per row;
- `ReadRowBlocks` -> `ScoreRowBlocks` -> `WriteScores`: what `run_scoring`
  runs. A `RowBlock` holds up to `block_rows` consecutive rows of one file,
  so Beam's per-element cost is paid per block, not per row;
- `ReadRows`: `ReadRowBlocks` split into `(key, row)` pairs.

Each input file is read by one worker thread, in order (files are spread
over the workers), so shard large inputs into many files.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from keras_deepad.choices import BEAM_INPUT_FORMATS as INPUT_FORMATS

# Importing Beam logs a warning about BigQuery clients through the root logger, which
# would install a stderr handler on it (logging.basicConfig): send it nowhere instead.
_root_logger, _no_output = logging.getLogger(), logging.NullHandler()
if not _root_logger.handlers:
    _root_logger.addHandler(_no_output)
try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import (
        KeyedModelHandler,
        ModelHandler,
        PredictionResult,
        RunInference,
    )
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineState
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "keras_deepad.beam needs Apache Beam (the `beam` extra): "
        f'pip install "keras-deepad[beam]". Importing it failed: {error}'
    ) from error
finally:
    _root_logger.removeHandler(_no_output)

__all__ = [
    "INPUT_FORMATS",
    "RUNNERS",
    "ModelInfo",
    "ReadRowBlocks",
    "ReadRows",
    "RowBlock",
    "SavedModelHandler",
    "ScoreResult",
    "ScoreRowBlocks",
    "ScoreWithSavedModel",
    "ScoredBlock",
    "ScoringResult",
    "WriteScores",
    "load_model_info",
    "run_scoring",
]


#: Short runner names accepted by `run_scoring` (any other name is passed to Beam as is).
RUNNERS = {
    "direct": "DirectRunner",
    "prism": "PrismRunner",
    "dataflow": "DataflowRunner",
    "flink": "FlinkRunner",
    "spark": "SparkRunner",
}
_NAMESPACE = "keras_deepad"
_METADATA_PATH = ("assets.extra", "keras_deepad.json")
_SERVING_INPUT = "x"  # keras_deepad.export.saved_model.SERVING_INPUT
_OUTPUT_SUFFIX = ".csv"
_BINARY = "application/octet-stream"

_ROWS_SCORED = Metrics.counter(_NAMESPACE, "rows_scored")
_ANOMALIES = Metrics.counter(_NAMESPACE, "anomalies")


def _check_size(name: str, value, allow_none: bool = True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


# --------------------------------------------------------------------- model
@dataclass(frozen=True)
class ModelInfo:
    """What a pipeline needs to know of an exported SavedModel.

    Attributes:
        path: the SavedModel version folder.
        feature_shape: the shape of one input row, e.g. `(30,)`.
        threshold: the calibrated threshold, or `None` for an uncalibrated model.
        class_name: the detector's class, e.g. `"AE"`.
    """

    path: str
    feature_shape: tuple[int, ...]
    threshold: float | None
    class_name: str

    @property
    def n_features(self) -> int:
        """Values per row (the product of `feature_shape`)."""
        return math.prod(self.feature_shape)


def load_model_info(model_dir) -> ModelInfo:
    """Finds the SavedModel in `model_dir` and reads its keras_deepad metadata.

    Args:
        model_dir: a version folder written by `export_saved_model`
            (`<base>/<name>/<version>`), or the model folder above it, in
            which case the highest integer version is used (as TF Serving
            does). Local paths and any Beam file system (`gs://`, ...) work.

    Returns:
        A `ModelInfo`.

    Raises:
        FileNotFoundError: if there is no SavedModel there.
        ValueError: if the SavedModel has no keras_deepad metadata (it was not
            written by `export_saved_model`).
    """
    path = str(model_dir).rstrip("/") or "/"
    if not FileSystems.exists(FileSystems.join(path, "saved_model.pb")):
        versions = []
        for match in _match(FileSystems.join(path, "*", "saved_model.pb")):
            folder = FileSystems.split(match)[0]
            if FileSystems.split(folder)[1].isdigit():
                versions.append((int(FileSystems.split(folder)[1]), folder))
        if not versions:
            raise FileNotFoundError(
                f"no SavedModel found in model_dir={str(model_dir)!r}: expected a version "
                "folder written by export_saved_model (with saved_model.pb) or a model folder "
                "holding integer versions."
            )
        path = max(versions)[1]
    metadata_path = FileSystems.join(path, *_METADATA_PATH)
    if not FileSystems.exists(metadata_path):
        raise ValueError(
            f"the SavedModel at {path!r} has no {'/'.join(_METADATA_PATH)}: export it with "
            "keras_deepad.export.export_saved_model."
        )
    with FileSystems.open(metadata_path, _BINARY, CompressionTypes.UNCOMPRESSED) as f:
        meta = json.loads(f.read().decode("utf-8"))
    return ModelInfo(
        path=path,
        feature_shape=tuple(int(d) for d in meta["feature_shape"]),
        threshold=meta.get("threshold"),
        class_name=meta.get("class_name", "?"),
    )


class _Scorer:
    """A loaded SavedModel's scoring signature (what RunInference shares per worker)."""

    def __init__(self, path: str, signature: str):
        import tensorflow as tf

        self._tf = tf
        self._module = tf.saved_model.load(path)  # keeps the signature's variables alive
        if signature not in self._module.signatures:
            raise ValueError(
                f"the SavedModel at {path!r} has no signature {signature!r} "
                f"(found {sorted(self._module.signatures)})."
            )
        self._fn = self._module.signatures[signature]

    def __call__(self, x: np.ndarray):
        """`(scores, is_anomaly, thresholds)` numpy arrays, one entry per row of `x`."""
        out = self._fn(**{_SERVING_INPUT: self._tf.constant(x)})
        return out["score"].numpy(), out["is_anomaly"].numpy(), out["threshold"].numpy()


class SavedModelHandler(ModelHandler[np.ndarray, PredictionResult, _Scorer]):
    """Beam `ModelHandler` for the `serving_default` signature of an exported detector.

    Each example is one row, a float32 array of the model's `feature_shape`;
    each `PredictionResult.inference` is a `(score, is_anomaly, threshold)`
    tuple of Python numbers.

    Beam's own `TFModelHandlerNumpy` cannot load these SavedModels: it loads
    with `tf.keras.models.load_model`, which in Keras 3 reads only `.keras`
    and `.h5` files, and its module imports `tensorflow_hub`. This handler
    loads with `tf.saved_model.load` and calls the signature instead;
    batching and the per-worker shared model are `RunInference`'s, as with
    Beam's handlers.

    Args:
        model_path: the SavedModel version folder.
        signature: the signature to call (default `serving_default`).
        min_batch_size: fewest rows per model call (Beam's default: 1).
        max_batch_size: most rows per model call (Beam's default: 10,000;
            batches grow adaptively towards about a second of work).
        **kwargs: other `ModelHandler` arguments (`max_batch_duration_secs`,
            `large_model`, `model_copies`, `env_vars`).
    """

    def __init__(
        self,
        model_path: str,
        signature: str = "serving_default",
        *,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        **kwargs,
    ):
        _check_size("min_batch_size", min_batch_size)
        _check_size("max_batch_size", max_batch_size)
        if min_batch_size and max_batch_size and min_batch_size > max_batch_size:
            raise ValueError(
                f"min_batch_size={min_batch_size} is larger than max_batch_size={max_batch_size}."
            )
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, **kwargs)
        self._model_path = str(model_path)
        self._signature = signature

    def load_model(self) -> _Scorer:
        return _Scorer(self._model_path, self._signature)

    def update_model_path(self, model_path: str | None = None):
        self._model_path = model_path or self._model_path

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: _Scorer,
        inference_args: dict[str, Any] | None = None,
    ):
        if not batch:
            return []
        scores, flags, thresholds = model(np.stack(batch).astype(np.float32, copy=False))
        return [
            PredictionResult(example, (float(s), int(a), float(t)), self._model_path)
            for example, s, a, t in zip(batch, scores, flags, thresholds, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(np.asarray(example).nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        return _NAMESPACE


# ------------------------------------------------------------- rows, blocks
class ScoreResult(NamedTuple):
    """The score of one input row."""

    key: Any
    score: float
    is_anomaly: int
    threshold: float


class RowBlock(NamedTuple):
    """Consecutive rows of one input file.

    Attributes:
        path: the file.
        start: the index of the first row in the file (0-based, data rows only).
        keys: one key per row (the `key_column` values), or `None`: the key of
            row `i` is then `(path, start + i)`.
        x: float32 array `(n_rows, n_values)`, one flattened row per line.
    """

    path: str
    start: int
    keys: list | None
    x: np.ndarray

    def key(self, i: int):
        """The key of the block's row `i`."""
        return (self.path, self.start + i) if self.keys is None else self.keys[i]


class ScoredBlock(NamedTuple):
    """The scores of a `RowBlock`: `score` and `is_anomaly` arrays, one entry per row."""

    path: str
    start: int
    keys: list | None
    score: np.ndarray
    is_anomaly: np.ndarray
    threshold: float

    def results(self):
        """The block as one `ScoreResult` per row."""
        for i, (s, a) in enumerate(zip(self.score.tolist(), self.is_anomaly.tolist(), strict=True)):
            key = (self.path, self.start + i) if self.keys is None else self.keys[i]
            yield ScoreResult(key, s, a, self.threshold)


def _check_row(element, feature_shape: tuple[int, ...]):
    """`(key, row)` -> `(key, float32 array of feature_shape)`, or a ValueError naming the row."""
    key, row = element
    try:
        x = np.asarray(row, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"row {key!r} is not numeric: {error}") from error
    size = math.prod(feature_shape)
    if x.size != size:
        raise ValueError(
            f"row {key!r} has {x.size} values; the model expects {size} "
            f"(feature shape {feature_shape})."
        )
    if not np.isfinite(x).all():
        raise ValueError(f"row {key!r} has NaN or infinite values.")
    return key, x.reshape(feature_shape)


def _check_block(block: RowBlock, feature_shape: tuple[int, ...]) -> RowBlock:
    """The block with `x` of shape `(n_rows, *feature_shape)`, or a ValueError naming a row."""
    x = np.asarray(block.x, dtype=np.float32)
    size = math.prod(feature_shape)
    if x.ndim < 1 or len(x) == 0 or x[0].size != size:
        found = x[0].size if x.ndim >= 1 and len(x) else 0
        raise ValueError(
            f"{block.path!r}, data row {block.start}: {found} values; the model expects {size} "
            f"(feature shape {feature_shape})."
        )
    x = x.reshape(len(x), *feature_shape)
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(f"row {block.key(int(np.argmin(finite)))!r} has NaN or infinite values.")
    return block._replace(x=x)


def _to_result(key, prediction: PredictionResult) -> ScoreResult:
    score, flag, threshold = prediction.inference
    _ROWS_SCORED.inc()
    if flag:
        _ANOMALIES.inc()
    return ScoreResult(key, score, flag, threshold)


class ScoreWithSavedModel(beam.PTransform):
    """Scores keyed rows with an exported detector: `(key, row)` -> `ScoreResult`.

    Input: a PCollection of `(key, row)` pairs, `row` anything numpy turns
    into `feature_shape` float values (a flat row is reshaped), `key`
    anything that identifies the row (it is passed through, so results can
    be joined back). Rows are checked (value count, finite) before
    TensorFlow sees them, then batched and scored by `RunInference` with a
    `SavedModelHandler` wrapped in Beam's `KeyedModelHandler`.

    Output: a PCollection of `ScoreResult(key, score, is_anomaly, threshold)`.
    The Beam counters `keras_deepad:rows_scored` and `keras_deepad:anomalies`
    count them.

    Args:
        model_dir: the SavedModel version folder, or the model folder above
            it (its highest version); see `load_model_info`.
        min_batch_size: fewest rows per model call.
        max_batch_size: most rows per model call.
        signature: the SavedModel signature (default `serving_default`).
        **handler_kwargs: other `ModelHandler` arguments, e.g. `large_model`.
    """

    def __init__(
        self,
        model_dir,
        *,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        signature: str = "serving_default",
        **handler_kwargs,
    ):
        super().__init__()
        self.info = load_model_info(model_dir)
        self._handler = SavedModelHandler(
            self.info.path,
            signature,
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            **handler_kwargs,
        )

    def expand(self, rows):
        return (
            rows
            | "CheckRows" >> beam.Map(_check_row, feature_shape=self.info.feature_shape)
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "ToResult" >> beam.MapTuple(_to_result)
        )


class _BlockHandler(SavedModelHandler):
    """`SavedModelHandler` whose examples are `RowBlock`s, one block per model call.

    A block is a batch already. Fixed batches also keep `BatchElements`'
    adaptive sizing out: with blocks weighted by their rows it emits empty
    batches and its regression divides by zero (Beam 2.77).
    """

    def __init__(self, model_path, signature="serving_default", **kwargs):
        super().__init__(model_path, signature, min_batch_size=1, max_batch_size=1, **kwargs)

    def run_inference(self, batch, model, inference_args=None):
        if not batch:
            return []
        x = batch[0].x if len(batch) == 1 else np.concatenate([b.x for b in batch])
        scores, flags, thresholds = model(x)
        results, start = [], 0
        for block in batch:
            end = start + len(block.x)
            inference = (scores[start:end], flags[start:end], float(thresholds[start]))
            results.append(PredictionResult(block, inference, self._model_path))
            start = end
        return results

    def get_num_bytes(self, batch) -> int:
        return sum(block.x.nbytes for block in batch)


def _to_scored_block(prediction: PredictionResult) -> ScoredBlock:
    block = prediction.example
    scores, flags, threshold = prediction.inference
    _ROWS_SCORED.inc(len(scores))
    _ANOMALIES.inc(int(np.count_nonzero(flags)))
    return ScoredBlock(block.path, block.start, block.keys, scores, flags, threshold)


class ScoreRowBlocks(beam.PTransform):
    """Scores `RowBlock`s with an exported detector: `RowBlock` -> `ScoredBlock`.

    Like `ScoreWithSavedModel`, with one element per block of rows instead
    of one per row, so Beam's per-element cost is paid per block. Each block
    is one model call (`RunInference` with batches of one block): the block
    size (`ReadRowBlocks(block_rows=...)`) is the batch size. Rows are checked
    (value count, finite) before TensorFlow sees them. The counters
    `keras_deepad:rows_scored` and `keras_deepad:anomalies` count rows.

    Args:
        model_dir: the SavedModel version folder, or the model folder above it.
        signature: the SavedModel signature (default `serving_default`).
        **handler_kwargs: other `ModelHandler` arguments, e.g. `large_model`.
    """

    def __init__(self, model_dir, *, signature: str = "serving_default", **handler_kwargs):
        super().__init__()
        self.info = load_model_info(model_dir)
        self._handler = _BlockHandler(self.info.path, signature, **handler_kwargs)

    def expand(self, blocks):
        return (
            blocks
            | "CheckBlocks" >> beam.Map(_check_block, feature_shape=self.info.feature_shape)
            | "RunInference" >> RunInference(self._handler)
            | "ToScoredBlock" >> beam.Map(_to_scored_block)
        )


# ------------------------------------------------------------------- readers
def _resolve_columns(path, names, feature_columns, key_column, n_features):
    """Feature columns (labels of `names`) of a file, checked against the model."""
    wanted = [*(feature_columns or []), *([key_column] if key_column is not None else [])]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"column(s) {missing} not found in {path!r}. Available: {names}")
    features = [c for c in names if c != key_column] if feature_columns is None else feature_columns
    if n_features is not None and len(features) != n_features:
        raise ValueError(
            f"{path!r} has {len(features)} feature columns {features}; the model expects "
            f"{n_features} features. Choose them with feature_columns= (and key_column=)."
        )
    return list(features)


def _numeric_block(path, frame, features, start) -> np.ndarray:
    """float32 features of a pandas chunk, or a ValueError naming the first bad value."""
    import pandas as pd

    for c in features:
        column = frame[c]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            bad = pd.to_numeric(column, errors="coerce").isna() & column.notna()
            i = int(np.argmax(bad.to_numpy())) if bad.any() else 0
            raise ValueError(
                f"{path!r}, data row {start + i}: column {c!r} is not a number "
                f"({column.iloc[i]!r}). Choose numeric columns with feature_columns= or name "
                "an identifier column with key_column=."
            )
    x = frame[features].to_numpy(dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise ValueError(
            f"{path!r}, data row {start + int(i)}: column {features[j]!r} is missing or not "
            f"finite ({x[i, j]}). Impute or drop such rows before scoring."
        )
    return x


def _csv_blocks(path, handle, spec):
    """`RowBlock`s of a CSV file (pandas' C parser, `block_rows` rows at a time)."""
    import pandas as pd

    key_column = spec["key_column"]
    try:
        chunks = pd.read_csv(
            handle,
            header=0 if spec["header"] else None,
            chunksize=spec["block_rows"],
            dtype=None if key_column is None else {key_column: str},
            encoding="utf-8",
        )
        features, start = None, 0
        for chunk in chunks:
            if features is None:
                features = _resolve_columns(
                    path,
                    list(chunk.columns),
                    spec["feature_columns"],
                    key_column,
                    spec["n_features"],
                )
            if chunk.empty:  # a header without rows
                continue
            x = _numeric_block(path, chunk, features, start)
            keys = None if key_column is None else chunk[key_column].tolist()
            yield RowBlock(path, start, keys, x)
            start += len(x)
    except pd.errors.EmptyDataError:
        return
    except pd.errors.ParserError as error:
        raise ValueError(f"{path!r} is not a valid CSV file: {error}") from None


def _example_key(path, row, example, key_column):
    feature = example.features.feature.get(key_column)
    kind = None if feature is None else feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    if len(values) != 1:
        raise ValueError(
            f"{path!r}, record {row}: key feature {key_column!r} must hold one value, "
            f"found {len(values)}."
        )
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _parse_examples(path, start, records, spec):
    """`(x, keys)` of serialized `tf.train.Example`s, one at a time (names a bad record)."""
    from tensorflow.core.example import example_pb2

    feature_key, key_column, n = spec["feature_key"], spec["key_column"], spec["n_features"]
    rows, keys = [], []
    for i, record in enumerate(records):
        example = example_pb2.Example.FromString(record)
        feature = example.features.feature.get(feature_key)
        kind = None if feature is None else feature.WhichOneof("kind")
        if kind not in ("float_list", "int64_list"):
            raise ValueError(
                f"{path!r}, record {start + i}: no float feature {feature_key!r} (found "
                f"{sorted(example.features.feature)}). Name the feature holding the row with "
                "feature_key=."
            )
        values = getattr(feature, kind).value
        expected = n if n is not None else len(rows[0]) if rows else len(values)
        if len(values) != expected:
            raise ValueError(
                f"{path!r}, record {start + i}: feature {feature_key!r} has {len(values)} "
                f"values; expected {expected}"
                + (" (the model's feature count)." if n is not None else " (the first row's).")
            )
        rows.append(values)
        if key_column is not None:
            keys.append(_example_key(path, start + i, example, key_column))
    return np.asarray(rows, dtype=np.float32), (keys if key_column is not None else None)


def _parse_block(path, start, records, spec):
    """`(x, keys)` of a block of records: one `tf.io.parse_example` call when it can."""
    n = spec["n_features"]
    if spec["key_column"] is None and n is not None:
        import tensorflow as tf

        features = {spec["feature_key"]: tf.io.FixedLenFeature([n], tf.float32)}
        try:
            parsed = tf.io.parse_example(tf.constant(records), features)
            return parsed[spec["feature_key"]].numpy(), None
        except tf.errors.InvalidArgumentError:
            pass  # parse one by one: the error names the record (int64 lists are fine)
    return _parse_examples(path, start, records, spec)


def _tfrecord_blocks(path, handle, spec):
    """`RowBlock`s of a TFRecord file of `tf.train.Example`s."""
    # Beam's own TFRecord framing and checksums (what ReadFromTFRecord uses).
    from apache_beam.io.tfrecordio import _TFRecordUtil

    records, start = [], 0
    while True:
        record = _TFRecordUtil.read_record(handle)
        if record is not None:
            records.append(record)
        if records and (record is None or len(records) == spec["block_rows"]):
            x, keys = _parse_block(path, start, records, spec)
            yield RowBlock(path, start, keys, x)
            start += len(records)
            records = []
        if record is None:
            return


def _parquet_blocks(path, handle, spec):
    """`RowBlock`s of a Parquet file (its record batches, `block_rows` rows at most)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(handle)
    key_column = spec["key_column"]
    features = _resolve_columns(
        path, parquet.schema_arrow.names, spec["feature_columns"], key_column, spec["n_features"]
    )
    columns = [*features, *([key_column] if key_column is not None else [])]
    start = 0
    for batch in parquet.iter_batches(batch_size=spec["block_rows"], columns=columns):
        if batch.num_rows == 0:
            continue
        frame = batch.to_pandas()
        x = _numeric_block(path, frame, features, start)
        keys = None if key_column is None else frame[key_column].tolist()
        yield RowBlock(path, start, keys, x)
        start += len(x)


_READERS = {"csv": _csv_blocks, "tfrecord": _tfrecord_blocks, "parquet": _parquet_blocks}


def _read_file(path: str, input_format: str, spec: dict):
    """The `RowBlock`s of one file (text and TFRecord files may be compressed, by extension)."""
    compression = (
        CompressionTypes.UNCOMPRESSED if input_format == "parquet" else CompressionTypes.AUTO
    )
    with FileSystems.open(path, _BINARY, compression) as f:
        yield from _READERS[input_format](path, f, spec)


def _read_match(metadata, input_format: str, spec: dict):
    return _read_file(metadata.path, input_format, spec)


def _check_format(input_format):
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}. Received: {input_format!r}")


def _read_spec(input_format, feature_columns, key_column, header, feature_key, n_features, rows):
    _check_format(input_format)
    _check_size("block_rows", rows, allow_none=False)
    _check_size("n_features", n_features)
    if isinstance(feature_columns, str):
        raise ValueError(
            "feature_columns must be a sequence of column names, not a string. "
            f"Received: feature_columns={feature_columns!r}"
        )
    if input_format == "tfrecord" and feature_columns is not None:
        raise ValueError(
            "feature_columns is for CSV and Parquet files; a TFRecord row is the float feature "
            "feature_key= of each tf.train.Example."
        )
    positions = [*(feature_columns or []), key_column]
    if any(isinstance(c, int) for c in positions) and (input_format != "csv" or header):
        raise ValueError(
            "column positions (integers) are for CSV files without a header (header=False); "
            "otherwise name the columns."
        )
    return {
        "feature_columns": None if feature_columns is None else list(feature_columns),
        "key_column": key_column,
        "header": bool(header),
        "feature_key": feature_key,
        "n_features": n_features,
        "block_rows": int(rows),
    }


class ReadRowBlocks(beam.PTransform):
    """Reads `RowBlock`s (up to `block_rows` consecutive rows) from files matching a pattern.

    Each file is read by one worker thread, in order; the files are spread
    over the workers. A row that cannot be scored fails the pipeline with a
    ValueError that names the file, the row and the column.

    Args:
        file_pattern: a glob of one or more files (`data/part-*.csv`,
            `gs://bucket/rows-*.tfrecord.gz`); compressed text and TFRecord
            files are read by their extension.
        input_format: `"csv"`, `"tfrecord"` (`tf.train.Example`s holding the
            flattened row in a float list, as `keras_deepad.data.write_tfrecords`
            writes them) or `"parquet"`.
        feature_columns: CSV / Parquet columns to score, in the model's
            order: names, or 0-based positions for a CSV without header.
            Default: every column except `key_column` (all must be numeric).
        key_column: a column (CSV, Parquet) or feature (TFRecord) that
            identifies each row; its values become the keys instead of
            `(path, row)`.
        header: whether CSV files start with a header row.
        feature_key: the TFRecord feature holding the row's values.
        n_features: values per row the model expects; when given, files are
            checked against it with errors that name their columns.
        block_rows: most rows per block.
    """

    def __init__(
        self,
        file_pattern: str,
        input_format: str = "csv",
        *,
        feature_columns: Sequence[str | int] | None = None,
        key_column: str | int | None = None,
        header: bool = True,
        feature_key: str = "x",
        n_features: int | None = None,
        block_rows: int = 1024,
    ):
        super().__init__()
        self.file_pattern = str(file_pattern)
        self.input_format = input_format
        self.spec = _read_spec(
            input_format, feature_columns, key_column, header, feature_key, n_features, block_rows
        )

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.file_pattern)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Parse" >> beam.FlatMap(_read_match, self.input_format, self.spec)
        )


def _block_to_rows(block: RowBlock):
    for i, row in enumerate(block.x):
        yield block.key(i), row


class ReadRows(beam.PTransform):
    """Reads keyed rows, `(key, float32 features)`, from files matching a pattern.

    The key is `(path, row)`, `row` the 0-based index of the data row in its
    file, or the value of `key_column` when given. Takes the arguments of
    `ReadRowBlocks`; feed the result to `ScoreWithSavedModel`.
    """

    def __init__(self, file_pattern: str, input_format: str = "csv", **options):
        super().__init__()
        self._blocks = ReadRowBlocks(file_pattern, input_format, **options)

    def expand(self, pbegin):
        return pbegin | "Blocks" >> self._blocks | "Rows" >> beam.FlatMap(_block_to_rows)


def _first_block(path: str, input_format: str, spec: dict) -> RowBlock | None:
    """The first block of one file, read here (so a bad file fails before a pipeline starts)."""
    blocks = _read_file(path, input_format, {**spec, "block_rows": 64})
    try:
        return next(blocks, None)
    finally:
        blocks.close()


# -------------------------------------------------------------------- writer
def _csv_field(value) -> str:
    text = str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_lines(scored) -> str:
    """A `ScoredBlock` (or one `ScoreResult`) as CSV lines, without the final newline."""
    if isinstance(scored, ScoreResult):
        key = scored.key if isinstance(scored.key, tuple) else (scored.key,)
        fields = [*map(_csv_field, key), f"{scored.score:.9g}", str(int(scored.is_anomaly))]
        return ",".join([*fields, f"{scored.threshold:.9g}"])
    tail = f"{scored.threshold:.9g}"
    pairs = zip(scored.score.tolist(), scored.is_anomaly.tolist(), strict=True)
    if scored.keys is None:
        path = _csv_field(scored.path)
        return "\n".join(
            f"{path},{scored.start + i},{s:.9g},{a},{tail}" for i, (s, a) in enumerate(pairs)
        )
    keys = map(_csv_field, scored.keys)
    return "\n".join(f"{k},{s:.9g},{a},{tail}" for k, (s, a) in zip(keys, pairs, strict=True))


class WriteScores(beam.PTransform):
    """Writes scores as sharded CSV: `<prefix>-SSSSS-of-NNNNN.csv`, a header in each.

    Takes `ScoredBlock`s or `ScoreResult`s. Columns: the key (`file,row`, or
    the `key_column` name), then `score,is_anomaly,threshold`; scores are
    written with 9 significant digits (float32 round-trips exactly).

    Args:
        output_prefix: path prefix of the shards (local or any Beam file system).
        key_header: the key's column names.
        num_shards: number of output files (0: the runner decides).
    """

    def __init__(self, output_prefix: str, key_header=("file", "row"), num_shards: int = 0):
        super().__init__()
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 0:
            raise ValueError(f"num_shards must be an integer >= 0. Received: {num_shards!r}")
        self.output_prefix = str(output_prefix)
        self.header = ",".join([*map(_csv_field, key_header), "score", "is_anomaly", "threshold"])
        self.num_shards = num_shards

    def expand(self, scores):
        return (
            scores
            | "Format" >> beam.Map(_csv_lines)
            | "Write"
            >> beam.io.WriteToText(
                self.output_prefix,
                file_name_suffix=_OUTPUT_SUFFIX,
                num_shards=self.num_shards,
                header=self.header,
            )
        )


# ------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class ScoringResult:
    """What `run_scoring` did.

    Attributes:
        files: the CSV shards written, sorted.
        rows: rows scored (a Beam counter; `None` if the runner reports no metrics).
        anomalies: rows flagged as anomalous (`None` likewise).
        seconds: wall time of the pipeline, from construction to finish.
        runner: the Beam runner.
        model_path: the SavedModel version folder used.
    """

    files: tuple[str, ...]
    rows: int | None
    anomalies: int | None
    seconds: float
    runner: str
    model_path: str


def _counter(result, name):
    try:
        counters = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    except (NotImplementedError, KeyError, AttributeError):
        return None
    values = [c.committed if c.committed is not None else c.attempted for c in counters]
    return sum(values) if values else 0


def _match(pattern: str) -> list[str]:
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # BeamIOError, e.g. when the folder does not exist
        return []
    return sorted(m.path for m in matched)


def _temp_dirs(output_prefix: str) -> set[str]:
    """The folders holding `WriteToText`'s temporary files (see Beam's `FileBasedSink`)."""
    folder, name = FileSystems.split(output_prefix)
    pattern = FileSystems.join(folder, f"beam-temp-{name}-*")
    if "://" not in output_prefix:  # a local folder, possibly still empty
        return set(glob.glob(glob.escape(folder) + f"/beam-temp-{glob.escape(name)}-*"))
    return {FileSystems.split(f)[0] for f in _match(FileSystems.join(pattern, "*"))}


def run_scoring(
    model_dir,
    input_pattern: str,
    output_prefix: str,
    input_format: str = "csv",
    runner: str = "direct",
    pipeline_args: Sequence[str] = (),
    *,
    feature_columns: Sequence[str | int] | None = None,
    key_column: str | int | None = None,
    header: bool = True,
    feature_key: str = "x",
    block_rows: int = 1024,
    num_shards: int = 0,
    overwrite: bool = False,
) -> ScoringResult:
    """Scores every row of sharded files with an exported detector on Apache Beam.

    Runs `ReadRowBlocks | ScoreRowBlocks | WriteScores` and waits for it to
    finish. The model, the input pattern and the first rows of the first
    file are checked here before the pipeline starts, so a missing file or a
    wrong feature count fails at once.

    Args:
        model_dir: the SavedModel written by `export_saved_model` (the
            version folder, or the model folder: its highest version). On a
            remote runner it must be readable by the workers (e.g. `gs://`).
        input_pattern: glob of the input files.
        output_prefix: prefix of the output shards
            `<prefix>-SSSSS-of-NNNNN.csv` (a trailing `.csv` is dropped).
        input_format: `"csv"`, `"tfrecord"` or `"parquet"`.
        runner: `"direct"`, `"prism"`, `"dataflow"`, `"flink"`, `"spark"` or
            a Beam runner name such as `"DataflowRunner"`.
        pipeline_args: more Beam pipeline options, command-line style (e.g.
            `["--project=p", "--region=europe-west1",
            "--temp_location=gs://b/tmp"]`); a `--runner` there wins.
        feature_columns: see `ReadRowBlocks`.
        key_column: see `ReadRowBlocks`; the output's first column is then
            named after it instead of `file,row`.
        header: see `ReadRowBlocks`.
        feature_key: see `ReadRowBlocks`.
        block_rows: most rows per pipeline element and per model call (a
            block never spans two files).
        num_shards: output files (0: the runner decides).
        overwrite: replace existing output shards of `output_prefix`.

    Returns:
        A `ScoringResult` (files written, rows scored, anomalies, seconds).

    Raises:
        FileNotFoundError: if no file matches `input_pattern` or there is no
            SavedModel in `model_dir`.
        FileExistsError: if output shards exist and `overwrite` is False.
        ValueError: for rows that do not fit the model (wrong feature count,
            non-numeric or missing values), naming the file and row.
    """
    info = load_model_info(model_dir)
    read = ReadRowBlocks(
        str(input_pattern),
        input_format,
        feature_columns=feature_columns,
        key_column=key_column,
        header=header,
        feature_key=feature_key,
        n_features=info.n_features,
        block_rows=block_rows,
    )
    score = ScoreRowBlocks(info.path)
    key_header = ("file", "row") if key_column is None else (str(key_column),)
    output_prefix = str(output_prefix)
    if output_prefix.endswith(_OUTPUT_SUFFIX):
        output_prefix = output_prefix[: -len(_OUTPUT_SUFFIX)]
    write = WriteScores(output_prefix, key_header, num_shards=num_shards)
    inputs = _match(str(input_pattern))
    if not inputs:
        raise FileNotFoundError(f"no input files match {str(input_pattern)!r}.")
    first = _first_block(inputs[0], input_format, read.spec)
    if first is not None:
        _check_block(first, info.feature_shape)
    output_pattern = f"{output_prefix}-*-of-*{_OUTPUT_SUFFIX}"
    existing = _match(output_pattern)
    if existing and not overwrite:
        raise FileExistsError(
            f"output shards already exist ({existing[0]}, ... {len(existing)} files); pass "
            "overwrite=True (--overwrite) or choose another output prefix."
        )
    if existing:
        FileSystems.delete(existing)
    runner_name = RUNNERS.get(str(runner).lower(), str(runner))
    options = PipelineOptions([f"--runner={runner_name}", *pipeline_args])
    temp_dirs = _temp_dirs(output_prefix)
    start = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "Read" >> read | "Score" >> score | "Write" >> write
    try:
        result = pipeline.run()
        state = result.wait_until_finish()
        if state is not None and state != PipelineState.DONE:
            raise RuntimeError(f"the Beam pipeline ended in state {state}.")
    except BaseException:
        # A failed write leaves Beam's temporary folder next to the output: remove it.
        left = sorted(_temp_dirs(output_prefix) - temp_dirs)
        if left:
            with contextlib.suppress(Exception):  # best effort: the pipeline's error matters
                FileSystems.delete(left)
        raise
    seconds = time.perf_counter() - start
    return ScoringResult(
        files=tuple(_match(output_pattern)),
        rows=_counter(result, "rows_scored"),
        anomalies=_counter(result, "anomalies"),
        seconds=seconds,
        runner=str(options.get_all_options()["runner"]),
        model_path=info.path,
    )
