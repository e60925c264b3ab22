#!/usr/bin/env python
"""Writes the golden models that tests/export/test_golden.py checks: run it only on purpose.

For each detector family: a tiny trained model as `.keras`, its float32 and int8 TFLite
files with metadata, and the scores they give on fixed inputs (`inputs.npy`), recorded in
`expected.json`. The test loads the committed files with the current code and requires the
same scores, so a change that breaks reading old artifacts (Keras config, weights layout,
metadata format, scoring recipes) fails loudly. Regenerate only when such a break is
intended, and say so in the commit message.

Usage:
    python tests/golden/make_golden.py
"""

import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_deepad import __version__  # noqa: E402
from keras_deepad.data import load_builtin  # noqa: E402
from keras_deepad.edge import EdgeDetector  # noqa: E402
from keras_deepad.export import export_tflite  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, for `tests.detectors`

from tests.detectors import factories  # noqa: E402

#: The golden cases of the one test table (`tests/detectors.py`), named by artifact.
FAMILIES = factories("golden")
FORMATS = ("float32", "int8")


def save_compressed(model, path):
    """`model.save`, then the same .keras archive deflated (Keras stores it uncompressed)."""
    raw = path.with_name(path.name + ".tmp.keras")
    model.save(raw)
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info.filename))
    raw.unlink()


def main(families=None):
    data = load_builtin("blobs", seed=0)
    normal, anomalous = data.x_test[data.y_test == 0][:8], data.x_test[data.y_test == 1][:4]
    inputs = np.concatenate([normal, anomalous]).astype(np.float32)
    np.save(HERE / "inputs.npy", inputs)
    expected_file = HERE / "expected.json"
    expected = json.loads(expected_file.read_text()) if expected_file.exists() else {}
    expected.update(
        keras_deepad_version=__version__,
        tensorflow_version=tf.__version__,
        keras_version=keras.__version__,
        inputs="inputs.npy",
    )
    models = expected.setdefault("models", {})
    for family in families or FAMILIES:
        keras.utils.set_random_seed(0)
        model = FAMILIES[family]()
        with warnings.catch_warnings(record=True):
            model.fit(data.x_train, epochs=3, batch_size=64, verbose=0)
        model.calibrate(data.x_train, contamination=0.1)
        save_compressed(model, HERE / f"{family}.keras")
        entry = {
            "class_name": type(model).__name__,
            "score_method": model.score_method,
            "threshold": model.threshold,
            "keras": f"{family}.keras",
            "keras_scores": model.score(inputs).tolist(),
            "tflite": {},
            "tflite_thresholds": {},
        }
        for quantization in FORMATS:
            artifact = export_tflite(
                model,
                HERE / f"{family}-{quantization}.tflite",
                quantization=quantization,
                representative_data=data.x_train,
                overwrite=True,
            )
            detector = EdgeDetector(artifact.path)
            entry["tflite"][artifact.path.name] = detector.score(inputs).tolist()
            entry["tflite_thresholds"][artifact.path.name] = detector.threshold
        models[family] = entry
        print(family, {k: os.path.getsize(HERE / k) for k in [entry["keras"], *entry["tflite"]]})
    expected_file.write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
