"""Rows, blocks of rows and their scores, and the transforms that score them."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from keras_deepad.beam._common import (
    _ANOMALIES,
    _ROWS_SCORED,
    KeyedModelHandler,
    PredictionResult,
    RunInference,
    beam,
)
from keras_deepad.beam.model import SavedModelHandler, load_model_info


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
