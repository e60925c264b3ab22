"""TFLite / LiteRT export: one `.tflite` file plus the JSON metadata an edge runtime needs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import tensorflow as tf

from keras_deepad._version import __version__
from keras_deepad.choices import QUANTIZATIONS
from keras_deepad.choices import TFLITE_SCORINGS as SCORINGS
from keras_deepad.edge import FORMAT_VERSION, metadata_path, seal_metadata
from keras_deepad.export._tflite_steps import (
    _calibration_set,
    _convert,
    _inspect,
    _sample_rows,
    _score_representative,
    _verify,
)
from keras_deepad.export.saved_model import (
    METADATA_FILE,
    SERVING_INPUT,
    export_saved_model,
)
from keras_deepad.utils.scratch import scratch_dir, write_all_atomically


@dataclasses.dataclass(frozen=True)
class TFLiteArtifact:
    """A written TFLite export.

    Attributes:
        path: the `.tflite` file.
        metadata_path: its JSON metadata (`path` + `.json`).
        size_bytes: size of the `.tflite` file.
        quantization: one of `QUANTIZATIONS`.
        scoring: `"graph"` (the file outputs the score) or `"host"` (the
            file outputs a reconstruction/embedding that
            `keras_deepad.edge` turns into the score).
        metadata: the metadata written.
    """

    path: Path
    metadata_path: Path
    size_bytes: int
    quantization: str
    scoring: str
    metadata: dict


def export_tflite(
    model_or_saved_model,
    path=None,
    quantization="float32",
    representative_data=None,
    scoring="auto",
    overwrite=False,
    max_representative_samples=1000,
    calibration_headroom=None,
    recalibrate_threshold=True,
    verify=True,
) -> TFLiteArtifact:
    """Writes a detector as a `.tflite` file plus `<path>.json` metadata, atomically.

    The conversion always goes through a SavedModel
    (`tf.lite.TFLiteConverter.from_saved_model(dir, signature_keys=[...])`,
    the path that keeps the weights; see `export_saved_model`).

    Quantizations:
        - `"float32"`: exact (scores equal Keras to float rounding).
        - `"float16"`: weights stored as float16, about half the size.
        - `"dynamic-int8"`: weights int8, activations float; about a quarter.
        - `"int8"`: full integer (int8 input and output tensors, integer
          kernels), calibrated on `representative_data`, which must be normal
          training data. Anomalies lie outside the calibration range by
          definition, so a score computed in int8 saturates; the file instead
          runs the detector's *edge head* (its `export_edge_head`: the
          reconstruction in normalised units, the embedding, the decoder
          outputs) and `keras_deepad.edge` computes the score in float on
          the host.

    Scoring:
        `"graph"`: the file takes raw input and outputs the score
        (normalisation inside), as the SavedModel's `serving_default`;
        `"host"`: the file takes normalised input and outputs the edge head,
        normalisation and the final score run on the host. `"auto"` is
        `"host"` for int8 and `"graph"` otherwise.

    The metadata records the feature shape, threshold (for int8 recalibrated
    on `representative_data`, see `recalibrate_threshold`), score quantiles,
    normalisation constants (and whether the host applies them),
    the signature, input/output names, dtypes and quantisation parameters,
    the scoring recipe, quantization, versions, size and SHA-256 of the file,
    and `integrity`: `{"algorithm": "sha256", "digest": ...}` over the file's
    bytes and the rest of the metadata (`keras_deepad.edge.integrity_digest`),
    which `keras_deepad.edge.EdgeDetector` checks, so a model is never scored
    with another export's (or an edited) threshold or normalisation.

    Args:
        model_or_saved_model: a trained detector, or a SavedModel version
            folder written by `export_saved_model`.
        path: the `.tflite` file (default
            `saved_models/<name>-<quantization>.tflite`).
        quantization: one of `QUANTIZATIONS`.
        representative_data: normal training samples (raw units): required
            for `"int8"` (calibration); for every format the file's score
            quantiles on them are recorded (`representative_score_quantiles`,
            in the file's own score units, for drift monitoring).
        scoring: `"auto"`, `"graph"` or `"host"`.
        overwrite: replace an existing file.
        max_representative_samples: calibration uses at most this many
            samples (a fixed random subset).
        calibration_headroom: int8 only: besides the samples, calibrate on
            the samples pushed this many times as far from their mean, so
            int8 ranges leave room for anomalies (at the cost of resolution).
            `None`: the edge head's default (1 for reconstructions, whose
            clipping only raises anomalous errors; 4 for embeddings and
            latent codes, whose clipping would hide anomalies).
        recalibrate_threshold: int8 only: set the file's threshold so that it
            flags the same fraction of `representative_data` as the model's
            threshold does with float scores (the float threshold is kept as
            `float_threshold` in the metadata). int8 keeps the ranking of the
            scores, not their values.
        verify: run the converted file on probe inputs before writing it:
            outputs must be finite, and a float32 file must match the
            SavedModel.

    Returns:
        A `TFLiteArtifact` (path, metadata path, size in bytes, ...).
    """
    scoring = _check_arguments(
        model_or_saved_model,
        quantization,
        scoring,
        representative_data,
        calibration_headroom,
        max_representative_samples,
    )
    from_dir, saved_model_dir, meta_file, default_name = _resolve_source(model_or_saved_model)
    path, meta_target = _output_paths(path, default_name, quantization, overwrite)

    # Scratch (the intermediate SavedModel) lives in a hidden folder next to the file, so that
    # a killed export leaves it where the next export to `path` removes it once stale.
    with scratch_dir(path.parent, path.name, stale_names=(meta_target.name,)) as scratch:
        if not from_dir:
            saved_model_dir = export_saved_model(model_or_saved_model, scratch, "model", version=1)
            meta_file = saved_model_dir / "assets.extra" / METADATA_FILE
        source = json.loads(meta_file.read_text())
        feature_shape = tuple(source["feature_shape"])
        norm = source["normalization"]
        signature, input_name, recipe = _signature_for(source, scoring)
        calibration = rows = None
        if representative_data is not None:
            rows = _sample_rows(representative_data, feature_shape, int(max_representative_samples))
        if quantization == "int8":
            if calibration_headroom is None:
                calibration_headroom = source["edge_head"].get("calibration_headroom", 1.0)
            calibration = _calibration_set(rows, norm, float(calibration_headroom))
        content = _convert(
            source, saved_model_dir, signature, quantization, calibration, input_name
        )

        input_info, outputs = _inspect(content, signature, input_name, recipe)
        if verify:
            _verify(
                content,
                saved_model_dir,
                signature,
                input_name,
                outputs,
                source,
                scoring,
                quantization,
            )

        info = {
            "format": "keras_deepad.tflite",
            "format_version": FORMAT_VERSION,
            "keras_deepad_version": __version__,
            "tensorflow_version": tf.__version__,
            "class_name": source["class_name"],
            "export_family": source.get("export_family"),
            "config": source.get("config"),
            "score_method": source["score_method"],
            "feature_shape": list(feature_shape),
            "threshold": source.get("threshold"),
            "training_score_quantiles": source.get("training_score_quantiles"),
            "quantization": quantization,
            "signature": signature,
            "normalization": {**norm, "applied": "host" if scoring == "host" else "graph"},
            "input": {"name": input_name, **input_info},
            "outputs": outputs,
            "scoring": recipe,
            "representative_samples": None if rows is None else len(rows),
            "calibration_headroom": None if calibration is None else float(calibration_headroom),
            "size_bytes": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        if rows is not None:
            _score_representative(
                info, content, rows, saved_model_dir, Path(scratch), recalibrate_threshold
            )
        # Sealed as it will read back from the file (JSON round trip), over the model's bytes.
        info = seal_metadata(content, json.loads(json.dumps(info)))

    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and (path.exists() or meta_target.exists()):
        raise FileExistsError(f"{path} was created while exporting; nothing was written.")
    metadata = json.dumps(info, indent=2).encode()
    # The model first: a crash between the renames leaves a new model with old metadata,
    # which keras_deepad.edge refuses (the digests differ) instead of misreading.
    write_all_atomically(
        [
            (path, lambda tmp: tmp.write_bytes(content)),
            (meta_target, lambda tmp: tmp.write_bytes(metadata)),
        ]
    )
    return TFLiteArtifact(path, meta_target, len(content), quantization, scoring, info)


def _check_arguments(
    model_or_saved_model,
    quantization,
    scoring,
    representative_data,
    calibration_headroom,
    max_representative_samples,
):
    """Checks `export_tflite`'s arguments before any work; returns the resolved `scoring`."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization must be one of {QUANTIZATIONS}. Received: quantization={quantization!r}"
        )
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}. Received: scoring={scoring!r}")
    if scoring == "auto":
        scoring = "host" if quantization == "int8" else "graph"
    if hasattr(model_or_saved_model, "check_finite_weights") and model_or_saved_model.built:
        model_or_saved_model.check_finite_weights("exporting it")
    if quantization == "int8" and scoring == "graph":
        raise ValueError(
            "int8 exports are scored on the host (scoring='host'): a score computed in int8 "
            "saturates outside the calibration range, which is where anomalies are."
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' needs representative_data: a sample of the normal training "
            "data (raw units, a few hundred rows) to calibrate the integer ranges."
        )
    if calibration_headroom is not None and not float(calibration_headroom) >= 1.0:
        raise ValueError(
            "calibration_headroom must be >= 1. "
            f"Received: calibration_headroom={calibration_headroom}"
        )
    if int(max_representative_samples) < 1:
        raise ValueError(
            "max_representative_samples must be a positive integer. "
            f"Received: {max_representative_samples}"
        )
    return scoring


