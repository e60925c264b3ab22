"""Bad hyperparameters, bad calls, bad data and divergence: each a clear error, never a model.

Table-driven: every case names the call, the exception type and a fragment of the message
that names the problem.
"""

import math
import os
import random
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deepad.callbacks import TrainingDivergedError
from keras_deepad.models import AAE, AE, OCNN, VAE, WAE, DeepSVDD

NAN, INF = math.nan, math.inf

HYPERPARAMETERS = [
    (VAE, {"beta": NAN}, "beta must be a finite number"),
    (VAE, {"beta": -1.0}, "beta must be in [0"),
    (VAE, {"mc_samples": 0}, "mc_samples must be in [1"),
    (VAE, {"logvar_range": (5.0, -5.0)}, "logvar_range must have low < high"),
    (WAE, {"lambda_": NAN}, "lambda_ must be a finite number"),
    (WAE, {"lambda_": -0.5}, "lambda_ must be >= 0"),
    (AAE, {"gradient_penalty": NAN}, "gradient_penalty must be a finite number"),
    (AAE, {"score_weight": INF}, "score_weight must be a finite number"),
    (AAE, {"latent_dim": 0}, "latent_dim must be a positive int"),
    (AAE, {"discriminator_units": 64}, "discriminator_units must be a list"),
    (AE, {"denoising_std": NAN}, "denoising_std must be a finite number"),
    (AE, {"latent_l1": -1.0}, "latent_l1 must be in [0"),
    (AE, {"hidden_units": 5}, "hidden_units must be a list of positive integers"),
    (AE, {"hidden_units": (64, 0)}, "hidden_units[1] must be in [1"),
    (AE, {"kernel_size": 2.5}, "kernel_size must be an integer"),
    (AE, {"dropout": NAN}, "dropout must be a finite number"),
    (AE, {"dropout": 1.0}, "dropout must be in [0, 1)"),
    (DeepSVDD, {"weight_decay": NAN}, "weight_decay must be a finite number"),
    (DeepSVDD, {"pretrain_learning_rate": -1}, "pretrain_learning_rate must be in (0"),
    (DeepSVDD, {"pretrain_epochs": -1}, "pretrain_epochs and warm_up_epochs must be >= 0"),
    (DeepSVDD, {"nu": 0.0}, "nu must be in (0, 1]"),
    (DeepSVDD, {"rep_dim": "8"}, "rep_dim must be an integer"),
    (OCNN, {"nu": 1.5}, "nu must be in (0, 1)"),
    (OCNN, {"bandwidth": 0.0}, "bandwidth must be positive"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    HYPERPARAMETERS,
    ids=[f"{c.__name__}-{next(iter(k))}={next(iter(k.values()))}" for c, k, _ in HYPERPARAMETERS],
)
def test_bad_hyperparameters_are_refused_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (
            AE,
            {"latent_dim": np.int64(2), "hidden_units": [np.int32(8)], "dropout": np.float32(0.1)},
        ),
        (VAE, {"beta": np.float64(0.5), "mc_samples": np.int64(4)}),
        (DeepSVDD, {"nu": np.float32(0.2), "rep_dim": np.int16(4), "pretrain_epochs": np.int64(0)}),
        (OCNN, {"nu": np.float64(0.3), "hidden_units": np.int64(16)}),
    ],
)
def test_numpy_scalars_are_accepted_where_python_ones_are(cls, kwargs):
    model = cls(**kwargs)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model.fit(x, epochs=1, batch_size=np.int64(32), verbose=0)
    assert np.isfinite(model.score(x, batch_size=np.int32(16))).all()


X = np.random.default_rng(0).normal(size=(128, 5)).astype("float32")

CALLS = [
    ("fit", {"epochs": -1}, "epochs must be in [1"),
    ("fit", {"epochs": 2.5}, "epochs must be an integer"),
    ("fit", {"batch_size": 0}, "batch_size must be in [1"),
    ("fit", {"batch_size": -5}, "batch_size must be in [1"),
    ("fit", {"steps_per_epoch": 0}, "steps_per_epoch must be in [1"),
    ("fit", {"initial_epoch": -1}, "initial_epoch must be in [0"),
    ("score", {"batch_size": 0}, "batch_size must be in [1"),
    ("score", {"batch_size": "64"}, "batch_size must be an integer"),
]


