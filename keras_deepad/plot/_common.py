"""What the figures share: matplotlib on demand, new figures and panels, input checks."""

from __future__ import annotations

import os
import sys

import numpy as np

INSTALL_HINT = (
    'keras_deepad.plot needs matplotlib: pip install "keras-deepad[plot]" '
    '(or pip install "matplotlib>=3.8,<4").'
)


# ------------------------------------------------------------------ helpers
def _headless() -> bool:
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def require_matplotlib():
    """Imports matplotlib (Agg backend when headless, see the module doc) and returns it.

    Raises:
        ImportError: matplotlib is not installed; the message says how to install it.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and _headless():
        matplotlib.use("Agg")
    return matplotlib


def _root(fig):
    from matplotlib.figure import SubFigure

    while isinstance(fig, SubFigure):
        fig = fig.figure
    return fig


def _new_figure(figsize):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _single_axes(ax, figsize=(6.4, 4.2)):
    """`(figure to return, axes to draw in)`."""
    if ax is not None:
        require_matplotlib()
        return _root(ax.figure), ax
    fig = _new_figure(figsize)
    return fig, fig.add_subplot()


def _panel_axes(ax, nrows, ncols, figsize):
    """`(figure to return, parent (sub)figure, 2-D array of axes)` for a grid of panels."""
    if ax is None:
        fig = _new_figure(figsize)
        return fig, fig, np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    require_matplotlib()
    parent = ax.figure
    if nrows == ncols == 1:
        return _root(parent), parent, np.asarray([[ax]])
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError(
            "ax must be a subplot (from add_subplot or subplots) to be split into "
            f"{nrows} x {ncols} panels."
        )
    ax.remove()
    grid = spec.subgridspec(nrows, ncols)
    axes = np.asarray(
        [[parent.add_subplot(grid[i, j]) for j in range(ncols)] for i in range(nrows)]
    )
    return _root(parent), parent, axes


def _model_name(model) -> str:
    return type(model).__name__


def _require_trained(model, what):
    if getattr(model, "feature_shape", None) is None or not getattr(model, "built", False):
        raise ValueError(f"{what} needs a trained {_model_name(model)}: call fit() first.")


def _finite_scores(scores, name="scores"):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not len(scores):
        raise ValueError(f"{name} are empty.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return scores


def _labels(y, n, name="y"):
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} samples.")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name} must hold 0 (normal) and 1 (anomaly). Received labels {values}")
    return y.astype(int)


def _binary_labels(y, scores):
    from keras_deepad.evaluation.metrics import _check

    return _check(y, scores)


def _is_reconstruction_detector(model) -> bool:
    from keras_deepad.models import ReconstructionDetector

    return isinstance(model, ReconstructionDetector)
