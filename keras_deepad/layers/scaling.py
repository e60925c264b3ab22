import warnings

import keras
import numpy as np
from keras import ops

MODES = (None, "minmax", "standard")
#: Rows `FeatureScaler.adapt` converts to float64 at a time.
ADAPT_BLOCK_ROWS = 8192


@keras.saving.register_keras_serializable(package="keras_deepad")
class FeatureScaler(keras.layers.Layer):
    """Per-feature input normalisation adapted on training data.

    Statistics are kept per entry of the last axis (a tabular feature or an
    image channel) in non-trainable weights, so they are saved with the model
    and included in every export.

    Args:
        mode: `"minmax"` maps the training range to [0, 1]; `"standard"`
            subtracts the mean and divides by the standard deviation; `None`
            is the identity.

    Example:
        >>> scaler = FeatureScaler("minmax")
        >>> scaler.adapt(np.array([[0.0, 10.0], [2.0, 20.0]]))
        >>> scaler(np.array([[1.0, 15.0]]))  # [[0.5, 0.5]]
    """

    def __init__(self, mode="minmax", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        self.mode = mode

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.offset = self.add_weight(
            shape=(n,), initializer="zeros", trainable=False, name="offset"
        )
        self.scale = self.add_weight(shape=(n,), initializer="ones", trainable=False, name="scale")
        self.adapted = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="adapted"
        )

    @property
    def is_adapted(self) -> bool:
        return self.mode is None or (self.built and float(ops.convert_to_numpy(self.adapted)) > 0)

    def adapt(self, data):
        """Computes the statistics from an array or an iterable of batches."""
        batches = [data] if isinstance(data, np.ndarray) else data
        count, total, total_sq = 0, None, None
        low = high = None
        for index, batch in enumerate(batches):
            if isinstance(batch, tuple | list):
                batch = batch[0]
            values = np.asarray(batch)
            if not np.issubdtype(values.dtype, np.floating):
                values = values.astype(np.float64)
            values = values.reshape(-1, values.shape[-1])
            if not np.isfinite(values).all():
                row = int(np.argwhere(~np.isfinite(values))[0][0])
                raise ValueError(
                    f"x contains NaN or infinite values (batch {index}, row {row} of that "
                    "batch): clean or impute them before training."
                )
            if total is None:
                total = np.zeros(values.shape[-1])
                total_sq = np.zeros(values.shape[-1])
                low = np.full(values.shape[-1], np.inf)
                high = np.full(values.shape[-1], -np.inf)
            count += len(values)
            # In float64, a block of rows at a time: no float64 copy of a large array.
            for start in range(0, len(values), ADAPT_BLOCK_ROWS):
                block = values[start : start + ADAPT_BLOCK_ROWS].astype(np.float64)
                total += block.sum(axis=0)
                total_sq += np.square(block).sum(axis=0)
                low = np.minimum(low, block.min(axis=0))
                high = np.maximum(high, block.max(axis=0))
        if not count:
            raise ValueError("FeatureScaler.adapt received no data.")
        if not self.built:
            self.build((None, len(total)))
        if self.mode == "minmax":
            offset, span = low, high - low
        elif self.mode == "standard":
            offset = total / count
            span = np.sqrt(np.maximum(total_sq / count - offset**2, 0.0))
        else:
            offset, span = np.zeros_like(total), np.ones_like(total)
        # A constant feature carries no information: leave it unscaled instead of dividing by 0.
        span = np.where(span > 1e-12, span, 1.0)
        if self.mode is not None and isinstance(data, np.ndarray):
            _warn_dominated_span(np.asarray(data).reshape(-1, len(span)), span)
        self.offset.assign(offset.astype("float32"))
        self.scale.assign((1.0 / span).astype("float32"))
        self.adapted.assign(1.0)

    def call(self, inputs):
        if self.mode is None:
            return inputs
        return (inputs - self.offset) * self.scale

    def inverse(self, outputs):
        if self.mode is None:
            return outputs
        return outputs / self.scale + self.offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


#: A feature's scaling span this many times the spread of its central 98 % draws a warning.
DOMINATED_SPAN_RATIO = 1e6


def _warn_dominated_span(values: np.ndarray, span: np.ndarray) -> None:
    """Warns where a few extreme rows set a feature's scale (e.g. one 1e30 among values ~1).

    After scaling, every other row is then (nearly) the same number in that
    feature, and the detector no longer sees it.
    """
    if len(values) < 50:
        return
    # A strided sample is enough.
    values = values[:: max(1, len(values) // 10_000)].astype(np.float64)
    low, high = np.percentile(values, [1, 99], axis=0)
    central = high - low
    dominated = np.flatnonzero((central > 0) & (span > DOMINATED_SPAN_RATIO * central))
    if dominated.size:
        first = int(dominated[0])
        warnings.warn(
            f"the scaling of feature(s) {dominated.tolist()[:10]} is set by a few extreme "
            f"values (feature {first}: scaling span {span[first]:.3g}, while 98 % of the rows "
            f"lie within {central[first]:.3g}); after scaling the other rows are nearly "
            "constant there. Clip or remove those values before fitting.",
            UserWarning,
            stacklevel=3,
        )
