"""How a graph's outputs become the anomaly score (`SCORINGS`), and the input checks."""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
#: `keras_deepad.layers.code_density.LOG_EPS` (this module imports no TensorFlow).
_HYBRID_LOG_EPS = 1e-12


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
    """Autoencoders' `"hybrid"`: standardised log error plus log squared Mahalanobis distance.

    The error is the mean of the squared errors times each feature's `error_weights` (files
    written before the weights existed have none: the plain mean squared error).
    """
    error = _weighted_error(scoring, x_norm, outputs)
    mean = np.asarray(scoring["mean"], dtype=np.float64)
    precision = np.asarray(scoring["precision"], dtype=np.float64).reshape(len(mean), len(mean))
    centred = _flat(outputs[scoring["code_output"]]) - mean
    squared = np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0)
    m_e, s_e, m_d, s_d = np.asarray(scoring["log_stats"], dtype=np.float64)
    return _log_standardise(error, m_e, s_e) + _log_standardise(squared, m_d, s_d)


def _log_standardise(values, mean, std):
    """`keras_deepad.layers.code_density.log_standardise` in float64."""
    return (np.log(values + _HYBRID_LOG_EPS) - mean) / std


def _weighted_error(scoring, x_norm, outputs):
    squared = np.square(_flat(x_norm) - _flat(outputs[scoring["output"]]))
    weights = scoring.get("error_weights")
    if weights is not None:
        squared = squared * np.asarray(weights, dtype=np.float64).reshape(1, -1)
    return np.mean(squared, axis=1)


def _hybrid_knn(scoring, x_norm, outputs):
    """Autoencoders' `"hybrid_knn"`: standardised log error plus log kNN distance of the code.

    The error as `"hybrid"`'s; the distance as `"neighbours"` (Deep SVDD's `"knn"`) on the
    code, both standardised by their training log statistics (`CodeNeighbours`).
    """
    m_e, s_e = np.asarray(scoring["error_log_stats"], dtype=np.float64)
    m_d, s_d = np.asarray(scoring["distance_log_stats"], dtype=np.float64)
    error = _weighted_error(scoring, x_norm, outputs)
    distance = _neighbours({**scoring, "output": scoring["code_output"]}, x_norm, outputs)
    return _log_standardise(error, m_e, s_e) + _log_standardise(distance, m_d, s_d)


def _center_distance(scoring, x_norm, outputs):
    embedding = _flat(outputs[scoring["output"]])
    center = np.asarray(scoring["center"], dtype=np.float64)
    return np.sum(np.square(embedding - center), axis=1) - float(scoring["radius_squared"])


def _neighbours(scoring, x_norm, outputs):
    """Deep SVDD's `"knn"`: the mean distance to the `k` nearest kept training embeddings.

    As `keras_deepad.layers.NeighbourBank`: the nearest one is skipped when
    it lies within `tolerance` (squared) of the row, i.e. is the row itself,
    and a squared distance under `tolerance` counts as `tolerance`.
    """
    origin = np.asarray(scoring["origin"], dtype=np.float64)
    bank = np.asarray(scoring["bank"], dtype=np.float64).reshape(-1, len(origin))
    centred = _flat(outputs[scoring["output"]]) - origin
    squared = (
        np.sum(np.square(centred), axis=1)[:, None]
        - 2.0 * centred @ bank.T
        + np.sum(np.square(bank), axis=1)[None, :]
    )
    squared = np.sort(np.maximum(squared, 0.0), axis=1)
    k, tolerance = int(scoring["k"]), float(scoring["tolerance"])
    skip = (squared[:, 0] <= tolerance) & (len(bank) > 1)
    first = skip.astype(np.int64)[:, None]
    chosen = np.take_along_axis(squared, first + np.arange(k)[None, :], axis=1)
    return np.mean(np.sqrt(np.maximum(chosen, tolerance)), axis=1)


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
    "hybrid_knn": _hybrid_knn,
    "center_distance": _center_distance,
    "neighbours": _neighbours,
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
