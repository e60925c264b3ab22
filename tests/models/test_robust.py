"""Training on contaminated data: percentile loss, cumulative error scoring, knee stopping."""

import math
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from keras_deepad.callbacks import (
    CumulativeErrorScoring,
    KneeEarlyStopping,
    find_knee,
    running_mean,
)
from keras_deepad.losses import percentile_mean, percentile_weights
from keras_deepad.models import AE, VAE
from keras_deepad.registry import get_detector

#: The plain network these tests were written for: linear code, no dropout, min-max inputs.
PLAIN_AE = {"latent_activation": None, "dropout": 0.0, "normalization": "minmax"}


def manifold_data(seed, n_normal=450, contamination=0.1, dim=16, noise=0.05):
    """Normal data on a 2-D curved manifold, anomalies on another (1-D) one.

    The anomalies are easy to learn: an autoencoder trained on data that
    contains them learns to reconstruct them too, unless they are kept out.
    Returns the contaminated training set with its labels and a test set.
    """
    rng = np.random.default_rng(seed)
    w_normal, w_anomal = rng.normal(size=(2, dim)), rng.normal(size=(1, dim))

    def draw(n, w):
        return np.tanh(rng.normal(size=(n, len(w))) @ w) + noise * rng.normal(size=(n, dim))

    n_anomal = round(contamination * n_normal / (1 - contamination))
    x = np.concatenate([draw(n_normal, w_normal), draw(n_anomal, w_anomal)]).astype("float32")
    y = np.repeat([0, 1], [n_normal, n_anomal])
    order = rng.permutation(len(x))
    x_test = np.concatenate([draw(300, w_normal), draw(30, w_anomal)]).astype("float32")
    return x[order], y[order], x_test, np.repeat([0, 1], [300, 30])


# ------------------------------------------------------------ percentile loss
def test_the_cut_is_at_or_above_the_batch_quantile():
    values = np.random.default_rng(0).permutation(21).astype("float32")
    # q = 0.95 of 0..20 is exactly 19: the sample equal to the quantile is cut too.
    weights = np.asarray(percentile_weights(values, 0.95))
    np.testing.assert_array_equal(weights, (values < 19).astype("float32"))
    assert weights.sum() == 19
    # Between order statistics (q = 0.95 of 0..9 is 8.55) only the larger side goes.
    weights = np.asarray(percentile_weights(np.arange(10, dtype="float32"), 0.95))
    np.testing.assert_array_equal(weights, [1] * 9 + [0])
    for q in (0.5, 0.8, 0.9, 0.99):
        random = np.random.default_rng(1).exponential(size=64).astype("float32")
        np.testing.assert_array_equal(
            np.asarray(percentile_weights(random, q)), random < np.quantile(random, q)
        )


def test_planted_outliers_get_exactly_zero_gradient_weight():
    losses = np.random.default_rng(0).uniform(0.5, 1.5, size=32).astype("float32")
    outliers = [3, 11, 29]
    losses[outliers] = 1e4
    per_sample = tf.Variable(losses)
    with tf.GradientTape() as tape:
        loss = percentile_mean(per_sample, 0.9)  # cuts the 4 largest of 32
    grad = tape.gradient(loss, per_sample).numpy()
    kept = losses < np.quantile(losses, 0.9)
    assert kept.sum() == 28 and not kept[outliers].any()
    assert (grad[outliers] == 0).all() and (grad[~kept] == 0).all()
    np.testing.assert_allclose(grad[kept], 1 / 28, rtol=1e-6)
    np.testing.assert_allclose(float(loss), losses[kept].mean(), rtol=1e-6)


def test_all_tied_losses_keep_every_sample():
    per_sample = tf.Variable(np.full(8, 2.5, dtype="float32"))
    with tf.GradientTape() as tape:
        loss = percentile_mean(per_sample, 0.95)
    assert float(loss) == 2.5
    np.testing.assert_allclose(tape.gradient(loss, per_sample).numpy(), 1 / 8)
    assert float(percentile_mean(tf.constant([7.0]), 0.95)) == 7.0  # a batch of one


