"""The committed golden models (tests/golden/, made by make_golden.py) still load and score."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_deepad.models  # noqa: F401  (registers the detector classes)
from keras_deepad.edge import EdgeDetector

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
INPUTS = np.load(GOLDEN / EXPECTED["inputs"])


def _golden_detector(path):
    """The golden file's detector, verified if its metadata is sealed.

    Metadata written before the `integrity` field (the committed golden files, for now) is
    refused by default, with a message that says how to proceed, and reads with verify=False.
    """
    metadata = json.loads((path.parent / (path.name + ".json")).read_text())
    if "integrity" in metadata:
        return EdgeDetector(path)
    with pytest.raises(ValueError, match=r"field 'integrity' is missing.*verify=False") as info:
        EdgeDetector(path)
    assert f"{path}.json" in str(info.value)
    return EdgeDetector(path, verify=False)


@pytest.mark.parametrize("family", sorted(EXPECTED["models"]))
def test_golden_artifacts_load_and_score_as_recorded(family):
    entry = EXPECTED["models"][family]
    model = keras.models.load_model(GOLDEN / entry["keras"])
    assert type(model).__name__ == entry["class_name"]
    assert model.score_method == entry["score_method"]
    assert model.threshold == pytest.approx(entry["threshold"], rel=1e-7)
    np.testing.assert_allclose(model.score(INPUTS), entry["keras_scores"], rtol=1e-6, atol=1e-7)
    assert len(entry["tflite"]) == 2
    for name, scores in entry["tflite"].items():
        detector = _golden_detector(GOLDEN / name)
        assert detector.threshold == pytest.approx(entry["tflite_thresholds"][name], rel=1e-7)
        np.testing.assert_allclose(
            detector.score(INPUTS), scores, rtol=1e-6, atol=1e-7, err_msg=name
        )
    # The golden files flag the anomalies (the last four inputs) like the model did.
    float32 = np.asarray(entry["tflite"][f"{family}-float32.tflite"])
    np.testing.assert_allclose(float32, entry["keras_scores"], rtol=1e-5, atol=1e-5)


def test_every_detector_family_has_a_golden_model():
    assert sorted(EXPECTED["models"]) == ["aae", "ae", "deep_svdd", "ocnn", "vae", "wae"]
