"""A new detector family needs its own class, one registry entry and one test-table entry.

The toy here (a linear autoencoder) gets, from those three things alone, the
whole contract, the SavedModel export and a float TFLite file scored by the
edge runtime, each equal to Keras.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deepad.edge import EdgeDetector
from keras_deepad.export import export_saved_model, export_tflite
from keras_deepad.losses import reconstruction_error
from keras_deepad.models import ReconstructionDetector
from keras_deepad.registry import get_detector, register_detector, unregister_detector
from tests import contract
from tests.detectors import Case


@keras.saving.register_keras_serializable(package="keras_deepad_tests")
class LinearAE(ReconstructionDetector):
    """The new family: a linear autoencoder (a PCA fitted by Adam), scored by its mse."""

    score_methods = ("mse",)
    default_score_method = "mse"

    def __init__(self, latent_dim=2, normalization="standard", **kwargs):
        super().__init__(normalization=normalization, **kwargs)
        self.latent_dim = latent_dim

    def build_networks(self, feature_shape):
        self.encoder = keras.Sequential(
            [keras.Input(feature_shape), keras.layers.Dense(self.latent_dim)], name="encoder"
        )
        self.decoder = keras.Sequential(
            [keras.Input((self.latent_dim,)), keras.layers.Dense(feature_shape[-1])],
            name="decoder",
        )

    def reconstruct_normalised(self, x_scaled, training=False):
        return self.decoder(self.encoder(x_scaled, training=training), training=training)

    def per_sample_loss(self, x, training=False):
        x_scaled = self.scaler(x)
        return reconstruction_error(x_scaled, self.reconstruct_normalised(x_scaled), "mse"), {}

    def compute_scores(self, x, method):
        x_scaled = self.scaler(x)
        return reconstruction_error(x_scaled, self.reconstruct_normalised(x_scaled), method)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


#: The one table entry (in a new family's case, a line of `tests/detectors.py`).
CASE = Case("linear-ae", contract={}, export={"latent_dim": 3})


@pytest.fixture
def registered():
    # The one registry entry (in a new family's case, a line of `keras_deepad/registry.py`).
    register_detector("linear-ae", LinearAE, "Linear autoencoder.", {"latent_dim": 2})
    yield
    unregister_detector("linear-ae")


def test_the_contract_from_the_table_entry(registered, blobs, tmp_path):
    model = contract.run_detector_test(
        CASE.factory("contract"), blobs, tmp_path, scoring_model=True
    )
    assert isinstance(model, LinearAE) and model.latent_dim == 2
    assert type(model).export_family() == "ReconstructionDetector"


def test_savedmodel_and_float_tflite_from_the_table_entry(registered, blobs, tmp_path):
    model = CASE.factory("export")()
    model.fit(blobs.x_train, epochs=3, batch_size=64, verbose=0)
    model.calibrate(blobs.x_train, contamination=0.1)
    x = blobs.x_test
    want = model.score(x)
    path = export_saved_model(model, tmp_path, "linear-ae")
    served = tf.saved_model.load(str(path)).signatures["serving_default"](x=tf.constant(x))
    np.testing.assert_allclose(served["score"].numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served["is_anomaly"].numpy(), model.is_anomaly(x))
    artifact = export_tflite(path, tmp_path / "linear-ae.tflite")
    np.testing.assert_allclose(EdgeDetector(artifact.path).score(x), want, rtol=1e-5, atol=1e-6)


def test_registration_is_checked(registered):
    assert isinstance(get_detector("linear-ae"), LinearAE)
    with pytest.raises(ValueError, match="is registered; pass replace=True"):
        register_detector("linear-ae", LinearAE, "again")
    with pytest.raises(TypeError, match="AnomalyDetector subclass"):
        register_detector("not-a-detector", dict, "no")
    with pytest.raises(ValueError, match="built-in preset"):
        unregister_detector("ae")
