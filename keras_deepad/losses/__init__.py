"""Loss and score functions: per-sample terms (one value per sample), the percentile loss
of robust training, the one-class weight penalty and the latent adversary's terms."""

from keras_deepad.losses.adversarial import adversarial_terms, generator_nll
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
from keras_deepad.losses.regularization import weight_penalty
from keras_deepad.losses.robust import percentile_mean, percentile_weights

__all__ = [
    "adversarial_terms",
    "generator_nll",
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
    "percentile_mean",
    "percentile_weights",
    "reconstruction_error",
    "standard_normal_nll",
    "weight_penalty",
]
