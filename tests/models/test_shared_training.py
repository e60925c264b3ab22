"""A configuration's traced training loop, shared by its later models, trains each as its own."""

import keras
import numpy as np
import pytest

from keras_deepad.models import AE, _shared_steps
from tests.models.test_keras_training import EVERY_DETECTOR, FACTORIES, _low_rank


def _state(model):
    # Not the threshold: NaN until calibrate.
    return [np.asarray(v) for v in model.weights if "threshold" not in v.path]


def _assert_same(a, b):
    for u, v in zip(_state(a), _state(b), strict=True):
        np.testing.assert_array_equal(u, v)


def _shared(model):
    """Whether the model (or, for an ensemble, one of its members) ran a shared trace."""
    return any(
        getattr(m, "_shared_training_graph", False) for m in [model, *getattr(model, "members", [])]
    )


#: Configurations whose trace captures something besides their variables, so they keep
#: their own: the L1 activity regulariser of `ae-borghesi` holds its factor as an eager tensor.
UNSHARED = {"ae-borghesi"}


@pytest.fixture(autouse=True)
def _fresh_templates():
    _shared_steps.clear()
    yield
    _shared_steps.clear()


@pytest.mark.parametrize("name", EVERY_DETECTOR)
def test_the_shared_training_graph_trains_as_a_models_own(name):
    """A template of another seed trained on other data (other scaler statistics, other
    state, other seed-generator states) leaves nothing of its own in a later model's
    training: weights, history and scores equal a model of the same configuration that
    traced its own loop."""
    x = _low_rank(256)
    model = FACTORIES[name]()
    template = type(model).from_config({**model.get_config(), "seed": 7})
    template.fit(_low_rank(256, seed=5) * 3.0 - 7.0, epochs=2, batch_size=64, verbose=0)
    assert not _shared(template)

    shared = FACTORIES[name]()
    history = shared.fit(x, epochs=2, batch_size=64, verbose=0).history
    assert _shared(shared) == (name not in UNSHARED)

    own = FACTORIES[name]()
    for model in [own, *getattr(own, "members", [])]:
        model.share_training_graph = False
    own_history = own.fit(x, epochs=2, batch_size=64, verbose=0).history
    assert not _shared(own)

    # (An ensemble's keys name its members, which differ per object: compared in order.)
    assert len(history) == len(own_history)
    for ours, theirs in zip(history.values(), own_history.values(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    _assert_same(shared, own)
    np.testing.assert_array_equal(shared.score(x), own.score(x))
    # ... and the template itself is untouched by the later models' training.
    before = _state(template)
    FACTORIES[name]().fit(x, epochs=1, batch_size=64, verbose=0)
    for u, v in zip(before, _state(template), strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_weighted_fit_shares_the_templates_trace_of_weighted_batches():
    """Another input structure (rows and weights) binds the template's trace of that one."""
    x = _low_rank(256)
    weights = np.random.default_rng(0).uniform(0.0, 2.0, len(x)).astype("float32")
    AE(hidden_units=(16,), latent_dim=4, seed=3).fit(x, epochs=1, batch_size=32, verbose=0)
    runs = []
    for share in (True, False):
        model = AE(hidden_units=(16,), latent_dim=4, seed=0)
        model.share_training_graph = share
        history = model.fit(x, sample_weight=weights, epochs=2, batch_size=32, verbose=0)
        assert getattr(model, "_shared_training_graph", False) == share
        runs.append((history.history["loss"], _state(model)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for u, v in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(u, v)


def test_a_frozen_layer_or_another_optimizer_is_another_configuration():
    x = _low_rank(256)
    AE(hidden_units=(16,), latent_dim=4, seed=0).fit(x, epochs=1, batch_size=64, verbose=0)

    frozen = AE(hidden_units=(16,), latent_dim=4, seed=0)
    frozen.build((None, x.shape[1]))
    frozen.encoder.trainable = False
    encoder = [np.asarray(w) for w in frozen.encoder.weights]
    frozen.fit(x, epochs=2, batch_size=64, verbose=0)
    assert not getattr(frozen, "_shared_training_graph", False)
    for before, after in zip(encoder, frozen.encoder.weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))

    slower = AE(hidden_units=(16,), latent_dim=4, seed=0)
    slower.compile(keras.optimizers.Adam(1e-4))
    slower.fit(x, epochs=1, batch_size=64, verbose=0)
    assert not getattr(slower, "_shared_training_graph", False)


def test_a_function_set_on_the_instance_keeps_its_own_trace():
    x = _low_rank(256)
    AE(hidden_units=(16,), latent_dim=4, seed=0).fit(x, epochs=1, batch_size=64, verbose=0)
    doubled = AE(hidden_units=(16,), latent_dim=4, seed=0)
    plain = doubled.per_sample_loss
    doubled.per_sample_loss = lambda t, training=False: tuple(
        [2.0 * plain(t, training=training)[0], {}]
    )
    loss = doubled.fit(x, epochs=1, batch_size=64, verbose=0).history["loss"][0]
    assert not getattr(doubled, "_shared_training_graph", False)
    reference = AE(hidden_units=(16,), latent_dim=4, seed=0)
    reference.share_training_graph = False
    expected = reference.fit(x, epochs=1, batch_size=64, verbose=0).history["loss"][0]
    np.testing.assert_allclose(loss, 2.0 * expected, rtol=1e-5)


def test_compiled_metrics_or_loss_keep_a_models_own_trace():
    x = _low_rank(256)
    AE(hidden_units=(16,), latent_dim=4, seed=0).fit(x, epochs=1, batch_size=64, verbose=0)
    for compile_args in ({"metrics": ["mae"]}, {"loss": "mae"}):
        model = AE(hidden_units=(16,), latent_dim=4, seed=0)
        model.compile(**compile_args)
        model.fit(x, epochs=1, batch_size=64, verbose=0)
        assert not getattr(model, "_shared_training_graph", False), compile_args


def test_templates_are_bounded():
    x = _low_rank(64)
    for latent in range(_shared_steps.MAX_TEMPLATES + 3):
        AE(hidden_units=(4,), latent_dim=latent + 1, seed=0).fit(x, epochs=1, verbose=0)
    assert len(_shared_steps._TEMPLATES) == _shared_steps.MAX_TEMPLATES
