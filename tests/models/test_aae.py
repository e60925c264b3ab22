"""Adversarial autoencoder: prior matching, three optimizers, saving, scores."""

import json

import keras
import numpy as np
import pytest

from keras_deepad.losses import mmd
from keras_deepad.models import AAE
from keras_deepad.priors import MixtureOfGaussians, SampledPrior, get_prior
from tests.contract import auroc, run_detector_test
from tests.models.test_hybrid import numpy_hybrid
from tests.models.test_hybrid_knn import numpy_hybrid_knn

#: Training steps per compiled call in the longer fits (3x faster on 2 CPU cores).
FAST = 16


def gaussian_manifold(n=1024, intrinsic=4, features=16, seed=0):
    """Data on a linear `intrinsic`-dimensional Gaussian manifold plus small noise."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(intrinsic, features))
    x = rng.normal(size=(n, intrinsic)) @ mixing + 0.05 * rng.normal(size=(n, features))
    return x.astype("float32")


def minmax(x, reference):
    """`x` min-max scaled with the statistics of `reference` (the model's `"minmax"`)."""
    low, high = reference.min(axis=0), reference.max(axis=0)
    return ((x - low) / (high - low)).astype("float32")


def dense_decoder_singular_values(decoder, z):
    """Singular values of the decoder Jacobian at each code, by hand for a Dense ReLU stack.

    The Jacobian of `relu(... relu(z W1 + b1) ...) Wk + bk` is the product of the
    kernels with the ReLU masks in between; its singular values come from numpy. Dropout
    layers are the identity at inference.
    """
    skip = (keras.layers.InputLayer, keras.layers.Dropout)
    layers = [layer for layer in decoder.layers if not isinstance(layer, skip)]
    assert all(isinstance(layer, keras.layers.Dense) for layer in layers), layers
    h = z.astype(np.float64)
    jacobian = np.broadcast_to(np.eye(z.shape[1]), (len(z), z.shape[1], z.shape[1]))
    for layer in layers:
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.weights)
        h = h @ kernel + bias
        jacobian = jacobian @ kernel
        if layer.activation is keras.activations.relu:
            jacobian = jacobian * (h > 0)[:, None, :]
            h = np.maximum(h, 0.0)
        else:
            assert layer.activation is keras.activations.linear, layer.activation
    return np.linalg.svd(jacobian, compute_uv=False)


def log_volume_of_dense_decoder(decoder, z):
    """`sum_i log s_i` of the decoder Jacobian at each code."""
    return np.log(dense_decoder_singular_values(decoder, z)).sum(axis=1)


def float32_resolves_volume(decoder, z):
    """Codes whose decoder Jacobian float32 can resolve: smallest / largest s above 1e-5.

    Where a ReLU mask leaves the Jacobian (nearly) rank-deficient, float64 finds
    singular values of 1e-15 and float32 one of about 1e-7 (its rounding): the
    log-volumes then differ by tens of nats and neither is more right.
    """
    singular = dense_decoder_singular_values(decoder, z)
    return singular.min(axis=1) > 1e-5 * singular.max(axis=1)


