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

The metadata is sealed to its model: its `integrity` field is a SHA-256 digest
over the `.tflite` bytes and the metadata's own content (`integrity_digest`), so
a model scored with another export's threshold or normalisation, or a metadata
file edited after export, is refused (`EdgeDetector(..., verify=False)` opts out).
This detects mix-ups and corruption, not a deliberate forgery: anyone who can
write both files can recompute the digest (it is not a signature).

Example:
    >>> from keras_deepad.edge import EdgeDetector
    >>> detector = EdgeDetector("saved_models/ae-int8.tflite")
    >>> scores = detector.score(x)           # one float per sample, higher = more anomalous
    >>> flags = detector.predict_labels(x)   # 1 = anomaly (score above the threshold)
    >>> detector.drift(x_recent).message     # do recent data still score like calibration?
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
from pathlib import Path

import numpy as np

#: Version of the metadata layout written next to a `.tflite` file.
FORMAT_VERSION = 1
METADATA_SUFFIX = ".json"
_LOG_2PI = math.log(2.0 * math.pi)
#: `keras_deepad.layers.code_density.LOG_EPS` (this module imports no TensorFlow).
_HYBRID_LOG_EPS = 1e-12
DEFAULT_BATCH = 256
#: The metadata field that seals a `.tflite` file and its metadata together.
INTEGRITY_FIELD = "integrity"
INTEGRITY_ALGORITHM = "sha256"
_INTEGRITY_DOMAIN = b"keras_deepad.tflite integrity 1\n"
_REEXPORT = "re-export the model with keras_deepad.export.export_tflite"


def metadata_path(tflite_path) -> Path:
    """Where the metadata of `tflite_path` lives: the same name plus `.json`."""
    path = Path(tflite_path)
    return path.with_name(path.name + METADATA_SUFFIX)


# --------------------------------------------------------------- integrity
def canonical_metadata(metadata: dict) -> bytes:
    """The metadata without its `integrity` field as canonical JSON: sorted keys, no spaces, ASCII.

    JSON round-trips Python floats exactly, so the metadata read back from its
    file gives the same bytes as the dict that was written.
    """
    body = {key: value for key, value in metadata.items() if key != INTEGRITY_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def integrity_digest(content: bytes, metadata: dict) -> str:
    """The hex SHA-256 that seals a `.tflite` file's bytes and its metadata together.

    `sha256(b"keras_deepad.tflite integrity 1\\n" + len(content) as 8 big-endian bytes
    + content + canonical_metadata(metadata))`; the `integrity` field itself is left out.
    """
    digest = hashlib.sha256(_INTEGRITY_DOMAIN)
    digest.update(len(content).to_bytes(8, "big"))
    digest.update(content)
    digest.update(canonical_metadata(metadata))
    return digest.hexdigest()


def seal_metadata(content: bytes, metadata: dict) -> dict:
    """`metadata` with its `integrity` field for the model `content` (as `export_tflite` writes)."""
    body = {key: value for key, value in metadata.items() if key != INTEGRITY_FIELD}
    return {
        **body,
        INTEGRITY_FIELD: {
            "algorithm": INTEGRITY_ALGORITHM,
            "digest": integrity_digest(content, body),
        },
    }


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


def _hybrid(scoring, x_norm, outputs):
    """Autoencoders' `"hybrid"`: standardised log error plus log squared Mahalanobis distance."""
    error = _reconstruction_error({**scoring, "error": "mse"}, x_norm, outputs)
    mean = np.asarray(scoring["mean"], dtype=np.float64)
    precision = np.asarray(scoring["precision"], dtype=np.float64).reshape(len(mean), len(mean))
    centred = _flat(outputs[scoring["code_output"]]) - mean
    squared = np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0)
    m_e, s_e, m_d, s_d = np.asarray(scoring["log_stats"], dtype=np.float64)
    return (np.log(error + _HYBRID_LOG_EPS) - m_e) / s_e + (
        np.log(squared + _HYBRID_LOG_EPS) - m_d
    ) / s_d


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
    "hybrid": _hybrid,
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


# ---------------------------------------------------------------- metadata
_MISSING = object()


def _got(value) -> str:
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"))
    kinds += ((list, "a list"), (dict, "an object"))
    kind = next((name for cls, name in kinds if isinstance(value, cls)), type(value).__name__)
    text = repr(value)
    return f"{kind} ({text[:40] + '...' if len(text) > 43 else text})"


