"""Maximum mean discrepancy between two sample sets (the WAE-MMD penalty).

Unlike the per-sample losses of this package, the MMD is a statistic of two
sets: `mmd(x, y)` returns one scalar.
"""

from keras import ops

#: Multiples of `C_base = 2 * dim * sigma^2` summed over (Tolstikhin et al.'s reference code).
MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
KERNELS = ("imq", "rbf")


def squared_distances(x, y):
    """Pairwise squared Euclidean distances, shape `(len(x), len(y))`."""
    xx = ops.sum(ops.square(x), axis=-1)
    yy = ops.sum(ops.square(y), axis=-1)
    d2 = xx[:, None] + yy[None, :] - 2.0 * ops.matmul(x, ops.transpose(y))
    return ops.maximum(d2, 0.0)


def imq_kernel(d2, c):
    """Inverse multiquadratic kernel `C / (C + ||x - y||^2)` of squared distances."""
    return c / (c + d2)


def rbf_kernel(d2, c):
    """Gaussian kernel `exp(-||x - y||^2 / C)` of squared distances."""
    return ops.exp(-d2 / c)


def _kernel_sum(d2, kernel, bases):
    fn = imq_kernel if kernel == "imq" else rbf_kernel
    return sum(fn(d2, c) for c in bases)


def _off_diagonal_sum(k):
    return ops.sum(k) - ops.sum(ops.diagonal(k))


def mmd(x, y, kernel="imq", variance=1.0, scales=MMD_SCALES):
    """Unbiased estimate of MMD^2 between samples `x` (n, d) and `y` (m, d).

    Within-set kernel sums exclude the diagonal and are divided by
    `n^2 - n` (`m^2 - m`); the cross term is `2 / (n m) * sum k(x_i, y_j)`.
    The kernel is summed over the bandwidths `C = 2 * d * variance * s`
    for `s` in `scales`. The estimate is unbiased, so it can be slightly
    negative when both sets come from one distribution.

    Args:
        x, y: float tensors of shape `(n, d)` and `(m, d)`; 0 unless `n, m >= 2`.
        kernel: `"imq"` (inverse multiquadratic `C / (C + ||x-y||^2)`,
            the WAE default) or `"rbf"` (`exp(-||x-y||^2 / C)`).
        variance: per-dimension variance of the prior (`sigma_z^2`).
        scales: multiples of `C_base = 2 * d * variance` summed over.

    Returns:
        A scalar tensor.

    Example:
        >>> z = encoder(x)
        >>> penalty = mmd(z, keras.random.normal(ops.shape(z)))  # MMD^2 to N(0, I)

    Reference:
        Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018;
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}. Received: kernel={kernel!r}")
    if not float(variance) > 0:
        raise ValueError(f"variance must be > 0. Received: variance={variance}")
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers. Received: scales={scales}")
    x = ops.convert_to_tensor(x, "float32")
    y = ops.convert_to_tensor(y, "float32")
    dim = int(x.shape[-1])
    bases = [2.0 * dim * float(variance) * s for s in scales]
    n = ops.cast(ops.shape(x)[0], "float32")
    m = ops.cast(ops.shape(y)[0], "float32")
    k_xx = _kernel_sum(squared_distances(x, x), kernel, bases)
    k_yy = _kernel_sum(squared_distances(y, y), kernel, bases)
    k_xy = _kernel_sum(squared_distances(x, y), kernel, bases)
    # A set of one sample has no within-set pair: the estimate is undefined, and 0 (with a
    # zero gradient) instead of 0/0 = NaN, e.g. for the last partial batch of an epoch.
    valid = ops.cast(ops.logical_and(n >= 2, m >= 2), "float32")
    xx = _off_diagonal_sum(k_xx) / ops.maximum(n * n - n, 1.0)
    yy = _off_diagonal_sum(k_yy) / ops.maximum(m * m - m, 1.0)
    return valid * (xx + yy - 2.0 * ops.sum(k_xy) / ops.maximum(n * m, 1.0))


def mmd_to_prior(z, prior, seed=None, kernel="imq", scales=MMD_SCALES):
    """`mmd(z, samples)` with as many prior samples as codes in `z`."""
    dim = int(z.shape[-1])
    samples = prior.sample(ops.shape(z)[0], dim, seed=seed)
    return mmd(z, samples, kernel=kernel, variance=prior.variance(dim), scales=scales)


__all__ = ["KERNELS", "MMD_SCALES", "imq_kernel", "mmd", "mmd_to_prior", "rbf_kernel"]
