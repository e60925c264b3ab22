"""Deep SVDD's `"knn"` score: the mean distance to the nearest kept training embeddings."""

import json
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from keras_deepad.edge import EdgeDetector
from keras_deepad.export import export_saved_model, export_tflite
from keras_deepad.layers import NeighbourBank
from keras_deepad.models import DeepSVDD

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def sklearn_knn(train, rows, k=10, leave_self_out=False):
    """Mean distance to the k nearest training rows (scikit-learn), the row itself left out."""
    neighbours = NearestNeighbors(n_neighbors=k + int(leave_self_out)).fit(train)
    distances = neighbours.kneighbors(rows)[0]
    return (distances[:, 1:] if leave_self_out else distances).mean(axis=1)


def test_bank_scores_equal_scikit_learns_knn_and_leave_a_training_row_out():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 6)) * [1, 2, 3, 1, 1, 5] + 40.0  # far from the origin
    new = rng.normal(size=(150, 6)) * 3 + 40.0
    bank = NeighbourBank(6, capacity=512, k=7)
    bank.fit(train)
    assert bank.rows == 400
    np.testing.assert_allclose(
        bank(new.astype("float32")), sklearn_knn(train, new, 7), rtol=1e-4, atol=1e-4
    )
    # A training row's own copy in the bank does not count: it scores as a new row would.
    np.testing.assert_allclose(
        bank(train.astype("float32")),
        sklearn_knn(train, train, 7, leave_self_out=True),
        rtol=1e-4,
        atol=1e-4,
    )


def test_bank_keeps_evenly_spaced_rows_of_larger_data():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(1000, 3))
    new = rng.normal(size=(50, 3)) * 2
    bank = NeighbourBank(3, capacity=100, k=5)
    bank.fit(train)
    kept = train[np.linspace(0, 999, 100).round().astype(int)]
    assert bank.rows == 100
    np.testing.assert_allclose(bank.origin.numpy() + bank.bank.numpy(), kept, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        bank(new.astype("float32")), sklearn_knn(kept, new, 5), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_a_bank_smaller_than_k_averages_the_rows_it_has(rows):
    rng = np.random.default_rng(rows)
    train, new = rng.normal(size=(rows, 4)), rng.normal(size=(8, 4)) + 3.0
    bank = NeighbourBank(4, capacity=32, k=10)
    bank.fit(train)
    k = max(rows - 1, 1)
    np.testing.assert_allclose(
        bank(new.astype("float32")), sklearn_knn(train, new, k), rtol=1e-4, atol=1e-4
    )
    if rows > 1:  # a training row's neighbours are the others
        np.testing.assert_allclose(
            bank(train.astype("float32")),
            sklearn_knn(train, train, k, leave_self_out=True),
            rtol=1e-4,
            atol=1e-4,
        )
    assert np.isfinite(bank(new.astype("float32"))).all()


def test_close_rows_are_measured_exactly_and_the_edge_recipe_agrees():
    """Rows much closer together than their size: the graph re-measures the nearest exactly.

    Clusters of rows ~0.3 apart at norm ~20, and exact copies: the fast expansion of the
    squared distance rounds by ~1e-7 of the squared norm (~1e-3 of these distances), the
    re-measured distances equal scikit-learn's to float32 precision (a squared distance
    under the self-match tolerance counted as it), and so does the host recipe of the int8
    files.
    """
    from keras_deepad.edge.recipes import SCORINGS

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 5)) * 10.0
    train = np.repeat(centres, 30, axis=0) + 0.2 * rng.normal(size=(600, 5))
    train[1::30] = train[::30]  # an exact copy in each cluster
    new = np.repeat(centres, 5, axis=0) + 0.2 * rng.normal(size=(100, 5))
    bank = NeighbourBank(5, capacity=1024, k=10)
    bank.fit(train)
    tolerance = float(bank.state.numpy()[2])

    def reference(rows, leave_self_out):
        search = NearestNeighbors(n_neighbors=11).fit(train)
        squared = search.kneighbors(rows)[0] ** 2
        skip = leave_self_out & (squared[:, 0] <= tolerance)
        chosen = np.where(skip[:, None], squared[:, 1:], squared[:, :-1])
        return np.sqrt(np.maximum(chosen, tolerance)).mean(axis=1)

    for rows, leave_self_out in ((new, False), (train, True)):
        rows = rows.astype(np.float32)
        expected = reference(rows.astype(np.float64), leave_self_out)
        np.testing.assert_allclose(bank(rows), expected, rtol=1e-5)
        scoring = {
            "output": "embedding",
            "bank": bank.bank.numpy()[: bank.rows].reshape(-1).tolist(),
            "origin": bank.origin.numpy().tolist(),
            "k": 10,
            "tolerance": tolerance,
        }
        host = SCORINGS["neighbours"](scoring, rows, {"embedding": rows})
        np.testing.assert_allclose(host, np.asarray(bank(rows)), rtol=1e-5)


