"""Shared fixtures for the data tests: IDX files written byte by byte."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def write_idx_file(path, array, compress=False):
    """Writes `array` in the IDX format by hand (independently of `read_idx`)."""
    array = np.asarray(array)
    header = struct.pack(">HBB", 0, _TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)
    return Path(path)


@pytest.fixture
def write_idx():
    return write_idx_file


def make_small_fashion_mnist(directory, n_train=30, n_test=20, seed=0, compress=True):
    """Four Fashion-MNIST-like IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for role, name in names.items():
        suffix = ".gz" if compress else ""
        write_idx_file(directory / (name + suffix), arrays[role], compress=compress)
    return arrays


@pytest.fixture
def make_fashion_files():
    return make_small_fashion_mnist


@pytest.fixture
def debian_fashion_dir():
    """Debian's Fashion-MNIST directory; skips the test when it is not installed."""
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    files += ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all((DEBIAN_DIR / f).is_file() or (DEBIAN_DIR / (f + ".gz")).is_file() for f in files):
        pytest.skip(
            f"Fashion-MNIST not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)"
        )
    return DEBIAN_DIR


@pytest.fixture
def small_fashion_dir(tmp_path):
    """A directory with small gzipped Fashion-MNIST-like files, and their arrays."""
    directory = tmp_path / "fashion-small"
    return directory, make_small_fashion_mnist(directory)


@pytest.fixture
def isolated_fashion_search(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere: env var unset, Debian dir and Keras home empty."""
    from keras_deepad.data import images

    monkeypatch.delenv("KERAS_DEEPAD_FASHION_MNIST", raising=False)
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path
