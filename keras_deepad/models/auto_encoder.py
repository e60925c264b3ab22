import math

import keras
import numpy as np
from keras import ops

from keras_deepad.layers.code_density import CodeDensity
from keras_deepad.losses import feature_errors, percentile_mean, reconstruction_error
from keras_deepad.models._export_hooks import (
    EMBEDDING_HEADROOM,
    RECONSTRUCTION_ERROR_METHODS,
    EdgeHead,
    floats,
)
from keras_deepad.models.base import AnomalyDetector, FittedStateCallback
from keras_deepad.networks.spec import (
    ARCHITECTURES,
    COMMON_ARGUMENTS,
    SEED_ARCHITECTURE,
    AutoEncoderSpec,
)
from keras_deepad.utils.validation import check_number

#: The percentile-loss quantile used when the option is switched on with `True`
#: (the value of a public re-implementation; the paper's could not be verified).
DEFAULT_PERCENTILE = 0.95
#: Rows per eager pass when `fit_code_density` reads the training data.
CODE_DENSITY_BATCH = 16384


def check_percentile(percentile_loss):
    """`None`/`False` (off), `True` (`DEFAULT_PERCENTILE`) or a quantile in (0, 1)."""
    if percentile_loss is None or percentile_loss is False:
        return None
    if percentile_loss is True:
        return DEFAULT_PERCENTILE
    try:
        q = float(percentile_loss)
    except (TypeError, ValueError):
        q = math.nan
    if not 0.0 < q < 1.0:
        raise ValueError(
            "percentile_loss must be None (off), True (q=0.95) or a quantile q in (0, 1). "
            f"Received: percentile_loss={percentile_loss!r}"
        )
    return q


def _spec_property(name):
    return property(
        lambda self: getattr(self.network_spec, name),
        doc=f"`{name}` of the detector's `network_spec` (see `AutoEncoderSpec`).",
    )


