"""Reading and checking a `.tflite` file's metadata: each problem names the file and field."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from pathlib import Path

import numpy as np

from .integrity import (
    _REEXPORT,
    FORMAT_VERSION,
    INTEGRITY_ALGORITHM,
    INTEGRITY_FIELD,
    integrity_digest,
)
from .recipes import SCORINGS

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


def _check_scoring(read, scoring, outputs, features=None) -> None:
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
        if "error_weights" in scoring:
            _check_error_weights(read, scoring, p, features)
        return
    if kind == "hybrid_knn":
        read.output_name(scoring, "output", p, outputs)
        read.output_name(scoring, "code_output", p, outputs)
        _check_error_weights(read, scoring, p, features)
        for key in ("error_log_stats", "distance_log_stats"):
            if len(read.numbers(scoring, key, p)) != 2:
                raise read.error(p + key, "must hold 2 numbers (mean, std)")
        _check_bank(read, scoring, p)
        return
    if kind == "neighbours":
        read.output_name(scoring, "output", p, outputs)
        _check_bank(read, scoring, p)
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


def _check_error_weights(read, scoring, p, features):
    weights = read.numbers(scoring, "error_weights", p)
    if features is not None and len(weights) != features:
        raise read.error(
            p + "error_weights",
            f"has {len(weights)} numbers, expected one per input feature ({features})",
        )


def _check_bank(read, scoring, p):
    """The kept training embeddings of a `neighbours` or `hybrid_knn` recipe."""
    origin = read.numbers(scoring, "origin", p)
    bank = read.numbers(scoring, "bank", p)
    k = read.integer(scoring, "k", p, minimum=1)
    read.number(scoring, "tolerance", p)
    rows = len(bank) // max(len(origin), 1)
    if len(origin) == 0 or len(bank) != rows * len(origin) or rows < 1:
        raise read.error(
            p + "bank",
            f"has {len(bank)} numbers, expected whole embeddings of length {len(origin)} "
            "(as long as the origin)",
        )
    if k > max(rows - 1, 1):
        raise read.error(p + "k", f"is {k}, more than the bank's {rows} embeddings allow")


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
    _check_scoring(read, read.object(metadata, "scoring"), outputs, features=math.prod(shape))
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
