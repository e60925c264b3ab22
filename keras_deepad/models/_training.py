"""`TrainingMixin`: compile, train and test steps, optimizers and `fit` of every detector."""

from __future__ import annotations

import inspect
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_deepad.models._fit_helpers import (
    _check_callbacks,
    _replicas,
    batch_weight,
    check_fit_args,
    multi_worker_logs,
    repeated_dataset,
    training_inputs,
    weighted_mean,
)
from keras_deepad.models._shared_steps import shared_train_function
from keras_deepad.utils.validation import (
    check_array,
    check_sample_weight,
)


class TrainingMixin:
    """Training half of `AnomalyDetector` (put before `keras.Model` in the bases)."""

    #: Optimizers besides `optimizer` (adversarial detectors): attribute name -> Adam
    #: arguments of the default. `compile` makes them and `get_compile_config` saves them;
    #: `optimizer_variables` says which variables each updates.
    extra_optimizers: dict = {}

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
                `LossScaleOptimizer` (unless `auto_scale_loss=False`), and
                the extra optimizers with it.
            loss: `None`; only detectors whose objective is a plain
                reconstruction error (`AE`) accept a Keras loss, used per
                sample instead of their `loss` argument. Others raise.
            metrics, weighted_metrics: Keras metrics of the reconstruction
                (`ReconstructionDetector`s): each compares the normalised
                input with its reconstruction in inference mode, after the
                step, and appears in the history (`weighted_metrics` use
                `fit`'s `sample_weight`). Detectors without a reconstruction
                raise: their logs already report their objective's parts.
            **kwargs: the detector's other optimizers by name (see
                `extra_optimizers`, e.g. the AAE's `discriminator_optimizer`
                and `generator_optimizer`; `None` picks the default) and other
                `keras.Model.compile` arguments (`steps_per_execution`,
                `jit_compile`, `auto_scale_loss`, ...).
        """
        extra = {}
        for name, defaults in self.extra_optimizers.items():
            value = kwargs.pop(name, None)
            extra[name] = (
                keras.optimizers.Adam(**defaults) if value is None else keras.optimizers.get(value)
            )
        unknown = [k for k in kwargs if k.endswith("optimizer")]
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.compile takes the optimizers "
                f"{['optimizer', *self.extra_optimizers]}. Received: {unknown}"
            )
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
        scale_losses = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        for name, value in extra.items():
            if scale_losses and not isinstance(value, keras.optimizers.LossScaleOptimizer):
                # As Keras wraps `optimizer` under mixed_float16: every update scales its loss.
                value = keras.optimizers.LossScaleOptimizer(value)
            setattr(self, name, value)
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
        if not self.compiled or getattr(self, "_compile_config", None) is None:
            return None
        config = self._compile_config.serialize()
        for name in self.extra_optimizers:
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config

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

        The second and later models of one configuration in a process (same
        class and config, any seed; same input shape, optimizers, variables
        and trained variables) do not trace the training loop again: they run the first
        one's traced loop with their own variables, and train exactly as on
        a trace of their own (a 500 x 9 table's 50-epoch `fit` on 2 CPU
        cores: 0.44 s instead of 0.88 s, `benchmarks/training_speed.py`).
        `model.share_training_graph = False` opts a model out; compiled
        metrics, `compile(loss=...)`, a function set on the instance and
        `tf.distribute` strategies keep each model's own trace.

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
        x, state_x, feature_shape = training_inputs(
            self.feature_shape, x, kwargs.get("steps_per_epoch"), adapt_steps
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
        repeated = repeated_dataset(self, x, batch_size, sample_weight, kwargs)
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
        self.check_score_ready(method)
        fn = self.traced_function(("score", method), lambda t: self.compute_scores(t, method))
        fn(np.zeros((1, *self.feature_shape), np.float32))

    #: Train on the traced loop of an earlier model of the same configuration (see
    #: `keras_deepad.models._shared_steps`); set `False` on a model to trace its own.
    share_training_graph = True

    def make_train_function(self, force=False):
        """Keras' training function, run on a configuration's shared trace where one exists.

        The second and later models of one configuration (class, config, input
        shape, optimizers, variables) skip tracing: they run the first one's
        traced loop with their own variables.
        """
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=force)
        self.train_function = shared_train_function(self, self.train_function)
        return self.train_function

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