class ReconstructionDetector(AnomalyDetector):
    """Shared parts of detectors that score by reconstructing their input.

    Subclasses define `reconstruct_normalised(x_scaled, training=False)`;
    the class adds reconstruction in input units (`call`, `reconstruct`),
    per-feature squared errors in normalised units (`feature_scores`),
    optional user-supplied `encoder`/`decoder` networks and the percentile
    loss for training on contaminated data. Subclasses forward
    `percentile_loss` (explicitly or through `**kwargs`) and reduce their
    per-sample loss with `self.reduce_loss` (the base `train_step` does).

    Args:
        percentile_loss: `None` (off, the default), `True` (q = 0.95) or a
            quantile q in (0, 1). When set, within each training batch the
            samples whose per-sample loss is at or above the batch's
            q-quantile get zero weight and the loss is the mean over the
            kept samples (Merrill & Eskandarian 2020), so likely anomalies
            in contaminated training data do not shape the model. The
            per-sample loss is the detector's whole objective (for a VAE the
            reconstruction term plus beta times KL). Under `tf.distribute`
            the quantile is taken per replica over its share of the batch.
            `evaluate` reports the same trimmed loss; scores are unchanged.
        **kwargs: passed to `AnomalyDetector`.

    Reference:
        Merrill & Eskandarian, "Modified Autoencoder Training and Scoring for
        Robust Unsupervised Anomaly Detection in Deep Learning", IEEE Access
        8, 2020.
    """

    required_methods = (*AnomalyDetector.required_methods, "reconstruct_normalised")
    #: The architecture arguments the family's constructor takes: fields of
    #: `keras_deepad.networks.AutoEncoderSpec`, read as attributes of the
    #: detector (`model.hidden_units`) and stored by `get_config` in this order.
    network_arguments: tuple[str, ...] = ()
    #: The `architecture` values the family accepts.
    architectures: tuple[str, ...] = ARCHITECTURES

    def __init__(self, percentile_loss=None, **kwargs):
        super().__init__(**kwargs)
        self.percentile_loss = check_percentile(percentile_loss)
        # Built in `build_networks` unless a family passes its own (`_set_networks`).
        self._set_networks(None, None)

    def set_network_spec(self, **arguments):
        """Checks the family's architecture arguments and keeps them as `network_spec`.

        Families call it from their constructor with the `network_arguments`
        they take; `build_networks` builds from it (`network_spec.build`)
        unless the user supplied `encoder` and `decoder`.
        """
        if set(arguments) != set(self.network_arguments):
            raise TypeError(
                f"{type(self).__name__} declares the network arguments {self.network_arguments}; "
                f"received {tuple(arguments)}."
            )
        self.network_spec = AutoEncoderSpec.checked(
            architectures=self.architectures,
            latent_multiple=SEED_ARCHITECTURE in self.architectures,
            owner=type(self).__name__,
            **arguments,
        )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Each declared architecture argument reads the one spec (a read-only attribute).
        for name in cls.network_arguments:
            if not isinstance(getattr(cls, name, None), property):
                setattr(cls, name, _spec_property(name))

    def reduce_loss(self, per_sample, sample_weight=None):
        """The batch mean, or the percentile-loss mean when `percentile_loss` is set."""
        if self.percentile_loss is None:
            return super().reduce_loss(per_sample, sample_weight)
        return percentile_mean(per_sample, self.percentile_loss, sample_weight)

    # ----------------------------------------------------------- hybrid score
    #: The plain reconstruction-error score method of a detector with a `"hybrid"` score:
    #: what is read during `fit` (e.g. by `CumulativeErrorScoring`), before the hybrid
    #: score's statistics exist.
    error_score_method: str | None = None

    @property
    def score_method_during_fit(self):
        """The reconstruction error while the hybrid score's statistics do not exist yet."""
        return self.error_score_method if self.score_method == "hybrid" else self.score_method

    @property
    def has_hybrid_score(self) -> bool:
        """Whether this detector offers the `"hybrid"` score (see `CodeDensity`)."""
        return "hybrid" in self.score_methods

    def build(self, input_shape):
        super().build(input_shape)
        if self.has_hybrid_score and getattr(self, "code_density", None) is None:
            zeros = ops.zeros((2, *self.feature_shape))
            code_dim = int(ops.shape(self.code_and_reconstruction(zeros)[0])[-1])
            self.code_density = CodeDensity(code_dim, name="code_density", dtype="float32")
            self.code_density.build()

    def code_and_reconstruction(self, x_scaled):
        """`(flat codes, reconstructions)` of normalised rows, what `"hybrid"` reads.

        Detectors that list `"hybrid"` in `score_methods` define it: the
        encoder's (mean) output, flattened to `(batch, code_dim)`, and its
        decoding in normalised units.
        """
        raise TypeError(f"{type(self).__name__} has no hybrid score.")

    def hybrid_parts(self, x_scaled):
        """`(mean squared errors, flat codes)` of normalised rows."""
        code, reconstruction = self.code_and_reconstruction(x_scaled)
        return reconstruction_error(x_scaled, reconstruction, "mse"), code

    def hybrid_score(self, x_scaled):
        """The `"hybrid"` score of normalised rows (graph code; see `CodeDensity`)."""
        errors, codes = self.hybrid_parts(x_scaled)
        return self.code_density(errors, codes)

    def check_score_ready(self, method):
        """The `"hybrid"` score needs the code statistics `fit` sets when training ends."""
        if method == "hybrid" and not self.code_density.is_fitted:
            raise ValueError(
                f"the 'hybrid' score of this {type(self).__name__} needs the statistics of its "
                "training codes, which fit() sets when training ends; this model has none "
                "(saved before they existed, or never fitted). Call "
                "fit_code_density(x_train) once, or score with another method "
                f"({[m for m in self.score_methods if m != 'hybrid']})."
            )

    def fit_code_density(self, x, batch_size=None):
        """Sets the `"hybrid"` score's statistics from training data `x` (`fit` does this).

        `x` is what `score` accepts (raw units); in-memory arrays are read
        `batch_size` rows at a time (default 16384). Returns `self`.
        """
        self.require_built("fit_code_density")
        if not self.has_hybrid_score:
            raise TypeError(f"{type(self).__name__} has no hybrid score.")

        def parts(t):
            errors, codes = self.hybrid_parts(self.scaler(t))
            return ops.concatenate([ops.expand_dims(errors, -1), codes], axis=-1)

        # One pass, run eagerly in large batches: tracing a function used once per fit would
        # cost more than it saves (a small table's fit ends here).
        batch_size = batch_size or CODE_DENSITY_BATCH
        width = 1 + self.code_density.code_dim
        values = self.run_batched(x, parts, batch_size, (width,))
        finite = np.isfinite(values).all(axis=1)
        if not finite.any():
            # A diverged network (fit(check_finite=False)): NaN statistics keep every hybrid
            # score NaN, so using the model raises the NaN-weights error as for other scores.
            self.code_density.invalidate()
            return self
        self.code_density.fit(values[finite, 1:], values[finite, 0])
        return self

    def prepare_training(self, x, batch_size=None, verbose="auto", sample_weight=None):
        """The hybrid score's statistics are taken from `x` when training ends."""
        return [FittedStateCallback(self, x)] if self.has_hybrid_score else []

    def finish_training(self, x):
        """Fits the `"hybrid"` score's code statistics on the training data."""
        if self.has_hybrid_score:
            self.fit_code_density(x)

    def _set_networks(self, encoder, decoder):
        if (encoder is None) != (decoder is None):
            raise ValueError("pass both encoder and decoder, or neither.")
        self.encoder = encoder
        self.decoder = decoder
        self._user_networks = encoder is not None

    def call(self, x, training=False):
        return self.scaler.inverse(self.reconstruct_normalised(self.scaler(x)))

    def compute_feature_scores(self, x):
        x_scaled = self.scaler(x)
        return feature_errors(x_scaled, self.reconstruct_normalised(x_scaled), "squared")

    def feature_scores(self, x, batch_size=None):
        """Per-feature squared errors (normalised units), same shape as `x`."""
        self.require_built("feature_scores")
        fn = self.traced_function(("feature_scores",), self.compute_feature_scores)
        return self.run_batched(x, fn, batch_size, self.feature_shape)

    # --------------------------------------------------------------- exports
    def export_endpoints(self):
        """`reconstruct` (input units) and `feature_scores` signatures on raw input."""
        return {
            "reconstruct": lambda x: {"reconstruction": self(x, training=False)},
            "feature_scores": lambda x: {"feature_scores": self.compute_feature_scores(x)},
        }

    def export_edge_head(self, method):
        """The reconstruction in normalised units (the host takes the error).

        For `"hybrid"` also the code, and the host adds its Mahalanobis
        distance (`CodeDensity`); `None` for a score that is not one of
        these (a subclass's own score methods).
        """
        if method == "hybrid":
            return self._hybrid_edge_head()
        error = RECONSTRUCTION_ERROR_METHODS.get(method)
        if error is None:
            return None
        return EdgeHead(
            fn=lambda x_norm: {"reconstruction": self.reconstruct_normalised(x_norm)},
            scoring={"kind": "reconstruction_error", "error": error, "output": "reconstruction"},
        )

    def _hybrid_edge_head(self):
        density = self.code_density

        def head(x_norm):
            code, reconstruction = self.code_and_reconstruction(x_norm)
            return {"reconstruction": reconstruction, "code": code}

        return EdgeHead(
            fn=head,
            scoring={
                "kind": "hybrid",
                "output": "reconstruction",
                "code_output": "code",
                "mean": floats(density.mean),
                "precision": floats(ops.reshape(density.precision, (-1,))),
                "log_stats": floats(density.log_stats),
            },
            # The code grows with the anomaly: clipping it to the normal range would hide some.
            calibration_headroom=EMBEDDING_HEADROOM,
        )

    def network_graph_outputs(self, x):
        """The reconstruction (normalised units) of the encoder and decoder."""
        return {"reconstruction": self.reconstruct_normalised(self.scaler(x))}

    def reconstruct(self, x, batch_size=None):
        """Reconstructions of `x` in input units, same shape as `x`."""
        self.require_built("reconstruct")
        fn = self.traced_function(("reconstruct",), lambda t: self(t, training=False))
        return self.run_batched(x, fn, batch_size, self.feature_shape)

    def get_config(self):
        config = super().get_config()
        config["percentile_loss"] = self.percentile_loss
        if self.network_arguments:
            config.update(self.network_spec.config(self.network_arguments))
        # User-supplied networks travel in the config; built ones are rebuilt from it.
        if self._user_networks:
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
            config["decoder"] = keras.saving.serialize_keras_object(self.decoder)
        return config


