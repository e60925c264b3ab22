"""Generative anomaly scores against direct numpy computations."""

import math

import keras
import numpy as np
import pytest
from scipy import stats

from keras_deepad.losses import gaussian_nll, standard_normal_nll
from keras_deepad.models import AAE, VAE, WAE
from keras_deepad.priors import SampledPrior
from keras_deepad.scores import (
    decoder_log_volume,
    discriminator_score,
    jacodeco,
    latent_score,
    monte_carlo,
    negative_elbo,
)


def tiny_decoder(latent=2, features=4, seed=0):
    rng = np.random.default_rng(seed)
    decoder = keras.Sequential(
        [
            keras.Input((latent,)),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(features),
        ]
    )
    decoder.set_weights([rng.normal(size=w.shape).astype("float32") for w in decoder.weights])
    return decoder


def numpy_decoder_and_jacobian(decoder, z):
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in decoder.get_weights())
    h = np.tanh(z @ w1 + b1)
    out = h @ w2 + b2
    # d out / d z = W2^T diag(1 - h^2) W1^T, one (features, latent) matrix per sample.
    jac = np.einsum("fk,nk,lk->nfl", w2.T, 1 - h**2, w1)
    return out, jac


def numpy_gaussian_nll(x, mean, logvar):
    return -stats.norm(mean, np.exp(0.5 * logvar)).logpdf(x).sum(axis=1)


def test_decoder_log_volume_and_jacodeco_equal_numpy(rng):
    decoder = tiny_decoder()
    z = rng.normal(size=(6, 2)).astype("float32")
    x = rng.normal(size=(6, 4)).astype("float32")
    out, jac = numpy_decoder_and_jacobian(decoder, z.astype(np.float64))
    log_volume = np.log(np.linalg.svd(jac, compute_uv=False)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(decoder_log_volume(decoder, z)), log_volume, rtol=1e-4)
    # 0.5 log det(J^T J) is the same quantity.
    gram = np.einsum("nfl,nfm->nlm", jac, jac)
    np.testing.assert_allclose(log_volume, 0.5 * np.linalg.slogdet(gram)[1], rtol=1e-8)

    logvar = np.log(np.array([0.5, 1.0, 2.0, 0.1], "float32"))
    got = jacodeco(
        x,
        z,
        decoder,
        lambda xs, codes: gaussian_nll(xs, decoder(codes), logvar),
        standard_normal_nll,
    )
    latent = -stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z)
    expected = numpy_gaussian_nll(x, out, logvar) + latent + log_volume
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)


def test_reconstruction_probability_with_one_draw_and_zero_variance_is_the_gaussian_nll(rng):
    decoder = tiny_decoder()
    x = rng.normal(size=(8, 4)).astype("float32")
    mu = rng.normal(size=(8, 2)).astype("float32")
    logvar_x = np.full(4, math.log(0.3), "float32")

    def nll(xs, z):
        return gaussian_nll(xs, decoder(z), logvar_x)

    zero_variance = np.full_like(mu, -np.inf)
    got = np.asarray(monte_carlo(x, mu, zero_variance, nll, n_samples=1, seed=3))
    out, _ = numpy_decoder_and_jacobian(decoder, mu.astype(np.float64))
    np.testing.assert_allclose(got, numpy_gaussian_nll(x, out, logvar_x), rtol=1e-5)


def test_monte_carlo_uses_common_draws(rng):
    decoder = tiny_decoder()
    x = rng.normal(size=(10, 4)).astype("float32")
    mu = rng.normal(size=(10, 2)).astype("float32")
    logvar = np.zeros_like(mu)

    def err(xs, z):
        return keras.ops.mean(keras.ops.square(xs - decoder(z)), axis=-1)

    full = np.asarray(monte_carlo(x, mu, logvar, err, n_samples=7, seed=1))
    part = np.asarray(monte_carlo(x[:3], mu[:3], logvar[:3], err, n_samples=7, seed=1))
    np.testing.assert_allclose(part, full[:3], rtol=1e-5)
    eps = np.asarray(keras.random.normal((7, 1, 2), seed=1))
    manual = np.mean(
        [
            ((x - numpy_decoder_and_jacobian(decoder, mu + e)[0]) ** 2).mean(axis=1)
            for e in eps[:, 0]
        ],
        axis=0,
    )
    np.testing.assert_allclose(full, manual, rtol=1e-4)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo(x, mu, logvar, err, n_samples=0)


def test_discriminator_score_decreases_with_d():
    logits = np.array([-4.0, -1.0, 0.0, 1.0, 4.0], "float32")
    d = 1 / (1 + np.exp(-logits))
    log_score = np.asarray(discriminator_score(logits))
    np.testing.assert_allclose(log_score, -np.log(d), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(discriminator_score(logits[:, None], "complement")), 1 - d
    )
    # A high D(z) ("looks like the prior") means normal: the score falls as D rises.
    assert np.all(np.diff(log_score) < 0)
    with pytest.raises(ValueError, match="kind"):
        discriminator_score(logits, "inverse")


def test_negative_elbo_and_latent_score(rng):
    mu = rng.normal(size=(5, 3)).astype("float32")
    logvar = rng.normal(size=(5, 3)).astype("float32")
    nll = rng.uniform(size=5).astype("float32")
    kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(axis=1)
    np.testing.assert_allclose(np.asarray(negative_elbo(nll, mu, logvar)), nll + kl, rtol=1e-5)
    from keras_deepad.priors import StandardNormal

    expected = -stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(mu)
    np.testing.assert_allclose(np.asarray(latent_score(mu, StandardNormal())), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_aae(blobs):
    """An AAE with a known decoder (user networks), trained one epoch."""
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(2)])
    model = AAE(latent_dim=2, encoder=encoder, decoder=tiny_decoder(2, 16), seed=0)
    model.fit(blobs.x_train[:256], epochs=1, batch_size=64, verbose=0)
    return model


