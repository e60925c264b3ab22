"""Detectors: `keras.Model` subclasses whose `train_step` is the algorithm."""

from keras_deepad.models.auto_encoder import AE, ReconstructionDetector
from keras_deepad.models.base import AnomalyDetector
from keras_deepad.models.vae import VAE

__all__ = ["AE", "AnomalyDetector", "ReconstructionDetector", "VAE"]
