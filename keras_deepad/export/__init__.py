"""Exports for serving: SavedModel (TF Serving) and TFLite/LiteRT (edge devices)."""

from keras_deepad.export.families import (
    EXPORT_FAMILIES,
    EdgeHead,
    ExportFamily,
    register_export_family,
)
from keras_deepad.export.saved_model import export_saved_model, next_version
from keras_deepad.export.tflite import QUANTIZATIONS, TFLiteArtifact, export_tflite

__all__ = [
    "EXPORT_FAMILIES",
    "EdgeHead",
    "ExportFamily",
    "QUANTIZATIONS",
    "TFLiteArtifact",
    "export_saved_model",
    "export_tflite",
    "next_version",
    "register_export_family",
]
