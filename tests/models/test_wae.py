"""Wasserstein autoencoder: MMD and GAN penalties, saving, AUROC floors."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_deepad.losses import MMD_SCALES
from keras_deepad.models import WAE
from keras_deepad.priors import StandardNormal
from tests.contract import auroc, run_detector_test
from tests.models.test_aae import FAST, check_scores_against_numpy, minmax, mmd_to_prior

#: Tolstikhin et al.'s reference code sums the IMQ kernel over C = C_base * these.
REFERENCE_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@pytest.fixture(scope="module", params=["mmd", "gan"])
def trained(request, blobs):
    """A WAE trained on the generated blobs, with the MMD to the prior before and after."""
    keras.utils.set_random_seed(0)
    model = WAE(
        penalty=request.param,
        lambda_=1.0,
        kernel="imq",
        hidden_units=(64, 32),
        latent_dim=8,
        prior="normal",
        stochastic_encoder=False,
        score_weight=0.1,
        gradient_penalty=10.0,
        normalization="minmax",
        seed=0,
    )
    model.build((None, 16))
    model.scaler.adapt(blobs.x_train)
    model.compile(steps_per_execution=FAST)
    before = mmd_to_prior(model, blobs.x_train)
    history = model.fit(blobs.x_train, epochs=15, batch_size=64, verbose=0).history
    return model, before, mmd_to_prior(model, blobs.x_train), history


def test_penalty_matches_the_codes_to_the_prior(trained):
    model, before, after, history = trained
    assert after < (0.5 if model.penalty == "mmd" else 0.8) * before, (before, after)
    expected = {"loss", "reconstruction_loss", "penalty"}
    if model.penalty == "gan":
        expected |= {"discriminator_loss", "discriminator_accuracy"}
    assert set(history) == expected
    # loss = reconstruction + lambda * penalty (lambda = 1), per batch and so per epoch.
    assert history["loss"][-1] == pytest.approx(
        history["reconstruction_loss"][-1] + history["penalty"][-1], rel=1e-4
    )


def test_auroc_floor_on_generated_data(trained, blobs):
    model = trained[0]
    for method in ("reconstruction", "jacodeco"):
        assert auroc(model, blobs.x_test, blobs.y_test, method=method) >= 0.95, method


def test_every_score_method_equals_its_numpy_recomputation(trained, blobs):
    model = trained[0]
    check_scores_against_numpy(model, blobs.x_train, blobs.x_test)


class FixedDraws(StandardNormal):
    """`N(0, scale^2 I)` whose draws are a fixed array, so the model's MMD is reproducible."""

    def __init__(self, draws, scale):
        super().__init__(scale)
        self.draws = np.asarray(draws, dtype="float32")

    def sample(self, n, dim, seed=None):
        return ops.convert_to_tensor(self.draws)[:n]


