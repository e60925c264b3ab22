"""What the Beam modules share: Apache Beam itself (imported once, quietly), names and counters."""

from __future__ import annotations

import logging

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


def _match(pattern: str) -> list[str]:
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # BeamIOError, e.g. when the folder does not exist
        return []
    return sorted(m.path for m in matched)


__all__ = [
    "CompressionTypes",
    "FileSystems",
    "INPUT_FORMATS",
    "KeyedModelHandler",
    "Metrics",
    "MetricsFilter",
    "ModelHandler",
    "PipelineOptions",
    "PipelineState",
    "PredictionResult",
    "RUNNERS",
    "RunInference",
    "_ANOMALIES",
    "_BINARY",
    "_METADATA_PATH",
    "_NAMESPACE",
    "_OUTPUT_SUFFIX",
    "_ROWS_SCORED",
    "_SERVING_INPUT",
    "_check_size",
    "_match",
    "beam",
    "fileio",
]
