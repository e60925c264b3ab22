"""What every detector must satisfy; reused by each detector's test module.

`run_detector_test(factory, data, tmp_path)` runs all of it on one detector,
as Keras' `run_layer_test` does for a layer; `tests/models/test_contract.py`
runs the same checks, one test each, on every detector of `tests/detectors.py`.
"""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score


def check_scores_shape_and_dtype(model, x):
    scores = model.score(x)
    assert scores.shape == (len(x),)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert np.std(scores) > 0, "scores are constant"
    return scores


def check_input_types_agree(model, x):
    reference = model.score(x)
    np.testing.assert_allclose(
        model.score(pd.DataFrame(x.reshape(len(x), -1)).to_numpy().reshape(x.shape)),
        reference,
        rtol=1e-6,
    )
    if x.ndim == 2:
        np.testing.assert_allclose(model.score(pd.DataFrame(x)), reference, rtol=1e-6)
    np.testing.assert_allclose(model.score(tf.constant(x)), reference, rtol=1e-6)
    # Other batch sizes round differently in float32: relative to the largest score, since
    # a score may be a difference of two such numbers (Deep SVDD's d - R^2 near 0).
    atol = 1e-6 * max(1.0, float(np.abs(reference).max()))
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(37)
    np.testing.assert_allclose(model.score(dataset), reference, rtol=1e-5, atol=atol)
    labelled = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(64)
    np.testing.assert_allclose(model.score(labelled), reference, rtol=1e-5, atol=atol)
    for batch_size in (1, 7, 256):
        np.testing.assert_allclose(
            model.score(x[:50], batch_size=batch_size), reference[:50], rtol=1e-5, atol=atol
        )


def check_threshold(model, x):
    with pytest.raises(ValueError, match="calibrate"):
        model.predict_labels(x)
    for contamination in (0.05, 0.1, 0.2):
        threshold = model.calibrate(x, contamination=contamination)
        assert model.threshold == pytest.approx(threshold)
        flagged = model.predict_labels(x)
        assert set(np.unique(flagged)) <= {0, 1}
        assert abs(flagged.mean() - contamination) <= 0.01
        np.testing.assert_array_equal(model.is_anomaly(x), flagged)
    model.calibrate(x, fpr=0.05)
    assert abs(model.predict_labels(x).mean() - 0.05) <= 0.01


def check_save_load(model, x, tmp_path):
    model.calibrate(x, contamination=0.1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.score(x), model.score(x))
    assert loaded.threshold == model.threshold
    np.testing.assert_array_equal(loaded.predict_labels(x), model.predict_labels(x))
    for method in model.score_methods:
        np.testing.assert_array_equal(loaded.score(x, method=method), model.score(x, method=method))
    # Training continues from the restored optimizer state (an ensemble's members hold theirs).
    trainees = getattr(model, "members", [model])
    for original, restored in zip(trainees, getattr(loaded, "members", [loaded]), strict=True):
        assert int(restored.optimizer.iterations) == int(original.optimizer.iterations) > 0
    loaded.fit(x, epochs=1, batch_size=64, verbose=0)
    return loaded


def check_config_round_trip(model):
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config


def check_fit_changes_weights(factory, x):
    model = factory()
    model.build((None, *x.shape[1:]))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, epochs=1, batch_size=32, verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


