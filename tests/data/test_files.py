"""`keras_deepad.data.load_data`: the one loader behind every command's `--data`."""

import numpy as np
import pytest

from keras_deepad.data import LoadedData, load_data


def test_a_csv_with_a_label_column_gives_features_and_labels(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n")
    loaded = load_data(str(path), label_column="label")
    assert isinstance(loaded, LoadedData)
    np.testing.assert_array_equal(loaded.x_train, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(loaded.y_eval, [0, 1, 0])
    assert loaded.x_score is loaded.x_eval and loaded.description == "file rows.csv"


def test_npy_rows_are_scored_as_they_are_and_npz_needs_x(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    loaded = load_data(str(tmp_path / "x.npy"))
    assert loaded.y_eval is None and loaded.x_eval is None
    np.testing.assert_array_equal(loaded.x_score, x)
    np.savez(tmp_path / "bad.npz", features=x)
    with pytest.raises(ValueError, match="no array 'x'.*features"):
        load_data(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="does not exist"):
        load_data(str(tmp_path / "missing.csv"))


def test_a_builtin_set_gives_its_labelled_test_split():
    loaded = load_data("breast_cancer", seed=0)
    assert loaded.x_train.shape[1] == 30 and len(loaded.x_eval) == len(loaded.y_eval)
    assert set(np.unique(loaded.y_eval)) == {0, 1}
    assert loaded.x_score is loaded.x_eval
