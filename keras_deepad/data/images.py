"""Image data: the IDX format, Fashion-MNIST from local files, preprocessing."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV_VAR",
    "FASHION_MNIST_FILES",
    "add_channel_axis",
    "find_fashion_mnist_files",
    "global_contrast_normalization",
    "load_fashion_mnist",
    "read_idx",
]

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

FASHION_MNIST_ENV_VAR = "KERAS_DEEPAD_FASHION_MNIST"
"""Environment variable naming a directory that holds the Fashion-MNIST files."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""

FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
"""Role -> base file name (the ``.gz`` suffix is optional)."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads a file in the IDX format (MNIST, Fashion-MNIST) into numpy.

    The file may be gzip-compressed or not; compression is detected from the
    content, not the file name. No checksum is verified.

    Args:
        path: Path of the IDX file.

    Returns:
        An array with the dimensions and element type stored in the file, in
        native byte order (e.g. ``uint8`` of shape ``(60000, 28, 28)``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a valid IDX file.

    Example:
        >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found. Received: path={str(path)!r}")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(
                f"{str(path)!r} looks gzip-compressed but could not be decompressed: {error}"
            ) from error
    if len(raw) < 4:
        raise ValueError(
            f"{str(path)!r} is not an IDX file: {len(raw)} bytes is shorter "
            "than the 4-byte magic number."
        )
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{str(path)!r} is not an IDX file: bad magic number "
            f"0x{raw[:4].hex()} (expected 0x0000, a type code in "
            f"{sorted(hex(c) for c in _IDX_DTYPES)} and the number of "
            "dimensions)."
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{str(path)!r} is truncated: the header declares {ndim} "
            f"dimensions but the file has only {len(raw)} bytes."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        raise ValueError(
            f"{str(path)!r} has {actual} data bytes but its header "
            f"(shape={shape}, dtype={dtype.name}) needs {expected}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def find_fashion_mnist_files(directory: str | os.PathLike) -> dict[str, Path] | None:
    """Looks for the four Fashion-MNIST IDX files in one directory.

    Args:
        directory: Directory to look in.

    Returns:
        A dict mapping ``"x_train"``, ``"y_train"``, ``"x_test"`` and
        ``"y_test"`` to file paths (``.gz`` preferred over uncompressed when
        both exist), or ``None`` when any of the four is missing.
    """
    directory = Path(directory).expanduser()
    found = {}
    for role, stem in FASHION_MNIST_FILES.items():
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                found[role] = directory / name
                break
        else:
            return None
    return found


def _fashion_mnist_search_dirs() -> list[Path]:
    """The directories searched when no explicit path is given, in order."""
    dirs = []
    env_dir = os.environ.get(FASHION_MNIST_ENV_VAR)
    if env_dir:
        # Set on purpose: a wrong value is an error, not a reason to look elsewhere.
        env_path = Path(env_dir).expanduser()
        if find_fashion_mnist_files(env_path) is None:
            raise FileNotFoundError(
                f"{FASHION_MNIST_ENV_VAR}={env_dir!r} does not name a folder holding the "
                f"Fashion-MNIST files {sorted(FASHION_MNIST_FILES.values())} (each with or "
                f"without '.gz'); fix it or unset it."
            )
        dirs.append(env_path)
    dirs.append(Path(DEBIAN_FASHION_MNIST_DIR))
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    dirs.append(Path(keras_home).expanduser() / "datasets" / "fashion-mnist")
    return dirs


def _load_fashion_mnist_dir(files: dict[str, Path]):
    arrays = {role: read_idx(file) for role, file in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise ValueError(
                f"{str(files['x_' + split])!r} does not hold uint8 images of "
                f"shape (N, 28, 28): got shape={x.shape}, dtype={x.dtype}."
            )
        if y.shape != (x.shape[0],):
            raise ValueError(
                f"{str(files['y_' + split])!r} holds {y.shape} labels for {x.shape[0]} images."
            )
    return (
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
    )


def load_fashion_mnist(
    path: str | os.PathLike | None = None, *, allow_download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads Fashion-MNIST from local IDX files, downloading only as a last resort.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each with or
    without ``.gz``) in, in order:

    1. ``path``, when given (and nowhere else: a wrong explicit path is an
       error, not a reason to search elsewhere);
    2. the directory in the ``KERAS_DEEPAD_FASHION_MNIST`` environment
       variable;
    3. ``/usr/share/datasets/fashion-mnist`` (Debian's
       ``dataset-fashion-mnist`` package);
    4. ``$KERAS_HOME/datasets/fashion-mnist``, or
       ``~/.keras/datasets/fashion-mnist`` when ``KERAS_HOME`` is unset;
    5. ``keras.datasets.fashion_mnist.load_data()``, which downloads.

    Checksums are not verified: Debian recompresses the ``.gz`` files, so
    their MD5 differs from the upstream one while the content is identical.

    Args:
        path: Directory holding the four files. When given, only this
            directory is used.
        allow_download: Whether to fall back to
            ``keras.datasets.fashion_mnist.load_data()`` when no local files
            are found.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: ``uint8`` images of shape
        ``(60000, 28, 28)`` and ``(10000, 28, 28)`` and ``uint8`` labels in
        ``0..9``.

    Raises:
        FileNotFoundError: If the files are not found (and, for
            ``path=None``, the download is disabled or fails). The message
            lists every directory searched.
        ValueError: If a file is found but is not valid Fashion-MNIST data.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
        >>> x_train.shape
        (60000, 28, 28)
    """
    if path is not None:
        files = find_fashion_mnist_files(path)
        if files is None:
            raise FileNotFoundError(
                "Fashion-MNIST files not found in the given directory. "
                f"Received: path={str(path)!r}. Expected "
                f"{sorted(FASHION_MNIST_FILES.values())} (each with or without "
                "'.gz'). `apt-get install dataset-fashion-mnist` installs them "
                f"into {str(DEBIAN_FASHION_MNIST_DIR)!r}."
            )
        return _load_fashion_mnist_dir(files)

    searched = _fashion_mnist_search_dirs()
    for directory in searched:
        files = find_fashion_mnist_files(directory)
        if files is not None:
            return _load_fashion_mnist_dir(files)

    where = ", ".join(repr(str(d)) for d in searched)
    message = (
        f"Fashion-MNIST files not found. Looked in {where} (set "
        f"{FASHION_MNIST_ENV_VAR} to a directory holding "
        f"{sorted(FASHION_MNIST_FILES.values())}, with or without '.gz'). "
        "`apt-get install dataset-fashion-mnist` provides them offline."
    )
    if not allow_download:
        raise FileNotFoundError(message + " Download disabled (allow_download=False).")
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # any network/HTTP/checksum failure
        raise FileNotFoundError(
            message + " Downloading with keras.datasets.fashion_mnist.load_data() "
            f"failed too: {type(error).__name__}: {error}"
        ) from error
    return (x_train, y_train), (x_test, y_test)