def check_scores_against_numpy(model, x_train, x):
    """Each score of a latent autoencoder, recomputed in numpy from its networks.

    For a model with `"minmax"` inputs, a deterministic encoder and the
    `N(0, I)` prior (the arguments the callers pass explicitly).
    """
    xs = minmax(x, x_train)
    z = np.asarray(model.encoder(xs))
    np.testing.assert_allclose(model.encode(x), z, rtol=1e-5, atol=1e-6)
    x_hat = np.asarray(model.decoder(z), dtype=np.float64)
    z = z.astype(np.float64)
    squared = (xs - x_hat) ** 2
    expected = {"reconstruction": squared.mean(axis=1)}
    expected["reconstruction_sampled"] = expected["reconstruction"]  # point-mass posterior
    expected["latent"] = 0.5 * (z**2).sum(axis=1) + 0.5 * z.shape[1] * np.log(2 * np.pi)
    variance = np.asarray(model.error_variance(), dtype=np.float64)
    nll = 0.5 * (np.log(2 * np.pi) + np.log(variance) + squared / variance).sum(axis=1)
    volume = log_volume_of_dense_decoder(model.decoder, z)
    expected["jacodeco"] = nll + expected["latent"] + volume
    if model.discriminator is not None:
        logits = np.asarray(model.discriminator(z.astype("float32")), dtype=np.float64)
        # D = sigmoid(logit) is "drawn from the prior": a high D is normal, -log D the score.
        expected["discriminator"] = np.logaddexp(0.0, -logits.reshape(-1))
        expected["combined"] = (
            expected["reconstruction"] + model.score_weight * expected["discriminator"]
        )
    expected["hybrid"] = numpy_hybrid(model, x_train, x)
    expected["hybrid_knn"] = numpy_hybrid_knn(model, x_train, x)
    assert set(expected) == set(model.score_methods)
    resolved = float32_resolves_volume(model.decoder, z)
    # Most codes are compared (about 95 % of them, with the seeds the callers use).
    assert resolved.mean() > 0.9, resolved.mean()
    for method, values in expected.items():
        scores = model.score(x, method=method)
        tolerance = {"rtol": 1e-4}
        if method in ("hybrid", "hybrid_knn"):  # sums of float32 logs: rounding near 0
            tolerance["atol"] = 2e-4
        if method == "jacodeco":  # compared where float32 resolves the Jacobian's volume
            scores, values, tolerance = (
                scores[resolved],
                values[resolved],
                {"rtol": 1e-4, "atol": 1e-3},
            )
        np.testing.assert_allclose(scores, values, **tolerance, err_msg=method)


def mmd_to_prior(model, x):
    codes = model.encode(x)
    samples = np.asarray(model.prior.sample(len(codes), model.latent_dim, seed=1))
    return float(mmd(codes, samples))


@pytest.fixture(scope="module")
def matched():
    """An AAE whose latent size equals the data's intrinsic dimension (4)."""
    keras.utils.set_random_seed(0)
    x = gaussian_manifold()
    model = AAE(
        hidden_units=(64, 32),
        latent_dim=4,
        prior="normal",
        stochastic_encoder=False,
        reconstruction_loss="mse",
        gradient_penalty=10.0,
        normalization="minmax",
        seed=0,
    )
    model.build((None, 16))
    model.scaler.adapt(x)
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=FAST)
    before = mmd_to_prior(model, x)
    history = model.fit(x, epochs=60, batch_size=64, verbose=0)
    return model, x, before, mmd_to_prior(model, x), history.history


def test_codes_match_the_prior_and_the_discriminator_is_fooled(matched):
    _, _, before, after, history = matched
    assert after < 0.25 * before, (before, after)
    accuracy = history["discriminator_accuracy"][-1]
    assert abs(accuracy - 0.5) <= 0.15, accuracy
    assert {
        "loss",
        "reconstruction_loss",
        "discriminator_loss",
        "generator_loss",
        "discriminator_accuracy",
    } == set(history)
    # The generator's loss -log D(E(x)) settles near log 2 once D is fooled.
    assert abs(history["generator_loss"][-1] - np.log(2.0)) < 0.2


def test_evaluate_reports_every_metric(matched):
    model, x, *_ = matched
    x = x[:256]
    logs = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    assert set(logs) == {
        "loss",
        "reconstruction_loss",
        "discriminator_loss",
        "generator_loss",
        "discriminator_accuracy",
    }
    # Recomputed from the networks in inference mode (equal batches: the mean of batch means).
    xs = minmax(x, matched[1])
    z = np.asarray(model.encoder(xs))
    reconstruction = np.mean((xs - np.asarray(model.decoder(z), dtype=np.float64)) ** 2)
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction, rel=1e-5)
    assert logs["loss"] == pytest.approx(reconstruction, rel=1e-5)  # no regulariser, no trimming
    logits = np.asarray(model.discriminator(z), dtype=np.float64).reshape(-1)
    assert logs["generator_loss"] == pytest.approx(np.mean(np.logaddexp(0.0, -logits)), rel=1e-5)
    # The discriminator terms on the codes are fixed; those on fresh prior draws lie in [0, 1/2]
    # (accuracy) and are >= 0 (loss).
    fake_accuracy = 0.5 * np.mean(logits < 0)
    assert fake_accuracy <= logs["discriminator_accuracy"] <= fake_accuracy + 0.5
    assert logs["discriminator_loss"] >= 0.5 * np.mean(np.logaddexp(0.0, logits)) - 1e-6


