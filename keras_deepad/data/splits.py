"""Train/test splits for the anomaly-detection evaluation protocols.

Labels returned for test sets are binary: 1 = anomaly, 0 = normal.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

__all__ = [
    "ADBenchSplit",
    "adbench_split",
    "min_max_scale",
    "one_class_split",
    "one_class_split_single",
    "semi_supervised_split",
]


def _check_xy(x, y, x_name: str = "x", y_name: str = "y"):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} must have shape (n_samples, ...) and {y_name} shape "
            f"(n_samples,). Received: {x_name}.shape={x.shape}, "
            f"{y_name}.shape={y.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{x_name} has no samples. Received: shape={x.shape}")
    return x, y


def _check_split_args(y, test_size, seed):
    if isinstance(test_size, bool) or not (
        isinstance(test_size, (float, int, np.floating, np.integer)) and 0 < test_size < 1
    ):
        raise ValueError(
            f"test_size must be a fraction in (0, 1). Received: test_size={test_size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer. Received: seed={seed!r}")
    classes, counts = np.unique(y, return_counts=True)
    if np.any(counts < 2):
        rare = classes[counts < 2].tolist()
        raise ValueError(
            f"A stratified split needs at least 2 samples per class; class(es) {rare} have only 1."
        )


def _check_binary(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(
            f"{name} must hold binary anomaly labels (1 = anomaly, 0 = normal). "
            f"Received values: {values.tolist()[:10]}"
        )
    return y.astype(np.int64)


def _normal_classes(normal_class) -> list:
    if np.ndim(normal_class) == 0:  # a scalar, str included
        return [normal_class]
    classes = np.asarray(normal_class).ravel().tolist()
    if not classes:
        raise ValueError("normal_class must not be an empty list. Received: []")
    return classes


def one_class_split(
    x_train, y_train, x_test, y_test, normal_class
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-class protocol of Deep SVDD (Ruff et al. 2018).

    Trains on the training samples of the normal class(es) only and tests on
    the whole test set, where every sample of another class is an anomaly.

    Args:
        x_train: Training samples ``(n_train, ...)``.
        y_train: Class labels of ``x_train``.
        x_test: Test samples ``(n_test, ...)``.
        y_test: Class labels of ``x_test``.
        normal_class: The normal class, or a list of normal classes.

    Returns:
        ``(x_train_normal, x_test, y_test_binary)`` where ``y_test_binary`` is
        ``int64`` with 1 for anomalies (any other class) and 0 for normal
        samples. ``x_test`` is returned unchanged.

    Raises:
        ValueError: For mismatched shapes or a normal class absent from
            ``y_train`` (the message lists the classes present).

    Example:
        >>> x_tr, x_te, y_te = one_class_split(  # doctest: +SKIP
        ...     x_train, y_train, x_test, y_test, normal_class=3)
    """
    x_train, y_train = _check_xy(x_train, y_train, "x_train", "y_train")
    x_test, y_test = _check_xy(x_test, y_test, "x_test", "y_test")
    classes = _normal_classes(normal_class)
    present = np.unique(y_train)
    absent = [c for c in classes if not np.isin(c, present)]
    if absent:
        raise ValueError(
            f"normal_class {absent} not found in y_train. Classes present: "
            f"{present.tolist()}. Received: normal_class={normal_class!r}"
        )
    train_mask = np.isin(y_train, classes)
    y_test_binary = (~np.isin(y_test, classes)).astype(np.int64)
    return x_train[train_mask], x_test, y_test_binary


