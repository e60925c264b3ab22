import warnings

import keras
import numpy as np
import pytest

from keras_deepad.models import AE
from keras_deepad.registry import get_detector, get_spec
from tests.contract import auroc, run_detector_test


def test_auroc_floor_on_generated_data(blobs):
    model = AE(seed=0)
    model.fit(blobs.x_train, epochs=30, batch_size=32, verbose=0)
    assert auroc(model, blobs.x_test, blobs.y_test) >= 0.95


def test_auroc_floor_on_breast_cancer_with_defaults(breast_cancer):
    model = AE(seed=0)
    model.fit(breast_cancer.x_train, epochs=100, batch_size=32, verbose=0)
    assert auroc(model, breast_cancer.x_test, breast_cancer.y_test) >= 0.85


def test_seed_form_is_sigmoid_without_biases(blobs):
    model = get_detector("ae-seed", latent_dim=5)
    model.build((None, 16))
    kernels = [w for w in model.trainable_weights]
    assert [tuple(w.shape) for w in kernels] == [(16, 5), (5, 16)]  # U and V, nothing else
    x = blobs.x_test[:8]
    u, v = (np.asarray(w) for w in kernels)
    scaled = np.asarray(model.scaler(x))
    expected = 1 / (1 + np.exp(-scaled @ u)) @ v
    np.testing.assert_allclose(
        np.asarray(model.reconstruct_normalised(scaled)), expected, rtol=1e-5, atol=1e-6
    )


def test_borghesi_preset(blobs):
    x_train, x = blobs.x_train[:200], blobs.x_test[:64]
    model = get_detector("ae-borghesi", seed=0)
    assert get_spec("ae-borghesi").fit_params["batch_size"] == 64
    model.fit(x_train, epochs=1, batch_size=64, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.loss_kind == "mae" and model.score_method == "max"
    assert model.normalization == "minmax"
    # Exactly Dense(10 * D, relu, L1(1e-5) on the activity) -> Dense(D, linear): no other layer.
    (code,) = [layer for layer in model.encoder.layers if layer.weights]
    (output,) = [layer for layer in model.decoder.layers if layer.weights]
    assert [type(layer) for layer in (*model.encoder.layers, *model.decoder.layers)] == [
        keras.layers.InputLayer,
        keras.layers.Dense,
        keras.layers.InputLayer,
        keras.layers.Dense,
    ]
    assert code.units == 10 * 16 and code.activation is keras.activations.relu
    assert isinstance(code.activity_regularizer, keras.regularizers.L1)
    assert float(code.activity_regularizer.l1) == pytest.approx(1e-5)
    assert output.units == 16 and output.activation is keras.activations.linear
    # The forward pass by hand, in min-max units of the training data.
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    xs = (x - low) / (high - low)
    w1, b1, w2, b2 = (np.asarray(w, dtype=np.float64) for w in model.trainable_weights)
    hidden = np.maximum(xs @ w1 + b1, 0.0)
    error = np.abs(xs - (hidden @ w2 + b2))
    # The score: the largest absolute per-feature error (the default method).
    np.testing.assert_allclose(model.score(x), error.max(axis=1), rtol=1e-4)
    np.testing.assert_allclose(model.score(x, method="max"), error.max(axis=1), rtol=1e-4)
    # The objective: mean absolute error plus 1e-5 * sum |h| per sample (Keras divides the
    # activity penalty by the batch size), here on one batch.
    penalty = 1e-5 * hidden.sum(axis=1).mean()
    assert penalty > 1e-4 * error.mean()  # large enough to be seen at rel=1e-5
    logs = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(error.mean() + penalty, rel=1e-5)


def test_score_methods_are_consistent(blobs):
    model = AE(hidden_units=(16,), latent_dim=3, seed=0)
    model.fit(blobs.x_train[:300], epochs=2, verbose=0)
    x = blobs.x_test[:50]
    per_feature_sq = model.feature_scores(x)
    np.testing.assert_allclose(model.score(x, method="mse"), per_feature_sq.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(
        model.score(x, method="max"), np.sqrt(per_feature_sq).max(axis=1), rtol=1e-4
    )
    np.testing.assert_allclose(
        model.score(x, method="mae"), np.sqrt(per_feature_sq).mean(axis=1), rtol=1e-4
    )


def test_denoising_noise_only_while_training(blobs):
    model = AE(hidden_units=(16,), latent_dim=3, denoising_std=0.5, seed=1)
    model.fit(blobs.x_train[:200], epochs=1, verbose=0)
    x = blobs.x_test[:20]
    np.testing.assert_array_equal(model.score(x), model.score(x))
    train_a, _ = model.per_sample_loss(x, training=True)
    train_b, _ = model.per_sample_loss(x, training=True)
    assert not np.allclose(np.asarray(train_a), np.asarray(train_b))


def test_conv_autoencoder_on_images(tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = (x / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    model = AE(architecture="conv", conv_filters=(8, 16), latent_dim=8, seed=0)
    model.fit(images[y == 0], epochs=2, batch_size=32, verbose=0)
    scores = model.score(images[:100])
    assert scores.shape == (100,) and np.std(scores) > 0
    assert model.reconstruct(images[:3]).shape == (3, 8, 8, 1)
    assert model.feature_scores(images[:3]).shape == (3, 8, 8, 1)
    with pytest.raises(ValueError, match=r"shape \(8, 8\).*expects \(8, 8, 1\)|rank"):
        model.score(images[:3, :, :, 0])
    model.calibrate(images[y == 0], contamination=0.1)
    model.save(tmp_path / "conv.keras")
    loaded = keras.models.load_model(tmp_path / "conv.keras")
    np.testing.assert_array_equal(loaded.score(images[:50]), model.score(images[:50]))


def test_conv_decoder_crops_odd_sizes():
    from keras_deepad.networks import build_conv_decoder

    decoder = build_conv_decoder(4, (28, 28, 1), filters=(8, 8, 8))
    assert tuple(decoder.output.shape[1:]) == (28, 28, 1)


def test_user_networks_round_trip(blobs, tmp_path):
    encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3)])
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16)])
    model = AE(encoder=encoder, decoder=decoder, seed=0)
    model.fit(blobs.x_train[:200], epochs=1, verbose=0)
    model.save(tmp_path / "user.keras")
    loaded = keras.models.load_model(tmp_path / "user.keras")
    np.testing.assert_array_equal(loaded.score(blobs.x_test), model.score(blobs.x_test))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"architecture": "rnn"}, "architecture"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": "tenx"}, "latent_dim"),
        ({"loss": "huber"}, "loss"),
        ({"denoising_std": -1.0}, "denoising_std"),
        ({"score_method": "elbo"}, "score_method"),
        ({"normalization": "zscore"}, "normalization"),
        ({"encoder": keras.Sequential([keras.layers.Dense(2)])}, "both encoder and decoder"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AE(**kwargs)


def test_unfitted_model_says_so(blobs):
    with pytest.raises(ValueError, match="fit"):
        AE().score(blobs.x_test)


def test_labels_are_ignored_with_a_warning(blobs):
    model = AE(hidden_units=(8,), latent_dim=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(blobs.x_train[:64], np.zeros(64), epochs=1, verbose=0)
    assert any("y is ignored" in str(w.message) for w in caught)


def test_contract_of_an_overcomplete_mae_autoencoder(blobs, tmp_path):
    """The whole contract on a variant the shared table does not hold."""
    run_detector_test(
        lambda: AE(
            hidden_units=(16,),
            latent_dim="1x",
            latent_activation=None,
            loss="mae",
            normalization="minmax",
            seed=0,
        ),
        blobs,
        tmp_path,
    )
