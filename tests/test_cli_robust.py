"""`keras-deepad train` with the robust presets and knee stopping (in-process)."""

import json

import keras

from keras_deepad import cli


def test_train_robust_preset_with_knee_stopping(tmp_path, capsys):
    output = tmp_path / "robust.keras"
    argv = [
        "train",
        "--model",
        "ae-robust",
        "--data",
        "blobs",
        "--epochs",
        "80",
        "--batch-size",
        "64",
        "--knee-stopping",
        "--param",
        "hidden_units=[16]",
        "--param",
        "latent_dim=4",
        "--output",
        str(output),
        "--json",
    ]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs_trained"] < 80
    assert 1.2 * result["knee_epoch"] < result["epochs_trained"]
    assert result["metrics"]["auroc"] >= 0.9
    model = keras.models.load_model(output)
    assert model.percentile_loss == 0.95


def test_robust_presets_are_listed_and_knee_stopping_is_off_by_default(capsys):
    assert cli.main(["models", "--json"]) == 0
    assert {"ae-robust", "vae-robust"} <= set(json.loads(capsys.readouterr().out))
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--data", "blobs"])
    assert args.knee_stopping is False
    assert parser.parse_args(["train", "--data", "blobs", "--knee-stopping"]).knee_stopping
