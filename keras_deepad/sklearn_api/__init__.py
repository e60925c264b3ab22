"""A PyOD 3 detector (and scikit-learn estimator) around any registered detector.

`detector` holds the estimator (fit, parameters, scores, labels); `_pyod_outputs` what PyOD
derives from the training scores (threshold, probabilities, confidence, rejection).
"""

from keras_deepad.sklearn_api.detector import PyODDetector

__all__ = ["PyODDetector"]
