"""PyOD's outputs from the training scores: threshold and labels, probabilities, ExCeeD
confidence, RejEx rejection and ranks (`PyODOutputs`, a base of `PyODDetector`)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
from scipy.optimize import root_scalar
from scipy.special import erf
from scipy.stats import binom
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.validation import check_is_fitted

#: Attributes `fit` sets; PyOD's methods check these (`check_is_fitted`).
_FITTED = ["decision_scores_", "threshold_", "labels_"]


def _is_rate(contamination) -> bool:
    """PyOD's test for a numeric contamination (anything else is a PyThresh thresholder)."""
    return isinstance(contamination, float | int)


def _binom_cdf_root(k, n, level) -> float:
    """The `p` in [0, 1] with `binom.cdf(k, n, p) = level`, found as PyOD finds it."""
    return root_scalar(
        lambda p, k, n, c: binom.cdf(k, n, p) - c,
        bracket=[0, 1],
        method="brentq",
        args=(k, n, level),
    ).root


class PyODOutputs:
    """What PyOD's `BaseDetector` derives from `decision_scores_` and `decision_function`.

    A base class of `PyODDetector` (its public methods are documented there); it
    reads `decision_scores_`, `labels_`, `contamination`, `detector_` and calls
    `decision_function`, which the subclass provides.
    """

    def _process_decision_scores(self):
        """PyOD's `BaseDetector._process_decision_scores`: `threshold_`, `labels_`, `_mu`
        and `_sigma` from `decision_scores_`."""
        scores = self.decision_scores_
        if _is_rate(self.contamination):
            self.threshold_ = np.percentile(scores, 100 * (1 - self.contamination))
            self.labels_ = (scores > self.threshold_).astype("int").ravel()
        else:  # a PyThresh thresholder
            self.thresholder_ = copy.deepcopy(self.contamination)
            self.thresholder_.fit(scores)
            self.labels_ = self.thresholder_.labels_
            self.threshold_ = self.thresholder_.thresh_
            if not self.threshold_:
                self.threshold_ = np.sum(self.labels_) / len(self.labels_)
        self._mu = np.mean(scores)
        self._sigma = np.std(scores)
        # The Keras model carries the threshold too (for save, export and predict_labels).
        if _is_rate(self.contamination):
            self.detector_.calibrate_from_scores(scores, contamination=self.contamination)
            self.detector_.threshold = float(self.threshold_)
        elif 0 < np.mean(self.labels_) < 1:  # a thresholder's threshold may be normalised
            self.detector_.calibrate_from_scores(scores, contamination=np.mean(self.labels_))
        return self

    def _labels(self, scores) -> np.ndarray:
        if _is_rate(self.contamination):
            return (scores > self.threshold_).astype("int").ravel()
        return self.thresholder_.predict(scores)

    def predict_proba(self, X, method="linear", return_confidence=False, batch_size=None):
        """`[P(inlier), P(outlier)]` per sample, shape `(n_samples, 2)`.

        Args:
            method: "linear": the score min-max scaled by the training scores
                (`decision_scores_`), clipped to [0, 1]; "unify": the
                Gaussian scaling `erf((score - _mu) / (_sigma * sqrt(2)))`,
                clipped to [0, 1] (Kriegel et al. 2011).
            return_confidence: also return `predict_confidence(X)`.

        Returns:
            The probabilities; with `return_confidence`, `(probabilities,
            confidence)`.
        """
        check_is_fitted(self, _FITTED)
        if method not in ("linear", "unify"):
            raise ValueError(method, "is not a valid probability conversion method")
        test_scores = self.decision_function(X, batch_size=batch_size)
        probs = np.zeros([len(test_scores), int(self._classes)])
        if method == "linear":
            scaler = MinMaxScaler().fit(self.decision_scores_.reshape(-1, 1))
            probs[:, 1] = scaler.transform(test_scores.reshape(-1, 1)).ravel().clip(0, 1)
        else:
            pre_erf_score = (test_scores - self._mu) / (self._sigma * np.sqrt(2))
            probs[:, 1] = erf(pre_erf_score).clip(0, 1).ravel()
        probs[:, 0] = 1 - probs[:, 1]
        if return_confidence:
            return probs, self._confidence(test_scores)
        return probs

    def predict_confidence(self, X, batch_size=None):
        """ExCeeD confidence of each prediction, in [0, 1] (Perini et al. 2020).

        With `n` training scores of which `k` are at most the sample's
        score, the outlier probability is the Bayesian estimate
        `p = (1 + k) / (2 + n)`; the confidence in an outlier prediction is
        `1 - binom.cdf(n - int(n * contamination), n, p)`, in an inlier one
        the complement: how consistently the detector would predict the
        same label were the training set perturbed.
        """
        check_is_fitted(self, _FITTED)
        return self._confidence(self.decision_function(X, batch_size=batch_size))

    def _confidence(self, test_scores) -> np.ndarray:
        n = len(self.decision_scores_)
        n_instances = np.searchsorted(np.sort(self.decision_scores_), test_scores, side="right")
        posterior_prob = (1 + n_instances) / (2 + n)
        contam = self.contamination if _is_rate(self.contamination) else np.sum(self.labels_) / n
        confidence = 1 - binom.cdf(n - int(n * contam), n, posterior_prob)
        prediction = self._labels(test_scores)
        np.place(confidence, prediction == 0, 1 - confidence[prediction == 0])
        return confidence

    def predict_with_rejection(
        self, X, T=32, return_stats=False, delta=0.1, c_fp=1, c_fn=1, c_r=None, batch_size=None
    ):
        """Labels with a reject option: 0 inlier, 1 outlier, -2 rejected (RejEx).

        A prediction is rejected when its ExCeeD stability
        `2 * |confidence - 0.5|` is at most `1 - 2 * exp(-T)` (stored as
        `rejection_threshold_`).

        Args:
            T: sets the rejection threshold; the higher, the more rejections.
            return_stats: also return `[expected rejection rate, upper bound
                of the rejection rate, upper bound of the cost]`
                (`compute_rejection_stats`).
            delta: the rejection-rate bound holds with probability
                `1 - delta`; outside (0, 1) it warns and uses 0.1.
            c_fp, c_fn, c_r: costs of a false positive, a false negative
                and a rejection (`c_r`: `None` or negative, the
                contamination; negative warns, as in PyOD).

        Returns:
            The labels; with `return_stats`, `(labels, [rate, bound, cost])`.
        """
        check_is_fitted(self, _FITTED)
        if c_r is None:
            c_r = self._contamination_rate()
        elif c_r < 0:
            warnings.warn(
                "The cost of rejection must be positive. "
                "It has been set to the contamination rate.",
                stacklevel=2,
            )
            c_r = self._contamination_rate()
        if delta <= 0 or delta >= 1:
            warnings.warn(
                "delta must belong to (0,1). It's value has been set to 0.1", stacklevel=2
            )
            delta = 0.1

        self.rejection_threshold_ = 1 - 2 * np.exp(-T)
        scores = self.decision_function(X, batch_size=batch_size)
        prediction = self._labels(scores)
        confidence = self._confidence(scores)
        np.place(confidence, prediction == 0, 1 - confidence[prediction == 0])
        confidence = 2 * abs(confidence - 0.5)
        prediction[np.where(confidence <= self.rejection_threshold_)[0]] = -2

        if return_stats:
            stats = self.compute_rejection_stats(T=T, delta=delta, c_fp=c_fp, c_fn=c_fn, c_r=c_r)
            return prediction, list(stats)
        return prediction

    def _contamination_rate(self) -> float:
        if _is_rate(self.contamination):
            return self.contamination
        return np.sum(self.labels_) / len(self.labels_)

    def compute_rejection_stats(self, T=32, delta=0.1, c_fp=1, c_fn=1, c_r=None, verbose=False):
        """RejEx's guarantees for `predict_with_rejection` (Perini et al. 2023).

        Returns:
            `(expected_rejection_rate, upperbound_rejection_rate,
            upperbound_cost)`: the estimated test rejection rate, its upper
            bound (holding with probability `1 - delta`) and the upper
            bound of the expected cost with costs `c_fp`, `c_fn`, `c_r`
            (`c_r` `None` or negative: the contamination; `delta` outside
            (0, 1): 0.1).
        """
        check_is_fitted(self, _FITTED)
        gamma = self._contamination_rate()
        if c_r is None or c_r < 0:
            c_r = gamma
        if delta <= 0 or delta >= 1:
            delta = 0.1

        n = len(self.decision_scores_)
        n_gamma_minus1 = int(n * gamma) - 1
        if n_gamma_minus1 < 0:
            raise ValueError(
                f"rejection statistics need int(n * contamination) >= 1; with n={n} training "
                f"samples and contamination={gamma} it is {n_gamma_minus1 + 1}."
            )
        q1 = _binom_cdf_root(n_gamma_minus1, n, 1 - np.exp(-T))
        q2 = _binom_cdf_root(n_gamma_minus1, n, np.exp(-T))
        expected_reject_rate = q2 - q1

        right_mar = (-gamma * (n + 2) + n + 1) / n + (T * (n + 2)) / (np.sqrt(2 * n**3 * T))
        right_mar = min(1, right_mar)
        with np.errstate(invalid="ignore"):  # a negative radicand: NaN, then max gives 0
            left_mar = (2 + n * (1 - gamma) * (n + 1)) / n**2 - np.sqrt(
                0.5
                * n**5
                * (
                    2 * n * (-3 * gamma**2 - 2 * n * (1 - gamma) ** 2 + 4 * gamma - 3)
                    + T * (n + 2) ** 2
                    - 8
                )
            ) / n**4
        left_mar = max(0, left_mar)
        add_term = 2 * np.sqrt(np.log(2 / delta) / (2 * n))
        upperbound_rejectrate = right_mar - left_mar + add_term

        upperbound_cost = (
            np.min([gamma, q1]) * c_fp + np.min([1 - q2, gamma]) * c_fn + (q2 - q1) * c_r
        )

        if verbose:
            print("Expected rejection rate: ", np.round(expected_reject_rate, 4), "%")
            print("Upper bound rejection rate: ", np.round(upperbound_rejectrate, 4), "%")
            print("Upper bound cost: ", np.round(upperbound_cost, 4))
        return expected_reject_rate, upperbound_rejectrate, upperbound_cost

    def _predict_rank(self, X, normalized=False):
        """Outlyingness rank of each sample among the training scores (PyOD's, for score
        combination); `normalized` divides by the largest rank."""
        check_is_fitted(self, ["decision_scores_"])
        test_scores = self.decision_function(X)
        ranks = np.searchsorted(np.sort(self.decision_scores_), test_scores)
        if normalized:
            ranks = ranks / ranks.max()
        return ranks
