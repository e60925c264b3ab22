"""SavedModel export in the layout TF Serving loads: `<base>/<name>/<version>/`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deepad._version import __version__
from keras_deepad.models.base import SCORE_QUANTILES
from keras_deepad.utils import scratch
from keras_deepad.utils.validation import check_number

METADATA_FILE = "keras_deepad.json"


#: Hidden entries of a model folder (TF Serving loads only integer names): `.reserved-<v>`
#: (an empty folder; `os.mkdir` makes it the lock of version `v` while it is written),
#: `.tmp-<v>-<hex>` (the export being written) and `.old-<v>-<hex>` (a replaced version
#: being deleted). Those of a killed export are removed by the next export once stale.
_RESERVED = ".reserved-"
_STALE_SCRATCH = re.compile(rf"\.(?:reserved-\d+|tmp-\d+-{scratch.HEX}|old-\d+-{scratch.HEX})")
_OLD = re.compile(rf"\.old-(\d+)-{scratch.HEX}")
#: Versions tried in turn when concurrent exports keep taking the next one.
_MAX_TRIES = 100


def next_version(model_dir) -> int:
    """1 + the largest integer version under `model_dir`, counting the versions that
    concurrent exports have reserved but not finished (1 when there is none)."""
    names = [entry.name for entry in os.scandir(model_dir)] if Path(model_dir).is_dir() else []
    versions = [int(n) for n in names if n.isdigit()]
    versions += [
        int(n[len(_RESERVED) :])
        for n in names
        if n.startswith(_RESERVED) and n[len(_RESERVED) :].isdigit()
    ]
    return max(versions, default=0) + 1


SERVING_INPUT = "x"
EDGE_HEAD_SIGNATURE = "edge_head"
EDGE_HEAD_INPUT = "x_normalized"
#: Agreement required between an edge head (scored on the host) and `compute_scores`.
_HEAD_RTOL = 1e-4


def _probe_inputs(model, n=16):
    """Deterministic raw inputs covering the normalised range and beyond it."""
    rng = np.random.default_rng(0)
    shape = (n, *model.feature_shape)
    if model.normalization == "minmax":
        x_norm = rng.uniform(-0.5, 1.5, size=shape)
    else:
        x_norm = rng.standard_normal(shape)
    return np.asarray(model.scaler.inverse(x_norm.astype("float32")), dtype="float32")


def _close(got, want) -> bool:
    want = np.asarray(want, dtype=np.float64)
    atol = _HEAD_RTOL * max(1.0, float(np.max(np.abs(want))))
    return bool(np.allclose(np.asarray(got, dtype=np.float64), want, rtol=_HEAD_RTOL, atol=atol))


def edge_head(model):
    """`(EdgeHead or None, reason)` for the model's score method, checked on probe inputs.

    A head is kept only if scoring its outputs on the host reproduces
    `compute_scores`; otherwise the reason says what is missing.
    """
    from keras_deepad.edge import score_from_outputs

    family_name = model.export_family()
    head = model.export_edge_head(model.score_method)
    if head is None:
        hint = model.no_edge_head_hint or (
            f"override {type(model).__name__}.export_edge_head to give it one "
            "(see keras_deepad.models.AnomalyDetector.export_edge_head)"
        )
        return None, (
            f"the {family_name} export family has no host-scored head for "
            f"score_method={model.score_method!r}; {hint}"
        )
    probe = _probe_inputs(model)
    want = keras.ops.convert_to_numpy(model.compute_scores(tf.constant(probe), model.score_method))
    x_norm = keras.ops.convert_to_numpy(model.scaler(tf.constant(probe)))
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in head.fn(tf.constant(x_norm)).items()}
    if not _close(score_from_outputs(head.scoring, x_norm, outputs), want):
        return None, (
            f"the {family_name} edge head does not reproduce score_method="
            f"{model.score_method!r} of {type(model).__name__}: override "
            f"{type(model).__name__}.export_edge_head for it"
        )
    return head, None


def _check_graph_score(model, score):
    probe = _probe_inputs(model)
    want = keras.ops.convert_to_numpy(model.compute_scores(tf.constant(probe), model.score_method))
    got = keras.ops.convert_to_numpy(score(tf.constant(probe)))
    if not _close(got, want):
        raise RuntimeError(
            f"the exported score of {type(model).__name__} (score_method="
            f"{model.score_method!r}) differs from compute_scores: its export_graph_score is "
            "out of date."
        )


def _signatures(model, head):
    """`{name: (fn, input_signature)}` of every SavedModel signature."""
    spec = tf.TensorSpec((None, *model.feature_shape), tf.float32, name=SERVING_INPUT)
    score = model.export_graph_score(model.score_method)
    _check_graph_score(model, score)

    def serve(x):
        scores = score(x)
        threshold = tf.cast(model.threshold_variable, scores.dtype)
        return {
            "score": scores,
            "is_anomaly": tf.cast(scores > threshold, tf.int32),
            "threshold": tf.fill(tf.shape(scores), threshold),
        }

    endpoints = {"serving_default": (serve, spec)}
    for name, fn in model.export_endpoints().items():
        endpoints[name] = (fn, spec)
    if head is not None:
        head_spec = tf.TensorSpec((None, *model.feature_shape), tf.float32, name=EDGE_HEAD_INPUT)
        endpoints[EDGE_HEAD_SIGNATURE] = (head.fn, head_spec)
    return endpoints


def _normalization(model) -> dict:
    scaler = model.scaler
    if model.normalization is None or not scaler.built:
        n = model.feature_shape[-1]
        offset, scale = [0.0] * n, [1.0] * n
    else:
        offset = np.asarray(keras.ops.convert_to_numpy(scaler.offset), dtype=float).tolist()
        scale = np.asarray(keras.ops.convert_to_numpy(scaler.scale), dtype=float).tolist()
    # Per entry of the last axis: x_normalized = (x - offset) * scale.
    return {"mode": model.normalization, "offset": offset, "scale": scale}


def metadata(model, head=None, head_missing=None, signatures=()) -> dict:
    """What a server or an edge runtime needs to know besides the graph."""
    quantiles = np.asarray(keras.ops.convert_to_numpy(model.score_quantiles), dtype=float)
    family_name = model.export_family()
    return {
        "keras_deepad_version": __version__,
        "tensorflow_version": tf.__version__,
        "class_name": type(model).__name__,
        "export_family": family_name,
        "config": model.get_config(),
        "feature_shape": list(model.feature_shape),
        "score_method": model.score_method,
        "threshold": model.threshold,
        "training_score_quantiles": (
            None
            if np.isnan(quantiles).any()
            else dict(zip(map(str, SCORE_QUANTILES), quantiles.tolist(), strict=True))
        ),
        "normalization": _normalization(model),
        "signatures": list(signatures),
        "edge_head": None
        if head is None
        else {
            "signature": EDGE_HEAD_SIGNATURE,
            "input": EDGE_HEAD_INPUT,
            "scoring": head.scoring,
            "calibration_headroom": head.calibration_headroom,
        },
        "edge_head_missing": head_missing,
    }


def export_saved_model(model, base_dir="saved_models", name=None, version=None, overwrite=False):
    """Writes `model` as a SavedModel for TF Serving, atomically.

    Signatures (input `x` of shape `(batch, *feature_shape)`, float32, any
    batch size; normalisation is part of the graph):

    - `serving_default` -> `score`, `is_anomaly` (0/1 by the calibrated
      threshold) and `threshold`;
    - the detector's extra signatures (its `export_endpoints()`):
      `reconstruct` -> `reconstruction` and `feature_scores` ->
      `feature_scores` (per-feature squared errors, normalised units) for
      reconstruction models, `embed` -> `embedding` for Deep SVDD and OC-NN,
      `member_scores` -> `member_scores` (standardised, one column per member)
      for a `DetectorEnsemble`;
    - `edge_head` (input `x_normalized`, already normalised) -> the tensors
      the full-integer TFLite export runs, when the detector's
      `export_edge_head` has one for its score method (the score is then finished on the host as
      `assets.extra/keras_deepad.json["edge_head"]["scoring"]` says).

    A JSON file `assets.extra/keras_deepad.json` records the versions of
    keras_deepad and TensorFlow, the config, the score method, the threshold,
    the calibration score quantiles, the normalisation constants and the
    signatures.

    Concurrent exports to the same `name` get distinct versions: each export
    reserves its version with `os.mkdir(".reserved-<version>")` (atomic; a
    taken version makes an automatic one try the next), writes into a hidden
    `.tmp-<version>-<hex>` folder next to its target and renames the complete
    folder into place, so TF Serving never sees an empty or half-written
    version. Scratch left by a killed export (hidden, so never loaded) is
    removed by the next export to the same `name` once older than an hour
    (`keras_deepad.utils.scratch.STALE_AFTER_S`); its version number is then
    skipped.

    Args:
        model: a built (trained) detector.
        base_dir: the TF Serving model base path.
        name: the model name (default: the model's `name`).
        version: integer version (default: the next free one).
        overwrite: replace an existing version (atomically where the system
            can swap two folders, Linux; otherwise by two renames).

    Returns:
        The `Path` of the version folder.

    Raises:
        FileExistsError: `version` exists and `overwrite` is False, or another
            export is writing `version` right now.
    """
    if not model.built or model.feature_shape is None:
        raise ValueError("export_saved_model needs a trained model: call fit() first.")
    model.check_finite_weights("exporting it")
    model.check_score_ready(model.score_method)
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
    if version is not None:
        version = check_number("version", version, low=0, integer=True)
        if not overwrite and (model_dir / str(version)).exists():
            raise _exists(model_dir / str(version))
    model_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(model_dir)
    auto_version = version is None
    replace = overwrite and not auto_version
    version, marker = _reserve(model_dir, version, overwrite)
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex}"
    try:
        head, head_missing = edge_head(model)
        endpoints = _signatures(model, head)
        archive = keras.export.ExportArchive()
        # Endpoints capture the variables they use; tracking the model also finds lookup
        # tables, but TF traces a model's `call` while walking it, and detectors scored
        # by an embedding (Deep SVDD, OC-NN) have no `call`.
        if type(model).call is not keras.Model.call:
            archive.track(model)
        for endpoint, (fn, spec) in endpoints.items():
            archive.add_endpoint(endpoint, fn, input_signature=[spec])
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        info = metadata(model, head, head_missing, signatures=endpoints)
        (extra / METADATA_FILE).write_text(json.dumps(info, indent=2, default=str))
        target = model_dir / str(version)
        for _ in range(_MAX_TRIES):
            if replace and target.exists():
                scratch.replace_path(tmp, target)
                break
            try:
                os.rename(tmp, target)  # fails when `target` exists and is not empty
                break
            except OSError:
                if not target.exists():
                    raise
                if not auto_version:
                    raise _exists(target) from None
            # Only when a stale-scratch cleaner removed our reservation (an export
            # running over an hour, or clocks out of step): take the next version.
            _release(marker)
            marker = None
            version, marker = _reserve(model_dir, None, False)
            target = model_dir / str(version)
        else:  # pragma: no cover - needs _MAX_TRIES concurrent winners
            raise RuntimeError(f"could not publish a version under {model_dir}.")
    finally:
        scratch.remove(tmp)
        _release(marker)
    return target


def _exists(target: Path) -> FileExistsError:
    return FileExistsError(
        f"{target} already exists; pass overwrite=True to replace it or choose another version."
    )


def _clean_stale(model_dir: Path):
    """Removes the scratch of killed exports; a replaced version caught mid-swap is restored."""
    for path in scratch.stale_entries(model_dir, _STALE_SCRATCH):
        old = _OLD.fullmatch(path.name)
        if old and not (model_dir / old[1]).exists():
            with contextlib.suppress(OSError):
                os.rename(path, model_dir / old[1])
                continue
        scratch.remove(path)


def _reserve(model_dir: Path, version, overwrite):
    """`(version, marker)`: `version` (or, when None, the next free one) reserved for this
    export by creating its marker folder, which the caller removes when done."""
    if version is not None:
        marker = model_dir / f"{_RESERVED}{version}"
        try:
            os.mkdir(marker)
        except FileExistsError:
            raise FileExistsError(
                f"{model_dir / str(version)} is being written by another export right now "
                f"({marker} exists; it is removed when that export ends, or by the next "
                "export once stale). Choose another version, or version=None for the next "
                "free one."
            ) from None
        if not overwrite and (model_dir / str(version)).exists():
            _release(marker)
            raise _exists(model_dir / str(version))
        return version, marker
    for _ in range(_MAX_TRIES):
        version = next_version(model_dir)
        marker = model_dir / f"{_RESERVED}{version}"
        try:
            os.mkdir(marker)
        except FileExistsError:  # another export took it first
            continue
        if not (model_dir / str(version)).exists():
            return version, marker
        # A concurrent export published `version` and removed its marker in between.
        _release(marker)
    raise RuntimeError(
        f"could not reserve a version under {model_dir} in {_MAX_TRIES} tries: too many "
        "concurrent exports."
    )


def _release(marker: Path | None):
    if marker is None:
        return
    with contextlib.suppress(OSError):
        os.rmdir(marker)
