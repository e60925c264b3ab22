"""Data: `tf.data` pipelines, data set loaders and evaluation splits.

The numpy-only parts (splits, tabular and image loaders, built-in data sets)
import without TensorFlow; `make_dataset` / `csv_dataset` import TensorFlow
and the TFDS builders import ``tensorflow_datasets`` on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from keras_deepad.data.builtin import (
    BUILTIN_DATASETS,
    BuiltinData,
    load_builtin,
    parse_data_spec,
)
from keras_deepad.data.files import DATA_FILE_SUFFIXES, LoadedData, load_data
from keras_deepad.data.images import (
    add_channel_axis,
    global_contrast_normalization,
    load_fashion_mnist,
    read_idx,
)
from keras_deepad.data.splits import (
    ADBenchSplit,
    adbench_split,
    min_max_scale,
    one_class_split,
    one_class_split_single,
    semi_supervised_split,
)
from keras_deepad.data.tabular import load_csv, load_sklearn

if TYPE_CHECKING:
    from keras_deepad.data.pipelines import csv_dataset, make_dataset
    from keras_deepad.data.sharded import tfrecord_dataset, write_tfrecords
    from keras_deepad.data.tfds_utils import (
        LocalArrays,
        LocalArraysConfig,
        LocalFashionMNIST,
        LocalFashionMNISTConfig,
        load_tfds,
    )

# Public name -> submodule, imported on first access (TensorFlow / TFDS).
_LAZY = {
    "csv_dataset": "pipelines",
    "make_dataset": "pipelines",
    "tfrecord_dataset": "sharded",
    "write_tfrecords": "sharded",
    "LocalArrays": "tfds_utils",
    "LocalArraysConfig": "tfds_utils",
    "LocalFashionMNIST": "tfds_utils",
    "LocalFashionMNISTConfig": "tfds_utils",
    "load_tfds": "tfds_utils",
}

__all__ = [
    "ADBenchSplit",
    "BUILTIN_DATASETS",
    "BuiltinData",
    "DATA_FILE_SUFFIXES",
    "LoadedData",
    "LocalArrays",
    "LocalArraysConfig",
    "LocalFashionMNIST",
    "LocalFashionMNISTConfig",
    "adbench_split",
    "add_channel_axis",
    "csv_dataset",
    "global_contrast_normalization",
    "load_builtin",
    "load_csv",
    "load_data",
    "load_fashion_mnist",
    "load_sklearn",
    "load_tfds",
    "make_dataset",
    "min_max_scale",
    "one_class_split",
    "one_class_split_single",
    "parse_data_spec",
    "read_idx",
    "semi_supervised_split",
    "tfrecord_dataset",
    "write_tfrecords",
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
