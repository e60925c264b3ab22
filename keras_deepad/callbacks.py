"""Training callbacks for reconstruction detectors on contaminated data.

Two of the three techniques of Merrill & Eskandarian (2020) for training
on unlabelled data that contains anomalies (the third, the percentile loss,
is the `percentile_loss` option of every `ReconstructionDetector`):

- `CumulativeErrorScoring`: records the error of every training sample at
  each epoch end; a sample's cumulative score is the sum over epochs.
- `KneeEarlyStopping`: finds the knee of the smoothed epoch-loss curve with
  Kneedle (`find_knee`) and stops training a margin after it.

Reference:
    N. Merrill and A. Eskandarian, "Modified Autoencoder Training and
    Scoring for Robust Unsupervised Anomaly Detection in Deep Learning",
    IEEE Access 8, pp. 101824-101833, 2020; V. Satopää, J. Albrecht,
    D. Irwin, B. Raghavan, "Finding a 'Kneedle' in a Haystack: Detecting
    Knee Points in System Behavior", ICDCS Workshops 2011.
"""

from __future__ import annotations

import time
import warnings

import keras
import numpy as np

# Kneedle lives in keras_deepad.knee (numpy only); its functions stay importable from here.
from keras_deepad.knee import _check_window, find_knee, running_mean

__all__ = ["CumulativeErrorScoring", "KneeEarlyStopping", "find_knee", "running_mean"]


class CumulativeErrorScoring(keras.callbacks.Callback):
    """Scores the training set at every epoch end; cumulative error scoring.

    At the end of each epoch the detector scores `x` with its own `score`
    (its `score_method_during_fit`) and the callback records the row: each
    sample's reconstruction error for reconstruction detectors (`"mse"` for
    `AE`, `"reconstruction"` for `AAE` and `WAE` — their hybrid scores
    need statistics that only exist once training ends — and the
    VAE's own `score_method`). A training sample's cumulative score is the sum of its errors
    over the epochs: anomalies that the network learns to reconstruct late
    in training still collect the large errors of the early epochs.

    The per-epoch errors and the cumulative scores describe the samples of
    `x` only: they are not a model for new data and are not saved with the
    model (new data is scored with `model.score`). Records start afresh at
    each `fit` that uses the callback.

    Args:
        x: the training data to score (anything `model.score` accepts;
            usually the array passed to `fit`). Its order must be the same at
            every epoch (a `tf.data.Dataset` here must not reshuffle).
        method: the score method (default: the detector's
            `score_method_during_fit`).
        batch_size: scoring batch size (default: `score`'s).

    Attributes:
        errors: float32 array `(n_epochs, n_samples)`, one row per epoch.
        scores: float64 array `(n_samples,)`, the cumulative error
            `errors.sum(axis=0)` (higher = more anomalous).

    Example:
        >>> ces = CumulativeErrorScoring(x_train)
        >>> model = AE(percentile_loss=0.95)
        >>> model.fit(x_train, epochs=50, callbacks=[ces])
        >>> train_scores = ces.scores
        >>> flags = ces.flag(contamination=0.1)

    Reference:
        Merrill & Eskandarian, IEEE Access 8, 2020.
    """

    def __init__(self, x, method=None, batch_size=None):
        super().__init__()
        if x is None:
            raise ValueError("CumulativeErrorScoring needs the training data x. Received: None")
        self.x = x
        self.method = method
        self.batch_size = batch_size
        self._rows = []

    def on_train_begin(self, logs=None):
        self._rows = []

    def on_epoch_end(self, epoch, logs=None):
        method = self.method or self.model.score_method_during_fit
        self._rows.append(self.model.score(self.x, batch_size=self.batch_size, method=method))

    @property
    def errors(self) -> np.ndarray:
        if not self._rows:
            raise ValueError("no errors recorded yet: fit the model with this callback first.")
        return np.stack(self._rows)

    @property
    def scores(self) -> np.ndarray:
        return self.errors.sum(axis=0, dtype=np.float64)

    def threshold(self, contamination=0.1) -> float:
        """The `1 - contamination` quantile of the cumulative scores.

        It is on the scale of `scores` (a sum over epochs), not of
        `model.score`, so it is returned rather than stored in the model.
        """
        if not 0.0 < float(contamination) < 1.0:
            raise ValueError(
                f"contamination must be in (0, 1). Received: contamination={contamination}"
            )
        return float(np.quantile(self.scores, 1.0 - float(contamination)))

    def flag(self, contamination=0.1) -> np.ndarray:
        """0/1 labels of the training samples (1 = anomaly) by cumulative score."""
        return (self.scores > self.threshold(contamination)).astype(np.int64)


