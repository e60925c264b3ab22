"""`run_scoring`: read, score and write in one Beam pipeline."""

from __future__ import annotations

import contextlib
import glob
import time
from collections.abc import Sequence
from dataclasses import dataclass

from keras_deepad.beam._common import (
    _OUTPUT_SUFFIX,
    RUNNERS,
    FileSystems,
    MetricsFilter,
    PipelineOptions,
    PipelineState,
    _match,
    beam,
)
from keras_deepad.beam.blocks import ScoreRowBlocks, _check_block
from keras_deepad.beam.model import load_model_info
from keras_deepad.beam.readers import ReadRowBlocks, _first_block
from keras_deepad.beam.writer import WriteScores


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