def test_bank_refuses_what_it_cannot_keep():
    bank = NeighbourBank(3, capacity=16, k=4)
    with pytest.raises(ValueError, match="embedding of length 3"):
        bank.fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least one embedding"):
        bank.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        bank.fit(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="capacity >= k \\+ 1"):
        NeighbourBank(3, capacity=4, k=4)


@pytest.fixture(scope="module")
def cancer(breast_cancer):
    """Deep SVDD with the "knn" score on breast cancer, benign normal, trained once."""
    data = breast_cancer
    keras.utils.set_random_seed(0)
    model = DeepSVDD(score_method="knn", seed=0)
    model.compile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data.x_train, epochs=10, batch_size=64, verbose=0)
    return model, data


def test_deep_svdd_knn_is_the_mean_distance_in_the_embedding(cancer):
    model, data = cancer
    train = model.embed(data.x_train)
    np.testing.assert_allclose(
        model.score(data.x_test), sklearn_knn(train, model.embed(data.x_test)), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        model.score(data.x_train),
        sklearn_knn(train, train, leave_self_out=True),
        rtol=1e-4,
        atol=1e-5,
    )


def test_deep_svdd_knn_finds_malignant_tumours(cancer):
    model, data = cancer
    # Seed 0, 10 epochs: 0.96 (the "distance" score of the same model: 0.97).
    assert roc_auc_score(data.y_test, model.score(data.x_test)) >= 0.93


def test_deep_svdd_knn_survives_save_and_load(cancer, tmp_path):
    model, data = cancer
    model.save(tmp_path / "svdd.keras")
    loaded = keras.models.load_model(tmp_path / "svdd.keras")
    assert loaded.score_method == "knn" and loaded.neighbours.rows == model.neighbours.rows
    np.testing.assert_array_equal(loaded.score(data.x_test), model.score(data.x_test))


def test_deep_svdd_knn_exports_score_as_keras(cancer, tmp_path):
    """SavedModel, float32 TFLite (in the graph and on the host) and int8 TFLite (host)."""
    model, data = cancer
    model.calibrate(data.x_train, contamination=0.1)
    expected = model.score(data.x_test)
    serving = export_saved_model(model, tmp_path / "serving", "svdd", version=1)
    serve = tf.saved_model.load(str(serving)).signatures["serving_default"]
    served = serve(x=tf.constant(data.x_test.astype("float32")))["score"].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    for quantization, scoring, rtol in (
        ("float32", "graph", 1e-5),
        ("float32", "host", 1e-5),
        ("int8", "host", None),
    ):
        extra = {"representative_data": data.x_train} if quantization == "int8" else {}
        artifact = export_tflite(
            serving,
            tmp_path / f"svdd-{quantization}-{scoring}.tflite",
            quantization=quantization,
            scoring=scoring,
            **extra,
        )
        scores = EdgeDetector(artifact.path).score(data.x_test)
        if rtol is None:  # int8 embeddings: the ranking holds
            assert artifact.metadata["scoring"]["kind"] == "neighbours"
            assert roc_auc_score(data.y_test, scores) >= roc_auc_score(data.y_test, expected) - 0.02
        else:
            scale = float(np.max(np.abs(expected)))
            np.testing.assert_allclose(scores, expected, rtol=rtol, atol=rtol * scale)
    kept = artifact.metadata["scoring"]
    assert len(kept["bank"]) == model.neighbours.rows * model.rep_dim and kept["k"] == 10


def test_a_deep_svdd_saved_before_the_knn_score_loads_and_says_what_to_do(tmp_path):
    """The golden Deep SVDD predates the kept embeddings: it scores as saved, and can be fitted."""
    shutil.copy(GOLDEN / "deep_svdd.keras", tmp_path / "old.keras")
    expected = json.loads((GOLDEN / "expected.json").read_text())["models"]["deep_svdd"]
    inputs = np.load(GOLDEN / "inputs.npy")
    model = keras.models.load_model(tmp_path / "old.keras")
    np.testing.assert_allclose(model.score(inputs), expected["keras_scores"], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"'knn' score.*fit_neighbours\(x_train\)"):
        model.score(inputs, method="knn")
    model.fit_neighbours(inputs)
    embedded = model.embed(inputs)
    np.testing.assert_allclose(
        model.score(inputs, method="knn"),
        sklearn_knn(embedded, embedded, k=min(10, len(inputs) - 1), leave_self_out=True),
        rtol=1e-4,
        atol=1e-5,
    )
