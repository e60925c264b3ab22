"""The autoencoders' `"hybrid"` score: reconstruction error plus the code's Mahalanobis distance."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.covariance import LedoitWolf, ledoit_wolf
from sklearn.metrics import roc_auc_score

from keras_deepad import edge
from keras_deepad.layers import CodeDensity
from keras_deepad.layers.code_density import LOG_EPS, ledoit_wolf_covariance
from keras_deepad.models import AAE, AE, VAE, WAE

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def numpy_errors_and_codes(model, x_train, x, weighted=True):
    """`(training errors, errors, training codes, codes)` recomputed in numpy from the networks.

    Each feature's squared error is divided by its mean squared error over the training rows
    whose mean squared error is at most its 0.9 quantile, plus 0.01 times the mean of those
    (`weighted=False`: the plain mean squared error).
    """

    def parts(rows):
        xs = np.asarray(model.scaler(rows), dtype=np.float64)
        code, reconstruction = model.code_and_reconstruction(model.scaler(rows))
        squared = (xs - np.asarray(reconstruction, dtype=np.float64)) ** 2
        return squared.reshape(len(rows), -1), np.asarray(code, dtype=np.float64)

    squared_train, code_train = parts(x_train)
    squared, code = parts(x)
    row_errors = squared_train.mean(axis=1)
    per_feature = squared_train[row_errors <= np.quantile(row_errors, 0.9)].mean(axis=0)
    weights = 1.0 / (per_feature + 0.01 * per_feature.mean()) if weighted else 1.0
    error_train, error = (squared_train * weights).mean(axis=1), (squared * weights).mean(axis=1)
    return error_train, error, code_train, code


def standardised_log(values, reference):
    """`log(values)` standardised by the mean and standard deviation of `log(reference)`."""
    logs = np.log(reference + LOG_EPS)
    return (np.log(values + LOG_EPS) - logs.mean()) / logs.std()


def numpy_hybrid(model, x_train, x, weighted=True):
    """The hybrid score of `x` recomputed in numpy from the networks and sklearn's LedoitWolf."""
    error_train, error, code_train, code = numpy_errors_and_codes(model, x_train, x, weighted)
    estimator = LedoitWolf().fit(code_train)
    d_train = estimator.mahalanobis(code_train)  # squared distances
    d = estimator.mahalanobis(code)
    return standardised_log(error, error_train) + standardised_log(d, d_train)


def in_manifold_anomalies(seed=0, n=1200, features=8):
    """Normal rows on a 2-d plane in 8-d (plus a little noise); anomalies far out on the plane.

    An anomaly is `5` standard deviations out along the plane: the plane
    is what an autoencoder learns, so it reconstructs these rows as well as
    the normal ones, and only their codes are unusual.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(features, 2)))[0].T
    latent = rng.normal(size=(n, 2))
    anomalies = rng.normal(size=(n // 10, 2))
    anomalies = 5.0 * anomalies / np.linalg.norm(anomalies, axis=1, keepdims=True)
    rows = np.concatenate([latent, anomalies]) @ basis
    rows += 0.05 * rng.normal(size=rows.shape)
    y = np.r_[np.zeros(n), np.ones(n // 10)].astype(int)
    order = rng.permutation(len(y))
    return rows[order].astype(np.float32), y[order]


@pytest.mark.parametrize(
    "factory",
    [
        lambda: AE(score_method="hybrid", seed=0),
        lambda: AE(score_method="hybrid", latent_activation=None, dropout=0.0, seed=0),
        lambda: AAE(score_method="hybrid", seed=0),
        lambda: WAE(score_method="hybrid", seed=0),
        lambda: VAE(score_method="hybrid", seed=0),
    ],
    ids=["ae", "ae-linear-code", "aae", "wae", "vae"],
)
def test_hybrid_equals_numpy(factory, manifold):
    """`"hybrid"` as asked for: every one of these defaults to `"hybrid_knn"`."""
    x_train, x_test, _ = manifold
    model = factory()
    assert model.score_method == "hybrid"
    model.fit(x_train, epochs=5, batch_size=64, verbose=0)
    np.testing.assert_allclose(
        model.score(x_test), numpy_hybrid(model, x_train, x_test), rtol=1e-4, atol=1e-4
    )


def noisy_feature_anomalies(seed=0, n=1000, features=8):
    """Seven features on a 2-d plane, an eighth of pure noise; anomalies step off the plane.

    Standardised, every feature has unit variance, but the network can
    reconstruct only the seven: the noise feature's squared error (about 1,
    spread like a chi-square) dwarfs what an anomaly adds, a step of 0.25
    standard deviations off the plane in the seven.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(features - 1, 2)))[0]
    normal_to_plane = np.linalg.qr(np.c_[basis, rng.normal(size=features - 1)])[0][:, 2]
    n_anomalies = n // 10
    latent = rng.normal(size=(n + n_anomalies, 2))
    rows = latent @ basis.T + 0.02 * rng.normal(size=(n + n_anomalies, features - 1))
    rows[n:] += 0.25 * normal_to_plane * rng.choice([-1.0, 1.0], size=(n_anomalies, 1))
    rows = np.c_[rows, rng.normal(size=n + n_anomalies)]
    y = np.r_[np.zeros(n), np.ones(n_anomalies)].astype(int)
    return rows.astype(np.float32), y


