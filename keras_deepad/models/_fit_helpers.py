"""Module-level helpers of `fit` (inputs, sample weights, strategies) and the callbacks it adds."""

from __future__ import annotations

import inspect
import itertools
import math
import warnings
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.utils.validation import check_array, check_dataset_spec, check_number


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


#: Arrays up to this size train through one repeated `tf.data` pipeline (`repeated_dataset`).
FAST_PATH_BYTES = 256 * 2**20
#: The most batches `fit` runs per compiled call when `compile` left `steps_per_execution`
#: to it (in-memory arrays): a small table's epoch is one call, a large one's a few hundred.
AUTO_STEPS_PER_EXECUTION = 32
#: Arrays of at least this many rows are shuffled by gathering batches from one permutation
#: per epoch (`epoch_batches`); smaller ones through a shuffle buffer, whose pipeline starts
#: about 50 ms sooner and costs little per epoch at that size.
GATHER_ROWS = 32_768


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


def check_fit_input(feature_shape, x, name="x"):
    """`(x, its sample shape)`: a dataset's spec or an array's values checked (`feature_shape`)."""
    if isinstance(x, tf.data.Dataset):
        spec = check_dataset_spec(x, feature_shape, name=name)
        if spec.shape.rank is None or any(d is None for d in spec.shape[1:]):
            raise ValueError(f"{name} must have a static sample shape; got {spec.shape}.")
        return x, tuple(int(d) for d in spec.shape[1:])
    array = check_array(x, feature_shape, name=name)
    return array, array.shape[1:]


def training_inputs(feature_shape, x, steps_per_epoch=None, adapt_steps=None):
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
        x, feature_shape = check_fit_input(feature_shape, x)
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
        state, feature_shape = check_fit_input(feature_shape, _stack_batches(batches))
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
        state, feature_shape = check_fit_input(feature_shape, _stack_batches(batches))
        return _replay(batches, x), state, feature_shape
    x, feature_shape = check_fit_input(feature_shape, x)
    return x, x, feature_shape


def repeated_dataset(detector, x, batch_size, sample_weight, kwargs):
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
    single_device = getattr(detector, "_distribute_strategy", None) is None
    single_device = single_device and not tf.distribute.has_strategy()
    if getattr(detector, "_auto_steps", False) and single_device:
        detector._set_steps_per_execution(
            max(d for d in range(1, AUTO_STEPS_PER_EXECUTION + 1) if steps % d == 0)
        )
    elif steps % detector.steps_per_execution:
        return None
    columns = (x,) if sample_weight is None else (x, np.zeros(len(x), np.int8), sample_weight)
    shuffle = kwargs.pop("shuffle", True)
    kwargs["shuffle"] = False  # done in the pipeline; Keras would warn that it ignores it
    kwargs.pop("sample_weight", None)
    kwargs["steps_per_epoch"] = steps
    if len(x) < GATHER_ROWS:
        # A shuffle buffer costs little on a small array and its pipeline starts faster.
        data = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            seed = None if detector.seed is None else int(detector.seed)
            data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return data.batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE)
    seed = None
    if shuffle:
        # Follows keras.utils.set_random_seed when the detector has no seed of its own.
        seed = detector.seed
        if seed is None:
            seed = int(tf.random.uniform((), maxval=2**31 - 1, dtype=tf.int64))
    return epoch_batches(columns, batch_size, seed)


def epoch_batches(columns, batch_size, seed=None):
    """Endless epochs of `batch_size`-row batches of in-memory `columns` (equal lengths).

    Each epoch is one pass over every row, the last batch partial. With a
    `seed`, epoch `e` visits the rows in the order of a stateless shuffle
    seeded `(seed, e)`; without one, in order. Rows are gathered a batch
    at a time from one permutation per epoch, not shuffled one by one
    through a buffer: a pass over 100,000 rows costs a few hundredths of a
    second instead of a few tenths, time the two cores spend training.
    """
    tensors = tuple(tf.constant(c) for c in columns)
    n = len(columns[0])
    starts = tf.data.Dataset.range(0, n, batch_size)

    def epoch(index):
        if seed is None:
            return starts.map(lambda s: tf.range(s, tf.minimum(s + batch_size, n)))
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), index])
        )
        return starts.map(lambda s: order[s : s + batch_size])

    def gather(rows):
        return tuple(tf.gather(t, rows) for t in tensors)

    with warnings.catch_warnings():
        # Under tf.config.run_functions_eagerly TensorFlow warns that tf.data functions
        # still run as graphs: true, and what these index functions need.
        warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_run")
        data = tf.data.Dataset.range(2**62).flat_map(epoch).map(gather)
    return data.prefetch(tf.data.AUTOTUNE)
