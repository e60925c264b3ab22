"""One loader for a data set named on a command line: a built-in set or a local file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_deepad.data.builtin import load_builtin, parse_data_spec
from keras_deepad.data.tabular import load_csv

#: File suffixes `load_data` reads.
DATA_FILE_SUFFIXES = (".csv", ".npy", ".npz")


@dataclass(frozen=True)
class LoadedData:
    """Features for training/scoring and, when known, test features with labels."""

    name: str
    x_train: object
    x_eval: object = None
    y_eval: object = None
    description: str = ""

    @property
    def x_score(self):
        """What a scoring run scores: the test split of a built-in set, else the file's rows."""
        return self.x_eval if self.x_eval is not None else self.x_train


def load_data(spec: str, seed: int = 0, label_column: str | None = None) -> LoadedData:
    """A built-in data set (`"breast_cancer"`, `"digits:3"`) or a `.csv`/`.npy`/`.npz` file.

    Files give their rows as `x_train`; with labels (a CSV `label_column`,
    an `.npz` array `y`) the same rows are `x_eval` with `y_eval`. Built-in
    sets give their training split and their labelled test split
    (`load_builtin(name, seed=seed, normal_class=...)`).

    Raises:
        ValueError: a missing file, an `.npz` without `x`, an unknown set.
    """
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in DATA_FILE_SUFFIXES:
        if not path.exists():
            raise ValueError(f"data file {spec} does not exist.")
        if suffix == ".csv":
            x, y = load_csv(path, label_column=label_column)
        elif suffix == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as npz:
                if "x" not in npz:
                    raise ValueError(f"{spec} has no array 'x' (found {sorted(npz.files)}).")
                x, y = npz["x"], npz["y"] if "y" in npz else None
        return LoadedData(str(path), x, x if y is not None else None, y, f"file {path.name}")
    name, normal_class = parse_data_spec(spec)
    builtin = load_builtin(name, seed=seed, normal_class=normal_class)
    return LoadedData(spec, builtin.x_train, builtin.x_test, builtin.y_test, builtin.description)
