"""The CLI's failure contract: a user error is one line on stderr naming the problem, exit 2,
no traceback (`--debug` shows it); output paths are checked before training; nothing is saved
before a step that can still fail."""

import zipfile

import pytest

from keras_deepad import cli

TRAIN = ["train", "--model", "ae", "--data", "blobs", "--epochs", "1", "--param", "latent_dim=2"]


def _files(tmp_path):
    (tmp_path / "folder.keras").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "text.keras").write_text("this is not a zip archive")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, but not a Keras model")
    return tmp_path


# (argv with {tmp} for the temporary folder, words the one-line message must contain)
CASES = [
    ("train-output-is-folder", TRAIN + ["--output", "{tmp}/folder.keras"], ["--output", "folder"]),
    ("train-output-under-file", TRAIN + ["--output", "{tmp}/a_file/m.keras"], ["not a folder"]),
    ("train-output-suffix", TRAIN + ["--output", "{tmp}/model.txt"], ["--output", ".keras"]),
    (
        "train-bad-param",
        TRAIN + ["--param", "hidden_units=5", "--output", "{tmp}/m.keras"],
        ["hidden_units"],
    ),
    ("train-unknown-param", TRAIN + ["--param", "widht=5", "--output", "{tmp}/m.keras"], ["widht"]),
    (
        "train-missing-data",
        ["train", "--data", "{tmp}/none.csv", "--output", "{tmp}/m.keras"],
        ["none.csv", "does not exist"],
    ),
    (
        "score-missing-model",
        ["score", "--model-file", "{tmp}/none.keras", "--data", "blobs"],
        ["none.keras", "does not exist"],
    ),
    (
        "score-empty-model",
        ["score", "--model-file", "{tmp}/empty.keras", "--data", "blobs"],
        ["empty.keras", "empty"],
    ),
    (
        "score-not-zip",
        ["score", "--model-file", "{tmp}/text.keras", "--data", "blobs"],
        ["text.keras", "not a .keras file"],
    ),
    (
        "score-other-zip",
        ["score", "--model-file", "{tmp}/other.keras", "--data", "blobs"],
        ["other.keras", "could not be loaded"],
    ),
    (
        "score-model-is-folder",
        ["score", "--model-file", "{tmp}/folder.keras", "--data", "blobs"],
        ["folder.keras", "is a folder"],
    ),
    (
        "score-output-is-folder",
        ["score", "--model-file", "{tmp}/text.keras", "--data", "blobs", "--output", "{tmp}"],
        ["--output", "is a folder"],
    ),
    (
        "group-output-under-file",
        ["group", "--data", "blobs", "--output", "{tmp}/a_file/g.csv"],
        ["not a folder"],
    ),
    ("demo-output-under-file", ["demo", "--output-dir", "{tmp}/a_file"], ["not a folder"]),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    tmp = _files(tmp_path)
    code = cli.main([a.replace("{tmp}", str(tmp)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"keras-deepad {argv[0]}: error: ")
    for word in words:
        assert word in lines[0]
    assert not (tmp / "m.keras").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_learning_rate_must_be_positive_and_finite(capsys, value):
    with pytest.raises(SystemExit) as stop:
        cli.main(TRAIN + ["--learning-rate", value])
    assert stop.value.code == 2
    assert "--learning-rate" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    tmp = _files(tmp_path)
    argv = ["score", "--model-file", str(tmp / "text.keras"), "--data", "blobs"]
    with pytest.raises(ValueError, match="not a .keras file"):
        cli.main(["--debug", *argv])
    with pytest.raises(ValueError, match="not a .keras file"):
        cli.main([*argv, "--debug"])


def test_internal_error_is_one_line_exit_1(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["datasets"].set_defaults(func=broken)
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "RuntimeError: something inside broke" in err and "--debug" in err


def test_nothing_is_saved_when_evaluation_fails(tmp_path, monkeypatch, capsys):
    def failing_evaluation(model, loaded, method=None):
        raise ValueError("evaluation failed")

    monkeypatch.setattr(cli.training, "evaluate_model", failing_evaluation)
    output = tmp_path / "m.keras"
    assert cli.main(TRAIN + ["--output", str(output)]) == 2
    assert "evaluation failed" in capsys.readouterr().err
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_overwrite_is_spoken_as_the_flag(tmp_path, capsys):
    model_file = tmp_path / "m.keras"
    assert cli.main(TRAIN + ["--output", str(model_file)]) == 0
    base = tmp_path / "serving"
    export = ["export", "--model-file", str(model_file), "--base-dir", str(base), "--version", "1"]
    assert cli.main(export) == 0
    capsys.readouterr()
    assert cli.main(export) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert cli.main([*export, "--overwrite"]) == 0
