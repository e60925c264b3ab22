"""Diagnostic figures for detectors: scores, ROC/PR curves, feature errors, images, latents.

Every function returns a `matplotlib.figure.Figure` and shows nothing. Without
`ax=` the figure is a new `matplotlib.figure.Figure` made without `pyplot`, so
no window opens and no global figure state is kept (save it with
`fig.savefig(path)`; a notebook displays it when it is the cell's value). With
`ax=` the function draws into that `Axes` and returns its figure; the
multi-panel figures (`image_reconstructions`, `training_curves`) split the
`Axes`' grid cell into their panels. When `matplotlib.pyplot` has not been
imported, `MPLBACKEND` is unset and there is no display (Linux without
`DISPLAY`/`WAYLAND_DISPLAY`), the backend is set to Agg.

matplotlib is an optional dependency: `pip install "keras-deepad[plot]"`.

Example:
    >>> from keras_deepad import plot
    >>> plot.score_histogram(model, data.x_test, data.y_test).savefig("scores.png")
    >>> plot.save_all(model, data.x_test, data.y_test, "plots", history=history)
"""

from keras_deepad.plot._common import INSTALL_HINT, require_matplotlib
from keras_deepad.plot.features import feature_errors, image_reconstructions
from keras_deepad.plot.files import FIGURES, network_graph, save_all
from keras_deepad.plot.latent import latent_scatter
from keras_deepad.plot.scores import precision_recall_curve, roc_curve, score_histogram
from keras_deepad.plot.training import training_curves

__all__ = [
    "FIGURES",
    "INSTALL_HINT",
    "feature_errors",
    "image_reconstructions",
    "latent_scatter",
    "network_graph",
    "precision_recall_curve",
    "require_matplotlib",
    "roc_curve",
    "save_all",
    "score_histogram",
    "training_curves",
]
