"""Ready-to-use anomaly-detection data sets, named for the command line."""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_deepad.data.images import add_channel_axis, load_fashion_mnist
from keras_deepad.data.splits import (
    min_max_scale,
    one_class_split,
    one_class_split_single,
    semi_supervised_split,
)
from keras_deepad.data.tabular import load_sklearn

__all__ = ["BUILTIN_DATASETS", "BuiltinData", "load_builtin", "parse_data_spec"]

BUILTIN_DATASETS = {
    "blobs": "Synthetic: 16-D Gaussian mixture (normal) vs. a wide uniform box "
    "(anomalies); 1000 train, 500 + 50 test.",
    "breast_cancer": "scikit-learn breast cancer (30 features): benign normal, "
    "malignant anomalous; trained on benign only.",
    "digits": "scikit-learn 8x8 digits (64 features), one class normal "
    "(default 0), the other nine anomalous.",
    "fashion_mnist": "Fashion-MNIST 28x28x1 images, one class normal (default 0) "
    "on the official train/test split; needs local files.",
    "iris": "scikit-learn iris (4 features), one class normal (default 0).",
    "wine": "scikit-learn wine (13 features), one class normal (default 0).",
}
"""Name -> one-line description of every data set `load_builtin` knows."""

_ONE_CLASS = ("digits", "fashion_mnist", "iris", "wine")

# Sizes of the synthetic "blobs" set.
_BLOBS_DIM = 16
_BLOBS_COMPONENTS = 3
_BLOBS_TRAIN = 1000
_BLOBS_TEST_NORMAL = 500
_BLOBS_TEST_ANOMALIES = 50


@dataclasses.dataclass(frozen=True)
class BuiltinData:
    """A data set ready for training and evaluating a detector.

    Attributes:
        name: Data set name, as in `BUILTIN_DATASETS`.
        x_train: ``float32`` training data (normal samples only).
        x_test: ``float32`` test data.
        y_test: ``int64`` test labels, 1 = anomaly, 0 = normal.
        description: What the data are and how they were split.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(30,)`` or ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def contamination(self) -> float:
        """Fraction of anomalies in the test set."""
        return float(np.mean(self.y_test))


def parse_data_spec(spec: str) -> tuple[str, int | None]:
    """Parses a command-line data set spec such as ``"digits:3"``.

    Args:
        spec: ``"name"`` or ``"name:normal_class"``.

    Returns:
        ``(name, normal_class)``, with ``normal_class`` ``None`` when absent.

    Raises:
        ValueError: For an unknown name or a class that is not an integer.

    Example:
        >>> parse_data_spec("digits:3")
        ('digits', 3)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"A data spec is 'name' or 'name:class'. Received: spec={spec!r}")
    name, sep, cls = spec.strip().partition(":")
    name = name.strip()
    _check_name(name)
    if not sep:
        return name, None
    try:
        return name, int(cls)
    except ValueError:
        raise ValueError(
            f"The normal class after ':' must be an integer. Received: spec={spec!r}"
        ) from None


def _check_name(name) -> None:
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"Unknown data set {name!r}. Valid names: {sorted(BUILTIN_DATASETS)}")


def _blobs(seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3.0, 3.0, size=(_BLOBS_COMPONENTS, _BLOBS_DIM))

    def normal(n):
        component = rng.integers(_BLOBS_COMPONENTS, size=n)
        return centres[component] + 0.5 * rng.standard_normal((n, _BLOBS_DIM))

    x_train = normal(_BLOBS_TRAIN)
    anomalies = rng.uniform(-8.0, 8.0, size=(_BLOBS_TEST_ANOMALIES, _BLOBS_DIM))
    x_test = np.concatenate([normal(_BLOBS_TEST_NORMAL), anomalies])
    y_test = np.repeat([0, 1], [_BLOBS_TEST_NORMAL, _BLOBS_TEST_ANOMALIES])
    order = rng.permutation(len(y_test))
    return (
        x_train.astype(np.float32),
        x_test[order].astype(np.float32),
        y_test[order].astype(np.int64),
    )


