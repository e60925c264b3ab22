import keras
import tensorflow as tf
from keras import ops

from keras_deepad.losses.adversarial import adversarial_terms, generator_nll
from keras_deepad.losses.mmd import KERNELS, MMD_SCALES, mmd
from keras_deepad.models.base import Declaration, batch_weight, weighted_mean
from keras_deepad.models.latent_auto_encoder import LatentAutoEncoder
from keras_deepad.utils.replicas import gather_batch
from keras_deepad.utils.validation import check_number

PENALTIES = ("mmd", "gan")


@keras.saving.register_keras_serializable(package="keras_deepad")
class WAE(LatentAutoEncoder):
    """Wasserstein autoencoder: reconstruction plus a penalty matching `Q_Z` to the prior.

    Objective: `c(x, G(E(x))) + lambda * D_Z(Q_Z, P_Z)`, where the penalty
    compares the aggregate posterior `Q_Z` (the codes of a batch) with the
    prior `P_Z`, unlike a VAE, which pulls every `q(z|x)` to the prior.

    - `penalty="mmd"`: `D_Z` is the unbiased MMD^2 estimate between the
      batch's codes and as many prior samples
      (`keras_deepad.losses.mmd`), with the inverse multiquadratic kernel
      `C / (C + ||z - z'||^2)` summed over `C = 2 * latent_dim * var(prior)
      * s`, `s` in `mmd_scales` (or `kernel="rbf"`). One optimizer.
    - `penalty="gan"`: a latent discriminator `D` (logits) is trained with
      `lambda * (BCE(D(z_prior), 1) + BCE(D(E(x)), 0))` plus the R1 penalty
      `gradient_penalty / 2 * mean ||grad_z logit D(z_prior)||^2` by
      `discriminator_optimizer` (default Adam(1e-3, beta_1=0.5)), and the
      encoder/decoder minimise `c + lambda * BCE(D(E(x)), 1)` (the
      non-saturating generator loss) with `optimizer` (default Adam(5e-3)).
      The reference code uses no R1 penalty and an adversary learning rate
      of 5e-4; without R1 the latent game oscillated here (see `AAE`).

    The cost `c` is the mean (not the sum) over features of the squared
    error: the reference setting `0.05 * sum (x - x_hat)^2`, `lambda = 10`
    on MNIST corresponds to `lambda = 10 / (0.05 * 784) ~ 0.26` here.

    The encoder is deterministic by default (`stochastic_encoder=False`).
    Under `tf.distribute`, every loss is divided by the number of replicas
    and each replica estimates the MMD on its share of the batch.
    Metrics: `loss` (the whole objective), `reconstruction_loss`, `penalty`
    (MMD^2, or the generator BCE for GAN) and, for GAN,
    `discriminator_loss` and `discriminator_accuracy`.

    Args:
        penalty: `"mmd"` or `"gan"`.
        lambda_: weight of the penalty (`lambda`, default 1).
        kernel: MMD kernel, `"imq"` or `"rbf"`.
        mmd_scales: multiples of `C_base = 2 * latent_dim * var(prior)`.
        latent_dim, prior, architecture, hidden_units, activation,
            conv_filters, kernel_size, output_activation, dropout,
            stochastic_encoder, logvar_range, mc_samples,
            reconstruction_loss, discriminator_units, score_weight,
            gradient_penalty, encoder, decoder, discriminator: as in `AAE`
            (a discriminator only with `penalty="gan"`).
        percentile_loss: `None` (off), `True` (q = 0.95) or q in (0, 1):
            drop the samples at or above the batch's q-quantile of the
            reconstruction error (see `ReconstructionDetector`).
        normalization: see `AnomalyDetector` (default `"standard"`).
        score_method: `"hybrid_knn"` (default), `"hybrid"`, `"reconstruction"`,
            `"reconstruction_sampled"`, `"latent"`, `"jacodeco"`, and for
            `penalty="gan"` also `"discriminator"` and `"combined"`.
        seed: seed of the prior draws and the encoder noise.

    Example:
        >>> model = WAE(penalty="mmd", latent_dim=4, lambda_=1.0)
        >>> model.fit(x_train, epochs=50, batch_size=64)
        >>> scores = model.score(x_test)

    Reference:
        Tolstikhin, Bousquet, Gelly, Schölkopf, "Wasserstein Auto-Encoders",
        ICLR 2018.
    """

    #: A WAE may train a latent discriminator (`penalty="gan"`); with MMD it has none.
    uses_discriminator = Declaration(True)
    extra_optimizers = Declaration(
        {"discriminator_optimizer": {"learning_rate": 1e-3, "beta_1": 0.5}}
    )

    def narrow_uses_discriminator(self, declared):
        return declared and self.penalty == "gan"

    def narrow_extra_optimizers(self, declared):
        return declared if self.penalty == "gan" else {}

    def __init__(
        self,
        penalty="mmd",
        lambda_=1.0,
        kernel="imq",
        mmd_scales=MMD_SCALES,
        latent_dim=32,
        prior="normal",
        gradient_penalty=10.0,
        percentile_loss=None,
        **kwargs,
    ):
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}. Received: penalty={penalty!r}")
        # First: the penalty narrows what the shared constructor reads (uses_discriminator).
        self.penalty = penalty
        super().__init__(
            latent_dim=latent_dim,
            prior=prior,
            gradient_penalty=gradient_penalty,
            percentile_loss=percentile_loss,
            **kwargs,
        )
        if float(lambda_) < 0:
            raise ValueError(f"lambda_ must be >= 0. Received: lambda_={lambda_}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}. Received: kernel={kernel!r}")
        scales = tuple(float(s) for s in mmd_scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"mmd_scales must be positive numbers. Received: {mmd_scales}")
        self.lambda_ = check_number("lambda_", lambda_, low=0)
        self.kernel = kernel
        self.mmd_scales = scales
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.discriminator_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="discriminator_accuracy")

    def extra_trackers(self):
        trackers = [self.reconstruction_tracker, self.penalty_tracker]
        if self.penalty == "gan":
            trackers += [self.discriminator_tracker, self.accuracy_tracker]
        return trackers

    def optimizer_variables(self):
        variables = {"optimizer": self.autoencoder_variables()}
        if self.penalty == "gan":
            variables["discriminator_optimizer"] = self.discriminator.trainable_variables
        return variables

    def mmd_penalty(self, z):
        """Unbiased MMD^2 between the codes `z` and as many prior samples.

        A statistic of the whole batch: under `tf.distribute` every replica
        computes it over the gathered global batch of codes and the prior
        samples drawn for it (gradients reach each replica's own codes).
        """
        (z,), rows = gather_batch(z)
        return mmd(
            z,
            self.prior.sample(rows, self.latent_dim, seed=self.prior_seed),
            kernel=self.kernel,
            variance=self.prior.variance(self.latent_dim),
            scales=self.mmd_scales,
        )

    def _objective_terms(self, x_scaled, training, sample_weight=None):
        z, x_hat, per_sample, rec_loss = self.reconstruction_terms(
            x_scaled, training=training, sample_weight=sample_weight
        )
        if self.penalty == "mmd":
            # A statistic of the whole batch: scaled by the batch's mean weight.
            penalty = self.mmd_penalty(z) * batch_weight(sample_weight)
        else:
            penalty = weighted_mean(
                generator_nll(self.discriminator(z, training=training)), sample_weight
            )
        return z, x_hat, per_sample, rec_loss, penalty, rec_loss + self.lambda_ * penalty

    def _record(self, loss, per_sample, penalty, d_loss=None, accuracy=None):
        parts = {"reconstruction_loss": per_sample, "penalty": penalty}
        if d_loss is not None:
            parts.update(discriminator_loss=d_loss, discriminator_accuracy=accuracy)
        return self._update_trackers(loss, parts)

    def train_step(self, data):
        x_scaled, sample_weight = self._unpack(data)
        # Every loss is scaled (replicas, mixed precision) inside its tape.
        ae_vars = self.autoencoder_variables()
        with tf.GradientTape() as tape:
            z, x_hat, per_sample, _, penalty, loss = self._objective_terms(
                x_scaled, True, sample_weight
            )
            scaled = self.scale_for_gradients(loss)
        self.optimizer.apply(tape.gradient(scaled, ae_vars), ae_vars)
        self._track_errors(x_scaled, x_hat)
        if self.penalty == "mmd":
            self.update_compiled_metrics(data)
            return self._record(loss, per_sample, penalty)

        # keras_deepad.losses.adversarial_terms halves the sum of the two cross-entropies.
        d_loss, accuracy = self.discriminator_step(
            self.sample_prior(ops.shape(x_scaled)[0]), z, weight=2.0 * self.lambda_
        )
        self.update_compiled_metrics(data)
        return self._record(loss, per_sample, penalty, d_loss, accuracy)

    def test_step(self, data):
        x_scaled, sample_weight = self._unpack(data)
        z, _, per_sample, _, penalty, loss = self._objective_terms(x_scaled, False, sample_weight)
        if self.penalty == "mmd":
            self.update_compiled_metrics(data)
            return self._record(loss, per_sample, penalty)
        d_loss, accuracy = adversarial_terms(
            self.discriminator(self.sample_prior(ops.shape(x_scaled)[0])), self.discriminator(z)
        )
        self.update_compiled_metrics(data)
        return self._record(loss, per_sample, penalty, 2.0 * self.lambda_ * d_loss, accuracy)

    def get_config(self):
        config = super().get_config()
        config.update(
            penalty=self.penalty,
            lambda_=self.lambda_,
            kernel=self.kernel,
            mmd_scales=list(self.mmd_scales),
        )
        return config
