import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from keras_deepad.sklearn_api import PyODDetector


def test_pyod_conventions(blobs):
    x = np.concatenate([blobs.x_train[:400], blobs.x_test[blobs.y_test == 1]])
    y = np.r_[np.zeros(400), np.ones((blobs.y_test == 1).sum())]
    clf = PyODDetector("ae", contamination=0.1, epochs=15, seed=0)
    assert clf.fit(x) is clf
    assert clf.decision_scores_.shape == (len(x),)
    assert abs(clf.labels_.mean() - 0.1) <= 0.01
    assert set(np.unique(clf.labels_)) == {0, 1}
    assert roc_auc_score(y, clf.decision_scores_) >= 0.9
    np.testing.assert_array_equal(clf.predict(x), clf.labels_)
    np.testing.assert_allclose(clf.decision_function(x), clf.decision_scores_, rtol=1e-6)
    proba = clf.predict_proba(x)
    assert proba.shape == (len(x), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert np.argmax(proba[:, 1]) == np.argmax(clf.decision_scores_)
    np.testing.assert_array_equal(clone(clf).get_params()["detector"], "ae")


def test_errors():
    with pytest.raises(ValueError, match="contamination"):
        PyODDetector(contamination=0.7).fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="unknown detector"):
        PyODDetector(detector="svm").fit(np.random.default_rng(0).normal(size=(10, 2)))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PyODDetector().predict(np.zeros((2, 2)))