def test_hybrid_weighs_each_feature_by_its_usual_error():
    """A feature the network never reconstructs no longer drowns the anomalies' errors."""
    x, y = noisy_feature_anomalies()
    x_train, x_test, y_test = x[:700], x[700:], y[700:]
    model = AE(hidden_units=(32,), latent_dim=2, latent_activation=None, dropout=0.0, seed=0)
    model.fit(x_train, epochs=40, batch_size=64, verbose=0)
    weights = model.code_density.error_weights.numpy()
    assert weights[-1] < weights[:-1].min() / 10  # the noise feature's error is the usual one
    plain = roc_auc_score(y_test, numpy_hybrid(model, x_train, x_test, weighted=False))
    hybrid = roc_auc_score(y_test, model.score(x_test, method="hybrid"))
    # Seeds 0-2 of the data and the network: weighted 0.93-0.97, unweighted 0.65-0.76.
    assert hybrid >= 0.9, hybrid
    assert plain < 0.8, plain


def test_hybrid_sees_anomalies_on_the_learned_manifold(manifold):
    """Reconstruction error misses rows out along the plane; the code's distance does not."""
    x_train, x_test, y_test = manifold
    mse = []
    for seed in range(3):  # the error's AUROC varies with the seed (0.67-0.83): judge its mean
        model = AE(hidden_units=(32,), latent_dim=4, latent_activation=None, dropout=0.0, seed=seed)
        model.fit(x_train, epochs=40, batch_size=64, verbose=0)
        mse.append(roc_auc_score(y_test, model.score(x_test, method="mse")))
        hybrid = roc_auc_score(y_test, model.score(x_test, method="hybrid"))
        assert hybrid >= 0.95, (seed, hybrid)
    assert np.mean(mse) < 0.8, mse  # the anomalies lie on the plane the network reconstructs


