import numpy as np
import pandas as pd
import pytest

from keras_deepad.data import load_csv, load_sklearn


@pytest.fixture
def csv_path(tmp_path):
    frame = pd.DataFrame(
        {"x1": [0.5, 1.0, 1.5], "x2": [1, 2, 3], "target": [0, 1, 0], "x3": [9.0, 8.0, 7.0]}
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_load_csv_with_label_column(csv_path):
    x, y = load_csv(csv_path, label_column="target")
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[0.5, 1, 9], [1, 2, 8], [1.5, 3, 7]])
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_load_csv_without_label_and_with_feature_columns(csv_path):
    x, y = load_csv(csv_path)
    assert y is None and x.shape == (3, 4)
    x, _ = load_csv(csv_path, feature_columns=["x3", "x1"])
    np.testing.assert_array_equal(x, [[9, 0.5], [8, 1], [7, 1.5]])


def test_load_csv_errors(tmp_path, csv_path):
    with pytest.raises(ValueError, match=r"\['nope'\] not found.*Available columns"):
        load_csv(csv_path, label_column="nope")
    with pytest.raises(ValueError, match=r"\['x9'\] not found"):
        load_csv(csv_path, feature_columns=["x1", "x9"])
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("a,colour,b\n1,red,2\n3,blue,4\n")
    with pytest.raises(ValueError, match=r"\['colour'\] .* not numeric"):
        load_csv(mixed)
    load_csv(mixed, feature_columns=["a", "b"])  # leaving it out works
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_csv(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_csv(header_only)
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("a,b\n1,\n2,3\n")
    with pytest.raises(ValueError, match=r"\['b'\] .* missing values"):
        load_csv(gaps)
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [
        ("breast_cancer", (569, 30), 2),
        ("digits", (1797, 64), 10),
        ("wine", (178, 13), 3),
        ("iris", (150, 4), 3),
    ],
)
def test_load_sklearn(name, shape, n_classes):
    x, y = load_sklearn(name)
    assert x.shape == shape and x.dtype == np.float32
    assert y.shape == (shape[0],) and y.dtype == np.int64
    np.testing.assert_array_equal(np.unique(y), np.arange(n_classes))


def test_load_sklearn_unknown_name():
    with pytest.raises(ValueError, match="breast_cancer.*Received: name='mnist'"):
        load_sklearn("mnist")
