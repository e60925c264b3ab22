"""The autoencoders' `"hybrid_knn"` score: reconstruction error plus the code's kNN distance."""

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from keras_deepad.layers import CodeNeighbours
from keras_deepad.models import AAE, AE, VAE, WAE
from tests.models.test_hybrid import (
    numpy_errors_and_codes,
    standardised_log,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def numpy_hybrid_knn(model, x_train, x, k=10, training_rows=False):
    """The `"hybrid_knn"` score of `x` recomputed in numpy and scikit-learn's NearestNeighbors.

    The weighted error as in `numpy_hybrid`; the mean distance of the code to its `k` nearest
    training codes (a training row without itself), both as logs standardised over the
    training rows. `x_train` must fit in the bank (at most 4,096 rows); `training_rows`: `x`
    is `x_train` (its distances are the training ones).
    """

    error_train, error, code_train, code = numpy_errors_and_codes(model, x_train, x)
    # As a kNN detector leaves a training row out of its own neighbours, the nearest kept code
    # is skipped when it lies within the self-match tolerance (squared); a squared distance
    # under the tolerance counts as it.
    tolerance = float(model.code_neighbours.state.numpy()[2])
    search = NearestNeighbors(n_neighbors=k + 1).fit(code_train)

    def knn(rows):
        squared = search.kneighbors(rows)[0] ** 2
        skip = squared[:, :1] <= tolerance
        chosen = np.where(skip, squared[:, 1:], squared[:, :-1])
        return np.sqrt(np.maximum(chosen, tolerance)).mean(axis=1)

    d_train = knn(code_train)
    d = d_train if training_rows else knn(code)

    return standardised_log(error, error_train) + standardised_log(d, d_train)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: AE(seed=0),
        lambda: AAE(seed=0),
        lambda: WAE(seed=0),
        lambda: VAE(seed=0),
    ],
    ids=["ae", "aae", "wae", "vae"],
)
def test_hybrid_knn_equals_numpy(factory, manifold):
    x_train, x_test, _ = manifold
    model = factory()
    assert model.score_method == "hybrid_knn"
    model.fit(x_train, epochs=5, batch_size=64, verbose=0)
    expected = numpy_hybrid_knn(model, x_train, x_test)
    np.testing.assert_allclose(model.score(x_test), expected, rtol=1e-4, atol=1e-4)
    # Training rows are scored without themselves, as a new row from the same data would be.
    np.testing.assert_allclose(
        model.score(x_train[:200]),
        numpy_hybrid_knn(model, x_train, x_train, training_rows=True)[:200],
        rtol=1e-4,
        atol=1e-4,
    )


def test_every_gaussian_autoencoder_defaults_to_hybrid_knn():
    assert [m.score_method for m in (AE(), AAE(), WAE(), VAE())] == ["hybrid_knn"] * 4
    assert WAE(penalty="gan").score_method == "hybrid_knn"
    assert VAE(likelihood="bernoulli").score_method == "reconstruction"
    for model in (AE(), AAE(), WAE(), VAE()):
        assert {"hybrid", "hybrid_knn"} <= set(model.score_methods)


