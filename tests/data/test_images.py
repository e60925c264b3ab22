import numpy as np
import pytest

from keras_deepad.data import (
    add_channel_axis,
    global_contrast_normalization,
    load_fashion_mnist,
    read_idx,
)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_read_idx_ubyte_images(tmp_path, write_idx, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "images-idx3-ubyte", images, compress=compress)
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (5, 28, 28)
    np.testing.assert_array_equal(result, images)
    result.flags.writeable = True  # a private, writable copy


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_big_endian_types(tmp_path, write_idx, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype) * 3
    result = read_idx(write_idx(tmp_path / "array.idx", array))
    assert result.dtype == np.dtype(dtype)  # native byte order
    np.testing.assert_array_equal(result, array)


def test_read_idx_rejects_bad_files(tmp_path, write_idx):
    not_idx = tmp_path / "not.idx"
    not_idx.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(not_idx)
    truncated = write_idx(tmp_path / "short.idx", np.zeros((4, 3), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-2])
    with pytest.raises(ValueError, match="has 10 data bytes .* needs 12"):
        read_idx(truncated)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="shorter"):
        read_idx(tiny)
    with pytest.raises(FileNotFoundError, match="absent.idx"):
        read_idx(tmp_path / "absent.idx")


def _check_full_fashion_mnist(data):
    (x_train, y_train), (x_test, y_test) = data
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    for labels in (y_train, y_test):
        np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.max() == 255


def test_load_fashion_mnist_debian_files(debian_fashion_dir, monkeypatch):
    _check_full_fashion_mnist(load_fashion_mnist(debian_fashion_dir))
    # ... and found by the search with nothing else configured.
    monkeypatch.delenv("KERAS_DEEPAD_FASHION_MNIST", raising=False)
    _check_full_fashion_mnist(load_fashion_mnist(allow_download=False))


def test_load_fashion_mnist_from_explicit_directory(tmp_path, make_fashion_files):
    mixed = tmp_path / "plain"
    arrays = make_fashion_files(mixed, n_train=12, n_test=7, compress=False)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(mixed)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    np.testing.assert_array_equal(x_test, arrays["x_test"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_load_fashion_mnist_search_order(
    isolated_fashion_search, small_fashion_dir, make_fashion_files, monkeypatch
):
    tmp_path = isolated_fashion_search
    keras_arrays = make_fashion_files(
        tmp_path / "keras-home" / "datasets" / "fashion-mnist", n_train=11, n_test=5
    )
    (x_train, _), _ = load_fashion_mnist(allow_download=False)
    np.testing.assert_array_equal(x_train, keras_arrays["x_train"])
    # The environment variable comes before the Keras cache.
    env_dir, env_arrays = small_fashion_dir
    monkeypatch.setenv("KERAS_DEEPAD_FASHION_MNIST", str(env_dir))
    (x_train, _), _ = load_fashion_mnist(allow_download=False)
    np.testing.assert_array_equal(x_train, env_arrays["x_train"])


def test_load_fashion_mnist_not_found_errors(isolated_fashion_search):
    bogus = isolated_fashion_search / "bogus"
    with pytest.raises(FileNotFoundError, match="bogus.*dataset-fashion-mnist"):
        load_fashion_mnist(bogus)
    with pytest.raises(FileNotFoundError, match="Looked in .*no-debian.*keras-home"):
        load_fashion_mnist(allow_download=False)


def test_load_fashion_mnist_rejects_wrong_image_size(tmp_path, write_idx, make_fashion_files):
    directory = tmp_path / "wrong"
    make_fashion_files(directory)
    write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((20, 27, 27), np.uint8), True)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        load_fashion_mnist(directory)


@pytest.mark.parametrize("shape", [(4, 6, 6), (4, 6, 6, 3)])
def test_global_contrast_normalization_l1(shape):
    images = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    result = global_contrast_normalization(images)
    assert result.dtype == np.float32 and result.shape == shape
    axes = tuple(range(1, len(shape)))
    np.testing.assert_allclose(result.mean(axis=axes), 0, atol=1e-5)
    np.testing.assert_allclose(np.abs(result).mean(axis=axes), 1, rtol=1e-5)
    # Per image: scaling or shifting one image does not change its result.
    shifted = images.astype(np.float64)
    shifted[0] = 3 * shifted[0] + 10
    np.testing.assert_allclose(global_contrast_normalization(shifted), result, atol=1e-5)


def test_global_contrast_normalization_l2_and_constant_images():
    images = np.array([[[1.0, 3.0], [5.0, 7.0]], [[2.0, 2.0], [2.0, 2.0]]])
    result = global_contrast_normalization(images, scale="l2")
    centred = np.array([-3.0, -1.0, 1.0, 3.0])
    expected = centred / (np.sqrt(np.sum(centred**2)) / 4)
    np.testing.assert_allclose(result[0].ravel(), expected, rtol=1e-6)
    np.testing.assert_array_equal(result[1], 0)  # constant image: no division by zero
    with pytest.raises(ValueError, match="'l1' or 'l2'.*'max'"):
        global_contrast_normalization(images, scale="max")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        global_contrast_normalization(np.zeros(5))


def test_add_channel_axis():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    result = add_channel_axis(images)
    assert result.shape == (2, 3, 4, 1) and result.dtype == np.float32
    np.testing.assert_array_equal(result[..., 0], images)
    assert add_channel_axis(result).shape == (2, 3, 4, 1)
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 3, 4, 3\)"):
        add_channel_axis(np.zeros((2, 3, 4, 3)))
