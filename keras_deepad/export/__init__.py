"""Exports for serving: SavedModel (TF Serving)."""

from keras_deepad.export.saved_model import export_saved_model, next_version

__all__ = ["export_saved_model", "next_version"]
