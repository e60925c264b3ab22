"""Per-sample loss and score functions: each returns one value per sample."""

from keras_deepad.losses.mmd import MMD_SCALES, mmd, mmd_to_prior
from keras_deepad.losses.probabilistic import (
    bernoulli_nll,
    gaussian_kl,
    gaussian_nll,
    standard_normal_nll,
)
from keras_deepad.losses.reconstruction import (
    RECONSTRUCTION_ERRORS,
    feature_errors,
    max_absolute_error,
    mean_absolute_error,
    mean_squared_error,
    reconstruction_error,
)

__all__ = [
    "MMD_SCALES",
    "RECONSTRUCTION_ERRORS",
    "bernoulli_nll",
    "feature_errors",
    "gaussian_kl",
    "gaussian_nll",
    "max_absolute_error",
    "mean_absolute_error",
    "mean_squared_error",
    "mmd",
    "mmd_to_prior",
    "reconstruction_error",
    "standard_normal_nll",
]