def load_builtin(name: str, seed: int = 0, normal_class: int | None = None) -> BuiltinData:
    """Loads a named data set split for anomaly detection.

    ========================  =================================================
    ``"breast_cancer"``       benign (scikit-learn target 1) normal, malignant
                              anomalous; `semi_supervised_split` with ``seed``
                              (train = benign part of a stratified 70 %),
                              min-max scaled with statistics of ``x_train``.
    ``"digits"``              one-class protocol (`one_class_split_single`,
                              ``seed``) with ``normal_class`` (default 0);
                              pixels divided by 16.
    ``"wine"``, ``"iris"``    one-class protocol as for digits, min-max scaled
                              with statistics of ``x_train``.
    ``"fashion_mnist"``       one-class protocol on the official 60k/10k split
                              (``seed`` unused), ``normal_class`` default 0;
                              images in ``[0, 1]``, shape ``(N, 28, 28, 1)``.
                              Needs local files, see `load_fashion_mnist`.
    ``"blobs"``               synthetic, from ``seed``: normal = mixture of 3
                              Gaussians (std 0.5, centres uniform in
                              ``[-3, 3]^16``), anomalies uniform in
                              ``[-8, 8]^16``; 1000 train (normal), 500 normal
                              + 50 anomalous test samples, shuffled.
    ========================  =================================================

    Test features may fall outside ``[0, 1]`` where scaling statistics come
    from the training data.

    Args:
        name: One of `BUILTIN_DATASETS`.
        seed: Seed of the split (or of the generator for ``"blobs"``).
        normal_class: Normal class for the one-class data sets; must be
            ``None`` for ``"breast_cancer"`` and ``"blobs"``.

    Returns:
        A `BuiltinData` with ``float32`` features and ``int64`` test labels
        (1 = anomaly).

    Raises:
        ValueError: For an unknown name, a ``normal_class`` the data set does
            not have, or one given for a data set without classes.
        FileNotFoundError: For ``"fashion_mnist"`` when its files are not
            found.

    Example:
        >>> data = load_builtin("digits", normal_class=3)
        >>> data.x_train.shape[1], data.input_shape
        (64, (64,))
    """
    _check_name(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer. Received: seed={seed!r}")
    if name not in _ONE_CLASS and normal_class is not None:
        raise ValueError(
            f"{name!r} has no classes to choose from; normal_class must be None. "
            f"Received: normal_class={normal_class!r}"
        )
    if name in _ONE_CLASS and normal_class is None:
        normal_class = 0
    if normal_class is not None:
        if isinstance(normal_class, bool) or not isinstance(normal_class, (int, np.integer)):
            raise ValueError(
                f"normal_class must be an integer class label of {name!r} (e.g. 3, not '3'). "
                f"Received: normal_class={normal_class!r}"
            )
        normal_class = int(normal_class)
    description = BUILTIN_DATASETS[name]

    if name == "blobs":
        x_train, x_test, y_test = _blobs(seed)
    elif name == "breast_cancer":
        x, y = load_sklearn(name)
        x_train, x_test, y_test = semi_supervised_split(x, (y == 0).astype(np.int64), seed=seed)
        x_train, x_test, _ = min_max_scale(x_train, x_test)
    elif name == "fashion_mnist":
        (x_tr, y_tr), (x_te, y_te) = load_fashion_mnist()
        x_train, x_test, y_test = one_class_split(x_tr, y_tr, x_te, y_te, normal_class)
        x_train = add_channel_axis(x_train) / np.float32(255.0)
        x_test = add_channel_axis(x_test) / np.float32(255.0)
    else:
        x, y = load_sklearn(name)
        x_train, x_test, y_test = one_class_split_single(x, y, normal_class, seed=seed)
        if name == "digits":
            x_train, x_test = x_train / np.float32(16.0), x_test / np.float32(16.0)
        else:
            x_train, x_test, _ = min_max_scale(x_train, x_test)
    if normal_class is not None:
        description = f"{description} Normal class: {normal_class}."
    return BuiltinData(
        name=name,
        x_train=np.asarray(x_train, dtype=np.float32),
        x_test=np.asarray(x_test, dtype=np.float32),
        y_test=np.asarray(y_test, dtype=np.int64),
        description=description,
    )
