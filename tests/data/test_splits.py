import numpy as np
import pytest

from keras_deepad.data import (
    ADBenchSplit,
    adbench_split,
    min_max_scale,
    one_class_split,
    one_class_split_single,
    semi_supervised_split,
)


def _labelled(n=400, anomaly_rate=0.1, n_features=5, seed=0):
    """Features whose first column is the sample index, so rows can be traced."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    x[:, 0] = np.arange(n)
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, size=int(n * anomaly_rate), replace=False)] = 1
    return x, y


def test_one_class_split_labels():
    x_train = np.arange(12).reshape(6, 2)
    y_train = np.array([0, 1, 2, 0, 1, 2])
    x_test = np.arange(10).reshape(5, 2)
    y_test = np.array([2, 0, 1, 2, 2])
    x_normal, x_te, y_binary = one_class_split(x_train, y_train, x_test, y_test, 2)
    np.testing.assert_array_equal(x_normal, x_train[[2, 5]])
    assert x_te is x_test or np.array_equal(x_te, x_test)
    np.testing.assert_array_equal(y_binary, [0, 1, 1, 0, 0])
    assert y_binary.dtype == np.int64


def test_one_class_split_several_normal_classes():
    y_train = np.array([0, 1, 2, 3])
    y_test = np.array([3, 2, 1, 0])
    x_normal, _, y_binary = one_class_split(y_train[:, None], y_train, y_test, y_test, [1, 3])
    np.testing.assert_array_equal(x_normal[:, 0], [1, 3])
    np.testing.assert_array_equal(y_binary, [0, 1, 0, 1])


def test_one_class_split_errors():
    y = np.array([0, 1, 1])
    with pytest.raises(ValueError, match=r"\[7\] not found in y_train.*\[0, 1\]"):
        one_class_split(np.zeros((3, 2)), y, np.zeros((3, 2)), y, 7)
    with pytest.raises(ValueError, match="x_test.shape=.*y_test.shape"):
        one_class_split(np.zeros((3, 2)), y, np.zeros((2, 2)), y, 0)
    with pytest.raises(ValueError, match="empty"):
        one_class_split(np.zeros((3, 2)), y, np.zeros((3, 2)), y, [])


def test_one_class_split_single_is_stratified():
    y = np.repeat(np.arange(4), 50)
    x = np.arange(200, dtype=np.float32)[:, None]
    x_normal, x_test, y_test = one_class_split_single(x, y, normal_class=2, seed=1)
    assert len(x_test) == 60
    np.testing.assert_array_equal(np.bincount(y[x_test[:, 0].astype(int)]), [15] * 4)
    assert len(x_normal) == 35 and set(y[x_normal[:, 0].astype(int)]) == {2}
    assert not set(x_normal[:, 0]) & set(x_test[:, 0])
    assert y_test.sum() == 45
    x_normal_2, _, _ = one_class_split_single(x, y, normal_class=2, seed=1)
    np.testing.assert_array_equal(x_normal, x_normal_2)


def test_adbench_split_ratio_and_stratification():
    x, y = _labelled(n=400, anomaly_rate=0.1)
    split = adbench_split(x, y, seed=1)
    assert isinstance(split, ADBenchSplit)
    x_train, x_test, y_train, y_test, scaler = split
    assert len(x_train) == 280 and len(x_test) == 120
    assert y_train.sum() == 28 and y_test.sum() == 12  # 10 % in both parts
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    other = adbench_split(x, y, seed=2)
    assert not np.array_equal(other.y_test, y_test)


def test_adbench_scaler_fitted_on_train_only():
    x, y = _labelled(n=300)
    x[5, 1] = 1e6  # an extreme value: wherever row 5 lands, only train min/max matter
    raw = adbench_split(x, y, seed=3, scale=False)
    assert raw.scaler is None
    split = adbench_split(x, y, seed=3)
    np.testing.assert_array_equal(split.x_train.min(axis=0), 0.0)
    np.testing.assert_array_equal(split.x_train.max(axis=0), 1.0)
    np.testing.assert_allclose(split.scaler.data_min_, raw.x_train.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(split.scaler.data_max_, raw.x_train.max(axis=0), rtol=1e-6)
    expected_test = (raw.x_test - raw.x_train.min(axis=0)) / np.ptp(raw.x_train, axis=0)
    np.testing.assert_allclose(split.x_test, expected_test, rtol=1e-5, atol=1e-6)


def test_min_max_scale_bounds_exact_for_float32():
    x_train = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32) * 37.3
    x_test = x_train[:5] * 2
    scaled_train, scaled_test, _ = min_max_scale(x_train, x_test)
    assert scaled_train.min() == 0.0 and scaled_train.max() == 1.0
    assert scaled_test.dtype == np.float32
    assert scaled_test.max() > 1.0  # test data is not clipped


def test_adbench_split_errors():
    x, y = _labelled(n=50)
    with pytest.raises(ValueError, match="binary anomaly labels"):
        adbench_split(x, y + 1)
    with pytest.raises(ValueError, match="test_size"):
        adbench_split(x, y, test_size=1.5)
    with pytest.raises(ValueError, match="2-D"):
        adbench_split(x[:, :, None], y)
    y_one = np.zeros(50, dtype=int)
    y_one[0] = 1
    with pytest.raises(ValueError, match=r"at least 2 samples per class.*\[1\]"):
        adbench_split(x, y_one)


def test_semi_supervised_split_has_no_anomaly_in_train():
    x, y = _labelled(n=500, anomaly_rate=0.2)
    x_train, x_test, y_test = semi_supervised_split(x, y, seed=4)
    ids_train = x_train[:, 0].astype(int)
    ids_test = x_test[:, 0].astype(int)
    assert y[ids_train].sum() == 0
    assert len(x_train) == 280  # the 350 training rows minus their 70 anomalies
    assert len(x_test) == 150 and y_test.sum() == 30
    np.testing.assert_array_equal(y_test, y[ids_test])
    assert not set(ids_train) & set(ids_test)
    with pytest.raises(ValueError, match="y_anomaly must hold binary"):
        semi_supervised_split(x, y * 3)
    with pytest.raises(ValueError, match="seed must be an integer"):
        semi_supervised_split(x, y, seed="a")
