import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_deepad.data import load_builtin  # noqa: E402


@pytest.fixture(scope="session")
def blobs():
    """Generated data with a known anomaly class (uniform box vs Gaussian mixture)."""
    return load_builtin("blobs", seed=0)


@pytest.fixture(scope="session")
def breast_cancer():
    return load_builtin("breast_cancer", seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
