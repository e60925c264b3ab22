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
    v = np.asarray(trained.encoder.get_layer("V").kernel, dtype=np.float64)
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


@pytest.mark.parametrize("activation", ["cos", "linear"])
def test_auroc_on_generated_data(readings, activation):
    x_train, x_test, y_test = readings
    keras.utils.set_random_seed(0)
    model = OCNN(hidden_units=32, activation=activation, nu=0.1, seed=0)
    model.fit(x_train, epochs=20, batch_size=64, verbose=0)
    assert contract.auroc(model, x_test, y_test) >= 0.95


def ring_around_a_gaussian(seed=0, n_train=500):
    """2-D standard normal data; anomalies on a ring of radius 3.5 to 5 all around it."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi, 60)
    radius = rng.uniform(3.5, 5.0, 60)
    anomalies = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    x_test = np.concatenate([rng.standard_normal((300, 2)), anomalies])
    y_test = np.repeat([0, 1], [300, 60])
    return rng.standard_normal((n_train, 2)).astype("float32"), x_test.astype("float32"), y_test


def test_cosine_features_find_anomalies_on_every_side():
    x_train, x_test, y_test = ring_around_a_gaussian()
    aurocs = {}
    for activation in ("cos", "linear"):
        keras.utils.set_random_seed(0)
        model = OCNN(activation=activation, seed=0)
        model.fit(x_train, epochs=15, batch_size=64, verbose=0)
        aurocs[activation] = contract.auroc(model, x_test, y_test)
    # A linear g separates the data from the origin: a ring is half "beyond" the data.
    assert aurocs["cos"] > 0.9 and aurocs["linear"] < 0.7, aurocs


@pytest.mark.parametrize("seed", [0, 1])
def test_class_defaults_on_breast_cancer(seed):
    data = load_builtin("breast_cancer", seed=seed)
    keras.utils.set_random_seed(seed)
    model = OCNN(seed=seed)
    model.fit(data.x_train, epochs=30, batch_size=64, verbose=0)
    assert contract.auroc(model, data.x_test, data.y_test) >= 0.9


def test_random_features_are_seeded_saved_and_fixed(readings, tmp_path):
    x_train = readings[0][:256]

    def features(model):
        return model.encoder.get_layer("V").kernel.numpy().copy(), model.phase.numpy().copy()

    first, second, other = OCNN(seed=0), OCNN(seed=0), OCNN(seed=1)
    for model in (first, second, other):
        model.build((None, x_train.shape[1]))
    v, b = features(first)
    np.testing.assert_array_equal(features(second)[0], v)
    np.testing.assert_array_equal(features(second)[1], b)
    assert not np.array_equal(features(other)[1], b)
    assert b.min() >= 0.0 and b.max() < 2.0 * np.pi and b.std() > 1.0
    # bandwidth="auto": V ~ N(0, 1 / D) (bandwidth 1) until the first fit ...
    assert np.std(v) == pytest.approx(1.0 / np.sqrt(v.shape[0]), rel=0.1)
    first.fit(x_train, epochs=2, batch_size=32, verbose=0)
    # ... which sets the bandwidth from the normalised data and divides V by it.
    x_norm = np.asarray(first.scaler(x_train), dtype=np.float64)
    assert isinstance(first.bandwidth, float)
    assert first.bandwidth == pytest.approx(0.5 * x_norm.std(), rel=1e-4)
    assert first.get_config()["bandwidth"] == first.bandwidth
    np.testing.assert_allclose(features(first)[0], v / first.bandwidth, rtol=1e-6)
    v, bandwidth = features(first)[0], first.bandwidth
    assert not first.features_trainable and not first.encoder.trainable_weights
    w = first.output_weights.numpy().copy()
    first.fit(x_train[:128], epochs=1, batch_size=32, verbose=0)  # other data: V stays
    assert first.bandwidth == bandwidth
    np.testing.assert_array_equal(features(first)[0], v)
    np.testing.assert_array_equal(features(first)[1], b)
    assert not np.array_equal(first.output_weights.numpy(), w)
    loaded = contract.check_save_load(first, readings[1], tmp_path)
    assert loaded.bandwidth == bandwidth
    for got, want in zip(features(loaded), (v, b), strict=True):
        np.testing.assert_array_equal(got, want)  # also after a further epoch


def test_auto_bandwidth_kernel_matches_the_rbf_kernel_of_its_width(readings):
    x_train = readings[0][:512]
    model = OCNN(seed=0)
    model.fit(x_train, epochs=1, batch_size=64, verbose=0)
    x = readings[1][::25]
    features = model.embed(x).astype(np.float64)
    x_norm = np.asarray(model.scaler(x), dtype=np.float64)
    distances = ((x_norm[:, None, :] - x_norm[None, :, :]) ** 2).sum(axis=-1)
    kernel = 0.5 * np.exp(-distances / (2.0 * model.bandwidth**2 * x.shape[1]))
    # 1024 random features: entries within a few 1 / sqrt(2 * 1024) of the kernel.
    np.testing.assert_allclose(features @ features.T, kernel, atol=0.06)
    # The width scales with the data: a kernel this narrow separates distinct rows.
    off_diagonal = kernel[~np.eye(len(x), dtype=bool)]
    assert 0.0 < np.median(off_diagonal) < 0.45


def test_first_fit_starts_w_at_the_feature_mean_and_later_fits_continue(readings):
    x_train = readings[0][:300]
    weights = np.random.default_rng(0).uniform(0.0, 2.0, len(x_train)).astype("float32")
    model = OCNN(hidden_units=64, seed=0)
    starts = []

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            starts.append(model.output_weights.numpy().copy())

    model.fit(
        x_train, sample_weight=weights, epochs=2, batch_size=64, verbose=0, callbacks=[Start()]
    )
    # The first fit's w is the weighted mean of the training features g(Vx) (w was drawn
    # at random when the model was built, and r was not yet set).
    features = model.embed(x_train).astype(np.float64)
    np.testing.assert_allclose(
        starts[0], np.average(features, axis=0, weights=weights), rtol=1e-5, atol=1e-7
    )
    assert not np.allclose(starts[0], features.mean(axis=0), atol=1e-4)
    trained_w = model.output_weights.numpy().copy()
    model.fit(x_train, epochs=1, batch_size=64, verbose=0, callbacks=[Start()])
    np.testing.assert_array_equal(starts[1], trained_w)  # continues where it stopped


def test_trainable_features_train_v_but_not_the_phase(readings):
    x_train = readings[0][:256]
    model = OCNN(hidden_units=8, trainable_features=True, seed=0)
    model.build((None, x_train.shape[1]))
    v, b = model.encoder.get_layer("V").kernel.numpy().copy(), model.phase.numpy().copy()
    model.fit(x_train, epochs=1, batch_size=32, verbose=0)
    assert not np.array_equal(model.encoder.get_layer("V").kernel.numpy(), v)
    np.testing.assert_array_equal(model.phase.numpy(), b)


def test_a_given_encoder_keeps_its_trainable_flag_unless_told():
    def encoder(trainable):
        inputs = keras.Input((12,))
        model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
        model.trainable = trainable
        return model

    for trainable, argument, expected in [
        (False, None, False),
        (True, None, True),
        (True, False, False),
        (False, True, True),
    ]:
        model = OCNN(encoder=encoder(trainable), trainable_features=argument, seed=0)
        model.build((None, 12))
        assert model.features_trainable is expected
        assert bool(model.encoder.trainable_weights) is expected
        assert model.phase.shape == (4,)


def test_cosine_embedding_is_the_random_feature_map(trained, readings):
    x = readings[1][:50]
    v = trained.encoder.get_layer("V").kernel.numpy().astype(np.float64)
    x_norm = np.asarray(trained.scaler(x), dtype=np.float64)
    expected = np.cos(x_norm @ v + trained.phase.numpy()) / np.sqrt(trained.hidden_units)
    np.testing.assert_allclose(trained.embed(x), expected, rtol=1e-4, atol=1e-5)


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


@pytest.mark.parametrize("digit", [0, 3, 8])
def test_digits_one_class(digit):
    data = load_builtin("digits", seed=0, normal_class=digit)
    keras.utils.set_random_seed(0)
    model = OCNN(hidden_units=64, activation="cos", bandwidth=0.25, seed=0)
    model.fit(data.x_train, epochs=20, batch_size=64, verbose=0)
    assert contract.auroc(model, data.x_test, data.y_test) >= 0.9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "relu"}, "activation"),
        ({"nu": 0.0}, "nu"),
        ({"nu": 1.0}, "nu"),
        ({"hidden_units": 0}, "hidden_units"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"bandwidth": "wide"}, "bandwidth"),
        ({"trainable_features": "yes"}, "trainable_features"),
        ({"encoder": "ae"}, "encoder"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OCNN(**kwargs)


def test_contract_of_ocnn_with_small_nu(blobs, tmp_path):
    """The whole contract on a variant the shared table does not hold."""
    contract.run_detector_test(lambda: OCNN(hidden_units=32, nu=0.1, seed=0), blobs, tmp_path)