class _Reader:
    """Reads the metadata's fields; each problem is a `ValueError` naming the file and field."""

    def __init__(self, where):
        self.where = where

    def error(self, field, problem, hint=_REEXPORT) -> ValueError:
        return ValueError(f"{self.where}: field {field!r} {problem}; {hint}.")

    def get(self, obj, key, prefix="", default=_MISSING):
        """`obj[key]`; a missing key is an error unless `default` is given."""
        if key in obj:
            return obj[key]
        if default is _MISSING:
            raise self.error(prefix + key, "is missing")
        return default

    def object(self, obj, key, prefix="", default=_MISSING) -> dict:
        value = self.get(obj, key, prefix, default)
        if not isinstance(value, dict):
            raise self.error(prefix + key, f"must be an object, got {_got(value)}")
        return value

    def string(self, obj, key, prefix="", choices=None) -> str:
        value = self.get(obj, key, prefix)
        if not isinstance(value, str) or not value:
            raise self.error(prefix + key, f"must be a non-empty string, got {_got(value)}")
        if choices is not None and value not in choices:
            raise self.error(prefix + key, f"must be one of {list(choices)}, got {value!r}")
        return value

    def number(self, obj, key, prefix="", nullable=False, positive=False, default=_MISSING):
        value = self.get(obj, key, prefix, default)
        if value is None and nullable:
            return None
        kind = "a positive finite number" if positive else "a finite number"
        kind += " or null" if nullable else ""
        if not _is_number(value) or not math.isfinite(value) or (positive and value <= 0):
            raise self.error(prefix + key, f"must be {kind}, got {_got(value)}")
        return value

    def integer(self, obj, key, prefix="", minimum=None) -> int:
        value = self.get(obj, key, prefix)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(prefix + key, f"must be an integer, got {_got(value)}")
        if minimum is not None and value < minimum:
            raise self.error(prefix + key, f"must be at least {minimum}, got {value}")
        return value

    def numbers(self, obj, key, prefix="", shape=None) -> np.ndarray:
        """A number or (nested) list of finite numbers; `shape`: it must broadcast to it."""
        value = self.get(obj, key, prefix)
        field = prefix + key
        leaves, stack = [], [value]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif _is_number(item) and math.isfinite(item):
                leaves.append(item)
            else:
                raise self.error(
                    field, f"must hold finite numbers only, got {_got(item)} in {_got(value)}"
                )
        try:
            array = np.asarray(value, dtype=np.float64)
        except ValueError:
            raise self.error(field, "is a ragged list (rows of different lengths)") from None
        if shape is not None:
            try:
                ok = np.broadcast_shapes(array.shape, shape) == tuple(shape)
            except ValueError:
                ok = False
            if not ok:
                raise self.error(
                    field, f"has shape {array.shape}, which does not fit feature_shape {shape}"
                )
        return array

    def quantization(self, obj, prefix) -> None:
        """The optional `quantization` of a tensor: null or `{scale, zero_point, dtype}`."""
        params = obj.get("quantization")
        if params is None:
            return
        prefix += "quantization."
        if not isinstance(params, dict):
            raise self.error(prefix[:-1], f"must be an object or null, got {_got(params)}")
        self.number(params, "scale", prefix, positive=True)
        self.integer(params, "zero_point", prefix)
        dtype = self.string(params, "dtype", prefix)
        try:
            integer = np.dtype(dtype).kind in "iu"
        except TypeError:
            integer = False
        if not integer:
            raise self.error(prefix + "dtype", f"must name an integer dtype, got {dtype!r}")

    def output_name(self, obj, key, prefix, outputs) -> None:
        name = self.string(obj, key, prefix)
        if name not in outputs:
            raise self.error(
                prefix + key, f"names {name!r}, which is not in 'outputs' ({sorted(outputs)})"
            )


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scoring(read, scoring, outputs) -> None:
    """The scoring recipe: a known kind, with the constants and outputs its function reads."""
    p = "scoring."
    kind = read.string(scoring, "kind", p)
    if kind not in SCORINGS:
        raise read.error(
            "scoring.kind",
            f"is {kind!r}, an unknown scoring kind",
            f"this file needs a newer keras_deepad.edge (known: {sorted(SCORINGS)})",
        )
    if kind == "vae_monte_carlo":
        names = read.object(scoring, "outputs", p)
        read.string(scoring, "likelihood", p, choices=("bernoulli", "gaussian"))
        include_kl = scoring.get("include_kl", False)
        if not isinstance(include_kl, bool):
            raise read.error(p + "include_kl", f"must be a boolean, got {_got(include_kl)}")
        for key in ("decoded", "mu", "logvar") if include_kl else ("decoded",):
            read.output_name(names, key, p + "outputs.", outputs)
        if scoring["likelihood"] == "gaussian":
            read.numbers(scoring, "decoder_logvar", p)
        return
    if kind == "hybrid":
        read.output_name(scoring, "output", p, outputs)
        read.output_name(scoring, "code_output", p, outputs)
        mean = read.numbers(scoring, "mean", p)
        precision = read.numbers(scoring, "precision", p)
        if len(precision) != len(mean) ** 2:
            raise read.error(
                p + "precision",
                f"has {len(precision)} numbers, expected {len(mean) ** 2} "
                f"(a {len(mean)} x {len(mean)} matrix, as long as the mean squared)",
            )
        if len(read.numbers(scoring, "log_stats", p)) != 4:
            raise read.error(p + "log_stats", "must hold 4 numbers (mean, std, mean, std)")
        return
    if kind in _RECIPE_FIELDS or "output" in scoring:
        read.output_name(scoring, "output", p, outputs)
    for key, check in _RECIPE_FIELDS.get(kind, {}).items():
        if check == "number":
            read.number(scoring, key, p)
        elif check == "numbers":
            read.numbers(scoring, key, p)
        else:
            read.string(scoring, key, p, choices=check)


