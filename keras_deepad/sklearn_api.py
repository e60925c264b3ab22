"""A scikit-learn / PyOD-style wrapper around any registered detector."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.validation import check_is_fitted

from keras_deepad.registry import train_detector
from keras_deepad.utils.validation import check_array


class PyODDetector(OutlierMixin, BaseEstimator):
    """Use a keras_deepad detector where PyOD or scikit-learn code expects one.

    Follows PyOD's conventions: `fit(X)` trains on unlabelled data and sets
    `decision_scores_`, `threshold_` (the `1 - contamination` quantile of
    the training scores) and `labels_`; `decision_function(X)` returns
    scores where higher is more anomalous; `predict(X)` returns 0 (inlier)
    / 1 (outlier); `predict_proba(X)` returns `[P(inlier), P(outlier)]`
    from the training scores min-max scaled (PyOD's "linear" method).

    Args:
        detector: a registered detector name (see `keras-deepad models`).
        contamination: expected fraction of anomalies in the training data.
        epochs, batch_size, learning_rate: training settings (`None`: the
            preset's, else the detector's own).
        detector_params: constructor arguments overriding the preset.
        seed: seeds Keras, NumPy and Python before training.
        verbose: Keras `fit` verbosity.

    Example:
        >>> clf = PyODDetector("ae", contamination=0.05, epochs=30)
        >>> clf.fit(X_train)
        >>> y_pred = clf.predict(X_test)
    """

    def __init__(
        self,
        detector="ae",
        contamination=0.1,
        epochs=50,
        batch_size=None,
        learning_rate=None,
        detector_params=None,
        seed=None,
        verbose=0,
    ):
        self.detector = detector
        self.contamination = contamination
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.detector_params = detector_params
        self.seed = seed
        self.verbose = verbose

    def fit(self, X, y=None):
        """Trains on `X` (unsupervised; `y` is ignored, as in PyOD)."""
        if not 0.0 < float(self.contamination) <= 0.5:
            raise ValueError(
                f"contamination must be in (0, 0.5]. Received: contamination={self.contamination}"
            )
        X = check_array(X, name="X")
        model, _ = train_detector(
            self.detector,
            X,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            params=self.detector_params,
            verbose=self.verbose,
        )
        self.detector_ = model
        self.decision_scores_ = model.score(X)
        self.threshold_ = model.calibrate_from_scores(
            self.decision_scores_, contamination=float(self.contamination)
        )
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        self._proba_scaler = MinMaxScaler().fit(self.decision_scores_.reshape(-1, 1))
        self.n_features_in_ = X.shape[1] if X.ndim == 2 else None
        return self

    def decision_function(self, X):
        """Anomaly scores of `X` (higher = more anomalous)."""
        check_is_fitted(self, "detector_")
        return self.detector_.score(X)

    def predict(self, X):
        """0 for inliers, 1 for outliers."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def predict_proba(self, X):
        """`(n, 2)` array of `[P(inlier), P(outlier)]` (PyOD's linear scaling)."""
        scores = self.decision_function(X).reshape(-1, 1)
        outlier = np.clip(self._proba_scaler.transform(scores).ravel(), 0.0, 1.0)
        return np.column_stack([1.0 - outlier, outlier])

    def fit_predict(self, X, y=None):
        return self.fit(X).labels_
