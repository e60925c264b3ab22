"""Group anomalies with a trained generative model (VAE, AAE or WAE).

The procedure of the lecture "Robust Deep Learning Methods for Anomaly
Detection" (Chawla, Chalapathy, Khoa, 2020): train a VAE or AAE on all
inputs; aggregate the encoder's posteriors over the N inputs into one
Gaussian by moment matching; for m = 1..M draw `z ~ N(mu, sigma^2)` and
decode a reference `X_m`; score every input by its distance to each
reference and rank. Inputs (or groups of inputs) far from all references
are group anomalies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops

from keras_deepad.choices import AGGREGATES

METRICS = ("euclidean", "sqeuclidean")

__all__ = ["AGGREGATES", "METRICS", "GroupAnomalies", "aggregate_posterior", "group_anomalies"]


@dataclasses.dataclass(frozen=True)
class GroupAnomalies:
    """The result of `group_anomalies`.

    Attributes:
        scores: `(N,)` aggregate score of every input (higher = more anomalous).
        reference_scores: `(M, N)` distance of every input to each reference.
        ranking: `(N,)` input indices sorted by descending score.
        references: `(M, *feature_shape)` decoded references, input units.
        posterior_mean, posterior_var: `(latent_dim,)` moments of the
            aggregated posterior the references were drawn from.
        groups: sorted unique group labels (when `groups` was given).
        group_scores: mean score of each group's members, aligned with `groups`.
        group_ranking: group labels sorted by descending group score.
    """

    scores: np.ndarray
    reference_scores: np.ndarray
    ranking: np.ndarray
    references: np.ndarray
    posterior_mean: np.ndarray
    posterior_var: np.ndarray
    groups: np.ndarray | None = None
    group_scores: np.ndarray | None = None
    group_ranking: np.ndarray | None = None

    def top(self, k):
        """Indices of the `k` most anomalous inputs."""
        return self.ranking[: int(k)]


def aggregate_posterior(mu, var):
    """Moment matching of the mixture `(1/N) sum_i N(mu_i, diag(var_i))`.

    Returns `(mean, variance)` per latent dimension:
    `mean = mean_i mu_i`, `variance = mean_i (var_i + mu_i^2) - mean^2`.
    """
    mu = np.asarray(mu, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    mean = mu.mean(axis=0)
    variance = (var + np.square(mu)).mean(axis=0) - np.square(mean)
    return mean, np.maximum(variance, 0.0)


def _check_model(model):
    for attr in ("posterior", "decoder", "scaler"):
        if not hasattr(model, attr):
            raise ValueError(
                "group anomalies need a generative detector with an encoder posterior and a "
                f"decoder (VAE, AAE or WAE). Received: {type(model).__name__}"
            )
    model.require_built("group_anomalies")


def group_anomalies(
    model,
    x,
    n_references=10,
    aggregate="mean",
    metric="euclidean",
    groups=None,
    seed=0,
    batch_size=None,
):
    """Scores inputs by their distance to references decoded from the aggregated posterior.

    1. Encode every input: posterior means `mu_i` and variances `sigma_i^2`
       (zero for a deterministic AAE/WAE encoder).
    2. Moment-match them into one Gaussian (`aggregate_posterior`).
    3. For each of the `n_references` references, draw a code from it and
       decode it (decoder mean, normalised units): the reference `X_m`.
    4. Score input `j` against reference `m` by the distance `d(X_m, x_j)`
       in the model's normalised units; aggregate over the references.

    A planted group far from the bulk of the data ranks first with the mean
    aggregate (the default); `"min"` (distance to the closest reference)
    can miss a group the model has learned to decode, since the
    aggregated posterior covers it too.

    Args:
        model: a trained `VAE`, `AAE` or `WAE` (trained on all of `x`:
            the method is unsupervised).
        x: the inputs (anything the model's `score` accepts except datasets).
        n_references: M, the number of references.
        aggregate: combination of the per-reference scores: `"mean"`,
            `"median"`, `"min"` (distance to the closest reference) or `"max"`.
        metric: `"euclidean"` or `"sqeuclidean"`.
        groups: optional `(N,)` group label per input; groups are then
            scored by the mean score of their members and ranked too.
        seed: seed of the reference draws.
        batch_size: encoding batch size.

    Returns:
        A `GroupAnomalies`.

    Example:
        >>> model = VAE(latent_dim=4)
        >>> model.fit(x, epochs=50, verbose=0)
        >>> result = group_anomalies(model, x, n_references=20)
        >>> suspects = result.top(10)

    Reference:
        Chalapathy, Toth, Chawla, "Group Anomaly Detection using Deep
        Generative Models", ECML-PKDD 2018.
    """
    _check_model(model)
    if int(n_references) < 1:
        raise ValueError(f"n_references must be >= 1. Received: n_references={n_references}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}. Received: {aggregate!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}. Received: metric={metric!r}")
    latent_dim = int(model.latent_dim)

    def moments(t):
        mu, logvar = model.posterior(model.scaler(t))
        return ops.concatenate([mu, ops.exp(logvar)], axis=-1)

    encoded = model.run_batched(
        x, model.traced_function(("posterior_moments",), moments), batch_size, (2 * latent_dim,)
    )
    n = len(encoded)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(
                f"groups must hold one label per input, shape ({n},). Received: {groups.shape}"
            )
    mean, variance = aggregate_posterior(encoded[:, :latent_dim], encoded[:, latent_dim:])

    m = int(n_references)
    rng = np.random.default_rng(seed)
    codes = (mean + np.sqrt(variance) * rng.standard_normal((m, latent_dim))).astype("float32")
    decoded = np.asarray(model.decoder_mean(model.decoder(codes)))  # normalised units
    feature_shape = tuple(model.feature_shape)
    refs = decoded.reshape(m, -1).astype(np.float64)

    scaled = model.run_batched(
        x, model.traced_function(("scaled_inputs",), model.scaler), batch_size, feature_shape
    ).reshape(n, -1)
    ref_sq = np.sum(np.square(refs), axis=1)
    reference_scores = np.empty((m, n))
    chunk = max(1, 2**22 // m)
    for start in range(0, n, chunk):
        block = scaled[start : start + chunk].astype(np.float64)
        d2 = np.sum(np.square(block), axis=1)[:, None] + ref_sq[None] - 2.0 * block @ refs.T
        reference_scores[:, start : start + chunk] = np.maximum(d2, 0.0).T
    if metric == "euclidean":
        reference_scores = np.sqrt(reference_scores)
    scores = getattr(np, aggregate)(reference_scores, axis=0)
    ranking = np.argsort(-scores, kind="stable")

    group_ids = group_scores = group_ranking = None
    if groups is not None:
        group_ids, inverse = np.unique(groups, return_inverse=True)
        group_scores = np.bincount(inverse, weights=scores) / np.bincount(inverse)
        group_ranking = group_ids[np.argsort(-group_scores, kind="stable")]
    references = np.asarray(model.scaler.inverse(decoded)).reshape(m, *feature_shape)
    return GroupAnomalies(
        scores=scores.astype(np.float32),
        reference_scores=reference_scores.astype(np.float32),
        ranking=ranking,
        references=references,
        posterior_mean=mean.astype(np.float32),
        posterior_var=variance.astype(np.float32),
        groups=group_ids,
        group_scores=None if group_scores is None else group_scores.astype(np.float32),
        group_ranking=group_ranking,
    )
