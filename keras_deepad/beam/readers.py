"""Reading sharded CSV, TFRecord and Parquet files as blocks of consecutive rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_deepad.beam._common import (
    _BINARY,
    INPUT_FORMATS,
    CompressionTypes,
    FileSystems,
    _check_size,
    beam,
    fileio,
)
from keras_deepad.beam.blocks import RowBlock


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
