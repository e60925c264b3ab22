"""Every figure as PNG files, and the drawing of a detector's inner networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_deepad.plot._common import (
    _is_reconstruction_detector,
    _model_name,
    _require_trained,
    require_matplotlib,
)
from keras_deepad.plot.features import _display_shape, feature_errors, image_reconstructions
from keras_deepad.plot.latent import latent_scatter
from keras_deepad.plot.scores import precision_recall_curve, roc_curve, score_histogram
from keras_deepad.plot.training import training_curves

#: File names `save_all` writes, in order (those that apply to the model and data).
FIGURES = (
    "score_histogram",
    "roc_curve",
    "precision_recall_curve",
    "feature_errors",
    "image_reconstructions",
    "latent_scatter",
    "training_curves",
)


# ------------------------------------------------------------- save_all
def _latent_size(model, x):
    if not callable(getattr(model, "encode", None)):
        return None
    return int(np.prod(np.shape(model.encode(x[:1]))[1:]))


def save_all(model, x, y, directory, history=None, method=None, feature_names=None, dpi=100):
    """Writes every figure that applies to `model` and the data as PNG files in `directory`.

    Always `score_histogram.png` and, for flat (tabular) inputs,
    `feature_errors.png` (mean over the 10 highest-scoring samples); with
    labels holding both classes `roc_curve.png` and
    `precision_recall_curve.png`; for reconstruction detectors on images
    `image_reconstructions.png` (the 4 lowest- and 4 highest-scoring
    images); for detectors with a latent space of 2 or more dimensions
    `latent_scatter.png` (PCA beyond 2); with `history`
    `training_curves.png`. Files are written atomically (a reader never sees
    a partial PNG) and replace earlier ones.

    Args:
        model: a trained detector.
        x: samples (an in-memory array or DataFrame).
        y: 0/1 labels of `x` (1 = anomaly), or `None`.
        directory: folder to write in (created when missing).
        history: optional Keras `History` (or dict) of the model's `fit`.
        method: score method for the score figures (default the model's;
            the threshold line only for the model's own method).
        feature_names: names of the features for `feature_errors`.
        dpi: resolution of the PNG files.

    Returns:
        The paths written, a list of `pathlib.Path` in `FIGURES` order.
    """
    from keras_deepad.utils.scratch import write_atomically
    from keras_deepad.utils.validation import check_array

    require_matplotlib()
    _require_trained(model, "save_all")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"plot directory {directory} is a file; give a folder.")
    if feature_names is None and getattr(x, "columns", None) is not None:
        feature_names = [str(c) for c in x.columns]
    x = check_array(x, model.feature_shape, name="x")
    scores = np.asarray(model.score(x, method=method), dtype=np.float64)
    own = method is None or method == model.score_method
    labelled = y is not None and len(set(np.asarray(y).ravel().tolist())) == 2
    name = _model_name(model)

    def histogram():
        fig = score_histogram(scores, y=y, threshold=model.threshold if own else None)
        fig.axes[0].set_title(f"{name} scores ({method or model.score_method})")
        return fig

    figures = {"score_histogram": histogram}
    if labelled:
        figures["roc_curve"] = lambda: roc_curve(y, scores, name=name)
        figures["precision_recall_curve"] = lambda: precision_recall_curve(y, scores, name=name)
    if len(model.feature_shape) == 1:
        figures["feature_errors"] = lambda: feature_errors(
            model, x, top_k=10, feature_names=feature_names
        )
    try:
        _display_shape(model, None)
        images = _is_reconstruction_detector(model)
    except ValueError:
        images = False
    if images:
        order = np.argsort(scores, kind="stable")
        picked = order if len(order) <= 8 else np.concatenate([order[:4], order[-4:]])
        figures["image_reconstructions"] = lambda: image_reconstructions(
            model, x[picked], n=len(picked)
        )
    latent = _latent_size(model, x)
    if latent is not None and latent >= 2:
        figures["latent_scatter"] = lambda: latent_scatter(model, x, y=y if labelled else None)
    if history is not None:
        figures["training_curves"] = lambda: training_curves(history)
    paths = []
    for key in FIGURES:
        if key not in figures:
            continue
        fig = figures[key]()
        path = directory / f"{key}.png"
        write_atomically(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=dpi))
        paths.append(path)
    return paths


def network_graph(model, to_file=None, show_shapes=True, expand_nested=True, rankdir="TB", dpi=96):
    """The detector's inner networks as a Graphviz graph (`keras.utils.model_to_dot`).

    `keras.utils.plot_model(detector)` draws a subclassed model as one box;
    this draws `model.network_graph()` instead: the scaler, encoder,
    sampler, decoder, discriminator (or Deep SVDD's network, OC-NN's
    features, an ensemble's members) each as a nested graph with its layers
    and shapes.

    Needs `pydot` (in the `plot` extra) for the graph and Graphviz's `dot`
    program (a system package, e.g. `apt install graphviz`) to write an
    image.

    Args:
        model: a trained (built) detector.
        to_file: optional path of an image to write (`.png`, `.svg`, `.pdf`,
            ...; the format follows the suffix), written atomically.
        show_shapes, expand_nested, rankdir, dpi: as `keras.utils.plot_model`.

    Returns:
        The `pydot.Dot` graph (`graph.to_string()` is its DOT source).
    """
    import keras

    try:
        import pydot  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'plot.network_graph needs pydot: pip install "keras-deepad[plot]" '
            '(or pip install "pydot>=3,<5").'
        ) from err
    _require_trained(model, "network_graph")
    graph = keras.utils.model_to_dot(
        model.network_graph(),
        show_shapes=show_shapes,
        expand_nested=expand_nested,
        rankdir=rankdir,
        dpi=dpi,
    )
    if to_file is not None:
        from keras_deepad.utils.scratch import write_atomically

        path = Path(to_file)
        image_format = path.suffix.lstrip(".").lower() or "png"
        try:
            write_atomically(path, lambda tmp: graph.write(str(tmp), format=image_format))
        except FileNotFoundError as err:  # pydot did not find Graphviz's `dot`
            raise ImportError(
                f"writing {path} needs Graphviz's dot program (a system package, e.g. "
                "`apt install graphviz`); the graph itself is returned without it: "
                "plot.network_graph(model).to_string() is its DOT source."
            ) from err
    return graph
