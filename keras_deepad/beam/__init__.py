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

from keras_deepad.beam._common import INPUT_FORMATS, RUNNERS
from keras_deepad.beam.blocks import (
    RowBlock,
    ScoredBlock,
    ScoreResult,
    ScoreRowBlocks,
    ScoreWithSavedModel,
)
from keras_deepad.beam.model import ModelInfo, SavedModelHandler, load_model_info
from keras_deepad.beam.pipeline import ScoringResult, run_scoring
from keras_deepad.beam.readers import ReadRowBlocks, ReadRows
from keras_deepad.beam.writer import WriteScores

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
