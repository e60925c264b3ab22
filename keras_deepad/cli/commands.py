"""The commands of `keras-deepad`: one `cmd_<name>(args)` per subcommand.

Only the standard library is imported by these modules; each command imports
what it needs (TensorFlow, the detectors) when it runs, so `keras-deepad
--help` stays fast.
"""

from keras_deepad.cli.exporting import cmd_export
from keras_deepad.cli.scoring import (
    cmd_beam_score,
    cmd_datasets,
    cmd_evaluate,
    cmd_models,
    cmd_score,
)
from keras_deepad.cli.training import BASELINES, cmd_compare, cmd_demo, cmd_group, cmd_train

__all__ = [
    "BASELINES",
    "cmd_beam_score",
    "cmd_compare",
    "cmd_datasets",
    "cmd_demo",
    "cmd_evaluate",
    "cmd_export",
    "cmd_group",
    "cmd_models",
    "cmd_score",
    "cmd_train",
]
