"""Detectors: `keras.Model` subclasses whose `train_step` is the algorithm."""

from keras_deepad.models.adversarial_auto_encoder import AAE
from keras_deepad.models.auto_encoder import AE
from keras_deepad.models.base import AnomalyDetector, Declaration
from keras_deepad.models.deep_svdd import DeepSVDD
from keras_deepad.models.ensemble import DetectorEnsemble, default_members
from keras_deepad.models.geometric import GEOM
from keras_deepad.models.latent_auto_encoder import LatentAutoEncoder
from keras_deepad.models.one_class_nn import OCNN
from keras_deepad.models.reconstruction import ReconstructionDetector
from keras_deepad.models.vae import VAE
from keras_deepad.models.wasserstein_auto_encoder import WAE

__all__ = [
    "AAE",
    "AE",
    "AnomalyDetector",
    "Declaration",
    "DeepSVDD",
    "DetectorEnsemble",
    "GEOM",
    "LatentAutoEncoder",
    "OCNN",
    "ReconstructionDetector",
    "VAE",
    "WAE",
    "default_members",
]