def imq_mmd(x, y, bandwidths):
    """Unbiased MMD^2 with the IMQ kernel C / (C + ||a - b||^2) summed over `bandwidths`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def kernel(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
        return sum(c / (c + d2) for c in bandwidths)

    n, m = len(x), len(y)
    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * n - n)
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * m - m)
    return within_x + within_y - 2.0 * kernel(x, y).sum() / (n * m)


def test_mmd_sums_imq_kernels_over_the_reference_scales(blobs):
    assert MMD_SCALES == REFERENCE_SCALES
    assert WAE().mmd_scales == REFERENCE_SCALES  # the default, not only the constant
    latent_dim, sigma, n = 3, 1.5, 64
    rng = np.random.default_rng(0)
    draws = sigma * rng.standard_normal((n, latent_dim))
    model = WAE(
        prior=FixedDraws(draws, scale=sigma),
        latent_dim=latent_dim,
        hidden_units=(8,),
        lambda_=2.0,
        kernel="imq",
        stochastic_encoder=False,
        normalization="minmax",
        seed=0,
    )
    model.build((None, 16))
    model.scaler.adapt(blobs.x_train)
    model.compile()

    base = 2.0 * latent_dim * sigma**2  # C_base = 2 * z_dim * sigma_z^2

    def reference(codes):
        return imq_mmd(codes, draws, [base * s for s in REFERENCE_SCALES])

    # On fixed codes: a shifted, wider cloud than the prior draws.
    codes = (0.5 + 2.0 * rng.standard_normal((n, latent_dim))).astype("float32")
    expected = reference(codes)
    assert float(model.mmd_penalty(codes)) == pytest.approx(expected, rel=1e-4)
    # The value tells the reference bandwidths from near misses.
    near_misses = {
        "without 0.1": [base * s for s in REFERENCE_SCALES[1:]],
        "without 10": [base * s for s in REFERENCE_SCALES[:-1]],
        "C_base only": [base],
        "1 to 100": [base * s for s in (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)],
        "sigma_z^2 = 1": [2.0 * latent_dim * s for s in REFERENCE_SCALES],
        "no factor 2": [0.5 * base * s for s in REFERENCE_SCALES],
    }
    for name, bandwidths in near_misses.items():
        assert abs(imq_mmd(codes, draws, bandwidths) - expected) > 0.01 * abs(expected), name
    # In training terms: evaluate's penalty is that MMD of the encoder's codes, weighted by lambda.
    x = blobs.x_test[:n]
    logs = model.evaluate(x, batch_size=n, verbose=0, return_dict=True)
    codes = np.asarray(model.encoder(minmax(x, blobs.x_train)))
    assert logs["penalty"] == pytest.approx(reference(codes), rel=1e-4)
    assert logs["loss"] == pytest.approx(
        logs["reconstruction_loss"] + 2.0 * reference(codes), rel=1e-5
    )


def test_save_and_reload_restore_every_optimizer(trained, blobs, tmp_path):
    model = trained[0]
    model.save(tmp_path / "wae.keras")
    loaded = keras.models.load_model(tmp_path / "wae.keras")
    assert loaded.get_config() == model.get_config()
    names = ["optimizer", *model.extra_optimizers]
    assert names == (["optimizer", "discriminator_optimizer"] if model.penalty == "gan" else names)
    for name in names:
        original, restored = getattr(model, name), getattr(loaded, name)
        assert restored.get_config() == original.get_config(), name
        assert int(restored.iterations) == int(original.iterations) == 240, name
        assert len(restored.variables) == len(original.variables) > 2, name
        for a, b in zip(original.variables, restored.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    method = model.score_methods[-1]
    np.testing.assert_array_equal(
        loaded.score(blobs.x_test, method=method), model.score(blobs.x_test, method=method)
    )
    loaded.fit(blobs.x_train[:256], epochs=1, batch_size=64, verbose=0)
    for name in names:
        assert int(getattr(loaded, name).iterations) == 244, name


def test_auroc_floor_on_breast_cancer(breast_cancer):
    keras.utils.set_random_seed(0)
    model = WAE(seed=0)
    model.compile(steps_per_execution=FAST)
    model.fit(breast_cancer.x_train, epochs=15, batch_size=32, verbose=0)
    assert auroc(model, breast_cancer.x_test, breast_cancer.y_test) >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [lambda: WAE(seed=0), lambda: WAE(penalty="gan", seed=0), lambda: WAE(kernel="rbf", seed=0)],
    ids=["mmd", "gan", "mmd-rbf"],
)
def test_auroc_floor_on_breast_cancer_trained_longer(make, breast_cancer):
    keras.utils.set_random_seed(0)
    model = make()
    model.compile(steps_per_execution=FAST)
    model.fit(breast_cancer.x_train, epochs=100, batch_size=32, verbose=0)
    assert auroc(model, breast_cancer.x_test, breast_cancer.y_test) >= 0.85


def test_wae_mmd_has_one_optimizer_and_no_discriminator(blobs):
    model = WAE(hidden_units=(8,), latent_dim=2, kernel="rbf", seed=0)
    model.fit(blobs.x_train[:128], epochs=1, verbose=0)
    assert model.discriminator is None
    assert not hasattr(model, "discriminator_optimizer")
    with pytest.raises(ValueError, match="discriminator_optimizer"):
        model.compile(discriminator_optimizer="adam")
    with pytest.raises(ValueError, match="no discriminator"):
        model.discriminate(blobs.x_test)
    with pytest.raises(ValueError, match="no discriminator"):
        WAE(discriminator=keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)]))


def test_robust_training_options_apply(blobs):
    from keras_deepad.callbacks import CumulativeErrorScoring, KneeEarlyStopping

    x = blobs.x_train[:128]
    model = WAE(hidden_units=(8,), latent_dim=2, percentile_loss=0.9, seed=0)
    assert model.get_config()["percentile_loss"] == 0.9
    ces = CumulativeErrorScoring(x)
    history = model.fit(x, epochs=3, batch_size=64, verbose=0, callbacks=[ces, KneeEarlyStopping()])
    assert ces.errors.shape == (len(history.history["loss"]), len(x))
    # The default score is "hybrid"; during training the callback reads the error.
    np.testing.assert_allclose(ces.errors[-1], model.score(x, method="reconstruction"), rtol=1e-6)


def test_lambda_weights_the_penalty(blobs):
    x = blobs.x_test[:64]
    logs = {}
    for lam in (0.0, 3.0):
        keras.utils.set_random_seed(0)
        model = WAE(hidden_units=(8,), latent_dim=2, lambda_=lam, seed=0)
        model.build((None, 16))
        model.scaler.adapt(blobs.x_train)
        model.compile()
        logs[lam] = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    assert logs[0.0]["loss"] == pytest.approx(logs[0.0]["reconstruction_loss"], rel=1e-5)
    assert logs[3.0]["loss"] == pytest.approx(
        logs[3.0]["reconstruction_loss"] + 3.0 * logs[3.0]["penalty"], rel=1e-4
    )
    assert logs[3.0]["penalty"] > 0.1  # untrained codes are far from the prior


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"penalty": "sinkhorn"}, "penalty"),
        ({"lambda_": -1.0}, "lambda_"),
        ({"kernel": "laplace"}, "kernel"),
        ({"mmd_scales": ()}, "mmd_scales"),
        ({"mmd_scales": (1.0, 0.0)}, "mmd_scales"),
        ({"latent_dim": -2}, "latent_dim"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WAE(**kwargs)


def test_contract_of_a_wae_with_the_rbf_kernel(blobs, tmp_path):
    """The whole contract on a variant the shared table does not hold."""
    run_detector_test(
        lambda: WAE(hidden_units=(16,), latent_dim=3, kernel="rbf", seed=0),
        blobs,
        tmp_path,
        far={"latent": 10.0},
    )


def test_the_class_declares_what_an_instance_narrows():
    assert "discriminator" in WAE.score_methods and WAE.uses_discriminator
    mmd = WAE()
    assert "discriminator" not in mmd.score_methods and "combined" not in mmd.score_methods
    assert not mmd.uses_discriminator and mmd.extra_optimizers == {}
    gan = WAE(penalty="gan")
    assert gan.uses_discriminator and set(gan.extra_optimizers) == {"discriminator_optimizer"}
    assert gan.score_methods == WAE.score_methods
    with pytest.raises(AttributeError, match="narrow_score_methods"):
        mmd.score_methods = ("hybrid",)
    with pytest.raises(ValueError, match="must be one of .*'jacodeco'\\)\\. Received: score_met"):
        WAE(score_method="discriminator")
    assert WAE(penalty="gan", score_method="discriminator").score_method == "discriminator"
