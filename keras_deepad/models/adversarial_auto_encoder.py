import keras
import tensorflow as tf
from keras import ops

from keras_deepad.losses import adversarial_terms, generator_nll
from keras_deepad.models.base import weighted_mean
from keras_deepad.models.latent_auto_encoder import LatentAutoEncoder


@keras.saving.register_keras_serializable(package="keras_deepad")
class AAE(LatentAutoEncoder):
    """Adversarial autoencoder: a latent discriminator matches the codes to a prior.

    Every minibatch runs three updates, each with its own optimizer:

    1. reconstruction: encoder and decoder minimise the per-sample
       reconstruction error (reduced by `reduce_loss`, so the percentile loss
       applies) with `optimizer`;
    2. discriminator: `-(mean log D(z_prior) + mean log(1 - D(E(x)))) / 2`
       with `discriminator_optimizer`, plus the R1 penalty
       `gradient_penalty / 2 * mean ||grad_z logit D(z_prior)||^2`;
    3. generator: the encoder minimises `-mean log D(E(x))` (the
       non-saturating loss) with `generator_optimizer`.

    `compile(optimizer=..., discriminator_optimizer=...,
    generator_optimizer=...)` sets them (defaults: Adam(5e-3), Adam(1e-3,
    beta_1=0.5), Adam(1e-3, beta_1=0.5)); all three are saved with the model
    and restored on load. Metrics: `loss` (the reconstruction objective),
    `reconstruction_loss`, `discriminator_loss`, `generator_loss` and
    `discriminator_accuracy` (0.5 when the codes are indistinguishable
    from prior samples).

    The R1 penalty (Mescheder et al. 2018) is not part of the original AAE;
    without it (`gradient_penalty=0`) the latent game oscillated on the
    small tabular sets this package targets (codes drifting, discriminator
    accuracy swinging between 0.2 and 0.9). A deterministic encoder can only
    match the prior when `latent_dim` does not exceed the intrinsic
    dimension of the data: otherwise its codes lie on a thinner manifold
    and the discriminator keeps telling them apart.

    Args:
        architecture: `"mlp"` or `"conv"` (images `(H, W, C)`).
        hidden_units, activation, conv_filters, kernel_size, dropout: as in `AE` (dropout
            after each dense hidden layer, in training only; dense networks only).
        latent_dim: size of the code.
        output_activation: activation of the decoder output (`None`: linear).
        prior: `"normal"`, `"mog"` (mixture of Gaussians), `"uniform"`, a
            `keras_deepad.priors.Prior` or a sampler callable (see
            `SampledPrior`).
        stochastic_encoder: `False` (default, deterministic `z = E(x)`) or
            `True` (Gaussian `q(z|x)`, the encoder outputs mean and
            log-variance, `z` is sampled while training).
        logvar_range: clipping bounds of a stochastic encoder's log-variance.
        mc_samples: L, draws of the `"reconstruction_sampled"` score.
        reconstruction_loss: `"mse"` or `"mae"` (mean over features).
        discriminator_units: hidden layers of the latent discriminator.
        score_weight: weight of the discriminator score in `"combined"`.
        gradient_penalty: weight of the discriminator's R1 penalty (0: off).
        encoder, decoder, discriminator: optional user networks (`x -> z`
            (or `2 * latent_dim` when stochastic), `z -> x`, `z -> logit`).
        percentile_loss: `None` (off), `True` (q = 0.95) or q in (0, 1):
            drop the samples at or above the batch's q-quantile of the
            reconstruction error (contaminated training data; see
            `ReconstructionDetector`).
        normalization: see `AnomalyDetector` (default `"standard"`).
        score_method: `"hybrid_knn"` (default), `"hybrid"`, `"reconstruction"`,
            `"reconstruction_sampled"`,
            `"latent"` (`-log p(E(x))`), `"discriminator"` (`-log D(E(x))`:
            a high D means normal), `"combined"` or `"jacodeco"`; see
            `LatentAutoEncoder` and `keras_deepad.scores`.
        seed: seed of the prior draws and the encoder noise.

    Example:
        >>> model = AAE(latent_dim=4, prior="mog")
        >>> model.compile(optimizer="adam", discriminator_optimizer=keras.optimizers.Adam(1e-4))
        >>> model.fit(x_train, epochs=50, batch_size=64)
        >>> scores = model.score(x_test, method="discriminator")

    Reference:
        Makhzani, Shlens, Jaitly, Goodfellow, Frey, "Adversarial
        Autoencoders", ICLR 2016 workshop (arXiv:1511.05644); Mescheder,
        Geiger, Nowozin, "Which Training Methods for GANs do actually
        Converge?", ICML 2018 (R1); Škvára, Pevný, Šmídl, arXiv:1905.11890
        (scores).
    """

    uses_discriminator = True
    extra_optimizers = {
        "discriminator_optimizer": {"learning_rate": 1e-3, "beta_1": 0.5},
        "generator_optimizer": {"learning_rate": 1e-3, "beta_1": 0.5},
    }

    def __init__(
        self, latent_dim=32, prior="normal", gradient_penalty=10.0, percentile_loss=None, **kwargs
    ):
        super().__init__(
            latent_dim=latent_dim,
            prior=prior,
            gradient_penalty=gradient_penalty,
            percentile_loss=percentile_loss,
            **kwargs,
        )
        self.discriminator_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.generator_tracker = keras.metrics.Mean(name="generator_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="discriminator_accuracy")

    def extra_trackers(self):
        return [
            self.reconstruction_tracker,
            self.discriminator_tracker,
            self.generator_tracker,
            self.accuracy_tracker,
        ]

    def optimizer_variables(self):
        return {
            "optimizer": self.autoencoder_variables(),
            "discriminator_optimizer": self.discriminator.trainable_variables,
            "generator_optimizer": self.encoder.trainable_variables,
        }

    def _record(self, rec_loss, per_sample, d_loss, g_loss, accuracy):
        return self._update_trackers(
            rec_loss,
            {
                "reconstruction_loss": per_sample,
                "discriminator_loss": d_loss,
                "generator_loss": g_loss,
                "discriminator_accuracy": accuracy,
            },
        )

    def train_step(self, data):
        x_scaled, sample_weight = self._unpack(data)
        # Every loss is scaled (replicas, mixed precision) inside its tape.
        ae_vars = self.autoencoder_variables()
        with tf.GradientTape() as tape:
            _, x_hat, per_sample, rec_loss = self.reconstruction_terms(
                x_scaled, training=True, sample_weight=sample_weight
            )
            scaled = self.scale_for_gradients(rec_loss)
        self.optimizer.apply(tape.gradient(scaled, ae_vars), ae_vars)
        self._track_errors(x_scaled, x_hat)

        z_prior = self.sample_prior(ops.shape(x_scaled)[0])
        d_loss, accuracy = self.discriminator_step(
            z_prior, self.latent_code(x_scaled, training=True)
        )

        enc_vars = self.encoder.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.latent_code(x_scaled, training=True), training=True)
            # -mean log D(E(x)), each sample weighted as in the reconstruction loss.
            g_loss = weighted_mean(generator_nll(logits), sample_weight)
            scaled = self.scale_for_gradients(g_loss, self.generator_optimizer)
        self.generator_optimizer.apply(tape.gradient(scaled, enc_vars), enc_vars)
        self.update_compiled_metrics(data)
        return self._record(rec_loss, per_sample, d_loss, g_loss, accuracy)

    def test_step(self, data):
        x_scaled, sample_weight = self._unpack(data)
        z, _, per_sample, rec_loss = self.reconstruction_terms(
            x_scaled, training=False, sample_weight=sample_weight
        )
        fake_logits = self.discriminator(z)
        d_loss, accuracy = adversarial_terms(
            self.discriminator(self.sample_prior(ops.shape(x_scaled)[0])), fake_logits
        )
        g_loss = ops.mean(generator_nll(fake_logits))
        self.update_compiled_metrics(data)
        return self._record(rec_loss, per_sample, d_loss, g_loss, accuracy)
