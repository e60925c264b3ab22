"""Detection metrics on top of scikit-learn (1 = anomaly, higher score = more anomalous)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics


def _check(y_true, scores):
    y_true = np.asarray(y_true).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if y_true.shape != scores.shape:
        raise ValueError(
            f"y_true and scores must have the same length. Received: {len(y_true)} and "
            f"{len(scores)}"
        )
    if not len(y_true):
        raise ValueError("y_true and scores are empty.")
    labels = set(np.unique(y_true).tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"y_true must hold 0 (normal) and 1 (anomaly). Received labels {labels}")
    if labels != {0, 1}:
        raise ValueError("y_true must contain both normal (0) and anomalous (1) samples.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values.")
    return y_true.astype(int), scores


def precision_at_n(y_true, scores, n=None) -> float:
    """Fraction of anomalies among the `n` highest scores (`n` = number of anomalies)."""
    y_true, scores = _check(y_true, scores)
    n = int(y_true.sum()) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1. Received: n={n}")
    top = np.argsort(-scores, kind="stable")[:n]
    return float(y_true[top].mean())


def evaluate_scores(y_true, scores, threshold=None, n=None) -> dict[str, float]:
    """All detection metrics in one call.

    Args:
        y_true: 1 for anomalies, 0 for normal samples.
        scores: anomaly scores, higher = more anomalous.
        threshold: flags `scores > threshold`; adds precision, recall, F1
            and the flagged fraction at that threshold.
        n: for precision@n (default: the number of anomalies).

    Returns:
        A dict with `auroc`, `auprc` (average precision), `precision_at_n`,
        and, with a threshold, `threshold`, `precision`, `recall`, `f1`,
        `flagged_fraction`.
    """
    y_true, scores = _check(y_true, scores)
    result = {
        "auroc": float(metrics.roc_auc_score(y_true, scores)),
        "auprc": float(metrics.average_precision_score(y_true, scores)),
        "precision_at_n": precision_at_n(y_true, scores, n),
        "n_samples": len(y_true),
        "n_anomalies": int(y_true.sum()),
    }
    if threshold is not None:
        y_pred = (scores > float(threshold)).astype(int)
        result.update(
            threshold=float(threshold),
            precision=float(metrics.precision_score(y_true, y_pred, zero_division=0)),
            recall=float(metrics.recall_score(y_true, y_pred, zero_division=0)),
            f1=float(metrics.f1_score(y_true, y_pred, zero_division=0)),
            flagged_fraction=float(y_pred.mean()),
        )
    return result
