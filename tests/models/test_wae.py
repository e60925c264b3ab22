"""Wasserstein autoencoder: MMD and GAN penalties, saving, AUROC floors."""

import keras
import numpy as np
import pytest

from keras_deepad.models import WAE
from tests.contract import auroc
from tests.models.test_aae import FAST, mmd_to_prior


@pytest.fixture(scope="module", params=["mmd", "gan"])
def trained(request, blobs):
    """A WAE trained on the generated blobs, with the MMD to the prior before and after."""
    keras.utils.set_random_seed(0)
    model = WAE(penalty=request.param, seed=0)
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


def test_every_score_method_is_finite(trained, blobs):
    model = trained[0]
    for method in model.score_methods:
        scores = model.score(blobs.x_test, method=method)
        assert scores.shape == (len(blobs.x_test),) and np.isfinite(scores).all(), method


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
    np.testing.assert_allclose(ces.errors[-1], model.score(x), rtol=1e-6)


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
