import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from keras_deepad.cli import main
from keras_deepad.edge import EdgeDetector
from keras_deepad.export import export_tflite
from tests.export.conftest import EVAL_BATCH, FAMILIES

ROOT = Path(__file__).resolve().parents[2]
#: Families scored by the distance of a code to its nearest training codes (the AE's
#: "hybrid_knn" default): float16's rounding moves distances between close codes.
KNN_IN_CODE_SPACE = {"ae"}


@pytest.fixture(scope="module")
def edge_scores(zoo):
    """family -> format -> EdgeDetector scores of the held-out set."""
    cache = {}

    def get(family, fmt):
        key = (family, fmt)
        if key not in cache:
            cache[key] = EdgeDetector(zoo[family].tflite[fmt].path).score(zoo[family].x)
        return cache[key]

    return get


@pytest.mark.parametrize("family", list(FAMILIES))
def test_float_parity_with_keras(zoo, edge_scores, family):
    e = zoo[family]
    for fmt in ("float32", "float32-host"):
        if fmt in e.tflite:
            np.testing.assert_allclose(
                edge_scores(family, fmt), e.scores, rtol=1e-5, atol=e.atol(1e-5), err_msg=fmt
            )
    half = edge_scores(family, "float16")
    if family in KNN_IN_CODE_SPACE:
        # float16 rounds the kept training codes and the network's weights by ~5e-4 of their
        # size; this AE's ReLU codes lie far closer together than that (median distance to
        # the 10 nearest 0.6 % of the codes' spread), so the distances move (a log score:
        # up to ~1 on some rows) while the order of the scores stays.
        assert spearmanr(half, e.scores)[0] >= 0.98
        assert abs(roc_auc_score(e.y, half) - roc_auc_score(e.y, e.scores)) <= 0.01
    else:
        np.testing.assert_allclose(half, e.scores, rtol=1e-2, atol=e.atol(1e-2), err_msg="float16")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_integer_formats_keep_auroc_and_shrink(zoo, edge_scores, family):
    e = zoo[family]
    reference = roc_auc_score(e.y, e.scores)
    for fmt in ("dynamic-int8", "int8"):
        got = roc_auc_score(e.y, edge_scores(family, fmt))
        assert abs(got - reference) <= 0.01, (fmt, got, reference)
        # The 1024-element kernels really were quantised.
        assert e.tflite[fmt].size_bytes < 0.9 * e.tflite["float32"].size_bytes, fmt


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batch_sizes_give_the_same_scores_in_every_format(zoo, edge_scores, family):
    e = zoo[family]
    x = e.x[:EVAL_BATCH]
    np.testing.assert_allclose(
        e.model.score(x, batch_size=1), e.scores[:EVAL_BATCH], rtol=1e-5, atol=e.atol(1e-6)
    )
    np.testing.assert_allclose(
        e.model.score(x, batch_size=7), e.scores[:EVAL_BATCH], rtol=1e-5, atol=e.atol(1e-6)
    )
    for fmt, artifact in e.tflite.items():
        detector = EdgeDetector(artifact.path)
        reference = edge_scores(family, fmt)[:EVAL_BATCH]
        for batch in (1, 7, EVAL_BATCH):
            np.testing.assert_allclose(
                detector.score(x, batch_size=batch),
                reference,
                rtol=1e-6,
                atol=e.atol(1e-6),
                err_msg=f"{fmt}, batch {batch}",
            )


def test_int8_metadata_tells_the_runtime_everything(zoo):
    for family in ("ae", "deep_svdd"):
        e = zoo[family]
        artifact = e.tflite["int8"]
        meta = json.loads(artifact.metadata_path.read_text())
        assert meta == artifact.metadata
        assert meta["format"] == "keras_deepad.tflite" and meta["quantization"] == "int8"
        assert meta["feature_shape"] == [16] and meta["class_name"] == type(e.model).__name__
        # int8 keeps the ranking, not the values: its threshold flags the same fraction of the
        # normal training data as the model's threshold does.
        assert meta["float_threshold"] == pytest.approx(e.model.threshold)
        x_train = zoo.data.x_train
        flagged = np.mean(EdgeDetector(artifact.path).score(x_train) > meta["threshold"])
        assert abs(flagged - np.mean(e.model.score(x_train) > e.model.threshold)) <= 0.002
        assert meta["training_score_quantiles"] and meta["representative_score_quantiles"]
        assert meta["normalization"]["applied"] == "host"
        assert meta["input"]["dtype"] == "int8" and meta["input"]["quantization"]["scale"] > 0
        assert all(o["dtype"] == "int8" and o["quantization"] for o in meta["outputs"].values())
        assert meta["size_bytes"] == artifact.path.stat().st_size == artifact.size_bytes
        assert meta["representative_samples"] == 1000 and meta["calibration_headroom"] >= 1
        assert meta["scoring"]["kind"] == ("hybrid_knn" if family == "ae" else "center_distance")
    svdd = zoo["deep_svdd"]
    scoring = svdd.tflite["int8"].metadata["scoring"]
    np.testing.assert_allclose(scoring["center"], np.asarray(svdd.model.center), rtol=1e-7)
    assert scoring["radius_squared"] == pytest.approx(float(np.asarray(svdd.model.radius)) ** 2)
    assert svdd.tflite["float32"].metadata["scoring"] == {"kind": "graph", "output": "score"}


