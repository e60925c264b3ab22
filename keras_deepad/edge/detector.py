"""`EdgeDetector`: an exported detector scored with LiteRT, without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .drift import DriftReport, _quantile_grid, score_drift
from .integrity import metadata_path
from .metadata import _read_metadata, check_metadata, verify_metadata
from .recipes import check_input, score_from_outputs

DEFAULT_BATCH = 256


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
        verify: check the metadata's `sha256` (of the file) and `integrity`
            (over the file and the metadata) digests, so a model and metadata
            from different exports, or metadata edited after export, are
            refused. `False` loads them unchecked, including metadata written
            before the `integrity` field existed.

    Raises:
        FileNotFoundError: if the file or its metadata is missing.
        ValueError: naming the metadata file and the field, if the metadata is
            not JSON, lacks a field or has one of the wrong type, or (with
            `verify`) a digest is missing, null or differs.

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
        elif not isinstance(metadata, dict):
            meta_file = Path(metadata)
            if not meta_file.is_file():
                raise FileNotFoundError(f"no metadata file at {meta_file}.")
        if isinstance(metadata, dict):
            where = f"the metadata given for {path}"
        else:
            where = str(meta_file)
            metadata = _read_metadata(meta_file)
        check_metadata(metadata, where)
        content = path.read_bytes()
        if verify:
            verify_metadata(content, metadata, where, str(path))
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

    # ---------------------------------------------------------------- drift
    def drift(self, x=None, alpha=0.01, *, scores=None, batch_size=None) -> DriftReport:
        """Tests whether a window of recent data still scores like the calibration data.

        Scores `x` (or takes the `scores` of this file) and compares them with
        `score_quantiles`, the quantiles the export recorded, by a
        Kolmogorov-Smirnov test against the CDF interpolated from that grid
        (see `score_drift`); the report also gives the fraction above the
        threshold against the fraction expected, and the median's shift in
        calibration interquartile ranges. Drift in the scores means the data,
        the sensor or the preprocessing changed, or anomalies became frequent.

        The reference is the scores of the export's `representative_data` in
        this file's own units (the p-value then allows for the noise of that
        many reference scores), else the model's `calibrate` scores. Scores of
        the very data a model was trained on run a little low, so calibrate on
        (or export with) held-out normal data for the most faithful reference.

        Args:
            x: a window of samples, shape `(n, *feature_shape)`, `n >=
                MIN_DRIFT_WINDOW` (a few hundred give a sensitive test).
            alpha: significance level: `drifted` is `p_value < alpha`.
            scores: instead of `x`, scores already computed with this file's
                `score` (keyword only).
            batch_size: as for `score`.

        Returns:
            A `DriftReport` (`report.drifted`, `report.p_value`, `report.message`, ...).

        Raises:
            TypeError: unless exactly one of `x` and `scores` is given.
            ValueError: if the export recorded no score quantiles (the model
                was not calibrated), the window has fewer than
                `MIN_DRIFT_WINDOW` scores or NaN scores, or `alpha` is not in
                (0, 1).

        Example:
            >>> report = detector.drift(x_last_hour)
            >>> if report.drifted:
            ...     print(report.message)  # scores drifted higher than the calibration data: ...
        """
        if (x is None) == (scores is None):
            raise TypeError(
                "drift() takes a window of samples x or its scores=, exactly one of them."
            )
        field = "representative_score_quantiles"
        if not self.metadata.get(field):
            field = "training_score_quantiles"
        quantiles = self.metadata.get(field)
        if not quantiles:
            raise ValueError(
                f"{self.path.name} was exported without calibration score quantiles, so there "
                "is nothing to compare the scores with: calibrate the model "
                "(model.calibrate(x_normal)) and re-export it with "
                "keras_deepad.export.export_tflite (passing representative_data= also records "
                "this file's own quantiles)."
            )
        _quantile_grid(quantiles, f"{self.path.name} metadata field {field!r}")
        reference_size = None
        if field == "representative_score_quantiles":
            size = self.metadata.get("representative_samples")
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                reference_size = size
        if x is not None:
            scores = self.score(x, batch_size=batch_size)
        return score_drift(
            scores,
            quantiles,
            threshold=self.threshold,
            alpha=alpha,
            reference_size=reference_size,
        )
