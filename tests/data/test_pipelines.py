import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_deepad.data import csv_dataset, make_dataset


def _rows(dataset):
    return np.concatenate([np.asarray(batch) for batch in dataset])


def _pairs(dataset):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_make_dataset_batches_every_row_once_in_order():
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    dataset = make_dataset(x, batch_size=4)
    assert [int(b.shape[0]) for b in dataset] == [4, 4, 2]
    rows = _rows(dataset)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, x.astype(np.float32))
    assert dataset.element_spec.shape.as_list() == [None, 3]


def test_make_dataset_drop_remainder():
    dataset = make_dataset(np.zeros((10, 2)), batch_size=4, drop_remainder=True)
    assert [int(b.shape[0]) for b in dataset] == [4, 4]


def test_make_dataset_shuffle_is_seeded_permutation_redrawn_each_epoch():
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    dataset = make_dataset(x, batch_size=16, shuffle=True, seed=7)
    epoch_1, epoch_2 = _rows(dataset), _rows(dataset)
    for epoch in (epoch_1, epoch_2):
        assert not np.array_equal(epoch, x)
        np.testing.assert_array_equal(np.sort(epoch[:, 0]), x[:, 0])
    assert not np.array_equal(epoch_1, epoch_2)  # reshuffle_each_iteration
    again = _rows(make_dataset(x, batch_size=16, shuffle=True, seed=7))
    np.testing.assert_array_equal(again, epoch_1)


def test_make_dataset_xy_pairs_stay_aligned_when_shuffled():
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25, dtype=np.int64)
    dataset = make_dataset(x, y, batch_size=8, shuffle=True, seed=0, cache=True)
    for _ in range(2):  # second epoch comes from the cache
        xs, ys = _pairs(dataset)
        assert ys.dtype == np.int64
        np.testing.assert_array_equal(xs[:, 0], 2 * ys)
        np.testing.assert_array_equal(np.sort(ys), y)


def test_make_dataset_from_pandas():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    labels = pd.Series([0, 1, 0])
    xs, ys = _pairs(make_dataset(frame, labels, batch_size=2, prefetch=False))
    assert xs.dtype == np.float32
    np.testing.assert_array_equal(xs, frame.to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(ys, [0, 1, 0])


def test_make_dataset_from_tensor_and_images():
    x = tf.random.uniform((6, 4, 4, 1), maxval=255, dtype=tf.int32)
    rows = _rows(make_dataset(x, batch_size=4))
    assert rows.shape == (6, 4, 4, 1)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, x.numpy().astype(np.float32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": np.zeros(5)}, "at least 2 dimensions"),
        ({"x": np.zeros((0, 3))}, "no rows"),
        ({"x": np.zeros((5, 3)), "y": np.zeros(4)}, "same number of rows"),
        ({"x": np.zeros((5, 3)), "batch_size": 0}, "batch_size"),
        ({"x": np.zeros((5, 3)), "seed": 1.5}, "seed"),
        ({"x": np.zeros((5, 3)), "buffer_size": -1}, "buffer_size"),
        ({"x": np.array([["a", "b"]])}, "numeric"),
    ],
)
def test_make_dataset_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(**kwargs)


@pytest.fixture
def csv_file(tmp_path):
    frame = pd.DataFrame(
        {
            "a": np.arange(10, dtype=np.float64) / 2,
            "b": np.arange(10) * 10,
            "label": np.arange(10) % 2,
            "c": -np.arange(10, dtype=np.float64),
        }
    )
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_csv_dataset_with_label_column(csv_file):
    path, frame = csv_file
    dataset = csv_dataset(path, label_column="label", batch_size=4)
    xs, ys = _pairs(dataset)
    assert xs.dtype == np.float32 and xs.shape == (10, 3)
    np.testing.assert_array_equal(xs, frame[["a", "b", "c"]].to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(ys, frame["label"])


def test_csv_dataset_without_label_column_uses_all_columns_in_file_order(csv_file):
    path, frame = csv_file
    xs = _rows(csv_dataset(path, batch_size=3))
    np.testing.assert_array_equal(xs, frame.to_numpy(dtype=np.float32))
    # feature_columns are stacked in file order, whatever the order asked.
    xs = _rows(csv_dataset(path, feature_columns=["c", "a"], batch_size=3))
    np.testing.assert_array_equal(xs, frame[["a", "c"]].to_numpy(dtype=np.float32))


def test_csv_dataset_shuffle_is_a_permutation(csv_file):
    path, frame = csv_file
    xs, ys = _pairs(csv_dataset(path, "label", batch_size=4, shuffle=True, seed=3))
    np.testing.assert_array_equal(np.sort(xs[:, 0]), frame["a"].to_numpy(np.float32))
    np.testing.assert_array_equal(ys, (xs[:, 0] * 2).astype(int) % 2)


def test_csv_dataset_errors(tmp_path, csv_file):
    path, _ = csv_file
    with pytest.raises(ValueError, match=r"\['missing'\] not found"):
        csv_dataset(path, label_column="missing")
    text = tmp_path / "text.csv"
    text.write_text("a,name\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"\['name'\] .* not numeric"):
        csv_dataset(text)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        csv_dataset(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(ValueError, match="no data rows"):
        csv_dataset(header_only)
    with pytest.raises(FileNotFoundError):
        csv_dataset(tmp_path / "nope.csv")


def test_make_dataset_rejects_nan_before_tensorflow():
    x = np.zeros((4, 2), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN value\(s\) \(first in sample 2\)"):
        make_dataset(x)