def global_contrast_normalization(images, scale: str = "l1") -> np.ndarray:
    """Per-image global contrast normalisation, as in Deep SVDD (Ruff et al. 2018).

    Each image has its own mean subtracted and is divided by its own
    contrast: the mean absolute deviation for ``scale="l1"``, or
    ``sqrt(sum(x**2)) / n_features`` for ``scale="l2"`` (the definition in
    the Deep SVDD reference code). A constant image, whose contrast is zero,
    becomes all zeros.

    Args:
        images: Array of shape ``(N, ...)`` (e.g. ``(N, 28, 28)`` or
            ``(N, H, W, C)``), any numeric dtype.
        scale: ``"l1"`` or ``"l2"``.

    Returns:
        A ``float32`` array of the same shape.

    Raises:
        ValueError: For an unknown ``scale`` or an input with fewer than two
            dimensions.
    """
    if scale not in ("l1", "l2"):
        raise ValueError(f"scale must be 'l1' or 'l2'. Received: scale={scale!r}")
    x = np.asarray(images)
    if x.ndim < 2:
        raise ValueError(
            "images must have shape (n_images, ...) with at least 2 dimensions. "
            f"Received: shape={x.shape}"
        )
    x = x.astype(np.float32, copy=True)
    axes = tuple(range(1, x.ndim))
    x -= x.mean(axis=axes, keepdims=True)
    if scale == "l1":
        contrast = np.mean(np.abs(x), axis=axes, keepdims=True)
    else:
        n_features = int(np.prod(x.shape[1:]))
        contrast = np.sqrt(np.sum(x**2, axis=axes, keepdims=True)) / n_features
    # Constant images: leave the (all-zero) centred image instead of 0/0.
    contrast[contrast == 0] = 1.0
    x /= contrast
    return x


def add_channel_axis(images) -> np.ndarray:
    """Turns grey-scale images ``(N, H, W)`` into ``(N, H, W, 1)`` ``float32``.

    Values are not rescaled. An array that already has a trailing channel
    axis of size 1 is returned as ``float32`` unchanged in shape.

    Args:
        images: Array of shape ``(N, H, W)`` or ``(N, H, W, 1)``.

    Returns:
        A ``float32`` array of shape ``(N, H, W, 1)``.

    Raises:
        ValueError: For any other shape.
    """
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        return x.astype(np.float32, copy=False)
    if x.ndim != 3:
        raise ValueError(
            f"images must have shape (N, H, W) or (N, H, W, 1). Received: shape={x.shape}"
        )
    return x.astype(np.float32, copy=False)[..., np.newaxis]
