"""Deep Support Vector Data Description (Ruff et al., ICML 2018)."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.layers.neighbours import NeighbourBank
from keras_deepad.losses.regularization import weight_penalty
from keras_deepad.models._deep_svdd_state import (
    CENTER_EPS,
    adjust_center,
    pretrain,
    radius_quantile,
    warn_if_collapsed,
)
from keras_deepad.models._export_hooks import EMBEDDING_HEADROOM, EdgeHead, floats
from keras_deepad.models.base import AnomalyDetector, FittedStateCallback
from keras_deepad.networks.bias_free import (
    build_bias_free_conv,
    build_bias_free_mlp,
    check_bias_free,
)
from keras_deepad.utils.validation import check_array, check_number, check_units

OBJECTIVES = ("one-class", "soft-boundary")
#: Constructor arguments `get_config` stores as they are (besides the layer sizes).
_CONFIG_FIELDS = (
    "objective", "nu", "architecture", "kernel_size", "rep_dim", "batch_norm", "weight_decay",
    "pretrain_epochs", "pretrain_learning_rate", "decoder_output_activation", "warm_up_epochs",
    "collapse_tolerance", "allow_bias", "allow_bounded_activation",
)  # fmt: skip


@keras.saving.register_keras_serializable(package="keras_deepad")
class DeepSVDD(AnomalyDetector):
    """Deep SVDD: map the normal data into a small hypersphere around a fixed centre.

    A bias-free network `phi` with leaky ReLU and affine-free batch norm is
    first pretrained as the encoder of an autoencoder (its decoder mirrors
    it). The centre `c` is then the mean of `phi(x)` over the training data
    (one pass in inference mode), with entries `|c_i| < 0.1` pushed to
    `+-0.1`; `c` is fitted state (a non-trainable weight), never part of the
    config. Training then minimises

    - `objective="one-class"`: `mean ||phi(x) - c||^2 + (lambda/2) sum ||W||^2`;
    - `objective="soft-boundary"`:
      `R^2 + (1/nu) mean max(0, ||phi(x) - c||^2 - R^2) + (lambda/2) sum ||W||^2`.

    `R` is not trained by gradient: at the end of every epoch from
    `warm_up_epochs` on it is set to the `(1 - nu)` quantile of the distances
    `||phi(x) - c||` over the whole training set (inference mode), so after
    `fit` it is exactly that quantile for the final network. (The reference
    PyTorch code updates R per minibatch; a per-epoch full-data quantile is
    exact and batch-size independent.) If `fit` ends before the warm-up, R
    is set once at the end.

    When training ends, the embeddings of the training data (up to
    4,096 evenly spaced rows) are kept for the default `"knn"` score (see
    `score_method`), and a guard warns (`RuntimeWarning`) if the training
    distances to `c` have (almost) zero variance: the network has collapsed.
    `feature_scores(x)` attributes each score to the input features
    (gradient x input from the training data's centre, see
    `AnomalyDetector.feature_scores`).

    Args:
        objective: `"one-class"` or `"soft-boundary"`.
        nu: the soft-boundary's bound on the fraction of training points
            outside the sphere, in (0, 1].
        architecture: `"mlp"` or `"conv"` (images `(H, W, C)`); ignored with
            a user `network`.
        hidden_units: dense layer sizes of the MLP, input side first
            (default one layer of 128; see `default_learning_rate` for how
            the dense defaults were chosen).
        conv_filters: filters of the conv blocks (each conv, BN, leaky ReLU,
            2x2 max-pool); `(8, 4)` with kernel 5 and `rep_dim=32` is the
            MNIST reference network, `(32, 64, 128)` with `rep_dim=128` the
            CIFAR-10 one.
        kernel_size: convolution kernel size.
        rep_dim: size of the representation `phi(x)` (default 64).
        batch_norm: batch norm after each hidden layer, as in the PyTorch
            reference: no learnable shift or scale, eps 1e-4, PyTorch
            momentum 0.1 (Keras `momentum=0.9`), so the moving statistics
            used for `c`, `R` and the scores track the batch statistics
            the objective was trained on.
        weight_decay: lambda of the weight decay `(lambda/2) sum ||W||_F^2`.
        pretrain_epochs: autoencoder pretraining epochs run by the first
            `fit` (0 disables pretraining).
        pretrain_learning_rate: Adam learning rate of the pretraining.
        decoder_output_activation: activation of the pretraining decoder's
            output (e.g. `"sigmoid"` for inputs in [0, 1]).
        warm_up_epochs: epochs before R is first updated (soft-boundary).
        collapse_tolerance: the guard warns when the standard deviation of
            the training distances is below `collapse_tolerance * mean + 1e-8`.
        network: optional user `keras.Model` used as `phi`; it is checked to
            be bias-free with unbounded activations.
        decoder: optional user decoder `rep_dim -> input` for pretraining a
            user `network` (needed when `pretrain_epochs > 0`).
        allow_bias, allow_bounded_activation: accept a user network that
            breaks the bias-free rules (at the risk of collapse).
        normalization: see `AnomalyDetector` (default `"minmax"`).
        score_method: `"knn"` (the mean Euclidean distance of `phi(x)` to
            its 10 nearest training embeddings, kept with the model when
            training ends, see `NeighbourBank`), `"distance"`
            (`||phi(x) - c||^2`, the paper's score) or `"boundary"`
            (`||phi(x) - c||^2 - R^2`); default `"boundary"` for the
            soft-boundary objective, `"knn"` otherwise. The objective pulls
            the normal data towards `c` but not evenly: the distance to `c`
            scores a sparse region near `c` as normal, and a dense cluster
            of normal data away from it as anomalous. The distance to the
            nearest training embeddings reads the density of the space the
            network learned instead (the kNN detector in it). Against
            `"distance"` on the same trained models: the seven-set suite
            0.680 against 0.664 (IsolationForest 0.685), 61 one-class tasks
            (seeds 1-3) 0.937 against 0.908 (0.887), 61 rare-class tasks
            (seeds 1-2) 0.667 against 0.621 (0.572), one-class
            Fashion-MNIST `deep-svdd-mnist` (seeds 1-3) 0.928 against 0.923. It costs
            the training embeddings in the model (at most 4,096 rows of
            `rep_dim` floats: 1 MiB at the default 64, in every export).
        seed: seed of the pretraining shuffle.

    Example:
        >>> model = DeepSVDD(objective="one-class", rep_dim=16, pretrain_epochs=20)
        >>> model.fit(x_train, epochs=50, batch_size=128)
        >>> model.calibrate(x_train, contamination=0.05)
        >>> scores = model.score(x_test)

    Reference:
        Ruff, Vandermeulen, Görnitz, Deecke, Siddiqui, Binder, Müller, Kloft,
        "Deep One-Class Classification", ICML 2018.
    """

    score_methods = ("distance", "boundary", "knn")
    default_score_method = "knn"

    @property
    def default_learning_rate(self):
        """Adam's rate after pretraining when `compile()` gets no optimizer.

        Dense networks: 1e-4, the reference code's rate, with the default one
        hidden layer of 128 and a 64-unit representation. Chosen on three
        benchmarks of the real development sets together
        (`benchmarks/results/class_tasks.md`): over 61 one-class tasks (each
        class of every labelled set normal in turn) mean AUROC 0.906 against
        0.811 at 1e-5 (IsolationForest 0.894), over 61 rare-class tasks
        0.612 against 0.532 (0.577), on the seven-set suite 0.664 against
        0.689 (0.685). 1e-5 barely moves the pretrained encoder: the suite
        preferred it (on vowels, letter, breast cancer and wine), 50 of the
        61 one-class tasks and 44 of the 61 rare-class ones did not. 3e-4
        scored 0.929 / 0.636 on the first and third. Conv networks:
        1e-3, as `deep-svdd-mnist` (one-class Fashion-MNIST 0.921 against
        0.912 at 1e-4, with the suite's 20 epochs instead of the paper's 150).
        """
        return 1e-3 if self.architecture == "conv" else 1e-4

    def __init__(
        self,
        objective="one-class",
        nu=0.1,
        architecture="mlp",
        hidden_units=(128,),
        conv_filters=(8, 4),
        kernel_size=5,
        rep_dim=64,
        batch_norm=True,
        weight_decay=0.5e-6,
        pretrain_epochs=10,
        pretrain_learning_rate=1e-3,
        decoder_output_activation=None,
        warm_up_epochs=10,
        collapse_tolerance=1e-4,
        network=None,
        decoder=None,
        allow_bias=False,
        allow_bounded_activation=False,
        normalization="minmax",
        score_method=None,
        seed=None,
        **kwargs,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}. Received: {objective!r}")
        if score_method is None and objective == "soft-boundary":
            score_method = "boundary"
        super().__init__(
            normalization=normalization, score_method=score_method, seed=seed, **kwargs
        )
        if not 0.0 < float(nu) <= 1.0:
            raise ValueError(f"nu must be in (0, 1]. Received: nu={nu}")
        if architecture not in ("mlp", "conv"):
            raise ValueError(
                f"architecture must be 'mlp' or 'conv'. Received: architecture={architecture!r}"
            )
        if int(rep_dim) < 1:
            raise ValueError(f"rep_dim must be a positive integer. Received: rep_dim={rep_dim}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0. Received: weight_decay={weight_decay}")
        if int(pretrain_epochs) < 0 or int(warm_up_epochs) < 0:
            raise ValueError(
                "pretrain_epochs and warm_up_epochs must be >= 0. Received: "
                f"pretrain_epochs={pretrain_epochs}, warm_up_epochs={warm_up_epochs}"
            )
        if network is not None:
            if not isinstance(network, keras.Model):
                raise ValueError(f"network must be a keras.Model. Received: {type(network)}")
            check_bias_free(network, allow_bias, allow_bounded_activation)
        if decoder is not None and network is None:
            raise ValueError("a user decoder needs a user network (pass network=... too).")
        self.objective = objective
        self.nu = check_number("nu", nu, low=0, high=1, low_open=True)
        self.architecture = architecture
        self.hidden_units = check_units("hidden_units", hidden_units)
        self.conv_filters = check_units("conv_filters", conv_filters)
        self.kernel_size = check_number("kernel_size", kernel_size, low=1, integer=True)
        self.rep_dim = check_number("rep_dim", rep_dim, low=1, integer=True)
        self.batch_norm = bool(batch_norm)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        self.pretrain_epochs = check_number("pretrain_epochs", pretrain_epochs, low=0, integer=True)
        self.pretrain_learning_rate = check_number(
            "pretrain_learning_rate", pretrain_learning_rate, low=0, low_open=True
        )
        self.decoder_output_activation = decoder_output_activation
        self.warm_up_epochs = check_number("warm_up_epochs", warm_up_epochs, low=0, integer=True)
        self.collapse_tolerance = check_number("collapse_tolerance", collapse_tolerance, low=0)
        self.allow_bias = bool(allow_bias)
        self.allow_bounded_activation = bool(allow_bounded_activation)
        self.network = network
        self.decoder = decoder
        self._user_network = network is not None
        if network is not None:
            self.rep_dim = int(network.output.shape[-1])
        self.distance_tracker = keras.metrics.Mean(name="distance")
        object.__setattr__(self, "_radius_set", False)

    # ---------------------------------------------------------------- build
    def build_networks(self, feature_shape):
        if not self._user_network:
            if self.architecture == "conv":
                self.network = build_bias_free_conv(
                    feature_shape,
                    self.rep_dim,
                    filters=self.conv_filters,
                    kernel_size=self.kernel_size,
                    batch_norm=self.batch_norm,
                )
            else:
                self.network = build_bias_free_mlp(
                    feature_shape,
                    self.rep_dim,
                    hidden_units=self.hidden_units,
                    batch_norm=self.batch_norm,
                )
        self.center = self.add_weight(
            shape=(self.rep_dim,),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            name="center",
        )
        self.radius = self.add_weight(shape=(), initializer="zeros", trainable=False, name="radius")
        # Created after the other weights: a model saved before it loads with it unfitted.
        self.neighbours = NeighbourBank(self.rep_dim, name="neighbours", dtype="float32")
        self.neighbours.build()

    # ------------------------------------------------------- fitted state
    @property
    def center_initialized(self) -> bool:
        return not np.isnan(ops.convert_to_numpy(self.center)).any()

    def prepare_training(self, x, batch_size=None, verbose="auto", sample_weight=None):
        if not self.center_initialized:
            if self.pretrain_epochs > 0:
                if verbose != 0:  # Keras shows the two fits' epochs one after the other
                    print(
                        f"{type(self).__name__}: pretraining the autoencoder "
                        f"({self.pretrain_epochs} epochs), then training the hypersphere",
                        flush=True,
                    )
                self.pretrain(
                    x,
                    epochs=self.pretrain_epochs,
                    batch_size=batch_size,
                    verbose=verbose,
                    sample_weight=sample_weight,
                )
            self.initialize_center(x, sample_weight=sample_weight)
        object.__setattr__(self, "_radius_set", False)
        return [FittedStateCallback(self, x)]

    def pretrain(self, x, epochs, batch_size=None, verbose=0, sample_weight=None):
        """Trains `phi` as the encoder of an autoencoder with a mirrored decoder.

        The autoencoder is `decoder(phi(x))` on normalised inputs with a
        squared-error loss, so `phi` ends up holding the pretrained encoder
        weights. The decoder is discarded afterwards (a user `decoder` keeps
        its weights). `sample_weight` (one weight per row of an array `x`)
        weights each sample's reconstruction loss.

        Returns:
            The Keras `History` of the pretraining.
        """
        return pretrain(self, x, epochs, batch_size, verbose, sample_weight)

    def initialize_center(self, x, eps=CENTER_EPS, sample_weight=None):
        """Sets `c` to the mean of `phi(x)` (inference mode), `|c_i| < eps` pushed to `+-eps`.

        With `sample_weight` (one weight per row of an array `x`), the
        weighted mean.

        Returns:
            The centre as a numpy array.
        """
        self.require_built("initialize_center")
        embedding = self.embed(x).astype(np.float64)
        weights = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        if weights is not None and not weights.sum() > 0:
            weights = None  # all weights 0: nothing to prefer, the plain mean
        center = adjust_center(np.average(embedding, axis=0, weights=weights), eps)
        self.center.assign(center)
        return center

    def update_fitted_state(self, epoch, x):
        """Soft-boundary: R from `x` after every epoch past the warm-up."""
        if self.objective == "soft-boundary" and epoch + 1 >= self.warm_up_epochs:
            self.update_radius(x)

    def update_radius(self, x):
        """Sets R to the `(1 - nu)` quantile of `||phi(x) - c||` over `x`."""
        return self._set_radius(self.score(x, method="distance"))

    def _set_radius(self, squared_distances):
        radius = radius_quantile(squared_distances, self.nu)
        self.radius.assign(radius)
        object.__setattr__(self, "_radius_set", True)
        return radius

    def finish_training(self, x):
        """R when the warm-up outlasted training, the kept embeddings, the collapse warning."""
        # One scoring pass of the final network serves the radius and the collapse guard.
        distances = self.score(x, method="distance")
        if self.objective == "soft-boundary" and not self._radius_set:
            self._set_radius(distances)
        self._fit_neighbours(x)
        self._warn_if_collapsed(distances)

    def fit_neighbours(self, x):
        """Keeps the embeddings of training data `x` for the `"knn"` score (`fit` does this).

        For a model saved before the `"knn"` score existed. Returns `self`.
        """
        self.require_built("fit_neighbours")
        if not isinstance(x, tf.data.Dataset):
            x = check_array(x, self.feature_shape, name="x")
        self._fit_neighbours(x)
        return self

    def _fit_neighbours(self, x):
        # Of an array, only the rows the bank keeps are embedded; a dataset is read whole.
        if not isinstance(x, tf.data.Dataset):
            x = x[self.neighbours.kept_rows(len(x))]
        embedding = self.embed(x)
        finite = np.isfinite(embedding).all(axis=1)
        if finite.any():  # else a diverged network (fit(check_finite=False)): stay unfitted
            self.neighbours.fit(embedding[finite])

    def check_score_ready(self, method):
        """The `"knn"` score needs the training embeddings `fit` keeps when training ends."""
        if method == "knn" and not self.neighbours.is_fitted:
            raise ValueError(
                "the 'knn' score of this DeepSVDD needs the embeddings of its training data, "
                "which fit() keeps when training ends; this model has none (saved before "
                "they existed, or never fitted). Call fit_neighbours(x_train) once, or score "
                "with 'distance' or 'boundary'."
            )

    def check_collapse(self, x):
        """Warns (`RuntimeWarning`) if the distances on `x` have (almost) no spread.

        Returns:
            True when the network has collapsed.
        """
        return self._warn_if_collapsed(self.score(x, method="distance"))

    def _warn_if_collapsed(self, squared_distances):
        return warn_if_collapsed(squared_distances, self.collapse_tolerance)

    # ---------------------------------------------------------------- train
    def call(self, x, training=False):
        return self.compute_embedding(x, training=training)

    def compute_embedding(self, x, training=False):
        """`phi(x)` for a raw input batch."""
        return self.network(self.scaler(x), training=training)

    # --------------------------------------------------------------- exports
    def export_endpoints(self):
        """An `embed` signature: `phi(x)` on raw input."""
        return {"embed": lambda x: {"embedding": self.compute_embedding(x)}}

    def export_edge_head(self, method):
        """`phi` of the normalised input; the host takes `||e - c||^2` (`- R^2` for `boundary`).

        For `"knn"` the host takes the mean distance to the nearest kept
        training embeddings (`NeighbourBank`), which the metadata carries.
        """
        if method == "knn":
            return EdgeHead(
                fn=lambda x_norm: {"embedding": self.network(x_norm, training=False)},
                scoring={
                    "kind": "neighbours",
                    "output": "embedding",
                    **self.neighbours.edge_fields(),
                },
                calibration_headroom=EMBEDDING_HEADROOM,
            )
        radius = float(ops.convert_to_numpy(self.radius))
        return EdgeHead(
            fn=lambda x_norm: {"embedding": self.network(x_norm, training=False)},
            scoring={
                "kind": "center_distance",
                "output": "embedding",
                "center": floats(self.center),
                "radius_squared": radius**2 if method == "boundary" else 0.0,
            },
            calibration_headroom=EMBEDDING_HEADROOM,
        )

    def network_graph_outputs(self, x):
        """The embedding `phi(x)`, and the pretraining decoder's reconstruction when it exists."""
        embedding = self.network(self.scaler(x))
        outputs = {"embedding": embedding}
        if self.decoder is not None and self.decoder.built:
            outputs["pretraining_reconstruction"] = self.decoder(embedding)
        return outputs

    def _distances(self, x, training=False):
        embedding = self.compute_embedding(x, training=training)
        return ops.sum(ops.square(embedding - self.center), axis=-1)

    def per_sample_loss(self, x, training=False):
        distances = self._distances(x, training=training)
        if self.objective == "soft-boundary":
            r2 = ops.square(self.radius)
            loss = r2 + ops.maximum(distances - r2, 0.0) / self.nu
        else:
            loss = distances
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * weight_penalty(self.network.trainable_variables)
        return loss, {"distance": distances}

    def extra_trackers(self):
        return [self.distance_tracker]

    # ---------------------------------------------------------------- score
    def compute_scores(self, x, method):
        if method == "knn":
            return self.neighbours(self.compute_embedding(x))
        distances = self._distances(x)
        if method == "boundary":
            return distances - ops.square(self.radius)
        return distances

    def embed(self, x, batch_size=None):
        """`phi(x)`, shape `(n_samples, rep_dim)`."""
        self.require_built("embed")
        fn = self.traced_function(("embed",), self.compute_embedding)
        return self.run_batched(x, fn, batch_size, (self.rep_dim,))

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _CONFIG_FIELDS})
        config.update(hidden_units=list(self.hidden_units), conv_filters=list(self.conv_filters))
        if self._user_network:
            config["network"] = keras.saving.serialize_keras_object(self.network)
            if self.decoder is not None:
                config["decoder"] = keras.saving.serialize_keras_object(self.decoder)
        return config
