"""One-class neural network (Chalapathy, Menon, Chawla 2018)."""

import keras
import numpy as np
from keras import ops

from keras_deepad.losses.regularization import weight_penalty
from keras_deepad.models._export_hooks import EMBEDDING_HEADROOM, EdgeHead, floats
from keras_deepad.models.base import AnomalyDetector, FittedStateCallback
from keras_deepad.networks.precision import float32_model
from keras_deepad.utils.validation import check_number

ACTIVATIONS = ("cos", "linear", "sigmoid")
#: `bandwidth="auto"` (the default) sets the cosine features' length scale to this fraction
#: of the standard deviation of the normalised training inputs (all entries together): the
#: RBF kernel is `exp(-2 ||x - y||^2 / (D var))`, twice the `gamma` of scikit-learn's
#: `OneClassSVM(gamma="scale")`. See `OCNN` for the measurements that chose it.
AUTO_BANDWIDTH_FRACTION = 0.5
#: Adam's learning rate when `fit` compiles. `w` starts at the mean of the training features
#: (see `OCNN`), close to its optimum, so a small rate refines it: with 1e-2 the steps
#: outweigh what is left to gain (25 one-class class tasks, started at the mean, 50 epochs:
#: AUROC 0.769 at 1e-2 against 0.853 at 1e-3).
DEFAULT_LEARNING_RATE = 1e-3


