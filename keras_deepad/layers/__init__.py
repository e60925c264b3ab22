"""Reusable Keras layers."""

from keras_deepad.layers.reparameterization import Reparameterization
from keras_deepad.layers.scaling import FeatureScaler

__all__ = ["FeatureScaler", "Reparameterization"]
