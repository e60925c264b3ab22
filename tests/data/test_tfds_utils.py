import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_deepad.data import (
    LocalArrays,
    LocalArraysConfig,
    LocalFashionMNIST,
    LocalFashionMNISTConfig,
    load_tfds,
)


@pytest.fixture(autouse=True)
def _quiet_tfds():
    tfds.disable_progress_bar()


def _read_split(builder, split):
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return arrays["image"], arrays["label"]


def test_local_fashion_mnist_round_trip(tmp_path, small_fashion_dir):
    source, arrays = small_fashion_dir
    builder = LocalFashionMNIST(source_dir=source, data_dir=tmp_path / "tfds")
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 30
    assert builder.info.splits["test"].num_examples == 20
    assert builder.info.features["image"].shape == (28, 28, 1)
    assert builder.info.features["label"].num_classes == 10
    for split in ("train", "test"):
        images, labels = _read_split(builder, split)
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1)
        np.testing.assert_array_equal(images[..., 0], arrays[f"x_{split}"])
        np.testing.assert_array_equal(labels, arrays[f"y_{split}"])

    # load_tfds reads the prepared data back without knowing the source.
    x, y = load_tfds("local_fashion_mnist", split="test", data_dir=tmp_path / "tfds")
    np.testing.assert_array_equal(x[..., 0], arrays["x_test"])
    np.testing.assert_array_equal(y, arrays["y_test"])
    dataset = load_tfds(
        "local_fashion_mnist", split="train[:4]", data_dir=tmp_path / "tfds", as_arrays=False
    )
    pairs = [(np.asarray(image), int(label)) for image, label in dataset]
    assert [label for _, label in pairs] == arrays["y_train"][:4].tolist()
    np.testing.assert_array_equal(pairs[0][0][..., 0], arrays["x_train"][0])


def test_local_fashion_mnist_from_builder_config(tmp_path, small_fashion_dir):
    source, arrays = small_fashion_dir
    config = LocalFashionMNISTConfig(name="small", source_dir=str(source))
    builder = LocalFashionMNIST(config=config, data_dir=tmp_path)
    builder.download_and_prepare()
    assert "small" in builder.data_dir
    x, y = load_tfds(
        "local_fashion_mnist", "train", data_dir=tmp_path, builder_kwargs={"config": config}
    )
    np.testing.assert_array_equal(y, arrays["y_train"])


def test_local_fashion_mnist_missing_source(tmp_path):
    builder = LocalFashionMNIST(source_dir=tmp_path / "empty", data_dir=tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match="empty.*source_dir="):
        builder.download_and_prepare()


@pytest.mark.slow
def test_local_fashion_mnist_from_debian_files(tmp_path, debian_fashion_dir):
    # ~30 s on 2 cores: PNG-encodes all 70,000 images.
    from keras_deepad.data import load_fashion_mnist

    builder = LocalFashionMNIST(source_dir=debian_fashion_dir, data_dir=tmp_path)
    builder.download_and_prepare()
    (_, _), (x_test, y_test) = load_fashion_mnist(debian_fashion_dir)
    assert builder.info.splits["train"].num_examples == 60000
    images, labels = _read_split(builder, "test")
    np.testing.assert_array_equal(images[..., 0], x_test)
    np.testing.assert_array_equal(labels, y_test)


def test_local_arrays_single_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(15, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=15)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=x, y=y)
    builder = LocalArrays(npz_path=npz, data_dir=tmp_path / "tfds")
    builder.download_and_prepare()
    assert list(builder.info.splits) == ["train"]
    x_back, y_back = load_tfds(
        "local_arrays", data_dir=tmp_path / "tfds", image_key="x", label_key="y"
    )
    assert x_back.dtype == np.float32
    np.testing.assert_array_equal(x_back, x)
    np.testing.assert_array_equal(y_back, y)


def test_local_arrays_train_test_without_labels(tmp_path):
    x_train = np.arange(24, dtype=np.uint8).reshape(6, 2, 2)
    x_test = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    npz = tmp_path / "images.npz"
    np.savez(npz, x_train=x_train, x_test=x_test)
    config = LocalArraysConfig(name="images", npz_path=str(npz))
    builder = LocalArrays(config=config, data_dir=tmp_path)
    builder.download_and_prepare()
    x, y = load_tfds(
        "local_arrays",
        split="test",
        data_dir=tmp_path,
        image_key="x",
        label_key=None,
        builder_kwargs={"config": config},
    )
    assert y is None
    np.testing.assert_array_equal(x, x_test)


def test_local_arrays_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'x'.*Found keys: \\['features'\\]"):
        LocalArrays(npz_path=bad, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        LocalArrays(npz_path=tmp_path / "absent.npz", data_dir=tmp_path)


def test_load_tfds_errors(tmp_path, small_fashion_dir):
    with pytest.raises(FileNotFoundError, match="not prepared.*download=False"):
        load_tfds("local_fashion_mnist", data_dir=tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="Unknown TFDS data set"):
        load_tfds("no_such_dataset_xyz", data_dir=tmp_path)
    source, _ = small_fashion_dir
    LocalFashionMNIST(source_dir=source, data_dir=tmp_path / "tfds").download_and_prepare()
    with pytest.raises(ValueError, match="Feature 'pixels' not in"):
        load_tfds("local_fashion_mnist", data_dir=tmp_path / "tfds", image_key="pixels")