#: Scoring kind -> constants its function reads ("number", "numbers" or the allowed strings);
#: every kind here also reads `output`. `vae_monte_carlo` is checked on its own.
_RECIPE_FIELDS = {
    "graph": {},
    "reconstruction_error": {"error": ("mse", "mae", "max")},
    "center_distance": {"center": "numbers", "radius_squared": "number"},
    "linear_margin": {"weights": "numbers", "offset": "number"},
    "cosine_margin": {"weights": "numbers", "offset": "number", "scale": "number"},
    "standard_normal_nll": {},
}


def check_metadata(metadata, where="the metadata") -> dict:
    """Checks the fields of TFLite metadata that `EdgeDetector` reads; returns `metadata`.

    Args:
        metadata: the parsed metadata.
        where: what to call it in errors (the metadata file's path).

    Raises:
        ValueError: naming `where` and the field, if `metadata` is not a JSON
            object, or a field is missing or has the wrong type (e.g. a
            threshold that is a string or not finite).
    """
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{where} must be a JSON object (keras_deepad TFLite metadata), got "
            f"{_got(metadata)}; {_REEXPORT}."
        )
    read = _Reader(where)
    if read.get(metadata, "format") != "keras_deepad.tflite":
        raise read.error(
            "format",
            f"is {metadata['format']!r}, not 'keras_deepad.tflite': this is not keras_deepad "
            "TFLite metadata",
        )
    version = read.integer(metadata, "format_version", minimum=1)
    if version > FORMAT_VERSION:
        raise read.error(
            "format_version",
            f"is {version}; this runtime reads up to {FORMAT_VERSION}",
            "upgrade keras_deepad",
        )
    shape = read.get(metadata, "feature_shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise read.error(
            "feature_shape", f"must be a non-empty list of positive integers, got {_got(shape)}"
        )
    read.string(metadata, "quantization")
    read.string(metadata, "signature")
    read.number(metadata, "threshold", nullable=True)
    for key in ("training_score_quantiles", "representative_score_quantiles"):
        quantiles = metadata.get(key)
        if quantiles is not None:
            quantiles = read.object(metadata, key)
            for q in quantiles:
                read.number(quantiles, q, key + ".")
    class_name = metadata.get("class_name")
    if class_name is not None and not isinstance(class_name, str):
        raise read.error("class_name", f"must be a string or null, got {_got(class_name)}")
    norm = read.object(metadata, "normalization")
    read.string(norm, "applied", "normalization.", choices=("host", "graph"))
    for key in ("offset", "scale"):
        read.numbers(norm, key, "normalization.", shape=tuple(shape))
    tensor = read.object(metadata, "input")
    read.string(tensor, "name", "input.")
    read.quantization(tensor, "input.")
    outputs = read.object(metadata, "outputs")
    if not outputs:
        raise read.error("outputs", "is empty")
    for name in outputs:
        read.object(outputs, name, "outputs.")
        read.quantization(outputs[name], f"outputs.{name}.")
    _check_scoring(read, read.object(metadata, "scoring"), outputs)
    return metadata


