import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_deepad.utils.validation import check_array, check_dataset_spec


def test_converts_numeric_inputs_to_float32():
    for value in (
        np.arange(6).reshape(3, 2),
        [[1, 2], [3, 4]],
        np.ones((2, 2), bool),
        tf.ones((2, 2), tf.float64),
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}),
    ):
        out = check_array(value)
        assert out.dtype == np.float32 and out.ndim == 2


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "is None"),
        (np.array([["a", "b"]]), "strings"),
        (np.array([[1 + 2j]]), "complex"),
        (np.array([1.0, 2.0]), "rank >= 2.*reshape"),
        (np.float32(3.0), "rank"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((3, 0)), "no features"),
        (np.array([[1.0, np.nan], [np.nan, 2.0]]), r"2 NaN value\(s\) \(first in sample 0\)"),
        (np.array([[1.0], [np.inf]]), r"1 infinite value\(s\) \(first in sample 1\)"),
        (pd.DataFrame({"a": [1.0], "city": ["Oslo"]}), r"non-numeric columns \['city'\]"),
        (pd.DataFrame({"a": [1.0, None]}), "NaN"),
        ([[1, 2], [3]], "same shape"),
    ],
)
def test_bad_inputs_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        check_array(value)


def test_shape_checks_against_the_model():
    with pytest.raises(ValueError, match="3 features per sample but the model expects 4"):
        check_array(np.zeros((2, 3)), feature_shape=(4,))
    with pytest.raises(ValueError, match=r"samples of shape \(8, 8, 3\).*expects \(8, 8, 1\)"):
        check_array(np.zeros((2, 8, 8, 3)), feature_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="rank 2.*expects rank 4"):
        check_array(np.zeros((2, 64)), feature_shape=(8, 8, 1))


def test_dataset_specs():
    x = np.zeros((10, 4), "float32")
    spec = check_dataset_spec(tf.data.Dataset.from_tensor_slices(x).batch(2), (4,))
    assert spec.shape.as_list() == [None, 4]
    with pytest.raises(ValueError, match="batched"):
        check_dataset_spec(tf.data.Dataset.from_tensor_slices(x), (4,))
    with pytest.raises(ValueError, match="strings"):
        check_dataset_spec(tf.data.Dataset.from_tensor_slices([["a"]]).batch(1))
    with pytest.raises(ValueError, match="dicts"):
        check_dataset_spec(tf.data.Dataset.from_tensor_slices({"f": x}).batch(2))
    with pytest.raises(ValueError, match="expects"):
        check_dataset_spec(tf.data.Dataset.from_tensor_slices(x).batch(2), (5,))
