"""Input checks that run before TensorFlow sees the data.

Every public entry point of a detector (`fit`, `score`, `calibrate`, ...)
passes its input through `check_array` (in-memory data) or
`check_dataset_spec` (a `tf.data.Dataset`), so bad input fails with a
`ValueError` that names the problem instead of a TensorFlow stack trace.
"""

from __future__ import annotations

import numpy as np

_SUPPORTED = "numpy arrays, pandas DataFrames, lists, TensorFlow tensors or tf.data.Dataset"


def _is_tensor(x) -> bool:
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - TensorFlow is a dependency of the models
        return False
    return isinstance(x, tf.Tensor | tf.Variable)


def _describe_shape(shape) -> str:
    return "(" + ", ".join("n_samples" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"


def _from_pandas(x, name: str) -> np.ndarray:
    import pandas as pd

    if isinstance(x, pd.Series):
        x = x.to_frame()
    non_numeric = [
        str(col)
        for col, dtype in x.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
    ]
    if non_numeric:
        raise ValueError(
            f"{name} has non-numeric columns {non_numeric}: encode or drop them before "
            "passing the DataFrame to a detector."
        )
    return x.to_numpy(dtype=np.float32, na_value=np.nan)


def check_array(
    x,
    feature_shape: tuple[int, ...] | None = None,
    name: str = "x",
    dtype=np.float32,
) -> np.ndarray:
    """Converts in-memory input to a finite float32 array of the expected shape.

    Args:
        x: numpy array, pandas DataFrame, nested list or TensorFlow tensor with
            samples along the first axis.
        feature_shape: the shape of one sample the model expects (e.g. `(30,)`
            or `(28, 28, 1)`); `None` accepts any shape of rank >= 2.
        name: the argument name used in error messages.
        dtype: the returned dtype.

    Returns:
        A C-contiguous numpy array of `dtype`.

    Raises:
        ValueError: for strings or other non-numeric data, rank < 2, a shape
            that does not match `feature_shape`, empty input, NaN or inf.
    """
    if x is None:
        raise ValueError(f"{name} is None: expected {_SUPPORTED}.")
    if _is_tensor(x):
        x = x.numpy()
    elif type(x).__module__.startswith("pandas"):
        x = _from_pandas(x, name)
    elif not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise ValueError(
                f"{name} could not be converted to an array ({err}); "
                "every sample must have the same shape."
            ) from None
    kind = x.dtype.kind
    if kind in "USO":
        raise ValueError(
            f"{name} contains strings or Python objects (dtype {x.dtype}); "
            "detectors take numeric features only."
        )
    if kind == "c":
        raise ValueError(f"{name} is complex (dtype {x.dtype}); detectors take real numbers only.")
    if kind not in "biuf":
        raise ValueError(f"{name} has unsupported dtype {x.dtype}; expected numbers.")
    if x.ndim < 2:
        hint = (
            " For one sample use x.reshape(1, -1); for one feature use x.reshape(-1, 1)."
            if x.ndim == 1
            else ""
        )
        raise ValueError(
            f"{name} must have a samples axis and at least one feature axis: at least 2 "
            f"dimensions (rank >= 2); received rank {x.ndim} with shape {x.shape}.{hint}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no rows (shape {x.shape}).")
    if any(d == 0 for d in x.shape[1:]):
        raise ValueError(f"{name} has no features: received shape {x.shape}.")
    if feature_shape is not None:
        feature_shape = tuple(int(d) for d in feature_shape)
        if x.ndim != len(feature_shape) + 1:
            raise ValueError(
                f"{name} has rank {x.ndim} (shape {x.shape}) but the model expects "
                f"rank {len(feature_shape) + 1}, shape {_describe_shape((None, *feature_shape))}."
            )
        if tuple(x.shape[1:]) != feature_shape:
            if len(feature_shape) == 1:
                raise ValueError(
                    f"{name} has {x.shape[1]} features per sample but the model expects "
                    f"{feature_shape[0]}."
                )
            raise ValueError(
                f"{name} has samples of shape {tuple(x.shape[1:])} but the model expects "
                f"{feature_shape}."
            )
    original = x
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(x, dtype=dtype)
    if original is not x and not np.isfinite(x).all():
        # NaN or inf in the input, else finite values the cast overflowed: say which.
        check_finite(np.asarray(original), name)
        limit = np.finfo(x.dtype).max
        beyond = ~np.isfinite(x)
        first_row = int(np.argwhere(beyond.reshape(len(x), -1).any(axis=1))[0, 0])
        raise ValueError(
            f"{name} has {int(beyond.sum())} value(s) beyond the range of {x.dtype} "
            f"(|x| > {limit:.3g}; first in sample {first_row}); rescale or clip them."
        )
    check_finite(x, name)
    return x


def check_finite(x: np.ndarray, name: str = "x", offset: int = 0) -> None:
    """Raises a `ValueError` locating the first NaN or infinite value of `x`."""
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = ~finite
    n_nan = int(np.isnan(x).sum())
    n_inf = int(bad.sum()) - n_nan
    first_row = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0]) + offset
    parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
    raise ValueError(
        f"{name} contains {' and '.join(parts)} value(s) (first in sample {first_row}); "
        "impute or drop them before fitting or scoring."
    )