class KneeEarlyStopping(keras.callbacks.Callback):
    """Stops training a margin after the knee of the smoothed loss curve.

    After every epoch the monitored value (default: the training loss, which
    is the trimmed loss when `percentile_loss` is on) is appended to the
    curve, the curve is smoothed by a running mean and `find_knee` looks for
    its knee. With epochs counted from 1, training stops at epoch `e` when
    `margin * k < e` for the knee epoch `k`: with the defaults, a run whose
    loss has flattened stops 20 % after its knee; a loss still falling
    steadily has no knee and runs on.

    The defaults follow a public re-implementation of Merrill & Eskandarian
    (running mean over all epochs so far, Kneedle with S = 5, margin 1.2;
    it follows the mean training-set error at each epoch end where this
    callback follows a log entry such as the epoch's mean training loss);
    the paper's own values could not be verified.

    Args:
        monitor: the log entry to follow (e.g. `"loss"`, `"val_loss"`); an
            epoch whose logs lack it is skipped with a warning.
        smoothing: `"cumulative"` (mean of all epochs so far) or a positive
            int window of a trailing running mean (`1`: no smoothing).
        sensitivity: Kneedle's S (see `find_knee`).
        margin: stop when `margin * knee < epoch` (epochs counted from 1);
            must be >= 1.
        min_epochs: no stopping before this many epochs (default 10, >= 3).
        verbose: 1 prints a line when training is stopped.

    Attributes:
        history: the monitored values, one per epoch.
        knee_epoch: 0-based index of the last knee found (`None`: none yet).
        stopped_epoch: 0-based index of the epoch after which training was
            stopped, or `None` if it ran to the end.

    Example:
        >>> stopper = KneeEarlyStopping()
        >>> model.fit(x_train, epochs=200, callbacks=[stopper])
        >>> stopper.knee_epoch, stopper.stopped_epoch

    Reference:
        Merrill & Eskandarian, IEEE Access 8, 2020; Satopää et al. 2011.
    """

    def __init__(
        self,
        monitor="loss",
        smoothing="cumulative",
        sensitivity=5.0,
        margin=1.2,
        min_epochs=10,
        verbose=0,
    ):
        super().__init__()
        if smoothing != "cumulative":
            _check_window(smoothing)
        if not float(sensitivity) >= 0:
            raise ValueError(f"sensitivity must be >= 0. Received: sensitivity={sensitivity}")
        if not float(margin) >= 1.0:
            raise ValueError(f"margin must be >= 1. Received: margin={margin}")
        if isinstance(min_epochs, bool) or int(min_epochs) != min_epochs or min_epochs < 3:
            raise ValueError(f"min_epochs must be an int >= 3. Received: min_epochs={min_epochs}")
        self.monitor = monitor
        self.smoothing = smoothing
        self.sensitivity = float(sensitivity)
        self.margin = float(margin)
        self.min_epochs = int(min_epochs)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.history = []
        self.knee_epoch = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            # As Keras' EarlyStopping: e.g. "val_loss" on an epoch without validation.
            warnings.warn(
                f"KneeEarlyStopping monitors {self.monitor!r}, which is not in the logs of "
                f"epoch {epoch + 1} (available: {sorted(logs)}); the epoch is skipped.",
                stacklevel=2,
            )
            return
        self.history.append(float(logs[self.monitor]))
        if self.should_stop():
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(
                    f"KneeEarlyStopping: knee at epoch {self.knee_epoch + 1}, "
                    f"stopped after epoch {epoch + 1}."
                )

    def should_stop(self, history=None) -> bool:
        """Updates `knee_epoch` from the curve so far and applies the stopping rule.

        Args:
            history: monitored values to judge instead of `self.history`
                (to drive the rule with a given curve).
        """
        history = self.history if history is None else list(history)
        n = len(history)
        if n < 3 or not np.isfinite(history).all():
            return False  # too short, or a diverged loss: not a curve to judge
        knee = find_knee(running_mean(history, self.smoothing), sensitivity=self.sensitivity)
        self.knee_epoch = knee
        return knee is not None and n >= self.min_epochs and self.margin * (knee + 1) < n


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss; the detector holds its last finite weights."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops `fit` at the first non-finite loss, restores the last finite state and raises.

    `AnomalyDetector.fit` adds it unless `fit(..., check_finite=False)`. The
    weights and every optimizer's variables are kept at the start and at
    epoch ends whose logs are all finite (see below); on a NaN or infinite loss they are
    put back and `TrainingDivergedError` names the epoch, the batch and the
    likely causes. The check reads the loss once per compiled call
    (`steps_per_execution` batches), so the batch is given as "at or before".

    Copying the state costs about as much as a small table's epoch, so an
    epoch end is kept only once the training since the last copy took
    `1 / SNAPSHOT_BUDGET` times as long as that copy (at most 5% of the fit
    goes to copies): the weights put back are those of the last epoch kept,
    which the error names.
    """

    #: The most of a fit's time that copies of the last finite state may take.
    SNAPSHOT_BUDGET = 0.05

    def __init__(self, detector):
        super().__init__()
        self.detector = detector
        self.epoch = 0
        self._saved, self._saved_epoch, self._last_loss = None, None, None
        self._saved_at, self._save_cost = 0.0, 0.0

    def _state(self):
        variables = list(self.detector.weights)
        for name in self.detector.optimizer_variables():
            optimizer = getattr(self.detector, name, None)
            if optimizer is not None:
                variables += list(optimizer.variables)
        return variables

    def _save(self):
        start = time.perf_counter()
        self._saved = [np.array(v.numpy()) for v in self._state()]
        self._saved_at = time.perf_counter()
        self._save_cost = self._saved_at - start

    def on_train_begin(self, logs=None):
        self._save()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(np.mean(loss))):
            self._fail(f"at or before batch {batch + 1} of epoch {self.epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(np.mean(v)) for k, v in (logs or {}).items()}
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        if bad:
            self._fail(f"in epoch {epoch + 1} ({', '.join(bad)})")
        if time.perf_counter() - self._saved_at >= self._save_cost / self.SNAPSHOT_BUDGET:
            self._save()
            self._saved_epoch, self._last_loss = epoch + 1, values.get("loss")

    def _fail(self, where):
        for variable, value in zip(self._state(), self._saved, strict=True):
            variable.assign(value)
        self.model.stop_training = True
        name = type(self.detector).__name__
        kept = (
            f"the end of epoch {self._saved_epoch} (loss {self._last_loss:.6g})"
            if self._saved_epoch
            else "the start of this fit"
        )
        raise TrainingDivergedError(
            f"{name}: the training loss became NaN or infinite {where}. The detector holds "
            f"its weights from {kept}. Likely causes: a learning rate too high for this data; "
            "inputs far outside the range the normaliser adapted on; a NaN or infinite value "
            "in the data (a tf.data input is checked only in the batches the normaliser "
            "reads). Lower the learning rate, scale or clean the data, or pass "
            "fit(..., check_finite=False) to train on regardless."
        )
