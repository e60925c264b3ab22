"""PyOD's own test of its AutoEncoder (`pyod/test/test_auto_encoder.py`, PyOD 3), run on
`PyODDetector("ae", epochs=5, contamination=0.1)`.

Ported as PyOD writes it, with three changes: the detector is fitted once per module
(PyOD's `setUp` refits before every test), PyOD's `epoch_num` is our `epochs`, and
PyOD-internal attributes are not asserted (`model`; `_mu` and `_sigma` are, since
`predict_proba(method="unify")` uses them). The data come from a NumPy transcription of
`pyod.utils.data.generate_data` (same draws), so PyOD is not needed; where it is
installed, the transcription is checked against it.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from keras_deepad.sklearn_api import PyODDetector

N_TRAIN, N_TEST, N_FEATURES, CONTAMINATION, ROC_FLOOR = 6000, 1000, 300, 0.1, 0.8
EPOCHS = 5


def generate_data(n_train, n_test, n_features, contamination, random_state):
    """`pyod.utils.data.generate_data(..., offset=10, behaviour="new")`: inliers
    `coef * N(0, 1) + offset`, outliers uniform in `[-offset, offset]`, outliers last."""
    rng = np.random.RandomState(random_state)
    offset = rng.randint(low=10)
    if offset == 0:
        offset = rng.randint(low=1, high=10)
    coef = rng.random_sample() + 0.001

    def draw(n):
        n_outliers = int(n * contamination)
        n_inliers = int(n - n_outliers)
        inliers = coef * rng.randn(n_inliers, n_features) + offset
        outliers = rng.uniform(low=-1 * offset, high=offset, size=(n_outliers, n_features))
        return np.r_[inliers, outliers], np.r_[np.zeros((n_inliers,)), np.ones((n_outliers,))]

    (x_train, y_train), (x_test, y_test) = draw(n_train), draw(n_test)
    return x_train, x_test, y_train, y_test


@pytest.fixture(scope="module")
def data():
    return generate_data(N_TRAIN, N_TEST, N_FEATURES, CONTAMINATION, random_state=42)


@pytest.fixture(scope="module")
def clf(data):
    x_train = data[0]
    return PyODDetector("ae", epochs=EPOCHS, contamination=CONTAMINATION, seed=42).fit(x_train)


def assert_in_range(values, lower, upper):
    assert np.min(values) >= lower
    assert np.max(values) <= upper


def test_data_matches_pyod(data):
    pyod_data = pytest.importorskip("pyod.utils.data")
    expected = pyod_data.generate_data(
        n_train=N_TRAIN,
        n_test=N_TEST,
        n_features=N_FEATURES,
        contamination=CONTAMINATION,
        random_state=42,
    )
    for ours, theirs in zip(data, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_parameters(clf):
    for name in ("decision_scores_", "labels_", "threshold_", "_mu", "_sigma", "history_"):
        assert hasattr(clf, name)
        assert getattr(clf, name) is not None


def test_history(clf):
    assert "loss" in clf.history_
    assert len(clf.history_["loss"]) == clf.epochs


def test_train_scores(clf, data):
    assert len(clf.decision_scores_) == data[0].shape[0]


def test_prediction_scores(clf, data):
    x_test, y_test = data[1], data[3]
    pred_scores = clf.decision_function(x_test)
    assert pred_scores.shape[0] == x_test.shape[0]
    assert roc_auc_score(y_test, pred_scores) >= ROC_FLOOR


def test_prediction_labels(clf, data):
    assert clf.predict(data[1]).shape == data[3].shape


def test_prediction_proba(clf, data):
    assert_in_range(clf.predict_proba(data[1]), 0, 1)


def test_prediction_proba_linear(clf, data):
    assert_in_range(clf.predict_proba(data[1], method="linear"), 0, 1)


def test_prediction_proba_unify(clf, data):
    assert_in_range(clf.predict_proba(data[1], method="unify"), 0, 1)


def test_prediction_proba_parameter(clf, data):
    with pytest.raises(ValueError):
        clf.predict_proba(data[1], method="something")


def test_prediction_labels_confidence(clf, data):
    pred_labels, confidence = clf.predict(data[1], return_confidence=True)
    assert pred_labels.shape == data[3].shape
    assert confidence.shape == data[3].shape
    assert_in_range(confidence, 0, 1)


def test_prediction_proba_linear_confidence(clf, data):
    pred_proba, confidence = clf.predict_proba(data[1], method="linear", return_confidence=True)
    assert_in_range(pred_proba, 0, 1)
    assert confidence.shape == data[3].shape
    assert_in_range(confidence, 0, 1)


def test_prediction_with_rejection(clf, data):
    pred_labels = clf.predict_with_rejection(data[1], return_stats=False)
    assert pred_labels.shape == data[3].shape


def test_prediction_with_rejection_stats(clf, data):
    _, [expected_rejrate, ub_rejrate, ub_cost] = clf.predict_with_rejection(
        data[1], return_stats=True
    )
    assert 0 <= expected_rejrate <= 1
    assert 0 <= ub_rejrate <= 1
    assert ub_cost >= 0


def test_fit_predict(clf, data):
    x_train, y_train = data[0], data[2]
    pred_labels = clone(clf).fit_predict(x_train)
    assert pred_labels.shape == y_train.shape


@pytest.mark.filterwarnings("ignore:Function fit_predict_score is deprecated:FutureWarning")
def test_fit_predict_score(clf, data, capsys):
    x_test, y_test = data[1], data[3]
    clf = clone(clf)
    clf.fit_predict_score(x_test, y_test)
    roc = clf.fit_predict_score(x_test, y_test, scoring="roc_auc_score")
    assert roc == roc_auc_score(y_test, clf.decision_scores_)
    precision = clf.fit_predict_score(x_test, y_test, scoring="prc_n_score")
    assert 0 <= precision <= 1
    with pytest.raises(NotImplementedError):
        clf.fit_predict_score(x_test, y_test, scoring="something")
    assert "roc_auc_score: " in capsys.readouterr().out  # PyOD prints the score


def test_fit_predict_score_is_deprecated_as_in_pyod():
    with pytest.warns(FutureWarning, match="Function fit_predict_score is deprecated"):
        with pytest.raises(ValueError):  # the warning comes first, then fit's input check
            PyODDetector().fit_predict_score(None, None)
