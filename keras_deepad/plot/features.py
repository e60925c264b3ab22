"""Per-feature errors and image reconstructions of reconstruction detectors."""

from __future__ import annotations

import math

import numpy as np

from keras_deepad.plot._common import (
    _is_reconstruction_detector,
    _model_name,
    _panel_axes,
    _require_trained,
    _single_axes,
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
