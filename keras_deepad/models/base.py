"""The contract every keras_deepad detector follows."""

from __future__ import annotations

import contextlib
import os
import random

import keras

from keras_deepad.layers import FeatureScaler
from keras_deepad.models._export_hooks import EXPORT_HOOKS, EdgeHead
from keras_deepad.models._fit_helpers import (  # noqa: F401  (imported from here by the families)
    AUTO_STEPS_PER_EXECUTION,
    FAST_PATH_BYTES,
    FittedStateCallback,
    MultiWorkerFitMixin,
    batch_weight,
    check_fit_args,
    multi_worker_logs,
    weighted_mean,
)
from keras_deepad.models._scoring import (  # noqa: F401
    DEFAULT_SCORE_BATCH,
    FLOAT32_MAX,
    SCORE_QUANTILES,
    ScoringMixin,
)
from keras_deepad.models._training import TrainingMixin
from keras_deepad.utils import scratch


class Declaration:
    """A class-level declaration that each instance may narrow through a documented hook.

    On the class, `Class.name` is the declared value: what any instance of
    the class may offer. On an instance, `instance.name` is
    `instance.narrow_<name>(declared)`, the hook the class defines to say
    what this instance offers (e.g. a WAE with the MMD penalty has no
    discriminator, so neither its score nor its optimizer). Read-only.
    """

    def __init__(self, value):
        self.value = value

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self.value
        return getattr(instance, f"narrow_{self.name}")(self.value)

    def __set__(self, instance, value):
        raise AttributeError(
            f"{self.name} is declared by the class and narrowed by narrow_{self.name}(); "
            "it cannot be set on an instance."
        )


@keras.saving.register_keras_serializable(package="keras_deepad")
class AnomalyDetector(TrainingMixin, ScoringMixin, MultiWorkerFitMixin, keras.Model):
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
        # Against the class's declaration here; a family whose instances narrow it calls
        # check_score_method() once what narrows it is set.
        self._refuse_score_method(score_method, type(self).score_methods)
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

    @staticmethod
    def _refuse_score_method(method, methods):
        if method not in methods:
            raise ValueError(
                f"score_method must be one of {tuple(methods)}. Received: score_method={method!r}"
            )

    def check_score_method(self):
        """Refuses a `score_method` this instance does not offer (see `score_methods`).

        The constructor checks the method against the class's declaration; a
        family whose instances narrow `score_methods` (a `Declaration`) calls
        this at the end of its constructor, once what narrows them is set.
        """
        self._refuse_score_method(self.score_method, self.score_methods)

    # ---------------------------------------------------------------- exports
    # What `keras_deepad.export` asks of a detector (see `models/_export_hooks.py`).

    #: What an int8 export suggests when `export_edge_head` has no head for the score
    #: method (default: override `export_edge_head`).
    no_edge_head_hint: str = ""

    def export_endpoints(self) -> dict:
        """Extra SavedModel signatures: `{name: fn(x) -> {output name: tensor}}` on raw `x`."""
        return {}

    def export_graph_score(self, method):
        """`fn(x) -> scores` for `serving_default` and float TFLite (TFLite builtins only).

        `compute_scores` unless the family needs a TFLite-compatible rewrite;
        the export checks it against `compute_scores` on probe inputs.
        """
        return lambda x: self.compute_scores(x, method)

    def export_edge_head(self, method) -> EdgeHead | None:
        """The full-integer TFLite part of `method`'s score, or `None` (no int8 export).

        An `EdgeHead`: a function of normalised inputs and the recipe
        `keras_deepad.edge` scores its outputs with on the host; the export
        keeps it only if that reproduces `compute_scores` on probe inputs.
        """
        return None

    @classmethod
    def export_family(cls) -> str:
        """Name of the nearest class that defines an export hook (exports record it)."""
        for klass in cls.__mro__:
            if any(hook in vars(klass) for hook in EXPORT_HOOKS):
                return klass.__name__
        return cls.__name__

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