@pytest.fixture(scope="module")
def blobs_aae(blobs):
    keras.utils.set_random_seed(0)
    model = AAE(
        hidden_units=(64, 32),
        latent_dim=8,
        prior="normal",
        stochastic_encoder=False,
        score_weight=0.1,
        normalization="minmax",
        seed=0,
    )
    model.compile(steps_per_execution=FAST)
    model.fit(blobs.x_train, epochs=10, batch_size=64, verbose=0)
    return model


def test_auroc_floor_on_generated_data(blobs_aae, blobs):
    for method in ("reconstruction", "combined", "jacodeco"):
        assert auroc(blobs_aae, blobs.x_test, blobs.y_test, method=method) >= 0.95, method


def test_every_score_method_equals_its_numpy_recomputation(blobs_aae, blobs):
    assert blobs_aae.score_methods == (
        "hybrid",
        "hybrid_knn",
        "reconstruction",
        "reconstruction_sampled",
        "latent",
        "discriminator",
        "combined",
        "jacodeco",
    )
    check_scores_against_numpy(blobs_aae, blobs.x_train, blobs.x_test)
    for method in blobs_aae.score_methods:
        assert np.std(blobs_aae.score(blobs.x_test, method=method)) > 0, method


def test_auroc_floor_on_breast_cancer(breast_cancer):
    keras.utils.set_random_seed(0)
    model = AAE(seed=0)
    model.compile(steps_per_execution=FAST)
    model.fit(breast_cancer.x_train, epochs=15, batch_size=32, verbose=0)
    assert auroc(model, breast_cancer.x_test, breast_cancer.y_test) >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["normal", "mog"])
def test_auroc_floor_on_breast_cancer_trained_longer(prior, breast_cancer):
    keras.utils.set_random_seed(0)
    model = AAE(prior=prior, latent_dim=2 if prior == "mog" else 8, seed=0)
    model.compile(steps_per_execution=FAST)
    model.fit(breast_cancer.x_train, epochs=100, batch_size=32, verbose=0)
    assert auroc(model, breast_cancer.x_test, breast_cancer.y_test) >= 0.85


OPTIMIZERS = ("optimizer", "discriminator_optimizer", "generator_optimizer")


