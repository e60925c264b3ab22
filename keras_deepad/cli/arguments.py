"""The arguments the subcommands share: value types and argument groups (one declaration each)."""

from __future__ import annotations

import argparse
import json


def parse_param(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0.0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


# ------------------------------------------------------------- argument groups
def _detector_names() -> list[str]:
    from keras_deepad.registry import list_detectors

    return sorted(list_detectors())


DETECTOR_NAMES = _detector_names()


def add_json(p):
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")


def add_seed(p):
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed for weights, shuffling and built-in splits (default 0)",
    )


def add_data(p, required=True, default=None, help=None):
    p.add_argument(
        "--data",
        required=required,
        default=default,
        help=help
        or "built-in data set name (e.g. breast_cancer, digits:3) or a .csv/.npy/.npz file",
    )


def add_label_column(p, help="CSV column with 0/1 labels (excluded from the features)"):
    p.add_argument("--label-column", default=None, help=help)


def add_common(p, data=True):
    """`--json`, `--seed` and (with `data`) `--data` and `--label-column`."""
    add_json(p)
    add_seed(p)
    if data:
        add_data(p)
        add_label_column(p)


def add_preset(p, default="ae", help=None):
    """`--model`: a registered detector preset."""
    p.add_argument(
        "--model",
        default=default,
        choices=DETECTOR_NAMES,
        metavar="MODEL",
        help=help or f"detector preset (default {default}): " + ", ".join(DETECTOR_NAMES),
    )


def add_epochs(p, default):
    p.add_argument(
        "--epochs", type=positive_int, default=default, help=f"training epochs (default {default})"
    )


def add_batch_size(p, help="minibatch size (default: the preset's, else 32)"):
    p.add_argument("--batch-size", type=positive_int, default=None, help=help)


def add_training(p, epochs, batch_help=None):
    """`--epochs`, `--batch-size`, `--learning-rate` and `--param` of a command that trains."""
    add_epochs(p, epochs)
    add_batch_size(p, *(batch_help,) if batch_help else ())
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help="Adam learning rate (default: the preset's, else the detector's own default)",
    )
    p.add_argument(
        "--param",
        action="append",
        type=parse_param,
        metavar="KEY=VALUE",
        help="constructor argument overriding the preset, value as JSON "
        "(e.g. --param latent_dim=4 --param hidden_units=[128,64]); repeatable",
    )


def add_model_file(p, required=True, help="a .keras file written by train"):
    p.add_argument("--model-file", required=required, default=None, help=help)


def add_method(p, help):
    p.add_argument("--method", default=None, help=help)


def add_output(p, help):
    p.add_argument("--output", default=None, help=help)


def add_overwrite(p, help):
    p.add_argument("--overwrite", action="store_true", help=help)
