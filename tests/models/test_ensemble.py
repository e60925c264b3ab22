"""DetectorEnsemble: members, standardisation, combination, saving and one-graph exports."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

import keras_deepad
from keras_deepad.edge import EdgeDetector
from keras_deepad.export import export_saved_model, export_tflite
from keras_deepad.export.saved_model import METADATA_FILE
from keras_deepad.models import AE, OCNN, VAE, DeepSVDD, DetectorEnsemble, default_members
from keras_deepad.models.ensemble import _location_scale
from keras_deepad.registry import get_detector, train_detector
from tests.contract import run_detector_test
from tests.export.conftest import EVAL_BATCH


def small_members():
    """One member per family, tiny networks (each trains in about a second)."""
    return [
        AE(hidden_units=(16,), latent_dim=4, normalization="standard", seed=0),
        AE(hidden_units=(16,), latent_dim=4, normalization="standard", seed=1),
        VAE(
            hidden_units=(16,),
            latent_dim=3,
            mc_samples=4,
            score_method="reconstruction_probability",
            seed=2,
        ),
        DeepSVDD(hidden_units=(16,), rep_dim=8, pretrain_epochs=1, seed=3),
        OCNN(hidden_units=8, activation="sigmoid", seed=4),
    ]


@pytest.fixture(scope="module")
def trained(breast_cancer):
    """The registry preset with small members: compile (Adam) goes through train_detector."""
    model, history = train_detector(
        "ensemble",
        breast_cancer.x_train,
        epochs=3,
        batch_size=32,
        seed=0,
        params={"members": small_members()},
        verbose=0,
    )
    model.calibrate(breast_cancer.x_train, contamination=0.1)
    return model, history


@pytest.fixture(scope="module")
def exported(trained, breast_cancer, tmp_path_factory):
    model, _ = trained
    root = tmp_path_factory.mktemp("ensemble")
    saved_model = export_saved_model(model, root / "serving", "ensemble", version=1)
    tflite = export_tflite(saved_model, root / "ensemble-float32.tflite")
    return saved_model, tflite


def _atol(scores, rtol):
    # Standardised scores cross zero: relative tolerances get an absolute floor.
    return rtol * float(np.max(np.abs(scores)))


def test_fit_trains_every_member_and_detects_anomalies(trained, breast_cancer):
    model, history = trained
    scores = model.score(breast_cancer.x_test)
    auroc = roc_auc_score(breast_cancer.y_test, scores)
    assert auroc >= 0.9, auroc
    assert len(history.history["loss"]) == 3
    for i, member in enumerate(model.members):
        assert len(history.history[f"{i}:{member.name}/loss"]) == 3
        # Each member trained with its own copy of the compiled optimizer.
        assert int(member.optimizer.iterations) > 0
    assert len({id(member.optimizer) for member in model.members}) == len(model.members)
    np.testing.assert_allclose(
        history.history["loss"],
        np.mean([history.history[f"{i}:{m.name}/loss"] for i, m in enumerate(model.members)], 0),
        rtol=1e-6,
    )


def test_robust_standardization_is_median_and_iqr_of_training_scores(trained, breast_cancer):
    model, _ = trained
    x_train, x_test = breast_cancer.x_train, breast_cancer.x_test
    raw_train = np.stack([m.score(x_train) for m in model.members], axis=1).astype(np.float64)
    q25, median, q75 = np.quantile(raw_train, [0.25, 0.5, 0.75], axis=0)
    np.testing.assert_allclose(np.asarray(model.member_location), median, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(model.member_scale), q75 - q25, rtol=1e-6)
    raw_test = np.stack([m.score(x_test) for m in model.members], axis=1).astype(np.float64)
    standardised = (raw_test - median) / (q75 - q25)
    np.testing.assert_allclose(
        model.member_scores(x_test), standardised, rtol=1e-5, atol=_atol(standardised, 1e-6)
    )
    np.testing.assert_allclose(
        model.score(x_test), standardised.mean(axis=1), rtol=1e-5, atol=_atol(standardised, 1e-6)
    )


def test_combine_max_is_the_largest_standardised_member_score(trained, breast_cancer):
    model, _ = trained
    x = breast_cancer.x_test
    loc, scale = np.asarray(model.member_location), np.asarray(model.member_scale)
    standardised = np.stack([(m.score(x) - loc[i]) / scale[i] for i, m in enumerate(model.members)])
    expected = standardised.max(axis=0)
    got = model.score(x, method="max")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=_atol(expected, 1e-6))
    assert not np.allclose(got, model.score(x))
    assert DetectorEnsemble(small_members(), combine="max").score_method == "max"


def test_members_trained_elsewhere_are_combined_by_fit_standardization(trained, breast_cancer):
    model, _ = trained
    again = DetectorEnsemble(list(model.members))
    with pytest.raises(ValueError, match="fit_standardization"):
        again.score(breast_cancer.x_test)
    location, scale = again.fit_standardization(breast_cancer.x_train)
    np.testing.assert_array_equal(location, np.asarray(model.member_location))
    np.testing.assert_array_equal(scale, np.asarray(model.member_scale))
    np.testing.assert_allclose(
        again.score(breast_cancer.x_test), model.score(breast_cancer.x_test), rtol=1e-6
    )


def test_zscore_standardization_and_feature_scores(breast_cancer):
    x_train, x_test = breast_cancer.x_train, breast_cancer.x_test
    members = [AE(hidden_units=(8,), latent_dim=2, score_method="mse", seed=s) for s in (0, 1)]
    model = DetectorEnsemble(members, standardization="zscore")
    model.fit(x_train, epochs=1, batch_size=64, verbose=0)
    raw = np.stack([m.score(x_train) for m in members], axis=1).astype(np.float64)
    np.testing.assert_allclose(np.asarray(model.member_location), raw.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.member_scale), raw.std(axis=0), rtol=1e-6)
    per_feature = model.feature_scores(x_test)
    assert per_feature.shape == x_test.shape
    scale = np.asarray(model.member_scale)
    expected = np.mean([m.feature_scores(x_test) / scale[i] for i, m in enumerate(members)], 0)
    np.testing.assert_allclose(per_feature, expected, rtol=1e-5, atol=1e-6)
    # The members score the mean of their feature scores (mse): so does the ensemble, up to
    # the constant mean(location / scale).
    offset = np.mean(np.asarray(model.member_location) / scale)
    np.testing.assert_allclose(
        per_feature.mean(axis=1), model.score(x_test) + offset, rtol=1e-4, atol=1e-5
    )


class NoFeatureScores(AE):
    """A detector without per-feature scores (as a third-party detector may be)."""

    compute_feature_scores = None


def test_feature_scores_need_every_member_to_have_them(breast_cancer):
    model = DetectorEnsemble([AE(), NoFeatureScores(name="plain")])
    assert not model.has_feature_scores
    with pytest.raises(ValueError, match=r"members\[1\] plain \(NoFeatureScores\).*member_scores"):
        model.feature_scores(breast_cancer.x_test[:5])


def test_keras_save_load_restores_members_and_fitted_state(trained, breast_cancer, tmp_path):
    model, _ = trained
    path = tmp_path / "ensemble.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is DetectorEnsemble and loaded.get_config() == model.get_config()
    x = breast_cancer.x_test
    np.testing.assert_allclose(loaded.score(x), model.score(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        loaded.score(x, method="max"), model.score(x, method="max"), rtol=1e-6, atol=1e-6
    )
    assert loaded.threshold == model.threshold
    for name in ("member_location", "member_scale", "score_quantiles"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    for original, restored in zip(model.members, loaded.members, strict=True):
        assert type(restored) is type(original)
        for a, b in zip(original.weights, restored.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=a.path)
        assert int(restored.optimizer.iterations) == int(original.optimizer.iterations)
    svdd, ocnn = loaded.members[3], loaded.members[4]
    np.testing.assert_array_equal(svdd.center, model.members[3].center)
    assert float(np.asarray(ocnn.rho)) == float(np.asarray(model.members[4].rho)) != 0.0


def test_saved_model_is_one_graph_with_keras_scores(trained, exported, breast_cancer):
    """Keras vs SavedModel as in tests/export: scores (1e-5), labels, threshold, batch sizes."""
    model, _ = trained
    saved_model, _ = exported
    x = breast_cancer.x_test
    scores = model.score(x)
    atol = _atol(scores, 1e-5)
    loaded = tf.saved_model.load(str(saved_model))
    extra = {"feature_scores"} if model.has_feature_scores else set()
    assert set(loaded.signatures) == {"serving_default", "member_scores"} | extra
    serve = loaded.signatures["serving_default"]
    out = {k: v.numpy() for k, v in serve(x=tf.constant(x)).items()}
    np.testing.assert_allclose(out["score"], scores, rtol=1e-5, atol=atol)
    np.testing.assert_array_equal(out["is_anomaly"], model.predict_labels(x))
    np.testing.assert_allclose(out["threshold"], model.threshold, rtol=1e-7)
    for batch in (1, 7, EVAL_BATCH):
        batched = np.concatenate(
            [serve(x=tf.constant(x[i : i + batch]))["score"].numpy() for i in range(0, 64, batch)]
        )
        np.testing.assert_allclose(batched[:64], scores[:64], rtol=1e-5, atol=atol, err_msg=batch)
    got = loaded.signatures["member_scores"](x=tf.constant(x[:16]))["member_scores"].numpy()
    want = model.member_scores(x[:16])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=_atol(want, 1e-5))
    if extra:
        got = loaded.signatures["feature_scores"](x=tf.constant(x[:8]))["feature_scores"].numpy()
        want = model.feature_scores(x[:8])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=_atol(want, 1e-5))
    meta = json.loads((saved_model / "assets.extra" / METADATA_FILE).read_text())
    assert meta["export_family"] == "DetectorEnsemble" and meta["edge_head"] is None
    assert len(meta["config"]["members"]) == len(model.members)


def test_float32_tflite_matches_keras(trained, exported, breast_cancer):
    model, _ = trained
    _, artifact = exported
    x = breast_cancer.x_test
    scores = model.score(x)
    detector = EdgeDetector(artifact.path)
    np.testing.assert_allclose(detector.score(x), scores, rtol=1e-5, atol=_atol(scores, 1e-5))
    np.testing.assert_array_equal(detector.predict_labels(x), model.predict_labels(x))
    assert artifact.metadata["scoring"] == {"kind": "graph", "output": "score"}
    assert artifact.metadata["class_name"] == "DetectorEnsemble"


def test_host_scored_exports_are_refused_naming_the_alternatives(exported, breast_cancer, tmp_path):
    saved_model, _ = exported
    for kwargs in (
        {"quantization": "int8", "representative_data": breast_cancer.x_train},
        {"quantization": "float32", "scoring": "host"},
    ):
        with pytest.raises(ValueError, match=r"cannot be scored on the host.*'float32', 'float16'"):
            export_tflite(saved_model, tmp_path / "e.tflite", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_members_are_refused():
    cases = [
        ([], r"at least one detector"),
        (AE(), "must be a list"),
        ([AE(), keras.Sequential([keras.layers.Dense(1)])], r"members\[1\] is not a keras_deepad"),
        ([AE(), "ae"], r"members\[1\] is not a keras_deepad detector.*str.*cannot be mixed"),
        (["ae", "autoencoder"], r"unknown detector 'autoencoder'"),
        ([AE, OCNN()], r"members\[0\] is the class AE.*AE\(\)"),
    ]
    for members, message in cases:
        with pytest.raises(ValueError, match=message):
            DetectorEnsemble(members)
    ae = AE()
    with pytest.raises(ValueError, match=r"members\[1\] is the same detector object as"):
        DetectorEnsemble([ae, ae])
    wide, narrow = AE(), OCNN()
    wide.build((None, 30))
    narrow.build((None, 29))
    with pytest.raises(ValueError, match=r"different shapes.*\(30,\).*\(29,\)"):
        DetectorEnsemble([wide, narrow])


def test_bad_arguments_and_data_are_refused(breast_cancer):
    x = breast_cancer.x_train[:64]
    for kwargs, message in (
        ({"standardization": "iqr"}, "standardization must be one of"),
        ({"combine": "median"}, "combine must be one of"),
        ({"combine": "max", "score_method": "mean"}, "disagree"),
        ({"normalization": "minmax"}, "each member normalises its own input"),
    ):
        with pytest.raises(ValueError, match=message):
            DetectorEnsemble([AE()], **kwargs)
    built = AE(hidden_units=(4,), latent_dim=2)
    built.build((None, 30))
    model = DetectorEnsemble([built, OCNN(hidden_units=4)])
    with pytest.raises(ValueError, match=r"members\[0\].*\(30,\).*\(29,\)"):
        model.fit(x[:, :29], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="no callbacks.*fit_standardization"):
        model.fit(x, epochs=1, callbacks=[keras.callbacks.History()], verbose=0)
    with pytest.raises(ValueError, match="fit"):
        model.score(x)
    with pytest.raises(ValueError, match="no joint objective.*evaluate the members"):
        model.evaluate(x)
    with pytest.raises(ValueError, match="non-finite scores.*train it"):
        # Built but untrained: Deep SVDD has no centre yet, so its scores are NaN.
        untrained = DeepSVDD(hidden_units=(4,), rep_dim=2, score_method="distance")
        DetectorEnsemble([untrained]).fit_standardization(x)


def test_a_member_with_constant_training_scores_is_scaled_by_one(breast_cancer):
    x = breast_cancer.x_train
    # A collapsed Deep SVDD: phi(x) = 0 for every x, so every distance is ||c||^2 = 0.5.
    collapsed = DeepSVDD(hidden_units=(4,), rep_dim=2, score_method="distance")
    collapsed.build((None, x.shape[1]))
    collapsed.network.set_weights([np.zeros_like(w) for w in collapsed.network.get_weights()])
    collapsed.center.assign([0.5, 0.5])
    model = DetectorEnsemble([AE(hidden_units=(4,), latent_dim=2, score_method="mse"), collapsed])
    with pytest.warns(RuntimeWarning, match=r"members\[1\].*constant.*scaled by 1"):
        location, scale = model.fit_standardization(x)
    assert location[1] == pytest.approx(0.5) and scale[1] == 1.0 and scale[0] != 1.0
    # More than three quarters tied: the IQR is 0 and the standard deviation stands in.
    tied = np.array([0.0] * 8 + [1.0, 2.0])
    assert _location_scale(tied, "robust") == (
        0.0,
        np.std(tied),
        "standard deviation (the IQR is 0)",
    )


def test_registry_preset_default_members_and_top_level_access():
    assert keras_deepad.DetectorEnsemble is DetectorEnsemble
    model = get_detector("ensemble", seed=7)
    kinds = [type(m).__name__ for m in model.members]
    assert kinds == ["AE", "AAE", "WAE", "DeepSVDD"]
    assert [m.seed for m in model.members] == [7, 8, 9, 10]
    assert [m.score_method for m in model.members[:3]] == ["hybrid_knn"] * 3
    assert model.members[3].objective == "one-class"
    assert model.standardization == "robust" and model.combine == "mean"
    assert [type(m) for m in default_members()] == [type(m) for m in model.members]
    clone = DetectorEnsemble.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_members_named_by_preset_take_its_arguments_seed_and_learning_rate():
    model = DetectorEnsemble(["ae", "deep-svdd-soft", "ocnn-linear"], seed=3)
    assert [type(m).__name__ for m in model.members] == ["AE", "DeepSVDD", "OCNN"]
    assert [m.seed for m in model.members] == [3, 4, 5]
    assert model.members[1].objective == "soft-boundary" and model.members[1].nu == 0.1
    assert model.members[2].activation == "linear" and model.members[2].hidden_units == 32
    model.compile()
    # "ocnn-linear" trains at its preset's 1e-2; the others at their class defaults.
    rates = [float(m.optimizer.learning_rate) for m in model.members]
    np.testing.assert_allclose(rates, [AE.default_learning_rate, 1e-4, 1e-2], rtol=1e-6)
    model.compile(keras.optimizers.SGD(0.5))  # an explicit optimizer still wins
    assert [float(m.optimizer.learning_rate) for m in model.members] == [0.5] * 3
    assert [m.seed for m in DetectorEnsemble(["ae", "ae"]).members] == [None, None]


def test_image_preset_detects_other_digits_and_saves(tmp_path):
    from keras_deepad.data import load_builtin

    data = load_builtin("digits", seed=0, normal_class=1)
    images, test_images = (x.reshape(-1, 8, 8, 1) for x in (data.x_train, data.x_test))
    model, _ = train_detector("ensemble-image", images, epochs=10, seed=0, verbose=0)
    assert [type(m).__name__ for m in model.members] == ["AE", "AE", "DeepSVDD", "GEOM"]
    assert [m.architecture for m in model.members[:3]] == ["mlp", "conv", "conv"]
    assert model.standardization == "robust"
    # Digit 1 against the nine others: each member alone and the ensemble.
    members = [roc_auc_score(data.y_test, m.score(test_images)) for m in model.members]
    scores = model.score(test_images)
    auroc = roc_auc_score(data.y_test, scores)
    assert auroc >= 0.9, (auroc, members)
    path = tmp_path / "ensemble-image.keras"
    model.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path).score(test_images), scores)
    # One graph for serving and the edge, images in: the same scores and labels.
    model.calibrate(images, contamination=0.1)
    saved_model = export_saved_model(model, tmp_path / "serving", "ensemble-image", version=1)
    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    served = serve(x=tf.constant(test_images[:64], tf.float32))
    np.testing.assert_allclose(served["score"], scores[:64], rtol=1e-5, atol=_atol(scores, 1e-5))
    np.testing.assert_array_equal(served["is_anomaly"], model.predict_labels(test_images[:64]))
    artifact = export_tflite(saved_model, tmp_path / "ensemble-image.tflite")
    edge = EdgeDetector(artifact.path).score(test_images[:64])
    np.testing.assert_allclose(edge, scores[:64], rtol=1e-5, atol=_atol(scores, 1e-5))


def test_contract_of_a_max_ensemble(blobs, tmp_path):
    """The whole contract on a variant the shared table does not hold."""
    run_detector_test(
        lambda: DetectorEnsemble(
            members=[AE(hidden_units=(16,), latent_dim=4, seed=0), OCNN(hidden_units=16, seed=1)],
            combine="max",
            seed=0,
        ),
        blobs,
        tmp_path,
    )