def check_bad_input(model, x):
    n_features = x.shape[1]
    bad_nan = x.copy()
    bad_nan[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.score(bad_nan)
    bad_inf = x.copy()
    bad_inf[5, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        model.score(bad_inf)
    with pytest.raises(ValueError, match=f"{n_features + 1} features.*expects {n_features}"):
        model.score(np.zeros((4, n_features + 1), dtype="float32"))
    with pytest.raises(ValueError, match="empty"):
        model.score(np.zeros((0, n_features), dtype="float32"))
    with pytest.raises(ValueError, match="strings"):
        model.score(np.array([["a"] * n_features] * 3))
    with pytest.raises(ValueError, match="rank"):
        model.score(x[0])
    with pytest.raises(ValueError, match="rank"):
        model.score(x[:, :, None])
    with pytest.raises(ValueError, match="NaN"):
        model.score(tf.data.Dataset.from_tensor_slices(bad_nan).batch(16))
    with pytest.raises(ValueError, match="shape"):
        model.score(tf.data.Dataset.from_tensor_slices(x[:, :-1]).batch(16))
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad_nan, epochs=1, verbose=0)


#: AUROC floor of a score method on the blobs' planted anomalies (uniform in [-8, 8]^16,
#: far from the Gaussian blobs) after 3 epochs (measured 0.96-1.0 for most score methods).
FLOOR = 0.9


def check_score_methods(model, data, floors=None, far=None):
    """Every score method gives finite `(batch,)` scores that rank `data`'s anomalies.

    Args:
        floors: method -> AUROC floor (`None`: no floor); default `FLOOR`.
        far: method -> factor the anomalies are moved out by first (default 1).

    Returns:
        `{method: scores of data.x_test}`.
    """
    floors, far = floors or {}, far or {}
    x, y = data.x_test, data.y_test
    normal, anomalies = x[y == 0], x[y == 1]
    labels = np.repeat([0, 1], [len(normal), len(anomalies)])
    scores = {}
    for method in model.score_methods:
        scores[method] = model.score(x, method=method)
        assert scores[method].shape == (len(x),), method
        assert np.isfinite(scores[method]).all(), method
        floor = floors.get(method, FLOOR)
        if floor is None:
            continue
        shifted = far.get(method, 1.0) * anomalies
        planted = model.score(np.concatenate([normal, shifted]), method=method)
        value = roc_auc_score(labels, planted)
        assert value >= floor, (method, value)
    with pytest.raises(ValueError, match="method must be one of"):
        model.score(x, method="nope")
    return scores


def run_detector_test(
    factory, data, tmp_path, *, epochs=3, floors=None, far=None, scoring_model=False
):
    """The whole contract for the detector `factory()` makes, trained on `data.x_train`.

    Training changes the weights; scores have the right shape, dtype and
    variation, every score method ranks `data`'s anomalies (`floors`, `far`:
    see `check_score_methods`), every input type and batch size agrees,
    thresholds flag what they promise, save/load and `get_config` round-trip
    exactly, bad input is refused with a clear error and (`scoring_model`)
    the scoring model embeds, saves and exports. Returns the trained model.
    """
    check_fit_changes_weights(factory, data.x_train[:256])
    model = factory()
    model.fit(data.x_train, epochs=epochs, batch_size=64, verbose=0)
    check_scores_shape_and_dtype(model, data.x_test)
    check_score_methods(model, data, floors, far)
    check_input_types_agree(model, data.x_test)
    check_threshold(model, data.x_test)
    check_save_load(model, data.x_test, tmp_path)
    check_config_round_trip(model)
    check_bad_input(model, data.x_test)
    if scoring_model:
        check_scoring_model(model, data.x_test, tmp_path)
    return model


def auroc(model, x, y, method=None):
    return roc_auc_score(y, model.score(x, method=method))


def check_scoring_model(model, x, tmp_path):
    """`scoring_model()` is a functional Keras model x -> score that embeds, saves and exports."""
    import keras

    reference = model.score(x)
    atol = 1e-6 * max(1.0, float(np.abs(reference).max()))
    scorer = model.scoring_model()
    np.testing.assert_allclose(scorer.predict(x, verbose=0), reference, rtol=1e-5, atol=atol)
    # Embedded in a larger functional model, next to another output.
    inputs = keras.Input(shape=x.shape[1:])
    outer = keras.Model(inputs, {"score": scorer(inputs), "mean": keras.ops.mean(inputs, axis=1)})
    np.testing.assert_allclose(outer(x)["score"], reference, rtol=1e-5, atol=atol)
    model.calibrate(x, contamination=0.1)
    labelled = model.scoring_model(with_label=True)
    outputs = labelled.predict(x, verbose=0)
    np.testing.assert_array_equal(outputs["is_anomaly"].astype(int), model.is_anomaly(x))
    labelled.save(tmp_path / "scorer.keras")
    loaded = keras.models.load_model(tmp_path / "scorer.keras")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0)["score"], reference, rtol=1e-5, atol=atol
    )
    labelled.export(tmp_path / "scorer", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "scorer"))  # kept: it owns the variables
    served = restored.serve(tf.constant(x))
    np.testing.assert_allclose(served["score"], reference, rtol=1e-5, atol=atol)
    np.testing.assert_array_equal(np.asarray(served["is_anomaly"]).astype(int), model.is_anomaly(x))