@keras.saving.register_keras_serializable(package="keras_deepad")
class AE(ReconstructionDetector):
    """Autoencoder scored by reconstruction error.

    Args:
        architecture: `"mlp"` (dense), `"conv"` (images `(H, W, C)`) or
            `"seed"`: the one-hidden-layer form `min ||X - f(XU)V||_F^2`
            with `f` the sigmoid and no biases.
        hidden_units: dense layer sizes of the encoder, input side first;
            the decoder mirrors them.
        latent_dim: size of the code, or a string such as `"10x"` for a
            multiple of the input size (over-complete AEs).
        activation: activation of the hidden layers.
        latent_activation: activation of the code layer (`None`: linear).
        latent_l1: L1 activity penalty on the code (sparse AEs).
        output_activation: activation of the reconstruction (`None`: linear).
        conv_filters: filters of the strided convolutions (conv only).
        kernel_size: convolution kernel size (conv only).
        dropout: dropout rate after dense hidden layers.
        loss: training error, `"mse"` or `"mae"`.
        denoising_std: standard deviation of Gaussian noise added to the
            (normalised) input during training; 0 disables denoising.
        encoder, decoder: optional user `keras.Model`s replacing the built
            networks (`encoder: x -> z`, `decoder: z -> x`).
        percentile_loss: `None` (off), `True` (q = 0.95) or q in (0, 1):
            drop the samples at or above the batch's q-quantile of the loss
            (training on contaminated data; see `ReconstructionDetector`).
        normalization: see `AnomalyDetector` (default `"standard"`).
        score_method: `"hybrid"` (the default: reconstruction error and
            the Mahalanobis distance of the code to the training codes, each
            a log standardised over the training data, added; see
            `keras_deepad.layers.CodeDensity`), `"mse"`, `"mae"` or `"max"`
            (largest absolute per-feature error).
        seed: seed of the initial weights, dropout, the denoising noise and
            the shuffle order (see `AnomalyDetector`).

    The defaults (standardised inputs, one hidden layer of 64, a 16-unit
    ReLU code, dropout 0.2) were chosen by the mean AUROC over the whole
    tabular suite (`benchmarks/tune.py`, seven real sets, seeds 1-3): 0.637
    against 0.594 for the former 64-32-8 min-max network, with a better
    worst case, and 0.682 with `compile()`'s default Adam learning rate of
    5e-3 (`default_learning_rate`). Measured again on the repeated `tf.data`
    pipeline `fit` now uses (other shuffle draws), the 32-unit code scored
    0.651 and a 16-unit one 0.679, better on five of the seven sets. On
    small tabular data the dropout, not a narrow code, is what keeps the
    network from reconstructing the anomalies too. The `"hybrid"` default
    score also sees anomalies the network reconstructs well but codes far
    from the training codes (rows out along the learned manifold rather
    than off it): on the same suite it scored 0.667 against 0.641 for the
    plain mean squared error of the same models, the AAE 0.689 against
    0.659 and the WAE 0.690 against 0.656, while one-class Fashion-MNIST
    stayed level (0.864 against 0.859 for the dense preset, 0.881 against
    0.880 for the convolutional one, five classes).

    Example:
        >>> model = AE(hidden_units=(64, 32), latent_dim=8)
        >>> model.fit(x_train, epochs=50, batch_size=64)
        >>> model.calibrate(x_train, contamination=0.05)
        >>> flags = model.predict_labels(x_test)

    Reference:
        Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with
        Neural Networks", Science 2006; Borghesi et al., "Anomaly Detection
        Using Autoencoders in High Performance Computing Systems", AAAI 2019.
    """

    score_methods = ("hybrid", "mse", "mae", "max")
    default_score_method = "hybrid"
    network_arguments = (
        *COMMON_ARGUMENTS,
        "latent_activation",
        "latent_l1",
        "output_activation",
    )
    architectures = (*ARCHITECTURES, SEED_ARCHITECTURE)
    error_score_method = "mse"
    #: A few hundred steps (50 epochs of a small table) leave Adam at 1e-3 short of a fit:
    #: 5e-3 gave 0.682 against 0.637 mean AUROC over the tabular suite.
    default_learning_rate = 5e-3

    def __init__(
        self,
        architecture="mlp",
        hidden_units=(64,),
        latent_dim=16,
        activation="relu",
        latent_activation="relu",
        latent_l1=0.0,
        output_activation=None,
        conv_filters=(32, 64),
        kernel_size=3,
        dropout=0.2,
        loss="mse",
        denoising_std=0.0,
        encoder=None,
        decoder=None,
        percentile_loss=None,
        normalization="standard",
        score_method=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            percentile_loss=percentile_loss,
            normalization=normalization,
            score_method=score_method,
            seed=seed,
            **kwargs,
        )
        if loss not in ("mse", "mae"):
            raise ValueError(f"loss must be 'mse' or 'mae'. Received: loss={loss!r}")
        if denoising_std < 0:
            raise ValueError(f"denoising_std must be >= 0. Received: denoising_std={denoising_std}")
        self.set_network_spec(
            architecture=architecture,
            hidden_units=hidden_units,
            latent_dim=latent_dim,
            activation=activation,
            latent_activation=latent_activation,
            latent_l1=latent_l1,
            output_activation=output_activation,
            conv_filters=conv_filters,
            kernel_size=kernel_size,
            dropout=dropout,
        )
        self.loss_kind = loss
        self.denoising_std = check_number("denoising_std", denoising_std, low=0)
        self._set_networks(encoder, decoder)
        self.noise_seed = keras.random.SeedGenerator(seed)

    def build_networks(self, feature_shape):
        if not self._user_networks:
            self.encoder, self.decoder = self.network_spec.build(feature_shape)

    def reconstruct_normalised(self, x_scaled, training=False):
        return self.decoder(self.encoder(x_scaled, training=training), training=training)

    def set_training_loss(self, loss):
        """`compile(loss=...)`: a Keras loss of (normalised input, reconstruction).

        A loss name (`"huber"`, `"log_cosh"`, ...), a `keras.losses.Loss`
        or a function `f(y_true, y_pred)` returning one value per sample
        (rows are flattened first). It replaces the constructor's `loss`
        in training; scores still follow `score_method`.
        """
        fn = keras.losses.get(loss)
        if fn is None or not callable(fn):
            raise ValueError(f"loss must name a Keras loss or be callable. Received: {loss!r}")
        # A Loss object's `call` is per sample; calling the object would reduce the batch.
        object.__setattr__(self, "_training_loss", fn.call if hasattr(fn, "call") else fn)

    def per_sample_loss(self, x, training=False):
        x_scaled = self.scaler(x)
        x_in = x_scaled
        if training and self.denoising_std > 0:
            x_in = x_scaled + self.denoising_std * keras.random.normal(
                ops.shape(x_scaled), seed=self.noise_seed
            )
        x_hat = self.reconstruct_normalised(x_in, training=training)
        loss_fn = getattr(self, "_training_loss", None)
        if loss_fn is not None:
            flat = lambda t: ops.reshape(ops.cast(t, "float32"), (ops.shape(t)[0], -1))  # noqa: E731
            per_sample = ops.reshape(loss_fn(flat(x_scaled), flat(x_hat)), (-1,))
            return per_sample, {}
        return reconstruction_error(x_scaled, x_hat, self.loss_kind), {}

    def compute_scores(self, x, method):
        x_scaled = self.scaler(x)
        if method == "hybrid":
            return self.hybrid_score(x_scaled)
        return reconstruction_error(x_scaled, self.reconstruct_normalised(x_scaled), method)

    def code_and_reconstruction(self, x_scaled):
        code = self.encoder(x_scaled, training=False)
        reconstruction = self.decoder(code, training=False)
        return ops.reshape(code, (ops.shape(code)[0], -1)), reconstruction

    def encode(self, x, batch_size=None):
        """Codes of `x`, shape `(n_samples, latent_dim)`."""
        self.require_built("encode")
        fn = self.traced_function(("encode",), lambda t: self.encoder(self.scaler(t)))
        return self.run_batched(x, fn, batch_size, tuple(self.encoder.output.shape[1:]))

    def get_config(self):
        config = super().get_config()
        config.update(loss=self.loss_kind, denoising_std=self.denoising_std)
        return config
