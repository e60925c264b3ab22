"""Latent priors of the generative detectors (AAE, WAE).

A prior draws latent samples inside the training graph (`sample`, with a
`keras.random.SeedGenerator`) and, where it has a density, evaluates
`log_prob`. `latent_score(z)` is the anomaly score `-log p(z)` (finite
everywhere, see `Uniform`), and `variance(dim)` the average per-dimension
variance (the scale of the WAE-MMD kernel). Priors are serialisable with
`keras.saving.serialize_keras_object`, so a detector saved to `.keras`
comes back with its prior.
"""

from __future__ import annotations

import abc
import math

import keras
import numpy as np
from keras import ops

from keras_deepad.losses._common import LOG_2PI as _LOG_2PI

__all__ = [
    "MixtureOfGaussians",
    "Prior",
    "SampledPrior",
    "StandardNormal",
    "Uniform",
    "get_prior",
]


class Prior(abc.ABC):
    """Base class of latent priors.

    Subclasses define `sample(n, dim, seed)` returning a float32 tensor of
    shape `(n, dim)`, and `log_prob(z)` returning `(batch,)` where a density
    is defined. Configs must be JSON-serialisable.
    """

    has_log_prob = True

    @abc.abstractmethod
    def sample(self, n, dim, seed=None):
        """`n` draws of dimension `dim`, a float32 tensor of shape `(n, dim)`."""

    def log_prob(self, z):
        raise ValueError(f"{type(self).__name__} has no log_prob (no density).")

    def latent_score(self, z):
        """`-log p(z)` per sample, the latent anomaly score (higher = less likely)."""
        return -self.log_prob(z)

    @abc.abstractmethod
    def variance(self, dim):
        """Average per-dimension variance of the prior in `dim` dimensions."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self.get_config())))


@keras.saving.register_keras_serializable(package="keras_deepad")
class StandardNormal(Prior):
    """Isotropic Gaussian `N(0, scale^2 I)` (the default prior).

    Args:
        scale: standard deviation of every dimension.

    Example:
        >>> prior = StandardNormal()
        >>> z = prior.sample(128, 8, seed=keras.random.SeedGenerator(0))
    """

    def __init__(self, scale=1.0):
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0. Received: scale={scale}")
        self.scale = float(scale)

    def sample(self, n, dim, seed=None):
        return self.scale * keras.random.normal((n, dim), seed=seed)

    def log_prob(self, z):
        dim = ops.cast(ops.shape(z)[-1], z.dtype)
        sq = ops.sum(ops.square(z / self.scale), axis=-1)
        return -0.5 * sq - dim * (0.5 * _LOG_2PI + math.log(self.scale))

    def variance(self, dim):
        return self.scale**2

    def get_config(self):
        return {"scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_deepad")
class MixtureOfGaussians(Prior):
    """Equally weighted mixture of isotropic Gaussians.

    Without explicit `means`, the `n_components` means lie evenly on a circle
    of radius `radius` in the first two latent dimensions (zero elsewhere),
    the layout of Makhzani et al.'s mixture prior; in one dimension they are
    evenly spaced on `[-radius, radius]`.

    Args:
        n_components: number of components.
        radius: distance of the default means from the origin.
        scale: standard deviation of every component.
        means: optional list of means, shape `(n_components, latent_dim)`.

    Example:
        >>> prior = MixtureOfGaussians(n_components=5, radius=3.0, scale=0.5)
        >>> model = AAE(latent_dim=2, prior=prior)

    Reference:
        Makhzani et al., "Adversarial Autoencoders", ICLR 2016 workshop.
    """

    def __init__(self, n_components=10, radius=4.0, scale=0.5, means=None):
        if means is not None:
            means = np.asarray(means, dtype="float32")
            if means.ndim != 2 or len(means) < 1:
                raise ValueError(
                    "means must have shape (n_components, latent_dim). "
                    f"Received: shape {means.shape}"
                )
            n_components = len(means)
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1. Received: n_components={n_components}")
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0. Received: scale={scale}")
        if float(radius) < 0:
            raise ValueError(f"radius must be >= 0. Received: radius={radius}")
        self.n_components = int(n_components)
        self.radius = float(radius)
        self.scale = float(scale)
        self.means = None if means is None else means.tolist()

    def component_means(self, dim):
        """The `(n_components, dim)` array of means."""
        if self.means is not None:
            means = np.asarray(self.means, dtype="float32")
            if means.shape[1] != dim:
                raise ValueError(
                    f"the prior's means have {means.shape[1]} dimensions but the latent space "
                    f"has {dim}."
                )
            return means
        k = self.n_components
        means = np.zeros((k, dim), dtype="float32")
        if dim == 1:
            means[:, 0] = np.linspace(-self.radius, self.radius, k) if k > 1 else 0.0
        else:
            angles = 2.0 * np.pi * np.arange(k) / k
            means[:, 0] = self.radius * np.cos(angles)
            means[:, 1] = self.radius * np.sin(angles)
        return means

    def sample(self, n, dim, seed=None):
        means = ops.convert_to_tensor(self.component_means(dim))
        component = keras.random.randint((n,), 0, self.n_components, seed=seed)
        noise = self.scale * keras.random.normal((n, dim), seed=seed)
        return ops.take(means, component, axis=0) + noise

    def log_prob(self, z):
        dim = int(z.shape[-1])
        means = ops.convert_to_tensor(self.component_means(dim), dtype=z.dtype)
        sq = ops.sum(ops.square((z[:, None, :] - means[None]) / self.scale), axis=-1)
        log_norm = dim * (0.5 * _LOG_2PI + math.log(self.scale)) + math.log(self.n_components)
        return ops.logsumexp(-0.5 * sq, axis=-1) - log_norm

    def variance(self, dim):
        means = self.component_means(dim)
        return float(self.scale**2 + means.var(axis=0).mean())

    def get_config(self):
        return {
            "n_components": self.n_components,
            "radius": self.radius,
            "scale": self.scale,
            "means": self.means,
        }


@keras.saving.register_keras_serializable(package="keras_deepad")
class Uniform(Prior):
    """Uniform prior on the box `[low, high]^dim`.

    `log_prob` is `-dim * log(high - low)` inside the box and `-inf`
    outside. `latent_score` keeps anomaly scores finite: inside the box it
    is `-log p(z)`, outside it adds the squared distance to the box, so codes
    rank by how far out they fall.

    Args:
        low, high: bounds of every dimension.

    Example:
        >>> model = WAE(latent_dim=4, prior=Uniform(-1.0, 1.0))
    """

    def __init__(self, low=-1.0, high=1.0):
        if not float(low) < float(high):
            raise ValueError(f"low must be < high. Received: low={low}, high={high}")
        self.low = float(low)
        self.high = float(high)

    def sample(self, n, dim, seed=None):
        return keras.random.uniform((n, dim), minval=self.low, maxval=self.high, seed=seed)

    def _log_volume(self, z):
        dim = ops.cast(ops.shape(z)[-1], z.dtype)
        return dim * math.log(self.high - self.low)

    def log_prob(self, z):
        inside = ops.all((z >= self.low) & (z <= self.high), axis=-1)
        return ops.where(inside, -self._log_volume(z), float("-inf"))

    def latent_score(self, z):
        outside = ops.maximum(self.low - z, 0.0) + ops.maximum(z - self.high, 0.0)
        return self._log_volume(z) + ops.sum(ops.square(outside), axis=-1)

    def variance(self, dim):
        return (self.high - self.low) ** 2 / 12.0

    def get_config(self):
        return {"low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="keras_deepad")
class SampledPrior(Prior):
    """A prior given by a user-supplied sampler (and, optionally, a log-density).

    The sampler runs inside the training graph: write it with `keras.ops` /
    `keras.random` as `sampler(n, dim, seed) -> (n, dim)` tensor, with
    `seed` a `keras.random.SeedGenerator`. To save a detector that uses
    it, register the functions with
    `keras.saving.register_keras_serializable`.

    Args:
        sampler: callable `(n, dim, seed) -> (n, dim)`.
        log_prob: optional callable `z -> (batch,)`; without it the
            `"latent"` and `"jacodeco"` scores are unavailable.
        variance: average per-dimension variance of the samples (sets the
            WAE-MMD kernel scale).

    Example:
        >>> @keras.saving.register_keras_serializable(package="my_priors")
        ... def ring(n, dim, seed=None):
        ...     angle = keras.random.uniform((n, 1), maxval=6.2832, seed=seed)
        ...     return ops.concatenate([ops.cos(angle), ops.sin(angle)], axis=-1)
        >>> model = AAE(latent_dim=2, prior=SampledPrior(ring, variance=0.5))
    """

    def __init__(self, sampler, log_prob=None, variance=1.0):
        sampler = _maybe_deserialize(sampler)
        log_prob = _maybe_deserialize(log_prob)
        if not callable(sampler):
            raise ValueError(f"sampler must be callable. Received: sampler={sampler!r}")
        if log_prob is not None and not callable(log_prob):
            raise ValueError(f"log_prob must be callable or None. Received: {log_prob!r}")
        if not float(variance) > 0:
            raise ValueError(f"variance must be > 0. Received: variance={variance}")
        self.sampler = sampler
        self.log_prob_fn = log_prob
        self.variance_value = float(variance)

    @property
    def has_log_prob(self):
        return self.log_prob_fn is not None

    def sample(self, n, dim, seed=None):
        return ops.cast(self.sampler(n, dim, seed), "float32")

    def log_prob(self, z):
        if self.log_prob_fn is None:
            raise ValueError(
                "this SampledPrior has no log_prob: pass log_prob=... to use the 'latent' "
                "and 'jacodeco' scores."
            )
        return self.log_prob_fn(z)

    def variance(self, dim):
        return self.variance_value

    def get_config(self):
        return {
            "sampler": keras.saving.serialize_keras_object(self.sampler),
            "log_prob": None
            if self.log_prob_fn is None
            else keras.saving.serialize_keras_object(self.log_prob_fn),
            "variance": self.variance_value,
        }


def _maybe_deserialize(obj):
    if isinstance(obj, dict):
        return keras.saving.deserialize_keras_object(obj)
    return obj


_ALIASES = {
    "normal": StandardNormal,
    "gaussian": StandardNormal,
    "standard_normal": StandardNormal,
    "mog": MixtureOfGaussians,
    "mixture": MixtureOfGaussians,
    "uniform": Uniform,
}


def get_prior(identifier):
    """A `Prior` from a name, a serialised config, a `Prior` or a sampler.

    Names: `"normal"` (`StandardNormal()`), `"mog"` (`MixtureOfGaussians()`),
    `"uniform"` (`Uniform(-1, 1)`). A bare callable becomes a
    `SampledPrior(callable)`.
    """
    if isinstance(identifier, Prior):
        return identifier
    if isinstance(identifier, str):
        try:
            return _ALIASES[identifier]()
        except KeyError:
            raise ValueError(
                f"prior must be one of {sorted(_ALIASES)}, a Prior or a sampler. "
                f"Received: prior={identifier!r}"
            ) from None
    if isinstance(identifier, dict):
        obj = keras.saving.deserialize_keras_object(identifier)
        if isinstance(obj, Prior):
            return obj
    elif callable(identifier):
        return SampledPrior(identifier)
    raise ValueError(
        f"prior must be a name, a Prior or a sampler callable. Received: prior={identifier!r}"
    )
