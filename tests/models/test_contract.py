"""The shared detector contract, run on every registered tabular detector."""

import numpy as np
import pytest

from keras_deepad.models import AAE, AE, VAE, WAE, DetectorEnsemble, ReconstructionDetector
from keras_deepad.registry import get_detector
from tests import contract

FACTORIES = {
    "ae": lambda: AE(hidden_units=(32, 16), latent_dim=4, seed=0),
    "ae-seed": lambda: get_detector("ae-seed", seed=0),
    "ae-borghesi": lambda: get_detector("ae-borghesi", seed=0),
    "ae-denoising": lambda: get_detector("ae-denoising", hidden_units=(32,), seed=0),
    "ae-robust": lambda: get_detector("ae-robust", hidden_units=(32,), latent_dim=4, seed=0),
    "vae": lambda: VAE(hidden_units=(32, 16), latent_dim=4, seed=0),
    "vae-bernoulli": lambda: get_detector("vae-bernoulli", hidden_units=(32,), seed=0),
    "deep-svdd": lambda: get_detector("deep-svdd", hidden_units=(16,), rep_dim=8, seed=0),
    "deep-svdd-soft": lambda: get_detector(
        "deep-svdd-soft", hidden_units=(16,), rep_dim=8, warm_up_epochs=1, seed=0
    ),
    "ocnn": lambda: get_detector("ocnn", hidden_units=8, seed=0),
    "aae": lambda: AAE(hidden_units=(32, 16), latent_dim=4, seed=0),
    "wae-mmd": lambda: WAE(hidden_units=(32, 16), latent_dim=4, seed=0),
    "wae-gan": lambda: WAE(penalty="gan", hidden_units=(32, 16), latent_dim=4, seed=0),
    "ensemble": lambda: get_detector(
        "ensemble",
        members=[
            AE(hidden_units=(16,), latent_dim=4, seed=0),
            get_detector("deep-svdd", hidden_units=(16,), rep_dim=8, pretrain_epochs=1, seed=0),
        ],
        seed=0,
    ),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def trained(request, blobs):
    model = FACTORIES[request.param]()
    model.fit(blobs.x_train, epochs=3, batch_size=64, verbose=0)
    return model


def _reset(model):
    model.threshold_variable.assign(float("nan"))
    return model


def test_scores(trained, blobs):
    contract.check_scores_shape_and_dtype(trained, blobs.x_test)


def test_every_score_method(trained, blobs):
    for method in trained.score_methods:
        scores = trained.score(blobs.x_test, method=method)
        assert scores.shape == (len(blobs.x_test),) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="method must be one of"):
        trained.score(blobs.x_test, method="nope")


def test_input_types_and_batching_agree(trained, blobs):
    contract.check_input_types_agree(trained, blobs.x_test)


def test_threshold(trained, blobs):
    contract.check_threshold(_reset(trained), blobs.x_test)


def test_save_load(trained, blobs, tmp_path):
    contract.check_save_load(trained, blobs.x_test, tmp_path)


def test_config_round_trip(trained):
    contract.check_config_round_trip(trained)


def test_bad_input(trained, blobs):
    contract.check_bad_input(trained, blobs.x_test)


def test_feature_scores_and_reconstruction(trained, blobs):
    x = blobs.x_test[:40]
    if isinstance(trained, DetectorEnsemble):
        # An ensemble exposes its standardised member scores; its score combines them.
        member_scores = trained.member_scores(x)
        assert member_scores.shape == (len(x), len(trained.members))
        np.testing.assert_allclose(
            trained.member_scores(x, batch_size=7), member_scores, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            trained.score(x), member_scores.mean(axis=1), rtol=1e-5, atol=1e-5
        )
        return
    if not isinstance(trained, ReconstructionDetector):
        # One-class detectors expose their representation instead.
        embedding = trained.embed(x)
        assert embedding.ndim == 2 and len(embedding) == len(x)
        np.testing.assert_allclose(trained.embed(x, batch_size=7), embedding, rtol=1e-5, atol=1e-6)
        assert np.isfinite(embedding).all() and np.std(embedding) > 0
        return
    per_feature = trained.feature_scores(x)
    assert per_feature.shape == x.shape
    assert (per_feature >= 0).all()
    reconstruction = trained.reconstruct(x)
    assert reconstruction.shape == x.shape
    # Reconstructions come back in input units: the per-feature errors are
    # the squared differences after the model's own normalisation.
    scaled = lambda a: np.asarray(trained.scaler(a))  # noqa: E731
    expected = (scaled(x) - scaled(reconstruction)) ** 2
    np.testing.assert_allclose(per_feature, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_fit_changes_weights(name, blobs):
    contract.check_fit_changes_weights(FACTORIES[name], blobs.x_train[:256])


def test_a_detector_without_its_hooks_is_refused_at_definition():
    from keras_deepad.models import AnomalyDetector, ReconstructionDetector

    with pytest.raises(TypeError, match=r"does not define \['per_sample_loss', 'compute_scores'\]"):

        class Incomplete(AnomalyDetector):
            score_methods = ("s",)

            def build_networks(self, feature_shape):
                pass

    with pytest.raises(TypeError, match="reconstruct_normalised"):

        class NoReconstruction(ReconstructionDetector):
            score_methods = ("s",)
            build_networks = per_sample_loss = compute_scores = lambda *a: None


def test_calibrate_from_scores_matches_calibrate(trained, blobs):
    scores = trained.score(blobs.x_test)
    expected = trained.calibrate(blobs.x_test, contamination=0.1)
    assert trained.calibrate_from_scores(scores, contamination=0.1) == expected
    with pytest.raises(ValueError, match="finite"):
        trained.calibrate_from_scores(np.array([1.0, np.nan]))
