"""Training curves from a Keras `History`."""

from __future__ import annotations

import math

import numpy as np

from keras_deepad.plot._common import _panel_axes


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