def clustered_rows(seed=0, n=1200, features=8):
    """Normal rows in two clusters on a 2-d plane in 8-d; anomalies on the plane between them.

    Returns `(x_train, x_test, y_test)`: 900 normal rows to train on (the
    one-class setting: a tight group of anomalies in the training data
    would be a cluster of their own to a kNN distance), the other 300 and
    120 anomalies to score. One Gaussian fitted to the codes (the
    Mahalanobis distance of `"hybrid"`) puts the anomalies near its
    centre; their nearest training codes are far.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(features, 2)))[0].T
    side = rng.choice([-1.0, 1.0], size=(n, 1))
    latent = np.c_[3.0 * side, np.zeros((n, 1))] + 0.5 * rng.normal(size=(n, 2))
    anomalies = 0.3 * rng.normal(size=(n // 10, 2))
    rows = np.concatenate([latent, anomalies]) @ basis
    rows = (rows + 0.02 * rng.normal(size=rows.shape)).astype(np.float32)
    y = np.r_[np.zeros(n), np.ones(n // 10)].astype(int)
    return rows[:900], rows[900:], y[900:]


def test_hybrid_knn_sees_anomalies_between_clusters_that_hybrid_misses():
    x_train, x_test, y_test = clustered_rows()
    for seed in range(2):
        # A linear 2-d code keeps the two clusters apart (seeds 0-2: hybrid_knn 0.997-1.000,
        # hybrid 0.40-0.78; the default AE's folded code lets "hybrid" see them too, 0.95-0.99).
        model = AE(hidden_units=(32,), latent_dim=2, latent_activation=None, dropout=0.0, seed=seed)
        model.fit(x_train, epochs=40, batch_size=64, verbose=0)
        knn = roc_auc_score(y_test, model.score(x_test))
        hybrid = roc_auc_score(y_test, model.score(x_test, method="hybrid"))
        assert knn >= 0.95, (seed, knn)
        assert hybrid < knn - 0.1, (seed, hybrid, knn)


def test_hybrid_knn_sees_anomalies_on_the_learned_manifold(manifold):
    x_train, x_test, y_test = manifold
    model = AE(hidden_units=(32,), latent_dim=4, latent_activation=None, dropout=0.0, seed=0)
    model.fit(x_train, epochs=40, batch_size=64, verbose=0)
    assert roc_auc_score(y_test, model.score(x_test)) >= 0.95


def test_save_and_load_keep_the_bank(tmp_path, manifold):
    x_train, x_test, _ = manifold
    model = AE(seed=0)
    model.fit(x_train, epochs=2, batch_size=64, verbose=0)
    assert model.code_neighbours.rows == len(x_train)
    model.save(tmp_path / "ae.keras")
    loaded = keras.saving.load_model(tmp_path / "ae.keras")
    assert loaded.score_method == "hybrid_knn"
    np.testing.assert_array_equal(loaded.score(x_test), model.score(x_test))


def test_an_unfitted_model_refuses_hybrid_knn_by_name_and_a_golden_file_takes_the_bank(
    tmp_path, manifold
):
    """The golden AE predates both hybrid scores: it loads, scores as saved, and can be fitted."""
    shutil.copy(GOLDEN / "ae.keras", tmp_path / "ae.keras")
    model = keras.saving.load_model(tmp_path / "ae.keras")
    inputs = np.load(GOLDEN / "inputs.npy")
    assert model.score_method == "mse"
    assert not model.code_neighbours.is_fitted
    with pytest.raises(ValueError, match=r"'hybrid_knn' score .*fit_code_density\(x_train\)"):
        model.score(inputs, method="hybrid_knn")
    model.fit_code_density(inputs)
    np.testing.assert_allclose(
        model.score(inputs, method="hybrid_knn"),
        numpy_hybrid_knn(model, inputs, inputs, k=10, training_rows=True),
        rtol=1e-4,
        atol=1e-4,
    )


def test_with_the_percentile_loss_the_bank_keeps_the_rows_it_learned():
    """The rows at or above the q-quantile of the training error are presumed anomalies."""
    from tests.models.test_robust import PLAIN_AE, manifold_data

    x, y, x_test, y_test = manifold_data(seed=0)  # 10 % anomalies on a manifold of their own
    model = AE(hidden_units=(32,), latent_dim=8, percentile_loss=0.9, seed=0, **PLAIN_AE)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, epochs=25, batch_size=32, verbose=0)
    errors, codes = model.hybrid_parts(model.scaler(x))
    errors, codes = np.asarray(errors), np.asarray(codes)
    kept = errors <= np.quantile(errors, 0.9)
    assert model.code_neighbours.rows == kept.sum()
    np.testing.assert_allclose(
        model.code_neighbours.origin.numpy(), codes[kept].mean(axis=0), rtol=1e-4, atol=1e-5
    )
    assert y[~kept].mean() > 0.5  # most rows left out are the anomalies
    # Kept, the anomalies' tight group would look dense to their nearest codes (0.92).
    assert roc_auc_score(y_test, model.score(x_test)) >= 0.97


def test_a_diverged_network_scores_nan():
    layer = CodeNeighbours(3)
    layer.invalidate()
    assert layer.is_fitted
    assert np.isnan(np.asarray(layer(np.zeros((2, 3), dtype="float32")))).all()


def test_code_neighbours_standardise_the_training_log_distances():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 4)).astype(np.float32)
    layer = CodeNeighbours(4)
    layer.fit(codes)
    scores = np.asarray(layer(codes))
    # The training codes' standardised log distances: mean 0, standard deviation 1.
    np.testing.assert_allclose([scores.mean(), scores.std()], [0.0, 1.0], atol=1e-4)
    far = np.asarray(layer(np.full((1, 4), 5.0, dtype=np.float32)))
    assert far[0] > scores.max()
