"""TensorFlow Datasets over local files: offline builders and a loader.

Registered data sets (``tfds.load("mnist")``) download their data; the
builders here read files already on disk instead, so they work offline:

- `LocalFashionMNIST` (``"local_fashion_mnist"``) from the Fashion-MNIST IDX
  files (e.g. Debian's ``dataset-fashion-mnist``);
- `LocalArrays` (``"local_arrays"``) from a user ``.npz`` file.

Importing this module registers both names with TFDS.
"""

from __future__ import annotations

import dataclasses
import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from keras_deepad.data.images import (
    FASHION_MNIST_FILES,
    _fashion_mnist_search_dirs,
    find_fashion_mnist_files,
    read_idx,
)

__all__ = [
    "LocalArrays",
    "LocalArraysConfig",
    "LocalFashionMNIST",
    "LocalFashionMNISTConfig",
    "load_tfds",
]

_FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))


# TFDS 4.9.10 resolves `DatasetBuilder.code_path` through the `importlib_resources`
# backport, which etils >= 1.15 no longer installs: `download_and_prepare()` then fails
# with "No module named 'importlib_resources'". The path only locates a checksums file
# (local builders have none), so the builders below take it from `inspect` instead.
_CODE_PATH = tfds.core.utils.classproperty(classmethod(_code_path))


@dataclasses.dataclass(eq=False)
class LocalFashionMNISTConfig(tfds.core.BuilderConfig):
    """Builder config of `LocalFashionMNIST`.

    Args:
        name: Config name; prepared data go to
            ``<data_dir>/local_fashion_mnist/<name>/1.0.0``.
        source_dir: Directory holding the four IDX files.
    """

    source_dir: str | None = None


@dataclasses.dataclass(eq=False)
class LocalArraysConfig(tfds.core.BuilderConfig):
    """Builder config of `LocalArrays`.

    Args:
        name: Config name; prepared data go to
            ``<data_dir>/local_arrays/<name>/1.0.0``.
        npz_path: The ``.npz`` file to read.
    """

    npz_path: str | None = None


class LocalFashionMNIST(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST as a TFDS data set built from local IDX files (no download).

    Features: ``image`` (``uint8``, ``(28, 28, 1)``) and ``label``
    (``ClassLabel``, 10 classes); splits ``train`` (60,000) and ``test``
    (10,000). The IDX files are read from, in order: the ``source_dir``
    constructor argument, ``config.source_dir``, or the directories that
    `keras_deepad.data.load_fashion_mnist` searches (the
    ``KERAS_DEEPAD_FASHION_MNIST`` variable, ``/usr/share/datasets/
    fashion-mnist``, the Keras cache). Reading back prepared data needs none
    of them.

    Args:
        source_dir: Directory holding the four IDX files (optional).
        **kwargs: Passed to `tfds.core.GeneratorBasedBuilder` (``data_dir``,
            ``config``, ...).

    Example:
        >>> builder = LocalFashionMNIST(data_dir="/tmp/tfds")  # doctest: +SKIP
        >>> builder.download_and_prepare()  # doctest: +SKIP
        >>> ds = builder.as_dataset(split="test", as_supervised=True)  # doctest: +SKIP
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    code_path = _CODE_PATH

    def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
        self._source_dir = os.fspath(source_dir) if source_dir is not None else None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST (Xiao et al. 2017) from local IDX files.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(names=_FASHION_MNIST_LABELS),
                }
            ),
            supervised_keys=("image", "label"),
            # Keep the file order (TFDS would otherwise reorder by hashed key).
            disable_shuffling=True,
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _find_files(self):
        config_dir = getattr(self.builder_config, "source_dir", None)
        explicit = self._source_dir or config_dir
        candidates = [explicit] if explicit else _fashion_mnist_search_dirs()
        for directory in candidates:
            files = find_fashion_mnist_files(directory)
            if files is not None:
                return files
        raise FileNotFoundError(
            "LocalFashionMNIST: Fashion-MNIST IDX files "
            f"{sorted(FASHION_MNIST_FILES.values())} (with or without '.gz') not "
            f"found in {[str(d) for d in candidates]}. Pass source_dir=, or "
            "`apt-get install dataset-fashion-mnist`."
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        files = self._find_files()
        return {
            "train": self._generate_examples(files["x_train"], files["y_train"]),
            "test": self._generate_examples(files["x_test"], files["y_test"]),
        }

    def _generate_examples(self, images_path, labels_path):
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(
                f"{str(images_path)!r} / {str(labels_path)!r}: expected images "
                f"(N, 28, 28) and labels (N,). Got {images.shape} and {labels.shape}."
            )
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image[..., np.newaxis], "label": int(label)}


