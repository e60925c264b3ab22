"""Latent priors: sampling statistics, densities, finite scores, serialisation."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

from keras_deepad.priors import (
    MixtureOfGaussians,
    SampledPrior,
    StandardNormal,
    Uniform,
    get_prior,
)


@keras.saving.register_keras_serializable(package="keras_deepad_tests")
def ring_sampler(n, dim, seed=None):
    angle = keras.random.uniform((n, 1), maxval=2.0 * np.pi, seed=seed)
    return ops.concatenate([ops.cos(angle), ops.sin(angle)], axis=-1)


def _seed():
    return keras.random.SeedGenerator(0)


def test_standard_normal(rng):
    prior = StandardNormal(scale=2.0)
    z = np.asarray(prior.sample(20000, 3, seed=_seed()))
    assert z.shape == (20000, 3)
    assert np.abs(z.mean(0)).max() < 0.05 and np.abs(z.std(0) - 2.0).max() < 0.05
    points = rng.normal(size=(5, 3)).astype("float32")
    expected = stats.multivariate_normal(np.zeros(3), 4.0 * np.eye(3)).logpdf(points)
    np.testing.assert_allclose(np.asarray(prior.log_prob(points)), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(prior.latent_score(points)), -expected, rtol=1e-5)
    assert prior.variance(3) == 4.0


def test_mixture_of_gaussians(rng):
    prior = MixtureOfGaussians(n_components=4, radius=3.0, scale=0.5)
    means = prior.component_means(2)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 3.0, rtol=1e-6)
    z = np.asarray(prior.sample(8000, 2, seed=_seed()))
    nearest = np.argmin(((z[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert np.bincount(nearest, minlength=4).min() > 1700  # every component is used
    points = rng.normal(size=(6, 2)).astype("float32") * 3
    expected = np.log(
        np.mean([stats.multivariate_normal(m, 0.25 * np.eye(2)).pdf(points) for m in means], axis=0)
    )
    np.testing.assert_allclose(np.asarray(prior.log_prob(points)), expected, rtol=1e-4)
    # Explicit means, and the variance used by the MMD kernel.
    explicit = MixtureOfGaussians(means=[[0.0, 1.0], [0.0, -1.0]], scale=0.1)
    assert explicit.n_components == 2
    assert explicit.variance(2) == pytest.approx(0.01 + 0.5)
    with pytest.raises(ValueError, match="dimensions"):
        explicit.component_means(3)
    one_d = MixtureOfGaussians(n_components=3, radius=2.0).component_means(1)
    np.testing.assert_allclose(one_d[:, 0], [-2.0, 0.0, 2.0])


def test_uniform_scores_are_finite_outside_the_box():
    prior = Uniform(-1.0, 1.0)
    z = np.asarray(prior.sample(5000, 2, seed=_seed()))
    assert z.min() >= -1.0 and z.max() <= 1.0
    points = np.array([[0.0, 0.5], [2.0, 0.0], [3.0, -3.0]], "float32")
    log_p = np.asarray(prior.log_prob(points))
    assert log_p[0] == pytest.approx(-2 * np.log(2.0)) and np.isinf(log_p[1:]).all()
    scores = np.asarray(prior.latent_score(points))
    assert np.isfinite(scores).all()
    assert scores[0] == pytest.approx(2 * np.log(2.0))
    assert scores[0] < scores[1] < scores[2]
    assert prior.variance(2) == pytest.approx(4.0 / 12.0)


def test_sampled_prior_and_serialisation():
    prior = SampledPrior(ring_sampler, variance=0.5)
    z = np.asarray(prior.sample(100, 2, seed=_seed()))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    assert not prior.has_log_prob
    with pytest.raises(ValueError, match="log_prob"):
        prior.log_prob(z)
    for original in (
        prior,
        StandardNormal(0.5),
        MixtureOfGaussians(5, radius=2.0),
        MixtureOfGaussians(means=[[1.0], [2.0]]),
        Uniform(0.0, 3.0),
    ):
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(original)
        )
        assert type(restored) is type(original)
        assert restored.get_config() == original.get_config()
    restored = get_prior(keras.saving.serialize_keras_object(prior))
    assert restored.sampler is ring_sampler


def test_get_prior():
    assert get_prior("normal") == StandardNormal()
    assert get_prior("mog") == MixtureOfGaussians()
    assert get_prior("uniform") == Uniform()
    assert isinstance(get_prior(ring_sampler), SampledPrior)
    with pytest.raises(ValueError, match="prior must be"):
        get_prior("laplace")
    with pytest.raises(ValueError, match="prior must be"):
        get_prior(3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StandardNormal(scale=0), "scale"),
        (lambda: MixtureOfGaussians(n_components=0), "n_components"),
        (lambda: MixtureOfGaussians(scale=-1), "scale"),
        (lambda: MixtureOfGaussians(means=[1.0, 2.0]), "means"),
        (lambda: Uniform(1.0, 1.0), "low"),
        (lambda: SampledPrior("not callable"), "sampler"),
        (lambda: SampledPrior(ring_sampler, variance=0), "variance"),
    ],
)
def test_rejects_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
