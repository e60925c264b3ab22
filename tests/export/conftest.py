"""One small trained model per detector family, exported once per format for all export tests."""

import dataclasses
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_deepad.export import export_saved_model, export_tflite
from tests.detectors import factories

#: One detector per family from the one test table (`tests/detectors.py`), sized for
#: quantisation, named by artifact.
FAMILIES = factories("export")
#: Families whose scores cross 0 (a margin, `distance - R^2`, the autoencoders' hybrid sums
#: of standardised logs): relative tolerances get an absolute floor of the same size times
#: the largest |score|.
CROSSES_ZERO = {"deep_svdd", "ocnn", "ae", "aae"}
#: name -> (quantization, scoring) of the TFLite files every family is exported to.
FORMATS = {
    "float32": ("float32", "graph"),
    "float16": ("float16", "graph"),
    "dynamic-int8": ("dynamic-int8", "graph"),
    "int8": ("int8", "host"),
}
#: Families that also get a float32 file scored on the host: one per scoring recipe, so
#: every recipe of keras_deepad.edge is checked against Keras to float32 precision.
HOST_FLOAT32 = {"ae", "vae", "deep_svdd", "ocnn", "wae"}
EVAL_BATCH = 256


@dataclasses.dataclass
class Exported:
    family: str
    model: object
    saved_model: Path
    tflite: dict  # format name -> TFLiteArtifact
    x: np.ndarray  # held-out data with known anomalies
    y: np.ndarray
    scores: np.ndarray  # Keras scores of x

    def atol(self, rtol):
        return rtol * float(np.max(np.abs(self.scores))) if self.family in CROSSES_ZERO else 0.0


class Zoo:
    """Builds each family's model and exports on first use."""

    def __init__(self, root, data):
        self.root = Path(root)
        self.data = data
        self._built = {}

    def __getitem__(self, family) -> Exported:
        if family not in self._built:
            self._built[family] = self._build(family)
        return self._built[family]

    def all(self):
        return [self[family] for family in FAMILIES]

    @staticmethod
    def formats(family):
        extra = {"float32-host": ("float32", "host")} if family in HOST_FLOAT32 else {}
        return {**FORMATS, **extra}

    def _build(self, family):
        keras.utils.set_random_seed(0)
        model = FAMILIES[family]()
        with warnings.catch_warnings(record=True):  # e.g. the Deep SVDD collapse guard
            model.fit(self.data.x_train, epochs=2, batch_size=32, verbose=0)
        model.calibrate(self.data.x_train, contamination=0.1)
        saved_model = export_saved_model(model, self.root / "serving", family, version=1)
        tflite = {
            name: export_tflite(
                saved_model,
                self.root / "tflite" / f"{family}-{name}.tflite",
                quantization=quantization,
                scoring=scoring,
                representative_data=self.data.x_train,
            )
            for name, (quantization, scoring) in self.formats(family).items()
        }
        x, y = self.data.x_test, self.data.y_test
        return Exported(family, model, saved_model, tflite, x, y, model.score(x))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, blobs):
    return Zoo(tmp_path_factory.mktemp("zoo"), blobs)