def verify_metadata(content: bytes, metadata: dict, where="the metadata", model="the model"):
    """Checks that `metadata` was written with the model `content` and not changed since.

    Both the `sha256` of the model and the `integrity` digest over the model and
    the metadata must be present and match (`integrity_digest`).

    Raises:
        ValueError: naming the files and the field, if either is missing, null
            or differs.
    """
    read = _Reader(where)
    unchecked = "pass verify=False to load it without this check"
    for key in ("sha256", INTEGRITY_FIELD):
        if metadata.get(key) is None:
            state = "is null" if key in metadata else "is missing"
            raise read.error(
                key,
                f"{state}, so {model} cannot be checked against it (metadata written by an "
                "older keras_deepad, or edited)",
                f"{_REEXPORT}, or {unchecked}",
            )
    sha256 = metadata["sha256"]
    if not isinstance(sha256, str):
        raise read.error("sha256", f"must be a hex string, got {_got(sha256)}")
    if not hmac.compare_digest(sha256.encode(), hashlib.sha256(content).hexdigest().encode()):
        raise read.error(
            "sha256",
            f"differs from the SHA-256 of {model}: the two files come from different exports "
            "(or the model was modified)",
            f"use the metadata written with this model, {_REEXPORT}, or {unchecked}",
        )
    seal = read.object(metadata, INTEGRITY_FIELD)
    read.string(seal, "algorithm", "integrity.", choices=(INTEGRITY_ALGORITHM,))
    digest = read.string(seal, "digest", "integrity.")
    try:
        expected = integrity_digest(content, metadata)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where} is not JSON-serialisable metadata ({err}).") from None
    if not hmac.compare_digest(digest.encode(), expected.encode()):
        raise read.error(
            "integrity",
            f"does not match {model} and this metadata: the metadata (threshold, normalisation, "
            "scoring, ...) was changed after export",
            f"{_REEXPORT}, or {unchecked}",
        )


