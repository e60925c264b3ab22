"""Tabular data: CSV files through pandas, and scikit-learn's bundled data sets."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["SKLEARN_DATASETS", "load_csv", "load_sklearn", "select_columns"]

SKLEARN_DATASETS = ("breast_cancer", "digits", "iris", "wine")
"""Names accepted by `load_sklearn` (all shipped with scikit-learn, offline)."""


def select_columns(
    columns: list[str],
    feature_columns: Sequence[str] | None,
    label_column: str | None,
    path: str | os.PathLike,
) -> list[str]:
    """Checks the requested columns against a file's header.

    Returns:
        The feature columns: ``feature_columns`` in the order given, or every
        column except ``label_column`` in file order.

    Raises:
        ValueError: If ``feature_columns`` is a string, a requested column is
            missing, or no feature column is left.
    """
    if isinstance(feature_columns, str):
        raise ValueError(
            "feature_columns must be a sequence of column names, not a string. "
            f"Received: feature_columns={feature_columns!r}"
        )
    requested = [*(feature_columns or []), *([label_column] if label_column is not None else [])]
    missing = [c for c in requested if c not in columns]
    if missing:
        raise ValueError(
            f"Column(s) {missing} not found in {str(path)!r}. Available columns: {columns}"
        )
    if feature_columns is None:
        features = [c for c in columns if c != label_column]
    else:
        features = list(feature_columns)
    if not features:
        raise ValueError(
            f"No feature columns left in {str(path)!r}. "
            f"Columns: {columns}, label_column={label_column!r}"
        )
    return features


def load_csv(
    path: str | os.PathLike,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads a CSV file with a header row into a feature matrix and labels.

    Args:
        path: Path of the CSV file; the first row names the columns.
        label_column: Column to return as labels, or ``None`` for none.
        feature_columns: Columns to use as features, in the order given.
            Defaults to every column except ``label_column``, in file order.

    Returns:
        ``(x, y)``: ``x`` is a ``float32`` array ``(n_rows, n_features)``;
        ``y`` is the label column as a numpy array (dtype as parsed by
        pandas), or ``None`` when ``label_column`` is ``None``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is empty or has no data rows, if a requested
            column is missing, or if a feature column is not numeric or has
            missing values (the message names the columns).

    Example:
        >>> x, y = load_csv("data.csv", label_column="label")  # doctest: +SKIP
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file not found. Received: path={str(path)!r}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as error:
        raise ValueError(f"CSV file {str(path)!r} is empty.") from error
    if frame.shape[0] == 0:
        raise ValueError(
            f"CSV file {str(path)!r} has a header but no data rows. Columns: {list(frame.columns)}"
        )
    feature_columns = select_columns(list(frame.columns), feature_columns, label_column, path)
    features = frame[feature_columns]
    non_numeric = [
        c
        for c in feature_columns
        if not pd.api.types.is_numeric_dtype(features[c])
        or pd.api.types.is_complex_dtype(features[c])
    ]
    if non_numeric:
        raise ValueError(
            f"Feature column(s) {non_numeric} in {str(path)!r} are not numeric "
            f"(dtypes: {[str(features[c].dtype) for c in non_numeric]}). "
            "Encode them as numbers or leave them out with feature_columns=."
        )
    with_nan = [c for c in feature_columns if features[c].isna().any()]
    if with_nan:
        raise ValueError(
            f"Feature column(s) {with_nan} in {str(path)!r} have missing values. "
            "Impute or drop them before training."
        )
    x = features.to_numpy(dtype=np.float32)
    y = frame[label_column].to_numpy() if label_column is not None else None
    return x, y


def load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one of scikit-learn's bundled data sets (no network access).

    Args:
        name: ``"breast_cancer"``, ``"digits"``, ``"wine"`` or ``"iris"``.

    Returns:
        ``(x, y)``: ``float32`` features ``(n_samples, n_features)`` and
        ``int64`` class labels, exactly as scikit-learn defines them (for
        ``breast_cancer``, 0 = malignant, 1 = benign).

    Raises:
        ValueError: For any other name.

    Example:
        >>> x, y = load_sklearn("digits")
        >>> x.shape, y.shape
        ((1797, 64), (1797,))
    """
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }
    if name not in loaders:
        raise ValueError(
            f"Unknown scikit-learn data set. Expected one of {list(SKLEARN_DATASETS)}. "
            f"Received: name={name!r}"
        )
    x, y = loaders[name](return_X_y=True)
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
