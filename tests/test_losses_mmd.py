"""The unbiased MMD estimator of the WAE-MMD penalty."""

import numpy as np
import pytest

from keras_deepad.losses import MMD_SCALES, mmd, mmd_to_prior
from keras_deepad.priors import StandardNormal


def numpy_mmd(x, y, kernel="imq", variance=1.0, scales=MMD_SCALES):
    """Direct double-loop computation of the unbiased MMD^2."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, m, dim = len(x), len(y), x.shape[1]

    def k(a, b):
        d2 = np.sum((a - b) ** 2)
        total = 0.0
        for s in scales:
            c = 2.0 * dim * variance * s
            total += c / (c + d2) if kernel == "imq" else np.exp(-d2 / c)
        return total

    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * n - n)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * m - m)
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2.0 * xy


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_equals_direct_numpy_computation(rng, kernel):
    x = rng.normal(size=(6, 3)).astype("float32")
    y = (rng.normal(size=(7, 3)) * 1.5 + 0.3).astype("float32")
    for variance in (1.0, 0.25):
        expected = numpy_mmd(x, y, kernel, variance)
        got = float(mmd(x, y, kernel=kernel, variance=variance))
        assert got == pytest.approx(expected, abs=1e-5)
    custom = (0.5, 3.0)
    assert float(mmd(x, y, kernel=kernel, scales=custom)) == pytest.approx(
        numpy_mmd(x, y, kernel, scales=custom), abs=1e-5
    )


def test_symmetric(rng):
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.normal(loc=0.5, size=(30, 4)).astype("float32")
    assert float(mmd(x, y)) == pytest.approx(float(mmd(y, x)), abs=1e-6)


def test_zero_for_one_distribution_up_to_estimator_noise(rng):
    x = rng.normal(size=(1000, 8)).astype("float32")
    y = rng.normal(size=(1000, 8)).astype("float32")
    assert abs(float(mmd(x, y))) < 5e-3
    # The same set twice: the unbiased estimate is -2/n times the (bounded) mean kernel gap.
    assert abs(float(mmd(x, x))) < 2.0 * len(MMD_SCALES) / len(x)


def test_grows_with_the_shift(rng):
    x = rng.normal(size=(500, 4)).astype("float32")
    y = rng.normal(size=(500, 4)).astype("float32")
    values = [float(mmd(x, y + shift)) for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values[0] < 0.01
    assert all(b > a + 0.01 for a, b in zip(values, values[1:], strict=False))
    # A scale mismatch is detected too.
    assert float(mmd(x, 0.3 * y)) > 0.3


def test_mmd_to_prior_uses_prior_samples(rng):
    prior = StandardNormal()
    z = rng.normal(size=(512, 3)).astype("float32")
    assert abs(float(mmd_to_prior(z, prior, seed=1))) < 0.02
    assert float(mmd_to_prior(z + 3.0, prior, seed=1)) > 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel": "laplace"}, "kernel"),
        ({"variance": 0.0}, "variance"),
        ({"scales": ()}, "scales"),
        ({"scales": (1.0, -1.0)}, "scales"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match=message):
        mmd(x, x, **kwargs)