def check_dataset_spec(dataset, feature_shape: tuple[int, ...] | None = None, name: str = "x"):
    """Checks a `tf.data.Dataset`'s element spec before it is consumed.

    The dataset must yield batches `x` or tuples `(x, ...)` whose `x` is a
    numeric tensor of shape `(batch, *feature_shape)`.

    Returns:
        The `tf.TensorSpec` of the features.
    """
    import tensorflow as tf

    spec = dataset.element_spec
    if isinstance(spec, tuple | list):
        if not spec:
            raise ValueError(f"{name} yields empty tuples; expected feature batches.")
        spec = spec[0]
    if isinstance(spec, dict):
        raise ValueError(
            f"{name} yields dicts (keys {sorted(spec)}); map it to feature tensors first, "
            "e.g. dataset.map(lambda d: d['features'])."
        )
    if not isinstance(spec, tf.TensorSpec):
        raise ValueError(f"{name} yields {type(spec).__name__}; expected dense tensors.")
    if spec.dtype == tf.string:
        raise ValueError(f"{name} yields strings (dtype {spec.dtype.name}); expected numbers.")
    if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype == tf.bool):
        raise ValueError(f"{name} yields dtype {spec.dtype.name}; expected numbers.")
    shape = spec.shape
    if shape.rank is not None and shape.rank < 2:
        raise ValueError(
            f"{name} yields tensors of rank {shape.rank} (shape {shape}); datasets must be "
            "batched: call dataset.batch(batch_size) first."
        )
    if feature_shape is not None and shape.rank is not None:
        expected = tuple(feature_shape)
        if shape.rank != len(expected) + 1:
            raise ValueError(
                f"{name} yields batches of shape {shape} but the model expects "
                f"{_describe_shape((None, *expected))}."
            )
        for got, want in zip(shape[1:], expected, strict=True):
            if got is not None and got != want:
                raise ValueError(
                    f"{name} yields batches of shape {shape} but the model expects "
                    f"{_describe_shape((None, *expected))}."
                )
    return spec


def to_numpy_batch(batch, feature_shape, name: str = "x", offset: int = 0) -> np.ndarray:
    """Checks one batch drawn from a dataset (used while scoring)."""
    if isinstance(batch, tuple | list):
        batch = batch[0]
    array = np.asarray(batch)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} yields dtype {array.dtype}; expected numbers.")
    if feature_shape is not None and tuple(array.shape[1:]) != tuple(feature_shape):
        raise ValueError(
            f"{name} yields batches of shape {array.shape} but the model expects "
            f"{_describe_shape((None, *feature_shape))}."
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite(array, name, offset=offset)
    return array


def check_sample_weight(sample_weight, x, name: str = "sample_weight") -> np.ndarray:
    """Checks `fit`'s per-row weights: one finite, non-negative number per row of `x`.

    Returns:
        A float32 numpy array of shape `(n_samples,)`.
    """
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset) or not hasattr(x, "shape"):
        raise ValueError(
            f"{name} goes with an array x; a tf.data.Dataset, PyDataset or generator "
            "yields its weights with its batches instead: (x, None, sample_weight)."
        )
    if _is_tensor(sample_weight):
        sample_weight = np.asarray(sample_weight)
    weights = _from_pandas(sample_weight, name) if hasattr(sample_weight, "to_numpy") else None
    weights = np.asarray(sample_weight if weights is None else weights)
    if weights.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must hold numbers (one weight per row of x). Received dtype {weights.dtype}"
        )
    weights = weights.astype(np.float32)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.ndim != 1 or len(weights) != len(x):
        raise ValueError(
            f"{name} must have one weight per row of x: shape ({len(x)},). "
            f"Received shape {weights.shape}"
        )
    if not np.isfinite(weights).all():
        raise ValueError(f"{name} must be finite; it contains NaN or infinite values.")
    if (weights < 0).any():
        raise ValueError(f"{name} must be non-negative; received a minimum of {weights.min()}.")
    return weights


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
):
    """A finite number in a range, as the argument `name` (Python or NumPy scalar).

    Args:
        name: the argument's name, for the message.
        value: the value given.
        low, high: bounds (`None`: unbounded).
        low_open, high_open: whether the bound itself is excluded.
        integer: require a whole number (returned as `int`).

    Returns:
        `value` as a Python `float` (or `int` with `integer=True`).

    Raises:
        ValueError: naming `name`, when `value` is not a real number, is NaN or
            infinite, not whole where `integer`, or out of range.
    """
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")
    if isinstance(value, complex | np.complexfloating) or not np.isfinite(value):
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")
    if integer and float(value) != int(value):
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")
    number = int(value) if integer else float(value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        left = "unbounded" if low is None else f"{'(' if low_open else '['}{low}"
        right = "" if high is None else f"{high}{')' if high_open else ']'}"
        span = f"{left}, {right or 'inf)'}" if low is not None else f"(-inf, {right}"
        raise ValueError(f"{name} must be in {span}. Received: {name}={value!r}")
    return number


def check_units(name: str, value) -> tuple[int, ...]:
    """A sequence of positive layer sizes (a tuple of ints), as the argument `name`."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"{name} must be a list of positive integers (layer sizes), e.g. [64, 32]. "
            f"Received: {name}={value!r}"
        )
    return tuple(check_number(f"{name}[{i}]", u, low=1, integer=True) for i, u in enumerate(value))


def check_range(name: str, value) -> tuple[float, float]:
    """A `(low, high)` pair of finite numbers with `low < high`, as the argument `name`."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair. Received: {name}={value!r}") from None
    low, high = check_number(f"{name}[0]", low), check_number(f"{name}[1]", high)
    if not low < high:
        raise ValueError(f"{name} must have low < high. Received: {name}={value!r}")
    return low, high
