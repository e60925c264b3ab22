"""Input validation and small helpers shared by the detectors."""

from keras_deepad.utils.validation import check_array, check_dataset_spec, to_numpy_batch

__all__ = ["check_array", "check_dataset_spec", "to_numpy_batch"]