@pytest.mark.parametrize(("method", "kwargs", "message"), CALLS)
def test_bad_call_arguments_are_refused(method, kwargs, message):
    model = AE(hidden_units=(8,), latent_dim=2)
    if method == "score":
        model.fit(X, epochs=1, verbose=0)
        call = lambda: model.score(X, **kwargs)  # noqa: E731
    else:
        call = lambda: model.fit(X, verbose=0, **{"epochs": 1, **kwargs})  # noqa: E731
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.mark.parametrize("cls", [AE, VAE, AAE, WAE])
def test_a_nan_in_a_dataset_is_refused_before_training(cls):
    x = X.copy()
    x[70, 2] = np.nan
    data = tf.data.Dataset.from_tensor_slices(x).batch(32)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(batch 2, row 6"):
        cls().fit(data, epochs=1, verbose=0)


def _weights(model):
    # Not the threshold: NaN until calibrate (by design).
    return [w.numpy() for w in [*model.trainable_weights, *model.scaler.weights]]


@pytest.mark.parametrize("cls", [AE, VAE, DeepSVDD, OCNN])
def test_a_diverging_fit_raises_and_keeps_the_last_finite_weights(cls):
    model = cls(**({"pretrain_epochs": 0} if cls is DeepSVDD else {}))
    model.fit(X, epochs=1, batch_size=32, verbose=0)
    before = _weights(model)
    model.compile(keras.optimizers.SGD(1e30))
    with pytest.raises(
        TrainingDivergedError, match=r"NaN or infinite .* of epoch 1.*learning rate"
    ):
        model.fit(X * 1e3, epochs=3, batch_size=32, verbose=0)
    after = _weights(model)
    assert all(np.isfinite(w).all() for w in after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_fit_diverging_late_keeps_the_weights_of_the_epoch_it_names():
    """The state put back is the one of the epoch end the error names, not the fit's start."""
    model = AE(hidden_units=(8,), latent_dim=2, seed=0)
    kept = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept[epoch + 1] = _weights(model)

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 29:  # a NaN weight: the 30th epoch's loss is NaN
                kernel = model.trainable_weights[0]
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    with pytest.raises(TrainingDivergedError, match=r"epoch 30") as error:
        model.fit(X, epochs=40, batch_size=32, verbose=0, callbacks=[Record(), Poison()])
    epoch = int(re.search(r"weights from the end of epoch (\d+)", str(error.value)).group(1))
    assert 1 <= epoch <= 29
    for a, b in zip(kept[epoch], _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_check_finite_false_trains_on_and_a_nan_model_cannot_be_used(tmp_path):
    from keras_deepad.export import export_saved_model, export_tflite

    model = AE(hidden_units=(8,), latent_dim=2)
    model.compile(keras.optimizers.SGD(1e30))
    history = model.fit(X * 1e3, epochs=2, batch_size=32, verbose=0, check_finite=False)
    assert not np.isfinite(history.history["loss"][-1])
    for call, what in [
        (lambda: model.score(X), "score"),
        (lambda: model.calibrate(X), "calibrate"),
        (lambda: model.save(tmp_path / "m.keras"), "saving it"),
        (lambda: export_saved_model(model, tmp_path / "sm"), "exporting it"),
        (lambda: export_tflite(model, tmp_path / "m.tflite"), "exporting it"),
    ]:
        with pytest.raises(ValueError, match=f"NaN or infinite weights .* so {what}"):
            call()
    assert not list(tmp_path.rglob("*.keras")) and not list(tmp_path.rglob("*.tflite"))


def test_non_finite_scores_cannot_be_flagged():
    model = AE(hidden_units=(8,), latent_dim=2)
    model.fit(X, epochs=1, verbose=0)
    model.calibrate(X, contamination=0.1)
    with pytest.raises(ValueError, match="x contains 10 NaN value"):
        model.is_anomaly(np.full((2, 5), np.nan, np.float32))


def test_wae_mmd_on_batches_of_one_stays_finite():
    model = WAE(hidden_units=(8,), latent_dim=2)
    history = model.fit(X[:1], epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.score(X[:5])).all()
    # 65 rows in batches of 64: the last batch holds one row.
    assert np.isfinite(
        WAE(hidden_units=(8,)).fit(X[:65], epochs=2, verbose=0).history["loss"]
    ).all()


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (AE, {"hidden_units": (16,), "latent_dim": 2, "dropout": 0.2}),
        (VAE, {"hidden_units": (16,), "latent_dim": 2}),
        (AAE, {"hidden_units": (16,), "latent_dim": 2}),
        (WAE, {"hidden_units": (16,), "latent_dim": 2}),
        (DeepSVDD, {"hidden_units": (16,), "rep_dim": 4, "pretrain_epochs": 1}),
        (OCNN, {"hidden_units": 16}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_the_detector_seed_alone_makes_training_reproducible(cls, kwargs):
    """`seed=` fixes initial weights, dropout, noise and shuffling without a global seed."""

    def train(state):
        random.seed(state)
        np.random.seed(state)
        for _ in range(state):  # other unseeded random ops in the process
            tf.random.uniform(())
            keras.random.normal((2,))
        model = cls(seed=7, **kwargs)
        model.fit(X, epochs=2, batch_size=32, verbose=0)
        return model.score(X)

    first, second = train(1), train(2)
    np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-7)
    other = cls(seed=8, **kwargs)
    other.fit(X, epochs=2, batch_size=32, verbose=0)
    assert not np.allclose(other.score(X), first)


def test_export_version_must_be_a_whole_number(tmp_path):
    from keras_deepad.export import export_saved_model

    model = AE(hidden_units=(8,), latent_dim=2)
    model.fit(X, epochs=1, verbose=0)
    model.calibrate(X)
    for bad in (1.7, -1, "2", float("nan")):
        with pytest.raises(ValueError, match="version"):
            export_saved_model(model, tmp_path, "ae", version=bad)
    assert not (tmp_path / "ae" / "1").exists()
    assert export_saved_model(model, tmp_path, "ae", version=np.int64(3)).name == "3"


def test_builtin_normal_class_must_be_an_integer():
    from keras_deepad.data import load_builtin

    with pytest.raises(ValueError, match=r"normal_class must be an integer.*'3'"):
        load_builtin("digits", normal_class="3")
    assert len(load_builtin("digits", normal_class=np.int64(3)).x_train) > 0


def test_a_wrong_fashion_mnist_variable_is_an_error(monkeypatch, tmp_path):
    from keras_deepad.data import load_fashion_mnist

    monkeypatch.setenv("KERAS_DEEPAD_FASHION_MNIST", str(tmp_path / "nonexistent"))
    with pytest.raises(FileNotFoundError, match="KERAS_DEEPAD_FASHION_MNIST=.*nonexistent"):
        load_fashion_mnist(allow_download=False)


def test_a_scale_set_by_one_extreme_row_warns():
    x = X.copy()
    x[0, 3] = 1e30
    model = AE(hidden_units=(8,), latent_dim=2, normalization="minmax")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model.fit(x, epochs=1, verbose=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("feature(s) [3] is set by a few extreme values" in m for m in messages), messages


def test_huge_finite_inputs_score_finite_or_are_refused():
    model = AE(hidden_units=(8,), latent_dim=2)
    model.fit(X, epochs=1, verbose=0)
    huge = np.full((3, 5), 1e30, np.float32)
    scores = model.score(np.concatenate([X[:5], huge]))
    assert np.isfinite(scores).all()
    assert (scores[5:] == np.finfo(np.float32).max).all() and scores[:5].max() < scores[5:].min()
    with pytest.raises(ValueError, match=r"beyond the range of float32.*sample 1"):
        model.score(np.concatenate([X[:1], np.full((1, 5), 1e300)]).astype(np.float64))


def test_loading_without_importing_keras_deepad_names_the_module_to_import(tmp_path):
    """Keras 3 imports only its own packages' classes; its error names ours and says to import."""
    model = VAE(hidden_units=(8,), latent_dim=2, seed=0)
    model.fit(np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), verbose=0)
    model.save(tmp_path / "vae.keras")
    script = (
        "import sys, keras\n"
        "try:\n"
        f"    keras.saving.load_model({str(tmp_path / 'vae.keras')!r})\n"
        "except TypeError as err:\n"
        "    print(err)\n"
        "    sys.exit(3)\n"
        "assert 'keras_deepad' not in sys.modules\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 3, result.stdout + result.stderr
    message = result.stdout
    assert "Could not locate class 'VAE'" in message
    assert "imported" in message and "'module': 'keras_deepad.models.vae'" in message
    # After `import keras_deepad` the same file loads and scores as saved.
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.score(x), model.score(x))


def test_scoring_many_detectors_in_one_process_warns_of_no_retracing(caplog):
    """Each detector traces its score function once. TensorFlow counts traces by the Python
    code object, shared by every instance, so without a key of their own six detectors
    scored in a row (an ensemble's members, a benchmark loop) logged "triggered tf.function
    retracing" although nothing was traced twice."""
    import logging

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    logger = logging.getLogger("tensorflow")
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.addHandler(caplog.handler)
        try:
            for seed in range(6):
                model = DeepSVDD(hidden_units=(8,), rep_dim=4, pretrain_epochs=0, seed=seed)
                model.compile()
                model.fit(x, epochs=1, batch_size=32, verbose=0)
                model.score(x)
                model.embed(x)
        finally:
            logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
