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

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "feature_errors",
    "image_reconstructions",
    "latent_scatter",
    "precision_recall_curve",
    "require_matplotlib",
    "roc_curve",
    "save_all",
    "score_histogram",
    "training_curves",
]

INSTALL_HINT = (
    'keras_deepad.plot needs matplotlib: pip install "keras-deepad[plot]" '
    '(or pip install "matplotlib>=3.8,<4").'
)

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


# ------------------------------------------------------------ features
def feature_errors(model, x, index=None, top_k=None, feature_names=None, ax=None, max_features=50):
    """Per-feature bars of `model.feature_scores(x)`.

    Reconstruction detectors (AE, VAE, AAE, WAE) give per-feature squared
    errors in normalised units; the others (Deep SVDD, OC-NN, ensembles)
    gradient x input attributions of the score (see
    `AnomalyDetector.feature_scores`). Features of image inputs are the
    flattened pixels, named `(row, column, channel)`.

    Args:
        model: a trained detector.
        x: samples (anything `model.score` takes).
        index: show the sample `x[index]`.
        top_k: show the mean over the `top_k` highest-scoring samples of `x`.
            With neither `index` nor `top_k`: the mean over all of `x`.
        feature_names: one name per feature (default: a DataFrame's columns,
            else the feature indices).
        ax: optional `Axes` to draw in.
        max_features: with more features than this, only the `max_features`
            largest values are shown, largest first (`None`: all).

    Returns:
        The figure.
    """
    if index is not None and top_k is not None:
        raise ValueError("pass index (one sample) or top_k (the top-scoring samples), not both.")
    values = np.asarray(model.feature_scores(x), dtype=np.float64)
    n = len(values)
    values = values.reshape(n, -1)
    shape = tuple(model.feature_shape)
    if index is not None:
        index = int(index)
        if not -n <= index < n:
            raise ValueError(f"index {index} is out of range for {n} samples.")
        index %= n
        score = float(model.score(_take(x, index))[0]) if not _is_dataset(x) else None
        shown = values[index]
        what = f"sample {index}" + ("" if score is None else f" (score {score:.4g})")
    elif top_k is not None:
        top_k = int(top_k)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1. Received: top_k={top_k}")
        top_k = min(top_k, n)
        scores = np.asarray(model.score(x))
        top = np.argsort(-scores, kind="stable")[:top_k]
        shown = values[top].mean(axis=0)
        what = f"mean over the {top_k} highest-scoring of {n} samples"
    else:
        shown = values.mean(axis=0)
        what = f"mean over {n} samples"
    names = _feature_names(feature_names, x, shape, len(shown))
    order = np.arange(len(shown))
    truncated = max_features is not None and len(shown) > int(max_features)
    if truncated:
        order = np.argsort(-shown, kind="stable")[: int(max_features)]
    k = len(order)
    fig, ax = _single_axes(ax, figsize=(6.4, max(3.0, 0.22 * k + 1.4)))
    colors = ["C3" if v >= 0 else "C0" for v in shown[order]]
    ax.barh(np.arange(k), shown[order], color=colors)
    ax.set_yticks(np.arange(k), [names[i] for i in order], fontsize=8 if k > 20 else 10)
    ax.set_ylim(k - 0.5, -0.5)  # first bar on top
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    if _is_reconstruction_detector(model):
        ax.set_xlabel("squared reconstruction error (normalised units)")
    else:
        ax.set_xlabel("attribution: gradient x input (score units)")
    extra = f"; largest {k} of {len(shown)} features" if truncated else ""
    ax.set_title(f"{_model_name(model)} feature scores: {what}{extra}", fontsize=10)
    return fig


def _is_dataset(x) -> bool:
    return type(x).__name__.endswith("Dataset") and hasattr(x, "element_spec")


def _take(x, index):
    if hasattr(x, "iloc"):
        return x.iloc[index : index + 1]
    return np.asarray(x)[index : index + 1]


def _feature_names(feature_names, x, shape, n_features):
    if feature_names is not None:
        names = [str(name) for name in feature_names]
        if len(names) != n_features:
            raise ValueError(f"feature_names has {len(names)} names for {n_features} features.")
        return names
    columns = getattr(x, "columns", None)
    if columns is not None and len(columns) == n_features:
        return [str(c) for c in columns]
    if len(shape) > 1:
        return [str(i) for i in np.ndindex(*shape)]
    return [str(i) for i in range(n_features)]


