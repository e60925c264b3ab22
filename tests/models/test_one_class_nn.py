import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deepad.data import load_builtin
from keras_deepad.models import AE, OCNN
from tests import contract


def dropout_readings(seed=0, n_train=1000, n_normal=500, n_anomalies=50, dim=12):
    """Positive sensor-like readings; anomalies have a third of their channels dropping out.

    OC-NN separates the data from the origin of its feature space, so its
    anomalies are samples whose features fall below the normal range (a
    planted, known answer for this geometry).
    """
    rng = np.random.default_rng(seed)
    mixing = rng.uniform(0.5, 1.5, size=(4, dim))

    def normal(n):
        return np.exp(0.2 * rng.standard_normal((n, 4))) @ mixing

    x_train = normal(n_train)
    anomalies = normal(n_anomalies)
    for row in anomalies:
        row[rng.choice(dim, dim // 3, replace=False)] *= rng.uniform(0.0, 0.4)
    x_test = np.concatenate([normal(n_normal), anomalies])
    y_test = np.repeat([0, 1], [n_normal, n_anomalies])
    return x_train.astype("float32"), x_test.astype("float32"), y_test


@pytest.fixture(scope="module")
def readings():
    return dropout_readings()


@pytest.fixture(scope="module")
def trained(readings):
    keras.utils.set_random_seed(0)
    model = OCNN(hidden_units=16, nu=0.1, seed=0)
    model.fit(readings[0], epochs=3, batch_size=64, verbose=0)
    return model


def test_r_is_the_nu_quantile_of_the_outputs_after_an_epoch(trained, readings):
    outputs = trained.outputs(readings[0]).astype(np.float64)
    assert float(trained.rho) == pytest.approx(np.quantile(outputs, trained.nu), abs=1e-6)
    assert np.mean(outputs < float(trained.rho)) == pytest.approx(trained.nu, abs=0.01)


def test_r_is_updated_after_every_epoch(readings):
    model = OCNN(hidden_units=8, seed=0)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            outputs = model.outputs(readings[0]).astype(np.float64)
            seen.append((float(model.rho), np.quantile(outputs, model.nu)))

    model.fit(readings[0], epochs=3, batch_size=64, verbose=0, callbacks=[Spy()])
    for rho, quantile in seen:
        assert rho == pytest.approx(quantile, abs=1e-6)
    assert len({rho for rho, _ in seen}) == 3  # it moves with the network


def test_hinge_clips_for_samples_above_r(trained, readings):
    x = tf.constant(readings[0][:200])
    y = np.asarray(trained._outputs(x))
    rho = float(trained.rho)
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, parts = trained.per_sample_loss(x)
        hinge = parts["hinge"]
    gradient = tape.gradient(hinge, x).numpy()
    hinge = np.asarray(hinge)
    above, below = y >= rho, y < rho
    assert above.sum() > 0 and below.sum() > 0
    assert (hinge[above] == 0).all()  # exactly zero, not negative
    np.testing.assert_allclose(hinge[below], rho - y[below], rtol=1e-5)
    assert (gradient[above] == 0).all()
    assert (np.abs(gradient[below]).sum(axis=1) > 0).all()


def test_objective_matches_the_formula(trained, readings):
    x = readings[0][:100]
    loss, _ = trained.per_sample_loss(tf.constant(x))
    y = trained.outputs(x).astype(np.float64)
    w = np.asarray(trained.output_weights, dtype=np.float64)
    v = np.asarray(trained.encoder.trainable_weights[0], dtype=np.float64)
    rho = float(trained.rho)
    expected = (
        0.5 * (w**2).sum() + 0.5 * (v**2).sum() + np.maximum(rho - y, 0).mean() / trained.nu - rho
    )
    assert float(np.mean(loss)) == pytest.approx(expected, rel=1e-5)


def test_score_is_r_minus_output(trained, readings):
    x = readings[1]
    np.testing.assert_allclose(
        trained.score(x), float(trained.rho) - trained.outputs(x), rtol=1e-5, atol=1e-6
    )


def test_auroc_on_generated_data(readings):
    x_train, x_test, y_test = readings
    keras.utils.set_random_seed(0)
    model = OCNN(hidden_units=32, nu=0.1, seed=0)
    model.fit(x_train, epochs=20, batch_size=64, verbose=0)
    assert contract.auroc(model, x_test, y_test) >= 0.95


def test_from_autoencoder_copies_and_fine_tunes_the_encoder(readings):
    x_train = readings[0]
    ae = AE(hidden_units=(16,), latent_dim=6, seed=0)
    ae.fit(x_train, epochs=2, batch_size=64, verbose=0)
    ae_weights = [w.numpy().copy() for w in ae.encoder.weights]
    model = OCNN.from_autoencoder(ae, nu=0.1, seed=0)
    assert model.hidden_units == 6
    for a, b in zip(ae_weights, model.encoder.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    model.fit(x_train, epochs=1, batch_size=64, verbose=0)
    # Fine-tuned: the copy moved, the autoencoder's own encoder did not.
    assert any(
        not np.array_equal(a, b.numpy())
        for a, b in zip(ae_weights, model.encoder.weights, strict=True)
    )
    for a, b in zip(ae_weights, ae.encoder.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_digits_one_class():
    data = load_builtin("digits", seed=0, normal_class=0)
    keras.utils.set_random_seed(0)
    model = OCNN(hidden_units=32, seed=0)
    model.fit(data.x_train, epochs=20, batch_size=64, verbose=0)
    assert contract.auroc(model, data.x_test, data.y_test) >= 0.9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "relu"}, "activation"),
        ({"nu": 0.0}, "nu"),
        ({"nu": 1.0}, "nu"),
        ({"hidden_units": 0}, "hidden_units"),
        ({"encoder": "ae"}, "encoder"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OCNN(**kwargs)