def test_outlier_inputs_get_zero_gradient_through_the_model(rng):
    x = rng.normal(size=(32, 6)).astype("float32")
    # Deterministic forward pass (no dropout): the two gradient passes must see the same network.
    model = AE(hidden_units=(8,), latent_dim=2, percentile_loss=0.85, seed=0, **PLAIN_AE)
    model.build((None, 6))
    model.scaler.adapt(x)
    outliers = [0, 7, 19, 30]
    x[outliers] *= 100.0
    x_t = tf.constant(x)

    def gradients(reduce):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_t)
            per_sample, _ = model.per_sample_loss(x_t, training=True)
            loss = reduce(per_sample)
        return (
            per_sample.numpy(),
            tape.gradient(loss, x_t).numpy(),
            [g.numpy() for g in tape.gradient(loss, model.trainable_weights)],
        )

    per_sample, grad_x, grad_w = gradients(model.reduce_loss)
    kept = per_sample < np.quantile(per_sample, 0.85)  # between order statistics 26 and 27
    assert not kept[outliers].any() and kept.sum() == 27
    assert (grad_x[outliers] == 0).all()
    assert (np.abs(grad_x[kept]).sum(axis=1) > 0).all()
    # The same step as training on the kept samples alone.
    _, _, grad_kept = gradients(lambda v: tf.reduce_mean(tf.boolean_mask(v, kept)))
    for a, b in zip(grad_w, grad_kept, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # Plain training lets the outliers pull.
    _, grad_plain, _ = gradients(tf.reduce_mean)
    assert (np.abs(grad_plain[outliers]).sum(axis=1) > 0).all()


def test_graph_mode_matches_eager():
    values = np.random.default_rng(2).exponential(size=50).astype("float32")
    fn = tf.function(
        lambda v: percentile_mean(v, 0.9), input_signature=[tf.TensorSpec((None,), tf.float32)]
    )
    np.testing.assert_allclose(float(fn(values)), float(percentile_mean(values, 0.9)), rtol=1e-6)
    np.testing.assert_allclose(float(fn(values[:7])), float(percentile_mean(values[:7], 0.9)))


def test_vae_cuts_on_its_whole_objective(rng):
    x = rng.normal(size=(40, 5)).astype("float32")
    model = VAE(hidden_units=(8,), latent_dim=2, percentile_loss=0.9, seed=0)
    model.build((None, 5))
    model.scaler.adapt(x)
    per_sample, parts = model.per_sample_loss(tf.constant(x), training=False)
    per_sample = per_sample.numpy()
    np.testing.assert_allclose(
        per_sample, parts["reconstruction_loss"].numpy() + parts["kl_loss"].numpy(), rtol=1e-5
    )
    expected = per_sample[per_sample < np.quantile(per_sample, 0.9)].mean()
    np.testing.assert_allclose(float(model.reduce_loss(per_sample)), expected, rtol=1e-6)


def test_config_round_trip():
    models = (
        AE(hidden_units=(8,), latent_dim=2, percentile_loss=0.9),
        get_detector("vae-robust", hidden_units=(8,), latent_dim=2),
    )
    for model in models:
        config = model.get_config()
        assert config["percentile_loss"] == (0.9 if isinstance(model, AE) else 0.95)
        clone = type(model).from_config(config)
        assert clone.percentile_loss == model.percentile_loss and clone.get_config() == config
    assert AE().get_config()["percentile_loss"] is None
    assert AE(percentile_loss=True).percentile_loss == 0.95
    assert get_detector("ae-robust").percentile_loss == 0.95


@pytest.mark.parametrize("q", [0, 1, 1.5, -0.2, float("nan"), "high", [0.9]])
def test_bad_quantile_is_refused(q):
    with pytest.raises(ValueError, match=r"percentile_loss must be .* Received: percentile_loss="):
        AE(percentile_loss=q)
    with pytest.raises(ValueError, match="percentile_loss"):
        VAE(percentile_loss=q)


def test_percentile_loss_beats_plain_training_on_contaminated_data():
    """10 % anomalies in training: the percentile loss keeps them from being learned.

    While developing, seeds 0-7 all favoured the percentile loss on the test
    set (margins 0.04 to 0.34, the mean squared error); seed 0 gives 0.80 -> 0.995 with the
    default "hybrid_knn" score (0.87 -> 0.99 with the mean squared error).
    """
    x, _, x_test, y_test = manifold_data(seed=0)
    aurocs = {}
    for q in (None, 0.9):
        keras.utils.set_random_seed(0)
        model = AE(hidden_units=(32,), latent_dim=8, percentile_loss=q, seed=0, **PLAIN_AE)
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit(x, epochs=25, batch_size=32, verbose=0)
        aurocs[q] = roc_auc_score(y_test, model.score(x_test))
    assert aurocs[0.9] >= 0.95
    assert aurocs[0.9] >= aurocs[None] + 0.05, aurocs


MIRRORED = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_deepad.models import AE
    from keras_deepad.losses import percentile_mean

    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    x[:6] *= 50.0  # six planted outliers, all in the first replica's half

    def make(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = AE(hidden_units=(8,), latent_dim=2, latent_activation=None, dropout=0.0,
                       normalization="minmax", seed=0, percentile_loss=0.9)
            model.build((None, 8))
            model.compile(keras.optimizers.SGD(0.1))
        model.scaler.adapt(x)
        return model

    def sgd_step(model, loss_fn):
        before = [w.numpy() for w in model.trainable_weights]
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, model.trainable_weights)
        return [b - 0.1 * g.numpy() for b, g in zip(before, grads)]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, reference = make(strategy), make(tf.distribute.get_strategy())
    loss = lambda a: percentile_mean(reference.per_sample_loss(tf.constant(a))[0], 0.9)
    # Each replica cuts its own half; gradients are summed over replicas of loss / 2.
    per_replica = sgd_step(reference, lambda: (loss(x[:32]) + loss(x[32:])) / 2)
    whole_batch = sgd_step(reference, lambda: loss(x))
    mirrored.fit(tf.data.Dataset.from_tensor_slices(x).batch(64), epochs=1, verbose=0)
    after = [w.numpy() for w in mirrored.trainable_weights]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(after, per_replica))
    diff_whole = max(float(np.abs(a - b).max()) for a, b in zip(after, whole_batch))
    print(diff, diff_whole)
    assert diff < 1e-6 and diff_whole > 1e-5, (diff, diff_whole)
    """
)


def test_mirrored_strategy_cuts_per_replica(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------- cumulative error scoring
class _WeightSnapshots(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(self.model.get_weights())


@pytest.fixture(scope="module")
def robust_run(blobs):
    """A real fit with percentile loss, knee stopping and cumulative error scoring."""
    keras.utils.set_random_seed(0)
    x = blobs.x_train[:200]
    model = AE(hidden_units=(16,), latent_dim=3, percentile_loss=0.95, seed=0, **PLAIN_AE)
    stopper, ces = KneeEarlyStopping(), CumulativeErrorScoring(x, batch_size=64)
    snapshots = _WeightSnapshots()
    history = model.fit(
        x, epochs=100, batch_size=32, verbose=0, callbacks=[stopper, ces, snapshots]
    )
    return x, model, history.history["loss"], stopper, ces, snapshots.snapshots


def test_cumulative_scores_are_the_sum_of_the_recorded_epoch_errors(robust_run):
    x, model, losses, _, ces, snapshots = robust_run
    errors = ces.errors
    assert errors.shape == (len(losses), 200) and errors.dtype == np.float32
    np.testing.assert_array_equal(ces.scores, errors.sum(axis=0, dtype=np.float64))
    assert not np.allclose(errors[0], errors[-1])  # the rows are different epochs
    # Each row is the model's reconstruction error at the end of that epoch (its default
    # "hybrid_knn" score needs statistics that only exist once training ends).
    assert model.score_method == "hybrid_knn" and model.error_score_method == "mse"
    final = model.get_weights()
    for row, weights in zip(errors, snapshots, strict=True):
        model.set_weights(weights)
        np.testing.assert_allclose(row, model.score(x, method="mse"), rtol=1e-6)
    model.set_weights(final)
    # Training-set flags by cumulative score, on the cumulative scale.
    threshold = ces.threshold(contamination=0.1)
    assert threshold == pytest.approx(np.quantile(ces.scores, 0.9))
    np.testing.assert_array_equal(ces.flag(0.1), (ces.scores > threshold).astype(int))
    assert abs(ces.flag(0.1).mean() - 0.1) <= 0.01
    with pytest.raises(ValueError, match="contamination"):
        ces.flag(1.5)


def test_cumulative_scoring_restarts_with_each_fit(robust_run):
    x, model, _, _, ces, _ = robust_run
    mae = CumulativeErrorScoring(x, method="mae")
    model.fit(x, epochs=2, batch_size=64, verbose=0, callbacks=[ces, mae])
    assert ces.errors.shape == mae.errors.shape == (2, 200)
    np.testing.assert_allclose(mae.errors[-1], model.score(x, method="mae"), rtol=1e-6)
    with pytest.raises(ValueError, match="fit the model"):
        _ = CumulativeErrorScoring(x).scores
    with pytest.raises(ValueError, match="training data"):
        CumulativeErrorScoring(None)


# ----------------------------------------------------------------- Kneedle
def test_find_knee_on_hand_made_curves():
    # Two straight pieces: the slope changes at index 4.
    assert find_knee([10, 8, 6, 4, 2, 1.8, 1.6, 1.4, 1.2, 1.0]) == 4
    assert find_knee([5.0, 1.0, 0.9, 0.8, 0.7, 0.6]) == 1
    # No knee: a straight line, a concave curve, a constant, too few points.
    assert find_knee(np.linspace(1, 0, 30)) is None
    assert find_knee(1 - np.linspace(0, 1, 30) ** 2) is None
    assert find_knee(np.ones(10)) is None
    assert find_knee([3.0, 1.0]) is None
    # A gentle bend is a knee for a small sensitivity only.
    gentle = 1 / (1 + np.arange(10) / 40)
    assert find_knee(gentle, sensitivity=0.25) == 4 and find_knee(gentle) is None


def test_find_knee_on_curves_with_known_knees():
    # Continuous Kneedle: the knee is where the scaled slope is -1.
    # y = 1/x on [1, 10]: -10/x^2 = -1 at x = sqrt(10).
    x = np.linspace(1, 10, 901)
    knee = find_knee(1 / x, x=x)
    assert abs(x[knee] - math.sqrt(10)) < 0.015
    assert find_knee(1 / np.arange(1.0, 11.0), x=np.arange(1.0, 11.0)) == 2  # x = 3
    # y = exp(-t/tau) on [0, T]: (T/tau) exp(-t/tau) / (1 - exp(-T/tau)) = 1.
    tau, big_t = 4.0, 40.0
    t = np.linspace(0, big_t, 801)
    expected = tau * math.log((big_t / tau) / (1 - math.exp(-big_t / tau)))
    assert abs(t[find_knee(np.exp(-t / tau), x=t)] - expected) < 0.06


def test_find_knee_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        find_knee([3, 2, 1], x=[0, 1])
    with pytest.raises(ValueError, match="finite"):
        find_knee([3, np.nan, 1])
    with pytest.raises(ValueError, match="increasing"):
        find_knee([3, 2, 1], x=[0, 2, 1])
    with pytest.raises(ValueError, match="sensitivity"):
        find_knee([3, 2, 1], sensitivity=-1)


def test_running_mean():
    np.testing.assert_allclose(running_mean([4, 2, 0, 2]), [4, 3, 2, 2])
    np.testing.assert_allclose(running_mean([4, 2, 0, 2], window=2), [4, 3, 1, 1])
    np.testing.assert_allclose(running_mean([4, 2, 0], window=1), [4, 2, 0])
    for bad in (0, -1, 1.5, True, "mean"):
        with pytest.raises(ValueError, match="smoothing"):
            running_mean([1, 2], window=bad)


# ------------------------------------------------------------ knee stopping
def _drive(callback, curve):
    """Feeds a loss curve to the callback as `fit` would; returns the epochs run."""
    model = AE(hidden_units=(4,), latent_dim=2)
    model.stop_training = False
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(curve):
        callback.on_epoch_end(epoch, {"loss": value})
        if model.stop_training:
            return epoch + 1
    return len(curve)


def test_knee_stopping_stops_a_flattened_curve_after_the_margin():
    t = np.arange(100.0)
    flattening = 0.05 + np.exp(-t / 3) + np.random.default_rng(0).normal(0, 0.002, 100)
    stopper = KneeEarlyStopping()
    ran = _drive(stopper, flattening)
    assert ran < 30 and stopper.stopped_epoch == ran - 1
    assert stopper.margin * (stopper.knee_epoch + 1) < ran
    # It stopped at the first epoch the rule allowed.
    replay = KneeEarlyStopping()
    assert not any(replay.should_stop(flattening[:n]) for n in range(1, ran))
    # A larger margin trains longer; min_epochs is respected.
    assert _drive(KneeEarlyStopping(margin=3.0), flattening) > ran
    assert _drive(KneeEarlyStopping(min_epochs=40), flattening) == 40


def test_knee_stopping_lets_a_still_decreasing_curve_run():
    t = np.arange(60.0)
    for curve in (1 - 0.01 * t, 1 / (1 + t / 100), np.exp(-t / 200)):
        stopper = KneeEarlyStopping()
        assert _drive(stopper, curve) == 60 and stopper.stopped_epoch is None


def test_knee_stopping_smoothing_options_and_errors():
    t = np.arange(100.0)
    curve = 0.05 + np.exp(-t / 3)
    for smoothing in (1, 5):
        stopper = KneeEarlyStopping(smoothing=smoothing, sensitivity=1.0)
        assert _drive(stopper, curve) < 30
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stopper = KneeEarlyStopping(monitor="val_loss")
        assert _drive(stopper, curve) == 100 and stopper.history == []
    assert any("'val_loss', which is not in the logs" in str(w.message) for w in caught)
    for kwargs, match in (
        ({"margin": 0.5}, "margin"),
        ({"min_epochs": 2}, "min_epochs"),
        ({"smoothing": 0}, "smoothing"),
        ({"sensitivity": -1}, "sensitivity"),
    ):
        with pytest.raises(ValueError, match=match):
            KneeEarlyStopping(**kwargs)
    assert _drive(KneeEarlyStopping(), [1.0, 0.5, float("nan")] + [0.4] * 20) == 23


def test_knee_stopping_in_a_real_fit(robust_run):
    _, _, losses, stopper, _, _ = robust_run
    ran = len(losses)
    assert ran < 100 and stopper.stopped_epoch == ran - 1
    assert stopper.history == pytest.approx(losses)
    assert stopper.margin * (stopper.knee_epoch + 1) < ran
    replay = KneeEarlyStopping()
    assert not any(replay.should_stop(losses[:n]) for n in range(1, ran))