def _npz_splits(npz) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``x``/``y`` -> {"train"}; ``x_train``/``x_test``(/``y_*``) -> both."""
    keys = set(npz.files)
    if "x" in keys:
        return {"train": (npz["x"], npz["y"] if "y" in keys else None)}
    splits = {}
    for split in ("train", "test"):
        if f"x_{split}" in keys:
            y_key = f"y_{split}"
            splits[split] = (npz[f"x_{split}"], npz[y_key] if y_key in keys else None)
    if not splits:
        raise ValueError(
            "The .npz file must hold 'x' (and optionally 'y'), or 'x_train' / "
            f"'x_test' (and optionally 'y_train' / 'y_test'). Found keys: {sorted(keys)}"
        )
    with_labels = {split for split, (_, y) in splits.items() if y is not None}
    if with_labels and with_labels != set(splits):
        raise ValueError(f"Either every split has labels or none does. Found keys: {sorted(keys)}")
    for split, (x, y) in splits.items():
        if x.ndim < 1 or (y is not None and (y.ndim != 1 or len(y) != len(x))):
            raise ValueError(
                f"Split {split!r}: x must be (N, ...) and y (N,). Got "
                f"x.shape={x.shape}, y.shape={None if y is None else y.shape}."
            )
    return splits


def _tensor_feature(array: np.ndarray, shape) -> tfds.features.Tensor:
    dtype = array.dtype
    if dtype == np.bool_:
        dtype = np.dtype(np.int64)
    if dtype.kind not in "iuf":
        raise ValueError(f"Only numeric arrays can be stored. Received: dtype={dtype}")
    return tfds.features.Tensor(shape=tuple(shape), dtype=dtype)


class LocalArrays(tfds.core.GeneratorBasedBuilder):
    """A TFDS data set built from the arrays of a local ``.npz`` file.

    The file holds either ``x`` (and optionally ``y``), giving a single
    ``train`` split, or ``x_train`` / ``x_test`` (and optionally ``y_train``
    / ``y_test``), giving ``train`` and ``test`` splits. Features are ``x``
    (shape and dtype of one row of the array) and, when labels exist, ``y``
    (scalar; booleans stored as ``int64``).

    Reading back prepared data needs no ``npz_path``: the features are
    restored from the prepared directory. All ``LocalArrays`` data prepared
    without a config share ``<data_dir>/local_arrays/1.0.0``: use one
    ``data_dir`` (or one config name) per data set.

    Args:
        npz_path: Path of the ``.npz`` file (or give it in ``config``).
        **kwargs: Passed to `tfds.core.GeneratorBasedBuilder`.

    Example:
        >>> np.savez("/tmp/my.npz", x=x, y=y)  # doctest: +SKIP
        >>> builder = LocalArrays(npz_path="/tmp/my.npz", data_dir="/tmp/tfds")  # doctest: +SKIP
        >>> builder.download_and_prepare()  # doctest: +SKIP
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    code_path = _CODE_PATH

    def __init__(self, *, npz_path: str | os.PathLike | None = None, **kwargs):
        self._npz_path = os.fspath(npz_path) if npz_path is not None else None
        super().__init__(**kwargs)

    @property
    def _source(self) -> str | None:
        return self._npz_path or getattr(self.builder_config, "npz_path", None)

    def _load_npz(self):
        path = self._source
        if path is None:
            raise ValueError(
                "LocalArrays needs npz_path= (or a LocalArraysConfig with "
                "npz_path) to prepare data."
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"npz file not found. Received: npz_path={path!r}")
        with np.load(path, allow_pickle=False) as npz:
            return _npz_splits(npz)

    def _info(self) -> tfds.core.DatasetInfo:
        if self._source is None:
            # Reading prepared data: TFDS restores the features from disk.
            return tfds.core.DatasetInfo(builder=self, features=None)
        splits = self._load_npz()
        x, y = next(iter(splits.values()))
        features = {"x": _tensor_feature(x, x.shape[1:])}
        if y is not None:
            features["y"] = _tensor_feature(y, ())
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Arrays from {self._source}.",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("x", "y") if y is not None else None,
            disable_shuffling=True,  # keep the order of the arrays
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(x, y) for split, (x, y) in self._load_npz().items()}

    def _generate_examples(self, x, y):
        for index in range(len(x)):
            example = {"x": x[index]}
            if y is not None:
                value = y[index]
                example["y"] = value.astype(np.int64) if value.dtype == np.bool_ else value
            yield index, example


