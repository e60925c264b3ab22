import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keras_deepad.export import export_saved_model, export_tflite
from keras_deepad.export.saved_model import METADATA_FILE, edge_head
from keras_deepad.models import AE
from tests.export.conftest import EVAL_BATCH, FAMILIES

SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}

# Runs every family's SavedModel in a process that never imports keras_deepad.
LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    dirs = json.loads(sys.argv[1])
    x = np.load(sys.argv[2])
    x256 = x[:256]
    out = {}
    for family, path in dirs.items():
        loaded = tf.saved_model.load(path)
        out[family + "/signatures"] = np.array(sorted(loaded.signatures))
        serve = loaded.signatures["serving_default"]
        full = serve(x=tf.constant(x))
        for key, value in full.items():
            out[f"{family}/{key}"] = value.numpy()
        for batch in (1, 7, 256):
            out[f"{family}/score_b{batch}"] = np.concatenate([
                serve(x=tf.constant(x256[i : i + batch]))["score"].numpy()
                for i in range(0, 256, batch)
            ])
        for name, output in (
            ("reconstruct", "reconstruction"), ("feature_scores", "feature_scores"),
            ("embed", "embedding"),
        ):
            if name in loaded.signatures:
                value = loaded.signatures[name](x=tf.constant(x[:8]))[output]
                out[f"{family}/{name}"] = value.numpy()
    assert "keras_deepad" not in sys.modules, "the SavedModel pulled in keras_deepad"
    np.savez(sys.argv[3], **out)
    """
)

SIGNATURES = {
    "ae": {"reconstruct", "feature_scores", "edge_head"},
    "vae": {"reconstruct", "feature_scores", "edge_head"},
    "deep_svdd": {"embed", "edge_head"},
    "ocnn": {"embed", "edge_head"},
    "aae": {"reconstruct", "feature_scores", "edge_head"},
    "wae": {"reconstruct", "feature_scores", "edge_head"},
}


def test_every_family_in_a_process_without_keras_deepad(zoo, tmp_path):
    """Keras vs SavedModel: scores (1e-5), labels, threshold, batch sizes, extra signatures."""
    exported = zoo.all()
    x = exported[0].x
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "load.py").write_text(LOADER)
    dirs = json.dumps({e.family: str(e.saved_model) for e in exported})
    subprocess.run(
        [sys.executable, "load.py", dirs, "x.npy", "out.npz"],
        check=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    for e in exported:
        f, model = e.family, e.model
        assert set(out[f"{f}/signatures"]) == {"serving_default"} | SIGNATURES[f], f
        np.testing.assert_allclose(out[f"{f}/score"], e.scores, rtol=1e-5, atol=e.atol(1e-5))
        np.testing.assert_array_equal(out[f"{f}/is_anomaly"], model.predict_labels(x), err_msg=f)
        np.testing.assert_allclose(out[f"{f}/threshold"], model.threshold, rtol=1e-7)
        for batch in (1, 7, EVAL_BATCH):
            np.testing.assert_allclose(
                out[f"{f}/score_b{batch}"],
                e.scores[:EVAL_BATCH],
                rtol=1e-5,
                atol=e.atol(1e-5),
                err_msg=f"{f}, batch {batch}",
            )
        if "reconstruct" in SIGNATURES[f]:
            np.testing.assert_allclose(
                out[f"{f}/reconstruct"], model.reconstruct(x[:8]), rtol=1e-5, atol=1e-6
            )
            np.testing.assert_allclose(
                out[f"{f}/feature_scores"], model.feature_scores(x[:8]), rtol=1e-5, atol=1e-7
            )
        if "embed" in SIGNATURES[f]:
            np.testing.assert_allclose(out[f"{f}/embed"], model.embed(x[:8]), rtol=1e-5, atol=1e-6)


def test_metadata_records_what_a_server_needs(zoo):
    for e in (zoo["ae"], zoo["deep_svdd"]):
        meta = json.loads((e.saved_model / "assets.extra" / METADATA_FILE).read_text())
        model = e.model
        assert meta["class_name"] == type(model).__name__
        assert meta["feature_shape"] == [16] and meta["score_method"] == model.score_method
        assert meta["threshold"] == pytest.approx(model.threshold)
        assert set(meta["training_score_quantiles"]) >= {"0.5", "0.99"}
        norm = meta["normalization"]
        scaled = (e.x[:5] - np.array(norm["offset"])) * np.array(norm["scale"])
        np.testing.assert_allclose(scaled, np.asarray(model.scaler(e.x[:5])), rtol=1e-5, atol=1e-6)
        assert meta["edge_head"]["signature"] == "edge_head" and meta["edge_head_missing"] is None
        assert "serving_default" in meta["signatures"]


def test_saved_model_cli_lists_signatures_and_runs_them(zoo, tmp_path):
    e = zoo["ae"]
    np.save(tmp_path / "x.npy", e.x[:3])
    commands = {
        family: ["show", "--dir", str(zoo[family].saved_model), "--all"]
        for family in ("ae", "deep_svdd")
    }
    commands["run"] = [
        "run",
        "--dir",
        str(e.saved_model),
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        f"x={tmp_path / 'x.npy'}",
    ]
    # Each call imports TensorFlow (~10 s): run them side by side.
    running = {
        key: subprocess.Popen(
            [str(SAVED_MODEL_CLI), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for key, args in commands.items()
    }
    printed = {}
    for key, process in running.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-2000:]
        printed[key] = stdout
    for family in ("ae", "deep_svdd"):
        shown = printed[family]
        for name in {"serving_default"} | SIGNATURES[family]:
            assert f"signature_def['{name}']" in shown, (family, name)
        assert "outputs['score']" in shown and "outputs['is_anomaly']" in shown
        assert "inputs['x']" in shown and "inputs['x_normalized']" in shown
        assert "tensorflow/serving/predict" in shown
    scores = re.search(r"Result for output key score:\s*\[([^\]]*)\]", printed["run"]).group(1)
    np.testing.assert_allclose(np.array(scores.split(), dtype=float), e.scores[:3], rtol=1e-6)


#: Score methods that need the decoder's Jacobian: SavedModel only (no TFLite kernel for
#: the gradient ops), so no host-scored head.
WITHOUT_EDGE_HEAD = {"jacodeco"}


def test_edge_head_reproduces_every_vae_score_method(zoo):
    """Each VAE score method has a host-scored head equal to compute_scores (checked inside)."""
    model = zoo["vae"].model
    original = model.score_method
    try:
        for method in model.score_methods:
            model.score_method = method
            head, missing = edge_head(model)
            if method in WITHOUT_EDGE_HEAD:
                assert head is None and method in missing, method
            else:
                assert head is not None and missing is None, method
    finally:
        model.score_method = original


def test_a_score_method_without_head_says_so(zoo, tmp_path):
    model = zoo["aae"].model
    original = model.score_method
    model.score_method = "discriminator"
    try:
        head, missing = edge_head(model)
        assert head is None and "discriminator" in missing
        path = export_saved_model(model, tmp_path, "aae")
        meta = json.loads((path / "assets.extra" / METADATA_FILE).read_text())
        assert meta["edge_head"] is None and "AAE.export_edge_head" in meta["edge_head_missing"]
        with pytest.raises(ValueError, match="cannot be scored on the host"):
            export_tflite(
                path, tmp_path / "a.tflite", quantization="int8", representative_data=[[0] * 16]
            )
    finally:
        model.score_method = original


class DoubledAE(AE):
    """A detector of its own: twice the mse, an extra endpoint, no int8 head of its own."""

    head_kind = "none"

    def compute_scores(self, x, method):
        return 2.0 * super().compute_scores(x, "mse")

    def export_endpoints(self):
        code = {"code": lambda x: {"code": self.encoder(self.scaler(x))}}
        return {**super().export_endpoints(), **code}

    def export_edge_head(self, method):
        # "wrong": the plain mse head, whose host score is half the detector's.
        return super().export_edge_head("mse") if self.head_kind == "wrong" else None


def test_a_new_detector_exports_through_its_own_hooks(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    model = DoubledAE(hidden_units=(8,), latent_dim=2, score_method="mse", seed=0)
    model.compile()
    model.fit(x, epochs=1, verbose=0)
    model.calibrate(x)
    assert type(model).export_family() == "DoubledAE"
    # A head whose host score is not the detector's (the mse, not twice it) is left out.
    model.head_kind = "wrong"
    head, missing = edge_head(model)
    assert (
        head is None and "does not reproduce" in missing and "DoubledAE.export_edge_head" in missing
    )
    model.head_kind = "none"
    head, missing = edge_head(model)
    assert head is None and "DoubledAE.export_edge_head" in missing
    path = export_saved_model(model, tmp_path, "doubled")
    meta = json.loads((path / "assets.extra" / METADATA_FILE).read_text())
    assert meta["export_family"] == "DoubledAE"
    assert {"code", "reconstruct", "feature_scores"} <= set(meta["signatures"])
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["serving_default"](x=tf.constant(x[:8]))["score"].numpy()
    np.testing.assert_allclose(served, model.score(x[:8]), rtol=1e-5)
    code = loaded.signatures["code"](x=tf.constant(x[:8]))["code"].numpy()
    np.testing.assert_allclose(code, model.encode(x[:8]), rtol=1e-5, atol=1e-6)


def test_existing_version_is_protected_and_failures_leave_nothing(zoo, tmp_path, monkeypatch):
    model = zoo["ae"].model
    first = export_saved_model(model, tmp_path, "det", version=3)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, tmp_path, "det", version=3)

    import keras_deepad.export.saved_model as module

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    # The metadata is written after the graph and variables: a crash there is mid-write.
    monkeypatch.setattr(module, "metadata", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, "det", version=3, overwrite=True)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, "det", version=4)
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["3"]
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp
    monkeypatch.undo()
    assert export_saved_model(model, tmp_path, "det") == tmp_path / "det" / "4"
    replaced = export_saved_model(model, tmp_path, "det", version=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["3", "4"]
    assert (replaced / "saved_model.pb").is_file()


def test_unfitted_and_bad_names(zoo, tmp_path):
    with pytest.raises(ValueError, match="fit"):
        export_saved_model(AE(), tmp_path, "x")
    for name in (".hidden", "a/b"):
        with pytest.raises(ValueError, match="plain folder name"):
            export_saved_model(zoo["ae"].model, tmp_path, name)


def test_export_families_of_the_test_zoo():
    names = {f: type(factory()).export_family() for f, factory in FAMILIES.items()}
    assert names == {
        "ae": "ReconstructionDetector",
        "vae": "VAE",
        "deep_svdd": "DeepSVDD",
        "ocnn": "OCNN",
        "aae": "ReconstructionDetector",
        "wae": "ReconstructionDetector",
    }
