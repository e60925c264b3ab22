"""The parser of `keras-deepad`: each subcommand from the shared argument groups."""

from __future__ import annotations

import argparse

from keras_deepad.choices import (
    AGGREGATES,
    BEAM_INPUT_FORMATS,
    EXPORT_FORMATS,
    QUANTIZATIONS,
    STRATEGIES,
    TFLITE_SCORINGS,
)
from keras_deepad.cli import commands
from keras_deepad.cli.arguments import (
    add_batch_size,
    add_common,
    add_data,
    add_epochs,
    add_json,
    add_label_column,
    add_method,
    add_model_file,
    add_output,
    add_overwrite,
    add_preset,
    add_training,
    fraction,
    positive_int,
)
from keras_deepad.cli.help_text import DESCRIPTION, EXAMPLES


# ------------------------------------------------------------------ commands
def _add_listing(sub, name, help, func):
    p = sub.add_parser(name, help=help)
    add_json(p)
    p.set_defaults(func=func)


def _add_train(sub):
    p = sub.add_parser("train", help="train a detector, calibrate its threshold, save a .keras")
    add_common(p)
    add_preset(p)
    add_training(p, epochs=100)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--contamination",
        type=fraction,
        default=None,
        help="expected anomaly fraction of the training data: threshold = "
        "(1 - c) quantile of training scores (default 0.1)",
    )
    group.add_argument(
        "--fpr",
        type=fraction,
        default=None,
        help="target false-positive rate when the training data is clean",
    )
    add_output(p, "where to save the model (default saved_models/<model>.keras)")
    p.add_argument(
        "--score-method",
        default=None,
        help="the saved model's score method (default: the preset's; e.g. hybrid or mse for "
        "AE, reconstruction_probability or jacodeco for VAE, discriminator for AAE)",
    )
    p.add_argument(
        "--knee-stopping",
        action="store_true",
        help="stop 20%% after the knee of the smoothed loss curve (Kneedle); --epochs is "
        "then the maximum (see keras_deepad.callbacks.KneeEarlyStopping)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="tf.distribute strategy: multiworker (MultiWorkerMirroredStrategy, from "
        "TF_CONFIG), mirrored (every GPU of this machine), default (none); auto picks "
        "multiworker when TF_CONFIG names several tasks, mirrored with several GPUs. "
        "--batch-size is the global batch. Only the chief (worker 0) saves the model",
    )
    p.add_argument(
        "--backup-dir",
        default=None,
        help="back up the training state here every epoch; a restarted job resumes from it "
        "(keras_deepad.distribute.BackupAndRestore)",
    )
    p.set_defaults(func=commands.cmd_train)


def _add_score(sub):
    p = sub.add_parser("score", help="score data with a saved model (one line per sample)")
    add_common(p)
    add_model_file(p)
    add_method(p, "score method (default: the model's; e.g. hybrid, mse, mae, max for AE)")
    add_batch_size(p, "scoring batch size")
    add_output(p, "write score[,is_anomaly] CSV here")
    p.set_defaults(func=commands.cmd_score)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="AUROC, AUPRC, F1, precision@n of a saved model")
    add_common(p)
    add_model_file(p)
    add_method(p, "score method to evaluate (default: the model's; threshold metrics only for it)")
    p.add_argument(
        "--plot",
        default=None,
        metavar="DIR",
        help="also write PNG figures here (score histogram, ROC and PR curves, feature errors, "
        "reconstructions, latent codes: those that apply; keras_deepad.plot.save_all). "
        'Needs matplotlib: pip install "keras-deepad[plot]"',
    )
    p.set_defaults(func=commands.cmd_evaluate)


