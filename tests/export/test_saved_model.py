import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_deepad.export import export_saved_model
from keras_deepad.models import AE, VAE

LOADER = textwrap.dedent(
    """
    import sys, numpy as np, tensorflow as tf
    assert "keras_deepad" not in sys.modules
    loaded = tf.saved_model.load(sys.argv[1])
    x = np.load(sys.argv[2])
    out = loaded.signatures["serving_default"](x=tf.constant(x))
    np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
    assert "keras_deepad" not in sys.modules
    """
)


@pytest.fixture(scope="module", params=["ae", "vae"])
def model(request, blobs):
    cls = {"ae": AE, "vae": VAE}[request.param]
    model = cls(hidden_units=(16,), latent_dim=3, seed=0)
    model.fit(blobs.x_train[:300], epochs=2, verbose=0)
    model.calibrate(blobs.x_train[:300], contamination=0.1)
    return model


def test_layout_signatures_and_parity_in_a_clean_process(model, blobs, tmp_path):
    path = export_saved_model(model, tmp_path, "det")
    assert path == tmp_path / "det" / "1" and (path / "saved_model.pb").is_file()
    meta = json.loads((path / "assets.extra" / "keras_deepad.json").read_text())
    assert meta["threshold"] == pytest.approx(model.threshold)
    assert meta["class_name"] == type(model).__name__ and meta["feature_shape"] == [16]
    x = blobs.x_test[:70]
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["score"], model.score(x), rtol=1e-5)
    np.testing.assert_array_equal(out["is_anomaly"], model.predict_labels(x))
    np.testing.assert_allclose(out["threshold"], model.threshold)
    assert export_saved_model(model, tmp_path, "det") == tmp_path / "det" / "2"


def test_other_signatures_and_batch_sizes(model, blobs, tmp_path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_saved_model(model, tmp_path, "det")))
    assert {"serving_default", "reconstruct", "feature_scores"} <= set(loaded.signatures)
    x = blobs.x_test[:256]
    reference = model.score(x)
    for batch in (1, 7, 256):
        got = np.concatenate(
            [
                loaded.signatures["serving_default"](x=tf.constant(x[i : i + batch]))[
                    "score"
                ].numpy()
                for i in range(0, len(x), batch)
            ]
        )
        np.testing.assert_allclose(got, reference, rtol=1e-5)
    rec = loaded.signatures["reconstruct"](x=tf.constant(x[:5]))["reconstruction"].numpy()
    np.testing.assert_allclose(rec, model.reconstruct(x[:5]), rtol=1e-5, atol=1e-6)


def test_existing_version_is_protected_and_failures_leave_nothing(model, tmp_path, monkeypatch):
    first = export_saved_model(model, tmp_path, "det", version=3)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, tmp_path, "det", version=3)

    import keras_deepad.export.saved_model as module

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "metadata", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, "det", version=3, overwrite=True)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, "det", version=4)
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["3"]
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp
    monkeypatch.undo()
    replaced = export_saved_model(model, tmp_path, "det", version=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["3"]
    assert (replaced / "saved_model.pb").is_file()


def test_unfitted_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match="fit"):
        export_saved_model(AE(), tmp_path, "x")
