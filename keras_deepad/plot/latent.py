"""Latent codes against the prior."""

from __future__ import annotations

import math

import numpy as np

from keras_deepad.plot._common import _labels, _model_name, _single_axes


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
