"""The steps of a TFLite export: calibration data, conversion, inspection and verification."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from keras_deepad.models.base import SCORE_QUANTILES
from keras_deepad.utils.validation import check_array

#: Largest relative difference between a float32 TFLite file and its SavedModel
#: accepted at export (a silent conversion failure gives NaN or garbage instead).
_FLOAT32_RTOL = 1e-4


def _quant_params(details) -> dict | None:
    scales, zero_points = (
        details["quantization_parameters"]["scales"],
        details["quantization_parameters"]["zero_points"],
    )
    if len(scales) == 0:
        return None
    if len(scales) != 1:  # pragma: no cover - inputs/outputs are quantised per tensor
        raise ValueError("per-axis quantised inputs/outputs are not supported.")
    return {
        "scale": float(scales[0]),
        "zero_point": int(zero_points[0]),
        "dtype": np.dtype(details["dtype"]).name,
    }


def _tensor_info(details) -> dict:
    return {
        "dtype": np.dtype(details["dtype"]).name,
        "shape": [int(d) for d in details["shape_signature"]],
        "quantization": _quant_params(details),
    }


def _sample_rows(data, feature_shape, limit, seed=0):
    """The representative data, checked, as at most `limit` raw float32 rows (a fixed subset)."""
    x = check_array(data, feature_shape, name="representative_data")
    if len(x) > limit:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))]
    return x


def _calibration_set(x, norm, headroom):
    """Normalised float32 calibration samples for int8.

    The training samples, plus (for `headroom > 1`) the same samples pushed
    `headroom` times as far from their mean: anomalies lie outside the range
    of normal data, and int8 tensors clip everything outside the calibrated
    range.
    """
    offset = np.asarray(norm["offset"], dtype=np.float32)
    scale = np.asarray(norm["scale"], dtype=np.float32)
    x = (x - offset) * scale
    if headroom > 1:
        centre = x.mean(axis=0, keepdims=True)
        x = np.concatenate([x, centre + headroom * (x - centre)])
    return x


def _quantiles(scores) -> dict:
    values = np.quantile(np.asarray(scores, dtype=np.float64), SCORE_QUANTILES)
    return dict(zip(map(str, SCORE_QUANTILES), values.tolist(), strict=True))


def _converter(saved_model_dir, signature, quantization, calibration, input_name):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[signature]
    )
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8

        def samples():
            for row in calibration:
                yield {input_name: row[None]}

        converter.representative_dataset = samples
    return converter


def _score_representative(info, content, rows, saved_model_dir, scratch, recalibrate):
    """Scores the representative rows with the new file: quantiles, and the int8 threshold.

    An int8 file does not reproduce the float scores (only their ranking), so
    the float threshold would flag a different fraction of normal data. With
    `recalibrate`, the file's threshold is set to flag the same fraction of the
    representative (normal) data as the float threshold does with float scores.
    """
    from keras_deepad.edge import EdgeDetector

    probe = scratch / "probe.tflite"
    probe.write_bytes(content)
    scores = EdgeDetector(probe, metadata=info, verify=False).score(rows)
    info["representative_score_quantiles"] = _quantiles(scores)
    threshold = info.get("threshold")
    if info["quantization"] != "int8" or not recalibrate or threshold is None:
        return
    serve = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
    float_scores = serve(x=tf.constant(rows))["score"].numpy()
    n = len(rows)
    rate = float(np.clip(np.mean(float_scores > threshold), 0.5 / n, 1.0 - 0.5 / n))
    info["float_threshold"] = threshold
    info["threshold"] = float(np.quantile(scores.astype(np.float64), 1.0 - rate))
    info["threshold_flag_rate"] = rate


def _conversion_hint(source, signature, err) -> str:
    missing = [line for line in str(err).splitlines() if "TF Select ops:" in line]
    what = missing[0].split(":", 1)[1].strip() if missing else str(err).splitlines()[0]
    return (
        f"{source['class_name']} with score_method={source['score_method']!r} cannot be "
        f"converted to TFLite built-in ops ({signature!r} needs: {what}). Use a score method "
        "without random or linear-algebra ops, scoring='host' if the detector has an edge head, "
        "or override its export_graph_score to avoid them."
    )


def _check_converted(content, saved_model_dir, signature, input_name, outputs, probe, quantization):
    """Runs the converted file on probe inputs: finite outputs; float32 equal to the SavedModel."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner(signature)
    details = runner.get_input_details()[input_name]
    params = _quant_params(details)
    feed = probe
    if params:
        info = np.iinfo(np.dtype(params["dtype"]))
        feed = np.clip(np.round(probe / params["scale"]) + params["zero_point"], info.min, info.max)
        feed = feed.astype(params["dtype"])
    got = runner(**{input_name: feed})
    for name in outputs:
        if not np.isfinite(np.asarray(got[name], dtype=np.float64)).all():
            raise RuntimeError(
                f"the {quantization} TFLite conversion of {signature!r} returns non-finite "
                f"{name!r}; the file was not written."
            )
    if quantization != "float32":
        return
    loaded = tf.saved_model.load(str(saved_model_dir))
    want = loaded.signatures[signature](**{input_name: tf.constant(probe)})
    for name in outputs:
        reference = want[name].numpy().astype(np.float64)
        value = np.asarray(got[name], dtype=np.float64)
        atol = _FLOAT32_RTOL * max(1.0, float(np.max(np.abs(reference))))
        if not np.allclose(value, reference, rtol=_FLOAT32_RTOL, atol=atol):
            raise RuntimeError(
                f"the float32 TFLite conversion of {signature!r} differs from the SavedModel "
                f"on {name!r} (max abs difference {np.max(np.abs(value - reference)):.3g}); "
                "the file was not written."
            )


def _convert(source, saved_model_dir, signature, quantization, calibration, input_name):
    """The TFLite flatbuffer of one signature (a converter error becomes a `ValueError` hint)."""
    with warnings.catch_warnings():
        # The converter calibrates with the deprecated tf.lite.Interpreter; not ours to fix.
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        try:
            return _converter(
                saved_model_dir, signature, quantization, calibration, input_name
            ).convert()
        except Exception as err:
            if type(err).__name__ != "ConverterError":
                raise
            raise ValueError(_conversion_hint(source, signature, err)) from err


def _inspect(content, signature, input_name, recipe):
    """`(input tensor info, {output name: tensor info})` of the converted signature."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner(signature)
    input_info = _tensor_info(runner.get_input_details()[input_name])
    all_outputs = runner.get_output_details()
    wanted = [recipe["output"]] if recipe["kind"] == "graph" else sorted(all_outputs)
    outputs = {name: _tensor_info(all_outputs[name]) for name in wanted}
    return input_info, outputs


def _verify(
    content, saved_model_dir, signature, input_name, outputs, source, scoring, quantization
):
    """Runs the converted file on probe inputs (`_check_converted`) before anything is written."""
    norm = source["normalization"]
    probe = np.random.default_rng(0).uniform(0.0, 1.0, (8, *source["feature_shape"]))
    probe = probe.astype(np.float32)
    if scoring == "graph":
        probe = probe / np.asarray(norm["scale"], np.float32) + np.asarray(
            norm["offset"], np.float32
        )
    _check_converted(content, saved_model_dir, signature, input_name, outputs, probe, quantization)
