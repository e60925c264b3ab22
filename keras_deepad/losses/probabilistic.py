from keras import ops

from keras_deepad.losses._common import LOG_2PI as _LOG_2PI
from keras_deepad.losses._common import as_float32 as _f32
from keras_deepad.losses._common import flat_float32 as _flat


def gaussian_nll(x, mean, logvar):
    """`-log N(x; mean, exp(logvar))` summed over features, shape `(batch,)`.

    `logvar` broadcasts against `x`: a scalar, one value per feature (the
    sample shape without the batch axis, e.g. `(28, 28, 1)` for images) or
    one value per sample and feature (the shape of `x`).
    """
    per_sample = ops.ndim(logvar) == ops.ndim(x)
    x, mean = _flat(x), _flat(mean)
    logvar = _flat(logvar) if per_sample else ops.reshape(_f32(logvar), (1, -1))
    return 0.5 * ops.sum(_LOG_2PI + logvar + ops.square(x - mean) * ops.exp(-logvar), axis=-1)


def bernoulli_nll(x, logits):
    """`-log Bernoulli(x; sigmoid(logits))` summed over features, for x in [0, 1]."""
    x, logits = _flat(x), _flat(logits)
    # Numerically stable binary cross-entropy with logits.
    per_feature = ops.maximum(logits, 0.0) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_feature, axis=-1)


def gaussian_kl(mu, logvar):
    """`KL(N(mu, exp(logvar)) || N(0, I))` summed over latent dims, shape `(batch,)`."""
    mu, logvar = _f32(mu), _f32(logvar)
    return 0.5 * ops.sum(ops.exp(logvar) + ops.square(mu) - 1.0 - logvar, axis=-1)


def standard_normal_nll(z):
    """`-log N(z; 0, I)` summed over dims, shape `(batch,)`."""
    z = _f32(z)
    return 0.5 * ops.sum(ops.square(z) + _LOG_2PI, axis=-1)
