from keras import ops

from keras_deepad.losses._common import flat_float32 as _flat


def feature_errors(x, x_hat, kind="squared"):
    """Per-feature errors, same shape as `x`: `"squared"` or `"absolute"`."""
    diff = ops.cast(x, "float32") - ops.cast(x_hat, "float32")
    if kind == "squared":
        return ops.square(diff)
    if kind == "absolute":
        return ops.abs(diff)
    raise ValueError(f"kind must be 'squared' or 'absolute'. Received: {kind!r}")


def mean_squared_error(x, x_hat):
    """Mean over features of `(x - x_hat)**2`, shape `(batch,)`."""
    return ops.mean(ops.square(_flat(x) - _flat(x_hat)), axis=-1)


def mean_absolute_error(x, x_hat):
    """Mean over features of `|x - x_hat|`, shape `(batch,)`."""
    return ops.mean(ops.abs(_flat(x) - _flat(x_hat)), axis=-1)


def max_absolute_error(x, x_hat):
    """Largest per-feature `|x - x_hat|` (Borghesi et al. 2019), shape `(batch,)`."""
    return ops.max(ops.abs(_flat(x) - _flat(x_hat)), axis=-1)


RECONSTRUCTION_ERRORS = {
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
    "max": max_absolute_error,
}


def reconstruction_error(x, x_hat, kind="mse"):
    """Per-sample reconstruction error by name: `"mse"`, `"mae"` or `"max"`."""
    try:
        fn = RECONSTRUCTION_ERRORS[kind]
    except KeyError:
        raise ValueError(
            f"reconstruction error must be one of {sorted(RECONSTRUCTION_ERRORS)}. "
            f"Received: {kind!r}"
        ) from None
    return fn(x, x_hat)
