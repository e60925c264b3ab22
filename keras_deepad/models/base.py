"""The contract every keras_deepad detector follows."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import os
import random
import warnings
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.layers import FeatureScaler
from keras_deepad.utils import scratch
from keras_deepad.utils.validation import (
    check_array,
    check_dataset_spec,
    check_number,
    check_sample_weight,
    to_numpy_batch,
)

#: Quantiles of the calibration scores kept with the threshold (for monitoring and exports).
SCORE_QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DEFAULT_SCORE_BATCH = 1024
#: Scores that overflow float32 are clipped to this (`score`).
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


def _replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


class FittedStateCallback(keras.callbacks.Callback):
    """Runs a detector's fitted-state hooks during `fit`, holding the data they read.

    Calls `detector.update_fitted_state(epoch, x)` at every epoch end and
    `detector.finish_training(x)` when training ends. `x` is the training
    input `prepare_training` received (bounded by `adapt_steps` for
    datasets); it lives here for one `fit`, never on the detector.
    """

    def __init__(self, detector, x):
        super().__init__()
        self.detector = detector
        self.x = x

    def on_epoch_end(self, epoch, logs=None):
        self.detector.update_fitted_state(epoch, self.x)

    def on_train_end(self, logs=None):
        try:
            self.detector.finish_training(self.x)
        finally:
            self.x = None


def _multi_worker(strategy=None) -> bool:
    """Whether `strategy` (default: the current one) spans several worker processes."""
    strategy = strategy or tf.distribute.get_strategy()
    extended = strategy.extended
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and extended._in_multi_worker_mode()
    )


def check_fit_args(**args) -> dict:
    """`fit`'s and `score`'s counts, checked: `None` or a positive integer (0 allowed for
    `initial_epoch`), Python or NumPy; returned as Python ints."""
    checked = {}
    for name, value in args.items():
        low = 0 if name == "initial_epoch" else 1
        checked[name] = None if value is None else check_number(name, value, low=low, integer=True)
    return checked


def weighted_mean(values, sample_weight=None):
    """`mean(values)`, or `sum(w * values) / n` with sample weights (Keras' reduction)."""
    values = ops.reshape(values, (-1,))
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
    return ops.sum(values * weights) / ops.cast(ops.shape(values)[0], values.dtype)


#: Arrays up to this size train through one repeated `tf.data` pipeline (`_repeated_dataset`).
FAST_PATH_BYTES = 256 * 2**20
#: The most batches `fit` runs per compiled call when `compile` left `steps_per_execution`
#: to it (in-memory arrays): a small table's epoch is one call, a large one's a few hundred.
AUTO_STEPS_PER_EXECUTION = 32


def _fast_path(x, kwargs) -> bool:
    """Whether `fit` feeds `x` as one repeated pipeline instead of Keras' array epochs."""
    return (
        isinstance(x, np.ndarray)
        and x.nbytes <= FAST_PATH_BYTES
        and kwargs.get("steps_per_epoch") is None
        and not kwargs.get("validation_split")
        and kwargs.get("shuffle", True) in (True, False)
    )


def _replay(first, rest):
    """A generator of the batches already read, then the rest, as the tuples Keras wants.

    Keras refuses a generator of bare arrays; a bare batch becomes `(x,)`.
    """
    for batch in itertools.chain(first, rest):
        yield tuple(batch) if isinstance(batch, tuple | list) else (batch,)


def _stack_batches(batches) -> np.ndarray:
    """One array of the features of a few `x` or `(x, ...)` batches."""
    return np.concatenate([np.asarray(b[0] if isinstance(b, tuple | list) else b) for b in batches])


def batch_weight(sample_weight=None):
    """The batch's mean sample weight (1 without weights): the factor of batch-level terms.

    Regularisation losses and statistics of the whole batch (the WAE's MMD)
    are not per sample; they are multiplied by this, so a batch of
    zero-weight samples contributes nothing and unit weights change nothing.
    """
    if sample_weight is None:
        return 1.0
    return ops.mean(ops.cast(sample_weight, "float32"))


def multi_worker_logs(logs):
    """A step's logs as Keras can reduce them across worker processes.

    Keras reduces each replica's logs with `strategy.reduce("MEAN", v, axis=0)`
    under `MultiWorkerMirroredStrategy`, which fails on scalars
    (keras-team/keras#20585): there they are reshaped to `(1,)`. The history
    reads the metrics' own (all-reduced) results, not these values.
    """
    if not _multi_worker():
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


class MultiWorkerFitMixin:
    """What a `keras.Model` needs for `fit` under `MultiWorkerMirroredStrategy` (Keras 3.15).

    Put it before `keras.Model` in the bases. It replaces Keras' first-batch
    build, which averages the batch over replicas with a cross-worker
    `strategy.reduce` that fails, and reshapes the default steps' scalar
    logs (`multi_worker_logs`). Detectors inherit it through
    `AnomalyDetector`, whose own steps return `multi_worker_logs(...)`.
    """

    def train_step(self, data):
        return multi_worker_logs(super().train_step(data))

    def test_step(self, data):
        return multi_worker_logs(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build from a first batch, minus its cross-worker reduction.

        Keras averages a distributed first batch over the replicas with
        `strategy.reduce`, which fails across worker processes; the batch
        only gives shapes, so this worker's first replica's batch does.
        """
        if self._distribute_strategy is None or not _multi_worker(self._distribute_strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        local = self._distribute_strategy.experimental_local_results

        def first_replica(value):
            return local(value)[0] if isinstance(value, tf.distribute.DistributedValues) else value

        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(first_replica, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)


@keras.saving.register_keras_serializable(package="keras_deepad")
class AnomalyDetector(MultiWorkerFitMixin, keras.Model):
    """Base class of all detectors: fit, score, calibrate, flag.

    Subclasses build their networks in `build_networks(feature_shape)`,
    define `per_sample_loss(x, training)` (on normalised inputs) and
    `compute_scores(x, method)` (on raw inputs), and list their score
    methods in `score_methods`. This class provides the rest of the contract:

    - `fit` validates the input, adapts the in-model normalisation, builds
      and compiles (Adam) when needed, then runs Keras' own `fit`;
    - `score(x)` returns one float per sample, higher = more anomalous, for
      numpy arrays, pandas DataFrames, tensors or batched `tf.data.Dataset`s,
      in batches written straight into one output array;
    - `calibrate(x, contamination=...)` or `calibrate(x, fpr=...)` stores a
      threshold in a non-trainable weight (saved and exported with the model);
    - `is_anomaly(x)` / `predict_labels(x)` return 0/1 labels;
    - `feature_scores(x)` attributes each score to the input features.

    Args:
        normalization: `None`, `"minmax"` or `"standard"`; statistics are
            adapted on the first `fit` data and live inside the model.
        score_method: the score used by `score`, `calibrate` and
            `is_anomaly` (one of the class's `score_methods`).
        seed: seed for the detector's random draws: its initial weights and
            dropout (see `seeded_construction`), noise and sampling, and the
            shuffle order of `fit` on arrays. Two detectors with the same
            seed trained on the same data end equal, whatever random draws
            the process made before (a global seed set with
            `keras.utils.set_random_seed` joins the shuffle's seed; `None`:
            everything follows the global seed).
    """

    score_methods: tuple[str, ...] = ()
    default_score_method: str | None = None
    #: Adam's learning rate when `compile()` (or `fit` without `compile`) picks the optimizer.
    default_learning_rate: float = 1e-3
    #: Hooks a concrete detector (one that lists `score_methods`) defines:
    #: `build_networks(feature_shape)`, `per_sample_loss(x, training)` returning
    #: `(loss of shape (batch,), {metric name: per-sample values})`, and
    #: `compute_scores(x, method)` returning a `(batch,)` tensor for a raw batch.
    required_methods: tuple[str, ...] = ("build_networks", "per_sample_loss", "compute_scores")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.score_methods:
            missing = [m for m in cls.required_methods if not callable(getattr(cls, m, None))]
            if missing:
                raise TypeError(
                    f"{cls.__name__} lists score methods but does not define {missing}."
                )

    def __init__(self, normalization=None, score_method=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if normalization not in (None, "minmax", "standard"):
            raise ValueError(
                "normalization must be None, 'minmax' or 'standard'. "
                f"Received: normalization={normalization!r}"
            )
        score_method = score_method or self.default_score_method
        if score_method not in self.score_methods:
            raise ValueError(
                f"score_method must be one of {self.score_methods}. "
                f"Received: score_method={score_method!r}"
            )
        self.normalization = normalization
        self.score_method = score_method
        self.seed = seed
        self.feature_shape = None
        # float32 under mixed precision too: raw features can overflow float16.
        self.scaler = FeatureScaler(normalization, name="scaler", dtype="float32")
        self.threshold_variable = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            name="threshold",
        )
        self.score_quantiles = self.add_weight(
            shape=(len(SCORE_QUANTILES),),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            name="score_quantiles",
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # Compiled score functions, kept out of Keras/TF attribute tracking.
        object.__setattr__(self, "_score_functions", {})

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        feature_shape = tuple(int(d) for d in tuple(input_shape)[1:])
        if self.feature_shape is not None and feature_shape != self.feature_shape:
            raise ValueError(
                f"{type(self).__name__} was built for samples of shape {self.feature_shape}; "
                f"received {feature_shape}."
            )
        if self.feature_shape is None:
            self.feature_shape = feature_shape
            if not self.scaler.built:
                self.scaler.build((None, *feature_shape))
            with self.seeded_construction():
                self.build_networks(feature_shape)
        self.built = True
        self._build_optimizers()

    @contextlib.contextmanager
    def seeded_construction(self, offset: int = 0):
        """Makes the layers created inside reproducible from the detector's `seed`.

        Keras draws the seed of every initializer and dropout layer made
        without one from Python's `random` module; while this context is open
        that module is seeded from `seed` (and `offset`, for a second set of
        layers), and its state is restored afterwards. With `seed=None`
        nothing changes: the layers follow `keras.utils.set_random_seed`.
        """
        if self.seed is None:
            yield
            return
        state = random.getstate()
        random.seed(int(self.seed) * 1_000_003 + int(offset))
        try:
            yield
        finally:
            random.setstate(state)

    # ------------------------------------------------------------ optimizers
    def optimizer_variables(self):
        """Optimizer attribute name -> the variables that optimizer updates."""
        return {"optimizer": self.trainable_variables}

    def _build_optimizers(self):
        """Builds every optimizer on the variables it updates, eagerly, once compiled and built.

        Inside the model's distribution strategy, so the slot variables are
        mirrored like the weights. An optimizer left unbuilt makes its slots
        on the first traced step, and `tf.function` then traces that step a
        second time (it does, whenever a first trace creates variables):
        about a second of every small `fit`.
        """
        if not (self.compiled and self.built and self.feature_shape is not None):
            return
        with self.distribute_strategy.scope():
            for name, variables in self.optimizer_variables().items():
                opt = getattr(self, name, None)
                if opt is not None and not opt.built:
                    opt.build(variables)

    # ---------------------------------------------------------------- train
    def reduce_loss(self, per_sample, sample_weight=None):
        """Reduces the per-sample loss to the batch loss.

        The mean over the batch; with `sample_weight` (from
        `fit(..., sample_weight=...)` or a dataset yielding `(x, None, w)`)
        `sum(w * loss) / batch size`, Keras' `"sum_over_batch_size"`
        reduction: a weight of 0 removes a sample from the objective, 2
        counts it twice.
        """
        return weighted_mean(per_sample, sample_weight)

    def compile(self, optimizer=None, loss=None, metrics=None, weighted_metrics=None, **kwargs):
        """Configures training; a detector's objective is its own loss.

        Args:
            optimizer: a Keras optimizer or its name; `None` (the default) is
                Adam at the class's `default_learning_rate`. Under a
                `mixed_float16` policy Keras wraps it in a
                `LossScaleOptimizer` (unless `auto_scale_loss=False`).
            loss: `None`; only detectors whose objective is a plain
                reconstruction error (`AE`) accept a Keras loss, used per
                sample instead of their `loss` argument. Others raise.
            metrics, weighted_metrics: Keras metrics of the reconstruction
                (`ReconstructionDetector`s): each compares the normalised
                input with its reconstruction in inference mode, after the
                step, and appears in the history (`weighted_metrics` use
                `fit`'s `sample_weight`). Detectors without a reconstruction
                raise: their logs already report their objective's parts.
            **kwargs: other `keras.Model.compile` arguments
                (`steps_per_execution`, `jit_compile`, `auto_scale_loss`, ...).
        """
        if loss is not None:
            self.set_training_loss(loss)
        if (metrics or weighted_metrics) and not hasattr(self, "reconstruct_normalised"):
            raise ValueError(
                f"{type(self).__name__} has no reconstruction for compiled metrics to compare "
                f"with its input; compile it without metrics=. Its training logs report "
                f"{[m.name for m in self.metrics]}; judge detection with "
                "keras_deepad.evaluation.evaluate_detector(model, x, y)."
            )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(self.default_learning_rate)
        # Without a user choice, fit picks steps_per_execution for in-memory arrays.
        object.__setattr__(self, "_auto_steps", "steps_per_execution" not in kwargs)
        super().compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )
        self._build_optimizers()

    def set_training_loss(self, loss):
        """Hook of `compile(loss=...)`: detectors with their own objective refuse it."""
        raise ValueError(
            f"{type(self).__name__} trains on its own objective and takes no compile(loss=...). "
            "Set the objective with the constructor's arguments instead (see "
            f"help({type(self).__name__})); AE accepts a Keras reconstruction loss."
        )

    def update_compiled_metrics(self, data):
        """Updates `compile(metrics=...)` on a batch: normalised input vs reconstruction."""
        compiled = getattr(self, "_compile_metrics", None)
        if compiled is None:
            return
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x_scaled = self.scaler(ops.cast(x, "float32"))
        x_hat = ops.cast(self.reconstruct_normalised(x_scaled, training=False), "float32")
        compiled.update_state(ops.stop_gradient(x_scaled), ops.stop_gradient(x_hat), sample_weight)

    def get_compile_config(self):
        if self.compiled and getattr(self, "_compile_config", None) is not None:
            return self._compile_config.serialize()
        return None

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    def _objective(self, data, training):
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = ops.cast(x, "float32")
        per_sample, parts = self.per_sample_loss(x, training=training)
        loss = self.reduce_loss(per_sample, sample_weight)
        for extra in self.losses:  # regularisers (float16 under mixed precision)
            loss = loss + ops.cast(ops.sum(extra), "float32") * batch_weight(sample_weight)
        return loss, parts

    def _update_trackers(self, loss, parts):
        self.loss_tracker.update_state(loss)
        trackers = {m.name: m for m in self.metrics}
        for name, values in parts.items():
            trackers[name].update_state(ops.mean(values))
        logs = {}
        for metric in self.metrics:
            result = metric.result()
            logs.update(result if isinstance(result, dict) else {metric.name: result})
        return multi_worker_logs(logs)

    def scale_for_gradients(self, loss, optimizer=None):
        """The loss whose gradient an optimizer applies; call it inside the tape.

        Gradients are summed over the replicas of a `tf.distribute`
        strategy, so the loss is divided by their number; under mixed
        precision the optimizer (a `LossScaleOptimizer`, wrapped by
        `compile`) multiplies it by its loss scale, and its `apply`
        unscales the gradients and skips steps whose gradients overflowed.
        """
        optimizer = optimizer or self.optimizer
        return optimizer.scale_loss(loss / _replicas())

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, parts = self._objective(data, training=True)
            scaled = self.scale_for_gradients(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.update_compiled_metrics(data)
        return self._update_trackers(loss, parts)

    def test_step(self, data):
        loss, parts = self._objective(data, training=False)
        self.update_compiled_metrics(data)
        return self._update_trackers(loss, parts)

    @property
    def metrics(self):
        compiled = getattr(self, "_compile_metrics", None)
        return [self.loss_tracker, *self.extra_trackers(), *([compiled] if compiled else [])]

    def extra_trackers(self):
        return []

    # --------------------------------------------------------------- inputs
    def _check_fit_input(self, x, name="x"):
        if isinstance(x, tf.data.Dataset):
            spec = check_dataset_spec(x, self.feature_shape, name=name)
            if spec.shape.rank is None or any(d is None for d in spec.shape[1:]):
                raise ValueError(f"{name} must have a static sample shape; got {spec.shape}.")
            return x, tuple(int(d) for d in spec.shape[1:])
        array = check_array(x, self.feature_shape, name=name)
        return array, array.shape[1:]

    def _training_inputs(self, x, steps_per_epoch=None, adapt_steps=None):
        """`(x for Keras, bounded x for the fitted state, feature shape)` of `fit`'s input.

        Arrays, DataFrames and tensors are checked whole. A `tf.data.Dataset`,
        a `keras.utils.PyDataset` or a generator goes to Keras as it is;
        the normaliser, the data checks and the detector's fitted state read
        its first `adapt_steps` batches (default `steps_per_epoch`, else the
        whole of a finite dataset).
        """
        limit = adapt_steps if adapt_steps is not None else steps_per_epoch
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
            raise ValueError(f"adapt_steps must be a positive integer. Received: {limit!r}")
        if isinstance(x, tf.data.Dataset):
            x, feature_shape = self._check_fit_input(x)
            if limit is None and x.cardinality() == tf.data.INFINITE_CARDINALITY:
                raise ValueError(
                    "x is an infinite dataset (e.g. dataset.repeat()): pass steps_per_epoch= "
                    "(how many batches make an epoch) and optionally adapt_steps= (how many "
                    "batches the normaliser and fitted state read; default steps_per_epoch)."
                )
            return x, (x if limit is None else x.take(int(limit))), feature_shape
        if isinstance(x, keras.utils.PyDataset):
            count = len(x) if limit is None else min(int(limit), len(x))
            batches = [x[i] for i in range(count)]
            if not batches:
                raise ValueError("x is an empty PyDataset: it has no batches.")
            state, feature_shape = self._check_fit_input(_stack_batches(batches))
            return x, state, feature_shape
        if inspect.isgenerator(x) or (
            isinstance(x, Iterator) and not isinstance(x, np.ndarray | tf.Tensor)
        ):
            if limit is None:
                raise ValueError(
                    "x is a generator: pass steps_per_epoch= (batches per epoch) or "
                    "adapt_steps= (how many of its first batches the normaliser and fitted "
                    "state read), or pass a keras.utils.PyDataset or tf.data.Dataset."
                )
            batches = list(itertools.islice(x, int(limit)))
            if not batches:
                raise ValueError("x is an empty generator: it yielded no batches.")
            state, feature_shape = self._check_fit_input(_stack_batches(batches))
            return _replay(batches, x), state, feature_shape
        x, feature_shape = self._check_fit_input(x)
        return x, x, feature_shape

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", **kwargs):
        """Trains the detector (unsupervised: `y` is not used).

        Accepts the same arguments as `keras.Model.fit`. Before training, the
        input is checked (shape, dtype, NaN, emptiness), the model is built,
        the in-model normalisation is adapted on `x` (first fit only) and the
        model is compiled with Adam if `compile` was not called.

        `sample_weight` (one non-negative weight per row of an array `x`, or
        a dataset yielding `(x, None, w)`) weights each sample's loss:
        `sum(w * loss) / batch size`, so 0 removes a row from the objective
        (down-weight suspected anomalies this way); regularisation terms are
        multiplied by the batch's mean weight. With the percentile loss
        the weights apply to the samples it keeps. Deep SVDD's pretraining
        and centre `c` use the weights too; the normaliser's statistics and
        the quantile-based state (Deep SVDD's R, OC-NN's r, thresholds) are
        taken over all rows.

        `x` may be an array, DataFrame or tensor; a batched
        `tf.data.Dataset` (finite, or infinite with `steps_per_epoch`); a
        `keras.utils.PyDataset`; or a generator of batches (with
        `steps_per_epoch` or `adapt_steps`). The normaliser, the input
        checks and the fitted state (Deep SVDD's pretraining, c and R,
        OC-NN's r) read the first `adapt_steps` batches of the latter three
        (an extra argument of this `fit`; default `steps_per_epoch`, else
        the whole of a finite dataset); Keras trains on all of it. A NaN or
        infinite value in what they read is a `ValueError` naming the batch.

        Divergence is an error, never a model: at the first NaN or infinite
        loss `fit` puts back the last finite weights (and optimizer state)
        and raises `keras_deepad.callbacks.TrainingDivergedError` naming the
        epoch, the batch and the likely causes (`check_finite=False`, an
        extra argument, trains on regardless).
        """
        if y is not None:
            warnings.warn(
                f"{type(self).__name__} is trained without labels; y is ignored.", stacklevel=2
            )
            y = None
        checked = check_fit_args(
            epochs=epochs,
            batch_size=batch_size,
            steps_per_epoch=kwargs.get("steps_per_epoch"),
            initial_epoch=kwargs.get("initial_epoch", 0),
        )
        epochs, batch_size = checked["epochs"], checked["batch_size"]
        _check_callbacks(kwargs.get("callbacks"))
        adapt_steps = kwargs.pop("adapt_steps", None)
        check_finite = kwargs.pop("check_finite", True)
        x, state_x, feature_shape = self._training_inputs(
            x, kwargs.get("steps_per_epoch"), adapt_steps
        )
        sample_weight = kwargs.get("sample_weight")
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight = check_sample_weight(sample_weight, x)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
            if isinstance(validation_data, tuple):
                validation_data = validation_data[0]
            kwargs["validation_data"] = (
                check_array(validation_data, feature_shape, name="validation_data"),
            )
        if not self.built or self.feature_shape is None:
            # Inside the strategy the model was created in (if any): its variables are mirrored.
            with self.distribute_strategy.scope():
                self.build((None, *feature_shape))
        if not self.scaler.is_adapted:
            self.scaler.adapt(state_x)
        self.check_training_data(state_x)
        if not self.compiled:
            self.compile()
        hook_kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        extra_callbacks = self.prepare_training(
            state_x, batch_size=batch_size, verbose=verbose, **hook_kwargs
        )
        if check_finite:
            from keras_deepad.callbacks import NonFiniteLossGuard

            # First: a diverged epoch is undone before anything else sees it.
            extra_callbacks = [NonFiniteLossGuard(self), *(extra_callbacks or [])]
        if extra_callbacks:
            # Fitted-state updates run before the user's callbacks see the epoch.
            kwargs["callbacks"] = [*extra_callbacks, *(kwargs.get("callbacks") or [])]
        if inspect.isgenerator(x) or isinstance(x, tf.data.Dataset):
            # Shuffle in the pipeline; Keras ignores (and for generators warns about) it.
            kwargs.setdefault("shuffle", False)
        repeated = self._repeated_dataset(x, batch_size, sample_weight, kwargs)
        if repeated is not None:
            x, batch_size = repeated, None
        elif sample_weight is not None:
            # Keras drops sample_weight when y is None: a 1-byte placeholder keeps it.
            y = np.zeros(len(x), dtype=np.int8)
        history = super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, **kwargs)
        self.warm_score_function()
        return history

    def warm_score_function(self):
        """Traces and runs the default score function once, on one row of zeros.

        `fit` ends with it, so the first `score` after training costs what
        every later one does: tracing and TensorFlow's first-run graph
        optimisation (about 0.1 s on 2 CPU cores) are paid once, in `fit`.
        Call it after loading a model or changing `score_method` for the same.
        """
        self.require_built("warm_score_function")
        method = self.resolve_method(None)
        fn = self.traced_function(("score", method), lambda t: self.compute_scores(t, method))
        fn(np.zeros((1, *self.feature_shape), np.float32))

    def _repeated_dataset(self, x, batch_size, sample_weight, kwargs):
        """An in-memory array as one repeated `tf.data` pipeline with `steps_per_epoch`.

        Keras makes a new iterator over its array pipeline every epoch (about
        25 ms each, the larger part of a small table's epoch); over a
        repeated dataset with `steps_per_epoch` it keeps one iterator for the
        whole fit. Each epoch is still one reshuffled pass over every row,
        with a last partial batch, as Keras' own array epochs.

        Keras runs every compiled call for `steps_per_execution` batches,
        so over a repeated dataset that number must divide the epoch's:
        `fit` picks the largest divisor up to `AUTO_STEPS_PER_EXECUTION` when
        `compile` left it open (on one device; Keras' multi-step loop fails
        under `tf.distribute`), and keeps Keras' own array epochs when a
        user's value does not divide it.

        Returns:
            The dataset (and sets `kwargs["steps_per_epoch"]`), or `None`
            where Keras' array input is used as it is.
        """
        if not _fast_path(x, kwargs):
            return None
        batch_size = int(batch_size or 32)
        steps = math.ceil(len(x) / batch_size)
        single_device = getattr(self, "_distribute_strategy", None) is None
        single_device = single_device and not tf.distribute.has_strategy()
        if getattr(self, "_auto_steps", False) and single_device:
            self._set_steps_per_execution(
                max(d for d in range(1, AUTO_STEPS_PER_EXECUTION + 1) if steps % d == 0)
            )
        elif steps % self.steps_per_execution:
            return None
        columns = (x,) if sample_weight is None else (x, np.zeros(len(x), np.int8), sample_weight)
        data = tf.data.Dataset.from_tensor_slices(columns)
        if kwargs.pop("shuffle", True):
            seed = None if self.seed is None else int(self.seed)
            data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        kwargs["shuffle"] = False  # done above; Keras would warn that it ignores it
        kwargs.pop("sample_weight", None)
        kwargs["steps_per_epoch"] = steps
        return data.batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE)

    def _set_steps_per_execution(self, steps):
        """Runs `steps` batches per compiled call (a whole small epoch in one call)."""
        if steps != self.steps_per_execution:
            self.steps_per_execution = int(steps)
            # The compiled loops are traced for one number of steps.
            self.train_function = self.test_function = self.predict_function = None

    def check_training_data(self, x):
        """Hook for model-specific checks of (raw) training data."""

    def prepare_training(self, x, batch_size=None, verbose="auto", sample_weight=None):
        """Hook run by `fit` after compiling, before training (pretraining, fitted state).

        `sample_weight` is `fit`'s (checked) per-row weights, or `None`.

        Returns a list of Keras callbacks that `fit` runs before the user's
        (e.g. `FittedStateCallback(self, x)`, which calls the detector's
        `update_fitted_state(epoch, x)` and `finish_training(x)`).
        """
        return []

    def update_fitted_state(self, epoch, x):
        """Hook at every epoch end of `fit` (through `FittedStateCallback`).

        Recomputes state that is not trained by gradients from the training
        input `x` (Deep SVDD's soft-boundary radius R, OC-NN's r). The
        default does nothing.
        """

    def finish_training(self, x):
        """Hook once `fit`'s epochs are done (through `FittedStateCallback`).

        Final fitted state from the training input `x` and checks of the
        trained model (Deep SVDD's collapse warning). The default does
        nothing.
        """

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
            functions[key] = tf.function(fn, input_signature=[spec], autograph=False)
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

    def compute_feature_scores(self, x):
        """`feature_scores` of a raw batch (a tensor of shape `(batch, *feature_shape)`)."""
        x = ops.cast(x, "float32")
        with tf.GradientTape() as tape:
            tape.watch(x)
            # Samples are independent in inference mode, so the gradient of the
            # batch sum is each sample's own gradient.
            total = ops.sum(self.compute_scores(x, self.score_method))
        gradient = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        reference = ops.full(self.feature_shape[-1:], self.attribution_reference())
        # Per feature, d(score)/d(x_scaled) * (x_scaled - reference) equals
        # d(score)/dx * (x - inverse(reference)): no round trip through the scaler.
        return gradient * (x - self.scaler.inverse(reference))

    def feature_scores(self, x, batch_size=None):
        """Per-feature attributions of the anomaly score, same shape as `x`.

        For every feature `j` of a sample: the gradient of the detector's
        score (`self.score_method`) with respect to the normalised input,
        times the normalised input's distance from the training data's
        centre, `(x_scaled_j - reference) * d(score)/d(x_scaled_j)`
        (gradient x input with `attribution_reference()` as the baseline).
        The sum over the features is the first-order estimate, made at `x`,
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

    def save(self, filepath, *args, **kwargs):
        """`keras.Model.save`, refused for a model with NaN or infinite weights.

        A local `.keras` file is written atomically: to a hidden
        `.<stem>.tmp-<hex>.keras` sibling, renamed into place, and removed on
        every failure path. Temporary files of earlier saves to the same path
        killed more than an hour ago are removed first
        (`keras_deepad.utils.scratch`).
        """
        self.check_finite_weights("saving it")
        save = super().save
        if not _local_keras_file(filepath, args, kwargs):
            return save(filepath, *args, **kwargs)
        final = scratch.as_keras_tmp(filepath)
        if final is not None:  # already a temporary name: the caller renames it into place
            scratch.remove_stale(final.parent, scratch.keras_tmp_pattern(final))
            return save(filepath, *args, **kwargs)
        scratch.write_atomically(filepath, lambda tmp: save(tmp, *args, **kwargs))

    def is_anomaly(self, x, batch_size=None):
        """Alias of `predict_labels`: 1 where a sample is flagged as anomalous."""
        return self.predict_labels(x, batch_size=batch_size)

    # --------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            normalization=self.normalization, score_method=self.score_method, seed=self.seed
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key, value in list(config.items()):
            if isinstance(value, dict) and "class_name" in value:
                config[key] = keras.saving.deserialize_keras_object(value)
        return cls(**config)


def _check_callbacks(callbacks):
    """Refuses, before any work, a callback whose optional package is missing."""
    import importlib.util

    for callback in callbacks or ():
        if isinstance(callback, keras.callbacks.TensorBoard) and (
            importlib.util.find_spec("tensorboard") is None
        ):
            raise ImportError(
                "keras.callbacks.TensorBoard needs the tensorboard package, which "
                'tensorflow-cpu does not install: pip install "keras-deepad[tensorboard]".'
            )


def _local_keras_file(filepath, args, kwargs) -> bool:
    """Whether `Model.save(filepath, *args, **kwargs)` writes a zipped `.keras` file on this
    machine that may replace an existing one without asking."""
    if not isinstance(filepath, str | os.PathLike):
        return False
    text = os.fspath(filepath)
    if not isinstance(text, str) or not text.endswith(".keras") or "://" in text:
        return False
    overwrite = args[0] if len(args) > 0 else kwargs.get("overwrite", True)
    zipped = args[1] if len(args) > 1 else kwargs.get("zipped")
    if zipped is False:
        return False
    return bool(overwrite) or not os.path.exists(text)
