"""`PyODDetector`: a PyOD 3 detector and scikit-learn estimator around any registered detector."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import precision_score, roc_auc_score
from sklearn.utils import check_consistent_length, column_or_1d, deprecated
from sklearn.utils.validation import check_is_fitted, validate_data

from keras_deepad.registry import get_spec, train_detector
from keras_deepad.sklearn_api._pyod_outputs import _FITTED, PyODOutputs, _is_rate

#: `validate_data` settings shared by `fit` and the scoring methods: float input (float32
#: kept as is), no NaN or inf, no sparse matrices, and images (rank > 2) allowed for the
#: convolutional detectors.
_VALIDATION = {"dtype": [np.float64, np.float32], "allow_nd": True}


def _constructor_params(cls) -> set[str]:
    """The keyword arguments `cls(...)` accepts: its and its keras_deepad bases' `__init__`s."""
    names = {"name"}  # keras.Model's
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras_deepad") and "__init__" in vars(klass):
            names.update(
                p.name
                for p in inspect.signature(klass.__init__).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            )
    return names


def _precision_n_scores(y, scores) -> float:
    """PyOD's `precision_n_scores(y, y_pred)` (`pyod.utils.utility`): precision of the
    top `n` scores, `n` the number of outliers in `y`."""
    y = column_or_1d(y)
    scores = column_or_1d(scores)
    check_consistent_length(y, scores)
    outliers_fraction = np.count_nonzero(y) / len(y)
    threshold = np.percentile(scores, 100 * (1 - outliers_fraction))
    return precision_score(y, (scores > threshold).astype("int"))


