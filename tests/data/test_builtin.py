import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from keras_deepad.data import BUILTIN_DATASETS, BuiltinData, load_builtin, parse_data_spec

TABULAR = {
    # name: (n_features, scaled to [0, 1] on x_train)
    "blobs": (16, False),
    "breast_cancer": (30, True),
    "digits": (64, True),
    "iris": (4, True),
    "wine": (13, True),
}


def test_every_builtin_is_listed():
    assert set(BUILTIN_DATASETS) == {*TABULAR, "fashion_mnist"}
    assert all(isinstance(text, str) and text for text in BUILTIN_DATASETS.values())


@pytest.mark.parametrize("name", sorted(TABULAR))
def test_load_builtin_tabular(name):
    n_features, scaled = TABULAR[name]
    data = load_builtin(name, seed=1)
    assert isinstance(data, BuiltinData) and data.name == name
    assert data.input_shape == (n_features,)
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.x_test.shape == (len(data.y_test), n_features)
    assert data.y_test.dtype == np.int64
    assert set(np.unique(data.y_test)) == {0, 1}
    assert 0 < data.contamination < 1
    assert data.description
    if scaled:
        assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    again = load_builtin(name, seed=1)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_test, data.y_test)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "other"


def test_breast_cancer_trains_on_benign_only():
    data = load_builtin("breast_cancer", seed=0)
    # 357 benign samples in all: those in x_train plus the normal test samples.
    assert len(data.x_train) + int((data.y_test == 0).sum()) == 357
    assert len(data.x_test) == 171 and abs(int(data.y_test.sum()) - 0.3 * 212) <= 1
    assert not np.array_equal(load_builtin("breast_cancer", seed=1).x_train[:5], data.x_train[:5])


def test_digits_one_class_protocol():
    data = load_builtin("digits", normal_class=3)
    assert data.x_train.max() <= 1.0 and data.x_test.max() <= 1.0
    assert len(data.x_test) == 540  # 30 % of 1797, stratified
    assert abs(data.contamination - 0.9) < 0.01
    assert "Normal class: 3" in data.description
    zeros = load_builtin("digits")
    assert not np.array_equal(zeros.x_train[:10], data.x_train[:10])


def test_blobs_sizes_and_known_answer():
    data = load_builtin("blobs", seed=0)
    assert data.x_train.shape == (1000, 16)
    assert data.x_test.shape == (550, 16) and int(data.y_test.sum()) == 50
    # Anomalies are far from the training data: a 5-NN distance separates them.
    distances, _ = NearestNeighbors(n_neighbors=5).fit(data.x_train).kneighbors(data.x_test)
    assert roc_auc_score(data.y_test, distances[:, -1]) > 0.99
    assert not np.array_equal(load_builtin("blobs", seed=1).x_train, data.x_train)


def test_load_builtin_fashion_mnist(debian_fashion_dir, monkeypatch):
    monkeypatch.setenv("KERAS_DEEPAD_FASHION_MNIST", str(debian_fashion_dir))
    data = load_builtin("fashion_mnist", normal_class=7)
    assert data.x_train.shape == (6000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.input_shape == (28, 28, 1)
    assert int(data.y_test.sum()) == 9000


def test_load_builtin_fashion_mnist_small_files(small_fashion_dir, monkeypatch):
    directory, arrays = small_fashion_dir
    monkeypatch.setenv("KERAS_DEEPAD_FASHION_MNIST", str(directory))
    data = load_builtin("fashion_mnist", normal_class=1)
    np.testing.assert_allclose(
        data.x_train[..., 0], arrays["x_train"][arrays["y_train"] == 1] / 255.0, rtol=1e-6
    )
    np.testing.assert_array_equal(data.y_test, (arrays["y_test"] != 1).astype(int))


def test_load_builtin_errors():
    with pytest.raises(ValueError, match="Unknown data set 'mnist'.*blobs.*wine"):
        load_builtin("mnist")
    with pytest.raises(ValueError, match="normal_class must be None"):
        load_builtin("blobs", normal_class=1)
    with pytest.raises(ValueError, match=r"\[11\] not found"):
        load_builtin("digits", normal_class=11)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("digits:3", ("digits", 3)),
        ("fashion_mnist:0", ("fashion_mnist", 0)),
        ("breast_cancer", ("breast_cancer", None)),
        (" wine : 2 ", ("wine", 2)),
    ],
)
def test_parse_data_spec(spec, expected):
    assert parse_data_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [("digits:three", "must be an integer"), ("cifar:1", "Valid names"), ("", "name:class")],
)
def test_parse_data_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_data_spec(spec)