def load_tfds(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    as_arrays: bool = True,
    image_key: str = "image",
    label_key: str | None = "label",
    builder_kwargs: dict | None = None,
) -> tuple[np.ndarray, np.ndarray | None] | tf.data.Dataset:
    """Loads a TFDS data set that is already prepared on disk.

    A thin wrapper over `tfds.load` that does not download by default, so it
    fails fast and clearly offline. Works for registered data sets prepared
    earlier and for the local builders of this module (``"local_fashion_mnist"``,
    ``"local_arrays"``, whose features are ``"x"`` / ``"y"``).

    Args:
        name: TFDS name, e.g. ``"local_fashion_mnist"`` or ``"mnist"``.
        split: Split name or TFDS slice (``"train[:10%]"``).
        data_dir: TFDS data directory; defaults to ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``.
        download: Whether TFDS may download and prepare the data (needs
            network for registered data sets; for the local builders, it
            prepares from the local files).
        as_arrays: ``True`` returns numpy arrays, ``False`` a dataset.
        image_key: Feature holding the inputs.
        label_key: Feature holding the labels, or ``None`` for none.
        builder_kwargs: Passed to the builder (e.g. ``{"source_dir": ...}``
            for ``local_fashion_mnist``, ``{"npz_path": ...}`` for
            ``local_arrays``).

    Returns:
        With ``as_arrays=True``: ``(x, y)`` numpy arrays of the whole split
        (``y`` is ``None`` when ``label_key`` is ``None``). Otherwise an
        unbatched `tf.data.Dataset` of ``(x, y)`` pairs (or of ``x``).

    Raises:
        FileNotFoundError: If the data are not prepared in ``data_dir`` and
            ``download=False`` (or preparing them failed for lack of files).
        ValueError: For an unknown name or split, or missing feature keys.

    Example:
        >>> x, y = load_tfds("local_fashion_mnist", "test", data_dir="/tmp/tfds")  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a TFDS data set name. Received: name={name!r}")
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    try:
        dataset, info = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=download,
            batch_size=-1 if as_arrays else None,
            with_info=True,
            builder_kwargs=builder_kwargs,
        )
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"Unknown TFDS data set. Received: name={name!r}. {error}") from error
    except AssertionError as error:
        # TFDS asserts when the data are not prepared and download=False.
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise FileNotFoundError(
            f"TFDS data set {name!r} is not prepared in data_dir={where!r} and "
            "download=False. Prepare it first (e.g. "
            "LocalFashionMNIST(data_dir=...).download_and_prepare(), or "
            "tfds.builder(name, data_dir=...).download_and_prepare() where a "
            f"network is available). TFDS said: {error}"
        ) from error

    keys = list(info.features.keys())
    for key in (image_key, label_key):
        if key is not None and key not in keys:
            raise ValueError(
                f"Feature {key!r} not in {name!r}; its features are {keys}. "
                "Set image_key= / label_key= accordingly."
            )

    if as_arrays:
        arrays = tfds.as_numpy(dataset)
        y = arrays[label_key] if label_key is not None else None
        return arrays[image_key], y
    if label_key is None:
        return dataset.map(lambda example: example[image_key])
    return dataset.map(lambda example: (example[image_key], example[label_key]))
