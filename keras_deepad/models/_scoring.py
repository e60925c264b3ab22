"""`ScoringMixin`: scores, feature scores, scoring and network-graph models, thresholds."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.models._fit_helpers import check_fit_args
from keras_deepad.utils.validation import (
    check_array,
    check_dataset_spec,
    to_numpy_batch,
)

#: Quantiles of the calibration scores kept with the threshold (for monitoring and exports).
SCORE_QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DEFAULT_SCORE_BATCH = 1024
#: Scores that overflow float32 are clipped to this (`score`).
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


class ScoringMixin:
    """Scoring half of `AnomalyDetector` (put before `keras.Model` in the bases)."""

    # Protected helpers: for subclasses and keras_deepad's own modules (scores, layers, export),
    # documented as part of the detector contract; not meant for users.
    def require_built(self, what):
        """Raises a `ValueError` naming `what` (a method name) unless the model is trained."""
        if not self.built or self.feature_shape is None:
            raise ValueError(
                f"{type(self).__name__}.{what} needs a trained model: call fit() first."
            )

    # ---------------------------------------------------------------- score
    def resolve_method(self, method):
        """`method`, or the default `score_method` for `None`; a `ValueError` if unknown."""
        method = method or self.score_method
        if method not in self.score_methods:
            raise ValueError(
                f"method must be one of {self.score_methods}. Received: method={method!r}"
            )
        return method

    @property
    def score_method_during_fit(self):
        """The score method to read while `fit` runs (e.g. a callback scoring every epoch).

        `score_method`, unless its fitted state only exists once training
        ends (the autoencoders' `"hybrid"`: their reconstruction error then).
        """
        return self.score_method

    def check_score_ready(self, method):
        """Raises a `ValueError` if `method` needs fitted state this model lacks.

        Called (after `resolve_method`) by `score`, `scoring_model`, `fit`'s
        warm-up and the exports, never while a model is being loaded. The
        default accepts every method; the autoencoders' `"hybrid"` score
        needs its code statistics.
        """

    def traced_function(self, key, fn):
        """`fn` as a `tf.function` of one float32 batch, traced once per `key` and kept.

        `key` names the computation (e.g. `("score", method)`); the function
        serves every batch size.
        """
        functions = self._score_functions
        if key not in functions:
            spec = tf.TensorSpec((None, *self.feature_shape), tf.float32, name="x")
            # One trace per method for every batch size. No AutoGraph: the score code has
            # no tensor-dependent Python control flow, and converting it (with every
            # function it calls) was most of the first call's cost (AE: about 0.9 s of 1 s).
            # Wrapped in a `functools.partial`: TensorFlow counts traces per Python code
            # object, shared by every detector (and every lambda of one line), and after
            # five detectors it warned of "retracing" although each function traces once.
            # A partial has no code object, so each function counts its own traces.
            functions[key] = tf.function(
                functools.partial(fn), input_signature=[spec], autograph=False
            )
        return functions[key]

    def run_batched(self, x, fn, batch_size, out_shape, name="x"):
        """Applies `fn` batch by batch, writing into one preallocated array.

        `x` is checked against the model's feature shape first (array,
        DataFrame, tensor or batched `tf.data.Dataset`; errors name `name`);
        the result has shape `(len(x), *out_shape)`.
        """
        batch_size = check_fit_args(batch_size=batch_size)["batch_size"] or DEFAULT_SCORE_BATCH
        if isinstance(x, tf.data.Dataset):
            check_dataset_spec(x, self.feature_shape, name=name)
            chunks, seen = [], 0
            for batch in x:
                array = to_numpy_batch(batch, self.feature_shape, name=name, offset=seen)
                chunks.append(np.asarray(fn(array)))
                seen += len(array)
            if not chunks:
                raise ValueError(f"{name} is empty: the dataset yielded no batches.")
            return np.concatenate(chunks)
        array = check_array(x, self.feature_shape, name=name)
        out = np.empty((len(array), *out_shape), dtype=np.float32)
        for start in range(0, len(array), batch_size):
            chunk = array[start : start + batch_size]
            if len(chunk) == 1:
                # One row would take TensorFlow's matrix-vector kernels, which round
                # differently (~1e-7) from the matrix-matrix ones of every other batch:
                # with a copy of itself, a row scores the same alone as among others.
                out[start] = np.asarray(fn(np.concatenate([chunk, chunk])))[0]
            else:
                out[start : start + batch_size] = fn(chunk)
        return out

    def score(self, x, batch_size=None, method=None):
        """Anomaly scores, one float per sample; higher means more anomalous.

        Args:
            x: numpy array, pandas DataFrame, tensor or batched
                `tf.data.Dataset` (yielding `x` or `(x, ...)`).
            batch_size: samples per forward pass for in-memory inputs
                (default 1024); a dataset keeps its own batching.
            method: a score method of this detector (default:
                `self.score_method`).

        Returns:
            A float32 numpy array of shape `(n_samples,)`. An input so far
            outside the training data (e.g. 1e30) that the computation
            overflows float32 scores the largest float32 (3.4e38), never
            `inf` or NaN: it ranks above every other score. (A model with
            NaN weights raises instead.)
        """
        self.require_built("score")
        method = self.resolve_method(method)
        self.check_score_ready(method)
        fn = self.traced_function(("score", method), lambda t: self.compute_scores(t, method))
        scores = self.run_batched(x, fn, batch_size, ())
        overflowed = np.isnan(scores)
        if overflowed.any():
            self.check_finite_weights("score")
            # Inputs are finite here; with every fitted value finite too (not an unset
            # centre or radius), a NaN is an overflow inside: inf - inf, or cos(inf).
            if self._fitted_state_is_finite():
                scores[overflowed] = FLOAT32_MAX
        return np.clip(scores, -FLOAT32_MAX, FLOAT32_MAX, out=scores)

    def scoring_model(self, method=None, with_label=False) -> keras.Model:
        """A functional `keras.Model` from samples to anomaly scores.

        `model(x)` equals `self.score(x)` (without `score`'s input checks and
        overflow clipping); the model embeds in larger functional models,
        saves to `.keras` and exports with `model.export(path)` like any
        Keras model, carrying this detector's weights and fitted state (a
        `keras_deepad.layers.AnomalyScore` layer wraps it; import
        `keras_deepad` before loading). `predict` on the detector itself
        returns what its `call` does (a reconstruction, an embedding);
        `scoring_model().predict(x)` returns scores.

        Args:
            method: the score method (default: `self.score_method`).
            with_label: outputs `{"score": ..., "is_anomaly": ...}` (0/1 by the
                calibrated threshold) instead of the score alone.
        """
        from keras_deepad.layers.scoring import AnomalyScore

        self.require_built("scoring_model")
        self.check_score_ready(self.resolve_method(method))
        if with_label and self.threshold is None:
            raise ValueError("scoring_model(with_label=True) needs a threshold: call calibrate().")
        inputs = keras.Input(shape=self.feature_shape, name="x")
        layer = AnomalyScore(self, method=method, with_label=with_label, name=f"{self.name}_score")
        return keras.Model(inputs, layer(inputs), name=f"{self.name}_scoring")

    def network_graph(self) -> keras.Model:
        """The detector's inner networks wired as in training, as a functional `keras.Model`.

        A detector is a subclassed model, so `keras.utils.plot_model(detector)`
        draws one box; this view calls the detector's own networks (the
        same layers and weights, nothing copied) on a symbolic input, so
        Keras' tools show each network as a nested graph with its shapes:

            keras.utils.plot_model(detector.network_graph(), expand_nested=True, show_shapes=True)
            detector.network_graph().summary(expand_nested=True)

        Its outputs are named after what they are (`"reconstruction"`,
        `"embedding"`, `"discriminator"`, ...; see each family's
        `network_graph_outputs`). It is a picture of the model, not a
        scorer: score with `score` or `scoring_model()`.
        """
        self.require_built("network_graph")
        inputs = keras.Input(shape=self.feature_shape, name="x")
        return keras.Model(inputs, self.network_graph_outputs(inputs), name=f"{self.name}_networks")

    def network_graph_outputs(self, x) -> dict:
        """Named symbolic outputs of `network_graph()` for a symbolic raw batch `x`.

        The default is the default score's own computation; each family
        overrides it with its training path (encoder, sampler, decoder,
        discriminator, ...).
        """
        return {"score": self.compute_scores(x, self.score_method)}

    # ------------------------------------------------------- attribution
    def attribution_reference(self) -> float:
        """The normalised input that `feature_scores` measures each feature from.

        The centre of the training data in normalised units, known from the
        scaler's statistics without storing anything more: 0.5 with
        `"minmax"` (the middle of the training range) and 0 with
        `"standard"` (the training mean); 0 (the zero input) without
        normalisation.
        """
        return 0.5 if self.scaler.mode == "minmax" else 0.0

    #: Points on the straight path from the reference to `x` at which `feature_scores`
    #: averages the score's gradient (integrated gradients, right Riemann sum). 1: the
    #: gradient at `x` alone (gradient x input). Detectors whose score saturates far from
    #: the data (OC-NN's kernel features) need the path.
    attribution_steps = 1

    def compute_feature_scores(self, x):
        """`feature_scores` of a raw batch (a tensor of shape `(batch, *feature_shape)`)."""
        x = ops.cast(x, "float32")
        reference = ops.full(self.feature_shape[-1:], self.attribution_reference())
        # Per feature, d(score)/d(x_scaled) * (x_scaled - reference) equals
        # d(score)/dx * (x - inverse(reference)): no round trip through the scaler.
        origin = self.scaler.inverse(reference)
        delta = x - origin
        steps = int(self.attribution_steps)
        if steps == 1:
            points = x
        else:  # every point of every sample's path in one batch: (steps * batch, ...)
            alphas = ops.reshape(
                ops.arange(1, steps + 1, dtype="float32") / steps,
                (steps, 1, *([1] * len(self.feature_shape))),
            )
            path = origin + alphas * ops.expand_dims(delta, 0)
            points = ops.reshape(path, (-1, *self.feature_shape))
        with tf.GradientTape() as tape:
            tape.watch(points)
            # Samples are independent in inference mode, so the gradient of the
            # batch sum is each sample's own gradient.
            total = ops.sum(self.compute_scores(points, self.score_method))
        gradient = tape.gradient(total, points, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if steps > 1:
            gradient = ops.mean(ops.reshape(gradient, (steps, -1, *self.feature_shape)), axis=0)
        return gradient * delta

    def feature_scores(self, x, batch_size=None):
        """Per-feature attributions of the anomaly score, same shape as `x`.

        For every feature `j` of a sample: the gradient of the detector's
        score (`self.score_method`) with respect to the normalised input,
        times the normalised input's distance from the training data's
        centre, `(x_scaled_j - reference) * d(score)/d(x_scaled_j)`
        (gradient x input with `attribution_reference()` as the baseline).
        With `attribution_steps` above 1 the gradient is averaged over that
        many points on the straight path from the reference to `x`
        (integrated gradients; OC-NN, whose kernel score flattens out far
        from the data, where the gradient at `x` alone says little); the sum
        over the features is then about the score's rise from the reference
        point to `x`, whatever its shape. With one step, the sum over the
        features is the first-order estimate, made at `x`,
        of the score's rise from the reference point to `x`; large positive
        values mark the features that push the score up. It is an estimate:
        exact where the score is linear along the way, about twice the rise
        where the score is a bowl with its bottom near the reference (Deep
        SVDD's squared distance: the data's centre maps close to `c`), and
        perturbed by ReLU kinks. Measuring from the centre rather than from
        the zero input keeps a feature sitting at its usual value near zero
        attribution (with minmax scaling zero is the training minimum:
        gradient x input credits ordinary features and misses features far
        below their range). The values are in score units; use them to rank
        features within a sample.

        Reconstruction detectors override this with per-feature squared
        reconstruction errors.

        Args:
            x: numpy array, pandas DataFrame, tensor or batched
                `tf.data.Dataset`, as for `score`.
            batch_size: samples per pass for in-memory inputs (default 1024).

        Returns:
            A float32 numpy array of shape `(n_samples, *feature_shape)`.
        """
        self.require_built("feature_scores")
        fn = self.traced_function(
            ("feature_scores", self.score_method), self.compute_feature_scores
        )
        return self.run_batched(x, fn, batch_size, self.feature_shape)

    # ------------------------------------------------------------ threshold
    @property
    def threshold(self) -> float | None:
        """The calibrated threshold, or `None` before `calibrate`."""
        value = float(ops.convert_to_numpy(self.threshold_variable))
        return None if math.isnan(value) else value

    @threshold.setter
    def threshold(self, value):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"threshold must be a finite number. Received: {value}")
        self.threshold_variable.assign(value)

    def calibrate(self, x, contamination=None, fpr=None, batch_size=None):
        """Sets the threshold from the scores of `x`.

        Use `contamination` on (possibly contaminated) training data: the
        threshold is the `1 - contamination` quantile of the scores, so that
        fraction is flagged. Use `fpr` on clean validation data: the
        threshold is the `1 - fpr` quantile, so about that fraction of normal
        samples is falsely flagged. Without either, `contamination=0.1`.

        Returns:
            The threshold (also stored in the model).
        """
        self.check_finite_weights("calibrate")
        return self.calibrate_from_scores(
            self.score(x, batch_size=batch_size), contamination=contamination, fpr=fpr
        )

    def calibrate_from_scores(self, scores, contamination=None, fpr=None):
        """`calibrate` for scores already computed with this model's `score`."""
        if contamination is not None and fpr is not None:
            raise ValueError("pass either contamination or fpr, not both.")
        rate, what = (fpr, "fpr") if fpr is not None else (contamination, "contamination")
        if rate is None:
            rate = 0.1
        if not 0.0 < float(rate) < 1.0:
            raise ValueError(f"{what} must be in (0, 1). Received: {what}={rate}")
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if not len(scores) or not np.isfinite(scores).all():
            self.check_finite_weights("calibrate")
            raise ValueError(
                "calibration scores must be a non-empty array of finite numbers; "
                f"{int(np.sum(~np.isfinite(scores)))} of {len(scores)} are NaN or infinite "
                "(inputs far outside the training data's range can overflow a score)."
            )
        self.threshold = float(np.quantile(scores, 1.0 - float(rate)))
        self.score_quantiles.assign(np.quantile(scores, SCORE_QUANTILES).astype("float32"))
        return self.threshold

    def predict_labels(self, x, batch_size=None):
        """0/1 labels (1 = anomaly: score above the calibrated threshold)."""
        threshold = self.threshold
        if threshold is None:
            raise ValueError(
                f"{type(self).__name__} has no threshold: call calibrate(x, contamination=...) "
                "or calibrate(x_clean, fpr=...) first."
            )
        scores = self.score(x, batch_size=batch_size)
        if not np.isfinite(scores).all():
            self.check_finite_weights("predict_labels")
            raise ValueError(
                f"{int(np.sum(~np.isfinite(scores)))} of {len(scores)} scores are NaN or "
                "infinite, so they cannot be compared with the threshold: check those rows "
                "(values far outside the training data's range overflow a score)."
            )
        return (scores > threshold).astype(np.int64)

    def _fitted_state_is_finite(self) -> bool:
        """Whether every weight and fitted value is finite (the threshold aside)."""
        calibration = {"threshold", "score_quantiles"}
        return all(
            np.isfinite(v.numpy()).all()
            for v in self.weights
            if v.path.rsplit("/", 1)[-1] not in calibration
        )

    def check_finite_weights(self, what="this"):
        """Raises a `ValueError` naming `what` when a weight is NaN or infinite (diverged)."""
        # Not the threshold or its quantiles: NaN there means "not calibrated yet".
        variables = [*self.trainable_weights, *self.scaler.weights]
        bad = [v.path for v in variables if not np.isfinite(v.numpy()).all()]
        if bad:
            raise ValueError(
                f"{type(self).__name__} has NaN or infinite weights ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}): its training diverged, so {what} would "
                "give meaningless results. Retrain with a lower learning rate, or scale or "
                "clean the data (fit raises at the first non-finite loss unless "
                "check_finite=False)."
            )

    def is_anomaly(self, x, batch_size=None):
        """Alias of `predict_labels`: 1 where a sample is flagged as anomalous."""
        return self.predict_labels(x, batch_size=batch_size)
