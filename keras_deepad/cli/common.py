"""What the commands share: loading data and models, safe output paths, training with a
threshold, metrics, and printing a result as lines or one JSON object."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras_deepad.data import LoadedData


# --------------------------------------------------------------------- data
def load_data(spec: str, seed: int = 0, label_column: str | None = None) -> LoadedData:
    """`keras_deepad.data.load_data`, imported when a command needs data (the CLI starts fast)."""
    from keras_deepad.data import load_data as load

    return load(spec, seed=seed, label_column=label_column)


# ------------------------------------------------------------------- models
def save_keras_atomically(model, path) -> Path:
    """Saves a `.keras` file via a temporary file and a rename (never half-written)."""
    from keras_deepad.utils.scratch import save_keras_atomically as save

    return save(model, path)


def check_output_path(path, flag: str, suffix: str | None = None) -> Path:
    """Refuses an output path that cannot be written, before any work is done.

    Checks the suffix, that the path is not a folder, and that its folder
    exists and is writable or can be created (the nearest existing parent is
    a writable folder). `flag` names the option in the message.
    """
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"{flag} must end in {suffix}. Received: {path}")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name.")
    _check_creatable(path.parent, f"{flag} {path}")
    return path


def _check_creatable(folder: Path, what: str):
    """Refuses a folder that neither exists nor can be created: its nearest existing
    ancestor must be a writable folder."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what}: {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write in {parent} (permission denied).")


def load_model(path):
    import zipfile

    import keras

    import keras_deepad.models  # noqa: F401  (registers the detector classes)

    path = Path(path)
    if not path.exists():
        raise ValueError(f"model file {path} does not exist.")
    if path.is_dir():
        raise ValueError(
            f"model file {path} is a folder; give a .keras file written by `keras-deepad train`."
        )
    if path.stat().st_size == 0:
        raise ValueError(f"model file {path} is empty (an interrupted save?); train it again.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"model file {path} is not a .keras file (not a zip archive: truncated or another "
            "format?); give a .keras file written by `keras-deepad train`."
        )
    try:
        return keras.models.load_model(path)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"model file {path} could not be loaded ({type(err).__name__}: {err}); is it a "
            ".keras file written by `keras-deepad train` with this version?"
        ) from err


def train_and_calibrate(args, loaded: LoadedData):
    from keras_deepad.registry import train_detector

    callbacks = []
    if getattr(args, "knee_stopping", False):
        from keras_deepad.callbacks import KneeEarlyStopping

        callbacks.append(KneeEarlyStopping())
    if getattr(args, "backup_dir", None):
        from keras_deepad.distribute import BackupAndRestore

        callbacks.append(BackupAndRestore(args.backup_dir))
    params = dict(args.param or [])
    if getattr(args, "score_method", None):
        params["score_method"] = args.score_method
    start = time.perf_counter()
    model, history = train_detector(
        args.model,
        loaded.x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        params=params,
        verbose=0 if args.json else (1 if sys.stdout.isatty() else 2),
        callbacks=callbacks,
        strategy=getattr(args, "strategy", None),
    )
    seconds = time.perf_counter() - start
    threshold = model.calibrate(loaded.x_train, contamination=args.contamination, fpr=args.fpr)
    info = {
        "train_seconds": round(seconds, 3),
        "final_loss": float(history.history["loss"][-1]),
        "threshold": threshold,
    }
    if getattr(args, "knee_stopping", False):
        knee = callbacks[0].knee_epoch
        info["epochs_trained"] = len(history.history["loss"])
        info["knee_epoch"] = None if knee is None else knee + 1  # counted from 1
    return model, info


def evaluate_model(model, loaded: LoadedData, method=None):
    from keras_deepad.evaluation import evaluate_scores

    if loaded.y_eval is None:
        return None
    scores = model.score(loaded.x_eval, method=method)
    # The threshold was calibrated on the model's own score method only.
    same = method is None or method == model.score_method
    return evaluate_scores(loaded.y_eval, scores, threshold=model.threshold if same else None)


# ----------------------------------------------------------------- commands
def emit(args, result: dict, lines: list[str]):
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print("\n".join(lines))


def metric_lines(metrics):
    if not metrics:
        return ["(no labels: nothing to evaluate)"]
    keys = ["auroc", "auprc", "f1", "precision", "recall", "precision_at_n", "flagged_fraction"]
    return [f"  {k:>16}: {metrics[k]:.4f}" for k in keys if k in metrics]


def check_plot_dir(path) -> Path:
    """Refuses a `--plot` folder that cannot be written (and a missing matplotlib), up front."""
    from keras_deepad import plot

    try:
        plot.require_matplotlib()
    except ImportError as err:
        raise ValueError(f"--plot: {err}") from err
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--plot {path} is a file; give a folder.")
    _check_creatable(path, f"--plot {path}")
    return path


def status(args, message: str):
    """A progress line on stderr (not with --json), so stdout stays the result."""
    if not getattr(args, "json", False):
        print(message, file=sys.stderr, flush=True)