def test_ocnn_cosine_features_export_integer_only(zoo):
    """The int8 OC-NN runs `V x + b` in integers; the host takes the cosine and the margin."""
    from ai_edge_litert.interpreter import Interpreter

    e = zoo["ocnn"]
    assert e.model.activation == "cos"
    scoring = e.tflite["int8"].metadata["scoring"]
    assert scoring["kind"] == "cosine_margin" and scoring["output"] == "phase"
    assert scoring["scale"] == pytest.approx(1.0 / np.sqrt(e.model.hidden_units))
    np.testing.assert_allclose(scoring["weights"], np.asarray(e.model.output_weights), rtol=1e-7)
    # No float tensor anywhere: no cosine (or anything else) run in float inside the file.
    tensors = Interpreter(model_path=str(e.tflite["int8"].path)).get_tensor_details()
    assert tensors and all(np.dtype(t["dtype"]).kind == "i" for t in tensors), [
        (t["name"], np.dtype(t["dtype"]).name) for t in tensors
    ]


def test_bad_arguments_are_refused_before_converting(zoo, tmp_path):
    source = zoo["ae"].saved_model
    with pytest.raises(ValueError, match="representative_data"):
        export_tflite(source, tmp_path / "a.tflite", quantization="int8")
    with pytest.raises(ValueError, match="scored on the host"):
        export_tflite(source, tmp_path / "a.tflite", quantization="int8", scoring="graph")
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_tflite(source, tmp_path / "a.tflite", quantization="int4")
    with pytest.raises(ValueError, match=r"\.tflite"):
        export_tflite(source, tmp_path / "a.bin")
    with pytest.raises(ValueError, match="not a SavedModel"):
        export_tflite(tmp_path, tmp_path / "a.tflite")
    with pytest.raises(ValueError, match="features per sample"):
        export_tflite(
            source, tmp_path / "a.tflite", quantization="int8", representative_data=np.zeros((9, 3))
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_protected_and_failures_leave_nothing(zoo, tmp_path, monkeypatch):
    e = zoo["wae"]  # scores far from 0: the dynamic-int8 check below is relative
    first = export_tflite(e.saved_model, tmp_path / "m.tflite", quantization="dynamic-int8")
    content = first.path.read_bytes()
    meta = first.metadata_path.read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_tflite(e.saved_model, tmp_path / "m.tflite")

    import keras_deepad.export.tflite as module

    real_write_all = module.write_all_atomically

    def disk_full(tmp):
        tmp.write_bytes(b"{")  # a partial file, then the failure
        raise OSError("disk full")

    def crash_on_metadata(writes):
        writes = [(p, disk_full if p.name.endswith(".json") else w) for p, w in writes]
        return real_write_all(writes)

    # The model's temporary file is written, then writing the metadata fails.
    monkeypatch.setattr(module, "write_all_atomically", crash_on_metadata)
    with pytest.raises(OSError, match="disk full"):
        export_tflite(e.saved_model, tmp_path / "m.tflite", overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        export_tflite(e.saved_model, tmp_path / "n.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.json"]
    assert first.path.read_bytes() == content and first.metadata_path.read_text() == meta
    np.testing.assert_allclose(
        EdgeDetector(first.path).score(e.x[:20]), e.scores[:20], rtol=0.05, atol=1e-3
    )
    monkeypatch.undo()
    replaced = export_tflite(e.saved_model, tmp_path / "m.tflite", overwrite=True)
    assert replaced.quantization == "float32" and replaced.path.read_bytes() != content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.json"]


def test_cli_and_script_export_tflite(zoo, tmp_path, monkeypatch, capsys):
    e = zoo["wae"]
    model_file = tmp_path / "wae.keras"
    e.model.save(model_file)
    np.save(tmp_path / "normal.npy", e.x[e.y == 0])
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "export",
            "--model-file",
            str(model_file),
            "--format",
            "tflite",
            "--quantization",
            "int8",
            "--representative-data",
            "normal.npy",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(Path("saved_models") / "wae-int8.tflite")
    assert result["size_bytes"] == (tmp_path / result["path"]).stat().st_size
    scores = EdgeDetector(result["path"]).score(e.x)
    assert abs(roc_auc_score(e.y, scores) - roc_auc_score(e.y, e.scores)) <= 0.01

    assert main(["export", "--model-file", str(model_file), "--quantization", "int8"]) == 2
    assert "--format tflite" in capsys.readouterr().err
    monkeypatch.setattr(
        sys,
        "argv",
        ["export_tflite.py", str(e.saved_model), "--quantization", "float16", "--name", "w"],
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "scripts" / "export_tflite.py"), run_name="__main__")
    assert exit_info.value.code == 0
    np.testing.assert_allclose(
        EdgeDetector("saved_models/w-float16.tflite").score(e.x), e.scores, rtol=1e-2
    )
