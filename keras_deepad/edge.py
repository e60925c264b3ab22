"""Scoring with an exported `.tflite` file on a device: numpy and `ai-edge-litert` only.

This module imports neither TensorFlow nor Keras (nor the rest of
keras_deepad), so it runs where only `numpy` and `ai-edge-litert` are
installed; it is a single file that can also be copied to a device on its own.

`keras_deepad.export.export_tflite` writes `model.tflite` and its metadata
`model.tflite.json`: feature shape, threshold, calibration score quantiles,
quantisation, the tensor names and quantisation parameters, and how the
graph's outputs become the anomaly score (`scoring`). Float exports compute
the score inside the graph; full-integer exports run the part of the network
that quantises well and this module finishes the score in float (see
`SCORINGS`).

Example:
    >>> from keras_deepad.edge import EdgeDetector
    >>> detector = EdgeDetector("saved_models/ae-int8.tflite")
    >>> scores = detector.score(x)           # one float per sample, higher = more anomalous
    >>> flags = detector.predict_labels(x)   # 1 = anomaly (score above the threshold)
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

#: Version of the metadata layout written next to a `.tflite` file.
FORMAT_VERSION = 1
METADATA_SUFFIX = ".json"
_LOG_2PI = math.log(2.0 * math.pi)
DEFAULT_BATCH = 256


def metadata_path(tflite_path) -> Path:
    """Where the metadata of `tflite_path` lives: the same name plus `.json`."""
    path = Path(tflite_path)
    return path.with_name(path.name + METADATA_SUFFIX)


# ----------------------------------------------------------------- scoring
def _flat(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)


def _reconstruction_error(scoring, x_norm, outputs):
    diff = _flat(x_norm) - _flat(outputs[scoring["output"]])
    error = scoring["error"]
    if error == "mse":
        return np.mean(np.square(diff), axis=1)
    if error == "mae":
        return np.mean(np.abs(diff), axis=1)
    if error == "max":
        return np.max(np.abs(diff), axis=1)
    raise ValueError(f"unknown reconstruction error {error!r} in the metadata.")


def _center_distance(scoring, x_norm, outputs):
    embedding = _flat(outputs[scoring["output"]])
    center = np.asarray(scoring["center"], dtype=np.float64)
    return np.sum(np.square(embedding - center), axis=1) - float(scoring["radius_squared"])


def _linear_margin(scoring, x_norm, outputs):
    embedding = _flat(outputs[scoring["output"]])
    return float(scoring["offset"]) - embedding @ np.asarray(scoring["weights"], dtype=np.float64)


def _cosine_margin(scoring, x_norm, outputs):
    """OC-NN on cosine random features: `offset - <w, scale * cos(phase)>`."""
    features = float(scoring["scale"]) * np.cos(_flat(outputs[scoring["output"]]))
    return float(scoring["offset"]) - features @ np.asarray(scoring["weights"], dtype=np.float64)


def _standard_normal_nll(scoring, x_norm, outputs):
    mu = _flat(outputs[scoring["output"]])
    return 0.5 * np.sum(np.square(mu) + _LOG_2PI, axis=1)


def _vae_monte_carlo(scoring, x_norm, outputs):
    names = scoring["outputs"]
    decoded = np.asarray(outputs[names["decoded"]], dtype=np.float64)
    n, n_samples = decoded.shape[:2]
    decoded = decoded.reshape(n, n_samples, -1)
    x = _flat(x_norm)[:, None, :]
    if scoring["likelihood"] == "bernoulli":
        # Stable binary cross-entropy with logits, as in training.
        per_feature = np.maximum(decoded, 0.0) - decoded * x + np.log1p(np.exp(-np.abs(decoded)))
    else:
        logvar = np.broadcast_to(
            np.asarray(scoring["decoder_logvar"], dtype=np.float64).reshape(-1), x.shape[2:]
        )
        per_feature = 0.5 * (_LOG_2PI + logvar + np.square(x - decoded) * np.exp(-logvar))
    score = np.mean(np.sum(per_feature, axis=2), axis=1)
    if scoring.get("include_kl"):
        mu, logvar = _flat(outputs[names["mu"]]), _flat(outputs[names["logvar"]])
        score = score + 0.5 * np.sum(np.exp(logvar) + np.square(mu) - 1.0 - logvar, axis=1)
    return score


#: Recipe kind -> `fn(scoring, normalised input, outputs) -> scores` (float64).
SCORINGS = {
    "graph": lambda scoring, x_norm, outputs: np.asarray(outputs[scoring["output"]]),
    "reconstruction_error": _reconstruction_error,
    "center_distance": _center_distance,
    "linear_margin": _linear_margin,
    "cosine_margin": _cosine_margin,
    "standard_normal_nll": _standard_normal_nll,
    "vae_monte_carlo": _vae_monte_carlo,
}


def score_from_outputs(scoring: dict, x_norm, outputs: dict) -> np.ndarray:
    """Applies a scoring recipe to a graph's outputs; float32 scores of shape `(batch,)`.

    Args:
        scoring: the `scoring` entry of the metadata (`{"kind": ..., ...}`).
        x_norm: the normalised input batch (used by reconstruction recipes).
        outputs: output name -> dequantised float array.
    """
    try:
        fn = SCORINGS[scoring["kind"]]
    except KeyError:
        raise ValueError(
            f"unknown scoring kind {scoring.get('kind')!r}: this file needs a newer "
            f"keras_deepad.edge (known: {sorted(SCORINGS)})."
        ) from None
    return np.asarray(fn(scoring, x_norm, outputs), dtype=np.float32).reshape(-1)


# ------------------------------------------------------------------ inputs
def _describe(shape) -> str:
    return "(n_samples, " + ", ".join(str(d) for d in shape) + ")"


def check_input(x, feature_shape, name: str = "x") -> np.ndarray:
    """A finite float32 array of shape `(n, *feature_shape)`, or a `ValueError` saying why not.

    One sample of shape `feature_shape` is accepted and scored as a batch of one.
    """
    if x is None:
        raise ValueError(
            f"{name} is None: expected a numeric array of shape {_describe(feature_shape)}."
        )
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas
        x = x.to_numpy()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # eager tensors
        x = x.numpy()
    try:
        x = np.asarray(x)
    except ValueError as err:
        raise ValueError(
            f"{name} could not be converted to an array ({err}); every sample must have the "
            "same shape."
        ) from None
    if x.dtype.kind in "USO":
        raise ValueError(
            f"{name} contains strings or Python objects (dtype {x.dtype}); expected numbers."
        )
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} has unsupported dtype {x.dtype}; expected real numbers.")
    feature_shape = tuple(int(d) for d in feature_shape)
    if x.shape == feature_shape:
        x = x[None]
    if x.ndim != len(feature_shape) + 1 or tuple(x.shape[1:]) != feature_shape:
        raise ValueError(
            f"{name} has shape {x.shape} but the model expects {_describe(feature_shape)} "
            f"(or one sample of shape {feature_shape})."
        )
    if len(x) == 0:
        raise ValueError(f"{name} is empty: it has no rows (shape {x.shape}).")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int((~finite).sum()) - n_nan
        first = int(np.argwhere(~finite.reshape(len(x), -1).all(axis=1))[0, 0])
        parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
        raise ValueError(
            f"{name} contains {' and '.join(parts)} value(s) (first in sample {first}); "
            "impute or drop them before scoring."
        )
    return x


# ---------------------------------------------------------------- detector
def _quantize(values, params):
    scale, zero_point = params["scale"], params["zero_point"]
    info = np.iinfo(np.dtype(params["dtype"]))
    q = np.round(values / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(params["dtype"])


def _dequantize(values, params):
    if not params:
        return np.asarray(values, dtype=np.float32)
    return (np.asarray(values, dtype=np.float32) - params["zero_point"]) * params["scale"]


class EdgeDetector:
    """An exported detector scored with LiteRT (`ai_edge_litert`), without TensorFlow.

    Args:
        path: the `.tflite` file written by `keras_deepad.export.export_tflite`.
        metadata: its metadata file (default: `path` + `.json`) or the parsed dict.
        num_threads: interpreter threads (default: LiteRT's choice).
        verify: check the file's SHA-256 against the metadata, so a model and
            metadata from different exports are never mixed.

    Attributes:
        metadata: the parsed metadata.
        feature_shape: the shape of one sample.
        quantization: `"float32"`, `"float16"`, `"dynamic-int8"` or `"int8"`.

    Example:
        >>> detector = EdgeDetector("saved_models/ae-int8.tflite")
        >>> detector.score(x), detector.threshold, detector.predict_labels(x)
    """

    def __init__(self, path, metadata=None, num_threads=None, verify=True):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no TFLite file at {path}.")
        if metadata is None:
            meta_file = metadata_path(path)
            if not meta_file.is_file():
                raise FileNotFoundError(
                    f"no metadata next to {path} (expected {meta_file}): export with "
                    "keras_deepad.export.export_tflite, which writes both."
                )
            metadata = json.loads(meta_file.read_text())
        elif not isinstance(metadata, dict):
            metadata = json.loads(Path(metadata).read_text())
        if metadata.get("format") != "keras_deepad.tflite":
            raise ValueError(f"{path}: the metadata is not keras_deepad TFLite metadata.")
        if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"{path} uses metadata format {metadata['format_version']}; this runtime reads "
                f"up to {FORMAT_VERSION}: upgrade keras_deepad."
            )
        content = path.read_bytes()
        if verify and metadata.get("sha256") not in (None, hashlib.sha256(content).hexdigest()):
            raise ValueError(
                f"{path} does not match its metadata (SHA-256 differs): the two files come from "
                "different exports."
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:  # pragma: no cover - a declared dependency
            raise ImportError(
                "keras_deepad.edge needs the LiteRT runtime: pip install ai-edge-litert"
            ) from err
        self.path = path
        self.metadata = metadata
        self.feature_shape = tuple(metadata["feature_shape"])
        self.quantization = metadata["quantization"]
        self._scoring = metadata["scoring"]
        self._input = metadata["input"]
        self._outputs = metadata["outputs"]
        norm = metadata["normalization"]
        self._normalize_on_host = norm["applied"] == "host"
        self._offset = np.asarray(norm["offset"], dtype=np.float32)
        self._scale = np.asarray(norm["scale"], dtype=np.float32)
        self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self._runner = self._interpreter.get_signature_runner(metadata["signature"])

    # ---------------------------------------------------------- properties
    @property
    def threshold(self) -> float | None:
        """The exported threshold (`None` if the model was not calibrated).

        For int8 files it is recalibrated at export to flag the same fraction of
        normal data as the model's own threshold (`metadata["float_threshold"]`).
        """
        return self.metadata.get("threshold")

    @property
    def score_quantiles(self) -> dict | None:
        """Quantiles of this file's scores on normal data (for monitoring drift), or `None`.

        The scores of the representative data given at export, in this file's
        own score units; otherwise the model's calibration score quantiles.
        """
        return self.metadata.get("representative_score_quantiles") or self.metadata.get(
            "training_score_quantiles"
        )

    def __repr__(self):
        return (
            f"EdgeDetector({str(self.path)!r}, {self.metadata.get('class_name')}, "
            f"{self.quantization}, feature_shape={self.feature_shape})"
        )

    # -------------------------------------------------------------- scoring
    def _run(self, x):
        x_norm = (x - self._offset) * self._scale if self._normalize_on_host else None
        graph_in = x_norm if self._normalize_on_host else x
        params = self._input.get("quantization")
        if params:
            graph_in = _quantize(graph_in, params)
        raw = self._runner(**{self._input["name"]: graph_in})
        outputs = {
            name: _dequantize(raw[name], spec.get("quantization"))
            for name, spec in self._outputs.items()
        }
        return score_from_outputs(self._scoring, x_norm, outputs)

    def score(self, x, batch_size=None) -> np.ndarray:
        """Anomaly scores, one float32 per sample; higher means more anomalous.

        Args:
            x: array of shape `(n_samples, *feature_shape)` (or one sample).
            batch_size: samples per interpreter call (default 256).
        """
        x = check_input(x, self.feature_shape)
        batch_size = DEFAULT_BATCH if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: {batch_size}")
        out = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            out[start : start + batch_size] = self._run(x[start : start + batch_size])
        return out

    def predict_labels(self, x, batch_size=None) -> np.ndarray:
        """0/1 labels, 1 where the score is above the exported threshold."""
        if self.threshold is None:
            raise ValueError(
                f"{self.path.name} was exported without a threshold: calibrate the model "
                "before exporting, or compare score(x) with your own threshold."
            )
        return (self.score(x, batch_size=batch_size) > self.threshold).astype(np.int64)

    def is_anomaly(self, x, batch_size=None) -> np.ndarray:
        """Alias of `predict_labels`."""
        return self.predict_labels(x, batch_size=batch_size)