def _resolve_source(model_or_saved_model):
    """`(from_dir, SavedModel folder or None, its metadata file or None, default file name)`."""
    saved_model_dir = meta_file = None
    from_dir = isinstance(model_or_saved_model, str | os.PathLike)
    if from_dir:
        saved_model_dir = Path(model_or_saved_model)
        if not (saved_model_dir / "saved_model.pb").is_file():
            raise ValueError(
                f"{saved_model_dir} is not a SavedModel folder (no saved_model.pb); pass a "
                "version folder written by export_saved_model, or the model itself."
            )
        meta_file = saved_model_dir / "assets.extra" / METADATA_FILE
        if not meta_file.is_file():
            raise ValueError(
                f"{saved_model_dir} has no assets.extra/{METADATA_FILE}: it was not written by "
                "keras_deepad.export.export_saved_model."
            )
        default_name = saved_model_dir.parent.name or "model"
    else:
        model = model_or_saved_model
        if not getattr(model, "built", False) or getattr(model, "feature_shape", None) is None:
            raise ValueError("export_tflite needs a trained model: call fit() first.")
        default_name = model.name
    return from_dir, saved_model_dir, meta_file, default_name


def _output_paths(path, default_name, quantization, overwrite):
    """The `.tflite` path (default `saved_models/<name>-<quantization>.tflite`) and its sidecar."""
    path = (
        Path(path)
        if path is not None
        else Path("saved_models") / (f"{default_name}-{quantization}.tflite")
    )
    if path.suffix != ".tflite":
        raise ValueError(f"TFLite files must end in .tflite. Received: {path}")
    meta_target = metadata_path(path)
    if not overwrite:
        for existing in (path, meta_target):
            if existing.exists():
                raise FileExistsError(
                    f"{existing} already exists; pass overwrite=True to replace it or choose "
                    "another path."
                )
    return path, meta_target


def _signature_for(source, scoring):
    """`(signature, input name, scoring recipe)`: the edge head for host scoring, else the graph."""
    if scoring == "host":
        head = source.get("edge_head")
        if head is None:
            raise ValueError(
                f"{source['class_name']} with score_method={source['score_method']!r} cannot "
                "be scored on the host (needed for int8): "
                f"{source.get('edge_head_missing') or 'the SavedModel has no edge head'}."
            )
        signature, input_name, recipe = head["signature"], head["input"], head["scoring"]
    else:
        signature, input_name = "serving_default", SERVING_INPUT
        recipe = {"kind": "graph", "output": "score"}
    return signature, input_name, recipe
