import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_deepad.edge import EdgeDetector, check_input

ROOT = Path(__file__).resolve().parents[2]

# Blocks TensorFlow and Keras, then scores every exported file with keras_deepad.edge and with
# a copy of its folder imported under another name (the edge runtime copied to a device alone).
NO_TENSORFLOW = textwrap.dedent(
    """
    import json, sys
    import importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"):
                raise ImportError(f"{name} is not installed on this device")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("tensorflow should not be importable here")

    import numpy as np
    import device_edge
    assert not [m for m in sys.modules if m.startswith("keras_deepad")], "imports the package"
    from keras_deepad.edge import EdgeDetector

    files = json.loads(sys.argv[1])
    x = np.load(sys.argv[2])
    out = {}
    for key, path in files.items():
        detector = EdgeDetector(path)
        for batch in (1, 7, 256):
            out[f"{key}/b{batch}"] = detector.score(x, batch_size=batch)
        out[f"{key}/labels"] = detector.predict_labels(x)
        copied = device_edge.EdgeDetector(path)
        np.testing.assert_array_equal(copied.score(x), out[f"{key}/b256"], err_msg=key)
        np.testing.assert_array_equal(copied.predict_labels(x), out[f"{key}/labels"], err_msg=key)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    assert not heavy, heavy
    np.savez(sys.argv[3], **out)
    print("ok", len(files))
    """
)


def test_edge_runtime_without_tensorflow(zoo, tmp_path):
    exported = zoo.all()
    x = exported[0].x[:256]
    files = {f"{e.family}/{fmt}": str(a.path) for e in exported for fmt, a in e.tflite.items()}
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "edge.py").write_text(NO_TENSORFLOW)
    shutil.copytree(ROOT / "keras_deepad" / "edge", tmp_path / "device_edge")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "edge.py", json.dumps(files), "x.npy", "out.npz"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    for e in exported:
        for fmt, artifact in e.tflite.items():
            key = f"{e.family}/{fmt}"
            here = EdgeDetector(artifact.path).score(x)
            for batch in (1, 7, 256):
                np.testing.assert_allclose(
                    out[f"{key}/b{batch}"], here, rtol=1e-6, atol=e.atol(1e-6), err_msg=key
                )
            if fmt.startswith("float32"):
                np.testing.assert_array_equal(
                    out[f"{key}/labels"], e.model.predict_labels(x), err_msg=key
                )


def test_labels_threshold_and_single_samples(zoo):
    e = zoo["vae"]
    detector = EdgeDetector(e.tflite["float32"].path)
    assert detector.threshold == pytest.approx(e.model.threshold)
    assert detector.feature_shape == (16,) and detector.quantization == "float32"
    assert set(detector.score_quantiles) >= {"0.5", "0.95"}
    x = e.x[:40]
    np.testing.assert_array_equal(detector.predict_labels(x), e.model.predict_labels(x))
    np.testing.assert_array_equal(detector.is_anomaly(x), detector.predict_labels(x))
    np.testing.assert_allclose(detector.score(x[3]), e.scores[3:4], rtol=1e-5)
    np.testing.assert_allclose(detector.score(pd.DataFrame(x)), e.scores[:40], rtol=1e-5)
    np.testing.assert_allclose(
        detector.score(x.astype(np.float64).tolist()), e.scores[:40], rtol=1e-5
    )
    assert "VAE" in repr(detector)


def test_bad_input_is_refused_with_a_clear_message(zoo):
    detector = EdgeDetector(zoo["ae"].tflite["int8"].path)
    good = zoo["ae"].x[:4]
    cases = [
        (good[:, :5], r"shape \(4, 5\) but the model expects \(n_samples, 16\)"),
        (good[None], "but the model expects"),
        (np.full((2, 16), "a"), "strings"),
        (np.zeros((0, 16)), "empty"),
        (np.where(np.eye(4, 16) > 0, np.nan, good), r"4 NaN value\(s\) \(first in sample 0\)"),
        (
            np.vstack([good, np.full((1, 16), np.inf)]),
            r"16 infinite value\(s\) \(first in sample 4\)",
        ),
        (None, "is None"),
        ([[1, 2], [3]], "could not be converted|shape"),
        (good.astype(np.complex64), "unsupported dtype"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            detector.score(bad)
    with pytest.raises(ValueError, match="batch_size"):
        detector.score(good, batch_size=0)
    assert check_input(good.astype(np.int32), (16,)).dtype == np.float32


def test_mismatched_or_missing_metadata_is_refused(zoo, tmp_path):
    artifact = zoo["ocnn"].tflite["float16"]
    model = tmp_path / "m.tflite"
    model.write_bytes(artifact.path.read_bytes())
    with pytest.raises(FileNotFoundError, match="metadata"):
        EdgeDetector(model)
    other = json.loads(zoo["ocnn"].tflite["float32"].metadata_path.read_text())
    (tmp_path / "m.tflite.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="SHA-256"):
        EdgeDetector(model)
    with pytest.raises(ValueError, match="newer keras_deepad.edge"):
        EdgeDetector(artifact.path, metadata={**artifact.metadata, "scoring": {"kind": "x"}}).score(
            zoo["ocnn"].x[:2]
        )
    with pytest.raises(FileNotFoundError, match="no TFLite file"):
        EdgeDetector(tmp_path / "missing.tflite")