def test_vae_hybrid_reads_the_posterior_mean_and_the_bernoulli_vae_keeps_its_error():
    """The VAE's code is `mu`; a Bernoulli decoder keeps `"reconstruction"` as its default."""
    x_train = in_manifold_anomalies()[0][:900]
    model = VAE(latent_dim=3, seed=0)
    model.fit(x_train, epochs=2, batch_size=64, verbose=0)
    code, reconstruction = model.code_and_reconstruction(model.scaler(x_train[:5]))
    np.testing.assert_allclose(code, model.encode(x_train[:5]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        model.scaler.inverse(reconstruction), model.reconstruct(x_train[:5]), rtol=1e-5, atol=1e-5
    )
    assert model.code_density.code_dim == 3
    assert VAE(likelihood="bernoulli").score_method == "reconstruction"
    assert VAE(likelihood="bernoulli", score_method="hybrid").score_method == "hybrid"


def test_fit_code_density_is_idempotent_and_uses_the_training_data(manifold):
    x_train, x_test, _ = manifold
    model = AE(seed=0)
    model.fit(x_train, epochs=2, batch_size=64, verbose=0)
    fitted = model.score(x_test)
    model.fit_code_density(x_train)
    np.testing.assert_allclose(model.score(x_test), fitted, rtol=1e-6)
    model.fit_code_density(x_train[:100])  # other rows: other statistics
    assert not np.allclose(model.score(x_test), fitted)


def test_a_model_saved_before_the_hybrid_score_loads_and_says_what_to_do(tmp_path, manifold):
    """The golden AE predates the code statistics: it loads, scores as saved, and can be fitted."""
    shutil.copy(GOLDEN / "ae.keras", tmp_path / "ae.keras")
    model = keras.saving.load_model(tmp_path / "ae.keras")
    inputs = np.load(GOLDEN / "inputs.npy")
    assert model.score_method == "mse"
    assert np.isfinite(model.score(inputs)).all()
    assert not model.code_density.is_fitted
    with pytest.raises(ValueError, match=r"fit_code_density\(x_train\)"):
        model.score(inputs, method="hybrid")
    model.fit_code_density(inputs)
    scores = model.score(inputs, method="hybrid")
    assert not np.allclose(model.code_density.error_weights.numpy(), 1.0)
    np.testing.assert_allclose(scores, numpy_hybrid(model, inputs, inputs), rtol=1e-4, atol=1e-4)
    # Saved again, the statistics travel with it.
    model.save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras")
    np.testing.assert_array_equal(again.score(inputs, method="hybrid"), scores)


@pytest.mark.parametrize(
    ("n", "d", "scale"), [(5000, 32, 1.0), (40, 8, 3.0), (3, 6, 1.0), (200, 1, 2.0), (50, 4, 0.0)]
)
def test_ledoit_wolf_covariance_equals_scikit_learns(n, d, scale):
    rng = np.random.default_rng(n + d)
    mixing = rng.normal(size=(d, d)) * scale
    codes = rng.normal(size=(n, d)) @ mixing
    centred = codes - codes.mean(axis=0)
    expected, _ = ledoit_wolf(centred, assume_centered=True)
    np.testing.assert_allclose(ledoit_wolf_covariance(centred), expected, rtol=1e-10, atol=1e-14)


def test_code_density_refuses_codes_it_cannot_use():
    density = CodeDensity(3)
    with pytest.raises(ValueError, match="needs codes of length 3"):
        density.fit(np.zeros((5, 4)), np.ones(5))
    with pytest.raises(ValueError, match="one error per code"):
        density.fit(np.zeros((5, 3)), np.ones(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        density.fit(np.full((5, 3), np.nan), np.ones(5))
    # One row: its own mean, unit covariance and spreads; the row itself scores finite.
    density.fit(np.ones((1, 3)), np.ones(1))
    one = keras.ops.convert_to_numpy(density(np.ones(1, "float32"), np.ones((1, 3), "float32")))
    assert np.isfinite(one).all()
    # Identical codes: no covariance to invert, the distance part is constant, still finite.
    density.fit(np.ones((5, 3)), np.arange(1.0, 6.0))
    scores = keras.ops.convert_to_numpy(
        density(np.arange(1.0, 6.0, dtype="float32"), np.ones((5, 3), "float32"))
    )
    assert np.isfinite(scores).all()


def test_statistics_saved_before_the_feature_weights_load_with_weights_of_one():
    """A `.keras` file of the four statistics (the plain mean squared error) loads as saved."""
    density = CodeDensity(3, feature_dim=5)
    density.build()
    rng = np.random.default_rng(0)
    mean, precision = rng.normal(size=3), np.eye(3) * 2.0
    stats = np.array([0.5, 2.0, 1.0, 3.0])
    store = {"0": mean, "1": precision, "2": stats, "3": np.float32(1.0)}
    density.load_own_variables(store)
    np.testing.assert_array_equal(density.error_weights.numpy(), np.ones(5, "float32"))
    np.testing.assert_allclose(density.mean.numpy(), mean, rtol=1e-6)
    assert density.is_fitted
    squared = rng.uniform(size=(4, 5)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(density.weighted_error(squared)), squared.mean(axis=1), 1e-6
    )


def test_error_weights_are_checked_and_floored():
    density = CodeDensity(2, feature_dim=3)
    density.build()
    with pytest.raises(ValueError, match="needs 3 mean squared errors"):
        density.fit_error_weights(np.ones(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        density.fit_error_weights(np.array([1.0, np.nan, 1.0]))
    density.fit_error_weights(np.array([0.0, 1.0, 2.0]))  # floor: 0.01 x the mean error
    np.testing.assert_allclose(density.error_weights.numpy(), [100.0, 1 / 1.01, 1 / 2.01], 1e-6)
    density.fit_error_weights(np.zeros(3))  # every row reconstructed exactly: weighed alike
    np.testing.assert_array_equal(density.error_weights.numpy(), np.ones(3, "float32"))
    with pytest.raises(ValueError, match="no per-feature weights"):
        CodeDensity(2).fit_error_weights(np.ones(3))


def test_edge_recipe_constant_matches_the_layer():
    assert edge.recipes._HYBRID_LOG_EPS == LOG_EPS


def test_edge_recipe_refuses_a_precision_of_the_wrong_size(manifold, tmp_path):
    from keras_deepad.export import export_tflite

    x_train, x_test, _ = manifold
    model = AE(score_method="hybrid", seed=0)
    model.fit(x_train, epochs=1, batch_size=64, verbose=0)
    model.calibrate(x_train, contamination=0.1)
    path = tmp_path / "ae.tflite"
    export_tflite(model, path, quantization="int8", representative_data=x_train)
    # int8 rounds the reconstruction and the code; the log of small errors shows it, the
    # order of the scores (what a threshold sees) stays.
    rho = spearmanr(edge.EdgeDetector(path).score(x_test), model.score(x_test))[0]
    assert rho > 0.9, rho
    meta = edge.metadata_path(path)
    metadata = json.loads(meta.read_text())
    metadata["scoring"]["precision"] = metadata["scoring"]["precision"][:-1]
    with pytest.raises(ValueError, match="precision"):
        edge.check_metadata(metadata)