def one_class_split_single(
    x, y, normal_class, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-class protocol for data without a predefined train/test split.

    Splits ``(x, y)`` into train and test parts stratified by class, then
    applies `one_class_split`.

    Args:
        x: Samples ``(n_samples, ...)``.
        y: Class labels.
        normal_class: The normal class, or a list of normal classes.
        test_size: Fraction of the data in the test part.
        seed: Seed of the split.

    Returns:
        ``(x_train_normal, x_test, y_test_binary)`` as in `one_class_split`.

    Raises:
        ValueError: For invalid shapes, ``test_size``, ``seed`` or
            ``normal_class``.
    """
    x, y = _check_xy(x, y)
    _check_split_args(y, test_size, seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=int(seed), stratify=y
    )
    return one_class_split(x_train, y_train, x_test, y_test, normal_class)


class ADBenchSplit(NamedTuple):
    """Result of `adbench_split`: unpacks as a 5-tuple.

    Attributes:
        x_train: Training samples (min-max scaled when ``scale=True``).
        x_test: Test samples (scaled with the training statistics, so values
            may fall outside ``[0, 1]``).
        y_train: Binary anomaly labels of ``x_train``.
        y_test: Binary anomaly labels of ``x_test``.
        scaler: The `sklearn.preprocessing.MinMaxScaler` fitted on
            ``x_train``, or ``None`` when ``scale=False``.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    scaler: MinMaxScaler | None


def adbench_split(x, y, test_size: float = 0.3, seed: int = 0, scale: bool = True) -> ADBenchSplit:
    """The ADBench tabular protocol (Han et al. 2022): stratified split, min-max scaling.

    The training part keeps its anomalies (unsupervised training on
    contaminated data); the scaler is fitted on the training part only.

    Args:
        x: Features ``(n_samples, n_features)``.
        y: Binary anomaly labels (1 = anomaly, 0 = normal).
        test_size: Fraction of the data in the test part (ADBench: 0.3).
        seed: Seed of the split (ADBench uses 1, 2 and 3).
        scale: Whether to min-max scale the features.

    Returns:
        An `ADBenchSplit` ``(x_train, x_test, y_train, y_test, scaler)``;
        features are ``float32``, labels ``int64``.

    Raises:
        ValueError: For non-binary labels, a non-2-D ``x``, or invalid
            ``test_size`` / ``seed``.

    Example:
        >>> x_train, x_test, y_train, y_test, scaler = adbench_split(x, y, seed=1)  # doctest: +SKIP
    """
    x, y = _check_xy(x, y)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features). Received: shape={x.shape}")
    y = _check_binary(y, "y")
    _check_split_args(y, test_size, seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=test_size, random_state=int(seed), stratify=y
    )
    scaler = None
    if scale:
        x_train, x_test, scaler = min_max_scale(x_train, x_test)
    return ADBenchSplit(x_train, x_test, y_train, y_test, scaler)


def min_max_scale(x_train, x_test) -> tuple[np.ndarray, np.ndarray, MinMaxScaler]:
    """Min-max scales both parts with a `MinMaxScaler` fitted on ``x_train`` only.

    Computed in float64 and returned as ``float32``; ``x_train`` is clipped
    to ``[0, 1]`` so rounding cannot push it past the bounds (each feature's
    training minimum and maximum map to exactly 0 and 1). ``x_test`` is not
    clipped: values outside the training range stay outside ``[0, 1]``.

    Args:
        x_train: Training features ``(n_train, n_features)``.
        x_test: Test features ``(n_test, n_features)``.

    Returns:
        ``(x_train_scaled, x_test_scaled, scaler)``.
    """
    scaler = MinMaxScaler().fit(np.asarray(x_train, dtype=np.float64))
    x_train = np.clip(scaler.transform(np.asarray(x_train, dtype=np.float64)), 0.0, 1.0)
    x_test = scaler.transform(np.asarray(x_test, dtype=np.float64))
    return x_train.astype(np.float32), x_test.astype(np.float32), scaler


def semi_supervised_split(
    x, y_anomaly, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits labelled data for training on normal samples only.

    A stratified train/test split; the anomalies of the training part are
    dropped, the test part is kept whole.

    Args:
        x: Samples ``(n_samples, ...)``.
        y_anomaly: Binary anomaly labels (1 = anomaly, 0 = normal).
        test_size: Fraction of the data in the test part.
        seed: Seed of the split.

    Returns:
        ``(x_train_normal, x_test, y_test)`` with ``y_test`` ``int64``
        (1 = anomaly).

    Raises:
        ValueError: For non-binary labels or invalid shapes / arguments.
    """
    x, y = _check_xy(x, y_anomaly, "x", "y_anomaly")
    y = _check_binary(y, "y_anomaly")
    _check_split_args(y, test_size, seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=int(seed), stratify=y
    )
    return x_train[y_train == 0], x_test, y_test
