"""Shared parts of the autoencoders whose latent space is matched to a prior (AAE, WAE)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_deepad.layers import Reparameterization
from keras_deepad.losses import adversarial_terms, gaussian_nll, reconstruction_error
from keras_deepad.models.base import Declaration, batch_weight
from keras_deepad.models.reconstruction import HYBRID_SCORES, ReconstructionDetector
from keras_deepad.networks import build_latent_discriminator
from keras_deepad.networks.spec import COMMON_ARGUMENTS
from keras_deepad.priors import get_prior
from keras_deepad.scores import generative as gen_scores
from keras_deepad.utils.replicas import global_draw
from keras_deepad.utils.validation import check_number, check_range, check_units

#: Momentum of the running mean of squared reconstruction errors per feature
#: (the variance of the Gaussian likelihood used by the "jacodeco" score).
ERROR_MOMENTUM = 0.99
#: Smallest per-feature error variance of that likelihood.
MIN_ERROR_VARIANCE = 1e-6
RECONSTRUCTION_LOSSES = ("mse", "mae")
ALL_SCORE_METHODS = (
    "hybrid",
    "hybrid_knn",
    "reconstruction",
    "reconstruction_sampled",
    "latent",
    "discriminator",
    "combined",
    "jacodeco",
)


class LatentAutoEncoder(ReconstructionDetector):
    """An autoencoder trained to match its aggregate posterior to a prior.

    Holds what `AAE` and `WAE` share: the networks (encoder, decoder,
    optionally a latent discriminator), the prior, the score methods and the
    running per-feature error variance. Subclasses set `uses_discriminator`,
    `extra_optimizers` (their second and third optimizers, which `compile`
    makes and saves, see `AnomalyDetector.compile`) and write `train_step` /
    `test_step`.

    Score methods (higher = more anomalous), see `keras_deepad.scores`:

    - `"hybrid_knn"` (the default): the log reconstruction error at the
      encoder mean (each feature's squared error in units of its mean
      training error) plus the log mean distance of that mean to its 10
      nearest kept training codes, each standardised over the training
      data (`keras_deepad.layers.CodeNeighbours`, as the `AE`'s default);
    - `"hybrid"`: the same error plus the log squared Mahalanobis distance
      of the encoder mean to the training codes
      (`keras_deepad.layers.CodeDensity`; the default before `"hybrid_knn"`).
      Same trained models (`hybrid` -> `hybrid_knn`): on the tabular suite
      (seven real sets, seeds 1-3) AAE 0.695 -> 0.686 and WAE-MMD 0.698 ->
      0.692 (0.659 and 0.656 for `"reconstruction"`), but over 61
      rare-class tasks (each class of the labelled development sets the
      rare anomaly class in turn, `benchmarks/class_tasks.py`, seed 1)
      0.604 -> 0.647 and 0.614 -> 0.659, and over the 61 one-class tasks
      0.938 -> 0.942 and 0.938 -> 0.943: more tasks, from eight sets,
      against seven;
    - `"reconstruction"`: mean squared error (normalised units) of the
      decoder output at the encoder mean, like `AE`'s `"mse"`;
    - `"reconstruction_sampled"`: the same error averaged over
      `mc_samples` draws `z_l ~ q(z|x)` (equal to `"reconstruction"` for a
      deterministic encoder, whose posterior is a point mass);
    - `"latent"`: `-log p(E(x))` under the prior;
    - `"discriminator"` (with a discriminator): `-log D(E(x))`; `D` is the
      probability of "drawn from the prior", so a high `D` means normal;
    - `"combined"` (with a discriminator): `reconstruction +
      score_weight * discriminator`;
    - `"jacodeco"`: `-(log p(x|mu) + log p(mu) - sum_i log s_i)`, `s_i` the
      singular values of the decoder Jacobian at the encoder mean, with a
      Gaussian `p(x|z)` whose per-feature variance is the running mean of
      the training reconstruction errors.
    """

    #: Every score method of the family; an instance offers those its prior and
    #: discriminator allow (`narrow_score_methods`).
    score_methods = Declaration(ALL_SCORE_METHODS)
    default_score_method = "hybrid_knn"
    network_arguments = (*COMMON_ARGUMENTS, "output_activation")
    error_score_method = "reconstruction"
    uses_discriminator = False
    #: Of the reconstruction optimizer. Standardised inputs and Adam at 5e-3 rose the
    #: tabular suite's mean AUROC (seven real sets, seeds 1-3) from 0.594 to 0.603 (AAE)
    #: and from 0.555 to 0.618 (WAE-MMD) against min-max inputs and 1e-3; the default
    #: network (64 hidden units, a 32-d code, dropout 0.2, as the AE's) then to 0.674 (AAE)
    #: and 0.658 (WAE-MMD) against 64-32-8 without dropout.
    default_learning_rate = 5e-3

    def __init__(
        self,
        architecture="mlp",
        hidden_units=(64,),
        latent_dim=32,
        activation="relu",
        conv_filters=(32, 64),
        kernel_size=3,
        output_activation=None,
        dropout=0.2,
        prior="normal",
        stochastic_encoder=False,
        logvar_range=(-30.0, 20.0),
        mc_samples=16,
        reconstruction_loss="mse",
        discriminator_units=(64, 64),
        score_weight=0.1,
        gradient_penalty=0.0,
        encoder=None,
        decoder=None,
        discriminator=None,
        normalization="standard",
        score_method=None,
        seed=None,
        **kwargs,
    ):
        prior_obj = get_prior(prior)
        super().__init__(
            normalization=normalization, score_method=score_method, seed=seed, **kwargs
        )
        self.set_network_spec(
            architecture=architecture,
            hidden_units=hidden_units,
            latent_dim=latent_dim,
            activation=activation,
            conv_filters=conv_filters,
            kernel_size=kernel_size,
            output_activation=output_activation,
            dropout=dropout,
        )
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}. "
                f"Received: reconstruction_loss={reconstruction_loss!r}"
            )
        if int(mc_samples) < 1:
            raise ValueError(f"mc_samples must be >= 1. Received: mc_samples={mc_samples}")
        if float(score_weight) < 0:
            raise ValueError(f"score_weight must be >= 0. Received: score_weight={score_weight}")
        if float(gradient_penalty) < 0:
            raise ValueError(
                f"gradient_penalty must be >= 0. Received: gradient_penalty={gradient_penalty}"
            )
        if discriminator is not None and not self.uses_discriminator:
            raise ValueError(
                f"this {type(self).__name__} has no discriminator. Received: discriminator="
                f"{discriminator!r}"
            )
        self.prior_spec = prior if isinstance(prior, str) else None
        self.prior = prior_obj
        self.stochastic_encoder = bool(stochastic_encoder)
        self.logvar_range = check_range("logvar_range", logvar_range)
        self.mc_samples = check_number("mc_samples", mc_samples, low=1, integer=True)
        self.reconstruction_loss = reconstruction_loss
        self.discriminator_units = check_units("discriminator_units", discriminator_units)
        self.score_weight = check_number("score_weight", score_weight, low=0)
        self.gradient_penalty = check_number("gradient_penalty", gradient_penalty, low=0)
        self._set_networks(encoder, decoder)
        self.discriminator = discriminator
        self._user_discriminator = discriminator is not None
        self.sampler = Reparameterization(logvar_range=self.logvar_range, seed=seed, name="sampler")
        self.prior_seed = keras.random.SeedGenerator(seed)
        self.check_score_method()
        # Integer seed of the fixed Monte-Carlo draws used when scoring.
        self.score_seed = 0 if seed is None else int(seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")

    def narrow_score_methods(self, declared):
        """`"latent"` and `"jacodeco"` need a prior with a density; `"discriminator"` and
        `"combined"` a discriminator (`uses_discriminator`)."""
        available = self.available_score_methods(self.prior, self.uses_discriminator)
        return tuple(m for m in available if m in declared)

    @staticmethod
    def available_score_methods(prior, has_discriminator):
        methods = ["hybrid", "hybrid_knn", "reconstruction", "reconstruction_sampled"]
        if prior.has_log_prob:
            methods.append("latent")
        if has_discriminator:
            methods += ["discriminator", "combined"]
        if prior.has_log_prob:
            methods.append("jacodeco")
        return tuple(methods)

    # ---------------------------------------------------------------- build
    def build_networks(self, feature_shape):
        if not self._user_networks:
            # A stochastic encoder outputs the posterior's mean and log-variance.
            code = 2 * self.latent_dim if self.stochastic_encoder else self.latent_dim
            self.encoder, self.decoder = self.network_spec.build(feature_shape, code_dim=code)
        if self.uses_discriminator and self.discriminator is None:
            self.discriminator = build_latent_discriminator(
                self.latent_dim, hidden_units=self.discriminator_units
            )
        # Running mean of squared errors per feature (normalised units), and its step count.
        self.error_moment = self.add_weight(
            shape=feature_shape,
            initializer="zeros",
            trainable=False,
            aggregation="mean",
            name="error_moment",
        )
        self.error_steps = self.add_weight(
            shape=(), initializer="zeros", trainable=False, aggregation="mean", name="error_steps"
        )

    # ------------------------------------------------------------ optimizers
    def optimizer_variables(self):
        """Optimizer attribute name -> the variables that optimizer updates."""
        return {"optimizer": self.autoencoder_variables()}

    def autoencoder_variables(self):
        return [*self.encoder.trainable_variables, *self.decoder.trainable_variables]

    # ---------------------------------------------------------------- pieces
    def posterior(self, x_scaled, training=False):
        """`(mu, logvar)` of `q(z|x)` for normalised inputs.

        A deterministic encoder's posterior is a point mass: `logvar = -inf`.
        """
        h = self.encoder(x_scaled, training=training)
        if not self.stochastic_encoder:
            return h, ops.full_like(h, float("-inf"))
        mu, logvar = ops.split(h, 2, axis=-1)
        return mu, ops.clip(logvar, *self.logvar_range)

    def latent_code(self, x_scaled, training=False):
        """The code `z` fed to the decoder and the adversary (sampled when training)."""
        h = self.encoder(x_scaled, training=training)
        if not self.stochastic_encoder:
            return h
        mu, logvar = ops.split(h, 2, axis=-1)
        return self.sampler([mu, logvar], training=training)

    def decoder_mean(self, decoded):
        return decoded

    def reconstruct_normalised(self, x_scaled, training=False):
        mu, _ = self.posterior(x_scaled, training=training)
        return self.decoder(mu, training=training)

    def network_graph_outputs(self, x):
        """Encoder, sampler (stochastic encoders), decoder, and the discriminator on the codes."""
        h = self.encoder(self.scaler(x))
        z = self.sampler(list(ops.split(h, 2, axis=-1))) if self.stochastic_encoder else h
        outputs = {"reconstruction": self.decoder(z)}
        if self.discriminator is not None:
            outputs["discriminator"] = self.discriminator(z)
        return outputs

    def _regularization(self):
        losses = (*self.encoder.losses, *self.decoder.losses)
        extra = [ops.cast(ops.sum(v), "float32") for v in losses]
        return ops.sum(ops.stack(extra)) if extra else 0.0

    def reconstruction_terms(self, x_scaled, training, sample_weight=None):
        """`(z, x_hat, per-sample error, reduced loss)` of one batch."""
        z = self.latent_code(x_scaled, training=training)
        x_hat = self.decoder(z, training=training)
        per_sample = reconstruction_error(x_scaled, x_hat, self.reconstruction_loss)
        regularization = self._regularization() * batch_weight(sample_weight)
        loss = self.reduce_loss(per_sample, sample_weight) + regularization
        return z, x_hat, per_sample, loss

    def per_sample_loss(self, x, training=False):
        _, _, per_sample, _ = self.reconstruction_terms(self.scaler(x), training)
        return per_sample, {"reconstruction_loss": per_sample}

    def _track_errors(self, x_scaled, x_hat):
        batch_moment = ops.mean(ops.square(ops.stop_gradient(x_hat) - x_scaled), axis=0)
        self.error_moment.assign(
            ERROR_MOMENTUM * self.error_moment + (1.0 - ERROR_MOMENTUM) * batch_moment
        )
        self.error_steps.assign_add(1.0)

    def error_variance(self):
        """Per-feature variance of the Gaussian `p(x|z)` (bias-corrected running mean)."""
        steps = self.error_steps
        correction = 1.0 - ops.power(ERROR_MOMENTUM, ops.maximum(steps, 1.0))
        variance = ops.where(steps > 0, self.error_moment / correction, 1.0)
        return ops.maximum(variance, MIN_ERROR_VARIANCE)

    def discriminator_step(self, z_prior, z_fake, weight=1.0):
        """One update of the discriminator; returns `(weight * loss, accuracy)`.

        Loss: `weight * -(mean log D(z_prior) + mean log(1 - D(z_fake))) / 2`
        plus the R1 penalty `gradient_penalty / 2 * mean ||grad D(z_prior)||^2`
        (logit gradients on prior samples) when `gradient_penalty > 0`.
        """
        disc_vars = self.discriminator.trainable_variables
        z_fake = ops.stop_gradient(z_fake)
        with tf.GradientTape() as tape:
            if self.gradient_penalty > 0:
                with tf.GradientTape() as inner:
                    inner.watch(z_prior)
                    real_logits = self.discriminator(z_prior, training=True)
                    real_sum = ops.sum(real_logits)
                grad = inner.gradient(real_sum, z_prior)
                penalty = 0.5 * self.gradient_penalty * ops.mean(ops.sum(ops.square(grad), -1))
            else:
                real_logits = self.discriminator(z_prior, training=True)
                penalty = 0.0
            d_loss, accuracy = adversarial_terms(
                real_logits, self.discriminator(z_fake, training=True)
            )
            d_loss = weight * d_loss
            scaled = self.scale_for_gradients(d_loss + penalty, self.discriminator_optimizer)
        self.discriminator_optimizer.apply(tape.gradient(scaled, disc_vars), disc_vars)
        return d_loss, accuracy

    def sample_prior(self, n):
        """`n` prior samples; under `tf.distribute` this replica's rows of the global batch's."""
        return global_draw(
            lambda rows: self.prior.sample(rows, self.latent_dim, self.prior_seed), n
        )

    def _unpack(self, data):
        """`(normalised x, sample weights or None)` of a training batch."""
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return self.scaler(ops.cast(x, "float32")), sample_weight

    # --------------------------------------------------------------- score
    def compute_scores(self, x, method):
        x_scaled = self.scaler(x)
        if method in HYBRID_SCORES:
            return self.compute_hybrid_scores(x_scaled, method)
        mu, logvar = self.posterior(x_scaled)
        if method == "reconstruction" or (
            method == "reconstruction_sampled" and not self.stochastic_encoder
        ):
            return reconstruction_error(x_scaled, self.decoder(mu), "mse")
        if method == "reconstruction_sampled":
            return gen_scores.monte_carlo(
                x_scaled,
                mu,
                logvar,
                lambda xr, z: reconstruction_error(xr, self.decoder(z), "mse"),
                self.mc_samples,
                seed=self.score_seed,
            )
        if method == "latent":
            return gen_scores.latent_score(mu, self.prior)
        if method == "discriminator":
            return gen_scores.discriminator_score(self.discriminator(mu))
        if method == "combined":
            return reconstruction_error(
                x_scaled, self.decoder(mu), "mse"
            ) + self.score_weight * gen_scores.discriminator_score(self.discriminator(mu))
        if method == "jacodeco":
            logvar_x = ops.log(self.error_variance())
            return gen_scores.jacodeco(
                x_scaled,
                mu,
                self.decoder,
                lambda xs, z: gaussian_nll(xs, self.decoder(z), logvar_x),
                self.prior.latent_score,
            )
        raise ValueError(f"unknown score method {method!r}")

    def code_and_reconstruction(self, x_scaled):
        mu = self.posterior(x_scaled)[0]
        return mu, self.decoder(mu)

    def encode(self, x, batch_size=None):
        """Encoder means of `x`, shape `(n_samples, latent_dim)`."""
        self.require_built("encode")
        fn = self.traced_function(("encode",), lambda t: self.posterior(self.scaler(t))[0])
        return self.run_batched(x, fn, batch_size, (self.latent_dim,))

    def discriminate(self, x, batch_size=None):
        """`D(E(x))`: probability that the code of `x` was drawn from the prior."""
        self.require_built("discriminate")
        if self.discriminator is None:
            raise ValueError(f"this {type(self).__name__} has no discriminator.")
        fn = self.traced_function(
            ("discriminate",),
            lambda t: ops.sigmoid(
                ops.reshape(self.discriminator(self.posterior(self.scaler(t))[0]), (-1,))
            ),
        )
        return self.run_batched(x, fn, batch_size, ())

    # --------------------------------------------------------------- config
    @classmethod
    def from_config(cls, config):
        # Saved before `dropout` existed: those networks were trained without it.
        return super().from_config({"dropout": 0.0, **config})

    def get_config(self):
        config = super().get_config()
        config.update(
            prior=self.prior_spec or keras.saving.serialize_keras_object(self.prior),
            stochastic_encoder=self.stochastic_encoder,
            logvar_range=list(self.logvar_range),
            mc_samples=self.mc_samples,
            reconstruction_loss=self.reconstruction_loss,
            discriminator_units=list(self.discriminator_units),
            score_weight=self.score_weight,
            gradient_penalty=self.gradient_penalty,
        )
        if self._user_discriminator:
            config["discriminator"] = keras.saving.serialize_keras_object(self.discriminator)
        return config