class PyODDetector(PyODOutputs, BaseEstimator):
    """A keras_deepad detector that PyOD 3 and scikit-learn code take as one of theirs.

    It has the API of PyOD 3's `pyod.models.base.BaseDetector`, with the
    same arguments and the same results computed from the same formulas
    (re-implemented here, PyOD is not needed):

    - `fit(X, y=None)` trains on unlabelled data (`y` is ignored) and sets
      `decision_scores_` (the training scores, higher = more anomalous),
      `threshold_` (their `100 * (1 - contamination)` percentile),
      `labels_` (0 inlier / 1 outlier: score above `threshold_`), `_mu`
      and `_sigma` (their mean and standard deviation, for "unify"),
      `history_` (the Keras `History.history` dict: per-epoch losses),
      `detector_` (the trained `keras_deepad` model, its `threshold`
      calibrated too, ready for `save` and export), `n_features_in_` and,
      for a DataFrame, `feature_names_in_`.
    - `decision_function(X)`: the anomaly scores of `X`.
    - `predict(X, return_confidence=False)`: 0/1 labels (and the
      confidence).
    - `predict_proba(X, method="linear", return_confidence=False)`:
      `[P(inlier), P(outlier)]`, "linear" min-max scaling the score by the
      training scores (clipped to [0, 1]) or "unify"
      `erf((score - _mu) / (_sigma * sqrt(2)))` clipped (Kriegel et al.
      2011).
    - `predict_confidence(X)`: ExCeeD (Perini et al. 2020), the
      probability that the prediction stays the same under a perturbed
      training set.
    - `predict_with_rejection(X, T=32, return_stats=False, delta=0.1,
      c_fp=1, c_fn=1, c_r=None)` and `compute_rejection_stats(...)`:
      RejEx (Perini et al. 2023), -2 for rejected predictions, with the
      expected rejection rate and the upper bounds of the rejection rate
      and of the cost.
    - `fit_predict(X)`, `fit_predict_score(X, y, scoring)` (deprecated in
      PyOD, and here) and `_predict_rank(X, normalized=False)`.

    Every scoring method also takes `batch_size` (samples per forward
    pass), as PyOD's deep detectors do.

    `contamination` is a rate in (0, 0.5] or, as in PyOD, a PyThresh
    thresholder (an object with `fit(scores)`, `labels_`, `thresh_` and
    `predict(scores)`), which is fitted on a copy (`thresholder_`) so that
    the parameter stays untouched, as scikit-learn requires.

    Hyperparameters are flat: the wrapper's own (`detector`,
    `contamination`, `epochs`, `batch_size`, `learning_rate`, `seed`,
    `verbose`) and any constructor argument of the detector as a keyword
    (`PyODDetector("vae", latent_dim=2)`), stored as attributes of that
    name. `get_params`, `set_params`, `clone` and `GridSearchCV` see them
    all (`{"latent_dim": [2, 8]}`); `detector_params__latent_dim` is
    accepted as another spelling of `latent_dim`. Unknown names raise a
    `ValueError` at `fit`, which names the detector's parameters.

    Differences from PyOD, where PyOD's behaviour is not a contract:

    - PyOD checks `contamination` in `__init__`; scikit-learn forbids that,
      so `fit` checks it (same rule, same `ValueError`).
    - PyOD warns when `y` is passed to `fit` and then sizes
      `predict_proba`'s columns by the number of distinct values of `y`
      (failing for one value); here `y` is ignored silently and
      `predict_proba` always has the two columns.
    - PyOD's `c_r` defaults to -1, which warns on every call and then
      uses the contamination; here the default is `None`, which uses the
      contamination silently (a negative value still warns).
    - `fit_predict` is not deprecated (it is scikit-learn's standard
      method); `fit_predict_score` is, as in PyOD.
    - `compute_rejection_stats` (and `predict_with_rejection(...,
      return_stats=True)`) with `int(n * contamination) < 1` raise a
      `ValueError` that says so, where PyOD's root finder fails with
      "f(a) and f(b) must have different signs"; and the rejection-rate
      bound takes the same value without PyOD's "invalid value encountered
      in sqrt" `RuntimeWarning`.
    - Input goes through scikit-learn's `validate_data`: `n_features_in_`
      and `feature_names_in_` are set, and a DataFrame whose columns are
      renamed or reordered after `fit` is a `ValueError`, as in
      scikit-learn.

    scikit-learn: like PyOD 3's `BaseDetector`, it inherits `BaseEstimator`
    only and tags itself `estimator_type="outlier_detector"`. It passes
    `sklearn.utils.estimator_checks.check_estimator` except these
    checks, which cannot apply (tests/test_sklearn_api.py runs them and
    marks them as expected failures):

    - `check_outliers_train`, `check_outliers_fit_predict` (and the
      read-only memmap variant): they require scikit-learn's outlier
      labels -1 (outlier) / +1 (inlier), `score_samples` and `offset_`;
      PyOD's convention, kept here, is 0 (inlier) / 1 (outlier), and
      PyOD's own detectors fail these checks the same way.
    - `check_no_attributes_set_in_init`, for an instance built with
      detector keyword arguments only: they are stored as attributes
      under their own names (as PyOD's detectors store their
      hyperparameters), which the check does not find among `__init__`'s
      named arguments. An instance without them passes.

    The checks ran on the "ae" and "ocnn" detectors. With the VAE
    scored by its Monte-Carlo score ("reconstruction_probability"),
    `check_methods_subset_invariance` and
    `check_methods_sample_order_invariance` fail too: its float32
    reductions round differently (~5e-7) as the batch's size changes,
    beyond those checks' 1e-7 / 1e-9 tolerances.

    Args:
        detector: a registered detector name (see `keras-deepad models`).
        contamination: expected fraction of anomalies in the training data,
            in (0, 0.5], or a PyThresh thresholder.
        epochs: training epochs.
        batch_size: training minibatch size (`None`: the preset's, else 32).
        learning_rate: Adam learning rate (`None`: the preset's, else the
            detector's own).
        detector_params: deprecated: a dict of detector constructor
            arguments; pass them as keyword arguments instead (these win).
        seed: seeds Keras, NumPy and Python before training; with a seed,
            two fits on the same data give the same model.
        verbose: Keras `fit` verbosity.
        **detector_kwargs: constructor arguments of the detector overriding
            its preset (e.g. `latent_dim=2`, `hidden_units=(32,)`).

    Example:
        >>> clf = PyODDetector("vae", latent_dim=2, epochs=30, contamination=0.05)
        >>> clf.fit(X_train)
        >>> y_pred, confidence = clf.predict(X_test, return_confidence=True)
        >>> proba = clf.predict_proba(X_test, method="unify")
    """

    def __init__(
        self,
        detector="ae",
        contamination=0.1,
        epochs=50,
        batch_size=None,
        learning_rate=None,
        detector_params=None,
        seed=None,
        verbose=0,
        **detector_kwargs,
    ):
        self.detector = detector
        self.contamination = contamination
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.detector_params = detector_params
        self.seed = seed
        self.verbose = verbose
        for name, value in detector_kwargs.items():
            setattr(self, name, value)
        self._detector_kwarg_names = tuple(detector_kwargs)

    # ------------------------------------------------------------ parameters
    def _kwarg_names(self) -> tuple[str, ...]:
        # Absent from instances pickled before detector keyword arguments existed.
        return getattr(self, "_detector_kwarg_names", ())

    def get_params(self, deep=True):
        """The wrapper's parameters and the detector keyword arguments, by name."""
        params = super().get_params(deep=deep)
        for name in self._kwarg_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params):
        """Sets parameters; a name that is not the wrapper's is a detector argument.

        `detector_params__NAME` is taken as `NAME`. Values and detector
        argument names are checked by `fit`, as scikit-learn recommends.
        """
        params = {
            (key[len("detector_params__") :] if key.startswith("detector_params__") else key): v
            for key, v in params.items()
        }
        names = self._kwarg_names()
        known = set(self._get_param_names()) | set(names)
        new = [key for key in params if "__" not in key and key not in known]
        for key in new:
            setattr(self, key, params[key])
        self._detector_kwarg_names = (*names, *new)
        return super().set_params(**{k: v for k, v in params.items() if k not in new})

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "outlier_detector"  # as PyOD 3's BaseDetector
        tags.target_tags.required = False
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "detector_")

    def _check_contamination(self):
        contamination = self.contamination
        if _is_rate(contamination):
            if not 0.0 < contamination <= 0.5:
                raise ValueError(f"contamination must be in (0, 0.5], got: {contamination:f}")
        elif not (hasattr(contamination, "fit") and hasattr(contamination, "predict")):
            raise ValueError(
                "contamination must be a number in (0, 0.5] or a PyThresh thresholder "
                f"(with fit and predict). Received: contamination={contamination!r}"
            )

    def _detector_arguments(self) -> dict:
        """The detector's constructor arguments: `detector_params` (deprecated), then the
        keyword arguments, each name checked against the detector's constructor."""
        params = {}
        if self.detector_params is not None:
            warnings.warn(
                "detector_params is deprecated: pass the detector's arguments as keyword "
                f"arguments instead, e.g. PyODDetector({self.detector!r}, latent_dim=2).",
                FutureWarning,
                stacklevel=3,
            )
            if not isinstance(self.detector_params, dict):
                raise ValueError(
                    "detector_params must be a dict. "
                    f"Received: detector_params={self.detector_params!r}"
                )
            params.update(self.detector_params)
        params.update({name: getattr(self, name) for name in self._kwarg_names()})
        spec = get_spec(self.detector)
        shadowing = sorted(name for name in params if hasattr(type(self), name))
        if shadowing:
            raise ValueError(
                f"{shadowing} name methods or attributes of PyODDetector, not detector arguments."
            )
        valid = _constructor_params(spec.cls)
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(
                f"invalid parameter(s) {unknown} for detector {self.detector!r} "
                f"({spec.class_name}); its parameters are {sorted(valid - {'name'})}, and "
                "PyODDetector's own are "
                f"{sorted(set(self._get_param_names()) - {'detector_params'})}."
            )
        return params

    # ------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Trains the detector on `X` (unsupervised: `y` is ignored).

        Returns:
            self, with `decision_scores_`, `threshold_`, `labels_`, `_mu`,
            `_sigma`, `history_`, `detector_`, `n_features_in_` (and
            `feature_names_in_` for a DataFrame) set.
        """
        self._check_contamination()
        params = self._detector_arguments()
        X = validate_data(self, X, **_VALIDATION)
        model, history = train_detector(
            self.detector,
            X,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            params=params,
            verbose=self.verbose,
        )
        self.detector_ = model
        self.history_ = dict(history.history)
        self._classes = 2
        self.decision_scores_ = self._scores(X)
        self._process_decision_scores()
        return self

    def fit_predict(self, X, y=None):
        """Fits on `X` and returns `labels_` (0 inlier, 1 outlier)."""
        return self.fit(X, y).labels_

    @deprecated()
    def fit_predict_score(self, X, y, scoring="roc_auc_score"):
        """Fits on `X` and scores `decision_scores_` against the labels `y` (PyOD's,
        deprecated there too): `scoring` is "roc_auc_score" or "prc_n_score" (precision
        at rank n, n the number of outliers in `y`). Prints and returns the score."""
        self.fit(X)
        if scoring == "roc_auc_score":
            score = roc_auc_score(y, self.decision_scores_)
        elif scoring == "prc_n_score":
            score = _precision_n_scores(y, self.decision_scores_)
        else:
            raise NotImplementedError(
                "PyOD built-in scoring only supports ROC and Precision @ rank n"
            )
        print(f"{scoring}: {score}")
        return score

    # --------------------------------------------------------------- scoring
    def _scores(self, X, batch_size=None) -> np.ndarray:
        return self.detector_.score(X, batch_size=batch_size).astype(np.float64)

    def decision_function(self, X, batch_size=None):
        """Anomaly scores of `X`, shape `(n_samples,)` (higher = more anomalous).

        Args:
            X: samples with the features seen in `fit` (same DataFrame columns).
            batch_size: samples per forward pass (default 1024).
        """
        check_is_fitted(self, _FITTED)
        X = validate_data(self, X, reset=False, **_VALIDATION)
        return self._scores(X, batch_size)

    def predict(self, X, return_confidence=False, batch_size=None):
        """0 (inlier) / 1 (outlier): the score above `threshold_`.

        Returns:
            The labels, shape `(n_samples,)`; with `return_confidence`,
            `(labels, predict_confidence(X))`.
        """
        scores = self.decision_function(X, batch_size=batch_size)
        prediction = self._labels(scores)
        if return_confidence:
            return prediction, self._confidence(scores)
        return prediction
