import math

import keras
from keras import ops

from keras_deepad.losses import feature_errors, reconstruction_error
from keras_deepad.models.base import AnomalyDetector
from keras_deepad.networks import build_decoder, build_encoder

ARCHITECTURES = ("mlp", "conv", "seed")


def resolve_latent_dim(latent_dim, feature_shape):
    """An int, or a string `"<k>x"` meaning k times the number of input features."""
    if isinstance(latent_dim, str):
        if not latent_dim.endswith("x"):
            raise ValueError(f"latent_dim must be an int or like '10x'. Received: {latent_dim!r}")
        return max(1, round(float(latent_dim[:-1]) * math.prod(feature_shape)))
    return int(latent_dim)


def _check_latent_dim(latent_dim):
    if isinstance(latent_dim, str):
        try:
            ok = latent_dim.endswith("x") and float(latent_dim[:-1]) > 0
        except ValueError:
            ok = False
    else:
        ok = isinstance(latent_dim, int) and latent_dim > 0
    if not ok:
        raise ValueError(
            "latent_dim must be a positive int or a multiple of the input size such as '10x'. "
            f"Received: latent_dim={latent_dim!r}"
        )


class ReconstructionDetector(AnomalyDetector):
    """Shared parts of detectors that score by reconstructing their input.

    Subclasses define `reconstruct_normalised(x_scaled, training=False)`;
    the class adds reconstruction in input units (`call`, `reconstruct`),
    per-feature squared errors in normalised units (`feature_scores`) and
    optional user-supplied `encoder`/`decoder` networks.
    """

    required_methods = (*AnomalyDetector.required_methods, "reconstruct_normalised")

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
        self._require_built("feature_scores")
        fn = self._compiled(("feature_scores",), self.compute_feature_scores)
        return self._batched(x, fn, batch_size, self.feature_shape)

    def reconstruct(self, x, batch_size=None):
        """Reconstructions of `x` in input units, same shape as `x`."""
        self._require_built("reconstruct")
        fn = self._compiled(("reconstruct",), lambda t: self(t, training=False))
        return self._batched(x, fn, batch_size, self.feature_shape)

    def get_config(self):
        config = super().get_config()
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
        normalization: see `AnomalyDetector` (default `"minmax"`).
        score_method: `"mse"`, `"mae"` or `"max"` (largest absolute
            per-feature error).
        seed: seed of the denoising noise.

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

    score_methods = ("mse", "mae", "max")
    default_score_method = "mse"

    def __init__(
        self,
        architecture="mlp",
        hidden_units=(64, 32),
        latent_dim=8,
        activation="relu",
        latent_activation=None,
        latent_l1=0.0,
        output_activation=None,
        conv_filters=(32, 64),
        kernel_size=3,
        dropout=0.0,
        loss="mse",
        denoising_std=0.0,
        encoder=None,
        decoder=None,
        normalization="minmax",
        score_method=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            normalization=normalization, score_method=score_method, seed=seed, **kwargs
        )
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}. "
                f"Received: architecture={architecture!r}"
            )
        _check_latent_dim(latent_dim)
        if loss not in ("mse", "mae"):
            raise ValueError(f"loss must be 'mse' or 'mae'. Received: loss={loss!r}")
        if denoising_std < 0:
            raise ValueError(f"denoising_std must be >= 0. Received: denoising_std={denoising_std}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.architecture = architecture
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.latent_dim = latent_dim
        self.activation = activation
        self.latent_activation = latent_activation
        self.latent_l1 = float(latent_l1)
        self.output_activation = output_activation
        self.conv_filters = tuple(int(f) for f in conv_filters)
        self.kernel_size = int(kernel_size)
        self.dropout = float(dropout)
        self.loss_kind = loss
        self.denoising_std = float(denoising_std)
        self._set_networks(encoder, decoder)
        self.noise_seed = keras.random.SeedGenerator(seed)

    def build_networks(self, feature_shape):
        if self._user_networks:
            return
        latent = resolve_latent_dim(self.latent_dim, feature_shape)
        if self.architecture == "seed":
            self.encoder = build_encoder(
                "mlp",
                feature_shape,
                latent,
                hidden_units=(),
                output_activation="sigmoid",
                use_bias=False,
            )
            self.decoder = build_decoder(
                "mlp", latent, feature_shape, hidden_units=(), use_bias=False
            )
            return
        common = {"activation": self.activation}
        if self.architecture == "mlp":
            enc_cfg = {**common, "hidden_units": self.hidden_units, "dropout": self.dropout}
            dec_cfg = {**enc_cfg, "hidden_units": self.hidden_units[::-1]}
        else:
            enc_cfg = {**common, "filters": self.conv_filters, "kernel_size": self.kernel_size}
            dec_cfg = {**enc_cfg, "filters": self.conv_filters[::-1]}
        self.encoder = build_encoder(
            self.architecture,
            feature_shape,
            latent,
            output_activation=self.latent_activation,
            output_l1=self.latent_l1,
            **enc_cfg,
        )
        self.decoder = build_decoder(
            self.architecture,
            latent,
            feature_shape,
            output_activation=self.output_activation,
            **dec_cfg,
        )

    def reconstruct_normalised(self, x_scaled, training=False):
        return self.decoder(self.encoder(x_scaled, training=training), training=training)

    def per_sample_loss(self, x, training=False):
        x_scaled = self.scaler(x)
        x_in = x_scaled
        if training and self.denoising_std > 0:
            x_in = x_scaled + self.denoising_std * keras.random.normal(
                ops.shape(x_scaled), seed=self.noise_seed
            )
        x_hat = self.reconstruct_normalised(x_in, training=training)
        return reconstruction_error(x_scaled, x_hat, self.loss_kind), {}

    def compute_scores(self, x, method):
        x_scaled = self.scaler(x)
        return reconstruction_error(x_scaled, self.reconstruct_normalised(x_scaled), method)

    def encode(self, x, batch_size=None):
        """Codes of `x`, shape `(n_samples, latent_dim)`."""
        self._require_built("encode")
        fn = self._compiled(("encode",), lambda t: self.encoder(self.scaler(t)))
        return self._batched(x, fn, batch_size, tuple(self.encoder.output.shape[1:]))

    def get_config(self):
        config = super().get_config()
        config.update(
            architecture=self.architecture,
            hidden_units=list(self.hidden_units),
            latent_dim=self.latent_dim,
            activation=self.activation,
            latent_activation=self.latent_activation,
            latent_l1=self.latent_l1,
            output_activation=self.output_activation,
            conv_filters=list(self.conv_filters),
            kernel_size=self.kernel_size,
            dropout=self.dropout,
            loss=self.loss_kind,
            denoising_std=self.denoising_std,
        )
        return config
