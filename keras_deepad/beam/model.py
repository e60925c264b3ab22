"""The exported SavedModel as Beam sees it: its metadata and a `ModelHandler` for RunInference."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_deepad.beam._common import (
    _BINARY,
    _METADATA_PATH,
    _NAMESPACE,
    _SERVING_INPUT,
    CompressionTypes,
    FileSystems,
    ModelHandler,
    PredictionResult,
    _check_size,
    _match,
)


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
