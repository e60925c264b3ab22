"""Helpers shared by the loss modules."""

import math

from keras import ops

#: `log(2 pi)`, of every Gaussian log-density.
LOG_2PI = math.log(2.0 * math.pi)


def as_float32(x):
    """Losses are float32 under mixed precision too (the network may return float16)."""
    return ops.cast(x, "float32")


def flat_float32(x):
    """`x` as float32 of shape `(batch, features)` (every non-batch axis flattened)."""
    return ops.reshape(as_float32(x), (ops.shape(x)[0], -1))