def test_model_jacodeco_matches_numpy(tiny_aae, blobs):
    model, x = tiny_aae, blobs.x_test[:12]
    xs = np.asarray(model.scaler(x), np.float64)
    z = np.asarray(model.encode(x), np.float64)
    out, jac = numpy_decoder_and_jacobian(model.decoder, z)
    steps = float(model.error_steps.numpy())
    assert steps == 4.0  # one running-mean update per training step
    variance = np.asarray(model.error_moment) / (1 - 0.99**steps)
    expected = (
        numpy_gaussian_nll(xs, out, np.log(variance))
        - stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z)
        + np.log(np.linalg.svd(jac, compute_uv=False)).sum(axis=1)
    )
    np.testing.assert_allclose(model.score(x, method="jacodeco"), expected, rtol=2e-4)


def test_model_discriminator_score_is_minus_log_d(tiny_aae, blobs):
    x = blobs.x_test[:50]
    d = tiny_aae.discriminate(x)
    assert ((d > 0) & (d < 1)).all()
    np.testing.assert_allclose(tiny_aae.score(x, method="discriminator"), -np.log(d), rtol=1e-4)
    combined = tiny_aae.score(x, method="reconstruction") + 0.1 * -np.log(d)
    np.testing.assert_allclose(tiny_aae.score(x, method="combined"), combined, rtol=1e-4)


def test_sampled_reconstruction_of_a_stochastic_encoder(blobs):
    model = WAE(hidden_units=(8,), latent_dim=2, stochastic_encoder=True, mc_samples=5, seed=0)
    model.fit(blobs.x_train[:128], epochs=1, verbose=0)
    x = blobs.x_test[:20]
    xs = np.asarray(model.scaler(x))
    mu, logvar = (np.asarray(t) for t in model.posterior(xs))
    eps = np.asarray(keras.random.normal((5, 1, 2), seed=model.score_seed))
    manual = np.mean(
        [
            ((xs - np.asarray(model.decoder(mu + np.exp(0.5 * logvar) * e))) ** 2).mean(1)
            for e in eps
        ],
        axis=0,
    )
    sampled = model.score(x, method="reconstruction_sampled")
    np.testing.assert_allclose(sampled, manual, rtol=1e-4)
    assert not np.allclose(sampled, model.score(x, method="reconstruction"))
    # A deterministic encoder's posterior is a point mass: both scores agree.
    det = WAE(hidden_units=(8,), latent_dim=2, seed=0)
    det.fit(blobs.x_train[:128], epochs=1, verbose=0)
    np.testing.assert_array_equal(
        det.score(x, method="reconstruction_sampled"), det.score(x, method="reconstruction")
    )


def test_score_methods_follow_the_model():
    assert WAE().score_methods == (
        "hybrid",
        "hybrid_knn",
        "reconstruction",
        "reconstruction_sampled",
        "latent",
        "jacodeco",
    )
    assert "discriminator" in WAE(penalty="gan").score_methods
    assert "combined" in AAE().score_methods
    no_density = AAE(prior=SampledPrior(lambda n, dim, seed=None: keras.random.normal((n, dim))))
    assert "latent" not in no_density.score_methods
    assert "jacodeco" not in no_density.score_methods
    with pytest.raises(ValueError, match="score_method must be one of"):
        WAE(score_method="discriminator")


def test_vae_jacodeco_matches_numpy(blobs):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])  # mu and logvar
    decoder = tiny_decoder(2, 16, seed=1)
    model = VAE(latent_dim=2, encoder=encoder, decoder=decoder, seed=0)
    model.fit(blobs.x_train[:256], epochs=1, batch_size=64, verbose=0)
    x = blobs.x_test[:12]
    xs = np.asarray(model.scaler(x), np.float64)
    mu = np.asarray(model.encode(x), np.float64)
    out, jac = numpy_decoder_and_jacobian(model.decoder, mu)
    logvar = np.clip(np.asarray(model.decoder_logvar, np.float64), -10, 10)
    expected = (
        numpy_gaussian_nll(xs, out, logvar)
        - stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(mu)
        + np.log(np.linalg.svd(jac, compute_uv=False)).sum(axis=1)
    )
    np.testing.assert_allclose(model.score(x, method="jacodeco"), expected, rtol=2e-4)


def test_jacodeco_of_a_conv_vae_on_a_full_batch_of_images():
    """A convolutional decoder of 28x28 images, 256 rows in one batch: the Jacobian is
    built with one forward-mode product per latent dimension (reverse mode vectorised
    over the 784 outputs aborted the process here), and equals reverse mode where
    reverse mode is affordable."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((256, 28, 28, 1)).astype("float32")
    model = VAE(architecture="conv", latent_dim=4, likelihood="bernoulli", seed=0)
    model.compile()
    model.fit(x, epochs=1, batch_size=64, verbose=0)

    full = model.score(x, method="jacodeco", batch_size=256)
    assert np.isfinite(full).all()
    np.testing.assert_allclose(full, model.score(x, method="jacodeco", batch_size=32), rtol=1e-5)

    z = tf.constant(model.encode(x[:3]))

    def decode(codes):
        return model.decoder_mean(model.decoder(codes))

    with tf.GradientTape() as tape:
        tape.watch(z)
        out = tf.reshape(decode(z), (3, -1))
    singular = np.linalg.svd(np.asarray(tape.batch_jacobian(out, z), np.float64), compute_uv=False)
    np.testing.assert_allclose(
        np.asarray(decoder_log_volume(decode, z)), np.log(singular).sum(axis=1), rtol=1e-4
    )
