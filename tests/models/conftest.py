"""Fixtures shared by the model tests."""

import pytest

from tests.models.test_hybrid import in_manifold_anomalies


@pytest.fixture(scope="module")
def manifold():
    """Rows on a 2-d plane in 8-d with anomalies far out on it: (x_train, x_test, y_test)."""
    x, y = in_manifold_anomalies()
    return x[:900], x[900:], y[900:]