def _add_group(sub):
    p = sub.add_parser(
        "group",
        help="group anomalies: rank inputs by distance to references from a generative model",
        description="Train a generative detector (VAE, AAE, WAE) on all inputs, or load one; "
        "aggregate its posterior over the inputs (moment matching), decode M references "
        "and rank every input by its distance to them (keras_deepad.scores.group_anomalies).",
    )
    add_common(p)
    source = p.add_mutually_exclusive_group()
    add_model_file(source, required=False, help="a trained VAE/AAE/WAE .keras file")
    source.add_argument(
        "--model", default="vae", help="generative detector to train on the inputs (default vae)"
    )
    add_training(p, epochs=50, batch_help="minibatch size")
    p.add_argument(
        "--references", type=positive_int, default=10, help="M, decoded references (default 10)"
    )
    p.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        default="mean",
        help="combination of the per-reference distances (default mean)",
    )
    p.add_argument(
        "--groups",
        default=None,
        help=".npy or one-column text file with a group label per input: groups are ranked too",
    )
    p.add_argument(
        "--top", type=positive_int, default=20, help="how many inputs to list (default 20)"
    )
    add_output(p, "write index,score,rank CSV for every input")
    p.set_defaults(func=commands.cmd_group)


def _add_export(sub):
    p = sub.add_parser(
        "export", help="export a saved model for TF Serving (SavedModel) or edge devices (TFLite)"
    )
    add_common(p, data=False)
    add_model_file(
        p, help="a .keras file written by train (for tflite also a SavedModel version folder)"
    )
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="saved_model",
        help="export format (default saved_model)",
    )
    p.add_argument(
        "--base-dir",
        default="saved_models",
        help="TF Serving model base path, and the folder of TFLite files (default saved_models)",
    )
    p.add_argument("--name", default=None, help="model name (default: the file's stem)")
    p.add_argument(
        "--version", type=int, default=None, help="integer version (default: the next free one)"
    )
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=None,
        help="tflite: weights/activations (default float32); int8 needs --representative-data",
    )
    p.add_argument(
        "--representative-data",
        default=None,
        metavar="DATA",
        help="tflite int8: normal training data to calibrate on (a built-in name: its training "
        "split; a file: its rows, those labelled 0 with --label-column)",
    )
    add_label_column(p, "CSV column with 0/1 labels in --representative-data")
    p.add_argument(
        "--scoring",
        choices=TFLITE_SCORINGS,
        default="auto",
        help="tflite: score inside the file (graph) or finish it in keras_deepad.edge (host); "
        "auto = host for int8, graph otherwise",
    )
    add_output(p, "tflite: the .tflite path (default <base-dir>/<name>-<quantization>.tflite)")
    add_overwrite(p, "replace an existing version or file")
    p.add_argument(
        "--verbose", action="store_true", help="show the TFLite converter's own log output"
    )
    p.set_defaults(func=commands.cmd_export)


def _add_compare(sub):
    p = sub.add_parser(
        "compare",
        help="train several detectors and baselines on one data set and print one table",
        description="Train each of --models on the training data (presets with their defaults, "
        "or scikit-learn baselines: "
        + ", ".join(f"{k} = {v}" for k, v in commands.BASELINES.items())
        + ") and rank them by AUROC on the labelled evaluation data.",
    )
    add_common(p)
    p.add_argument(
        "--models",
        default="ae,vae,deep-svdd,ocnn,iforest",
        help="comma-separated presets (`keras-deepad models`) and baselines (iforest, lof, "
        "ocsvm); default ae,vae,deep-svdd,ocnn,iforest",
    )
    add_epochs(p, 50)
    add_batch_size(p, "minibatch (default: each preset's)")
    p.add_argument("--plot", default=None, metavar="DIR", help="write ROC and PR curves here")
    p.set_defaults(func=commands.cmd_compare)


