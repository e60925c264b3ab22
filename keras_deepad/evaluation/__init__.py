"""Metrics and evaluation protocols."""

from keras_deepad.evaluation.metrics import evaluate_scores, precision_at_n

__all__ = ["evaluate_scores", "precision_at_n"]