def test_save_and_reload_restore_all_three_optimizers(blobs, tmp_path):
    x = blobs.x_train[:256]
    discriminator = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model = AAE(hidden_units=(16,), latent_dim=3, discriminator=discriminator, seed=0)
    model.compile(generator_optimizer=keras.optimizers.RMSprop(5e-4))
    model.fit(x, epochs=2, batch_size=64, verbose=0)
    for name in OPTIMIZERS:
        assert int(getattr(model, name).iterations) == 8, name
    model.save(tmp_path / "aae.keras")
    loaded = keras.models.load_model(tmp_path / "aae.keras")

    def as_json(config):  # user networks' build configs come back with lists for tuples
        return json.loads(json.dumps(config))

    assert as_json(loaded.get_config()) == as_json(model.get_config())
    for name in OPTIMIZERS:
        original, restored = getattr(model, name), getattr(loaded, name)
        assert type(restored) is type(original), name
        assert restored.get_config() == original.get_config(), name
        assert int(restored.iterations) == 8, name
        # Slot variables (moments) are restored, not re-initialised.
        assert len(restored.variables) == len(original.variables) > 2, name
        for a, b in zip(original.variables, restored.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert any(np.abs(np.asarray(v)).sum() > 0 for v in restored.variables[2:]), name
    for method in model.score_methods:
        np.testing.assert_array_equal(
            loaded.score(blobs.x_test, method=method), model.score(blobs.x_test, method=method)
        )
    # Training continues from the restored state, updating with every optimizer.
    weights = [np.asarray(w).copy() for w in loaded.discriminator.trainable_weights]
    loaded.fit(x, epochs=1, batch_size=64, verbose=0)
    for name in OPTIMIZERS:
        assert int(getattr(loaded, name).iterations) == 12, name
    assert any(
        not np.array_equal(a, np.asarray(b))
        for a, b in zip(weights, loaded.discriminator.trainable_weights, strict=True)
    )


def test_compile_takes_named_optimizers_with_defaults():
    model = AAE(hidden_units=(8,), latent_dim=2)
    model.build((None, 5))
    model.compile(discriminator_optimizer="sgd")
    assert isinstance(model.discriminator_optimizer, keras.optimizers.SGD)
    generator = model.generator_optimizer
    assert isinstance(generator, keras.optimizers.Adam)
    assert float(generator.learning_rate) == pytest.approx(1e-3) and generator.beta_1 == 0.5
    # Each optimizer is built on exactly the variables it updates.
    assert len(model.generator_optimizer._trainable_variables) == len(
        model.encoder.trainable_variables
    )
    assert len(model.optimizer._trainable_variables) == len(
        model.encoder.trainable_variables
    ) + len(model.decoder.trainable_variables)
    config = model.get_compile_config()
    assert {"optimizer", "discriminator_optimizer", "generator_optimizer"} <= set(config)
    with pytest.raises(ValueError, match="critic_optimizer"):
        model.compile(critic_optimizer="adam")


def test_percentile_loss_reduces_the_reconstruction_loss(blobs):
    x = blobs.x_test[:64]
    model = AAE(hidden_units=(8,), latent_dim=2, percentile_loss=0.5, seed=0)
    assert model.get_config()["percentile_loss"] == 0.5
    model.build((None, 16))
    model.scaler.adapt(blobs.x_train)
    model.compile()
    per_sample = np.asarray(model.per_sample_loss(x)[0])
    logs = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    kept = per_sample[per_sample < np.quantile(per_sample, 0.5)]
    assert logs["loss"] == pytest.approx(kept.mean(), rel=1e-4)
    assert logs["reconstruction_loss"] == pytest.approx(per_sample.mean(), rel=1e-4)


@keras.saving.register_keras_serializable(package="keras_deepad_tests")
def shifted_normal(n, dim, seed=None):
    return keras.random.normal((n, dim), seed=seed) + 2.0


def test_priors_travel_with_the_model(blobs, tmp_path):
    mixture = AAE(latent_dim=2, prior=MixtureOfGaussians(3, radius=2.0))
    clone = AAE.from_config(mixture.get_config())
    assert clone.prior == mixture.prior and clone.get_config() == mixture.get_config()
    assert AAE.from_config(AAE(prior="uniform").get_config()).prior == get_prior("uniform")
    # A user-supplied sampler (registered, so the model can be saved) without a density.
    model = AAE(hidden_units=(8,), latent_dim=2, prior=SampledPrior(shifted_normal), seed=0)
    model.fit(blobs.x_train[:128], epochs=1, batch_size=64, verbose=0)
    assert "latent" not in model.score_methods
    model.save(tmp_path / "sampled.keras")
    loaded = keras.models.load_model(tmp_path / "sampled.keras")
    assert loaded.prior.sampler is shifted_normal
    np.testing.assert_array_equal(loaded.score(blobs.x_test), model.score(blobs.x_test))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"architecture": "seed"}, "architecture"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": "2x"}, "latent_dim"),
        ({"prior": "laplace"}, "prior"),
        ({"reconstruction_loss": "huber"}, "reconstruction_loss"),
        ({"mc_samples": 0}, "mc_samples"),
        ({"score_weight": -1.0}, "score_weight"),
        ({"gradient_penalty": -1.0}, "gradient_penalty"),
        ({"score_method": "elbo"}, "score_method"),
        ({"percentile_loss": 1.5}, "percentile_loss"),
        ({"encoder": keras.Sequential([keras.layers.Dense(2)])}, "both encoder and decoder"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AAE(**kwargs)


def test_contract_of_an_aae_with_a_stochastic_encoder(blobs, tmp_path):
    """The whole contract on a variant the shared table does not hold."""
    run_detector_test(
        lambda: AAE(hidden_units=(16,), latent_dim=3, stochastic_encoder=True, seed=0),
        blobs,
        tmp_path,
        # Off the prior's support the discriminator is unconstrained; after 3 epochs the
        # codes match the prior only roughly, so the latent score needs far anomalies.
        floors={"discriminator": None},
        far={"latent": 10.0},
    )
