"""keras_deepad: deep anomaly detection for Keras 3.

Sub-modules are imported lazily, so that `keras_deepad.edge` can be used on a
device where TensorFlow is not installed.
"""

import importlib

from keras_deepad._version import __version__

_LAZY = {
    "AnomalyDetector": "keras_deepad.models",
    "AE": "keras_deepad.models",
    "VAE": "keras_deepad.models",
    "DeepSVDD": "keras_deepad.models",
    "OCNN": "keras_deepad.models",
    "AAE": "keras_deepad.models",
    "WAE": "keras_deepad.models",
    "DetectorEnsemble": "keras_deepad.models",
    "GEOM": "keras_deepad.models",
    "PyODDetector": "keras_deepad.sklearn_api",
    "evaluate_scores": "keras_deepad.evaluation",
    "get_detector": "keras_deepad.registry",
    "list_detectors": "keras_deepad.registry",
}

_SUBMODULES = {
    "callbacks",
    "data",
    "edge",
    "evaluation",
    "export",
    "layers",
    "plot",
    "losses",
    "models",
    "networks",
    "priors",
    "registry",
    "scores",
    "sklearn_api",
    "utils",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"keras_deepad.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_deepad' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
