"""Detectors: `keras.Model` subclasses whose `train_step` is the algorithm."""

from keras_deepad.models.auto_encoder import AE, ReconstructionDetector
from keras_deepad.models.base import AnomalyDetector
from keras_deepad.models.deep_svdd import DeepSVDD
from keras_deepad.models.one_class_nn import OCNN
from keras_deepad.models.vae import VAE

__all__ = ["AE", "AnomalyDetector", "DeepSVDD", "OCNN", "ReconstructionDetector", "VAE"]
