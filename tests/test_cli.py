"""The `keras-deepad` command end to end.

Most calls run `keras_deepad.cli.main` in this process (an import of TensorFlow per
subprocess would cost seconds each); `test_the_module_runs_as_a_command` runs the
real `python -m keras_deepad.cli` in a subprocess.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from keras_deepad.cli import main

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}


@pytest.fixture
def run(capsys, monkeypatch):
    """`run(*args, cwd, check=True)`: the command's exit code, stdout and stderr."""

    def _run(*args, cwd, check=True):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse: --help, bad choices
            code = exit_.code or 0
        out, err = capsys.readouterr()
        result = SimpleNamespace(returncode=code, stdout=out, stderr=err)
        if check and code != 0:
            raise AssertionError(f"exit {code}\n{out}\n{err}")
        return result

    return _run


def test_the_module_runs_as_a_command(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "keras_deepad.cli", "train", "--model", "nope", "--data", "blobs"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stderr
    assert "invalid choice: 'nope' (choose from 'aae'" in bad.stderr, bad.stderr


def test_train_score_evaluate_export(run, tmp_path):
    out = run(
        "train",
        "--model",
        "ae",
        "--data",
        "blobs",
        "--epochs",
        "10",
        "--seed",
        "1",
        "--param",
        "hidden_units=[32,16]",
        "--param",
        "latent_dim=4",
        "--contamination",
        "0.05",
        "--output",
        "models/ae.keras",
        "--json",
        cwd=tmp_path,
    )
    trained = json.loads(out.stdout)
    assert trained["metrics"]["auroc"] >= 0.9
    assert (tmp_path / "models/ae.keras").is_file()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]

    x = np.random.default_rng(0).normal(size=(25, 16)).astype("float32")
    np.save(tmp_path / "new.npy", x)
    scored = json.loads(
        run(
            "score", "--model-file", "models/ae.keras", "--data", "new.npy", "--json", cwd=tmp_path
        ).stdout
    )
    assert len(scored["scores"]) == 25 and scored["threshold"] == pytest.approx(
        trained["threshold"]
    )
    assert scored["is_anomaly"] == [int(s > scored["threshold"]) for s in scored["scores"]]

    run(
        "score",
        "--model-file",
        "models/ae.keras",
        "--data",
        "new.npy",
        "--output",
        "s.csv",
        cwd=tmp_path,
    )
    table = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], scored["scores"], rtol=1e-6)

    evaluated = json.loads(
        run(
            "evaluate",
            "--model-file",
            "models/ae.keras",
            "--data",
            "blobs",
            "--seed",
            "1",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert evaluated["metrics"]["auroc"] == pytest.approx(trained["metrics"]["auroc"])

    exported = json.loads(
        run(
            "export",
            "--model-file",
            "models/ae.keras",
            "--base-dir",
            "serve",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert exported["path"].endswith(os.path.join("serve", "ae", "1"))
    assert (tmp_path / "serve/ae/1/saved_model.pb").is_file()
    again = run(
        "export",
        "--model-file",
        "models/ae.keras",
        "--base-dir",
        "serve",
        "--version",
        "1",
        cwd=tmp_path,
        check=False,
    )
    assert again.returncode == 2 and "already exists" in again.stderr


def test_csv_with_labels_and_progress_bar(run, tmp_path):
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(150, 3)), rng.normal(6, 1, size=(10, 3))]
    y = np.r_[np.zeros(150), np.ones(10)]
    header = "a,b,c,label"
    np.savetxt(tmp_path / "d.csv", np.c_[x, y], delimiter=",", header=header, comments="")
    out = run(
        "train",
        "--data",
        "d.csv",
        "--label-column",
        "label",
        "--epochs",
        "3",
        "--output",
        "m.keras",
        cwd=tmp_path,
    )
    assert "Epoch 3/3" in out.stdout and "auroc" in out.stdout
    bad = run("score", "--model-file", "m.keras", "--data", "blobs", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "16 features per sample but the model expects 3" in bad.stderr


def test_help_and_errors(run, tmp_path):
    out = run("train", "--help", cwd=tmp_path).stdout
    for option in (
        "--model",
        "--data",
        "--epochs",
        "--seed",
        "--param",
        "--contamination",
        "--json",
    ):
        assert option in out
    models = json.loads(run("models", "--json", cwd=tmp_path).stdout)
    assert {"ae", "vae", "ae-borghesi", "ae-seed"} <= set(models)
    bad = run("train", "--model", "nope", "--data", "blobs", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "invalid choice: 'nope' (choose from 'aae'" in bad.stderr
    bad = run("train", "--data", "missing.csv", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_one_class_presets_train_from_the_command_line(run, tmp_path):
    from keras_deepad.registry import list_detectors

    presets = ("deep-svdd", "deep-svdd-soft", "deep-svdd-mnist", "deep-svdd-cifar10", "ocnn")
    assert set(presets) <= set(list_detectors())
    out = run(
        "train",
        "--model",
        "deep-svdd-soft",
        "--data",
        "digits:0",
        "--epochs",
        "5",
        "--param",
        "pretrain_epochs=3",
        "--output",
        "svdd.keras",
        "--json",
        cwd=tmp_path,
    )
    result = json.loads(out.stdout)
    assert result["metrics"]["auroc"] >= 0.9, result["metrics"]
    assert (tmp_path / "svdd.keras").is_file()


def test_ensemble_members_named_by_preset_from_the_command_line(run, tmp_path):
    import keras

    import keras_deepad  # noqa: F401  (registers the classes for load_model)

    out = run(
        "train",
        "--model",
        "ensemble",
        "--data",
        "breast_cancer",
        "--epochs",
        "3",
        "--param",
        'members=["ae", "ocnn"]',
        "--output",
        "ensemble.keras",
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(out.stdout)["metrics"]["auroc"] >= 0.85
    members = keras.saving.load_model(tmp_path / "ensemble.keras").members
    assert [type(m).__name__ for m in members] == ["AE", "OCNN"]
    assert members[1].hidden_units == 1024 and members[1].activation == "cos"
    assert isinstance(members[1].bandwidth, float)  # "auto", set from the training data
