"""Module-level helpers of `fit` (inputs, sample weights, strategies) and the callbacks it adds."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.utils.validation import (
    check_number,
)


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
