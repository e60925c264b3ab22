"""An ensemble of detectors with standardised, combined scores (ROBOD-style, Ding et al. 2022)."""

from __future__ import annotations

import inspect
import warnings

import keras
import numpy as np
from keras import ops

from keras_deepad.models._ensemble_members import (
    _NO_JOINT_OBJECTIVE,
    COMBINES,
    _check_members,
    _copy_optimizer,
    _location_scale,  # noqa: F401  (the benchmarks and tests import it from here)
    _plain,
    check_ensemble_arguments,
    check_member_feature_scores,
    default_members,
    member_standardization,
    members_without_feature_scores,
    merged_history,
)
from keras_deepad.models._fit_helpers import check_fit_input, training_inputs
from keras_deepad.models.base import AnomalyDetector


@keras.saving.register_keras_serializable(package="keras_deepad")
class DetectorEnsemble(AnomalyDetector):
    """An ensemble of detectors whose standardised scores are combined.

    Deep detectors are sensitive to their hyperparameters and random
    initialisation, and unsupervised anomaly detection has no labels to
    choose them with. Following ROBOD, the ensemble trains several detectors
    (different families, architectures, seeds) on the same data and
    combines their scores, which reduces the dependence on any single
    choice. Scores of different detectors live on different scales (a
    squared error, a negative log-likelihood, a margin), so each member's
    score is first standardised with statistics of its own scores on the
    training data:

    `z_i(x) = (s_i(x) - location_i) / scale_i`, and
    `score(x) = mean_i z_i(x)` (`combine="mean"`) or `max_i z_i(x)`
    (`combine="max"`).

    With `standardization="robust"` the location is the median and the
    scale the interquartile range (IQR) of member i's training scores (a
    few anomalies in the training data barely move them); with `"zscore"`
    the mean and standard deviation. A member whose training scores have no
    spread is scaled by 1 (with a `RuntimeWarning`). The locations and
    scales are fitted state: non-trainable weights, saved with the model and
    in every export.

    `fit(x, epochs, batch_size, ...)` trains every member with its own
    `fit` (same data, epochs, batch size and verbosity; each member keeps
    its own objective, pretraining and fitted state such as the Deep SVDD
    centre or the OC-NN `r`), then calls `fit_standardization(x)`.
    `fit` takes no `callbacks`: a callback instance would watch each
    member's training in turn, so early stopping, checkpoints and logs
    would mix members. To train members with callbacks (or to combine
    members trained elsewhere), fit them yourself, build the ensemble from
    them and call `fit_standardization(x_train)` instead of `fit`.

    `compile(optimizer)` compiles every member with its own copy of the
    optimizer; the ensemble itself holds none. Uncompiled members get Adam
    from their own `fit`.

    Exports (`keras_deepad.export`) are one graph: the SavedModel and the
    float TFLite files (`"float32"`, `"float16"`, `"dynamic-int8"`) compute
    every member's exported score and combine them. Full-integer TFLite
    (`"int8"`, scored on the host) is refused: export the members on their
    own for that.

    Args:
        members: a list of detectors (instances of `AnomalyDetector`
            subclasses, trained or not; each object at most once), or a
            list of registered preset names (`keras_deepad.registry`), each
            built with its preset's arguments and seed `seed + i`, e.g.
            `["ae", "ae-conv", "deep-svdd-mnist"]`. `None`:
            `default_members(seed)`.
        standardization: `"robust"` (median / IQR) or `"zscore"`
            (mean / standard deviation) of each member's training scores.
        combine: `"mean"` (default) or `"max"` of the standardised member
            scores: the ensemble's `score_method` (`score(x, method=...)`
            applies either rule, from the same fitted state).
        normalization: must be `None`: each member normalises its own input.
        score_method: the base detector's name for `combine` (as the command
            line's `--score-method` passes it); must agree with `combine`
            when both are given.
        seed: seed of `default_members` and of members named by preset (unused
            with detector instances).

    Example:
        >>> members = [AE(seed=0), AE(seed=1), VAE(), DeepSVDD()]
        >>> model = DetectorEnsemble(members, standardization="robust")
        >>> model.fit(x_train, epochs=30, batch_size=64)
        >>> model.calibrate(x_train, contamination=0.05)
        >>> scores = model.score(x_test)            # mean of standardised scores
        >>> per_member = model.member_scores(x_test)  # (n_samples, n_members)

    Reference:
        Ding, Zhao, Akoglu, "Hyperparameter Sensitivity in Deep Outlier
        Detection: Analysis and a Scalable Hyper-Ensemble Solution" (ROBOD),
        NeurIPS 2022.
    """

    score_methods = COMBINES
    default_score_method = "mean"

    def __init__(
        self,
        members=None,
        standardization="robust",
        combine=None,
        normalization=None,
        score_method=None,
        seed=None,
        **kwargs,
    ):
        combine = check_ensemble_arguments(combine, score_method, normalization, standardization)
        members = default_members(seed) if members is None else _check_members(members, seed)
        super().__init__(normalization=None, score_method=combine, seed=seed, **kwargs)
        self.members = members
        self.standardization = standardization
        self.member_location = self.add_weight(
            shape=(len(members),),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            name="member_location",
        )
        self.member_scale = self.add_weight(
            shape=(len(members),),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            name="member_scale",
        )

    @property
    def combine(self) -> str:
        """The combination rule of `score` (the ensemble's `score_method`)."""
        return self.score_method

    # ---------------------------------------------------------------- build
    def build(self, input_shape):
        feature_shape = tuple(int(d) for d in tuple(input_shape)[1:])
        for i, member in enumerate(self.members):
            if member.built and member.feature_shape not in (None, feature_shape):
                raise ValueError(
                    f"members[{i}] ({member.name}) was built for samples of shape "
                    f"{member.feature_shape}; the ensemble received samples of shape "
                    f"{feature_shape}."
                )
        super().build(input_shape)

    def build_networks(self, feature_shape):
        for member in self.members:
            if not member.built or member.feature_shape is None:
                member.build((None, *feature_shape))

    # ---------------------------------------------------------------- train
    def compile(self, optimizer=None, **kwargs):
        """Compiles every member with its own copy of `optimizer` and `kwargs`.

        With `optimizer=None` (the default) each member gets its own default:
        Adam at its preset's learning rate for members named by preset, else
        at its class's `default_learning_rate`.
        """
        for member in self.members:
            if optimizer is not None:
                copy = _copy_optimizer(optimizer)
            else:
                rate = getattr(member, "preset_learning_rate", None)
                copy = None if rate is None else keras.optimizers.Adam(rate)
            member.compile(optimizer=copy, **kwargs)

    def per_sample_loss(self, x, training=False):
        raise ValueError(_NO_JOINT_OBJECTIVE)

    def evaluate(self, *args, **kwargs):
        """Not defined for an ensemble: evaluate its members (`model.members`)."""
        raise ValueError(_NO_JOINT_OBJECTIVE)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", **kwargs):
        """Trains every member on `x`, then standardises their scores on `x`.

        Args:
            x: training data (anything `AnomalyDetector.fit` accepts).
            y: ignored (unsupervised), with a warning.
            batch_size, epochs, verbose: passed to every member's `fit`.
            **kwargs: other `keras.Model.fit` arguments for every member
                (e.g. `validation_data`); not `callbacks` (see the class
                docstring).

        Returns:
            A `keras.callbacks.History` whose `history` holds each member's
            logs as `"<index>:<member name>/<key>"` and `"loss"`, the mean
            of the members' losses per epoch (for progress display: the
            members' losses have different units).
        """
        if kwargs.get("callbacks"):
            raise ValueError(
                "DetectorEnsemble.fit takes no callbacks: one callback would watch each "
                "member's training in turn (early stopping, checkpoints and logs would mix "
                "members). Fit each member with its own callbacks, then call "
                "ensemble.fit_standardization(x_train)."
            )
        kwargs.pop("callbacks", None)
        if y is not None:
            warnings.warn("DetectorEnsemble is trained without labels; y is ignored.", stacklevel=2)
        if inspect.isgenerator(x):
            raise ValueError(
                "DetectorEnsemble.fit cannot share one generator between its members (each "
                "member reads the data once per epoch): pass a keras.utils.PyDataset or a "
                "tf.data.Dataset instead."
            )
        adapt_steps = kwargs.pop("adapt_steps", None)
        x, state_x, feature_shape = training_inputs(
            self.feature_shape, x, kwargs.get("steps_per_epoch"), adapt_steps
        )
        if adapt_steps is not None:
            kwargs["adapt_steps"] = adapt_steps
        if not self.built or self.feature_shape is None:
            with self.distribute_strategy.scope():
                self.build((None, *feature_shape))
        histories = [
            member.fit(x, batch_size=batch_size, epochs=epochs, verbose=verbose, **kwargs)
            for member in self.members
        ]
        self.fit_standardization(state_x)
        self.warm_score_function()
        return merged_history(self, histories, epochs)

    def fit_standardization(self, x, batch_size=None):
        """Sets each member's location and scale from its scores on `x` (no training).

        `fit` calls it on the training data after training the members; call
        it yourself to combine members that are already trained.

        Args:
            x: the (normal, or mostly normal) training data.
            batch_size: scoring batch size.

        Returns:
            `(location, scale)`, float32 arrays with one entry per member.
        """
        x, feature_shape = check_fit_input(self.feature_shape, x)
        if not self.built or self.feature_shape is None:
            self.build((None, *feature_shape))
        locations, scales = member_standardization(
            self.members, x, self.standardization, batch_size
        )
        self.member_location.assign(np.asarray(locations, dtype=np.float32))
        self.member_scale.assign(np.asarray(scales, dtype=np.float32))
        return np.asarray(locations, np.float32), np.asarray(scales, np.float32)

    @property
    def is_standardized(self) -> bool:
        """Whether the members' locations and scales have been fitted."""
        values = np.concatenate(
            [ops.convert_to_numpy(self.member_location), ops.convert_to_numpy(self.member_scale)]
        )
        return bool(np.isfinite(values).all())

    def _require_standardized(self, what):
        if not self.built or self.feature_shape is None or not self.is_standardized:
            raise ValueError(
                f"DetectorEnsemble.{what} needs trained members and their score "
                "standardisation: call fit(x) or, with trained members, fit_standardization(x) "
                "first."
            )

    # ---------------------------------------------------------------- score
    def compute_member_scores(self, x, member_score_fns=None):
        """Standardised member scores of a raw batch, shape `(batch, n_members)`.

        Args:
            x: a raw input batch.
            member_score_fns: one `fn(x) -> (batch,)` per member computing
                its score (default: each member's `compute_scores` with its
                own `score_method`); exports pass the members' graph scores.
        """
        if member_score_fns is None:
            member_score_fns = [
                lambda t, m=member: m.compute_scores(t, m.score_method) for member in self.members
            ]
        raw = ops.stack([fn(x) for fn in member_score_fns], axis=-1)
        return (raw - self.member_location) / self.member_scale

    def network_graph_outputs(self, x):
        """Every member's `network_graph()` as one nested graph, outputs `"<member>/<output>"`."""
        return {
            f"{member.name}/{key}": value
            for member in self.members
            for key, value in member.network_graph()(x).items()
        }

    def combine_scores(self, member_scores, method):
        """Combines standardised member scores `(batch, n_members)` into `(batch,)`."""
        if method == "max":
            return ops.max(member_scores, axis=-1)
        return ops.mean(member_scores, axis=-1)

    def compute_scores(self, x, method):
        return self.combine_scores(self.compute_member_scores(x), method)

    def call(self, x, training=False):
        return self.compute_member_scores(x)

    # --------------------------------------------------------------- exports
    no_edge_head_hint = (
        "an ensemble is scored in one graph that combines its members' scores, and int8 "
        "exports are scored on the host; export it with quantization='float32', 'float16' or "
        "'dynamic-int8' (scoring='graph', which keras_deepad.edge also runs), or export each "
        "member on its own for int8"
    )

    def _exported_member_scores(self):
        """`fn(x) -> (batch, n_members)`: each member's own export graph score, standardised."""
        member_fns = [m.export_graph_score(m.score_method) for m in self.members]
        return lambda x: self.compute_member_scores(x, member_fns)

    def export_endpoints(self):
        """`member_scores`, and `feature_scores` when every member has them."""
        member_scores = self._exported_member_scores()
        endpoints = {"member_scores": lambda x: {"member_scores": member_scores(x)}}
        if self.has_feature_scores:
            endpoints["feature_scores"] = lambda x: {
                "feature_scores": self.compute_feature_scores(x)
            }
        return endpoints

    def export_graph_score(self, method):
        """The members' export graph scores, standardised and combined."""
        member_scores = self._exported_member_scores()
        return lambda x: self.combine_scores(member_scores(x), method)

    def score(self, x, batch_size=None, method=None):
        self._require_standardized("score")
        return super().score(x, batch_size=batch_size, method=method)

    def member_scores(self, x, batch_size=None):
        """Standardised scores of every member, shape `(n_samples, n_members)`."""
        self._require_standardized("member_scores")
        fn = self.traced_function(("member_scores",), self.compute_member_scores)
        return self.run_batched(x, fn, batch_size, (len(self.members),))

    # -------------------------------------------------------- feature scores
    @property
    def has_feature_scores(self) -> bool:
        """Whether every member has per-feature scores (`compute_feature_scores`)."""
        return not members_without_feature_scores(self.members)

    def compute_feature_scores(self, x):
        """Mean over members of `feature_scores_i / scale_i`, same shape as `x`.

        Standardising a member's score divides its changes by `scale_i`, so
        its per-feature scores are divided by the same scale (a location
        says nothing about single features). For members whose score is the
        mean of their feature scores (AE with `"mse"`), the mean over
        features of the result is the `"mean"` score plus the constant
        `mean_i(location_i / scale_i)`.
        """
        check_member_feature_scores(self.members)
        parts = [
            member.compute_feature_scores(x) / self.member_scale[i]
            for i, member in enumerate(self.members)
        ]
        return ops.mean(ops.stack(parts, axis=0), axis=0)

    def feature_scores(self, x, batch_size=None):
        """Per-feature scores, same shape as `x` (see `compute_feature_scores`).

        The mean over members of each member's `feature_scores` in units of
        its score scale, whatever `combine` is.
        """
        check_member_feature_scores(self.members)
        self._require_standardized("feature_scores")
        fn = self.traced_function(("feature_scores",), self.compute_feature_scores)
        return self.run_batched(x, fn, batch_size, self.feature_shape)

    # --------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.pop("score_method")
        config.update(
            members=[_plain(keras.saving.serialize_keras_object(m)) for m in self.members],
            standardization=self.standardization,
            combine=self.score_method,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return super().from_config(config)
