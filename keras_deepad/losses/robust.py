"""The percentile loss of robust autoencoder training: per-sample weights and their mean."""

from keras import ops


def percentile_weights(per_sample, q):
    """0/1 weights of the percentile loss: 0 where a loss is at or above the batch q-quantile.

    The quantile interpolates linearly between order statistics (as
    `numpy.quantile`), so with `n` distinct losses the `ceil(n * (1 - q))`
    largest are usually cut (exactly those at or above the quantile). The
    weights are computed under `stop_gradient`: they select samples, they are
    not differentiated.

    Args:
        per_sample: per-sample losses, shape `(batch,)`.
        q: the quantile, in (0, 1).

    Returns:
        A tensor of the same shape and dtype with 1 for kept samples.
    """
    values = ops.stop_gradient(per_sample)
    cut = ops.quantile(values, q)
    return ops.cast(ops.less(values, cut), values.dtype)


def percentile_mean(per_sample, q, sample_weight=None):
    """Mean per-sample loss over the samples below the batch's q-quantile.

    When no sample lies below the quantile (all losses tied, e.g. a batch of
    one), every sample is kept: nothing stands out to be cut. With
    `sample_weight`, the kept samples' losses are weighted and the sum is
    divided by the number kept (Keras' `"sum_over_batch_size"` over the kept
    samples); the quantile itself is of the unweighted losses.
    """
    weights = percentile_weights(per_sample, q)
    kept = ops.sum(weights)
    weights = ops.where(kept > 0, weights, ops.ones_like(weights))
    count = ops.sum(weights)
    if sample_weight is not None:
        weights = weights * ops.cast(ops.reshape(sample_weight, (-1,)), weights.dtype)
    return ops.sum(weights * per_sample) / count