# -------------------------------------------------------------- images
def _display_shape(model, image_shape):
    shape = tuple(model.feature_shape)
    if image_shape is not None:
        image_shape = tuple(int(d) for d in image_shape)
        if math.prod(image_shape) != math.prod(shape):
            raise ValueError(
                f"image_shape {image_shape} has {math.prod(image_shape)} values but the "
                f"model's samples have shape {shape} ({math.prod(shape)} values)."
            )
        shape = image_shape
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3)):
        return shape
    hint = (
        f"; pass image_shape=(height, width) to show its {shape[0]} features as an image"
        if len(shape) == 1
        else ""
    )
    raise ValueError(
        f"image_reconstructions needs image inputs of shape (height, width) or (height, "
        f"width, 1 or 3); this {_model_name(model)} takes samples of shape {shape}{hint}."
    )


def _to_image(a, shape, low, high):
    a = a.reshape(shape)
    if len(shape) == 3 and shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3:  # RGB: rescale to [0, 1] with the originals' range
        span = high - low if high > low else 1.0
        return np.clip((a - low) / span, 0.0, 1.0)
    return a


def image_reconstructions(model, images, n=8, ax=None, image_shape=None):
    """A grid of originals, reconstructions and |error| maps (rows), one image per column.

    For detectors that reconstruct their input (`AE`, `VAE`, `AAE`, `WAE`:
    `model.reconstruct`, in input units). The originals and reconstructions
    share one grey scale (the originals' range; RGB images are rescaled to
    it); the error row is the absolute difference (mean over channels), with
    one colour bar. Each column's title is the sample's score.

    Args:
        model: a trained reconstruction detector on images.
        images: samples of the model's input shape; the first `n` are shown.
        n: number of images (columns).
        ax: optional `Axes` whose grid cell is split into the 3 x n panels.
        image_shape: `(height, width)` or `(height, width, channels)` to show
            flat feature vectors (e.g. the 64 features of the 8x8 digits) as
            images.

    Raises:
        ValueError: the detector has no reconstructions (Deep SVDD, OC-NN,
            ensembles), or the inputs are not images (see `image_shape`).
    """
    from keras_deepad.utils.validation import check_array

    if not _is_reconstruction_detector(model):
        raise ValueError(
            f"{_model_name(model)} does not reconstruct its input: image_reconstructions "
            "needs an AE, VAE, AAE or WAE (see feature_errors for every detector)."
        )
    _require_trained(model, "image_reconstructions")
    shape = _display_shape(model, image_shape)
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1. Received: n={n}")
    originals = check_array(images, model.feature_shape, name="images")[:n]
    n = len(originals)
    reconstructions = np.asarray(model.reconstruct(originals))
    scores = np.asarray(model.score(originals))
    low, high = float(originals.min()), float(originals.max())
    errors = np.abs(originals - reconstructions).reshape(n, *shape)
    if len(shape) == 3:
        errors = errors.mean(axis=-1)
    height, width = shape[0], shape[1]
    cell = 1.5
    figsize = (cell * n * max(0.5, min(2.0, width / height)) + 1.6, 3 * cell + 0.9)
    fig, parent, axes = _panel_axes(ax, 3, n, figsize)
    grey = {"cmap": "gray", "vmin": low, "vmax": high if high > low else low + 1.0}
    vmax = float(errors.max()) or 1.0
    image = None
    for j in range(n):
        axes[0, j].imshow(_to_image(originals[j], shape, low, high), **grey)
        axes[1, j].imshow(_to_image(reconstructions[j], shape, low, high), **grey)
        image = axes[2, j].imshow(errors[j], cmap="inferno", vmin=0.0, vmax=vmax)
        axes[0, j].set_title(f"{scores[j]:.3g}", fontsize=8)
        for row in range(3):
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
    for row, label in enumerate(("original", "reconstruction", "|error|")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    parent.colorbar(image, ax=list(axes[2, :]), shrink=0.9, label="|x - x_hat|")
    parent.suptitle(f"{_model_name(model)} reconstructions (column titles: scores)", fontsize=10)
    return fig


# ------------------------------------------------------------- history
def _family(key: str) -> str:
    base = key[4:] if key.startswith("val_") else key
    if base == "loss" or base.endswith("_loss"):
        return "loss"
    if base.endswith("accuracy"):
        return "accuracy"
    return base


def training_curves(history, ax=None):
    """Every metric of a Keras `History` (or its `.history` dict) against the epoch.

    One panel per family: `loss` with its parts (every `*_loss`, e.g. the
    VAE's reconstruction and KL terms, the AAE's discriminator and generator
    losses), `accuracy` (every `*accuracy`), and one panel for each other
    metric (`penalty`, `hinge`, `distance`, compiled metrics, `learning_rate`).
    Validation values (`val_*`) are dashed, in their metric's colour. A panel
    whose values are all positive and span more than two decades is log-scaled.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise ValueError(
            "history must be a keras.callbacks.History or its .history dict. "
            f"Received: {type(history).__name__}"
        )
    series = {}
    for key, values in logs.items():
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if array.ndim == 1 and len(array):
            series[str(key)] = np.where(np.isfinite(array), array, np.nan)
    if not series:
        raise ValueError("history has no metrics to plot (train with fit() first).")
    families: dict[str, list[str]] = {}
    for key in series:
        families.setdefault(_family(key), []).append(key)
    # The loss first (with "loss" itself first), then the others as the history lists them.
    families = dict(sorted(families.items(), key=lambda item: item[0] != "loss"))
    families["loss"] = sorted(families.get("loss", []), key=lambda k: k not in ("loss", "val_loss"))
    if not families["loss"]:
        del families["loss"]
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, _, axes = _panel_axes(ax, nrows, ncols, (4.4 * ncols, 3.3 * nrows))
    from matplotlib.ticker import MaxNLocator

    epochs_attr = list(getattr(history, "epoch", []) or [])
    flat = axes.ravel()
    for panel, (family, keys) in zip(flat, families.items(), strict=False):
        colors = {}
        for key in keys:
            values = series[key]
            if len(epochs_attr) == len(values):
                epochs = np.asarray(epochs_attr) + 1
            else:
                epochs = np.arange(1, len(values) + 1)
            base = key[4:] if key.startswith("val_") else key
            color = colors.setdefault(base, f"C{len(colors) % 10}")
            panel.plot(
                epochs,
                values,
                color=color,
                linestyle="--" if key.startswith("val_") else "-",
                marker="o" if len(values) == 1 else None,
                label=key,
            )
        finite = np.concatenate([series[k][np.isfinite(series[k])] for k in keys])
        if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
            panel.set_yscale("log")
        panel.set_title(family)
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.legend(fontsize=8)
    for panel in flat[len(families) :]:
        panel.remove()
    return fig


# --------------------------------------------------------------- latent
def _model_prior(model):
    from keras_deepad.models import VAE, LatentAutoEncoder
    from keras_deepad.priors import StandardNormal

    if isinstance(model, VAE):
        return StandardNormal()
    if isinstance(model, LatentAutoEncoder):
        return model.prior
    return None


def _prior_samples(prior, dim, n=2000):
    import keras

    try:
        return np.asarray(
            keras.ops.convert_to_numpy(prior.sample(n, dim, seed=keras.random.SeedGenerator(0))),
            dtype=np.float64,
        )
    except Exception:  # a user sampler that only runs in a graph: the extent follows the codes
        return None


def _prior_density(prior, grid, dim, directions):
    """The prior's density on `grid` points `(m, 2)`, or `None` when it cannot be drawn.

    `dim == 2`: `exp(prior.log_prob)`. Otherwise the density of the prior
    projected on the orthonormal `directions` (2, dim), exact for
    `StandardNormal` and `MixtureOfGaussians` (isotropic components stay
    isotropic with projected means), `None` for other priors.
    """
    from keras import ops

    from keras_deepad.priors import MixtureOfGaussians, StandardNormal

    if dim == 2:
        if not prior.has_log_prob:
            return None
        log_p = ops.convert_to_numpy(prior.log_prob(ops.convert_to_tensor(grid, "float32")))
        return np.exp(np.asarray(log_p, dtype=np.float64))
    if isinstance(prior, StandardNormal):
        means, scale = np.zeros((1, 2)), prior.scale
    elif isinstance(prior, MixtureOfGaussians):
        means, scale = prior.component_means(dim).astype(np.float64) @ directions.T, prior.scale
    else:
        return None
    sq = ((grid[:, None, :] - means[None]) / scale) ** 2
    dens = np.exp(-0.5 * sq.sum(axis=-1)) / (2.0 * math.pi * scale**2)
    return dens.mean(axis=1)


def latent_scatter(model, x, y=None, ax=None, pca=True):
    """The codes `model.encode(x)` in 2-D, coloured by label, over the prior's density contours.

    For `VAE` (posterior means; prior N(0, I)), `AAE` and `WAE` (encoder
    means; their `prior`); a plain `AE`'s codes are drawn without a prior.
    Points are coloured normal/anomaly with `y`, else by score.

    A 2-D latent space is drawn as it is, with contours of
    `exp(prior.log_prob(z))`. A larger one is projected, with `pca=True`, on
    its two principal directions (of the codes of `x`; the projection
    `z @ W.T` is not centred, so the origin stays the origin), and the title
    says so: the contours are then the projected prior's exact density for
    `StandardNormal` and `MixtureOfGaussians` priors, and are left out (the
    title says so) for others.

    Raises:
        ValueError: the detector has no `encode` (Deep SVDD, OC-NN,
            ensembles); a latent size of 1; a latent size other than 2 with
            `pca=False`.
    """
    if not callable(getattr(model, "encode", None)):
        raise ValueError(
            f"{_model_name(model)} has no latent codes (no encode()): latent_scatter needs a "
            "VAE, AAE, WAE or AE."
        )
    codes = np.asarray(model.encode(x), dtype=np.float64)
    codes = codes.reshape(len(codes), -1)
    dim = codes.shape[1]
    if dim < 2 or (dim != 2 and not pca):
        raise ValueError(
            f"latent_scatter draws a 2-D latent space; this {_model_name(model)} has latent "
            f"size {dim}"
            + ("." if dim < 2 else " (pass pca=True to project it on two principal directions).")
        )
    prior = _model_prior(model)
    if dim == 2:
        directions = np.eye(2)
        points = codes
        axis_names = ("z1", "z2")
        how = ""
    else:
        centred = codes - codes.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        directions = vt[:2]
        points = codes @ directions.T
        share = (singular[:2] ** 2).sum() / max((singular**2).sum(), 1e-300)
        axis_names = ("PC 1", "PC 2")
        how = f"PCA projection of {dim}-D codes ({share:.0%} of variance)"
    fig, ax = _single_axes(ax, figsize=(6.0, 5.2))
    # The drawing extent: the codes and the prior's bulk.
    low, high = points.min(axis=0), points.max(axis=0)
    samples = None if prior is None else _prior_samples(prior, dim)
    if samples is not None:
        projected = samples @ directions.T
        low = np.minimum(low, np.percentile(projected, 1, axis=0))
        high = np.maximum(high, np.percentile(projected, 99, axis=0))
    pad = 0.08 * np.maximum(high - low, 1e-6)
    low, high = low - pad, high + pad
    note = ""
    if prior is None:
        note = "no prior"
    else:
        gx, gy = np.meshgrid(np.linspace(low[0], high[0], 160), np.linspace(low[1], high[1], 160))
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        density = _prior_density(prior, grid, dim, directions)
        drawn = False
        if density is not None:
            density = np.where(np.isfinite(density), density, 0.0).reshape(gx.shape)
            top, bottom = float(density.max()), float(density.min())
            levels = [top * q for q in (0.05, 0.2, 0.45, 0.7, 0.9) if bottom < top * q < top]
            if levels:
                ax.contour(gx, gy, density, levels=levels, colors="0.35", linewidths=0.8)
                ax.plot([], [], color="0.35", linewidth=0.8, label=f"prior {type(prior).__name__}")
                drawn = True
        if not drawn:
            note = f"prior {type(prior).__name__} not drawn"
    if y is not None:
        y = _labels(y, len(points))
        for value, name, color in ((0, "normal", "C0"), (1, "anomaly", "C3")):
            part = points[y == value]
            if len(part):
                ax.scatter(
                    part[:, 0], part[:, 1], s=9, alpha=0.6, color=color, label=name, linewidths=0
                )
    else:
        scores = np.asarray(model.score(x))
        dots = ax.scatter(
            points[:, 0], points[:, 1], s=9, c=scores, cmap="viridis", alpha=0.8, linewidths=0
        )
        ax.figure.colorbar(dots, ax=ax, label="score")
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right")
    subtitle = "; ".join(part for part in (how, note) if part)
    ax.set_title(
        f"{_model_name(model)} latent codes" + (f"\n{subtitle}" if subtitle else ""), fontsize=10
    )
    return fig


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
