"""A detector as a layer: samples in, anomaly scores (and labels) out."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_deepad")
class AnomalyScore(keras.layers.Layer):
    """Wraps a trained detector as a Keras layer `x -> score` (or `{"score", "is_anomaly"}`).

    The detector is a tracked sub-layer: its weights and fitted state
    (normaliser, centre, radius, threshold) are the layer's, so a model built
    on it saves, loads and exports with them. Usually made by
    `AnomalyDetector.scoring_model()`.

    Args:
        detector: a trained `AnomalyDetector`.
        method: the score method (default: the detector's `score_method`).
        with_label: also return `is_anomaly` (float32 0/1: `score > threshold`),
            which needs a calibrated detector.
    """

    def __init__(self, detector, method=None, with_label=False, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.detector = detector
        self.method = detector.resolve_method(method)
        self.with_label = bool(with_label)

    def build(self, input_shape):
        if not self.detector.built or self.detector.feature_shape is None:
            self.detector.build(input_shape)
        self.built = True

    def call(self, x):
        scores = self.detector.compute_scores(ops.cast(x, "float32"), self.method)
        if not self.with_label:
            return scores
        threshold = ops.cast(self.detector.threshold_variable, scores.dtype)
        return {"score": scores, "is_anomaly": ops.cast(scores > threshold, "float32")}

    def compute_output_shape(self, input_shape):
        if self.with_label:
            return {"score": (input_shape[0],), "is_anomaly": (input_shape[0],)}
        return (input_shape[0],)

    def get_config(self):
        return {
            **super().get_config(),
            "detector": keras.saving.serialize_keras_object(self.detector),
            "method": self.method,
            "with_label": self.with_label,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["detector"] = keras.saving.deserialize_keras_object(config["detector"])
        return cls(**config)