def _read_metadata(meta_file: Path):
    """The parsed JSON of a metadata file; a `ValueError` naming it if it is not JSON."""
    problem = None
    try:
        return json.loads(meta_file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON ({err.msg}: line {err.lineno} column {err.colno})"
    except RecursionError:
        problem = "is not valid metadata (JSON nested too deeply)"
    raise ValueError(f"{meta_file} {problem}: it is truncated or corrupted; {_REEXPORT}.")


# ------------------------------------------------------------------- drift
#: The smallest window of scores `EdgeDetector.drift` tests.
MIN_DRIFT_WINDOW = 20


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The result of comparing a window of scores with the calibration scores (`score_drift`).

    Attributes:
        drifted: `p_value < alpha`: the window's scores are unlikely to come from
            the calibration score distribution.
        p_value: of the Kolmogorov-Smirnov test (see `score_drift`).
        statistic: the KS statistic `D`, the largest gap between the window's
            empirical CDF and the reference CDF (0 to 1).
        n: the window size.
        flagged_fraction: the fraction of the window above the threshold
            (`None` without a threshold).
        expected_flagged_fraction: the fraction of calibration scores above the
            threshold, read from the quantile grid (`None` without a threshold).
        median_shift: the window's median minus the calibration median, in
            units of the calibration interquartile range (`+inf`/`-inf` when
            that range is 0 and the medians differ).
        message: one sentence saying what was found.
    """

    drifted: bool
    p_value: float
    statistic: float
    n: int
    flagged_fraction: float | None
    expected_flagged_fraction: float | None
    median_shift: float
    message: str


def _quantile_grid(quantiles, where="quantiles"):
    """`(levels, values)` of a `{level: value}` grid, sorted by level; a `ValueError` if bad."""
    if not isinstance(quantiles, dict) or len(quantiles) < 2:
        raise ValueError(
            f"{where} must be a {{level: value}} mapping with at least the levels 0 and 1, "
            f"got {_got(quantiles)}."
        )
    grid = {}
    for key, value in quantiles.items():
        try:
            level = float(key)
        except (TypeError, ValueError):
            level = math.nan
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"{where}: key {key!r} is not a quantile level in [0, 1].")
        if level in grid:
            raise ValueError(f"{where}: the level {level} appears twice.")
        if not _is_number(value) and not isinstance(value, np.floating | np.integer):
            raise ValueError(f"{where}[{key!r}] must be a finite number, got {_got(value)}.")
        if not math.isfinite(value):
            raise ValueError(f"{where}[{key!r}] must be a finite number, got {value}.")
        grid[level] = float(value)
    levels = np.array(sorted(grid), dtype=np.float64)
    values = np.array([grid[level] for level in levels], dtype=np.float64)
    if levels[0] != 0.0 or levels[-1] != 1.0:
        raise ValueError(
            f"{where} must include the levels 0 and 1 (the smallest and largest calibration "
            f"scores), got levels {levels.tolist()}."
        )
    if np.any(np.diff(values) < 0):
        pairs = dict(zip(levels.tolist(), values.tolist(), strict=True))
        raise ValueError(f"{where} decrease with the level: {pairs}.")
    return levels, values


def _grid_cdf(levels, values, x, left=False) -> np.ndarray:
    """The reference CDF at `x` (its left limit with `left`), linear between grid points.

    It is 0 below the smallest value and 1 at or above the largest. Tied values
    (a jump in the CDF) are handled: the right-continuous CDF takes the highest
    level of a tie, its left limit the lowest.
    """
    u, start = np.unique(values, return_index=True)
    end = np.append(start[1:], len(values)) - 1
    lo, hi = levels[start], levels[end]  # the CDF just below / at each distinct value
    x = np.asarray(x, dtype=np.float64)
    j = np.searchsorted(u, x, side="left" if left else "right") - 1
    out = np.where(j < 0, 0.0, 1.0)
    inside = (j >= 0) & (j < len(u) - 1)
    if inside.any():
        k = j[inside]
        t = (x[inside] - u[k]) / (u[k + 1] - u[k])
        out[inside] = hi[k] + t * (lo[k + 1] - hi[k])
    return out


def _kolmogorov_sf(lam: float) -> float:
    """`P(K > lam)` for the Kolmogorov distribution `K` (the limit of `sqrt(n) D`), numpy only."""
    if lam <= 0.0:
        return 1.0
    k = np.arange(1, 9, dtype=np.float64)
    if lam < 1.18:  # the CDF's theta-function form converges fast for small lam
        terms = np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * lam**2))
        cdf = math.sqrt(2.0 * math.pi) / lam * float(np.sum(terms))
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    sf = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2))
    return float(min(max(sf, 0.0), 1.0))


def _ks_pvalue(statistic: float, n: float) -> float:
    """Two-sided KS p-value of `statistic` for (effective) sample size `n`.

    The exact distribution (`scipy.stats.kstwo`) where SciPy is installed;
    otherwise the asymptotic Kolmogorov distribution with Stephens' small-sample
    correction, `P(K > (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D)`, good to about 1e-2
    relative for the p-values that matter (< 0.2).
    """
    try:
        from scipy.stats import kstwo
    except ImportError:
        root = math.sqrt(n)
        return _kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)
    return float(kstwo.sf(statistic, max(1, round(n))))


def score_drift(scores, quantiles, threshold=None, alpha=0.01, reference_size=None) -> DriftReport:
    """Compares a window of scores with a grid of calibration score quantiles.

    A one-sample Kolmogorov-Smirnov test of the window against the reference
    CDF interpolated linearly between the grid's points (0 below the smallest
    calibration score, 1 above the largest), plus two readable statistics: the
    fraction of the window above `threshold` against the fraction the grid
    predicts, and the shift of the median in interquartile ranges.

    The grid is coarse (11 levels in exports), so the reference CDF between
    levels is an approximation; with windows of many thousands of scores the
    test starts to see that approximation. Windows of a few hundred scores are
    the intended use.

    Args:
        scores: 1-D window of scores, in the same units as `quantiles` (at
            least `MIN_DRIFT_WINDOW`). `+inf`/`-inf` lie beyond the grid; NaN is
            an error.
        quantiles: `{level: score}` with the levels 0 and 1 among them, e.g.
            `EdgeDetector.score_quantiles` (keys may be strings, as in JSON).
        threshold: the anomaly threshold, or `None` to skip the flagged fractions.
        alpha: the test's significance level, in (0, 1).
        reference_size: how many scores the quantiles were computed from, if
            known: the p-value then uses the two-sample effective size
            `n m / (n + m)`, which allows for the noise in the reference
            itself. `None` treats the grid as exact.

    Returns:
        A `DriftReport`; `drifted` is `p_value < alpha`.

    Raises:
        ValueError: for fewer than `MIN_DRIFT_WINDOW` scores, NaN scores, a bad
            `alpha`, `threshold` or `reference_size`, or a malformed grid.
    """
    levels, values = _quantile_grid(quantiles)
    if not _is_number(alpha) and not isinstance(alpha, np.floating):
        raise ValueError(f"alpha must be a number in (0, 1), got {_got(alpha)}.")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if threshold is not None and not (
        (_is_number(threshold) or isinstance(threshold, np.floating)) and math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number or None, got {_got(threshold)}.")
    if reference_size is not None and not (
        isinstance(reference_size, int | np.integer)
        and not isinstance(reference_size, bool)
        and reference_size >= 1
    ):
        raise ValueError(
            f"reference_size must be a positive integer or None, got {_got(reference_size)}."
        )
    try:
        x = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"scores must be a 1-D array of numbers, got {type(scores).__name__}."
        ) from None
    if x.ndim > 1:
        raise ValueError(f"scores must be 1-D (one score per sample), got shape {x.shape}.")
    x = np.sort(x.reshape(-1))
    n = len(x)
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise ValueError(
            f"{n_nan} of {n} scores are NaN: a NaN score cannot be compared with the "
            "calibration scores; drop those samples (and check them: the input or the model "
            "is broken)."
        )
    if n < MIN_DRIFT_WINDOW:
        raise ValueError(
            f"the drift test needs a window of at least {MIN_DRIFT_WINDOW} scores, got {n}: "
            "collect more samples before testing (a few hundred give a sensitive test)."
        )
    cdf = _grid_cdf(levels, values, x)
    cdf_left = _grid_cdf(levels, values, x, left=True)
    rank = np.arange(1, n + 1, dtype=np.float64)
    below = float(np.max(rank / n - cdf))  # window CDF above the reference: lower scores
    above = float(np.max(cdf_left - (rank - 1) / n))  # window CDF below it: higher scores
    statistic = min(max(below, above, 0.0), 1.0)
    effective = n if reference_size is None else n * reference_size / (n + reference_size)
    p_value = _ks_pvalue(statistic, effective)
    drifted = bool(p_value < alpha)

    q25, q50, q75 = np.interp([0.25, 0.5, 0.75], levels, values)
    shift = float(np.median(x)) - float(q50)
    spread = float(q75 - q25)
    if spread > 0:
        median_shift = shift / spread
    else:
        median_shift = 0.0 if shift == 0 else math.copysign(math.inf, shift)
    flagged = expected = None
    if threshold is not None:
        flagged = float(np.mean(x > threshold))
        expected = float(1.0 - _grid_cdf(levels, values, [threshold])[0])

    p_text = f"p={p_value:.2g}" if p_value > 0 else "p<1e-300"  # 0: below float range
    what = f"median {median_shift:+.2f} IQR from the calibration median"
    if threshold is not None:
        what += f", {flagged:.1%} above the threshold ({expected:.1%} expected)"
    if drifted:
        direction = "higher" if above >= below else "lower"
        message = (
            f"scores drifted {direction} than the calibration data: {what} "
            f"(KS {p_text}, D={statistic:.3f}, n={n})"
        )
    else:
        message = f"scores look like the calibration data: {what} (KS {p_text}, n={n})"
    return DriftReport(
        drifted=drifted,
        p_value=float(p_value),
        statistic=float(statistic),
        n=n,
        flagged_fraction=flagged,
        expected_flagged_fraction=expected,
        median_shift=float(median_shift),
        message=message,
    )


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
