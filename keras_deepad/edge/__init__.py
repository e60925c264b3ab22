"""Scoring with an exported `.tflite` file on a device: numpy and `ai-edge-litert` only.

This module imports neither TensorFlow nor Keras (nor the rest of
keras_deepad), so it runs where only `numpy` and `ai-edge-litert` are
installed. Its modules import only numpy, the standard library and one another
(relative imports), so the `edge` folder can also be copied to a device on its own
and imported under any package name.

`keras_deepad.export.export_tflite` writes `model.tflite` and its metadata
`model.tflite.json`: feature shape, threshold, calibration score quantiles,
quantisation, the tensor names and quantisation parameters, and how the
graph's outputs become the anomaly score (`scoring`). Float exports compute
the score inside the graph; full-integer exports run the part of the network
that quantises well and this module finishes the score in float (see
`SCORINGS`).

The metadata is sealed to its model: its `integrity` field is a SHA-256 digest
over the `.tflite` bytes and the metadata's own content (`integrity_digest`), so
a model scored with another export's threshold or normalisation, or a metadata
file edited after export, is refused (`EdgeDetector(..., verify=False)` opts out).
This detects mix-ups and corruption, not a deliberate forgery: anyone who can
write both files can recompute the digest (it is not a signature).

Modules: `recipes` (the scoring recipes and input checks), `metadata` (reading
and checking the metadata), `integrity` (its digest), `drift` (`score_drift`)
and `detector` (`EdgeDetector`); every public name is importable from here.

Example:
    >>> from keras_deepad.edge import EdgeDetector
    >>> detector = EdgeDetector("saved_models/ae-int8.tflite")
    >>> scores = detector.score(x)           # one float per sample, higher = more anomalous
    >>> flags = detector.predict_labels(x)   # 1 = anomaly (score above the threshold)
    >>> detector.drift(x_recent).message     # do recent data still score like calibration?
"""

from .detector import DEFAULT_BATCH, EdgeDetector
from .drift import MIN_DRIFT_WINDOW, DriftReport, score_drift
from .integrity import (
    FORMAT_VERSION,
    INTEGRITY_ALGORITHM,
    INTEGRITY_FIELD,
    METADATA_SUFFIX,
    canonical_metadata,
    integrity_digest,
    metadata_path,
    seal_metadata,
)
from .metadata import check_metadata, verify_metadata
from .recipes import SCORINGS, check_input, score_from_outputs

__all__ = [
    "DEFAULT_BATCH",
    "FORMAT_VERSION",
    "INTEGRITY_ALGORITHM",
    "INTEGRITY_FIELD",
    "METADATA_SUFFIX",
    "MIN_DRIFT_WINDOW",
    "SCORINGS",
    "DriftReport",
    "EdgeDetector",
    "canonical_metadata",
    "check_input",
    "check_metadata",
    "integrity_digest",
    "metadata_path",
    "score_drift",
    "score_from_outputs",
    "seal_metadata",
    "verify_metadata",
]
