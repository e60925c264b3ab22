import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from keras_deepad.evaluation import evaluate_scores, precision_at_n


def test_metrics_match_scikit_learn(rng):
    y = rng.integers(0, 2, 200)
    scores = y + rng.normal(0, 0.8, 200)
    result = evaluate_scores(y, scores, threshold=0.5)
    assert result["auroc"] == pytest.approx(roc_auc_score(y, scores))
    assert result["auprc"] == pytest.approx(average_precision_score(y, scores))
    flagged = scores > 0.5
    tp = (flagged & (y == 1)).sum()
    precision, recall = tp / flagged.sum(), tp / (y == 1).sum()
    assert result["precision"] == pytest.approx(precision)
    assert result["recall"] == pytest.approx(recall)
    assert result["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert result["flagged_fraction"] == pytest.approx(flagged.mean())


def test_precision_at_n():
    y = np.array([0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    assert precision_at_n(y, scores) == pytest.approx(0.5)  # top 2: 0.9 (normal), 0.8 (anomaly)
    assert precision_at_n(y, scores, n=3) == pytest.approx(2 / 3)


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert evaluate_scores(y, [0, 1, 2, 3])["auroc"] == 1.0
    assert evaluate_scores(y, [3, 2, 1, 0])["auroc"] == 0.0


@pytest.mark.parametrize(
    "y, scores, message",
    [
        ([0, 1], [0.1], "same length"),
        ([0, 2], [0.1, 0.2], "0 \\(normal\\) and 1"),
        ([0, 0], [0.1, 0.2], "both"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs(y, scores, message):
    with pytest.raises(ValueError, match=message):
        evaluate_scores(y, scores)