@keras.saving.register_keras_serializable(package="keras_deepad")
class OCNN(AnomalyDetector):
    """One-class neural network: a one-class SVM objective on a neural feature map.

    With hidden features `h(x) = g(V x)` and output `y(x) = <w, h(x)>`,
    training minimises

    `0.5 ||w||^2 + 0.5 ||V||_F^2 + (1/nu) mean(max(0, r - y(x))) - r`.

    `r` is not a gradient variable: it is set to the `nu`-quantile of `y`
    over the whole training set (inference mode) at the start of `fit` and
    after every epoch, so about a fraction `nu` of the training data lies on
    the wrong side of the boundary. The hinge really clips: samples with
    `y >= r` contribute exactly zero loss and zero gradient through it.

    `w` starts, at the first `fit` (while `r` has never been set), at the
    mean of the training features `g(V x)` (weighted by `sample_weight` if
    given; kept as drawn if every weight is 0): the dual one-class SVM
    point with equal weight on every training sample, feasible for every
    `nu` and, with cosine features, a kernel density estimate. Gradient
    steps then move it towards the `nu`-solution. From a random `w`, 50
    epochs leave it far from the optimum. On 25 one-class class tasks
    (`benchmarks/class_tasks.py`: wine, breast cancer, vehicle, sonar, dna,
    vowels; seed 1, bandwidth `"auto"`, 256 features) mean AUROC: random
    `w` at Adam 1e-2, 0.767 after 50 epochs and 0.814 after 300; the exact
    optimum for the same features (scikit-learn's linear `OneClassSVM` on
    them), 0.844; the mean itself, untrained, 0.829; started at the mean,
    50 epochs at 1e-3, 0.853. Over all 61 one-class tasks: 0.854 from a
    random `w`, 0.901 from the mean.

    The paper's decision function is `S(x) = y(x) - r` with `S >= 0` normal;
    keras_deepad's anomaly score is its negative, `r - y(x)` (higher = more
    anomalous; positive = outside the boundary).

    `g` (`activation`):

    - `"cos"` (default), the feature map of the authors' later reference code:
      random Fourier features `g(z) = cos(z + b) / sqrt(hidden_units)` with a
      phase `b` uniform in `[0, 2 pi)`. `V` is drawn `N(0, 1 / (bandwidth^2 D))`
      (`D` input features), so `<g(Vx), g(Vy)>` approximates half the RBF
      kernel `exp(-||x - y||^2 / (2 bandwidth^2 D))` on the normalised inputs
      and OC-NN is a kernel one-class SVM: it finds anomalies on every side
      of the data. `V` and `b` are fixed by default (only `w` is trained; the
      reference code does not train `V` either). With `bandwidth="auto"`
      `V` is drawn for bandwidth 1 and divided, at the first `fit`, by the
      bandwidth the training data gives.
    - `"linear"`, `"sigmoid"`: the paper's `g`, with `V` trained. Know their
      geometry: like a linear one-class SVM through the origin, they separate
      the data from the origin of `g(Vx)`, so samples beyond the normal data
      in the direction of `w` score as *more* normal. They find anomalies
      whose features fall below the normal range (drop-outs, missing
      activity) and miss those on the far side or on every side.

    Measured AUROC (seed 0, class defaults but nu 0.1, 30 epochs, batch 64; `"cos"`
    with fixed / trained `V`, then `"linear"`, `"sigmoid"`): breast cancer
    (benign normal) 0.967 / 0.963, 0.019, 0.023; wine (class 1 normal)
    0.887 / 0.872, 0.209, 0.203; digits one-class, mean over the 10 digits
    0.961 / 0.880, 0.808, 0.816; a 2-D Gaussian with anomalies on a ring
    around it 1.000 / 0.999, 0.474, 0.473. The linear and sigmoid figures
    below 0.5 are the direction problem: there the anomalies lie beyond the
    normal data. Trained cosine features were at most marginally better
    (wine classes 0 and 2, by under 0.01) and sometimes much worse (breast
    cancer, seeds 0-2: 0.963 / 0.946 / 0.832 against 0.967 / 0.951 / 0.964
    fixed): the `||V||^2` penalty shrinks `V` (its standard deviation fell
    from 0.73 to 0.20 in 30 epochs), widening the kernel towards the linear
    case; hence fixed random features by default.

    Unless compiled first, `fit` uses Adam with learning rate 1e-3
    (`DEFAULT_LEARNING_RATE`): `w` starts near its optimum.

    The defaults (`bandwidth="auto"`, 1024 features, the mean start, 1e-3)
    were chosen on the tabular suite (seven real sets, seeds 1-3) and the
    61 one-class class tasks together; mean AUROC suite / class tasks:
    0.671 / 0.816 with the former defaults (bandwidth 0.25, 256 features,
    random `w`, 1e-2), 0.674 / 0.837 with only the mean start and 1e-3,
    0.651 / 0.901 with `"auto"` too, 0.693 / 0.919 with 1024 features as
    well (2048 features: 0.681 / 0.919; bandwidth 0.71 or 0.41 times the
    standard deviation instead of 0.5: 0.681 / 0.885, 0.680 / 0.921; with
    256 features, `nu` 0.9: 0.673 / 0.886).
    scikit-learn's `OneClassSVM` scores 0.681 / 0.897 there.

    Args:
        hidden_units: size of the hidden layer `V` (ignored with `encoder`):
            with `"cos"`, the number of random features. The default 1024
            approximates the data-scaled kernel of `bandwidth="auto"`, which
            is narrower than a fixed 0.25 on most data and so needs more
            features than the former 256 (see above).
        activation: `g`: `"cos"`, `"linear"` or `"sigmoid"`.
        nu: in (0, 1): the quantile defining `r` and the hinge weight `1/nu`.
            The default 0.5 (r = the median output, half of the training data
            shaping `w`) ranks best on contaminated training data: mean AUROC
            0.692 against 0.633 with 0.1 over the tabular suite
            (`benchmarks/tune.py`, seven real sets, seeds 1-3). For a
            decision threshold use `calibrate`, not `r`.
        bandwidth: length scale of the `"cos"` features' RBF kernel, in units
            of `sqrt(D)` normalised input distance, or `"auto"` (default):
            `AUTO_BANDWIDTH_FRACTION` (0.5) times the standard deviation of
            the normalised training inputs (all entries together), set at the
            first `fit`; from then on the config holds that number. Ignored
            by the other `g` and with `encoder`.
        trainable_features: whether `V` is trained. `None` (default): fixed
            for the built-in `"cos"` features, trained for `"linear"` and
            `"sigmoid"` (the paper); a given `encoder` keeps its own
            `trainable` flag. A fixed `V` still enters the objective, as a
            constant.
        encoder: optional `keras.Model` used as `V` (e.g. the encoder of a
            pretrained autoencoder, see `from_autoencoder`); it is fine-tuned
            (unless frozen or `trainable_features=False`), and all its kernels
            enter `0.5 ||V||_F^2`. With `"cos"` its outputs, plus `b`, are the
            cosines' arguments (`bandwidth` does not apply).
        normalization: see `AnomalyDetector` (default `"minmax"`).
        score_method: `"decision"` (`r - y(x)`), the only one.
        seed: seed of the weight initialisers, the random features `V` and
            the phase `b` (all saved weights).

    Example:
        >>> model = OCNN(hidden_units=1024, nu=0.5)   # cosine random features
        >>> model.fit(x_train, epochs=30, batch_size=64)
        >>> scores = model.score(x_test)   # r - <w, g(Vx)>

    Reference:
        Chalapathy, Menon, Chawla, "Anomaly Detection using One-Class Neural
        Networks", arXiv:1802.06360, 2018; reference code
        github.com/raghavchalapathy/oc-nn, `src/models/ocnn.py`.
    """

    score_methods = ("decision",)
    #: `bandwidth` only scales the initial `V` (a variable): models that differ in it (as
    #: `"auto"` resolves to each data's own) share one traced training loop.
    config_outside_trace = ("bandwidth",)
    #: Integrated gradients for `feature_scores`: far from the data the kernel score is
    #: flat (every cosine feature averages out), so the gradient at `x` alone misses the
    #: feature that took `x` there.
    attribution_steps = 32
    default_score_method = "decision"
    default_learning_rate = DEFAULT_LEARNING_RATE

    def __init__(
        self,
        hidden_units=1024,
        activation="cos",
        nu=0.5,
        bandwidth="auto",
        trainable_features=None,
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
        if not isinstance(bandwidth, str) and not float(bandwidth) > 0.0:
            raise ValueError(
                f'bandwidth must be positive or "auto". Received: bandwidth={bandwidth!r}'
            )
        if trainable_features not in (None, True, False):
            raise ValueError(
                "trainable_features must be None, True or False. "
                f"Received: trainable_features={trainable_features!r}"
            )
        if encoder is not None and not isinstance(encoder, keras.Model):
            raise ValueError(f"encoder must be a keras.Model. Received: {type(encoder)}")
        self.activation = activation
        self.nu = check_number("nu", nu, low=0, high=1, low_open=True)
        if isinstance(bandwidth, str):
            if bandwidth != "auto":
                raise ValueError(
                    f'bandwidth must be positive or "auto". Received: bandwidth={bandwidth!r}'
                )
            self.bandwidth = bandwidth
        else:
            self.bandwidth = check_number("bandwidth", bandwidth, low=0, low_open=True)
        self.trainable_features = trainable_features
        self.encoder = encoder
        self._user_encoder = encoder is not None
        self.hidden_units = (
            int(encoder.output.shape[-1]) if encoder is not None else int(hidden_units)
        )
        self.hinge_tracker = keras.metrics.Mean(name="hinge")

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

    @property
    def features_trainable(self) -> bool:
        """Whether `V` is trained: `trainable_features`, else a given encoder's own `trainable`
        flag, else trained for linear/sigmoid `g` (the paper) and fixed for `"cos"`."""
        if self.trainable_features is not None:
            return self.trainable_features
        if self._user_encoder:
            return bool(self.encoder.trainable)
        return self.activation != "cos"

    def _seed(self, offset):
        return None if self.seed is None else int(self.seed) + offset

    def build_networks(self, feature_shape):
        if not self._user_encoder:
            if self.activation == "cos":
                # V_ij ~ N(0, 1 / (bandwidth^2 D)): the RBF kernel
                # exp(-||x - y||^2 / (2 bandwidth^2 D)) on the normalised inputs.
                bandwidth = 1.0 if self.bandwidth == "auto" else self.bandwidth
                stddev = 1.0 / (bandwidth * np.sqrt(np.prod(feature_shape)))
                initializer = keras.initializers.RandomNormal(stddev=stddev, seed=self._seed(1))
            else:
                initializer = keras.initializers.GlorotUniform(seed=self.seed)
            inputs = keras.Input(shape=feature_shape, name="x")
            h = keras.layers.Flatten()(inputs) if len(feature_shape) > 1 else inputs
            h = keras.layers.Dense(
                self.hidden_units, use_bias=False, kernel_initializer=initializer, name="V"
            )(h)
            self.encoder = float32_model(inputs, h, name="encoder")
        if self.trainable_features is not None or not self._user_encoder:
            self.encoder.trainable = self.features_trainable
        if self.activation == "cos":
            self.phase = self.add_weight(
                shape=(self.hidden_units,),
                initializer=keras.initializers.RandomUniform(0.0, 2.0 * np.pi, seed=self._seed(2)),
                trainable=False,
                name="phase",
            )
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

    @property
    def feature_scale(self) -> float:
        """The factor `1 / sqrt(hidden_units)` of the cosine features."""
        return float(1.0 / np.sqrt(self.hidden_units))

    def preactivation_normalised(self, x_norm, training=False):
        """`V x` (`V x + b` for `"cos"`) for a batch normalised by the model's scaler."""
        h = self.encoder(x_norm, training=training)
        return h + self.phase if self.activation == "cos" else h

    def embed_normalised(self, x_norm, training=False):
        """`g(V x)` for a batch normalised by the model's scaler."""
        h = self.preactivation_normalised(x_norm, training=training)
        if self.activation == "cos":
            return ops.cos(h) * self.feature_scale
        return ops.sigmoid(h) if self.activation == "sigmoid" else h

    def compute_embedding(self, x, training=False):
        """`g(V x)` for a raw input batch."""
        return self.embed_normalised(self.scaler(x), training=training)

    def _outputs(self, x, training=False):
        return ops.matmul(self.compute_embedding(x, training=training), self.output_weights)

    # --------------------------------------------------------------- exports
    def export_endpoints(self):
        """An `embed` signature: the features `g(V x)` on raw input."""
        return {"embed": lambda x: {"embedding": self.compute_embedding(x)}}

    def export_edge_head(self, method):
        """The host takes `r - <w, g(V x)>`.

        Linear and sigmoid `g`: the head is `g(V x)` of the normalised input.
        Cosine features: the head is the phase `V x + b` and the host takes the
        cosine (`cosine_margin`), since TFLite has no integer cosine (it would
        run in float between a dequantise and a quantise).
        """
        scoring = {
            "weights": floats(self.output_weights),
            "offset": float(ops.convert_to_numpy(self.rho)),
        }
        if self.activation == "cos":
            return EdgeHead(
                fn=lambda x_norm: {"phase": self.preactivation_normalised(x_norm)},
                scoring={
                    "kind": "cosine_margin",
                    "output": "phase",
                    "scale": self.feature_scale,
                    **scoring,
                },
                calibration_headroom=EMBEDDING_HEADROOM,
            )
        return EdgeHead(
            fn=lambda x_norm: {"embedding": self.embed_normalised(x_norm)},
            scoring={"kind": "linear_margin", "output": "embedding", **scoring},
            calibration_headroom=EMBEDDING_HEADROOM,
        )

    def network_graph_outputs(self, x):
        """The features `g(V x)` and the output `<w, g(V x)>`."""
        features = self.compute_embedding(x)
        return {"features": features, "output": ops.matmul(features, self.output_weights)}

    def outputs(self, x, batch_size=None):
        """`y(x) = <w, g(Vx)>`, shape `(n_samples,)` (higher = more normal)."""
        self.require_built("outputs")
        fn = self.traced_function(("outputs",), self._outputs)
        return self.run_batched(x, fn, batch_size, ())

    def embed(self, x, batch_size=None):
        """Hidden features `g(V x)`, shape `(n_samples, hidden_units)`."""
        self.require_built("embed")
        fn = self.traced_function(("embed",), self.compute_embedding)
        return self.run_batched(x, fn, batch_size, (self.hidden_units,))

    # ------------------------------------------------------- fitted state
    def update_r(self, x):
        """Sets `r` to the `nu`-quantile of `y(x)` over `x` and returns it."""
        r = float(np.quantile(self.outputs(x).astype(np.float64), self.nu))
        self.rho.assign(r)
        return r

    @property
    def uses_auto_bandwidth(self) -> bool:
        """Whether `fit` still has to set the cosine features' bandwidth from its data."""
        return self.bandwidth == "auto" and self.activation == "cos" and not self._user_encoder

    def resolve_bandwidth(self, x):
        """Sets `bandwidth="auto"` from `x` and scales `V` to it; returns the bandwidth.

        The bandwidth is `AUTO_BANDWIDTH_FRACTION` times the standard
        deviation of all entries of the normalised `x` (1.0 if `x` is
        constant). `V`, drawn for bandwidth 1, is divided by it.
        """
        self.require_built("resolve_bandwidth")
        if not self.uses_auto_bandwidth:
            raise ValueError(
                'resolve_bandwidth needs bandwidth="auto" with the built-in cosine features. '
                f"Received: bandwidth={self.bandwidth!r}, activation={self.activation!r}"
            )
        fn = self.traced_function(("input_moments",), self._input_moments)
        moments = self.run_batched(x, fn, None, (2,)).astype(np.float64)
        count = len(moments) * int(np.prod(self.feature_shape))
        mean, mean_square = moments.sum(axis=0) / count
        std = float(np.sqrt(max(mean_square - mean * mean, 0.0)))
        bandwidth = AUTO_BANDWIDTH_FRACTION * std if std > 1e-6 else 1.0
        kernel = self.encoder.get_layer("V").kernel
        kernel.assign(kernel / bandwidth)
        self.bandwidth = bandwidth
        return bandwidth

    def _input_moments(self, x):
        """Per row: the sum and the sum of squares of the normalised input's entries."""
        flat = ops.reshape(self.scaler(x), (ops.shape(x)[0], -1))
        return ops.stack([ops.sum(flat, axis=1), ops.sum(flat * flat, axis=1)], axis=1)

    def start_at_feature_mean(self, x, sample_weight=None):
        """Sets `w` to the (weighted) mean of `g(V x)` over `x` and returns it.

        With every weight 0 no sample counts: `w` is left as it is (and returned).
        """
        weights = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        if weights is not None and not weights.sum() > 0:
            return ops.convert_to_numpy(self.output_weights)
        w = np.average(self.embed(x).astype(np.float64), axis=0, weights=weights)
        self.output_weights.assign(w.astype(np.float32))
        return w

    def prepare_training(self, x, batch_size=None, verbose="auto", sample_weight=None):
        if self.uses_auto_bandwidth:
            self.resolve_bandwidth(x)
        if float(ops.convert_to_numpy(self.rho)) == 0.0:  # r never set: the first fit
            self.start_at_feature_mean(x, sample_weight=sample_weight)
        self.update_r(x)
        return [FittedStateCallback(self, x)]

    def update_fitted_state(self, epoch, x):
        """r from `x` after every epoch (the paper's rule)."""
        self.update_r(x)

    # ---------------------------------------------------------------- train
    def per_sample_loss(self, x, training=False):
        y = self._outputs(x, training=training)
        hinge = ops.maximum(self.rho - y, 0.0)
        # Fixed V adds a constant: the value stays the paper's objective.
        penalty = 0.5 * ops.sum(ops.square(self.output_weights)) + 0.5 * weight_penalty(
            self.encoder.weights
        )
        return penalty + hinge / self.nu - self.rho, {"hinge": hinge}

    def extra_trackers(self):
        return [self.hinge_tracker]

    def compute_scores(self, x, method):
        return self.rho - self._outputs(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units,
            activation=self.activation,
            nu=self.nu,
            bandwidth=self.bandwidth,
            trainable_features=self.trainable_features,
        )
        if self._user_encoder:
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config
