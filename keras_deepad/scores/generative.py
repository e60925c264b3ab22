"""Anomaly scores of generative models (VAE, AAE, WAE).

Pure functions of tensors, one value per sample, higher = more anomalous.
The detectors expose them by name through `score(x, method=...)`; the
functions work on any encoder/decoder pair.

| name                    | score                                                   |
|-------------------------|---------------------------------------------------------|
| reconstruction          | error of the decoder output at the encoder mean          |
| reconstruction_sampled  | `(1/L) sum_l err(x, G(z_l))`, `z_l ~ q(z|x)`             |
| reconstruction_probability | `-(1/L) sum_l log p(x | z_l)` (An & Cho 2015)         |
| latent                  | `-log p(mu)` under the prior                             |
| discriminator           | `-log D(E(x))`: a high `D` means "looks like the prior"  |
| elbo                    | negative ELBO, `-(1/L) sum_l log p(x|z_l) + KL(q||p)`     |
| jacodeco                | `-(log p(x|mu) + log p(mu) - sum_i log s_i(J_G(mu)))`   |

Reference:
    Škvára, Pevný, Šmídl, "Are generative deep models for novelty detection
    truly better?", arXiv:1905.11890 (2019); An & Cho, "Variational
    Autoencoder based Anomaly Detection using Reconstruction Probability",
    SNU Data Mining Center, 2015.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_deepad.losses import gaussian_kl

DISCRIMINATOR_SCORES = ("log", "complement")

__all__ = [
    "DISCRIMINATOR_SCORES",
    "decoder_log_volume",
    "discriminator_score",
    "jacodeco",
    "latent_score",
    "monte_carlo",
    "monte_carlo_noise",
    "negative_elbo",
]


def monte_carlo(x, mu, logvar, per_sample_fn, n_samples, seed=0, eps=None):
    """`(1/L) sum_l f(x, z_l)` with `z_l = mu + exp(logvar / 2) * eps_l`.

    The `L` standard-normal draws `eps_l` are the same for every sample of
    the batch (drawn from the integer `seed`), so scores are deterministic
    and do not depend on batching. With `L = 1` and zero variance
    (`logvar = -inf`), it is `f(x, mu)`. The one Monte-Carlo score of the
    VAE, the latent autoencoders and the exported graphs (which pass the
    same draws as a constant `eps`, so the graph holds no random op).

    Args:
        x: inputs, shape `(batch, ...)`.
        mu, logvar: posterior mean and log-variance, shape `(batch, latent)`.
        per_sample_fn: `f(x_rep, z) -> (batch * L,)`, for example the
            decoder's negative log-likelihood or a reconstruction error.
        n_samples: `L >= 1`.
        seed: integer seed of the draws.
        eps: optional draws `(L, latent)` to use instead (e.g.
            `monte_carlo_noise(L, latent, seed)` evaluated once).

    Returns:
        A `(batch,)` tensor.
    """
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1. Received: n_samples={n_samples}")
    latent_dim = int(mu.shape[-1])
    if eps is None:
        eps = monte_carlo_noise(n_samples, latent_dim, seed)
    eps = ops.reshape(ops.convert_to_tensor(eps, dtype=mu.dtype), (n_samples, 1, latent_dim))
    z = mu[None] + ops.exp(0.5 * logvar)[None] * eps  # (L, batch, latent)
    batch = ops.shape(mu)[0]
    x_rep = ops.reshape(ops.repeat(x[None], n_samples, axis=0), (-1, *x.shape[1:]))
    values = per_sample_fn(x_rep, ops.reshape(z, (-1, latent_dim)))
    return ops.mean(ops.reshape(values, (n_samples, batch)), axis=0)


def monte_carlo_noise(n_samples, latent_dim, seed=0):
    """The draws `eps_l` of `monte_carlo`, shape `(L, latent_dim)`: a stateless op of `seed`."""
    return keras.random.normal((int(n_samples), int(latent_dim)), seed=seed)


def latent_score(z, prior):
    """`-log p(z)` under `prior` (a `keras_deepad.priors.Prior`), shape `(batch,)`."""
    return prior.latent_score(z)


def discriminator_score(logits, kind="log"):
    """Anomaly score from latent-discriminator logits, shape `(batch,)`.

    The discriminator outputs `D(z) = sigmoid(logit)`, the probability that
    `z` came from the prior. Codes of normal data are pushed towards the
    prior during training, so a **high** `D` means normal, and the anomaly
    score decreases with `D`:

    - `"log"`: `-log D(z) = softplus(-logit)` (unbounded above);
    - `"complement"`: `1 - D(z)` (in [0, 1]).

    Args:
        logits: discriminator outputs, shape `(batch,)` or `(batch, 1)`.
        kind: `"log"` or `"complement"`.
    """
    if kind not in DISCRIMINATOR_SCORES:
        raise ValueError(f"kind must be one of {DISCRIMINATOR_SCORES}. Received: kind={kind!r}")
    logits = ops.reshape(logits, (-1,))
    if kind == "log":
        return ops.softplus(-logits)
    return 1.0 - ops.sigmoid(logits)


def negative_elbo(nll, mu, logvar):
    """`-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))` from a Monte-Carlo NLL."""
    return nll + gaussian_kl(mu, logvar)


def decoder_log_volume(decode, z, min_singular_value=1e-12):
    """`sum_i log s_i` of the decoder Jacobian at `z`, shape `(batch,)`.

    `s_i` are the singular values of `J = d decode(z) / d z` (flattened
    output, `(D, latent)` per sample); `sum_i log s_i = 0.5 log det(J^T J)`
    is the log of the volume change of the decoder manifold at `z`.
    Singular values are floored at `min_singular_value`.

    `J` is built in forward mode, one Jacobian-vector product per latent
    dimension (`tf.autodiff.ForwardAccumulator`): `latent` decoder passes on
    the batch as it is. Reverse mode (`GradientTape.batch_jacobian`) would
    vectorise over the `D` outputs instead, running the decoder's backward
    pass on `batch * D` rows at once; for a convolutional decoder of
    28x28 images and 256 rows that aborts the process.

    Args:
        decode: callable `z -> x` (e.g. a decoder mean).
        z: latent codes, shape `(batch, latent)`.
    """
    z = tf.convert_to_tensor(z, tf.float32)
    latent = z.shape[-1]
    if latent is None:
        raise ValueError("decoder_log_volume needs a static latent dimension.")
    columns = []
    for i in range(latent):
        tangent = tf.one_hot(tf.fill(tf.shape(z)[:1], i), latent, dtype=z.dtype)
        with tf.autodiff.ForwardAccumulator(z, tangent) as accumulator:
            out = decode(z)
        jvp = accumulator.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        columns.append(tf.reshape(jvp, (tf.shape(out)[0], -1)))
    jacobian = tf.stack(columns, axis=-1)  # (batch, D, latent)
    singular = tf.linalg.svd(jacobian, compute_uv=False)
    return tf.reduce_sum(tf.math.log(tf.maximum(singular, min_singular_value)), axis=-1)


def jacodeco(x, z, decode, nll_fn, latent_nll_fn):
    """JacoDeco: `-(log p(x|z) + log p(z) - sum_i log s_i)` at `z` (the encoder mean).

    The decoder maps the latent space onto a manifold in data space; by the
    change of variables, the density of a point on it is
    `p(z) / sqrt(det J^T J)`, so `-log p(x) = -log p(x|z) - log p(z) +
    sum_i log s_i` with `s_i` the singular values of the decoder Jacobian
    `J` at `z`. (One reference implementation subtracts twice the sum; the
    change of variables gives it once, as here.)

    Args:
        x: inputs (the decoder's units), shape `(batch, ...)`.
        z: encoder means, shape `(batch, latent)`.
        decode: callable `z -> decoder mean`, differentiated for `J`.
        nll_fn: `(x, z) -> -log p(x|z)` per sample.
        latent_nll_fn: `z -> -log p(z)` per sample.

    Returns:
        A `(batch,)` tensor.
    """
    return nll_fn(x, z) + latent_nll_fn(z) + decoder_log_volume(decode, z)
