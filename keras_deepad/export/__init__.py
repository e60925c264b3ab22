"""Exports for serving: SavedModel (TF Serving) and TFLite/LiteRT (edge devices)."""

from keras_deepad.export.saved_model import export_saved_model, next_version
from keras_deepad.export.tflite import QUANTIZATIONS, TFLiteArtifact, export_tflite
from keras_deepad.models._export_hooks import EdgeHead

__all__ = [
    "EdgeHead",
    "QUANTIZATIONS",
    "TFLiteArtifact",
    "export_saved_model",
    "export_tflite",
    "next_version",
]
