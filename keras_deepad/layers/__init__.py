"""Reusable Keras layers."""

from keras_deepad.layers.code_density import CodeDensity
from keras_deepad.layers.neighbours import CodeNeighbours, NeighbourBank
from keras_deepad.layers.reparameterization import Reparameterization
from keras_deepad.layers.scaling import FeatureScaler
from keras_deepad.layers.scoring import AnomalyScore

__all__ = [
    "AnomalyScore",
    "CodeDensity",
    "CodeNeighbours",
    "FeatureScaler",
    "NeighbourBank",
    "Reparameterization",
]
