"""SavedModel export in the layout TF Serving loads: `<base>/<name>/<version>/`."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deepad._version import __version__
from keras_deepad.models import ReconstructionDetector
from keras_deepad.models.base import SCORE_QUANTILES

METADATA_FILE = "keras_deepad.json"


def next_version(model_dir) -> int:
    """1 + the largest integer version under `model_dir` (1 when there is none)."""
    model_dir = Path(model_dir)
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


def _signatures(model):
    spec = tf.TensorSpec((None, *model.feature_shape), tf.float32, name="x")
    method = model.score_method

    def serve(x):
        scores = model.compute_scores(x, method)
        threshold = tf.cast(model.threshold_variable, scores.dtype)
        return {
            "score": scores,
            "is_anomaly": tf.cast(scores > threshold, tf.int32),
            "threshold": tf.fill(tf.shape(scores), threshold),
        }

    endpoints = {"serving_default": serve}
    if isinstance(model, ReconstructionDetector):
        endpoints["reconstruct"] = lambda x: {"reconstruction": model(x, training=False)}
        endpoints["feature_scores"] = lambda x: {"feature_scores": model.compute_feature_scores(x)}
    return spec, endpoints


def metadata(model) -> dict:
    """What a server or an edge runtime needs to know besides the graph."""
    quantiles = np.asarray(keras.ops.convert_to_numpy(model.score_quantiles), dtype=float)
    return {
        "keras_deepad_version": __version__,
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "feature_shape": list(model.feature_shape),
        "score_method": model.score_method,
        "threshold": model.threshold,
        "training_score_quantiles": (
            None
            if np.isnan(quantiles).any()
            else dict(zip(map(str, SCORE_QUANTILES), quantiles.tolist(), strict=True))
        ),
    }


def export_saved_model(model, base_dir="saved_models", name=None, version=None, overwrite=False):
    """Writes `model` as a SavedModel for TF Serving, atomically.

    Signatures (input `x` of shape `(batch, *feature_shape)`, float32):
    `serving_default` -> `score`, `is_anomaly` (0/1 by the calibrated
    threshold) and `threshold`; `reconstruct` and `feature_scores` for
    reconstruction models. Normalisation is part of the graph. A JSON file
    `assets.extra/keras_deepad.json` records the version of keras_deepad,
    the config, the threshold and the calibration score quantiles.

    The export is written to a hidden temporary folder next to its target and
    renamed into place, so a failure never leaves a half-written version.

    Args:
        model: a built (trained) detector.
        base_dir: the TF Serving model base path.
        name: the model name (default: the model's `name`).
        version: integer version (default: the next free one).
        overwrite: replace an existing version.

    Returns:
        The `Path` of the version folder.
    """
    if not model.built or model.feature_shape is None:
        raise ValueError("export_saved_model needs a trained model: call fit() first.")
    if model.threshold is None:
        warnings.warn(
            "exporting an uncalibrated model: is_anomaly will be 0 for every input. "
            "Call calibrate() before exporting.",
            stacklevel=2,
        )
    name = name or model.name
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name. Received: name={name!r}")
    model_dir = Path(base_dir) / name
    version = next_version(model_dir) if version is None else int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer. Received: {version}")
    target = model_dir / str(version)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True to replace it or choose another version."
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex}"
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        spec, endpoints = _signatures(model)
        for endpoint, fn in endpoints.items():
            archive.add_endpoint(endpoint, fn, input_signature=[spec])
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / METADATA_FILE).write_text(json.dumps(metadata(model), indent=2, default=str))
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _replace(src: Path, target: Path):
    """Moves `src` to `target`; an existing target is swapped out, then deleted."""
    if not target.exists():
        os.rename(src, target)
        return
    trash = target.with_name(f".old-{target.name}-{uuid.uuid4().hex}")
    os.rename(target, trash)
    try:
        os.rename(src, target)
    except BaseException:
        os.rename(trash, target)
        raise
    shutil.rmtree(trash, ignore_errors=True)
