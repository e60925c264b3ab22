"""Sharded files: `write_tfrecords` / `tfrecord_dataset`, and `csv_dataset` over patterns."""

import numpy as np
import pytest

from keras_deepad.data import csv_dataset, tfrecord_dataset, write_tfrecords


def _rows(n=103, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def _collect(dataset):
    return np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in dataset])


def test_tfrecords_round_trip_in_row_order(tmp_path):
    x = _rows()
    y = (np.arange(len(x)) % 3 == 0).astype(int)
    paths = write_tfrecords(x, tmp_path / "out" / "train", num_shards=4, y=y)
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        f"train-{i:05d}-of-00004.tfrecord" for i in range(4)
    ]
    assert not list((tmp_path / "out").glob("*.partial"))
    got = _collect(tfrecord_dataset(str(tmp_path / "out" / "train-*.tfrecord"), (5,), 16))
    np.testing.assert_array_equal(got, x)
    labelled = tfrecord_dataset(paths, (5,), batch_size=50, label_key="y")
    labels = np.concatenate([np.asarray(b[1]) for b in labelled])
    np.testing.assert_array_equal(labels, y)


def test_tfrecords_of_images_keep_their_shape(tmp_path):
    images = np.random.default_rng(1).random((20, 4, 4, 1)).astype("float32")
    write_tfrecords(images, tmp_path / "img", num_shards=3)
    batch = next(iter(tfrecord_dataset(str(tmp_path / "img-*"), (4, 4, 1), batch_size=8)))
    assert batch.shape == (8, 4, 4, 1)
    np.testing.assert_array_equal(batch, images[:8])


def test_shuffled_reading_keeps_every_row(tmp_path):
    x = _rows(200)
    write_tfrecords(x, tmp_path / "s", num_shards=5)
    got = _collect(tfrecord_dataset(str(tmp_path / "s-*"), (5,), 32, shuffle=True, seed=3))
    assert not np.array_equal(got, x)
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(x, axis=0))


# Keras warns at the end of every epoch over a dataset of unknown length (TFRecord files).
@pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning")
def test_a_detector_trains_and_scores_from_tfrecords(tmp_path):
    from keras_deepad.models import AE

    x = _rows(256)
    write_tfrecords(x, tmp_path / "t", num_shards=2)
    data = tfrecord_dataset(str(tmp_path / "t-*"), (5,), batch_size=64)
    model = AE(hidden_units=(8,), latent_dim=2, seed=0)
    model.fit(data, epochs=2, verbose=0)
    np.testing.assert_allclose(model.scaler.offset.numpy(), x.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(model.score(data), model.score(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.zeros((0, 3)), {}, "at least one row"),
        (np.array([[1.0, np.nan]]), {}, "NaN"),
        (np.array([["a", "b"]]), {}, "numeric"),
        (np.ones((4, 2)), {"num_shards": 0}, "num_shards must be a positive integer"),
        (np.ones((4, 2)), {"y": [1, 0]}, "y has 2 labels for 4 rows"),
    ],
)
def test_bad_rows_are_refused_before_writing(tmp_path, x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_tfrecords(x, tmp_path / "bad", **kwargs)
    assert not list(tmp_path.iterdir())


def test_missing_files_and_bad_shapes_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="No file matches"):
        tfrecord_dataset(str(tmp_path / "none-*"), (3,))
    write_tfrecords(np.ones((4, 2)), tmp_path / "ok", num_shards=1)
    with pytest.raises(ValueError, match="feature_shape"):
        tfrecord_dataset(str(tmp_path / "ok-*"), (0,))


def _write_csv(path, x, header="a,b,c"):
    lines = [header] + [",".join(f"{v:.6f}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")


def test_csv_dataset_reads_sharded_files_in_order(tmp_path):
    x = _rows(30, 3)
    for i, part in enumerate(np.array_split(x, 3)):
        _write_csv(tmp_path / f"part-{i}.csv", part)
    got = _collect(csv_dataset(str(tmp_path / "part-*.csv"), batch_size=7))
    np.testing.assert_allclose(got, x, atol=1e-5)
    listed = [tmp_path / "part-0.csv", tmp_path / "part-2.csv"]
    assert len(_collect(csv_dataset(listed, batch_size=7))) == 20


def test_csv_shards_with_different_headers_are_refused(tmp_path):
    _write_csv(tmp_path / "p-0.csv", _rows(3, 3))
    _write_csv(tmp_path / "p-1.csv", _rows(3, 3), header="a,b,d")
    with pytest.raises(ValueError, match="same header"):
        csv_dataset(str(tmp_path / "p-*.csv"))
    with pytest.raises(FileNotFoundError, match="not found"):
        csv_dataset(str(tmp_path / "q-*.csv"))
