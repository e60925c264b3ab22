"""A CLI that explains itself: examples and choices in --help, `compare`, progress on stderr,
converter noise hidden, hints in CLI words."""

import json
from pathlib import Path

import numpy as np
import pytest

from keras_deepad import cli
from keras_deepad.registry import list_detectors


@pytest.mark.parametrize("command", sorted(cli.EXAMPLES))
def test_every_subcommand_help_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    for line in cli.EXAMPLES[command]:
        assert f"keras-deepad {command} {line}".rstrip() in out


def test_train_help_lists_every_detector_and_refuses_others(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines at hyphens
    for name in list_detectors():
        assert name in out
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--model", "autoencoder", "--data", "blobs"])
    assert stop.value.code == 2
    assert "invalid choice: 'autoencoder'" in capsys.readouterr().err


def test_compare_ranks_detectors_and_baselines(tmp_path, capsys):
    argv = ["compare", "--data", "blobs", "--models", "ae,iforest,lof", "--epochs", "2"]
    assert cli.main([*argv, "--json", "--plot", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in result["results"]] == ["ae", "iforest", "lof"]
    assert all(0.5 < r["auroc"] <= 1.0 for r in result["results"])  # blobs: easy
    for path in result["plots"]:
        data = Path(path).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["model", "AUROC", "AUPRC", "seconds"]
    assert {line.split()[0] for line in out[2:5]} == {"ae", "iforest", "lof"}
    assert cli.main(["compare", "--data", "blobs", "--models", "ae,forest"]) == 2
    assert "unknown forest" in capsys.readouterr().err


def test_a_label_column_left_in_the_data_gets_a_hint(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(64, 3))
    labelled = tmp_path / "labelled.csv"
    np.savetxt(
        labelled, np.column_stack([x, np.zeros(64)]), delimiter=",", header="a,b,c,y", comments=""
    )
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, x, delimiter=",", header="a,b,c", comments="")
    model = tmp_path / "m.keras"
    argv = ["train", "--data", str(plain), "--epochs", "1", "--output", str(model), "--json"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["score", "--model-file", str(model), "--data", str(labelled)]) == 2
    err = capsys.readouterr().err
    assert "4 features per sample but the model expects 3" in err and "--label-column" in err


def test_score_and_export_report_progress_on_stderr_only(tmp_path, capfd):
    model = tmp_path / "m.keras"
    argv = ["train", "--data", "blobs", "--epochs", "1", "--param", "latent_dim=2"]
    assert cli.main([*argv, "--output", str(model), "--json"]) == 0
    capfd.readouterr()
    assert cli.main(["score", "--model-file", str(model), "--data", "blobs"]) == 0
    out, err = capfd.readouterr()
    assert len(out.splitlines()) == 550  # one score per row, nothing else
    assert "scoring 550 rows" in err and "scored 550 rows" in err
    export = [
        "export",
        "--model-file",
        str(model),
        "--format",
        "tflite",
        "--base-dir",
        str(tmp_path),
    ]
    assert cli.main(export) == 0
    out, err = capfd.readouterr()
    assert "TFLite (float32)" in out
    # The converter's own logging (MLIR passes, absl lines) is hidden without --verbose.
    assert err.strip().splitlines() == [f"converting {model} to TFLite (float32) ..."], err


def test_deep_svdd_says_that_it_pretrains(capsys):
    from keras_deepad.models import DeepSVDD

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    DeepSVDD(hidden_units=(8,), rep_dim=2, pretrain_epochs=1).fit(x, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert "pretraining the autoencoder (1 epochs), then training the hypersphere" in out
