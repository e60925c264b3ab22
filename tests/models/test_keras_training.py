"""Keras' own training features on every detector of the shared contract.

Every factory of `test_contract.FACTORIES` runs here, so a new detector added
there inherits these checks: mixed precision (loss scaling through the
optimizer, float32 losses and scores) and `sample_weight`.
"""

import keras
import numpy as np
import pytest

from keras_deepad.models import AAE, AE, WAE, DeepSVDD, DetectorEnsemble
from tests.models.test_contract import FACTORIES

#: One detector per training step runs in the default test run (WAE-GAN shares the AAE's
#: adversarial step, the ensemble its members' steps); the other presets of the shared
#: contract run these checks under `make test-all` (marked slow, to keep CI short).
FAMILIES = {"ae", "vae", "deep-svdd", "ocnn", "aae", "wae-mmd"}
EVERY_DETECTOR = [
    name if name in FAMILIES else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(FACTORIES)
]


def _low_rank(n=512, d=16, seed=0):
    """Rows on a 3-D linear subspace of R^16 plus a little noise: easy to fit well."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    w = rng.normal(size=(3, d))
    return (z @ w + 0.05 * rng.normal(size=(n, d)) + 5.0).astype("float32")


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _train(factory, x, epochs, **fit_kwargs):
    keras.utils.set_random_seed(0)
    model = factory()
    history = model.fit(x, epochs=epochs, batch_size=64, verbose=0, **fit_kwargs)
    return model, history.history["loss"]


#: Final training loss under mixed_float16 within this factor of float32's (issue target 1.5x).
MIXED_LOSS_RATIO = 1.5


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_mixed_precision_trains_like_float32(name, request):
    x = _low_rank(256)
    _, reference = _train(FACTORIES[name], x, epochs=6)
    request.getfixturevalue("mixed_precision")
    model, mixed = _train(FACTORIES[name], x, epochs=6)
    optimizers = [m.optimizer for m in getattr(model, "members", [model])]
    # compile() wrapped every optimizer in a LossScaleOptimizer; the step scales the loss.
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers)
    for extra in ("discriminator_optimizer", "generator_optimizer"):
        if getattr(model, extra, None) is not None:
            assert isinstance(getattr(model, extra), keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(mixed).all()
    # The loss went down about as far as in float32 (an unscaled step barely moves).
    assert abs(mixed[-1] - reference[-1]) <= (MIXED_LOSS_RATIO - 1) * abs(reference[-1]) + 1e-3, (
        reference,
        mixed,
    )
    scores = model.score(x[:50])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()


def test_mixed_precision_step_applies_the_loss_scale(mixed_precision):
    """Without scaling the loss, LossScaleOptimizer divides the gradients by 2**15.

    With SGD (which, unlike Adam, does not normalise the gradient's size) the
    unscaled step barely moves the weights while the scaled one trains.
    """
    x = _low_rank()

    def train(step_scales_the_loss):
        keras.utils.set_random_seed(0)
        model = FACTORIES["ae"]()
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        if not step_scales_the_loss:
            model.scale_for_gradients = lambda loss, optimizer=None: loss  # the old step
        return model.fit(x, epochs=10, batch_size=64, verbose=0).history["loss"]

    scaled, broken = train(True), train(False)
    assert scaled[-1] < 0.7 * scaled[0], scaled
    assert broken[0] - broken[-1] < 0.1 * (scaled[0] - scaled[-1]), (broken, scaled)


def _zero_weight_factory(name):
    factory = FACTORIES[name]
    if name.startswith("deep-svdd"):
        # Pretraining is weighted too, but then c moves with phi: compare phi alone.
        return lambda: factory().__class__.from_config(
            {**factory().get_config(), "pretrain_epochs": 0}
        )
    return factory


def _moved_by_the_objective(model):
    """Trainable variables the weighted objective moves (the critics see prior samples)."""
    if isinstance(model, DetectorEnsemble):
        return [v for m in model.members for v in _moved_by_the_objective(m)]
    if isinstance(model, AAE | WAE) and getattr(model, "discriminator", None) is not None:
        return [*model.encoder.trainable_variables, *model.decoder.trainable_variables]
    return list(model.trainable_variables)


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_zero_sample_weights_leave_the_model_unchanged(name):
    x = _low_rank(256)
    model = _zero_weight_factory(name)()
    model.build((None, x.shape[1]))
    variables = _moved_by_the_objective(model)
    before = [v.numpy().copy() for v in variables]
    model.fit(x, epochs=1, batch_size=64, verbose=0, sample_weight=np.zeros(len(x)))
    for variable, value in zip(variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_sample_weights_change_training(name):
    x = _low_rank(256)
    weights = np.where(np.arange(len(x)) % 2 == 0, 1.0, 0.1)
    outcomes = []
    for sample_weight in (None, weights):
        keras.utils.set_random_seed(0)
        model = FACTORIES[name]()
        model.fit(x, epochs=1, batch_size=64, verbose=0, sample_weight=sample_weight)
        outcomes.append(model.score(x[:20]))
    assert not np.allclose(outcomes[0], outcomes[1])


def test_unit_weights_equal_no_weights():
    x = _low_rank(256)
    scores = []
    for sample_weight in (None, np.ones(len(x))):
        keras.utils.set_random_seed(0)
        model = FACTORIES["ae-robust"]()
        model.fit(x, epochs=2, batch_size=64, verbose=0, sample_weight=sample_weight)
        scores.append(model.score(x[:20]))
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)


def test_weighted_center_is_the_weighted_mean():
    from keras_deepad.models.deep_svdd import adjust_center

    x = _low_rank(256)
    weights = np.where(np.arange(len(x)) < 128, 2.0, 0.0)
    model = DeepSVDD(hidden_units=(16,), rep_dim=8, pretrain_epochs=0, seed=0)
    model.build((None, x.shape[1]))
    model.scaler.adapt(x)
    model.compile()
    model.prepare_training(x, sample_weight=weights)
    # The rows of weight 0 do not pull c: it is the mean embedding of the others.
    expected = adjust_center(model.embed(x[:128]).astype(np.float64).mean(axis=0), 0.1)
    np.testing.assert_allclose(model.center.numpy(), expected, rtol=1e-5, atol=1e-6)
    unweighted = model.embed(x).astype(np.float64).mean(axis=0)
    assert not np.allclose(model.center.numpy(), unweighted, atol=1e-3)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(10), r"one weight per row of x: shape \(64,\)"),
        (np.full(64, np.nan), "finite"),
        (-np.ones(64), "non-negative"),
        (np.array(["a"] * 64), "numbers"),
    ],
)
def test_bad_sample_weights_are_refused(weights, message):
    x = _low_rank(64)
    model = FACTORIES["ae"]()
    with pytest.raises(ValueError, match=message):
        model.fit(x, epochs=1, verbose=0, sample_weight=weights)


RECONSTRUCTING = [
    p
    for p in EVERY_DETECTOR
    if not (p if isinstance(p, str) else p.values[0]).startswith(("deep-svdd", "ocnn", "ensemble"))
]


@pytest.mark.parametrize("name", RECONSTRUCTING)
def test_compiled_metrics_compare_input_and_reconstruction(name):
    x = _low_rank(256)
    model = FACTORIES[name]()
    model.compile(metrics=["mae", keras.metrics.RootMeanSquaredError(name="rmse")])
    history = model.fit(x, epochs=2, batch_size=64, verbose=0)
    assert {"mae", "rmse"} <= set(history.history), history.history.keys()
    logs = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    scaled = np.asarray(model.scaler(x))
    error = scaled - np.asarray(model.scaler(model.reconstruct(x)))
    assert logs["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-3)
    assert logs["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-3)


@pytest.mark.parametrize("name", ["deep-svdd", "ocnn"])
def test_metrics_without_a_reconstruction_are_refused(name):
    with pytest.raises(ValueError, match="no reconstruction for compiled metrics"):
        FACTORIES[name]().compile(metrics=["mae"])


@pytest.mark.parametrize("name", ["vae", "deep-svdd", "ocnn", "aae", "wae-mmd"])
def test_a_compiled_loss_is_refused_by_detectors_with_their_own_objective(name):
    with pytest.raises(ValueError, match=r"takes no compile\(loss=\.\.\.\)"):
        FACTORIES[name]().compile(loss="mse")


def test_ae_trains_on_a_compiled_keras_loss():
    x = _low_rank(256)
    histories = {}
    for key, build, loss in [
        ("constructor", lambda: AE(hidden_units=(32, 16), latent_dim=4, loss="mae", seed=0), None),
        ("compiled", FACTORIES["ae"], "mae"),
    ]:
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(loss=loss)
        histories[key] = model.fit(x, epochs=2, batch_size=64, verbose=0).history["loss"]
    # compile(loss="mae") trains exactly as the constructor's loss="mae".
    np.testing.assert_allclose(histories["compiled"], histories["constructor"], rtol=1e-5)
    keras.utils.set_random_seed(0)
    huber = FACTORIES["ae"]()
    huber.compile(loss=keras.losses.Huber(delta=0.1))
    loss = huber.fit(x, epochs=2, batch_size=64, verbose=0).history["loss"]
    assert loss[-1] < loss[0] and not np.allclose(loss, histories["compiled"])


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, batch_size):
        super().__init__()
        self.x, self.batch_size = x, batch_size

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i):
        return self.x[i * self.batch_size : (i + 1) * self.batch_size]


def _first_rows_statistics(model, x):
    mean = x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(model.scaler.offset.numpy(), mean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_infinite_dataset_with_steps_per_epoch(name):
    import tensorflow as tf

    x = _low_rank(256)
    data = tf.data.Dataset.from_tensor_slices(x).batch(32).repeat()
    model = FACTORIES[name]()
    history = model.fit(data, epochs=2, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(model.score(x[:20])).all()
    if model.normalization == "standard":  # adapted on the first 3 batches only
        _first_rows_statistics(model, x[:96])


def test_infinite_dataset_without_steps_is_refused():
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(_low_rank(64)).batch(32).repeat()
    with pytest.raises(ValueError, match="infinite dataset.*steps_per_epoch"):
        FACTORIES["ae"]().fit(data, epochs=1, verbose=0)


def test_adapt_steps_bounds_what_the_normaliser_reads():
    import tensorflow as tf

    x = _low_rank(256)
    model = FACTORIES["ae"]()
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), adapt_steps=2, verbose=0)
    _first_rows_statistics(model, x[:64])
    with pytest.raises(ValueError, match="adapt_steps must be a positive integer"):
        FACTORIES["ae"]().fit(tf.data.Dataset.from_tensor_slices(x).batch(32), adapt_steps=0)


@pytest.mark.parametrize("name", ["ae", "vae", "deep-svdd", "ocnn", "aae", "ensemble"])
def test_py_dataset(name):
    x = _low_rank(256)
    model = FACTORIES[name]()
    history = model.fit(_Batches(x, 32), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(model.score(x[:20])).all()
    if model.normalization == "standard":
        _first_rows_statistics(model, x)


def _generator(x, batch_size):
    while True:
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]


@pytest.mark.parametrize("name", ["ae", "deep-svdd", "ocnn", "wae-mmd"])
def test_generator_with_steps_per_epoch(name):
    x = _low_rank(256)
    model = FACTORIES[name]()
    history = model.fit(_generator(x, 32), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(model.score(x[:20])).all()


def test_generator_without_steps_is_refused():
    with pytest.raises(ValueError, match="generator: pass steps_per_epoch"):
        FACTORIES["ae"]().fit(_generator(_low_rank(64), 32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="cannot share one generator"):
        FACTORIES["ensemble"]().fit(_generator(_low_rank(64), 32), steps_per_epoch=2)


def test_sample_weight_with_a_dataset_is_refused():
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(_low_rank(64)).batch(32)
    with pytest.raises(ValueError, match=r"yields its weights with its batches"):
        FACTORIES["ae"]().fit(data, sample_weight=np.ones(64), verbose=0)


@pytest.mark.parametrize("name", ["ae", "vae", "deep-svdd", "ocnn", "aae", "wae-gan"])
def test_array_epochs_are_full_passes_with_automatic_steps_per_execution(name):
    x = _low_rank(200)
    model = FACTORIES[name]()
    history = model.fit(x, epochs=3, batch_size=64, verbose=0)
    assert len(history.history["loss"]) == 3
    # ceil(200 / 64) = 4 batches per epoch, a whole epoch per compiled call.
    assert int(model.optimizer.iterations.numpy()) == 3 * 4
    assert model.steps_per_execution == 4


@pytest.mark.parametrize(
    ("rows", "steps", "chosen"), [(420, 7, 7), (37 * 8, 37, 1), (48 * 8, 48, 24)]
)
def test_automatic_steps_per_execution_divides_the_epoch(rows, steps, chosen):
    model = AE(hidden_units=(8,), latent_dim=2, seed=0)
    model.fit(_low_rank(rows), epochs=2, batch_size=rows // steps + (rows % steps > 0), verbose=0)
    assert model.steps_per_execution == chosen
    assert int(model.optimizer.iterations.numpy()) == 2 * steps


@pytest.mark.parametrize("user_steps", [2, 3])
def test_a_users_steps_per_execution_is_kept(user_steps):
    x = _low_rank(200)
    model = FACTORIES["ae"]()
    model.compile(steps_per_execution=user_steps)
    model.fit(x, epochs=2, batch_size=64, verbose=0)
    assert model.steps_per_execution == user_steps
    # 3 does not divide the 4 batches of an epoch: Keras' own array epochs run instead.
    assert int(model.optimizer.iterations.numpy()) == 2 * 4


def test_an_unshuffled_array_trains_as_the_same_rows_in_a_dataset():
    import tensorflow as tf

    x = _low_rank(200)
    weights = []
    for data, kwargs in [
        (x, {"batch_size": 64, "shuffle": False}),
        (tf.data.Dataset.from_tensor_slices(x).batch(64), {}),
    ]:
        keras.utils.set_random_seed(0)
        model = AE(hidden_units=(16,), latent_dim=4, dropout=0.0, seed=0)
        model.compile(steps_per_execution=1)
        model.fit(data, epochs=2, verbose=0, **kwargs)
        weights.append([w.numpy() for w in model.trainable_weights])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _counting(fn, counter):
    def wrapped(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_fit_traces_each_train_step_once(name):
    """Optimizers are built before the first step: a step that made their slot variables
    would be traced twice by tf.function (about a second of every small fit)."""
    model = FACTORIES[name]()
    traces = []
    for member in getattr(model, "members", [model]):
        member.train_step = _counting(member.train_step, traces)
    model.fit(_low_rank(256), epochs=3, batch_size=64, verbose=0)
    assert len(traces) == len(getattr(model, "members", [model]))


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_the_first_score_after_fit_does_not_trace(name):
    x = _low_rank(256)
    model = FACTORIES[name]()
    model.fit(x, epochs=1, batch_size=64, verbose=0)
    function = model._score_functions[("score", model.score_method)]
    assert function.experimental_get_tracing_count() == 1
    scores = model.score(x)
    assert function.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(scores, model.compute_scores(x, model.score_method), rtol=1e-5)


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_jit_compiled_training(name):
    """`compile(jit_compile=True)` reaches Keras: the step runs through XLA and trains."""
    x = _low_rank(256)
    model = FACTORIES[name]()
    # Deep SVDD's dense default rate (1e-4) suits 50 epochs; 1e-3 makes 4 epochs' drop certain.
    optimizer = keras.optimizers.Adam(1e-3) if isinstance(model, DeepSVDD) else None
    model.compile(optimizer, jit_compile=True)
    members = getattr(model, "members", [model])
    assert all(member.jit_compile for member in members)
    losses = model.fit(x, epochs=4, batch_size=64, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    assert np.isfinite(model.score(x)).all()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_tensorboard_callback_writes_event_files(name, tmp_path):
    x = _low_rank(128)
    model = FACTORIES[name]()
    callback = keras.callbacks.TensorBoard(str(tmp_path), histogram_freq=1)
    history = model.fit(x, epochs=2, batch_size=64, verbose=0, callbacks=[callback])
    events = list((tmp_path / "train").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert len(history.history["loss"]) == 2


def test_tensorboard_without_its_package_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    model = FACTORIES["ae"]()
    with pytest.raises(ImportError, match=r"keras-deepad\[tensorboard\]"):
        model.fit(_low_rank(64), epochs=1, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    assert not model.built


def test_epoch_batches_visit_every_row_once_per_epoch_in_a_seeded_order():
    from keras_deepad.models._fit_helpers import epoch_batches

    rows = np.arange(10, dtype=np.float32)[:, None]
    weights = np.arange(10, dtype=np.float32) * 2

    def epochs(seed, n=3):
        it = iter(epoch_batches((rows, weights), 4, seed))
        out = []
        for _ in range(n):
            batches = [next(it) for _ in range(3)]  # 4 + 4 + 2 rows
            assert [len(b[0]) for b in batches] == [4, 4, 2]
            for x, w in batches:
                np.testing.assert_array_equal(np.asarray(w), 2 * np.asarray(x)[:, 0])
            out.append(np.concatenate([np.asarray(b[0])[:, 0] for b in batches]))
        return out

    shuffled = epochs(seed=5)
    for order in shuffled:
        assert sorted(order) == list(range(10))
    assert not np.array_equal(shuffled[0], shuffled[1])
    np.testing.assert_array_equal(np.stack(shuffled), np.stack(epochs(seed=5)))
    assert not np.array_equal(np.stack(shuffled), np.stack(epochs(seed=6)))
    np.testing.assert_array_equal(epochs(seed=None, n=1)[0], np.arange(10))


def test_large_arrays_train_on_gathered_batches_reproducibly(monkeypatch):
    from keras_deepad.models import _fit_helpers

    monkeypatch.setattr(_fit_helpers, "GATHER_ROWS", 100)
    x = _low_rank(200)
    weights = []
    for _ in range(2):
        model = AE(hidden_units=(8,), latent_dim=2, seed=0)
        model.fit(x, epochs=2, batch_size=64, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 2 * 4
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
