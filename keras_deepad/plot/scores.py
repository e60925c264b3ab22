"""Score distributions and the ROC and precision-recall curves."""

from __future__ import annotations

import numpy as np

from keras_deepad.plot._common import (
    _binary_labels,
    _finite_scores,
    _labels,
    _model_name,
    _single_axes,
)


# --------------------------------------------------------------- scores
def score_histogram(
    model_or_scores, x=None, y=None, threshold=None, bins=50, ax=None, method=None, log=None
):
    """Histogram of anomaly scores, split into normal and anomalous when labels are given.

    Args:
        model_or_scores: a trained detector (then `x` is scored) or an array
            of scores.
        x: the samples to score, when a detector is given.
        y: optional 0/1 labels (1 = anomaly): two histograms, each as fractions of its class.
        threshold: where to draw the threshold line; default the detector's
            calibrated `threshold` (when `method` is its own score method).
            No line when neither exists.
        bins: number of bins (shared by both histograms).
        ax: optional `Axes` to draw in.
        method: score method of the detector (default its own).
        log: log-spaced bins and a log score axis; `None` (the default):
            when every score is positive and the largest is more than 100
            times the median (reconstruction errors of far-out anomalies).

    Returns:
        The figure. The threshold line is the `Line2D` with gid `"threshold"`.
    """
    if hasattr(model_or_scores, "score") and callable(model_or_scores.score):
        model = model_or_scores
        if x is None:
            raise ValueError("score_histogram needs x to score when given a detector.")
        scores = model.score(x, method=method)
        own = method is None or method == model.score_method
        if threshold is None and own:
            threshold = model.threshold
        title = f"{_model_name(model)} scores ({method or model.score_method})"
    else:
        if x is not None:
            raise ValueError("pass x only with a detector; scores were given.")
        scores = model_or_scores
        title = "anomaly scores"
    scores = _finite_scores(scores)
    positive = bool(scores.min() > 0)
    if log is None:
        log = positive and scores.max() > 100 * np.median(scores)
    elif log and not positive:
        raise ValueError("log=True needs positive scores.")
    fig, ax = _single_axes(ax)
    if log:
        low, high = scores.min(), scores.max()
        edges = np.geomspace(low, high if high > low else low * 1.01, int(bins) + 1)
        ax.set_xscale("log")
    else:
        edges = np.histogram_bin_edges(scores, bins=int(bins))
    if y is None:
        ax.hist(scores, bins=edges, color="C0", alpha=0.8, label=f"all (n={len(scores)})")
        ax.set_ylabel("count")
    else:
        y = _labels(y, len(scores))
        for value, name, color in ((0, "normal", "C0"), (1, "anomaly", "C3")):
            part = scores[y == value]
            if len(part):
                ax.hist(
                    part,
                    bins=edges,
                    weights=np.full(len(part), 1.0 / len(part)),
                    color=color,
                    alpha=0.55,
                    label=f"{name} (n={len(part)})",
                )
        ax.set_ylabel("fraction of the class")
    if threshold is not None:
        threshold = float(threshold)
        ax.axvline(
            threshold,
            color="k",
            linestyle="--",
            linewidth=1.5,
            label=f"threshold = {threshold:.4g}",
            gid="threshold",
        )
    ax.set_xlabel("score (higher = more anomalous)")
    ax.set_title(title)
    ax.legend()
    return fig


def _curve(display_cls, metric, metric_name, gid, title, legend_loc, y, scores, ax, name):
    """One curve by a scikit-learn display, `metric` in its legend; one chance line per axes,
    so several curves can share it (`ax=` of an earlier call)."""
    y, scores = _binary_labels(y, scores)
    fig, ax = _single_axes(ax, figsize=(5.2, 5.0))
    chance = not any(line.get_gid() == "chance" for line in ax.get_lines())
    display = display_cls.from_predictions(
        y, scores, pos_label=1, name=name, ax=ax, plot_chance_level=chance
    )
    if chance:
        display.chance_level_.set_gid("chance")
    display.line_.set_label(f"{name} ({metric_name} = {metric(y, scores):.4f})")
    display.line_.set_gid(gid)
    ax.legend(loc=legend_loc)
    ax.set_title(title)
    return fig


def roc_curve(y, scores, ax=None, name="detector"):
    """ROC curve by scikit-learn's `RocCurveDisplay.from_predictions`, AUROC in the legend.

    The legend shows `roc_auc_score(y, scores)` to four decimals.
    """
    from sklearn.metrics import RocCurveDisplay, roc_auc_score

    return _curve(
        RocCurveDisplay,
        roc_auc_score,
        "AUROC",
        "roc",
        "ROC curve",
        "lower right",
        y,
        scores,
        ax,
        name,
    )


def precision_recall_curve(y, scores, ax=None, name="detector"):
    """Precision-recall curve by `PrecisionRecallDisplay.from_predictions`, AP in the legend.

    The legend shows the average precision (`average_precision_score`, the
    AUPRC of `keras_deepad.evaluation.evaluate_scores`) to four decimals; the
    dashed line is the anomaly fraction (a random ranking's precision).
    """
    from sklearn.metrics import PrecisionRecallDisplay, average_precision_score

    return _curve(
        PrecisionRecallDisplay,
        average_precision_score,
        "AP",
        "precision_recall",
        "Precision-recall curve",
        "upper right",
        y,
        scores,
        ax,
        name,
    )
