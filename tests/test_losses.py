import math

import numpy as np
import pytest

from keras_deepad import losses


def test_reconstruction_errors_match_numpy(rng):
    x, x_hat = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 3))
    d = (x - x_hat).reshape(5, -1)
    np.testing.assert_allclose(losses.mean_squared_error(x, x_hat), (d**2).mean(1), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_absolute_error(x, x_hat), abs(d).mean(1), rtol=1e-6)
    np.testing.assert_allclose(losses.max_absolute_error(x, x_hat), abs(d).max(1), rtol=1e-6)


def test_likelihoods_match_numpy(rng):
    x, mean = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    logvar = rng.normal(size=(3,))
    expected = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / np.exp(logvar)).sum(1)
    np.testing.assert_allclose(losses.gaussian_nll(x, mean, logvar), expected, rtol=1e-5)
    p, logits = rng.uniform(size=(4, 3)), rng.normal(size=(4, 3)) * 5
    q = 1 / (1 + np.exp(-logits))
    expected = -(p * np.log(q) + (1 - p) * np.log1p(-q)).sum(1)
    np.testing.assert_allclose(losses.bernoulli_nll(p, logits), expected, rtol=1e-5)
    # Saturated logits stay finite (the naive formula gives inf).
    assert np.isfinite(np.asarray(losses.bernoulli_nll(np.ones((1, 1)), -np.full((1, 1), 200.0))))
    mu, lv = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    np.testing.assert_allclose(
        losses.gaussian_kl(mu, lv), 0.5 * (np.exp(lv) + mu**2 - 1 - lv).sum(1), rtol=1e-5
    )
    assert float(losses.gaussian_kl(np.zeros((1, 2)), np.zeros((1, 2)))[0]) == 0.0


def test_gaussian_nll_with_a_per_pixel_variance_on_images(rng):
    # A per-feature log-variance of an image detector has the sample shape (no batch axis).
    x = rng.normal(size=(5, 4, 3, 1)).astype("float32")
    mean = rng.normal(size=(5, 4, 3, 1)).astype("float32")
    logvar = rng.normal(size=(4, 3, 1)).astype("float32")
    expected = 0.5 * np.sum(
        math.log(2 * math.pi) + logvar + (x - mean) ** 2 * np.exp(-logvar), axis=(1, 2, 3)
    )
    got = np.asarray(losses.gaussian_nll(x, mean, logvar))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # One value per sample and feature (the shape of x) is per sample.
    per_sample = np.broadcast_to(logvar, x.shape)
    np.testing.assert_allclose(
        np.asarray(losses.gaussian_nll(x, mean, per_sample)), expected, rtol=1e-5
    )


def test_adversarial_terms_are_the_halved_cross_entropies_and_accuracy():
    real = np.array([[2.0], [-1.0], [0.5]], np.float32)
    fake = np.array([[-3.0], [1.5], [-0.2]], np.float32)
    loss, accuracy = losses.adversarial_terms(real, fake)
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v.astype(np.float64).ravel()))  # noqa: E731
    expected = -0.5 * (np.mean(np.log(sigmoid(real))) + np.mean(np.log(1.0 - sigmoid(fake))))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(accuracy) == pytest.approx(0.5 * (2 / 3 + 2 / 3))
    nll = np.asarray(losses.generator_nll(fake))
    assert nll.shape == (3,)
    np.testing.assert_allclose(nll, -np.log(sigmoid(fake)), rtol=1e-6)