def _add_demo(sub):
    p = sub.add_parser("demo", help="train on a built-in data set, evaluate, save and export")
    add_common(p, data=False)
    add_preset(p, help="detector preset (default ae; see `keras-deepad models`)")
    add_data(
        p, required=False, default="breast_cancer", help="built-in data set (default breast_cancer)"
    )
    add_epochs(p, 100)
    p.add_argument(
        "--fpr",
        type=fraction,
        default=0.05,
        help="false-positive rate used to set the threshold (default 0.05)",
    )
    p.add_argument(
        "--output-dir", default="saved_models", help="where to write (default saved_models)"
    )
    # train_and_calibrate's other settings, at their `train` defaults.
    p.set_defaults(
        func=commands.cmd_demo, param=[], batch_size=None, learning_rate=None, contamination=None
    )


def _add_beam_score(sub):
    p = sub.add_parser(
        "beam-score",
        help="score sharded files with an exported SavedModel on Apache Beam (the beam extra)",
        description="Read rows from sharded CSV, TFRecord or Parquet files, score them with a "
        "SavedModel written by `export` (Beam's RunInference) and write sharded CSV "
        "<output>-SSSSS-of-NNNNN.csv with file,row (or --key-column),score,is_anomaly,"
        "threshold. Options after `--` go to Beam's PipelineOptions, e.g. "
        "`-- --project P --region R --temp_location gs://B/tmp` for Dataflow.",
    )
    add_json(p)
    p.add_argument(
        "--model-dir",
        required=True,
        help="SavedModel version folder written by export, or its model folder (highest version)",
    )
    p.add_argument(
        "--input", required=True, help="input file pattern, e.g. 'data/part-*.csv' (quote it)"
    )
    p.add_argument(
        "--format",
        choices=BEAM_INPUT_FORMATS,
        default="csv",
        help="input format (default csv)",
    )
    p.add_argument(
        "--output", required=True, help="output prefix of the CSV shards, e.g. scores/ae"
    )
    p.add_argument(
        "--runner",
        default="direct",
        help="direct, prism, dataflow, flink, spark or a Beam runner name (default direct)",
    )
    p.add_argument(
        "--feature-columns",
        default=None,
        help="comma-separated CSV/Parquet feature columns (default: all but --key-column)",
    )
    p.add_argument(
        "--key-column",
        default=None,
        help="column (TFRecord: feature) identifying each row; default: file and row index",
    )
    p.add_argument("--no-header", action="store_true", help="CSV files have no header row")
    p.add_argument(
        "--feature-key", default="x", help="TFRecord float feature holding the row (default x)"
    )
    p.add_argument(
        "--block-rows",
        type=positive_int,
        default=1024,
        help="rows per pipeline element and per model call (default 1024)",
    )
    p.add_argument(
        "--num-shards", type=int, default=0, help="output files (default 0: the runner decides)"
    )
    add_overwrite(p, "replace existing output shards")
    p.add_argument(
        "pipeline_args",
        nargs=argparse.REMAINDER,
        metavar="-- PIPELINE_OPTION",
        help="Beam pipeline options for the runner, after `--`",
    )
    p.set_defaults(func=commands.cmd_beam_score)


def build_parser() -> argparse.ArgumentParser:
    """The `keras-deepad` parser: one sub-parser per command, built from the groups above."""
    from keras_deepad._version import __version__

    parser = argparse.ArgumentParser(
        prog="keras-deepad",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-deepad {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error (accepted anywhere on the line)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_listing(sub, "models", "list the detectors and their presets", commands.cmd_models)
    _add_listing(sub, "datasets", "list the built-in data sets", commands.cmd_datasets)
    for add in (
        _add_train,
        _add_score,
        _add_evaluate,
        _add_group,
        _add_export,
        _add_compare,
        _add_demo,
        _add_beam_score,
    ):
        add(sub)
    for name, sub_parser in sub.choices.items():
        if name in EXAMPLES:
            sub_parser.formatter_class = argparse.RawDescriptionHelpFormatter
            sub_parser.epilog = "examples:\n" + "\n".join(
                f"  keras-deepad {name} {line}".rstrip() for line in EXAMPLES[name]
            )
    return parser
