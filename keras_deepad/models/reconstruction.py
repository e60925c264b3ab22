"""`ReconstructionDetector`: the base of every autoencoder family (AE, VAE, AAE, WAE): the
network spec, reconstruction and feature scores, the hybrid score and their exports."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.layers.code_density import ERROR_WEIGHT_QUANTILE, CodeDensity
from keras_deepad.layers.neighbours import CodeNeighbours
from keras_deepad.losses import feature_errors, percentile_mean
from keras_deepad.models._export_hooks import (
    EMBEDDING_HEADROOM,
    RECONSTRUCTION_ERROR_METHODS,
    EdgeHead,
    floats,
)
from keras_deepad.models.base import AnomalyDetector, FittedStateCallback
from keras_deepad.networks.spec import (
    ARCHITECTURES,
    SEED_ARCHITECTURE,
    AutoEncoderSpec,
)
from keras_deepad.utils.validation import check_array, check_dataset_spec, to_numpy_batch

#: The percentile-loss quantile used when the option is switched on with `True`
#: (the value of a public re-implementation; the paper's could not be verified).
DEFAULT_PERCENTILE = 0.95
#: The scores that add a code's distance to the reconstruction error (`CodeDensity`,
#: `CodeNeighbours`); their statistics are set when training ends.
HYBRID_SCORES = ("hybrid", "hybrid_knn")
#: Rows per eager pass when `fit_code_density` reads the training data.
CODE_DENSITY_BATCH = 16384
#: The most rows of an in-memory training set `fit_code_density` reads (evenly spaced): the
#: mean, shrunk covariance and log spreads of a code of tens of dimensions are settled long
#: before, and reading all of 100,000 rows cost 0.3-0.7 s of a 3 s fit on 2 CPU cores.
CODE_DENSITY_ROWS = 16384


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


def _flat_squared_errors(x_scaled, reconstruction):
    """`(n, n_features)` squared errors of normalised rows (`feature_errors`), flattened."""
    squared = feature_errors(x_scaled, reconstruction, "squared")
    return ops.reshape(squared, (ops.shape(squared)[0], -1))


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
        if self.score_method in HYBRID_SCORES:
            return self.error_score_method
        return self.score_method

    @property
    def has_hybrid_score(self) -> bool:
        """Whether this detector offers a hybrid score (`"hybrid"`, `"hybrid_knn"`)."""
        return any(method in self.score_methods for method in HYBRID_SCORES)

    @property
    def has_knn_hybrid_score(self) -> bool:
        """Whether this detector offers `"hybrid_knn"` (see `CodeNeighbours`)."""
        return "hybrid_knn" in self.score_methods

    def build(self, input_shape):
        super().build(input_shape)
        if self.has_hybrid_score and getattr(self, "code_density", None) is None:
            zeros = ops.zeros((2, *self.feature_shape))
            code_dim = int(ops.shape(self.code_and_reconstruction(zeros)[0])[-1])
            self.code_density = CodeDensity(
                code_dim, math.prod(self.feature_shape), name="code_density", dtype="float32"
            )
            self.code_density.build()
        if self.has_knn_hybrid_score and getattr(self, "code_neighbours", None) is None:
            self.code_neighbours = CodeNeighbours(
                self.code_density.code_dim, name="code_neighbours", dtype="float32"
            )
            self.code_neighbours.build()

    def code_and_reconstruction(self, x_scaled):
        """`(flat codes, reconstructions)` of normalised rows, what `"hybrid"` reads.

        Detectors that list `"hybrid"` in `score_methods` define it: the
        encoder's (mean) output, flattened to `(batch, code_dim)`, and its
        decoding in normalised units.
        """
        raise TypeError(f"{type(self).__name__} has no hybrid score.")

    def hybrid_parts(self, x_scaled):
        """`(weighted mean squared errors, flat codes)` of normalised rows (`CodeDensity`)."""
        code, reconstruction = self.code_and_reconstruction(x_scaled)
        squared = _flat_squared_errors(x_scaled, reconstruction)
        return self.code_density.weighted_error(squared), code

    def hybrid_score(self, x_scaled):
        """The `"hybrid"` score of normalised rows (graph code; see `CodeDensity`)."""
        errors, codes = self.hybrid_parts(x_scaled)
        return self.code_density(errors, codes)

    def knn_hybrid_score(self, x_scaled):
        """The `"hybrid_knn"` score of normalised rows (graph code; see `CodeNeighbours`)."""
        errors, codes = self.hybrid_parts(x_scaled)
        return self.code_density.standardised_error(errors) + self.code_neighbours(codes)

    def compute_hybrid_scores(self, x_scaled, method):
        """The `method` (one of `HYBRID_SCORES`) scores of normalised rows."""
        if method == "hybrid":
            return self.hybrid_score(x_scaled)
        return self.knn_hybrid_score(x_scaled)

    def check_score_ready(self, method):
        """The hybrid scores need the code statistics `fit` sets when training ends."""
        if method not in HYBRID_SCORES:
            return
        fitted = self.code_density.is_fitted and (
            method == "hybrid" or self.code_neighbours.is_fitted
        )
        if not fitted:
            raise ValueError(
                f"the {method!r} score of this {type(self).__name__} needs the statistics of "
                "its training codes, which fit() sets when training ends; this model has none "
                "(saved before they existed, or never fitted). Call "
                "fit_code_density(x_train) once, or score with another method "
                f"({[m for m in self.score_methods if m not in HYBRID_SCORES]})."
            )

    def fit_code_density(self, x, batch_size=None):
        """Sets the hybrid scores' statistics from training data `x` (`fit` does this).

        `x` is what `score` accepts (raw units); of an in-memory `x` longer
        than `CODE_DENSITY_ROWS` (16384), that many evenly spaced rows are
        read, `batch_size` rows at a time (default 16384); a dataset is read
        whole. Returns `self`.
        """
        self.require_built("fit_code_density")
        if not self.has_hybrid_score:
            raise TypeError(f"{type(self).__name__} has no hybrid score.")
        if not isinstance(x, tf.data.Dataset):
            x = check_array(x, self.feature_shape, name="x")
            if len(x) > CODE_DENSITY_ROWS:
                x = x[np.linspace(0, len(x) - 1, CODE_DENSITY_ROWS).round().astype(np.int64)]

        def parts(t):
            errors, codes = self.hybrid_parts(self.scaler(t))
            return ops.concatenate([ops.expand_dims(errors, -1), codes], axis=-1)

        # Three passes, run eagerly in large batches (tracing a function used once per fit
        # would cost more than it saves: a small table's fit ends here): the rows' errors give
        # the cut, the rows under it each feature's usual error (its weight), then the weighted
        # errors and the codes set the statistics.
        batch_size = batch_size or CODE_DENSITY_BATCH
        if self.code_density.error_weights is not None:
            feature_errors = self._mean_feature_errors(x, batch_size)
            if feature_errors is None:  # diverged network: see below
                self._invalidate_hybrid()
                return self
            self.code_density.fit_error_weights(feature_errors)
        width = 1 + self.code_density.code_dim
        values = self.run_batched(x, parts, batch_size, (width,))
        finite = np.isfinite(values).all(axis=1)
        if not finite.any():
            # A diverged network (fit(check_finite=False)): NaN statistics keep every hybrid
            # score NaN, so using the model raises the NaN-weights error as for other scores.
            self._invalidate_hybrid()
            return self
        self.code_density.fit(values[finite, 1:], values[finite, 0])
        if self.has_knn_hybrid_score:
            codes, errors = values[finite, 1:], values[finite, 0]
            if self.percentile_loss is not None:
                # The rows the percentile loss leaves unlearned are presumed anomalies: a
                # tight group of them would be a dense region of codes to the nearest ones.
                codes = codes[errors <= np.quantile(errors, self.percentile_loss)]
            self.code_neighbours.fit(codes)
        return self

    def _invalidate_hybrid(self):
        self.code_density.invalidate()
        if self.has_knn_hybrid_score:
            self.code_neighbours.invalidate()

    def _mean_feature_errors(self, x, batch_size):
        """Each feature's mean squared error over the rows of `x` (checked) reconstructed best.

        The rows whose mean squared error is at most its `ERROR_WEIGHT_QUANTILE` quantile over
        `x` (two passes); `None` if no row's errors are finite.
        """

        def batches():
            if isinstance(x, tf.data.Dataset):
                for batch in x:
                    yield to_numpy_batch(batch, self.feature_shape, name="x")
            else:
                for start in range(0, len(x), batch_size):
                    yield x[start : start + batch_size]

        def squared_errors(batch):
            x_scaled = self.scaler(batch)
            _, reconstruction = self.code_and_reconstruction(x_scaled)
            return np.asarray(_flat_squared_errors(x_scaled, reconstruction))

        if isinstance(x, tf.data.Dataset):
            check_dataset_spec(x, self.feature_shape, name="x")
        row_errors = np.concatenate([squared_errors(b).mean(axis=1) for b in batches()])
        finite = np.isfinite(row_errors)
        if not finite.any():
            return None
        cut = np.quantile(row_errors[finite], ERROR_WEIGHT_QUANTILE)
        total = np.zeros(self.code_density.feature_dim, dtype=np.float64)
        rows = 0
        for batch in batches():
            squared = squared_errors(batch)
            errors = squared.mean(axis=1)
            kept = np.isfinite(errors) & (errors <= cut)
            total += squared[kept].sum(axis=0, dtype=np.float64)
            rows += int(kept.sum())
        return total / rows

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
        distance (`CodeDensity`); for `"hybrid_knn"` its distance to the
        nearest kept training codes (`CodeNeighbours`, carried in the
        metadata); `None` for a score that is not one of these (a
        subclass's own score methods).
        """
        if method in HYBRID_SCORES:
            return self._hybrid_edge_head(method)
        error = RECONSTRUCTION_ERROR_METHODS.get(method)
        if error is None:
            return None
        return EdgeHead(
            fn=lambda x_norm: {"reconstruction": self.reconstruct_normalised(x_norm)},
            scoring={"kind": "reconstruction_error", "error": error, "output": "reconstruction"},
        )

    def _hybrid_edge_head(self, method):
        density = self.code_density

        def head(x_norm):
            code, reconstruction = self.code_and_reconstruction(x_norm)
            return {"reconstruction": reconstruction, "code": code}

        if method == "hybrid":
            fields = {
                "mean": floats(density.mean),
                "precision": floats(ops.reshape(density.precision, (-1,))),
                "log_stats": floats(density.log_stats),
                **(
                    {}
                    if density.error_weights is None
                    else {"error_weights": floats(density.error_weights)}
                ),
            }
        else:  # "hybrid_knn": the error's statistics and the kept training codes
            fields = {
                "error_weights": floats(density.error_weights),
                "error_log_stats": floats(density.log_stats[:2]),
                "distance_log_stats": floats(self.code_neighbours.log_stats),
                **self.code_neighbours.edge_fields(),
            }
        return EdgeHead(
            fn=head,
            scoring={"kind": method, "output": "reconstruction", "code_output": "code", **fields},
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
